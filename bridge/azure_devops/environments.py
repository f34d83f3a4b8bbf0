"""Azure DevOps environments and their checks (the Approval check), on :class:`AzureDevOpsClient`.

Each ``*_request`` function describes one REST call (a dry run prints it); the function of the
same name without the suffix sends it and parses the answer into a dataclass. api-versions are
the ones the 7.1 specs name: ``Environments_*`` 7.1 (distributedTask), ``Check Configurations_*``
7.1-preview.1 (approvalsAndChecks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from bridge.azure_devops.client import (
    ApiRequest,
    AzureDevOpsClient,
    collection,
    response_json,
)

ENVIRONMENTS_API_VERSION = "7.1"
CHECKS_API_VERSION = "7.1-preview.1"
APPROVAL_CHECK_TYPE_ID = "8c6f20a7-a545-4486-9777-f762fafe0d4d"
APPROVAL_CHECK_TYPE_NAME = "Approval"
CONTINUATION_HEADER = "x-ms-continuationtoken"

ExecutionOrder = Literal["anyOrder", "inSequence"]

AUTH_HINT = "the credential was refused: check the PAT (or System.AccessToken) and its scopes"
ENVIRONMENT_HINTS: Mapping[int, str] = {
    401: AUTH_HINT,
    403: "the identity needs the Creator role on Pipelines > Environments (PAT scope "
    "'Environment: Read & manage')",
    404: "check the organization and project names",
}
CHECK_HINTS: Mapping[int, str] = {
    401: AUTH_HINT,
    403: "the identity needs the Administrator role on the environment to manage its checks",
    404: "check the organization, the project and that the environment still exists",
}


@dataclass(frozen=True)
class Environment:
    id: int
    name: str
    description: str = ""


@dataclass(frozen=True)
class Identity:
    """An approver: an Azure DevOps identity (user or group) id."""

    id: str
    display_name: str | None = None

    def as_json(self) -> dict[str, str]:
        data = {"id": self.id}
        if self.display_name:
            data["displayName"] = self.display_name
        return data


@dataclass(frozen=True)
class ApprovalCheck:
    """The desired Approval check: its settings plus the check's ``timeout`` (minutes)."""

    approvers: tuple[Identity, ...]
    min_required_approvers: int
    timeout_minutes: int
    instructions: str = ""
    requester_cannot_be_approver: bool = True
    execution_order: ExecutionOrder = "anyOrder"
    blocked_approvers: tuple[Identity, ...] = ()

    def settings(self) -> dict[str, Any]:
        """``ApprovalConfigSettings`` as the service takes it."""
        return {
            "approvers": [a.as_json() for a in self.approvers],
            "executionOrder": self.execution_order,
            "minRequiredApprovers": self.min_required_approvers,
            "instructions": self.instructions,
            "blockedApprovers": [a.as_json() for a in self.blocked_approvers],
            "requesterCannotBeApprover": self.requester_cannot_be_approver,
        }


@dataclass(frozen=True)
class CheckConfiguration:
    """A check configured on a resource, as ``Check Configurations - List`` returns it."""

    id: int
    type_id: str
    type_name: str
    resource_type: str
    resource_id: str
    resource_name: str = ""
    timeout: int | None = None
    is_disabled: bool = False
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def is_approval(self) -> bool:
        return self.type_id.lower() == APPROVAL_CHECK_TYPE_ID

    def approval(self) -> ApprovalCheck:
        """This check's settings read as an Approval check (missing fields get the defaults)."""
        s = self.settings
        return ApprovalCheck(
            approvers=_identities(s.get("approvers")),
            min_required_approvers=int(s.get("minRequiredApprovers") or 0),
            timeout_minutes=int(self.timeout or 0),
            instructions=str(s.get("instructions") or ""),
            requester_cannot_be_approver=bool(s.get("requesterCannotBeApprover", False)),
            execution_order=s.get("executionOrder") or "anyOrder",
            blocked_approvers=_identities(s.get("blockedApprovers")),
        )


def _identities(items: Any) -> tuple[Identity, ...]:
    return tuple(
        Identity(str(item["id"]), item.get("displayName"))
        for item in items or []
        if isinstance(item, dict) and item.get("id")
    )


def _environment(data: Mapping[str, Any]) -> Environment:
    return Environment(
        id=int(data["id"]),
        name=str(data.get("name", "")),
        description=str(data.get("description") or ""),
    )


def _check(data: Mapping[str, Any]) -> CheckConfiguration:
    check_type = data.get("type") or {}
    resource = data.get("resource") or {}
    return CheckConfiguration(
        id=int(data["id"]),
        type_id=str(check_type.get("id", "")),
        type_name=str(check_type.get("name", "")),
        resource_type=str(resource.get("type", "")),
        resource_id=str(resource.get("id", "")),
        resource_name=str(resource.get("name", "")),
        timeout=data.get("timeout"),
        is_disabled=bool(data.get("isDisabled", False)),
        settings=dict(data.get("settings") or {}),
    )


def _project(project: str) -> str:
    return quote(project, safe="")


# -- Environments --------------------------------------------------------------------------------


def list_environments_request(
    project: str, *, name: str | None = None, continuation_token: str | None = None
) -> ApiRequest:
    """``Environments - List``: ``GET {project}/_apis/distributedtask/environments``."""
    params: dict[str, Any] = {}
    if name:
        params["name"] = name
    if continuation_token:
        params["continuationToken"] = continuation_token
    return ApiRequest(
        "GET",
        f"{_project(project)}/_apis/distributedtask/environments",
        ENVIRONMENTS_API_VERSION,
        f"Environments - List{f' {name}' if name else ''} in {project}",
        params=params,
        hints=ENVIRONMENT_HINTS,
    )


