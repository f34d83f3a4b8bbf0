"""Azure DevOps administration as SDK functions: environments with a production Approval check,
and the approvals waiting on runs. Each takes a pydantic parameters model and returns a result
model; ``smbridge ado …`` (bridge/cli_ado.py) only maps arguments onto the parameters::

    from bridge.ado_setup import SetupParams, setup_environments
    from bridge.azure_devops.client import AzureDevOpsClient
    from bridge.azure_devops.credentials import credential_from_environ

    client = AzureDevOpsClient("contoso", credential_from_environ())
    params = SetupParams(organization="contoso", project="mlops",
                         environment_prefix="smbridge-demo",
                         approvers=[{"id": "3b3db741-9d03-4e32-a7c0-6c3dfc2013c1"}])
    print(setup_environments(params, client=client).approval_check.action)

``EnvironmentsSettings`` is the ``azure_devops.environments`` section of bridge.yaml. This module
is imported by bridge/config.py, so it loads no HTTP code at import time (the Azure DevOps modules
are imported by the functions that use them).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import quote_plus

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from bridge.errors import UserError
from bridge.output import Reporter

if TYPE_CHECKING:
    from bridge.azure_devops.client import ApiRequest, AzureDevOpsClient
    from bridge.azure_devops.environments import (
        ApprovalCheck,
        CheckConfiguration,
        Environment,
    )

ENVIRONMENT_SUFFIXES = ("staging", "production")
DEFAULT_TIMEOUT_MINUTES = 3 * 24 * 60  # 4320: three days
MAX_TIMEOUT_MINUTES = 30 * 24 * 60  # 43200: thirty days, the check's maximum
ENVIRONMENT_DESCRIPTION = "Managed by smbridge ado setup"

# Letters, digits, '.', '_' and '-' (the suffix '-production' is added to it).
EnvironmentPrefix = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")
]
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


# -- bridge.yaml: azure_devops.environments -----------------------------------------------------


class Approver(_Model):
    """An Azure DevOps identity (user or group) by id; ``display_name`` is informational."""

    id: uuid.UUID
    display_name: str | None = None


class ProductionApproval(_Model):
    """The Approval check on the production environment."""

    approvers: list[Approver] = Field(min_length=1, max_length=50)
    minimum_approvers: int = Field(1, ge=1)
    timeout_minutes: int = Field(DEFAULT_TIMEOUT_MINUTES, ge=1, le=MAX_TIMEOUT_MINUTES)
    instructions: str = Field("", max_length=4000)
    requester_cannot_approve: bool = True
    execution_order: Literal["anyOrder", "inSequence"] = "anyOrder"

    @model_validator(mode="after")
    def _consistent(self) -> ProductionApproval:
        # phrased to follow "expected" in bridge/config.py's one-line errors
        ids = [a.id for a in self.approvers]
        twice = sorted({str(i) for i in ids if ids.count(i) > 1})
        if twice:
            raise PydanticCustomError(
                "duplicate_approver", "each approver id once, got {id} twice", {"id": twice[0]}
            )
        if self.minimum_approvers > len(self.approvers):
            raise PydanticCustomError(
                "too_few_approvers",
                "minimum_approvers at most the number of approvers ({count}), got {minimum}",
                {"count": len(self.approvers), "minimum": self.minimum_approvers},
            )
        return self


class EnvironmentsSettings(_Model):
    """``azure_devops.environments`` in bridge.yaml: ``<prefix>-staging`` and
    ``<prefix>-production``, the latter guarded by ``production_approval``."""

    prefix: EnvironmentPrefix
    production_approval: ProductionApproval


# -- parameters ---------------------------------------------------------------------------------


class SetupParams(ProductionApproval):
    """What ``setup_environments`` needs (the approval fields are ``ProductionApproval``'s)."""

    organization: NonEmpty
    project: NonEmpty
    environment_prefix: EnvironmentPrefix
    dry_run: bool = False

    @classmethod
    def from_settings(
        cls,
        settings: EnvironmentsSettings,
        *,
        organization: str,
        project: str,
        prefix: str | None = None,
        dry_run: bool = False,
    ) -> SetupParams:
        return cls(
            organization=organization,
            project=project,
            environment_prefix=prefix or settings.prefix,
            dry_run=dry_run,
            **settings.production_approval.model_dump(),
        )

    @property
    def environment_names(self) -> tuple[str, str]:
        """(staging, production)."""
        staging, production = (f"{self.environment_prefix}-{s}" for s in ENVIRONMENT_SUFFIXES)
        return staging, production

    def approval_check(self) -> ApprovalCheck:
        from bridge.azure_devops.environments import ApprovalCheck, Identity

        return ApprovalCheck(
            approvers=tuple(Identity(str(a.id), a.display_name) for a in self.approvers),
            min_required_approvers=self.minimum_approvers,
            timeout_minutes=self.timeout_minutes,
            instructions=self.instructions,
            requester_cannot_be_approver=self.requester_cannot_approve,
            execution_order=self.execution_order,
        )


class ApprovalsListParams(_Model):
    organization: NonEmpty
    project: NonEmpty
    state: Literal[
        "pending", "approved", "rejected", "skipped", "canceled", "timedOut", "completed", "all"
    ] = "pending"
    top: int | None = Field(None, ge=1, le=1000)
    dry_run: bool = False


class ApprovalDecisionParams(_Model):
    organization: NonEmpty
    project: NonEmpty
    approval_id: uuid.UUID
    comment: str = Field(min_length=1, max_length=4000)
    dry_run: bool = False


# -- results ------------------------------------------------------------------------------------


class PlannedRequest(BaseModel):
    method: str
    url: str
    body: Any = None
    when: str = ""


class EnvironmentOutcome(BaseModel):
    name: str
    id: int | None = None
    action: Literal["created", "unchanged", "planned"]


class CheckOutcome(BaseModel):
    environment: str
    id: int | None = None
    action: Literal["created", "updated", "unchanged", "planned"]
    changed: list[str] = Field(default_factory=list)


class SetupResult(BaseModel):
    organization: str
    project: str
    environments: list[EnvironmentOutcome]
    approval_check: CheckOutcome
    requests_made: int = 0
    planned_requests: list[PlannedRequest] = Field(default_factory=list)


class ApprovalsResult(BaseModel):
    project: str
    state: str
    approvals: list[dict[str, Any]] = Field(default_factory=list)
    planned_requests: list[PlannedRequest] = Field(default_factory=list)


class ApprovalDecisionResult(BaseModel):
    approval_id: str
    decision: Literal["approved", "rejected"]
    status: str
    approval: dict[str, Any] | None = None
    planned_requests: list[PlannedRequest] = Field(default_factory=list)


class ApprovalNotPending(UserError):
    """The approval was already approved, rejected, canceled or timed out."""


# -- setup --------------------------------------------------------------------------------------


def setup_environments(
    params: SetupParams,
    *,
    client: AzureDevOpsClient | None = None,
    reporter: Reporter | None = None,
) -> SetupResult:
    """Ensure ``<prefix>-staging`` and ``<prefix>-production`` exist and production has exactly
    one Approval check with these settings. Idempotent: when everything matches, only GETs are
    made; a differing check is updated (one PATCH) and the changed fields reported."""
    from bridge.azure_devops import environments as ado

    reporter = reporter or Reporter()
    staging, production = params.environment_names
    desired = params.approval_check()
    if params.dry_run:
        return _setup_plan(params, desired, reporter)
    if client is None:
        raise UserError("setup needs an Azure DevOps client (or dry_run=True)")
    before = client.requests_made
    outcomes: list[EnvironmentOutcome] = []
    found: dict[str, Environment] = {}
    title = f"Azure DevOps environments in {params.organization}/{params.project}"
    with reporter.group(title):
        for name in (staging, production):
            environment, action = _ensure_environment(client, params.project, name)
            found[name] = environment
            outcomes.append(EnvironmentOutcome(name=name, id=environment.id, action=action))
            reporter.info(f"environment {name}: {action} (id {environment.id})")
        environment = found[production]
        checks: list[CheckConfiguration] = []
        if outcomes[-1].action != "created":  # a new environment has no checks yet
            checks = ado.list_checks(client, params.project, "environment", str(environment.id))
        approvals = [c for c in checks if c.is_approval]
        if len(approvals) > 1:
            ids = ", ".join(str(c.id) for c in approvals)
            raise UserError(
                f"environment {production} has {len(approvals)} Approval checks (ids {ids}); "
                "expected one: remove the extra ones (Environments > Approvals and checks) and "
                "run setup again"
            )
        if not approvals:
            check = ado.add_approval_check(client, params.project, environment, desired)
            outcome = CheckOutcome(environment=production, id=check.id, action="created")
        else:
            current = approvals[0]
            if current.is_disabled:
                reporter.warning(f"the Approval check {current.id} on {production} is disabled")
            existing = current.approval()
            changed = ado.approval_differences(existing, desired)
            if changed:
                # keep identities someone blocked by hand: this setup does not manage them
                merged = dataclasses.replace(desired, blocked_approvers=existing.blocked_approvers)
                ado.update_approval_check(client, params.project, current.id, environment, merged)
                outcome = CheckOutcome(
                    environment=production, id=current.id, action="updated", changed=changed
                )
            else:
                outcome = CheckOutcome(environment=production, id=current.id, action="unchanged")
        detail = f": {', '.join(outcome.changed)}" if outcome.changed else ""
        reporter.info(
            f"Approval check on {production}: {outcome.action} (id {outcome.id}){detail}; "
            f"{params.minimum_approvers} of {len(params.approvers)} approver(s), "
            f"timeout {params.timeout_minutes} min"
        )
    return SetupResult(
        organization=params.organization,
        project=params.project,
        environments=outcomes,
        approval_check=outcome,
        requests_made=client.requests_made - before,
    )


def _ensure_environment(
    client: AzureDevOpsClient, project: str, name: str
) -> tuple[Environment, Literal["created", "unchanged"]]:
    from bridge.azure_devops import environments as ado
    from bridge.azure_devops.client import AzureDevOpsError

    existing = ado.find_environment(client, project, name)
    if existing is not None:
        return existing, "unchanged"
    try:
        return ado.add_environment(client, project, name, ENVIRONMENT_DESCRIPTION), "created"
    except AzureDevOpsError as exc:
        # another setup may have created it between our GET and POST
        if exc.status in (400, 409):
            existing = ado.find_environment(client, project, name)
            if existing is not None:
                return existing, "unchanged"
        raise


def _setup_plan(params: SetupParams, desired: ApprovalCheck, reporter: Reporter) -> SetupResult:
    from bridge.azure_devops import environments as ado
    from bridge.azure_devops.client import organization_url

    base = organization_url(params.organization)
    staging, production = params.environment_names
    placeholder = f"{{id of {production}}}"
    planned: list[PlannedRequest] = []
    for name in (staging, production):
        planned.append(_planned(ado.list_environments_request(params.project, name=name), base))
        add = ado.add_environment_request(params.project, name, ENVIRONMENT_DESCRIPTION)
        planned.append(_planned(add, base, "if it does not exist"))
    environment = ado.Environment(id=0, name=production)
    listing = ado.list_checks_request(params.project, "environment", placeholder)
    planned.append(_planned(listing, base, f"if {production} already exists", placeholder))
    add_check = ado.add_approval_check_request(params.project, environment, desired)
    planned.append(_planned(add_check, base, "if it has no Approval check", placeholder))
    update = ado.update_approval_check_request(params.project, 0, environment, desired)
    planned.append(
        _planned(update, base, "if its Approval check differs", placeholder, "{check id}")
    )
    _print_plan(reporter, "setup", planned)
    return SetupResult(
        organization=params.organization,
        project=params.project,
        environments=[EnvironmentOutcome(name=n, action="planned") for n in (staging, production)],
        approval_check=CheckOutcome(environment=production, action="planned"),
        planned_requests=planned,
    )


def _planned(
    request: ApiRequest,
    base_url: str,
    when: str = "",
    environment_id: str | None = None,
    check_id: str | None = None,
) -> PlannedRequest:
    """A request for a dry run; unknown ids (environment, check) appear as ``{…}``."""
    url = request.url(base_url)
    body = request.body
    if environment_id:
        url = url.replace(quote_plus(environment_id), environment_id)
        if isinstance(body, dict) and "resource" in body:
            body = {**body, "resource": {**body["resource"], "id": environment_id}}
    if check_id:
        url = url.replace("/configurations/0?", f"/configurations/{check_id}?")
    return PlannedRequest(method=request.method, url=url, body=body, when=when)


def _print_plan(reporter: Reporter, command: str, planned: list[PlannedRequest]) -> None:
    with reporter.group(f"Dry run: Azure DevOps requests {command} would make (none made)"):
        previous: Any = None
        for request in planned:
            when = f"  [{request.when}]" if request.when else ""
            reporter.info(f"{request.method} {request.url}{when}")
            if request.body is not None:
                same = request.body == previous
                reporter.info("  (same body)" if same else f"  {json.dumps(request.body)}")
            previous = request.body


# -- approvals ----------------------------------------------------------------------------------


def list_approvals(
    params: ApprovalsListParams,
    *,
    client: AzureDevOpsClient | None = None,
    reporter: Reporter | None = None,
) -> ApprovalsResult:
    """The approvals in ``params.state`` (default: pending) of the project, with approvers."""
    from bridge.azure_devops import approvals as api
    from bridge.azure_devops.client import organization_url

    reporter = reporter or Reporter()
    request = api.list_approvals_request(params.project, state=params.state, top=params.top)
    if params.dry_run:
        planned = [_planned(request, organization_url(params.organization))]
        _print_plan(reporter, "approvals list", planned)
        return ApprovalsResult(project=params.project, state=params.state, planned_requests=planned)
    if client is None:
        raise UserError("approvals list needs an Azure DevOps client (or dry_run=True)")
    found = api.list_approvals(client, params.project, state=params.state, top=params.top)
    if not found:
        reporter.info(f"no {params.state} approvals in {params.project}")
    else:
        reporter.table(
            ["ID", "STATUS", "PIPELINE", "RUN", "CREATED", "APPROVERS"],
            [
                [
                    a.id,
                    a.status,
                    a.pipeline_name or "-",
                    a.run_name or "-",
                    a.created_on[:19].replace("T", " ") or "-",
                    _approvers_text(a),
                ]
                for a in found
            ],
        )
    return ApprovalsResult(
        project=params.project, state=params.state, approvals=[a.as_dict() for a in found]
    )


def _approvers_text(approval: Any) -> str:
    names = [s.approver_name or s.approver_id for s in approval.steps]
    need = approval.min_required_approvers or len(names)
    return f"{need} of {', '.join(names)}" if names else "-"


def approve(
    params: ApprovalDecisionParams,
    *,
    client: AzureDevOpsClient | None = None,
    reporter: Reporter | None = None,
) -> ApprovalDecisionResult:
    """Approve one pending approval with a comment."""
    return _decide(params, "approved", client, reporter or Reporter())


def reject(
    params: ApprovalDecisionParams,
    *,
    client: AzureDevOpsClient | None = None,
    reporter: Reporter | None = None,
) -> ApprovalDecisionResult:
    """Reject one pending approval with a comment."""
    return _decide(params, "rejected", client, reporter or Reporter())


def _decide(
    params: ApprovalDecisionParams,
    decision: Literal["approved", "rejected"],
    client: AzureDevOpsClient | None,
    reporter: Reporter,
) -> ApprovalDecisionResult:
    from bridge.azure_devops import approvals as api
    from bridge.azure_devops.client import AzureDevOpsError, organization_url

    approval_id = str(params.approval_id)
    request = api.update_approval_request(params.project, approval_id, decision, params.comment)
    verb = "approve" if decision == "approved" else "reject"
    if params.dry_run:
        planned = [_planned(request, organization_url(params.organization))]
        _print_plan(reporter, f"approvals {verb}", planned)
        return ApprovalDecisionResult(
            approval_id=approval_id, decision=decision, status="planned", planned_requests=planned
        )
    if client is None:
        raise UserError(f"approvals {verb} needs an Azure DevOps client (or dry_run=True)")
    try:
        approval = api.update_approval(
            client, params.project, approval_id, decision, params.comment
        )
    except AzureDevOpsError as exc:
        if exc.status not in (400, 409):
            raise
        # say why in one line: look at the approval's state (one GET, on this error path only)
        try:
            current = api.get_approval(client, params.project, approval_id)
        except AzureDevOpsError:
            raise exc from None
        if current.status != "pending":
            raise ApprovalNotPending(
                f"approval {approval_id} is already {current.status}: it cannot be "
                f"{decision} any more"
            ) from None
        raise
    if approval.status == "pending":
        reporter.info(
            f"approval {approval_id}: {decision} by this identity; still pending "
            f"(needs {approval.min_required_approvers or 'all'} approver(s))"
        )
    else:
        reporter.info(f"approval {approval_id}: {approval.status}")
    return ApprovalDecisionResult(
        approval_id=approval_id,
        decision=decision,
        status=approval.status,
        approval=approval.as_dict(),
    )
