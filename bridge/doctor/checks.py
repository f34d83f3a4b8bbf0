"""The doctor's checks: one small function each, in the order they run, each returning a
:class:`CheckResult` (``ok``, ``fail`` with what to fix, or ``skip`` with why it could not run).

Every call is a read: STS ``GetCallerIdentity``, CloudFormation ``DescribeStacks``, SSM
``GetParameter``, Secrets Manager ``GetSecretValue``, Azure DevOps GETs (and, on an agent, the
job's OIDC token request, which issues a token and changes nothing). What several checks need
(the caller's identity, a stack, the routes, the environments) is looked up once in
:class:`Context`. A check that depends on an earlier one which failed is ``skip``, naming it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from bridge.core.output import Reporter
from bridge.doctor import lookups, placeholders
from bridge.errors import BridgeError, CredentialsError, scrubbed, shown

if TYPE_CHECKING:
    from bridge.ado.setup import SetupParams
    from bridge.aws.session import AwsClients
    from bridge.azure_devops.client import AzureDevOpsClient
    from bridge.azure_devops.environments import CheckConfiguration, Environment
    from bridge.doctor.operations import DoctorClients, DoctorParams
    from bridge.trigger.routing import Route, RoutingTable

Status = Literal["ok", "fail", "skip"]


class CheckResult(BaseModel):
    """One check's outcome, one line each: ``detail`` says what was found (or why it was
    skipped), ``fix`` what to do about a failure ("" otherwise)."""

    name: str = Field(description="the check's name, e.g. aws-identity")
    status: Status = Field(description="ok, fail, or skip (could not run: detail says why)")
    detail: str = Field(description="what was checked and found, or why it was skipped")
    fix: str = Field("", description="what to change, naming the value or file (fail only)")


def ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name=name, status="ok", detail=detail)


def fail(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name=name, status="fail", detail=detail, fix=fix)


def skip(name: str, reason: str) -> CheckResult:
    return CheckResult(name=name, status="skip", detail=reason)


@dataclass(frozen=True)
class Check:
    name: str
    function: Callable[[Context], CheckResult]
    fix: str  # what to do when the check fails with an error it did not foresee


CHECKS: list[Check] = []


def _check(name: str, fix: str) -> Callable[[Callable[[Context], CheckResult]], Any]:
    def register(function: Callable[[Context], CheckResult]) -> Callable[[Context], CheckResult]:
        CHECKS.append(Check(name, function, fix))
        return function

    return register


def run_check(ctx: Context, check: Check) -> CheckResult:
    """``check`` on ``ctx``; a bridge error it did not foresee fails it with the check's fix."""
    try:
        result = check.function(ctx)
    except BridgeError as exc:
        result = fail(check.name, scrubbed(str(exc)), check.fix)
    ctx.results[check.name] = result
    return result


# -- what the checks share ------------------------------------------------------------------------

AUTOMATION_OUTPUTS = (
    # stack output, bridge.yaml key (infra/README.md, "Outputs → configuration")
    ("SageMakerExecutionRoleArn", "pipeline.execution_role_arn"),
    ("ArtifactsBucketName", "pipeline.artifact_bucket"),
    ("ModelPackageGroupName", "model_package_group"),
    ("CiRoleArn", "aws.role_arn"),
)
NO_IDENTITY = "no AWS identity (see aws-identity)"
NO_ADO_CREDENTIAL = "no Azure DevOps credential (see azure-devops-credential)"
ADO_SETUP = "run `smbridge ado setup`"


