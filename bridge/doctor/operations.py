"""``smbridge doctor`` as an SDK function: the set-up checks, read-only::

    from bridge.access import aws_clients
    from bridge.doctor.operations import DoctorParams, connect, run
    from bridge.settings.bridge_config import load_config

    params = DoctorParams(config=load_config(), stage_configs=("model-deploy/config/staging.json",))
    result = run(params, clients=connect(params, aws=aws_clients(params.config)))
    print(result.ok, [(c.name, c.status) for c in result.checks])

:func:`plan` lists the checks and the calls each would make (no call, no credential); :func:`run`
makes only reads (see :mod:`bridge.doctor.checks`) and returns a :class:`DoctorResult`. A failed
check is :class:`DoctorFailed` for the CLI: exit code 4, the code of a failed execution or
endpoint test (:class:`bridge.errors.ExecutionFailed`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

from pydantic import BaseModel, ConfigDict, Field

from bridge.core.output import Reporter
from bridge.core.plan import AZURE_DEVOPS, Plan, PlannedStep
from bridge.doctor import checks, lookups
from bridge.doctor.checks import CheckResult
from bridge.errors import BridgeError, ExecutionFailed
from bridge.settings.bridge_config import BridgeConfig

if TYPE_CHECKING:
    from bridge.aws.session import AwsClients
    from bridge.azure_devops.client import ApiRequest, AzureDevOpsClient

DEFAULT_AUTOMATION_STACK = "smbridge-automation"  # infra/README.md's deploy commands
DEFAULT_TRIGGER_STACK = "smbridge-trigger"


class DoctorParams(BaseModel):
    """What the checks read. Everything is an input here: the CLI fills it from bridge.yaml,
    the environment and its flags."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config: BridgeConfig = Field(
        default_factory=BridgeConfig,
        description="bridge.yaml as the commands use it (SMBRIDGE_* overrides applied)",
    )
    config_sources: dict[str, str] = Field(
        default_factory=dict,
        description="dotted bridge.yaml key -> where its value came from (the file, or the "
        "SMBRIDGE_* variable); a key not listed came from config.source",
    )
    stage_configs: tuple[str, ...] = Field(
        (), description="the stage configs the deploy uses (model-deploy/config/*.json)"
    )
    repo_root: str = Field(
        ".", description="the checkout: a pipeline's configuration.path is looked up under it"
    )
    routes_json: str | None = Field(
        None, description="the trigger's routing JSON (--routes FILE, SMBRIDGE_ROUTES)"
    )
    routes_source: str = Field("--routes", description="where routes_json came from")
    routes_parameter: str | None = Field(
        None, description="SSM parameter holding the routes (SMBRIDGE_ROUTES_PARAMETER)"
    )
    ado_secret: str | None = Field(
        None,
        description="the trigger's Azure DevOps secret, name or ARN (default: the trigger "
        "stack's AzureDevOpsSecretArn)",
    )
    ado_secret_source: str = Field("--ado-secret", description="where ado_secret came from")
    automation_stack: str = Field(
        DEFAULT_AUTOMATION_STACK,
        min_length=1,
        description="the stack of infra/automation-account.yaml",
    )
    trigger_stack: str = Field(
        DEFAULT_TRIGGER_STACK, min_length=1, description="the stack of infra/trigger.yaml"
    )
    oidc_audience: str | None = Field(
        None,
        description="the aud the job's OIDC token must carry (default: the automation stack's "
        f"OidcAudience, else {lookups.DEFAULT_AUDIENCE})",
    )
    on_agent: bool = Field(
        False, description="inside an Azure Pipelines job (TF_BUILD): check its OIDC token"
    )


class DoctorResult(BaseModel):
    """``{"ok": …, "checks": [{"name", "status", "detail", "fix"}]}``; ``ok``: no check failed
    (skipped ones do not count)."""

    ok: bool = Field(description="no check failed")
    checks: list[CheckResult] = Field(description="every check, in the order they ran")


class DoctorFailed(ExecutionFailed):
    """At least one doctor check failed (exit code 4, as a failed execution or endpoint test)."""


