"""smbridge: the bridge between Azure DevOps and Amazon SageMaker.

Every CLI command is a thin layer over a function here::

    from bridge import AwsAuth, AwsClients, StartParams, start_pipeline

    clients = AwsClients(AwsAuth(region="eu-west-1", role_arn="arn:aws:iam::111111111111:role/ci"))
    result = start_pipeline(StartParams(pipeline_name="demo", wait=True), clients=clients)
    print(result.status, [step.name for step in result.steps])

Importing ``bridge`` is cheap: names load on first use and the SageMaker SDK never loads here.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # configuration
    "BridgeConfig": "bridge.settings.bridge_config",
    "load_config": "bridge.settings.bridge_config",
    # AWS access
    "AwsAuth": "bridge.aws.session",
    "AwsClients": "bridge.aws.session",
    "create_session": "bridge.aws.session",
    "aws_auth": "bridge.access",
    "aws_clients": "bridge.access",
    "AzureDevOpsOidcTokenSource": "bridge.azure_devops.oidc",
    # pipeline commands
    "BuildParams": "bridge.pipeline.operations",
    "UpsertParams": "bridge.pipeline.operations",
    "StartParams": "bridge.pipeline.operations",
    "ExecutionParams": "bridge.pipeline.operations",
    "build_definition": "bridge.pipeline.operations",
    "upsert_pipeline": "bridge.pipeline.operations",
    "start_pipeline": "bridge.pipeline.operations",
    "pipeline_status": "bridge.pipeline.operations",
    "stop_pipeline": "bridge.pipeline.operations",
    "BuildResult": "bridge.pipeline.operations",
    "UpsertResult": "bridge.pipeline.operations",
    "ExecutionResult": "bridge.pipeline.operations",
    "StepResult": "bridge.pipeline.operations",
    "PollPolicy": "bridge.core.polling",
    # model deploy
    "PrepareParams": "bridge.deploy.operations",
    "DeployParams": "bridge.deploy.operations",
    "prepare_release": "bridge.deploy.operations",
    "deploy_stage": "bridge.deploy.operations",
    "PrepareResult": "bridge.deploy.operations",
    "DeployResult": "bridge.deploy.operations",
    "StageConfig": "bridge.settings.stage",
    "load_stage_config": "bridge.settings.stage",
    "run_endpoint_test": "bridge.deploy.endpoint_test",
    "Expectations": "bridge.deploy.endpoint_test",
    "EndpointTestReport": "bridge.deploy.endpoint_test",
    # model registry
    "LatestPackageParams": "bridge.registry.operations",
    "DescribePackageParams": "bridge.registry.operations",
    "SetStatusParams": "bridge.registry.operations",
    "PackageResult": "bridge.registry.operations",
    "latest_model_package": "bridge.registry.operations",
    "describe_model_package": "bridge.registry.operations",
    "set_model_package_status": "bridge.registry.operations",
    # Azure DevOps side as code
    "SetupParams": "bridge.ado.setup",
    "setup_environments": "bridge.ado.setup",
    "SetupResult": "bridge.ado.setup",
    "ApprovalsListParams": "bridge.ado.setup",
    "ApprovalsResult": "bridge.ado.setup",
    "list_approvals": "bridge.ado.setup",
    "ApprovalDecisionParams": "bridge.ado.setup",
    "ApprovalDecisionResult": "bridge.ado.setup",
    "approve": "bridge.ado.setup",
    "reject": "bridge.ado.setup",
    # output and errors
    "Reporter": "bridge.core.output",
    "BridgeError": "bridge.errors",
    "UserError": "bridge.errors",
    "ServiceError": "bridge.errors",
    "ExecutionFailed": "bridge.errors",
    "WaitTimeout": "bridge.errors",
    "CredentialsError": "bridge.errors",
    "Cancelled": "bridge.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