@dataclass
class Context:
    """The inputs, the clients, and what the checks looked up (each lookup made once)."""

    params: DoctorParams
    clients: DoctorClients
    reporter: Reporter
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    results: dict[str, CheckResult] = field(default_factory=dict)
    _memo: dict[Any, tuple[Any, BridgeError | None]] = field(default_factory=dict)

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        if key not in self._memo:
            try:
                self._memo[key] = (compute(), None)
            except BridgeError as exc:
                self._memo[key] = (None, exc)
        value, error = self._memo[key]
        if error is not None:
            raise error
        return value

    def passed(self, name: str) -> bool:
        result = self.results.get(name)
        return result is not None and result.status == "ok"

    # -- configuration --

    @property
    def config(self) -> Any:
        return self.params.config

    def source(self, key: str) -> str:
        """Where a bridge.yaml key's value came from: the file, or the ``SMBRIDGE_*`` variable."""
        sources = self.params.config_sources
        probe = key
        while probe:
            if probe in sources:
                return sources[probe]
            cut_at = max(probe.rfind("."), probe.rfind("["))
            probe = probe[:cut_at] if cut_at > 0 else ""
        return self.config.source

    def value(self, key: str) -> Any:
        node = self.config
        for part in key.split("."):
            node = getattr(node, part, None)
        return node

    # -- AWS --

    def aws(self) -> AwsClients:
        if self.clients.aws is None:
            raise CredentialsError(self.clients.aws_error or "no AWS clients")
        return self.clients.aws

    def identity(self) -> dict[str, Any]:
        from bridge.aws.errors import aws_call

        def call() -> dict[str, Any]:
            sts = self.aws().client("sts")
            return dict(aws_call("GetCallerIdentity", sts.get_caller_identity) or {})

        return self.memo("identity", call)

    def stack(self, name: str) -> dict[str, Any] | None:
        from bridge.aws.errors import aws_call, describe, error_code

        def missing(exc: Any) -> bool:
            return error_code(exc) == "ValidationError" and "does not exist" in describe(exc)

        def call() -> dict[str, Any] | None:
            cfn = self.aws().client("cloudformation")
            found = aws_call(
                f"DescribeStacks {name}", cfn.describe_stacks, tolerate=missing, StackName=name
            )
            return found["Stacks"][0] if found and found.get("Stacks") else None

        return self.memo(("stack", name), call)

    def stack_parameters(self, name: str) -> dict[str, str]:
        stack = self.stack(name) or {}
        return {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}

    # -- Azure DevOps --

    def ado(self, organization: str) -> AzureDevOpsClient:
        if self.clients.azure_devops is None:
            raise CredentialsError(self.clients.azure_devops_error or "no Azure DevOps credential")
        return self.clients.azure_devops(organization)

    def ado_project(self) -> tuple[str, str] | None:
        ado = self.config.azure_devops
        return (ado.organization, ado.project) if ado is not None else None

    def setup_params(self) -> SetupParams | None:
        from bridge.ado.setup import SetupParams

        project = self.ado_project()
        settings = self.config.azure_devops.environments if project else None
        if project is None or settings is None:
            return None
        organization, name = project
        return SetupParams.from_settings(settings, organization=organization, project=name)

    def environments(self) -> dict[str, Environment | None]:
        from bridge.azure_devops.environments import find_environment

        def find() -> dict[str, Environment | None]:
            setup = self.setup_params()
            assert setup is not None
            client = self.ado(setup.organization)
            return {
                name: find_environment(client, setup.project, name)
                for name in setup.environment_names
            }

        return self.memo("environments", find)

    def checks_on(self, environment: Environment) -> list[CheckConfiguration]:
        from bridge.azure_devops.environments import list_checks

        setup = self.setup_params()
        assert setup is not None
        return self.memo(
            ("checks", environment.id),
            lambda: list_checks(
                self.ado(setup.organization), setup.project, "environment", str(environment.id)
            ),
        )

    def pipeline(self, route: Route) -> dict[str, Any] | None:
        key = ("pipeline", route.organization, route.project, route.pipeline_id)
        return self.memo(
            key,
            lambda: lookups.get_pipeline(
                self.ado(route.organization), route.project, route.pipeline_id
            ),
        )

    # -- the routes --

    def routes(self) -> tuple[RoutingTable | None, str]:
        """(the routing table, where it came from), or (None, why there is none)."""
        return self.memo("routes", self._routes)

    def _routes(self) -> tuple[RoutingTable | None, str]:
        from bridge.trigger.routing import parse_routes

        params = self.params
        if params.routes_json is not None:
            return parse_routes(params.routes_json, source=params.routes_source), (
                params.routes_source
            )
        if params.routes_parameter:
            source = f"SSM parameter {params.routes_parameter}"
            return parse_routes(self._ssm(params.routes_parameter), source=source), source
        if not self.passed("aws-identity"):
            return None, f"no routes given (--routes FILE or SMBRIDGE_ROUTES), and {NO_IDENTITY}"
        name = params.trigger_stack
        if self.stack(name) is None:
            return None, f"no routes given (--routes FILE or SMBRIDGE_ROUTES), no stack {name}"
        values = self.stack_parameters(name)
        if values.get("DeliveryMode") == "ApiDestination":
            source = f"stack {name} (ApiDestination mode)"
            pipeline = values.get("AzureDevOpsPipelineId", "")
            route = {
                "organization": values.get("AzureDevOpsOrganization", ""),
                "project": values.get("AzureDevOpsProject", ""),
                "pipelineId": int(pipeline) if pipeline.isdigit() else pipeline,
                "branch": values.get("SourceBranch") or "main",
            }
            return parse_routes(json.dumps({"default": route}), source=source), source
        if values.get("RoutesJson", "").strip():
            source = f"stack {name} parameter RoutesJson"
            return parse_routes(values["RoutesJson"], source=source), source
        parameter = values.get("RoutesParameterName", "").strip()
        if parameter:
            source = f"SSM parameter {parameter} (stack {name})"
            return parse_routes(self._ssm(parameter), source=source), source
        return None, f"no routes given, and stack {name} has neither RoutesJson nor a parameter"

    def _ssm(self, name: str) -> str:
        from bridge.aws.errors import aws_call

        ssm = self.aws().client("ssm")
        answer = aws_call(f"GetParameter {name}", ssm.get_parameter, Name=name) or {}
        return str(answer.get("Parameter", {}).get("Value", ""))


