"""A small Azure DevOps stand-in on ``responses``: runs and builds for pipelines, the service's
400 for undeclared template parameters, 401 for a wrong credential, and injectable faults.
Every request is held against the official OpenAPI specs (tests/support/ado_contract.py)."""

from __future__ import annotations

import base64
import json
import re
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import responses

from tests.support.ado_contract import AzureDevOpsContract

# What azure-pipelines/model-deploy.yml declares: the service answers 400 to anything else.
DECLARED_PARAMETERS = frozenset(
    {"modelPackageArn", "modelPackageGroupName", "modelPackageVersion", "sourceEventId"}
)
_CONTRACT = AzureDevOpsContract()


@dataclass
class Fault:
    """What the next POST …/runs gets instead of a plain success.

    kind: ``status`` (answer ``status`` with ``headers``), ``timeout`` or ``connection``.
    processed: the run is created anyway (the response was lost or an error came after).
    """

    kind: str
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    processed: bool = False


@dataclass
class FakeAzureDevOps:
    pat: str = "fake-pat"
    declared: frozenset[str] = DECLARED_PARAMETERS
    pipelines: frozenset[int] = frozenset({12, 13})
    runs: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, Any, str]] = field(default_factory=list)
    faults: deque[Fault] = field(default_factory=deque)
    list_faults: deque[Fault] = field(default_factory=deque)
    accepted_auth: set[str] = field(default_factory=set)

    def install(self, mock: responses.RequestsMock) -> FakeAzureDevOps:
        pattern = re.compile(r"https://dev\.azure\.com/.*")
        for method in ("GET", "POST", "PATCH", "PUT", "DELETE"):
            mock.add_callback(method, pattern, callback=self._handle)
        return self

    def _authorised(self, header: str) -> bool:
        expected = "Basic " + base64.b64encode(f":{self.pat}".encode()).decode()
        return header == expected or header in self.accepted_auth

    def _handle(self, request: Any) -> tuple[int, dict[str, str], str]:
        operation = _CONTRACT.check(request.method, request.url, request.body)
        auth = request.headers.get("Authorization", "")
        self.requests.append((request.method, request.url, request.body, operation))
        if not self._authorised(auth):
            return 401, {}, ""
        if operation == "Runs_Run Pipeline":
            return self._run(request)
        if operation == "Builds_List":
            if self.list_faults:
                return self._fault(self.list_faults.popleft(), None)
            return self._builds(request)
        return 404, {}, json.dumps({"message": "not faked"})

    def _fault(self, fault: Fault, create: Any) -> tuple[int, dict[str, str], str]:
        if fault.processed and create is not None:
            create()
        if fault.kind == "timeout":
            raise requests.ReadTimeout("read timed out")
        if fault.kind == "connection":
            raise requests.ConnectionError("connection reset by peer")
        return fault.status, fault.headers, json.dumps({"message": f"fault {fault.status}"})

    def _run(self, request: Any) -> tuple[int, dict[str, str], str]:
        path = urlsplit(request.url).path.split("/")
        project, pipeline_id = path[2], int(path[5])
        body = json.loads(request.body)
        parameters = body.get("templateParameters", {})

        def create() -> dict[str, Any]:
            run_id = 1000 + len(self.runs)
            run = {
                "id": run_id,
                "name": f"20261123.{run_id}",
                "state": "inProgress",
                "pipelineId": pipeline_id,
                "project": project,
                "templateParameters": parameters,
                "refName": body.get("resources", {})
                .get("repositories", {})
                .get("self", {})
                .get("refName"),
                "queueTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "_links": {
                    "web": {"href": f"https://dev.azure.com/x/{project}/_build?id={run_id}"}
                },
            }
            self.runs.append(run)
            return run

        if self.faults:
            return self._fault(self.faults.popleft(), create)
        if pipeline_id not in self.pipelines:
            return 404, {}, json.dumps({"message": f"Pipeline {pipeline_id} not found."})
        undeclared = sorted(set(parameters) - self.declared)
        if undeclared:
            message = f"Unexpected parameter '{undeclared[0]}'"
            return 400, {}, json.dumps({"message": message, "typeKey": "PipelineValidation"})
        run = create()
        headers = {"X-RateLimit-Resource": "core", "X-RateLimit-Remaining": "150"}
        return 200, headers, json.dumps(run)

    def _builds(self, request: Any) -> tuple[int, dict[str, str], str]:
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        definition = int(query["definitions"])
        min_time = query.get("minTime")
        value = []
        for run in reversed(self.runs):
            if run["pipelineId"] != definition:
                continue
            if min_time and _parse(run["queueTime"]) < _parse(min_time):
                continue
            value.append(
                {
                    "id": run["id"],
                    "buildNumber": run["name"],
                    "status": "inProgress",
                    "queueTime": run["queueTime"],
                    "templateParameters": run["templateParameters"],
                    "_links": run["_links"],
                }
            )
        return 200, {}, json.dumps({"count": len(value), "value": value})

    def post_count(self) -> int:
        return sum(1 for method, *_ in self.requests if method == "POST")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
