"""Run the trigger outside Lambda: ``smbridge trigger simulate`` and ``smbridge trigger replay``."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    BaseError as IdempotencyError,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from bridge.azure_devops.client import organization_url
from bridge.errors import BridgeError, CredentialsError, ServiceError, UserError
from bridge.trigger.events import parse_event
from bridge.trigger.handler import TriggerRuntime, handle, run_request
from bridge.trigger.routing import RoutingTable

DEFAULT_REPLAY_BATCH = 10


class LocalContext:
    """A Lambda context for local runs: the same time budget as the deployed function."""

    function_name = "smbridge-trigger-local"
    memory_limit_in_mb = 0
    invoked_function_arn = "arn:aws:lambda:local:000000000000:function:smbridge-trigger-local"
    aws_request_id = "local"

    def __init__(self, timeout_seconds: float = 60.0) -> None:
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def read_event(path: str | Path) -> Any:
    file = Path(path)
    if not file.is_file():
        raise UserError(f"--event {path}: file not found")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(
            f"--event {path}: byte {exc.object[exc.start]:#04x} at offset {exc.start} is not "
            "UTF-8; save the event as UTF-8 JSON"
        ) from None
    except json.JSONDecodeError as exc:
        raise UserError(f"--event {path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except ValueError as exc:  # an integer beyond what Python reads (4300 digits)
        raise UserError(f"--event {path}: {str(exc).split(';')[0]}") from None
    except RecursionError:
        raise UserError(f"--event {path}: nested too deeply to be an event") from None


def plan_event(event: Any, routes: RoutingTable) -> dict[str, Any]:
    """What the trigger would do with ``event``, without any call (``--dry-run``)."""
    change = parse_event(event)
    detail = change.detail
    route = routes.route_for(detail.model_package_group_name)
    if route is None:
        return {
            "action": "ignore",
            "reason": f"no route for group {detail.model_package_group_name}",
        }
    if not change.approved:
        return {
            "action": "record",
            "reason": f"status {detail.model_approval_status}: remembered in the ledger; it "
            "starts a run only if it reveals an earlier re-approval that has none",
        }
    request = run_request(change, route).as_dict(organization_url(route.organization))
    return {
        "action": "start",
        "route": route.describe(),
        "request": request,
        "dedupe_key": {
            "modelPackageArn": detail.model_package_arn,
            "approval": "this approval (no run if the ledger shows it already has one)",
        },
    }


@dataclass
class RecordedRequest:
    method: str
    url: str
    body: Any
    status: int


def record_requests(runtime: TriggerRuntime) -> list[RecordedRequest]:
    """Make the runtime's HTTP session record every request (never its headers)."""
    session = runtime.http or requests.Session()
    recorded: list[RecordedRequest] = []

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        body = response.request.body
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        with contextlib.suppress(ValueError):
            body = json.loads(body) if body else None
        recorded.append(
            RecordedRequest(response.request.method or "", response.url, body, response.status_code)
        )

    session.hooks["response"].append(hook)
    runtime.http = session
    runtime.clients.clear()
    return recorded


def simulate(event: Any, runtime: TriggerRuntime) -> dict[str, Any]:
    """Run the handler on ``event`` and return its result with the requests it sent."""
    recorded = record_requests(runtime)
    error = None
    try:
        result = handle(event, LocalContext(), runtime)
    except BridgeError as exc:
        result, error = {"status": "failed"}, exc
    report = {**result, "requests": [r.__dict__ for r in recorded]}
    if error is not None:
        report["error"] = str(error)
        raise SimulationFailed(error, report) from None
    return report


class SimulationFailed(BridgeError):
    """The handler failed; ``report`` still lists the requests it sent."""

    def __init__(self, error: BridgeError, report: dict[str, Any]) -> None:
        super().__init__(str(error))
        self.exit_code = error.exit_code
        self.report = report


def event_of_message(body: str) -> Any:
    """A DLQ message body: the event itself (redriven from the trigger queue, or an EventBridge
    target DLQ), or a Lambda on-failure destination record (the event under
    ``requestPayload``)."""
    try:
        document = json.loads(body)
    except RecursionError:
        raise UserError("message body is nested too deeply to be an event") from None
    if isinstance(document, dict) and "requestPayload" in document:
        return document["requestPayload"]
    return document


@dataclass
class ReplayReport:
    received: int = 0
    handled: int = 0
    failed: int = 0
    kept: int = 0  # handled, but left in the queue on purpose (no route, in progress)
    results: list[dict[str, Any]] = field(default_factory=list)


def replay(
    sqs: Any, queue_url: str, runtime: TriggerRuntime, *, max_messages: int = 100
) -> ReplayReport:
    """Re-drive dead-lettered events through the handler; delete each one it handled.

    Safe to run more than once: the handler's idempotency finds an approval's existing run.
    A message that fails again, one whose approval another invocation is starting right now,
    and one that has no route stay in the queue (they reappear after the visibility timeout);
    every other message is still handled.
    """
    report = ReplayReport()
    while report.received < max_messages:
        batch = _sqs_call(
            f"SQS ReceiveMessage {queue_url}",
            sqs.receive_message,
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(DEFAULT_REPLAY_BATCH, max_messages - report.received),
            WaitTimeSeconds=1,
        ).get("Messages", [])
        if not batch:
            break
        for message in batch:
            report.received += 1
            outcome = _replay_one(message, runtime)
            report.results.append({"messageId": message["MessageId"], **outcome})
            if "error" in outcome:
                report.failed += 1
                continue
            if outcome.get("kept"):
                report.kept += 1
                continue
            _sqs_call(
                "SQS DeleteMessage",
                sqs.delete_message,
                QueueUrl=queue_url,
                ReceiptHandle=message["ReceiptHandle"],
            )
            report.handled += 1
    return report


def _sqs_call(what: str, func: Any, /, **kwargs: Any) -> Any:
    """``func(**kwargs)`` with botocore failures as one-line bridge errors, worded as
    :func:`bridge.aws.errors.aws_call` words them (the trigger does not import ``bridge.aws``)."""
    try:
        return func(**kwargs)
    except NoCredentialsError:
        raise CredentialsError(
            f"{what}: no AWS credentials; configure the default chain (environment, profile, "
            "AWSShellScript@1) or use --role-arn / --web-identity"
        ) from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        reason = f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip()
        raise ServiceError(f"{what} failed: {reason}") from exc
    except BotoCoreError as exc:
        raise ServiceError(f"{what} failed: {str(exc) or type(exc).__name__}") from exc


def _replay_one(message: dict[str, Any], runtime: TriggerRuntime) -> dict[str, Any]:
    """Handle one dead-lettered message; never raises for that message's own failure."""
    try:
        result = handle(event_of_message(message["Body"]), LocalContext(), runtime)
    except IdempotencyAlreadyInProgressError:
        return {
            "status": "in-progress",
            "kept": True,
            "reason": "another invocation is starting this approval's run; left for later",
        }
    except (BridgeError, ValueError) as exc:
        return {"error": str(exc)}
    except (BotoCoreError, ClientError, IdempotencyError) as exc:
        # the ledger's or the idempotency records' AWS calls failed (throttled, unreachable):
        # this message stays for a later replay, the others are still handled
        return {"error": f"{type(exc).__name__}: {exc}"}
    if result.get("status") == "ignored" and result.get("reason") == "no route":
        return {
            **result,
            "kept": True,
            "reason": "no route for its group: kept in the queue (add a route, then replay)",
        }
    return result
