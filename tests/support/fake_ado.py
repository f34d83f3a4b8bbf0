"""A small Azure DevOps stand-in on ``responses``: runs and builds for pipelines, the service's
400 for undeclared template parameters, 401 for a wrong credential (HTTP 203 and a sign-in page
unless the request says ``X-TFS-FedAuthRedirect: Suppress``, as the service does), builds paged
with ``x-ms-continuationtoken`` when ``builds_page_size`` is set, and injectable faults.
Also environments, their check configurations, pipeline permissions on them and pipeline
approvals (``smbridge ado``), with list responses wrapped as the service wraps them
(``{"count", "value"}``).
Every request is held against the official OpenAPI specs (tests/support/ado_contract.py)."""

from __future__ import annotations

import base64
import json
import re
import uuid
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
ADMIN_ID = "3b3db741-9d03-4e32-a7c0-6c3dfc2013c1"
SIGN_IN_PAGE = (
    "<!DOCTYPE html><html><head><title>Azure DevOps Services | Sign In</title></head></html>"
)


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
    environments: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    approvals: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (resourceType, resourceId) -> ResourcePipelinePermissions as the service keeps it
    permissions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    admin_faults: deque[Fault] = field(default_factory=deque)  # next environment/check/approval
    completed_approval_status: int = 409  # what Approvals_Update answers for a non-pending one
    builds_page_size: int | None = None  # Builds_List: all in one answer unless set

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
            if request.headers.get("X-TFS-FedAuthRedirect") != "Suppress":
                return 203, {"Content-Type": "text/html; charset=utf-8"}, SIGN_IN_PAGE
            return 401, {}, ""
        if operation == "Runs_Run Pipeline":
            return self._run(request)
        if operation == "Builds_List":
            if self.list_faults:
                return self._fault(self.list_faults.popleft(), None)
            return self._builds(request)
        admin = _ADMIN_HANDLERS.get(operation)
        if admin is not None:
            if self.admin_faults:
                return self._fault(self.admin_faults.popleft(), None)
            return admin(self, request)
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
        return self._page(value, query.get("continuationToken"))

    def _page(self, value: list[Any], token: str | None) -> tuple[int, dict[str, str], str]:
        """One page of ``builds_page_size`` items; the token is the next item's offset."""
        if self.builds_page_size is None:
            return 200, {}, json.dumps({"count": len(value), "value": value})
        start = int(token or 0)
        page = value[start : start + self.builds_page_size]
        headers: dict[str, str] = {}
        if start + self.builds_page_size < len(value):
            headers["x-ms-continuationtoken"] = str(start + self.builds_page_size)
        return 200, headers, json.dumps({"count": len(page), "value": page})

    def post_count(self) -> int:
        return sum(1 for method, *_ in self.requests if method == "POST")

    # -- environments, checks, approvals ---------------------------------------------------------

    def operations(self) -> list[str]:
        """The operation ids of the requests so far, in order."""
        return [operation for *_, operation in self.requests]

    def add_environment(self, name: str) -> dict[str, Any]:
        environment = {
            "id": len(self.environments) + 1,
            "name": name,
            "description": "",
            "createdOn": _now(),
            "project": {"id": "d6b3e0ea-8197-4dec-831b-50e2e06ff95f", "name": "mlops"},
        }
        self.environments.append(environment)
        return environment

    def add_check(self, body: dict[str, Any]) -> dict[str, Any]:
        check = {
            **body,
            "id": 20 + len(self.checks),
            "createdOn": _now(),
            "modifiedOn": _now(),
            "createdBy": {"id": "3b3db741-9d03-4e32-a7c0-6c3dfc2013c1", "displayName": "Admin"},
        }
        self.checks.append(check)
        return check

    def add_approval(
        self, approvers: list[str], *, status: str = "pending", pipeline: str = "model-deploy"
    ) -> str:
        approval_id = str(uuid.uuid4())
        self.approvals[approval_id] = {
            "id": approval_id,
            "status": status,
            "createdOn": _now(),
            "lastModifiedOn": _now(),
            "executionOrder": "anyOrder",
            "minRequiredApprovers": 1,
            "instructions": "Check the endpoint tests",
            "blockedApprovers": [],
            "steps": [
                {
                    "assignedApprover": {"id": approver, "displayName": f"User {n}"},
                    "status": status,
                    "order": n,
                }
                for n, approver in enumerate(approvers, start=1)
            ],
            # returned by the service, though not in the 7.1 spec
            "pipeline": {
                "id": "13",
                "name": pipeline,
                "owner": {
                    "id": 1042,
                    "name": "20261123.7",
                    "_links": {"web": {"href": "https://dev.azure.com/x/mlops/_build?id=1042"}},
                },
            },
        }
        return approval_id

    def _environments_list(self, request: Any) -> tuple[int, dict[str, str], str]:
        name = _query(request).get("name", "").casefold()
        # the service's name filter is looser than equality: the client must compare itself
        value = [e for e in self.environments if name in e["name"].casefold()]
        return 200, {}, json.dumps({"count": len(value), "value": value})

    def _environments_add(self, request: Any) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body)
        if any(e["name"].casefold() == body["name"].casefold() for e in self.environments):
            message = f"Environment with name {body['name']} already exists."
            return 400, {}, json.dumps({"message": message})
        environment = self.add_environment(body["name"])
        environment["description"] = body.get("description", "")
        return 200, {}, json.dumps(environment)

    def _checks_list(self, request: Any) -> tuple[int, dict[str, str], str]:
        query = _query(request)
        value = [
            c
            for c in self.checks
            if c["resource"]["type"] == query.get("resourceType")
            and c["resource"]["id"] == query.get("resourceId")
        ]
        if query.get("$expand") != "settings":
            value = [{k: v for k, v in c.items() if k != "settings"} for c in value]
        return 200, {}, json.dumps({"count": len(value), "value": value})

    def _checks_add(self, request: Any) -> tuple[int, dict[str, str], str]:
        return 200, {}, json.dumps(self.add_check(json.loads(request.body)))

    def _checks_update(self, request: Any) -> tuple[int, dict[str, str], str]:
        check_id = int(urlsplit(request.url).path.rsplit("/", 1)[-1])
        check = next((c for c in self.checks if c["id"] == check_id), None)
        if check is None:
            return 404, {}, json.dumps({"message": f"Check configuration {check_id} not found"})
        check.update(json.loads(request.body), modifiedOn=_now())
        return 200, {}, json.dumps(check)

    def permit(self, resource_type: str, resource_id: str, *pipeline_ids: int) -> dict[str, Any]:
        """Authorise pipelines on a resource, as someone clicking Permit would."""
        permissions = self._permissions_of(resource_type, resource_id)
        for pipeline_id in pipeline_ids:
            self._authorise(permissions, {"id": pipeline_id, "authorized": True})
        return permissions

    def _permissions_of(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        return self.permissions.setdefault(
            (resource_type, resource_id),
            {"resource": {"type": resource_type, "id": resource_id}, "pipelines": []},
        )

    def _authorise(self, permissions: dict[str, Any], item: dict[str, Any]) -> None:
        pipelines = permissions["pipelines"]
        pipelines[:] = [p for p in pipelines if p["id"] != item["id"]]
        if item.get("authorized"):
            pipelines.append(
                {
                    "id": item["id"],
                    "authorized": True,
                    "authorizedBy": {"id": ADMIN_ID, "displayName": "Admin"},
                    "authorizedOn": _now(),
                }
            )

    def _resource_of(self, request: Any) -> tuple[str, str] | None:
        """(type, id) of a pipelinepermissions/{type}/{id} URL; ``None`` for an environment
        that does not exist (the service answers 404)."""
        *_, resource_type, resource_id = urlsplit(request.url).path.split("/")
        if resource_type == "environment" and not any(
            str(e["id"]) == resource_id for e in self.environments
        ):
            return None
        return resource_type, resource_id

    def _permissions_get(self, request: Any) -> tuple[int, dict[str, str], str]:
        resource = self._resource_of(request)
        if resource is None:
            return 404, {}, json.dumps({"message": "Resource not found"})
        return 200, {}, json.dumps(self._permissions_of(*resource))

    def _permissions_update(self, request: Any) -> tuple[int, dict[str, str], str]:
        resource = self._resource_of(request)
        if resource is None:
            return 404, {}, json.dumps({"message": "Resource not found"})
        permissions = self._permissions_of(*resource)
        body = json.loads(request.body)
        for item in body.get("pipelines") or []:
            self._authorise(permissions, item)
        if body.get("allPipelines") is not None:
            permissions["allPipelines"] = {"authorized": bool(body["allPipelines"]["authorized"])}
        return 200, {}, json.dumps(permissions)

    def _approval_view(self, approval: dict[str, Any], expand: str) -> dict[str, Any]:
        if "steps" in expand:
            return approval
        return {**approval, "steps": []}

    def _approvals_query(self, request: Any) -> tuple[int, dict[str, str], str]:
        query = _query(request)
        state = query.get("state", "all")
        value = [
            self._approval_view(a, query.get("$expand", ""))
            for a in self.approvals.values()
            if state == "all" or a["status"] == state
        ]
        return 200, {}, json.dumps({"count": len(value), "value": value})

    def _approvals_get(self, request: Any) -> tuple[int, dict[str, str], str]:
        approval_id = urlsplit(request.url).path.rsplit("/", 1)[-1]
        approval = self.approvals.get(approval_id)
        if approval is None:
            return 404, {}, json.dumps({"message": f"Approval {approval_id} not found"})
        view = self._approval_view(approval, _query(request).get("$expand", ""))
        return 200, {}, json.dumps(view)

    def _approvals_update(self, request: Any) -> tuple[int, dict[str, str], str]:
        updated = []
        for item in json.loads(request.body):
            approval = self.approvals.get(item["approvalId"])
            if approval is None:
                message = f"Approval {item['approvalId']} not found"
                return 404, {}, json.dumps({"message": message})
            if approval["status"] != "pending":
                message = f"The approval {item['approvalId']} is already completed."
                status = self.completed_approval_status
                return status, {}, json.dumps({"message": message, "typeKey": "ApprovalError"})
            approval["status"] = item["status"]
            approval["lastModifiedOn"] = _now()
            for step in approval["steps"]:
                step.update(status=item["status"], comment=item.get("comment", ""))
            updated.append(approval)
        return 200, {}, json.dumps({"count": len(updated), "value": updated})


_ADMIN_HANDLERS = {
    "Environments_List": FakeAzureDevOps._environments_list,
    "Environments_Add": FakeAzureDevOps._environments_add,
    "Check Configurations_List": FakeAzureDevOps._checks_list,
    "Check Configurations_Add": FakeAzureDevOps._checks_add,
    "Check Configurations_Update": FakeAzureDevOps._checks_update,
    "Pipeline Permissions_Get": FakeAzureDevOps._permissions_get,
    "Pipeline Permissions_Update Pipeline Permisions For Resource": (
        FakeAzureDevOps._permissions_update
    ),
    "Approvals_Query": FakeAzureDevOps._approvals_query,
    "Approvals_Get": FakeAzureDevOps._approvals_get,
    "Approvals_Update": FakeAzureDevOps._approvals_update,
}


def _query(request: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
