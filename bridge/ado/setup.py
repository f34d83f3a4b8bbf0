"""Azure DevOps administration as SDK functions: environments with an Exclusive Lock check each,
a production Approval check and the model-deploy pipeline authorised on both; and the approvals
waiting on runs. Each takes a pydantic parameters model and returns a result
model; ``smbridge ado …`` (bridge/cli/ado.py) only maps arguments onto the parameters::

    from bridge.ado.setup import SetupParams, connect, setup_environments

    client = connect("contoso")  # SYSTEM_ACCESSTOKEN, SMBRIDGE_ADO_PAT or AZURE_DEVOPS_EXT_PAT
    params = SetupParams(organization="contoso", project="mlops",
                         environment_prefix="smbridge-demo",
                         approvers=[{"id": "3b3db741-9d03-4e32-a7c0-6c3dfc2013c1"}],
                         pipeline_id=13)
    print(setup_environments(params, client=client).approval_check.action)

``EnvironmentsSettings``, the ``azure_devops.environments`` section of bridge.yaml, lives in
bridge/settings/ado.py; ``SetupParams.from_settings`` maps it onto the parameters. The Azure DevOps
modules are imported by the functions that use them, so importing this one loads no HTTP code.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import quote, quote_plus

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bridge.core.output import Reporter
from bridge.core.plan import AZURE_DEVOPS, Plan, PlannedStep
from bridge.errors import UserError
from bridge.settings.ado import EnvironmentPrefix, EnvironmentsSettings, ProductionApproval

if TYPE_CHECKING:
    from bridge.azure_devops.client import ApiRequest, AzureDevOpsClient
    from bridge.azure_devops.environments import (
        ApprovalCheck,
        CheckConfiguration,
        Environment,
    )

ENVIRONMENT_SUFFIXES = ("staging", "production")
ENVIRONMENT_DESCRIPTION = "Managed by smbridge ado setup"

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


# -- parameters ---------------------------------------------------------------------------------


class SetupParams(ProductionApproval):
    """What ``setup_environments`` needs (the approval fields are ``ProductionApproval``'s)."""

    organization: NonEmpty
    project: NonEmpty
    environment_prefix: EnvironmentPrefix
    pipeline_id: int | None = Field(None, ge=1)
    trigger_identity: uuid.UUID | None = None
    dry_run: bool = False

    @classmethod
    def from_settings(
        cls,
        settings: EnvironmentsSettings,
        *,
        organization: str,
        project: str,
        prefix: str | None = None,
        pipeline_id: int | None = None,
        dry_run: bool = False,
    ) -> SetupParams:
        return cls(
            organization=organization,
            project=project,
            environment_prefix=prefix or settings.prefix,
            pipeline_id=pipeline_id if pipeline_id is not None else settings.pipeline_id,
            trigger_identity=settings.trigger_identity,
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


class PermissionOutcome(BaseModel):
    environment: str
    pipeline_id: int
    action: Literal["authorised", "unchanged", "planned"]
    all_pipelines: bool = False  # the environment is open to every pipeline of the project


class SetupResult(BaseModel):
    organization: str
    project: str
    environments: list[EnvironmentOutcome]
    approval_check: CheckOutcome
    exclusive_locks: list[CheckOutcome] = Field(default_factory=list)
    pipeline_permissions: list[PermissionOutcome] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    requests_made: int = 0
    planned_requests: list[PlannedRequest] = Field(default_factory=list)
    plan: Plan | None = Field(default=None, exclude=True, description="a dry run's plan")


class ApprovalsResult(BaseModel):
    project: str
    state: str
    approvals: list[dict[str, Any]] = Field(default_factory=list)
    planned_requests: list[PlannedRequest] = Field(default_factory=list)
    plan: Plan | None = Field(default=None, exclude=True, description="a dry run's plan")


class ApprovalDecisionResult(BaseModel):
    approval_id: str
    decision: Literal["approved", "rejected"]
    status: str
    approval: dict[str, Any] | None = None
    planned_requests: list[PlannedRequest] = Field(default_factory=list)
    plan: Plan | None = Field(default=None, exclude=True, description="a dry run's plan")


class ApprovalNotPending(UserError):
    """The approval was already approved, rejected, canceled or timed out."""


# -- setup --------------------------------------------------------------------------------------


def connect(
    organization: str,
    *,
    reporter: Reporter | None = None,
    environ: Mapping[str, str] | None = None,
) -> AzureDevOpsClient:
    """A client for ``organization`` with the first credential found in ``environ`` (default:
    ``os.environ``): ``SYSTEM_ACCESSTOKEN`` (Bearer), ``SMBRIDGE_ADO_PAT``,
    ``AZURE_DEVOPS_EXT_PAT``.

    Raises :class:`~bridge.errors.CredentialsError` when none is set. The credential's secrets are
    registered with ``reporter`` (masked in any output).
    """
    from bridge.azure_devops.client import AzureDevOpsClient
    from bridge.azure_devops.credentials import credential_from_environ

    credential = credential_from_environ(os.environ if environ is None else environ)
    if reporter is not None:
        reporter.add_secret_source(credential.secrets)
    return AzureDevOpsClient(organization, credential)


def setup_environments(
    params: SetupParams,
    *,
    client: AzureDevOpsClient | None = None,
    reporter: Reporter | None = None,
) -> SetupResult:
    """Ensure ``<prefix>-staging`` and ``<prefix>-production`` exist, each has an Exclusive Lock
    check (so model-deploy's ``lockBehavior: sequential`` deploys successive approvals one after
    the other), production has exactly one Approval check with these settings, and the pipeline
    ``params.pipeline_id`` is authorised on both. Idempotent: everything is read before anything
    is written, and when everything matches only GETs are made; a differing Approval check is
    updated (one PATCH) and the changed fields reported."""
    from bridge.azure_devops import environments as ado

    reporter = reporter or Reporter.silent()
    staging, production = params.environment_names
    desired = params.approval_check()
    warnings = setup_warnings(params)
    for warning in warnings:
        reporter.warning(warning)
    if params.dry_run:
        return _planned_setup(params, warnings)
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
        # read both environments' checks before writing any (a new environment has none)
        checks: dict[str, list[CheckConfiguration]] = {
            outcome.name: []
            if outcome.action == "created"
            else ado.list_checks(client, params.project, "environment", str(outcome.id))
            for outcome in outcomes
        }
        approvals = [c for c in checks[production] if c.is_approval]
        if len(approvals) > 1:
            ids = ", ".join(str(c.id) for c in approvals)
            raise UserError(
                f"environment {production} has {len(approvals)} Approval checks (ids {ids}); "
                "expected one: remove the extra ones (Environments > Approvals and checks) and "
                "run setup again"
            )
        # the gate first: a setup cut short never leaves production open to the pipeline
        # (authorised below) without its Approval check
        outcome = _ensure_approval_check(
            client, params.project, found[production], approvals, desired, reporter
        )
        detail = f": {', '.join(outcome.changed)}" if outcome.changed else ""
        reporter.info(
            f"Approval check on {production}: {outcome.action} (id {outcome.id}){detail}; "
            f"{params.minimum_approvers} of {len(params.approvers)} approver(s), "
            f"timeout {params.timeout_minutes} min"
        )
        locks = [
            _ensure_exclusive_lock(client, params.project, found[name], checks[name], reporter)
            for name in (staging, production)
        ]
        permissions = [
            _ensure_pipeline_permission(
                client, params.project, found[name], params.pipeline_id, reporter
            )
            for name in (staging, production)
            if params.pipeline_id is not None
        ]
    return SetupResult(
        organization=params.organization,
        project=params.project,
        environments=outcomes,
        approval_check=outcome,
        exclusive_locks=locks,
        pipeline_permissions=permissions,
        warnings=warnings,
        requests_made=client.requests_made - before,
    )


def setup_warnings(params: SetupParams) -> list[str]:
    """What the settings alone say will go wrong, one line each (also in a dry run)."""
    staging, production = params.environment_names
    warnings: list[str] = []
    if params.pipeline_id is None:
        warnings.append(
            f"no model-deploy pipeline id (azure_devops.environments.pipeline_id or "
            f"--pipeline-id): it is not authorised on {staging} and {production}, so its first "
            "triggered run will wait for someone to permit it"
        )
    locked = _requester_locks_production(params)
    if locked:
        warnings.append(locked)
    return warnings


def _requester_locks_production(params: SetupParams) -> str | None:
    """With ``requesterCannotBeApprover``, the approvers of a run exclude whoever queued it: if
    the trigger's identity is an approver and the others are fewer than the minimum, no run it
    queues can ever be approved (it times out after ``timeout_minutes``)."""
    queuer = params.trigger_identity
    if not params.requester_cannot_approve or queuer is None:
        return None
    approver = next((a for a in params.approvers if a.id == queuer), None)
    if approver is None:
        return None
    others = len(params.approvers) - 1
    if others >= params.minimum_approvers:
        return None
    _, production = params.environment_names
    who = f"{approver.display_name} ({queuer})" if approver.display_name else str(queuer)
    why = (
        "is its only approver"
        if others == 0
        else f"leaves {others} of the {params.minimum_approvers} required approvers"
    )
    return (
        f"the Approval check on {production} can never pass for runs the trigger queues: "
        f"requester_cannot_approve is set and the trigger's identity {who} {why}; add "
        "approvers, lower minimum_approvers, set requester_cannot_approve: false, or let the "
        "trigger queue runs as another identity"
    )


def _ensure_exclusive_lock(
    client: AzureDevOpsClient,
    project: str,
    environment: Environment,
    checks: list[CheckConfiguration],
    reporter: Reporter,
) -> CheckOutcome:
    """One Exclusive Lock check on ``environment``: created unless one is there (any one)."""
    from bridge.azure_devops import environments as ado

    present = [c for c in checks if c.is_exclusive_lock]
    if present:
        lock = present[0]
        if all(c.is_disabled for c in present):
            reporter.warning(
                f"the Exclusive Lock check {lock.id} on {environment.name} is disabled: runs "
                "will not deploy one after the other until it is enabled"
            )
        outcome = CheckOutcome(environment=environment.name, id=lock.id, action="unchanged")
    else:
        lock = ado.add_exclusive_lock_check(client, project, environment)
        outcome = CheckOutcome(environment=environment.name, id=lock.id, action="created")
    reporter.info(f"Exclusive Lock check on {environment.name}: {outcome.action} (id {lock.id})")
    return outcome


def _ensure_approval_check(
    client: AzureDevOpsClient,
    project: str,
    environment: Environment,
    approvals: list[CheckConfiguration],
    desired: ApprovalCheck,
    reporter: Reporter,
) -> CheckOutcome:
    from bridge.azure_devops import environments as ado

    if not approvals:
        check = ado.add_approval_check(client, project, environment, desired)
        return CheckOutcome(environment=environment.name, id=check.id, action="created")
    current = approvals[0]
    if current.is_disabled:
        reporter.warning(f"the Approval check {current.id} on {environment.name} is disabled")
    existing = current.approval()
    changed = ado.approval_differences(existing, desired)
    if not changed:
        return CheckOutcome(environment=environment.name, id=current.id, action="unchanged")
    # keep identities someone blocked by hand: this setup does not manage them
    merged = dataclasses.replace(desired, blocked_approvers=existing.blocked_approvers)
    ado.update_approval_check(client, project, current.id, environment, merged)
    return CheckOutcome(
        environment=environment.name, id=current.id, action="updated", changed=changed
    )


def _ensure_pipeline_permission(
    client: AzureDevOpsClient,
    project: str,
    environment: Environment,
    pipeline_id: int,
    reporter: Reporter,
) -> PermissionOutcome:
    """Read the environment's pipeline permissions; PATCH only if ``pipeline_id`` may not use
    it yet (an environment open to all pipelines needs nothing)."""
    from bridge.azure_devops import permissions as api

    resource_id = str(environment.id)
    current = api.get_permissions(client, project, "environment", resource_id)
    if current.authorises(pipeline_id):
        outcome = PermissionOutcome(
            environment=environment.name,
            pipeline_id=pipeline_id,
            action="unchanged",
            all_pipelines=current.all_pipelines,
        )
    else:
        api.authorise_pipeline(client, project, "environment", resource_id, pipeline_id)
        outcome = PermissionOutcome(
            environment=environment.name, pipeline_id=pipeline_id, action="authorised"
        )
    scope = " (open to all pipelines)" if outcome.all_pipelines else ""
    reporter.info(f"pipeline {pipeline_id} on {environment.name}: {outcome.action}{scope}")
    return outcome


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


def plan_setup(params: SetupParams) -> Plan:
    """The requests ``setup`` would make (pure: no request, no credential)."""
    return _plan("setup", _setup_requests(params))


def _setup_requests(params: SetupParams) -> list[PlannedRequest]:
    from bridge.azure_devops import environments as ado
    from bridge.azure_devops import permissions as api
    from bridge.azure_devops.client import organization_url

    base = organization_url(params.organization)
    names = params.environment_names
    production = names[1]
    desired = params.approval_check()
    placeholders = {name: f"{{id of {name}}}" for name in names}
    planned: list[PlannedRequest] = []
    for name in names:
        planned.append(_planned(ado.list_environments_request(params.project, name=name), base))
        add = ado.add_environment_request(params.project, name, ENVIRONMENT_DESCRIPTION)
        planned.append(_planned(add, base, "if it does not exist"))
    for name in names:
        listing = ado.list_checks_request(params.project, "environment", placeholders[name])
        planned.append(_planned(listing, base, f"if {name} already exists", placeholders[name]))
    environment = ado.Environment(id=0, name=production)
    add_check = ado.add_approval_check_request(params.project, environment, desired)
    planned.append(
        _planned(add_check, base, "if it has no Approval check", placeholders[production])
    )
    update = ado.update_approval_check_request(params.project, 0, environment, desired)
    planned.append(
        _planned(
            update, base, "if its Approval check differs", placeholders[production], "{check id}"
        )
    )
    for name in names:
        lock = ado.add_exclusive_lock_check_request(params.project, ado.Environment(0, name))
        when = "if it has no Exclusive Lock check"
        planned.append(_planned(lock, base, when, placeholders[name]))
    if params.pipeline_id is not None:
        for name in names:
            read = api.get_permissions_request(params.project, "environment", placeholders[name])
            planned.append(_planned(read, base, "", placeholders[name]))
            grant = api.authorise_pipeline_request(
                params.project, "environment", placeholders[name], params.pipeline_id
            )
            when = f"if pipeline {params.pipeline_id} is not authorised on {name}"
            planned.append(_planned(grant, base, when, placeholders[name]))
    return planned


def _planned_setup(params: SetupParams, warnings: list[str]) -> SetupResult:
    names = params.environment_names
    production = names[1]
    planned = _setup_requests(params)
    return SetupResult(
        organization=params.organization,
        project=params.project,
        environments=[EnvironmentOutcome(name=n, action="planned") for n in names],
        approval_check=CheckOutcome(environment=production, action="planned"),
        exclusive_locks=[CheckOutcome(environment=n, action="planned") for n in names],
        pipeline_permissions=[
            PermissionOutcome(environment=n, pipeline_id=params.pipeline_id, action="planned")
            for n in names
            if params.pipeline_id is not None
        ],
        warnings=warnings,
        planned_requests=planned,
        plan=_plan("setup", planned),
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
        # in the query (resourceId=) or the path (pipelinepermissions/environment/…)
        url = url.replace(quote_plus(environment_id), environment_id)
        url = url.replace(quote(environment_id, safe=""), environment_id)
        if isinstance(body, dict) and "resource" in body:
            body = {**body, "resource": {**body["resource"], "id": environment_id}}
    if check_id:
        url = url.replace("/configurations/0?", f"/configurations/{check_id}?")
    return PlannedRequest(method=request.method, url=url, body=body, when=when)


def _plan(command: str, planned: list[PlannedRequest]) -> Plan:
    """The dry run's plan: one Azure DevOps step per request (its body as the arguments)."""
    return Plan(
        f"Azure DevOps requests {command} would make",
        [PlannedStep(AZURE_DEVOPS, f"{r.method} {r.url}", r.body, r.when) for r in planned],
    )


# -- approvals ----------------------------------------------------------------------------------


def list_approvals(
    params: ApprovalsListParams,
    *,
    client: AzureDevOpsClient | None = None,
    reporter: Reporter | None = None,
) -> ApprovalsResult:
    """The approvals in ``params.state`` (default: pending) of the project, with approvers."""
    from bridge.azure_devops import approvals as api

    reporter = reporter or Reporter.silent()
    if params.dry_run:
        planned = _approvals_requests(params)
        return ApprovalsResult(
            project=params.project,
            state=params.state,
            planned_requests=planned,
            plan=_plan("approvals list", planned),
        )
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


def plan_list_approvals(params: ApprovalsListParams) -> Plan:
    """The request ``approvals list`` would make (pure)."""
    return _plan("approvals list", _approvals_requests(params))


def _approvals_requests(params: ApprovalsListParams) -> list[PlannedRequest]:
    from bridge.azure_devops import approvals as api
    from bridge.azure_devops.client import organization_url

    request = api.list_approvals_request(params.project, state=params.state, top=params.top)
    return [_planned(request, organization_url(params.organization))]


def plan_decision(
    params: ApprovalDecisionParams, decision: Literal["approved", "rejected"]
) -> Plan:
    """The request ``approvals approve|reject`` would make (pure)."""
    verb = "approve" if decision == "approved" else "reject"
    return _plan(f"approvals {verb}", _decision_requests(params, decision))


def _decision_requests(
    params: ApprovalDecisionParams, decision: Literal["approved", "rejected"]
) -> list[PlannedRequest]:
    from bridge.azure_devops import approvals as api
    from bridge.azure_devops.client import organization_url

    request = api.update_approval_request(
        params.project, str(params.approval_id), decision, params.comment
    )
    return [_planned(request, organization_url(params.organization))]


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
    return _decide(params, "approved", client, reporter or Reporter.silent())


def reject(
    params: ApprovalDecisionParams,
    *,
    client: AzureDevOpsClient | None = None,
    reporter: Reporter | None = None,
) -> ApprovalDecisionResult:
    """Reject one pending approval with a comment."""
    return _decide(params, "rejected", client, reporter or Reporter.silent())


def _decide(
    params: ApprovalDecisionParams,
    decision: Literal["approved", "rejected"],
    client: AzureDevOpsClient | None,
    reporter: Reporter,
) -> ApprovalDecisionResult:
    from bridge.azure_devops import approvals as api
    from bridge.azure_devops.client import AzureDevOpsError

    approval_id = str(params.approval_id)
    verb = "approve" if decision == "approved" else "reject"
    if params.dry_run:
        return ApprovalDecisionResult(
            approval_id=approval_id,
            decision=decision,
            status="planned",
            planned_requests=_decision_requests(params, decision),
            plan=plan_decision(params, decision),
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
