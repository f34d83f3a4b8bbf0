"""Model deploy as SDK functions: ``prepare_release`` (the Prepare stage) and ``deploy_stage``
(one CloudFormation stack per stage and model, in the stage's account).

Example::

    from bridge import AwsAuth, AwsClients, DeployParams, deploy_stage
    clients = AwsClients(AwsAuth(region="eu-west-1"))
    result = deploy_stage(DeployParams(stage="staging", model_package_arn=arn,
                                       config_file="model-deploy/config/staging.json"),
                          clients=clients)
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bridge.aws import registry
from bridge.aws.endpoints import run_transform_job
from bridge.aws.session import AwsAuth, AwsClients
from bridge.aws.stacks import deploy_stack
from bridge.aws.tags import clean_tags
from bridge.core.agent import AgentRun
from bridge.core.output import Reporter
from bridge.core.plan import Plan, PlannedCall
from bridge.errors import UserError, cut
from bridge.settings.stage import StageConfig, load_stage_config

TEMPLATES = {
    "realtime": "realtime.yaml",
    "serverless": "serverless.yaml",
    "async": "async.yaml",
    "batch": "batch-model.yaml",
}
NAME_LIMIT = 63  # SageMaker model, endpoint config and endpoint names


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrepareParams(_Params):
    model_package_arn: str | None = Field(None, description="the version to release")
    group: str | None = Field(None, description="or: release the group's newest Approved version")
    out_dir: Path = Field(description="where one <stage>.json per stage config is written")
    stage_configs: list[Path] = Field(description="the stage configs to render")
    allowed_account: str | None = Field(
        None, description="the model registry's account: an ARN elsewhere is refused"
    )
    allowed_region: str | None = Field(
        None, description="the model registry's region: an ARN elsewhere is refused"
    )


class DeployParams(_Params):
    stage: str = Field(description="the stage name; must match the stage config's")
    model_package_arn: str = Field(description="the Approved model package version to deploy")
    config_file: Path = Field(description="the stage config (model-deploy/config/<stage>.json)")
    templates_dir: Path = Field(
        Path("model-deploy/templates"), description="CloudFormation templates per inference type"
    )
    dry_run: bool = Field(False, description="print the plan; make no call")
    timeout_seconds: float = Field(3 * 3600, gt=0, description="how long to follow the stack")
    allowed_account: str | None = Field(
        None, description="the model registry's account: an ARN elsewhere is refused"
    )
    allowed_region: str | None = Field(
        None, description="the model registry's region: an ARN elsewhere is refused"
    )


class StagePlan(BaseModel):
    stage: str
    account_id: str
    region: str
    stack_name: str
    template: str
    parameters: dict[str, str]
    tags: dict[str, str]
    endpoint_name: str | None = None


class PrepareResult(BaseModel):
    model_package: dict[str, Any]
    stages: list[StagePlan]
    out_dir: str


class DeployResult(BaseModel):
    stage: str
    stack_name: str
    action: str
    status: str
    endpoint_name: str | None = None
    endpoint_arn: str | None = None
    model_name: str | None = None
    transform_job: str | None = None
    planned_calls: list[dict[str, Any]] = Field(default_factory=list)
    plan: Plan | None = Field(default=None, exclude=True, description="a dry run's plan")


def _name(base: str, suffix: str, limit: int = NAME_LIMIT) -> str:
    """``base-suffix`` within ``limit`` characters: the base is cut, the suffix kept."""
    room = limit - len(suffix) - 1
    return f"{base[:room].rstrip('-')}-{suffix}"


def _base_name(prefix: str, group: str) -> str:
    """``<prefix>-<group>``, or the group alone when it already starts with the prefix (the
    deploy role allows names starting with the prefix: infra/deploy-role.yaml)."""
    return group if group == prefix or group.startswith(f"{prefix}-") else f"{prefix}-{group}"


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:8]


def render_stage(config: StageConfig, package: registry.ModelPackageArn) -> StagePlan:
    """The stack name, template and CloudFormation parameters for ``package`` on a stage."""
    inference = config.inference
    base = _base_name(config.name_prefix, package.group)
    model_name = _name(
        base, f"v{package.version}-{config.stage}-{_digest(package.arn, config.execution_role_arn)}"
    )
    parameters: dict[str, str] = {
        "ModelPackageArn": package.arn,
        "ModelName": model_name,
        "ExecutionRoleArn": config.execution_role_arn,
        "NamePrefix": config.name_prefix,
        "StageName": config.stage,
        "KmsKeyArn": "",
    }
    endpoint_name = None
    if inference.type != "batch":
        endpoint_name = _name(base, config.stage)
        parameters["EndpointName"] = endpoint_name
    if inference.type in ("realtime", "async"):  # instance-backed endpoints
        parameters |= {
            "InstanceType": inference.instance_type,
            "InitialInstanceCount": str(inference.instance_count),
            "MinCapacity": str(inference.autoscaling.min_capacity),
            "MaxCapacity": str(inference.autoscaling.max_capacity),
        }
    if inference.type == "realtime":
        deployment, capture = config.deployment, config.data_capture
        parameters |= {
            "TargetInvocationsPerInstance": str(
                inference.autoscaling.target_invocations_per_instance
            ),
            "DataCaptureEnabled": str(capture.enabled).lower(),
            "DataCaptureS3Uri": capture.s3_uri,
            "DataCaptureSamplingPercent": str(capture.sampling_percent),
            "DeploymentStrategy": deployment.strategy,
            "CanarySizePercent": str(deployment.canary_size_percent),
            "LinearStepPercent": str(deployment.linear_step_percent),
            "WaitIntervalSeconds": str(deployment.wait_interval_seconds),
            "TerminationWaitSeconds": str(deployment.termination_wait_seconds),
            "MaximumExecutionTimeoutSeconds": str(deployment.maximum_execution_timeout_seconds),
            "RollbackAlarmNames": ",".join(deployment.rollback_alarm_names),
        }
    elif inference.type == "serverless":
        parameters |= {
            "MemorySizeInMB": str(inference.memory_size_mb),
            "MaxConcurrency": str(inference.max_concurrency),
            "ProvisionedConcurrency": str(inference.provisioned_concurrency),
        }
    elif inference.type == "async":
        parameters |= {
            "OutputS3Uri": inference.output_s3_uri,
            "FailureS3Uri": inference.failure_s3_uri,
            "MaxConcurrentInvocationsPerInstance": str(
                inference.max_concurrent_invocations_per_instance
            ),
        }
    if endpoint_name is not None:
        # A new model version or a changed setting gets a new endpoint config: the update of
        # the same endpoint that SageMaker runs blue/green (with the configured guardrails).
        parameters["EndpointConfigName"] = _name(
            base, f"v{package.version}-{config.stage}-{_digest(parameters)}"
        )
    tags = clean_tags(
        {
            **config.tags,
            "smbridge:stage": config.stage,
            "smbridge:model-package-group": package.group,
            "smbridge:model-package-version": str(package.version),
        }
    )
    return StagePlan(
        stage=config.stage,
        account_id=config.account_id,
        region=config.region,
        stack_name=_name(base, config.stage, 128),
        template=TEMPLATES[inference.type],
        parameters=parameters,
        tags=tags,
        endpoint_name=endpoint_name,
    )


def _require_approved(package: registry.ModelPackage) -> None:
    if not package.approved:
        raise UserError(
            f"model package {package.arn} is {package.status}, not Approved: approve it first "
            f"(smbridge registry approve {package.arn} --comment …)"
        )


def check_package_arn(params: PrepareParams | DeployParams) -> registry.ModelPackageArn:
    """The ARN's shape, account and region, checked without any call."""
    assert params.model_package_arn is not None
    wanted = registry.ModelPackageArn.parse(params.model_package_arn)
    if params.allowed_account and wanted.account != params.allowed_account:
        raise UserError(
            f"--model-package-arn: account {wanted.account} is not the model registry's "
            f"({params.allowed_account}, model_registry.account_id in bridge.yaml)"
        )
    if params.allowed_region and wanted.region != params.allowed_region:
        raise UserError(
            f"--model-package-arn: region {wanted.region} is not the model registry's "
            f"({params.allowed_region})"
        )
    return wanted