@dataclass(frozen=True)
class Target:
    """One pipeline the routes start, and the routes (by group) that start it."""

    route: Route  # the first route to it (organization, project, pipeline id)
    groups: tuple[str, ...]
    template_parameters: frozenset[str]  # what those routes add to the four the trigger sends


def targets(table: RoutingTable) -> list[Target]:
    """Each distinct target pipeline of the routing table (the default route as "(default)")."""
    found: dict[tuple[str, str, int], list[tuple[str, Route]]] = {}
    entries = [*table.routes.items(), *([("(default)", table.default)] if table.default else [])]
    for group, route in entries:
        found.setdefault((route.organization, route.project, route.pipeline_id), []).append(
            (group, route)
        )
    return [
        Target(
            route=routes[0][1],
            groups=tuple(group for group, _ in routes),
            template_parameters=frozenset(p for _, r in routes for p in r.template_parameters),
        )
        for routes in found.values()
    ]


def _joined(parts: list[str], limit: int = 4) -> str:
    shown_parts = parts[:limit]
    more = f"; and {len(parts) - limit} more" if len(parts) > limit else ""
    return "; ".join(shown_parts) + more


# -- the checks, in order ------------------------------------------------------------------------


PLACEHOLDER_FIX = (
    "replace them with your own values: account ids and role ARNs from the stacks' outputs "
    "(infra/README.md, 'Outputs → configuration'), service connection ids from each "
    "connection's URL (resourceId); the rule is in bridge/doctor/placeholders.py"
)
SECRET_FIX = (
    'store a PAT, {"pat": "…"} or {"tenantId", "clientId", "clientSecret"} as the secret\'s '
    "SecretString"
)


