"""Stand-ins where moto falls short, plugged in behind botocore's ``before-send`` event.

Real botocore clients still validate, serialise, sign (so credentials are really fetched and
refreshed) and parse; only the HTTP exchange is answered here. moto cannot replace these: its
pipeline executions are ``Succeeded`` at once and it has no ListPipelineExecutionSteps or
StopPipelineExecution.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from botocore.awsrequest import AWSResponse

EPOCH = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


class FakeClock:
    """Monotonic seconds, wall-clock datetimes and a sleep that only advances time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep: list[Any] = []

    def monotonic(self) -> float:
        return self.now

    def datetime(self) -> datetime:
        return EPOCH + timedelta(seconds=self.now)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        for hook in list(self.on_sleep):
            hook(self)


class RawBody(io.BytesIO):
    """A urllib3-like raw body: readable (streaming responses) and streamable (the rest)."""

    def stream(self, **_: Any):
        yield self.getvalue()


def json_response(url: str, body: dict[str, Any], status: int = 200) -> AWSResponse:
    raw = RawBody(json.dumps(body, default=_epoch).encode())
    headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": "fake"}
    return AWSResponse(url, status, headers, raw)


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    raise TypeError(type(value))


def access_key_of(request: Any) -> str:
    header = request.headers.get("Authorization", b"")
    header = header.decode() if isinstance(header, bytes) else header
    match = re.search(r"Credential=([^/]+)/", header)
    return match.group(1) if match else ""


@dataclass
class ScriptedStep:
    name: str
    start: float
    end: float
    status: str = "Succeeded"
    failure_reason: str = ""


@dataclass
class FakeExecution:
    arn: str
    pipeline_name: str
    created: float
    steps: list[ScriptedStep]
    parameters: list[dict[str, str]]
    token: str | None
    stopped_at: float | None = None