@dataclass
class DoctorClients:
    """The clients the checks read with; each is ``None`` with the reason when it could not be
    made (the checks that need it then fail or skip, naming the reason)."""

    aws: AwsClients | None = None
    aws_error: str = ""
    azure_devops: Callable[[str], AzureDevOpsClient] | None = None  # organization -> client
    azure_devops_source: str = ""
    azure_devops_error: str = ""
    oidc_token: Callable[[], str] | None = None  # the job's OIDC token, fetched anew per call
    oidc_error: str = ""


def connect(
    params: DoctorParams,
    *,
    aws: AwsClients | None = None,
    aws_error: str = "",
    reporter: Reporter | None = None,
    environ: Mapping[str, str] | None = None,
) -> DoctorClients:
    """Clients from the environment: the Azure DevOps credential (``SYSTEM_ACCESSTOKEN``,
    ``SMBRIDGE_ADO_PAT``, ``AZURE_DEVOPS_EXT_PAT``; its secrets masked in ``reporter``) and, on an
    agent, the job's OIDC token source (with ``aws.service_connection_id``). No request is made."""
    from bridge.azure_devops.client import AzureDevOpsClient
    from bridge.azure_devops.credentials import ENVIRONMENT_CREDENTIALS, credential_from_environ
    from bridge.azure_devops.oidc import AzureDevOpsOidcTokenSource

    env = os.environ if environ is None else environ
    clients = DoctorClients(aws=aws, aws_error=aws_error)
    try:
        credential = credential_from_environ(env)
    except BridgeError as exc:
        clients.azure_devops_error = str(exc)
    else:
        if reporter is not None:
            reporter.add_secret_source(credential.secrets)
        made: dict[str, AzureDevOpsClient] = {}

        def client(organization: str) -> AzureDevOpsClient:
            if organization not in made:
                made[organization] = AzureDevOpsClient(organization, credential)
            return made[organization]

        clients.azure_devops = client
        clients.azure_devops_source = next(
            (name for name in ENVIRONMENT_CREDENTIALS if env.get(name, "").strip()), "?"
        )
    if params.on_agent:
        try:
            source = AzureDevOpsOidcTokenSource.from_environ(
                env, service_connection_id=params.config.aws.service_connection_id
            )
        except BridgeError as exc:
            clients.oidc_error = str(exc)
        else:
            if reporter is not None:
                reporter.add_secret(source.access_token)
            clients.oidc_token = source
    return clients


def run(
    params: DoctorParams,
    *,
    clients: DoctorClients,
    reporter: Reporter | None = None,
    now: datetime | None = None,
) -> DoctorResult:
    """Every check, in order (reads only); the result, whatever the checks found."""
    context = checks.Context(params=params, clients=clients, reporter=reporter or Reporter())
    if now is not None:
        context.now = now
    found = checks.run_all(context)
    return DoctorResult(ok=all(c.status != "fail" for c in found), checks=found)


# -- the plan (pure) ------------------------------------------------------------------------------


