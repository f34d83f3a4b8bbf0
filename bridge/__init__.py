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
    "BridgeConfig": "bridge.config",
    "load_config": "bridge.config",
    # AWS access
    "AwsAuth": "bridge.aws.session",
    "AwsClients": "bridge.aws.session",
    "create_session": "bridge.aws.session",
    "aws_auth": "bridge.credentials",
    "AzureDevOpsOidcTokenSource": "bridge.azure_devops.oidc",
    # pipeline commands
    "BuildParams": "bridge.pipeline",
    "UpsertParams": "bridge.pipeline",
    "StartParams": "bridge.pipeline",
    "ExecutionParams": "bridge.pipeline",
    "build_definition": "bridge.pipeline",
    "upsert_pipeline": "bridge.pipeline",
    "start_pipeline": "bridge.pipeline",
    "pipeline_status": "bridge.pipeline",
    "stop_pipeline": "bridge.pipeline",
    "PollPolicy": "bridge.aws.waiter",
    # model deploy
    "PrepareParams": "bridge.deploy",
    "DeployParams": "bridge.deploy",
    "prepare_release": "bridge.deploy",
    "deploy_stage": "bridge.deploy",
    "StageConfig": "bridge.deploy_config",
    "load_stage_config": "bridge.deploy_config",
    "run_endpoint_test": "bridge.endpoint_test",
    "Expectations": "bridge.endpoint_test",
    # Azure DevOps side as code
    "SetupParams": "bridge.ado_setup",
    "setup_environments": "bridge.ado_setup",
    # output and errors
    "Reporter": "bridge.output",
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
