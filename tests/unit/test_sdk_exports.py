"""The public SDK is symmetric: every operation is exported with its parameters and result, lazily
(importing ``bridge`` loads none of them), and every exported name resolves."""

from __future__ import annotations

import subprocess
import sys

import bridge

OPERATIONS = {
    # operation: (its parameters model, its result model) — None where it takes plain arguments
    "build_definition": ("BuildParams", None),
    "upsert_pipeline": ("UpsertParams", "UpsertResult"),
    "start_pipeline": ("StartParams", "ExecutionResult"),
    "pipeline_status": ("ExecutionParams", "ExecutionResult"),
    "stop_pipeline": ("ExecutionParams", "ExecutionResult"),
    "prepare_release": ("PrepareParams", "PrepareResult"),
    "deploy_stage": ("DeployParams", "DeployResult"),
    "run_endpoint_test": ("Expectations", "EndpointTestReport"),
    "setup_environments": ("SetupParams", "SetupResult"),
    "list_approvals": ("ApprovalsListParams", "ApprovalsResult"),
    "approve": ("ApprovalDecisionParams", "ApprovalDecisionResult"),
    "reject": ("ApprovalDecisionParams", "ApprovalDecisionResult"),
    "latest_model_package": ("LatestPackageParams", "PackageResult"),
    "describe_model_package": ("DescribePackageParams", "PackageResult"),
    "set_model_package_status": ("SetStatusParams", "PackageResult"),
    "aws_clients": (None, None),
}


def test_every_exported_name_resolves():
    for name in bridge.__all__:
        assert getattr(bridge, name) is not None, name


def test_every_operation_comes_with_its_parameters_and_result():
    for operation, models in OPERATIONS.items():
        assert callable(getattr(bridge, operation)), operation
        for model in models:
            if model is not None:
                assert model in bridge.__all__, f"{operation}: {model} is not exported"


def test_importing_bridge_loads_no_operation():
    code = "import sys, bridge; print(sorted(m for m in sys.modules if m.startswith('bridge.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