def plan(params: DoctorParams) -> Plan:
    """The checks and the calls each would make, in order; no call, no credential."""
    from bridge.ado.setup import SetupParams
    from bridge.azure_devops import environments as ado
    from bridge.azure_devops import permissions
    from bridge.azure_devops.client import organization_url
    from bridge.azure_devops.oidc import OIDC_API_VERSION

    config = params.config
    steps: list[PlannedStep] = []

    def local(what: str, check: str, when: str = "") -> None:
        steps.append(PlannedStep("local", what, {}, _when(check, when)))

    def aws(
        service: str, operation: str, arguments: dict[str, Any], check: str, when: str = ""
    ) -> None:
        steps.append(PlannedStep(service, operation, arguments, _when(check, when)))

    def azure(
        request: ApiRequest, organization: str, check: str, when: str = "", **ids: str
    ) -> None:
        url = request.url(organization_url(organization))
        for placeholder in ids.values():  # unknown ids shown as {…}, not percent-encoded
            url = url.replace(quote_plus(placeholder), placeholder)
            url = url.replace(quote(placeholder, safe=""), placeholder)
        steps.append(PlannedStep(AZURE_DEVOPS, f"{request.method} {url}", None, _when(check, when)))

    local(f"read {', '.join([config.source, *params.stage_configs])}", "placeholders")
    role = config.aws.role_arn
    aws("sts", "GetCallerIdentity", {}, "aws-identity", f"after assuming {role}" if role else "")
    if params.on_agent:
        connection = config.aws.service_connection_id
        query = f"?api-version={OIDC_API_VERSION}" + (
            f"&serviceConnectionId={connection}" if connection else ""
        )
        steps.append(
            PlannedStep(
                AZURE_DEVOPS,
                f"POST $(System.OidcRequestUri){query}",
                None,
                _when("oidc-token", "issues the job's token; changes nothing"),
            )
        )
    else:
        local("nothing (not on an Azure DevOps agent)", "oidc-token")
    for name, check in (
        (params.automation_stack, "automation-stack"),
        (params.trigger_stack, "trigger-stack"),
    ):
        aws("cloudformation", "DescribeStacks", {"StackName": name}, check)
    steps.append(
        PlannedStep(
            "local", "the Azure DevOps credential's variable", {}, "azure-devops-credential"
        )
    )
    table = None
    if params.routes_json is not None:
        from bridge.trigger.routing import parse_routes

        try:
            table = parse_routes(params.routes_json, source=params.routes_source)
        except BridgeError:
            table = None
        local(f"routes from {params.routes_source}", "routes")
    elif params.routes_parameter:
        aws("ssm", "GetParameter", {"Name": params.routes_parameter}, "routes")
    else:
        aws(
            "ssm",
            "GetParameter",
            {"Name": "{the trigger stack's RoutesParameterName}"},
            "routes",
            "if the trigger stack's RoutesJson is empty",
        )
    if table is not None:
        for target in checks.targets(table):
            route = target.route
            request = lookups.get_pipeline_request(route.project, route.pipeline_id)
            azure(request, route.organization, "routes")
        local("each target pipeline's YAML at its configuration.path", "pipeline-parameters")
    else:
        steps.append(
            PlannedStep(
                AZURE_DEVOPS,
                "GET https://dev.azure.com/{organization}/{project}/_apis/pipelines/{pipelineId}"
                "?api-version=7.1",
                None,
                _when("routes", "for each route's pipeline"),
            )
        )
        local("each target pipeline's YAML at its configuration.path", "pipeline-parameters")
    project = config.azure_devops
    settings = project.environments if project else None
    if project is not None and settings is not None:
        setup = SetupParams.from_settings(
            settings, organization=project.organization, project=project.project
        )
        org, name = setup.organization, setup.project
        ids = {env: f"{{id of {env}}}" for env in setup.environment_names}
        for env in setup.environment_names:
            azure(ado.list_environments_request(name, name=env), org, "environments")
        production = setup.environment_names[1]
        request = ado.list_checks_request(name, "environment", ids[production])
        azure(request, org, "approval-check", id=ids[production])
        staging = setup.environment_names[0]
        request = ado.list_checks_request(name, "environment", ids[staging])
        azure(
            request,
            org,
            "exclusive-locks",
            "production's: approval-check's answer",
            id=ids[staging],
        )
        if setup.pipeline_id is not None:
            for env in setup.environment_names:
                request = permissions.get_permissions_request(name, "environment", ids[env])
                azure(request, org, "pipeline-authorised", id=ids[env])
    else:
        local("nothing (azure_devops.environments is not set)", "environments")
    if project is not None:
        for endpoint_id in _service_connection_ids(params):
            request = lookups.get_service_endpoint_request(project.project, endpoint_id)
            azure(request, project.organization, "service-connections")
    secret = params.ado_secret or "{the trigger stack's AzureDevOpsSecretArn}"
    aws(
        "secretsmanager",
        "GetSecretValue",
        {"SecretId": secret},
        "trigger-secret",
        "value never shown",
    )
    return Plan("checks doctor would run, and their calls", steps)


def _when(check: str, condition: str = "") -> str:
    return f"{check}: {condition}" if condition else check


def _service_connection_ids(params: DoctorParams) -> list[str]:
    import json
    from pathlib import Path

    found = []
    if params.config.aws.service_connection_id:
        found.append(params.config.aws.service_connection_id)
    for file in params.stage_configs:
        try:
            stage = json.loads(Path(file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        value = stage.get("service_connection_id") if isinstance(stage, dict) else None
        if isinstance(value, str) and value and value not in found:
            found.append(value)
    return found