def list_environments(
    client: AzureDevOpsClient, project: str, *, name: str | None = None, max_pages: int = 20
) -> list[Environment]:
    """All environments (``name`` filters on the service side), following continuation tokens:
    one request per page."""
    found: list[Environment] = []
    token: str | None = None
    for _ in range(max_pages):
        request = list_environments_request(project, name=name, continuation_token=token)
        response = client.send(request)
        found += [_environment(i) for i in collection(response_json(response, request.what))]
        token = response.headers.get(CONTINUATION_HEADER)
        if not token:
            break
    return found


def find_environment(client: AzureDevOpsClient, project: str, name: str) -> Environment | None:
    """The environment called ``name`` (names are case-insensitive), or ``None``."""
    wanted = name.casefold()
    for environment in list_environments(client, project, name=name):
        if environment.name.casefold() == wanted:
            return environment
    return None


def add_environment_request(project: str, name: str, description: str = "") -> ApiRequest:
    """``Environments - Add``: ``POST {project}/_apis/distributedtask/environments``."""
    return ApiRequest(
        "POST",
        f"{_project(project)}/_apis/distributedtask/environments",
        ENVIRONMENTS_API_VERSION,
        f"Environments - Add {name} in {project}",
        body={"name": name, "description": description},
        hints={
            **ENVIRONMENT_HINTS,
            400: "the name may be taken or invalid",
            409: "an environment with this name exists",
        },
    )


def add_environment(
    client: AzureDevOpsClient, project: str, name: str, description: str = ""
) -> Environment:
    return _environment(client.send_json(add_environment_request(project, name, description)))


# -- Check configurations ------------------------------------------------------------------------


def list_checks_request(project: str, resource_type: str, resource_id: str) -> ApiRequest:
    """``Check Configurations - List`` of one resource, with their settings (``$expand``)."""
    return ApiRequest(
        "GET",
        f"{_project(project)}/_apis/pipelines/checks/configurations",
        CHECKS_API_VERSION,
        f"Check Configurations - List on {resource_type} {resource_id} in {project}",
        params={"resourceType": resource_type, "resourceId": resource_id, "$expand": "settings"},
        hints=CHECK_HINTS,
    )


def list_checks(
    client: AzureDevOpsClient, project: str, resource_type: str, resource_id: str
) -> list[CheckConfiguration]:
    data = client.send_json(list_checks_request(project, resource_type, resource_id))
    return [_check(item) for item in collection(data)]


def approval_check_body(environment: Environment, check: ApprovalCheck) -> dict[str, Any]:
    """An ``ApprovalCheckConfiguration`` on ``environment`` (as in the recorded example)."""
    return {
        "type": {"id": APPROVAL_CHECK_TYPE_ID, "name": APPROVAL_CHECK_TYPE_NAME},
        "resource": {"type": "environment", "id": str(environment.id), "name": environment.name},
        "timeout": check.timeout_minutes,
        "settings": check.settings(),
    }


def add_approval_check_request(
    project: str, environment: Environment, check: ApprovalCheck
) -> ApiRequest:
    """``Check Configurations - Add``: ``POST {project}/_apis/pipelines/checks/configurations``."""
    return ApiRequest(
        "POST",
        f"{_project(project)}/_apis/pipelines/checks/configurations",
        CHECKS_API_VERSION,
        f"Check Configurations - Add Approval on environment {environment.name} in {project}",
        body=approval_check_body(environment, check),
        hints={**CHECK_HINTS, 400: "check the approver identity ids"},
    )


def add_approval_check(
    client: AzureDevOpsClient, project: str, environment: Environment, check: ApprovalCheck
) -> CheckConfiguration:
    return _check(client.send_json(add_approval_check_request(project, environment, check)))


def update_approval_check_request(
    project: str, check_id: int, environment: Environment, check: ApprovalCheck
) -> ApiRequest:
    """``Check Configurations - Update``: ``PATCH …/pipelines/checks/configurations/{id}``."""
    return ApiRequest(
        "PATCH",
        f"{_project(project)}/_apis/pipelines/checks/configurations/{int(check_id)}",
        CHECKS_API_VERSION,
        f"Check Configurations - Update {check_id} (Approval on environment {environment.name}) "
        f"in {project}",
        body=approval_check_body(environment, check),
        hints={**CHECK_HINTS, 400: "check the approver identity ids"},
    )


def update_approval_check(
    client: AzureDevOpsClient,
    project: str,
    check_id: int,
    environment: Environment,
    check: ApprovalCheck,
) -> CheckConfiguration:
    request = update_approval_check_request(project, check_id, environment, check)
    return _check(client.send_json(request))


def approval_differences(current: ApprovalCheck, desired: ApprovalCheck) -> list[str]:
    """Wire names of the fields that differ (approver ids compared case-insensitively; their
    order only matters ``inSequence``). ``blockedApprovers`` is not managed here."""
    changed: list[str] = []

    def ids(identities: Sequence[Identity]) -> list[str]:
        return [i.id.lower() for i in identities]

    current_ids, desired_ids = ids(current.approvers), ids(desired.approvers)
    if desired.execution_order == "anyOrder":
        current_ids, desired_ids = sorted(current_ids), sorted(desired_ids)
    if current_ids != desired_ids:
        changed.append("approvers")
    pairs = (
        ("minRequiredApprovers", current.min_required_approvers, desired.min_required_approvers),
        ("instructions", current.instructions.strip(), desired.instructions.strip()),
        (
            "requesterCannotBeApprover",
            current.requester_cannot_be_approver,
            desired.requester_cannot_be_approver,
        ),
        ("executionOrder", current.execution_order, desired.execution_order),
        ("timeout", current.timeout_minutes, desired.timeout_minutes),
    )
    changed += [name for name, old, new in pairs if old != new]
    return changed
