"""Azure DevOps environments and their checks (the Approval check, the Exclusive Lock check), on
:class:`AzureDevOpsClient`.

Each ``*_request`` function describes one REST call (a dry run prints it); the function of the
same name without the suffix sends it and parses the answer into a dataclass. api-versions are
the ones the 7.1 specs name: ``Environments_*`` 7.1 (distributedTask), ``Check Configurations_*``
7.1-preview.1 (approvalsAndChecks).

No answer is parsed unchecked: a 2xx without what the bridge needs (an ``id``, an object where the
spec has one, a list in ``value``) is one :class:`AzureDevOpsError` naming the operation and the
field, never a ``KeyError`` or ``TypeError``. Fields the bridge does not need may be absent; a
field that is present must have the type the spec gives it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from bridge.azure_devops.client import (
    ApiRequest,
    AzureDevOpsClient,
    collection,
    integer_field,
    json_object,
    optional_boolean,
    optional_integer,
    optional_object,
    optional_objects,
    optional_text,
    required_text,
    response_json,
    wrong_type,
)

if TYPE_CHECKING:
    import requests

ENVIRONMENTS_API_VERSION = "7.1"
CHECKS_API_VERSION = "7.1-preview.1"
APPROVAL_CHECK_TYPE_ID = "8c6f20a7-a545-4486-9777-f762fafe0d4d"
APPROVAL_CHECK_TYPE_NAME = "Approval"
# The Exclusive Lock check: without it on an environment, a stage's ``lockBehavior`` (model-deploy
# uses ``sequential``) has nothing to lock, and runs for successive approvals deploy at once.
# Its settings are empty. Type id and name as Microsoft's Terraform provider
# (azuredevops_check_exclusive_lock) and reference/README.md give them; the checks spec has no
# subtype for it, so its body is a ``GenericCheckConfiguration``.
EXCLUSIVE_LOCK_CHECK_TYPE_ID = "2ef31ad6-baa0-403a-8b45-2cbc9b4e5563"
EXCLUSIVE_LOCK_CHECK_TYPE_NAME = "ExclusiveLock"
# How long a stage waits for the lock before it fails: the longest a check allows (30 days), as
# in the provider's example, so a run queued behind a three-day approval still gets its turn.
EXCLUSIVE_LOCK_TIMEOUT_MINUTES = 30 * 24 * 60
CONTINUATION_HEADER = "x-ms-continuationtoken"

ExecutionOrder = Literal["anyOrder", "inSequence"]
# ``ApprovalExecutionOrder`` (ApprovalConfig in the checks spec): its two names. A check's
# settings are kept as they were sent, so a check made by another client (the web UI, a script)
# can carry the enum's number instead: 1 and 2 on the service side.
EXECUTION_ORDERS: tuple[ExecutionOrder, ...] = ("anyOrder", "inSequence")
EXECUTION_ORDER_NUMBERS: Mapping[int, ExecutionOrder] = {1: "anyOrder", 2: "inSequence"}

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

    @property
    def is_exclusive_lock(self) -> bool:
        """By type id (any case: clients send it upper- or lower-case), or by name when the
        answer carries no id."""
        if self.type_id:
            return self.type_id.lower() == EXCLUSIVE_LOCK_CHECK_TYPE_ID
        return self.type_name.casefold() == EXCLUSIVE_LOCK_CHECK_TYPE_NAME.casefold()

    def approval(self, context: str = "") -> ApprovalCheck:
        """This check's settings read as an Approval check (``ApprovalConfigSettings``; missing
        fields get the defaults, a field of the wrong type is an error starting ``context``)."""
        context = context or f"Approval check {self.id}"
        s = self.settings
        order = s.get("executionOrder")
        if order is not None and (isinstance(order, bool) or not isinstance(order, str | int)):
            raise wrong_type(context, "'settings.executionOrder'", "a string", order)
        return ApprovalCheck(
            approvers=_identities(s, "approvers", context, "settings."),
            min_required_approvers=optional_integer(s, "minRequiredApprovers", context, "settings.")
            or 0,
            timeout_minutes=self.timeout or 0,
            instructions=optional_text(s, "instructions", context, "settings."),
            requester_cannot_be_approver=bool(
                optional_boolean(s, "requesterCannotBeApprover", context, "settings.")
            ),
            execution_order=execution_order_name(order),
            blocked_approvers=_identities(s, "blockedApprovers", context, "settings."),
        )


def execution_order_name(value: Any) -> str:
    """``anyOrder`` or ``inSequence`` for either form the service may answer with (the name, in
    any case, or the enum's number); absent means ``anyOrder`` (the service's default). Anything
    else is kept as text, so it differs from what is wanted and setup writes it again."""
    if value is None:
        return "anyOrder"
    if isinstance(value, int) and not isinstance(value, bool):
        return EXECUTION_ORDER_NUMBERS.get(value, str(value))
    text = str(value).strip()
    return next((name for name in EXECUTION_ORDERS if name.casefold() == text.casefold()), text)


# -- Reading answers (helpers beside client.integer_field; ``where`` prefixes nested names) ----


def _identities(
    data: Mapping[str, Any], key: str, context: str, where: str = ""
) -> tuple[Identity, ...]:
    """``IdentityRef`` items: each needs its ``id``."""
    return tuple(
        Identity(
            required_text(item, "id", context, f"{where}{key}[{n}]."),
            optional_text(item, "displayName", context, f"{where}{key}[{n}].") or None,
        )
        for n, item in enumerate(optional_objects(data, key, context, where), 1)
    )


def answer(client: AzureDevOpsClient, request: ApiRequest) -> tuple[requests.Response, Any, str]:
    """Send ``request``: the response, its JSON body (``None`` if empty) and the context an
    error about that body starts with (``"<request.what>: HTTP 200"``)."""
    response = client.send(request)
    data = response_json(response, request.what)
    return response, data, f"{request.what}: HTTP {response.status_code}"


def _environment(data: Any, context: str) -> Environment:
    """An ``EnvironmentInstance`` (distributedTask 7.1): ``id`` is needed."""
    environment = json_object(data, context)
    return Environment(
        id=integer_field(environment, "id", context),
        name=optional_text(environment, "name", context),
        description=optional_text(environment, "description", context),
    )


def _check(data: Any, context: str) -> CheckConfiguration:
    """A ``CheckConfiguration`` (approvalsAndChecks 7.1): ``id`` is needed; an Approval check's
    ``settings`` (``ApprovalConfigSettings``) are checked here, where the operation is known."""
    check = json_object(data, context)
    check_type = optional_object(check, "type", context)
    resource = optional_object(check, "resource", context)
    configuration = CheckConfiguration(
        id=integer_field(check, "id", context),
        type_id=optional_text(check_type, "id", context, "type."),
        type_name=optional_text(check_type, "name", context, "type."),
        resource_type=optional_text(resource, "type", context, "resource."),
        resource_id=optional_text(resource, "id", context, "resource."),
        resource_name=optional_text(resource, "name", context, "resource."),
        timeout=optional_integer(check, "timeout", context),
        is_disabled=bool(optional_boolean(check, "isDisabled", context)),
        settings=dict(optional_object(check, "settings", context)),
    )
    if configuration.is_approval:
        configuration.approval(context)
    return configuration


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
        response, data, context = answer(client, request)
        found += [
            _environment(item, f"{context}, item {n} of 'value'")
            for n, item in enumerate(collection(data, context), 1)
        ]
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
    _, data, context = answer(client, add_environment_request(project, name, description))
    environment = _environment(data, context)
    return environment if environment.name else replace(environment, name=name)


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
    _, data, context = answer(client, list_checks_request(project, resource_type, resource_id))
    return [
        _check(item, f"{context}, item {n} of 'value'")
        for n, item in enumerate(collection(data, context), 1)
    ]


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
    _, data, context = answer(client, add_approval_check_request(project, environment, check))
    return _check(data, context)


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
    _, data, context = answer(client, request)
    return _check(data, context)


def exclusive_lock_check_body(environment: Environment) -> dict[str, Any]:
    """An Exclusive Lock check on ``environment``: type, resource, timeout, empty settings."""
    return {
        "type": {"id": EXCLUSIVE_LOCK_CHECK_TYPE_ID, "name": EXCLUSIVE_LOCK_CHECK_TYPE_NAME},
        "resource": {"type": "environment", "id": str(environment.id), "name": environment.name},
        "timeout": EXCLUSIVE_LOCK_TIMEOUT_MINUTES,
        "settings": {},
    }


def add_exclusive_lock_check_request(project: str, environment: Environment) -> ApiRequest:
    """``Check Configurations - Add`` of an Exclusive Lock check on ``environment``."""
    return ApiRequest(
        "POST",
        f"{_project(project)}/_apis/pipelines/checks/configurations",
        CHECKS_API_VERSION,
        f"Check Configurations - Add ExclusiveLock on environment {environment.name} in {project}",
        body=exclusive_lock_check_body(environment),
        hints=CHECK_HINTS,
    )


def add_exclusive_lock_check(
    client: AzureDevOpsClient, project: str, environment: Environment
) -> CheckConfiguration:
    _, data, context = answer(client, add_exclusive_lock_check_request(project, environment))
    return _check(data, context)


def approval_differences(current: ApprovalCheck, desired: ApprovalCheck) -> list[str]:
    """Wire names of the fields that differ (approver ids compared case-insensitively; their
    order only matters ``inSequence``; ``executionOrder`` by name, whether it came as the name
    or the enum's number). ``blockedApprovers`` is not managed here."""
    changed: list[str] = []

    def ids(identities: Sequence[Identity]) -> list[str]:
        return [i.id.lower() for i in identities]

    current_order = execution_order_name(current.execution_order)
    desired_order = execution_order_name(desired.execution_order)
    current_ids, desired_ids = ids(current.approvers), ids(desired.approvers)
    if desired_order == "anyOrder":
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
        ("executionOrder", current_order, desired_order),
        ("timeout", current.timeout_minutes, desired.timeout_minutes),
    )
    changed += [name for name, old, new in pairs if old != new]
    return changed