@_check("placeholders", PLACEHOLDER_FIX)
def check_placeholders(ctx: Context) -> CheckResult:
    """Values left from the example in bridge.yaml (with its overrides) and the stage configs."""
    name = "placeholders"
    found: list[str] = []
    document = ctx.config.model_dump(mode="json")
    for key, value, why in placeholders.find(document):
        found.append(f"{ctx.source(key)}: {key} = {shown(value)} ({why})")
    unreadable: list[str] = []
    for file in ctx.params.stage_configs:
        try:
            stage = json.loads(Path(file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            unreadable.append(f"{file}: not readable JSON ({type(exc).__name__})")
            continue
        found += [
            f"{file}: {key} = {shown(value)} ({why})"
            for key, value, why in placeholders.find(stage)
        ]
    files = ", ".join([ctx.config.source, *ctx.params.stage_configs])
    if unreadable:
        return fail(name, _joined(unreadable + found), "fix the JSON of " + unreadable[0])
    if found:
        return fail(name, f"{len(found)} placeholder value(s): {_joined(found)}", PLACEHOLDER_FIX)
    return ok(name, f"no placeholder values in {files}")


@_check(
    "aws-identity",
    "configure AWS credentials: the default chain (AWS_PROFILE or aws.profile, the environment, "
    "AWSShellScript@1), or aws.role_arn with --web-identity on an agent",
)
def check_aws_identity(ctx: Context) -> CheckResult:
    """Credentials, and who they are (STS GetCallerIdentity; with a role, after assuming it)."""
    identity = ctx.identity()
    auth = ctx.aws().auth
    how = ""
    if auth.role_arn:
        how = f", as role {auth.role_arn}" + (" (web identity)" if auth.web_identity_token else "")
    region = ctx.aws().region or "the default region"
    return ok(
        "aws-identity",
        f"{identity.get('Arn', '?')} (account {identity.get('Account', '?')}{how}) in {region}",
    )


@_check(
    "oidc-token",
    "map the job's access token into the step (env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)) "
    "and check that the pipeline may use the service connection",
)
def check_oidc_token(ctx: Context) -> CheckResult:
    """On an agent: the job's OIDC token's claims (never the token) and the trust they need."""
    name = "oidc-token"
    if not ctx.params.on_agent:
        return skip(name, "not on an Azure DevOps agent (TF_BUILD is not True)")
    if ctx.clients.oidc_token is None:
        raise CredentialsError(ctx.clients.oidc_error or "no OIDC token source")
    token = ctx.clients.oidc_token()
    ctx.reporter.add_secret(token)
    claims = lookups.token_claims(token)
    issuer, subject = str(claims.get("iss", "")), str(claims.get("sub", ""))
    token_audiences = lookups.audiences(claims)
    expected = ctx.params.oidc_audience or lookups.DEFAULT_AUDIENCE
    if ctx.params.oidc_audience is None and ctx.passed("aws-identity"):
        try:
            stack_audience = ctx.stack_parameters(ctx.params.automation_stack).get("OidcAudience")
        except BridgeError:
            stack_audience = None
        expected = stack_audience or expected
    account, partition = "ACCOUNT_ID", "aws"
    if ctx.passed("aws-identity"):
        identity = ctx.identity()
        account = str(identity.get("Account") or account)
        partition = str(identity.get("Arn", "arn:aws").split(":")[1] or "aws")
    audience = token_audiences[0] if token_audiences else ""
    statement = lookups.trust_statement(
        issuer, subject, audience, account=account, partition=partition
    )
    expiry = claims.get("exp")
    if isinstance(expiry, int | float) and not isinstance(expiry, bool):
        expires = datetime.fromtimestamp(expiry, UTC)
        left = int((expires - ctx.now).total_seconds())
        when = f"expires {expires.isoformat()} ({'in' if left > 0 else 'expired'} {abs(left)} s)"
    else:
        expires, left, when = None, 0, "no exp claim"
    detail = (
        f"iss {issuer}, sub {subject}, aud {', '.join(token_audiences) or '-'}, {when}; "
        f"the role's trust policy needs {json.dumps(statement, separators=(',', ':'))}"
    )
    if not issuer or not subject:
        return fail(name, detail, "the token has no iss or sub claim: it cannot be trusted")
    if expires is None or left <= 0:
        return fail(
            name,
            detail,
            "the token is expired as soon as it is issued: check the agent's clock (NTP) and "
            "rerun the step",
        )
    if expected not in token_audiences:
        return fail(
            name,
            detail,
            f"the token's aud is {audience or 'missing'}, not {expected}: set OidcAudience of "
            f"stack {ctx.params.automation_stack} (the OIDC provider's client id list and the "
            f"role's :aud condition) to {audience}",
        )
    return ok(name, detail)


def _stack_status(name: str, stack: dict[str, Any]) -> CheckResult | None:
    status = str(stack.get("StackStatus", ""))
    if status.endswith("_IN_PROGRESS"):
        return fail(name, f"stack {stack['StackName']} is {status}", "wait for it, then rerun")
    if not status.endswith("_COMPLETE") or status in ("ROLLBACK_COMPLETE", "DELETE_COMPLETE"):
        reason = stack.get("StackStatusReason") or ""
        return fail(
            name,
            f"stack {stack['StackName']} is {status}{f' ({reason})' if reason else ''}",
            "see its events (CloudFormation console); a ROLLBACK_COMPLETE stack must be deleted "
            "and deployed again",
        )
    return None


@_check(
    "automation-stack",
    "deploy infra/automation-account.yaml (infra/README.md) or pass --automation-stack NAME",
)
def check_automation_stack(ctx: Context) -> CheckResult:
    """The automation account's stack, and its outputs against bridge.yaml."""
    name, stack_name = "automation-stack", ctx.params.automation_stack
    if not ctx.passed("aws-identity"):
        return skip(name, NO_IDENTITY)
    stack = ctx.stack(stack_name)
    region = ctx.aws().region
    if stack is None:
        return fail(
            name,
            f"stack {stack_name} not found in {region}",
            f"deploy infra/automation-account.yaml as {stack_name} (infra/README.md), or pass "
            "--automation-stack NAME",
        )
    bad = _stack_status(name, stack)
    if bad is not None:
        return bad
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
    matched, problems, fixes = [], [], []
    for output, key in AUTOMATION_OUTPUTS:
        configured = ctx.value(key)
        if not configured:
            continue
        if output not in outputs:
            problems.append(f"the stack has no output {output} (for {key})")
            fixes.append(f"update stack {stack_name} from infra/automation-account.yaml")
        elif outputs[output] != configured:
            where = ctx.source(key)
            problems.append(
                f"{key} is {configured} ({where}) but the stack's {output} is {outputs[output]}"
            )
            fixes.append(f"set {key} to {outputs[output]} in {where}")
        else:
            matched.append(key)
    if problems:
        return fail(name, f"stack {stack_name}: " + "; ".join(problems), "; ".join(fixes))
    return ok(
        name,
        f"stack {stack_name} {stack['StackStatus']} in {region}; outputs match "
        f"{', '.join(matched) or 'no configured key'}",
    )


@_check("trigger-stack", "deploy infra/trigger.yaml (infra/README.md) or pass --trigger-stack NAME")
def check_trigger_stack(ctx: Context) -> CheckResult:
    """The approval trigger's stack, and that it listens to bridge.yaml's model package group."""
    name, stack_name = "trigger-stack", ctx.params.trigger_stack
    if not ctx.passed("aws-identity"):
        return skip(name, NO_IDENTITY)
    stack = ctx.stack(stack_name)
    if stack is None:
        return fail(
            name,
            f"stack {stack_name} not found in {ctx.aws().region}",
            f"deploy infra/trigger.yaml as {stack_name} (infra/README.md), or pass "
            "--trigger-stack NAME",
        )
    bad = _stack_status(name, stack)
    if bad is not None:
        return bad
    values = ctx.stack_parameters(stack_name)
    groups = [g.strip() for g in values.get("ModelPackageGroupNames", "").split(",") if g.strip()]
    group = ctx.config.model_package_group
    if group and groups and group not in groups:
        return fail(
            name,
            f"stack {stack_name} listens to {', '.join(groups)}, not model_package_group {group} "
            f"({ctx.source('model_package_group')}): its approvals start no run",
            f"add {group} to ModelPackageGroupNames of stack {stack_name}",
        )
    mode = values.get("DeliveryMode") or "Lambda"
    listens = ", ".join(groups) if groups else "every group"
    return ok(
        name, f"stack {stack_name} {stack['StackStatus']} ({mode} mode), listens to {listens}"
    )


@_check(
    "azure-devops-credential",
    "set SMBRIDGE_ADO_PAT (or AZURE_DEVOPS_EXT_PAT) to a PAT, or on an agent map "
    "SYSTEM_ACCESSTOKEN: $(System.AccessToken) into the step",
)
def check_azure_devops_credential(ctx: Context) -> CheckResult:
    """An Azure DevOps credential to read with (each request below shows whether it is taken)."""
    if ctx.clients.azure_devops is None:
        raise CredentialsError(ctx.clients.azure_devops_error or "no Azure DevOps credential")
    return ok("azure-devops-credential", f"from {ctx.clients.azure_devops_source}")


@_check(
    "routes",
    "fix the routing JSON (bridge/trigger/routing.py describes it) or pass --routes FILE",
)
def check_routes(ctx: Context) -> CheckResult:
    """The trigger's routes parse, cover bridge.yaml's group, and every target pipeline exists."""
    name = "routes"
    table, source = ctx.routes()
    if table is None:
        return skip(name, source)
    entries = targets(table)
    if not entries:
        return fail(name, f"{source}: no route and no default", "add a route (routes or default)")
    group = ctx.config.model_package_group
    if group and table.route_for(group) is None:
        groups = ", ".join(table.routes) or "none"
        return fail(
            name,
            f"{source}: no route for model_package_group {group} (routes: {groups}, no default)",
            f'add "{group}": {{"organization", "project", "pipelineId"}} to the routes',
        )
    if not ctx.passed("azure-devops-credential"):
        return skip(name, f"{source} parsed ({len(entries)} target(s)); {NO_ADO_CREDENTIAL}")
    found, missing = [], []
    for target in entries:
        route, groups = target.route, ", ".join(target.groups)
        pipeline = ctx.pipeline(route)
        if pipeline is None:
            missing.append(f"{route.describe()} (route {groups}) not found")
        else:
            found.append(f"{groups} -> {route.describe()} ({pipeline.get('name', '?')})")
    if missing:
        return fail(
            name,
            f"{source}: " + "; ".join(missing),
            "correct pipelineId (the definitionId in the pipeline's URL) in the route, or create "
            "the pipeline from azure-pipelines/model-deploy.yml",
        )
    return ok(name, f"{source}: " + "; ".join(found))


@_check("pipeline-parameters", "declare exactly the parameters the trigger sends in the YAML")
def check_pipeline_parameters(ctx: Context) -> CheckResult:
    """Each target pipeline's YAML declares exactly what the trigger sends: modelPackageArn,
    modelPackageGroupName, modelPackageVersion, sourceEventId and the route's own
    templateParameters. Read from the local file at the path Pipelines - Get names."""
    from bridge.trigger.routing import RESERVED_PARAMETERS

    name = "pipeline-parameters"
    routes = ctx.results.get("routes")
    if routes is None or routes.status == "skip":
        return skip(name, "no routes to check (see routes)")
    try:
        table, _ = ctx.routes()
    except BridgeError:
        table = None
    if table is None:
        return skip(name, "the routes could not be read (see routes)")
    root = Path(ctx.params.repo_root).resolve()
    checked, unchecked, problems, fixes = [], [], [], []
    for target in targets(table):
        where = target.route.describe()
        if not ctx.passed("azure-devops-credential"):
            unchecked.append(f"{where}: {NO_ADO_CREDENTIAL}")
            continue
        try:
            pipeline = ctx.pipeline(target.route)
        except BridgeError:
            pipeline = None  # the routes check says why
        if pipeline is None:
            unchecked.append(f"{where}: not found or not readable (see routes)")
            continue
        configuration = pipeline.get("configuration")
        configuration = configuration if isinstance(configuration, dict) else {}
        path = configuration.get("path")
        if not isinstance(path, str) or not path:
            kind = configuration.get("type", "?")
            problems.append(f"{where} is not a YAML pipeline (configuration type {kind})")
            fixes.append(f"point {where} at azure-pipelines/model-deploy.yml")
            continue
        local = (root / path.lstrip("/")).resolve()
        if not local.is_relative_to(root) or not local.is_file():
            unchecked.append(f"{where}: its YAML {path} (Pipelines - Get) is not under {root}")
            continue
        declared = set(lookups.declared_parameters(local))
        sent = set(RESERVED_PARAMETERS) | target.template_parameters
        lacking, extra = sorted(sent - declared), sorted(declared - sent)
        yaml_file = local.relative_to(root).as_posix()
        if lacking:
            problems.append(
                f"{where} ({yaml_file}) does not declare {', '.join(lacking)}, which the "
                "trigger sends: the Runs API answers 400"
            )
            fixes.append(f"add {', '.join(lacking)} (type: string) to parameters: in {yaml_file}")
        if extra:
            problems.append(
                f"{where} ({yaml_file}) declares {', '.join(extra)}, which the trigger never sends"
            )
            fixes.append(
                f"remove {', '.join(extra)} from {yaml_file}, or add it to the templateParameters "
                f"of route {', '.join(target.groups)}"
            )
        if not lacking and not extra:
            checked.append(f"{where}: {yaml_file} (the local file at Pipelines - Get's path)")
    if problems:
        return fail(name, "; ".join(problems + unchecked), "; ".join(fixes))
    if unchecked:
        return skip(name, "; ".join(unchecked + checked))
    sent_names = ", ".join(sorted(RESERVED_PARAMETERS))
    return ok(name, f"declare exactly what the trigger sends ({sent_names}): {'; '.join(checked)}")


@_check("environments", ADO_SETUP + " (it creates them), or create them under Environments")
def check_environments(ctx: Context) -> CheckResult:
    """``<prefix>-staging`` and ``<prefix>-production`` exist."""
    name = "environments"
    if ctx.ado_project() is None:
        return fail(
            name,
            f"azure_devops is not set in {ctx.config.source}",
            "add azure_devops: organization, project and environments (see the example "
            "bridge.yaml)",
        )
    setup = ctx.setup_params()
    if setup is None:
        return fail(
            name,
            f"azure_devops.environments is not set in {ctx.config.source}",
            "add azure_devops.environments: prefix, pipeline_id and production_approval",
        )
    if not ctx.passed("azure-devops-credential"):
        return skip(name, NO_ADO_CREDENTIAL)
    found = ctx.environments()
    where = f"{setup.organization}/{setup.project}"
    missing = [env for env, environment in found.items() if environment is None]
    if missing:
        return fail(
            name,
            f"{', '.join(missing)} missing in {where}",
            f"{ADO_SETUP} (creates {', '.join(missing)} with their checks), or create them "
            "under Pipelines > Environments",
        )
    listed = ", ".join(f"{env} (id {e.id})" for env, e in found.items() if e is not None)
    return ok(name, f"{listed} in {where}")


def _existing(ctx: Context, names: tuple[str, ...]) -> tuple[list[Environment], list[str]] | None:
    """The environments of ``names`` that exist and those missing; ``None`` when the
    environments check could not look them up."""
    result = ctx.results.get("environments")
    if result is None or result.status == "skip" or ctx.setup_params() is None:
        return None
    try:
        found = ctx.environments()
    except BridgeError:
        return None
    present = [environment for n in names if (environment := found.get(n)) is not None]
    return present, [n for n in names if found.get(n) is None]


@_check("approval-check", ADO_SETUP + " (it adds or updates the production Approval check)")
def check_approval(ctx: Context) -> CheckResult:
    """Production has one enabled Approval check, as bridge.yaml's production_approval says."""
    from bridge.azure_devops.environments import approval_differences

    name = "approval-check"
    setup = ctx.setup_params()
    existing = _existing(ctx, setup.environment_names[1:]) if setup else None
    if setup is None or existing is None:
        return skip(name, "the environments could not be looked up (see environments)")
    present, missing = existing
    production = setup.environment_names[1]
    if missing:
        return skip(name, f"{production} missing (see environments)")
    approvals = [c for c in ctx.checks_on(present[0]) if c.is_approval]
    if not approvals:
        return fail(
            name,
            f"{production} has no Approval check: a triggered run deploys to production unasked",
            f"{ADO_SETUP} (adds it as azure_devops.environments.production_approval says)",
        )
    if len(approvals) > 1:
        ids = ", ".join(str(c.id) for c in approvals)
        return fail(
            name,
            f"{production} has {len(approvals)} Approval checks (ids {ids}); expected one",
            "remove the extra ones (Environments > Approvals and checks)",
        )
    current = approvals[0]
    if current.is_disabled:
        return fail(
            name,
            f"the Approval check {current.id} on {production} is disabled",
            f"enable it ({production} > Approvals and checks)",
        )
    changed = approval_differences(current.approval(), setup.approval_check())
    if changed:
        return fail(
            name,
            f"the Approval check {current.id} on {production} differs from "
            f"azure_devops.environments.production_approval in {ctx.config.source}: "
            f"{', '.join(changed)}",
            f"{ADO_SETUP} (updates it), or change production_approval to match",
        )
    return ok(
        name,
        f"{production}: Approval check {current.id}, {setup.minimum_approvers} of "
        f"{len(setup.approvers)} approver(s), timeout {setup.timeout_minutes} min",
    )


@_check("exclusive-locks", ADO_SETUP + " (it adds an Exclusive Lock check to each environment)")
def check_exclusive_locks(ctx: Context) -> CheckResult:
    """Each environment has an enabled Exclusive Lock check (model-deploy's lockBehavior:
    sequential then deploys successive approvals one after the other)."""
    name = "exclusive-locks"
    setup = ctx.setup_params()
    existing = _existing(ctx, setup.environment_names) if setup else None
    if setup is None or existing is None:
        return skip(name, "the environments could not be looked up (see environments)")
    present, missing = existing
    problems, good = [], []
    for environment in present:
        locks = [c for c in ctx.checks_on(environment) if c.is_exclusive_lock]
        if not locks:
            problems.append(f"{environment.name} has no Exclusive Lock check")
        elif all(c.is_disabled for c in locks):
            problems.append(f"the Exclusive Lock check on {environment.name} is disabled")
        else:
            good.append(f"{environment.name} (check {locks[0].id})")
    if problems:
        return fail(
            name,
            "; ".join(problems) + ": runs for successive approvals may deploy at once",
            f"{ADO_SETUP} (adds the missing Exclusive Lock checks), or enable them",
        )
    if missing:
        return skip(name, f"{', '.join(missing)} missing (see environments); ok: {', '.join(good)}")
    return ok(name, "Exclusive Lock check on " + ", ".join(good))


@_check(
    "pipeline-authorised",
    ADO_SETUP + " (it authorises azure_devops.environments.pipeline_id on both environments)",
)
def check_pipeline_authorised(ctx: Context) -> CheckResult:
    """The model-deploy pipeline may use both environments (else a triggered run stops at "This
    pipeline needs permission" until someone permits it)."""
    from bridge.azure_devops.permissions import get_permissions

    name = "pipeline-authorised"
    setup = ctx.setup_params()
    existing = _existing(ctx, setup.environment_names) if setup else None
    if setup is None or existing is None:
        return skip(name, "the environments could not be looked up (see environments)")
    if setup.pipeline_id is None:
        return fail(
            name,
            f"azure_devops.environments.pipeline_id is not set in {ctx.config.source}",
            "set it to the model-deploy pipeline's id (the definitionId in its URL)",
        )
    present, missing = existing
    pipeline_id = setup.pipeline_id
    client = ctx.ado(setup.organization)
    refused, allowed = [], []
    for environment in present:
        permissions = get_permissions(client, setup.project, "environment", str(environment.id))
        if permissions.authorises(pipeline_id):
            scope = " (open to all pipelines)" if permissions.all_pipelines else ""
            allowed.append(f"{environment.name}{scope}")
        else:
            refused.append(environment.name)
    if refused:
        return fail(
            name,
            f"pipeline {pipeline_id} is not authorised on {', '.join(refused)}: a triggered run "
            "waits for someone to permit it",
            f"{ADO_SETUP}, or Permit pipeline {pipeline_id} on {', '.join(refused)} "
            "(Security > Pipeline permissions)",
        )
    if missing:
        return skip(name, f"{', '.join(missing)} missing (see environments)")
    return ok(name, f"pipeline {pipeline_id} authorised on {', '.join(allowed)}")


@_check(
    "service-connections",
    "put the id of the AWS-facing workload identity federation connection (the resourceId in "
    "its URL) into the stage config's service_connection_id",
)
def check_service_connections(ctx: Context) -> CheckResult:
    """Each service connection a stage config (or aws.service_connection_id) names exists, is
    ready and uses workload identity federation; its token's subject is shown."""
    name = "service-connections"
    references: list[tuple[str, str]] = []
    if ctx.config.aws.service_connection_id:
        key = "aws.service_connection_id"
        references.append((ctx.config.aws.service_connection_id, f"{key} ({ctx.source(key)})"))
    for file in ctx.params.stage_configs:
        try:
            stage = json.loads(Path(file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue  # the placeholders check names it
        value = stage.get("service_connection_id") if isinstance(stage, dict) else None
        if isinstance(value, str) and value:
            references.append((value, f"{file} service_connection_id"))
    if not references:
        return skip(name, "no service_connection_id in bridge.yaml or the stage configs")
    project = ctx.ado_project()
    if project is None:
        return skip(name, f"azure_devops is not set in {ctx.config.source} (see environments)")
    if not ctx.passed("azure-devops-credential"):
        return skip(name, NO_ADO_CREDENTIAL)
    organization, project_name = project
    client = ctx.ado(organization)
    good, problems, fixes = [], [], []
    for endpoint_id, where in references:
        endpoint = lookups.get_service_endpoint(client, project_name, endpoint_id)
        if endpoint is None:
            problems.append(
                f"service connection {endpoint_id} ({where}) not found in "
                f"{organization}/{project_name}"
            )
            fixes.append(f"create it, or put the right id (the resourceId in its URL) into {where}")
            continue
        label = str(endpoint.get("name", ""))
        scheme = str((endpoint.get("authorization") or {}).get("scheme", ""))
        if endpoint.get("isReady") is False:
            problems.append(f"service connection {label} ({where}) is not ready")
            fixes.append(f"open {label} in Project settings > Service connections and verify it")
        elif scheme and scheme != lookups.WORKLOAD_IDENTITY_SCHEME:
            problems.append(
                f"service connection {label} ({where}) uses {scheme}, not workload identity "
                "federation: it issues no OIDC token"
            )
            fixes.append(f"convert {label} to workload identity federation")
        else:
            subject = lookups.endpoint_subject(endpoint, organization, project_name)
            good.append(f"{label} ({where}): token subject {subject}")
    if problems:
        return fail(name, "; ".join(problems), "; ".join(fixes))
    return ok(name, "; ".join(good))


@_check("trigger-secret", SECRET_FIX)
def check_trigger_secret(ctx: Context) -> CheckResult:
    """The trigger's Azure DevOps secret holds a PAT or an Entra service principal, as
    bridge/azure_devops/credentials.py reads it (its value is never shown)."""
    from bridge.aws.errors import aws_call
    from bridge.azure_devops.credentials import parse_secret

    name = "trigger-secret"
    if not ctx.passed("aws-identity"):
        return skip(name, NO_IDENTITY)
    secret_id, source = ctx.params.ado_secret, ctx.params.ado_secret_source
    if not secret_id:
        stack_name = ctx.params.trigger_stack
        if ctx.stack(stack_name) is None:
            return skip(
                name,
                f"no secret named (--ado-secret or SMBRIDGE_ADO_SECRET_ARN), no stack {stack_name}",
            )
        secret_id = ctx.stack_parameters(stack_name).get("AzureDevOpsSecretArn", "")
        source = f"stack {stack_name} parameter AzureDevOpsSecretArn"
        if not secret_id:
            return skip(name, f"stack {stack_name} names no AzureDevOpsSecretArn")
    clients = ctx.aws()
    parts = secret_id.split(":")
    if secret_id.startswith("arn:") and len(parts) > 3 and parts[3]:
        clients = clients.in_region(parts[3])
    secrets = clients.client("secretsmanager")
    answer = aws_call(f"GetSecretValue {secret_id}", secrets.get_secret_value, SecretId=secret_id)
    value = (answer or {}).get("SecretString")
    if not isinstance(value, str):
        return fail(
            name,
            f"secret {secret_id} ({source}) has no SecretString",
            SECRET_FIX,
        )
    ctx.reporter.add_secret(value)
    ctx.reporter.add_secret(value.strip())
    try:
        parsed = parse_secret(value, source=f"secret {secret_id}")
    except CredentialsError as exc:
        return fail(name, f"{exc} ({source})", SECRET_FIX)
    if isinstance(parsed, str):
        ctx.reporter.add_secret(parsed)
        if any(c.isspace() for c in parsed):
            return fail(
                name,
                f"secret {secret_id} ({source}): the PAT contains whitespace",
                "store the PAT alone, without 'Basic'/'Bearer', quotes or line breaks",
            )
        return ok(name, f"secret {secret_id} ({source}): a PAT")
    ctx.reporter.add_secret(getattr(parsed, "client_secret", None))
    return ok(name, f"secret {secret_id} ({source}): an Entra service principal")


def run_all(ctx: Context) -> list[CheckResult]:
    """Every check, in order."""
    return [run_check(ctx, check) for check in CHECKS]