def check_offline(params: PrepareParams) -> list[StageConfig]:
    """Everything Prepare can check without a call: the ARN, and every stage config."""
    if params.model_package_arn:
        check_package_arn(params)
    return [load_stage_config(file) for file in params.stage_configs]


def prepare_release(
    params: PrepareParams, *, clients: AwsClients, reporter: Reporter | None = None
) -> PrepareResult:
    """Validate and resolve the package, refuse unless Approved, render every stage."""
    reporter = reporter or Reporter.silent()
    stage_configs = check_offline(params)
    sagemaker = clients.client("sagemaker")
    if params.model_package_arn:
        package = registry.describe_model_package(sagemaker, params.model_package_arn.strip())
    elif params.group:
        found = registry.latest_model_package(sagemaker, params.group, status="Approved")
        if found is None:
            raise UserError(f"model package group {params.group} has no Approved version")
        package = found
        reporter.info(f"newest Approved version of {params.group}: {package.arn}")
    else:
        raise UserError("give --model-package-arn, or --group for its newest Approved version")
    _require_approved(package)
    parsed = registry.ModelPackageArn.parse(package.arn)
    params.out_dir.mkdir(parents=True, exist_ok=True)
    plans = []
    for config in stage_configs:
        plan = render_stage(config, parsed)
        (params.out_dir / f"{plan.stage}.json").write_text(
            json.dumps(plan.model_dump(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        reporter.info(f"stage {plan.stage}: stack {plan.stack_name} ({plan.template})")
        plans.append(plan)
    reporter.output_variable("modelPackageArn", package.arn)
    reporter.output_variable("modelPackageVersion", str(package.version))
    reporter.output_variable("modelPackageGroupName", package.group)
    return PrepareResult(model_package=package.summary(), stages=plans, out_dir=str(params.out_dir))


def stage_clients(config: StageConfig, base: AwsClients) -> AwsClients:
    """Clients in the stage's account.

    With ``service_connection_id``: that Azure DevOps service connection's OIDC token is
    exchanged for the deploy role (AssumeRoleWithWebIdentity, a fresh token at every refresh),
    so the stage's trust policy decides on the token's ``sub`` (``sc://org/project/connection``)
    and the automation account's credentials play no part. Otherwise the deploy role is assumed
    from the caller's credentials (AssumeRole, with ``external_id`` when set). Without a deploy
    role: the caller's own credentials, in the stage's region.
    """
    if not config.deploy_role_arn:
        return base.in_region(config.region)
    token_source = None
    if config.service_connection_id:
        from bridge.azure_devops.oidc import AzureDevOpsOidcTokenSource

        token_source = AzureDevOpsOidcTokenSource.from_environ(
            service_connection_id=config.service_connection_id
        )
    auth = AwsAuth(
        region=config.region,
        role_arn=config.deploy_role_arn,
        web_identity_token=token_source,
        role_session_name=f"smbridge-deploy-{config.stage}",
        duration_seconds=3600,  # the maximum for a chained role (and the deploy role's)
        external_id=None if token_source else config.external_id,
    )
    return AwsClients(auth, base=base.session())


def run_id(run: AgentRun) -> str | None:
    """This Azure DevOps run as a CloudFormation ClientRequestToken prefix (build id and job
    attempt), or None off an agent. Kept out of stack tags: see ``deploy_stack``."""
    if not run.present or not run.build_id.isdigit():
        return None
    attempt = run.job_attempt if run.job_attempt.isdigit() else "1"
    return f"azdo-{run.build_id}-{attempt}"


def change_set_description(
    plan: StagePlan, package: registry.ModelPackageArn, run: AgentRun
) -> str:
    text = f"smbridge deploy of {package.group} v{package.version} to {plan.stage}"
    if run.present:
        text += (
            f" by Azure DevOps run {run.build_number or run.build_id} (build {run.build_id}, "
            f"attempt {run.job_attempt or '1'}, pipeline {run.definition_name or '?'})"
        )
    return text


def deploy_stage(
    params: DeployParams,
    *,
    clients: AwsClients | None = None,
    reporter: Reporter | None = None,
    stage_clients_factory: Callable[[StageConfig, AwsClients], AwsClients] = stage_clients,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> DeployResult:
    """Deploy an Approved model package onto one stage and wait for the end."""
    reporter = reporter or Reporter.silent()
    config = load_stage_config(params.config_file)
    if config.stage != params.stage:
        raise UserError(
            f"--stage {cut(params.stage)} but {params.config_file} is for stage {cut(config.stage)}"
        )
    package_arn = check_package_arn(params)
    plan = render_stage(config, package_arn)
    template_file = params.templates_dir / plan.template
    if not template_file.is_file():
        raise UserError(f"{template_file}: template not found; check --templates-dir")
    if params.dry_run:
        return _deploy_plan(config, plan, template_file)
    if clients is None:
        raise UserError("deploy needs AWS clients (or dry_run=True)")
    target = stage_clients_factory(config, clients)
    with reporter.group(f"Deploy {package_arn.group} v{package_arn.version} to {config.stage}"):
        # Checked with the caller's (registry-side) credentials, in the package's region.
        registry_client = clients.in_region(package_arn.region).client("sagemaker")
        _require_approved(registry.describe_model_package(registry_client, package_arn.arn))
        # The run (build id, attempt) goes into the operations' ClientRequestToken and the
        # change set's description, never into stack tags: a tag that changes every run would
        # make every redeploy of the same version a change set updating all resources' tags.
        run = AgentRun.from_environ()
        result = deploy_stack(
            target.client("cloudformation"),
            stack_name=plan.stack_name,
            template_body=template_file.read_text(encoding="utf-8"),
            role_arn=config.cloudformation_role_arn,
            run_id=run_id(run),
            description=change_set_description(plan, package_arn, run),
            parameters=plan.parameters,
            tags=plan.tags,
            progress=reporter.progress,
            timeout_seconds=params.timeout_seconds,
            sleep=sleep,
            monotonic=monotonic,
        )
        reporter.info(f"stack {plan.stack_name}: {result.action} ({result.status})")
    outputs = result.outputs
    deployed = DeployResult(
        stage=config.stage,
        stack_name=plan.stack_name,
        action=result.action,
        status=result.status,
        endpoint_name=outputs.get("EndpointName"),
        endpoint_arn=outputs.get("EndpointArn"),
        model_name=outputs.get("ModelName", plan.parameters["ModelName"]),
    )
    if config.inference.type == "batch":
        inference = config.inference
        job_name = _name(plan.parameters["ModelName"], _digest(inference.model_dump()))
        run_transform_job(
            target.client("sagemaker"),
            job_name=job_name,
            model_name=deployed.model_name or plan.parameters["ModelName"],
            input_s3_uri=inference.input_s3_uri,
            output_s3_uri=inference.output_s3_uri,
            instance_type=inference.instance_type,
            instance_count=inference.instance_count,
            content_type=inference.content_type,
            split_type=inference.split_type,
            progress=reporter.progress,
            sleep=sleep,
            monotonic=monotonic,
        )
        deployed.transform_job = job_name
    reporter.output_variable("stackName", plan.stack_name)
    if deployed.endpoint_name:
        reporter.output_variable("endpointName", deployed.endpoint_name)
    if deployed.endpoint_arn:
        reporter.output_variable("endpointArn", deployed.endpoint_arn)
    return deployed


def _deploy_plan(
    config: StageConfig,
    plan: StagePlan,
    template_file: Path,
) -> DeployResult:
    role = config.deploy_role_arn or "(the caller's credentials)"
    arn = plan.parameters["ModelPackageArn"]
    change_set: dict[str, Any] = {
        "StackName": plan.stack_name,
        "ChangeSetType": "CREATE or UPDATE (whichever applies)",
        "TemplateBody": str(template_file),
        "Parameters": plan.parameters,
        "Tags": plan.tags,
        "OnStackFailure": "DELETE (CREATE only)",
    }
    if config.cloudformation_role_arn:
        change_set["RoleARN"] = config.cloudformation_role_arn
    planned = [
        PlannedCall("sagemaker", "DescribeModelPackage", {"ModelPackageName": arn}, "Approved?"),
        PlannedCall(
            "cloudformation",
            "CreateChangeSet",
            change_set,
            "after ContinueUpdateRollback (UPDATE_ROLLBACK_FAILED) or DeleteStack "
            "(ROLLBACK_COMPLETE) if the stack was left so",
        ),
        PlannedCall(
            "cloudformation",
            "ExecuteChangeSet",
            {"StackName": plan.stack_name},
            "then wait, printing each stack event once",
        ),
    ]
    if config.deploy_role_arn and config.service_connection_id:
        planned.insert(
            0,
            PlannedCall(
                "sts",
                "AssumeRoleWithWebIdentity",
                {"RoleArn": role, "WebIdentityToken": "(OIDC token of the service connection)"},
                f"service connection {config.service_connection_id}",
            ),
        )
    elif config.deploy_role_arn:
        assume: dict[str, Any] = {"RoleArn": role}
        if config.external_id:
            assume["ExternalId"] = "(external_id of the stage config)"
        planned.insert(0, PlannedCall("sts", "AssumeRole", assume))
    dry_plan = Plan(
        f"the change set deploy would create on {config.stage} (account {config.account_id}, "
        f"region {config.region}, role {role}, stack {plan.stack_name} from {template_file})",
        planned,
    )
    return DeployResult(
        stage=config.stage,
        stack_name=plan.stack_name,
        action="planned",
        status="planned",
        endpoint_name=plan.endpoint_name,
        planned_calls=dry_plan.calls(),
        plan=dry_plan,
    )