@dataclass
class FakeSageMaker:
    """Pipelines and executions whose steps follow a script on a :class:`FakeClock`."""

    clock: FakeClock
    region: str = "eu-west-1"
    account: str = "123456789012"
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    executions: dict[str, FakeExecution] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    script: list[ScriptedStep] = field(default_factory=list)
    credential_check: Any = None

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-send.sagemaker", self._handle)
        return client

    def operations(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    def add_pipeline(self, name: str, parameters: list[dict[str, Any]]) -> None:
        definition = {"Version": "2020-12-01", "Parameters": parameters, "Steps": []}
        self.pipelines[name] = {
            "PipelineName": name,
            "PipelineArn": f"arn:aws:sagemaker:{self.region}:{self.account}:pipeline/{name}",
            "PipelineDefinition": json.dumps(definition),
            "RoleArn": f"arn:aws:iam::{self.account}:role/exec",
        }

    # -- HTTP ----------------------------------------------------------------------------------

    def _handle(self, request: Any, **_: Any) -> AWSResponse:
        operation = request.headers["X-Amz-Target"]
        operation = operation.decode() if isinstance(operation, bytes) else operation
        operation = operation.split(".", 1)[1]
        body = json.loads(request.body or b"{}")
        key = access_key_of(request)
        self.calls.append((operation, body, key))
        if self.credential_check is not None:
            self.credential_check(key)
        try:
            result = getattr(self, "op_" + operation)(body)
        except _ServiceError as exc:
            return json_response(
                request.url, {"__type": exc.code, "message": exc.message}, status=400
            )
        return json_response(request.url, result)

    # -- operations ----------------------------------------------------------------------------

    def op_DescribePipeline(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["PipelineName"]
        if name not in self.pipelines:
            raise _ServiceError("ResourceNotFound", f"Pipeline '{name}' does not exist.")
        return self.pipelines[name]

    def op_StartPipelineExecution(self, body: dict[str, Any]) -> dict[str, Any]:
        token = body.get("ClientRequestToken")
        for execution in self.executions.values():
            if token and execution.token == token:
                return {"PipelineExecutionArn": execution.arn}
        name = body["PipelineName"]
        arn = (
            f"arn:aws:sagemaker:{self.region}:{self.account}:pipeline/{name}/execution/"
            f"exec{len(self.executions) + 1:04d}"
        )
        steps = [
            ScriptedStep(
                s.name, self.clock.now + s.start, self.clock.now + s.end, s.status, s.failure_reason
            )
            for s in self.script
        ]
        self.executions[arn] = FakeExecution(
            arn, name, self.clock.now, steps, body.get("PipelineParameters", []), token
        )
        return {"PipelineExecutionArn": arn}

    def _status(self, execution: FakeExecution) -> tuple[str, str]:
        now = self.clock.now
        if execution.stopped_at is not None:
            return ("Stopped", "")
        failed = [s for s in execution.steps if s.status == "Failed" and s.end <= now]
        if failed:
            return ("Failed", f"Step failure: One or more steps failed. ({failed[0].name})")
        if all(s.end <= now for s in execution.steps):
            return ("Succeeded", "")
        return ("Executing", "")

    def op_DescribePipelineExecution(self, body: dict[str, Any]) -> dict[str, Any]:
        execution = self.executions[body["PipelineExecutionArn"]]
        status, reason = self._status(execution)
        result = {
            "PipelineArn": self.pipelines.get(execution.pipeline_name, {}).get("PipelineArn", ""),
            "PipelineExecutionArn": execution.arn,
            "PipelineExecutionStatus": status,
            "CreationTime": EPOCH + timedelta(seconds=execution.created),
            "LastModifiedTime": self.clock.datetime(),
        }
        if reason:
            result["FailureReason"] = reason
        return result

    def op_ListPipelineExecutionSteps(self, body: dict[str, Any]) -> dict[str, Any]:
        execution = self.executions[body["PipelineExecutionArn"]]
        now = self.clock.now
        items = []
        for step in execution.steps:
            if step.start > now:
                continue
            done = step.end <= now
            status = step.status if done else "Executing"
            if execution.stopped_at is not None and not done:
                status = "Stopped"
            item: dict[str, Any] = {
                "StepName": step.name,
                "StepStatus": status,
                "StartTime": EPOCH + timedelta(seconds=step.start),
            }
            if done:
                item["EndTime"] = EPOCH + timedelta(seconds=step.end)
                if step.failure_reason:
                    item["FailureReason"] = step.failure_reason
            items.append(item)
        return {"PipelineExecutionSteps": items}

    def op_StopPipelineExecution(self, body: dict[str, Any]) -> dict[str, Any]:
        execution = self.executions[body["PipelineExecutionArn"]]
        if self._status(execution)[0] in ("Succeeded", "Failed", "Stopped"):
            raise _ServiceError(
                "ValidationException", "Pipeline execution is in status Succeeded; cannot stop"
            )
        execution.stopped_at = self.clock.now
        return {"PipelineExecutionArn": execution.arn}

    def op_ListPipelineExecutions(self, body: dict[str, Any]) -> dict[str, Any]:
        mine = [e for e in self.executions.values() if e.pipeline_name == body["PipelineName"]]
        mine.sort(key=lambda e: e.created, reverse=True)
        return {"PipelineExecutionSummaries": [{"PipelineExecutionArn": e.arn} for e in mine]}


class _ServiceError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class FakeSts:
    """STS issuing credentials that expire ``lifetime`` seconds after the fake clock's now."""

    clock: FakeClock
    lifetime: int = 900
    issued: list[tuple[str, float]] = field(default_factory=list)
    tokens_seen: list[str] = field(default_factory=list)

    def attach(self, session_events: Any) -> None:
        session_events.register("before-send.sts", self._handle)

    def valid_at(self, access_key: str, now: float) -> bool:
        return any(key == access_key and now < expiry for key, expiry in self.issued)

    def _handle(self, request: Any, **_: Any) -> AWSResponse:
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        form = {k: v[0] for k, v in parse_qs(body or "").items()}
        if "WebIdentityToken" in form:
            self.tokens_seen.append(form["WebIdentityToken"])
        key = f"ASIAFAKE{len(self.issued):08d}"
        expiry = self.clock.now + self.lifetime
        self.issued.append((key, expiry))
        expiration = (EPOCH + timedelta(seconds=expiry)).strftime("%Y-%m-%dT%H:%M:%SZ")
        action = form["Action"]
        xml = (
            f'<{action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
            f"<{action}Result><Credentials><AccessKeyId>{key}</AccessKeyId>"
            f"<SecretAccessKey>secret{len(self.issued)}</SecretAccessKey>"
            f"<SessionToken>session{len(self.issued)}</SessionToken>"
            f"<Expiration>{expiration}</Expiration></Credentials>"
            f"<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/ci/smbridge</Arn>"
            f"<AssumedRoleId>AROAFAKE:smbridge</AssumedRoleId></AssumedRoleUser>"
            f"</{action}Result><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>"
            f"</{action}Response>"
        )
        return AWSResponse(request.url, 200, {"Content-Type": "text/xml"}, RawBody(xml.encode()))


class StaticClients:
    """An ``AwsClients`` look-alike serving pre-built clients."""

    def __init__(self, region: str = "eu-west-1", **clients: Any) -> None:
        self.region = region
        self._clients = clients

    def client(self, service: str) -> Any:
        return self._clients[service]
