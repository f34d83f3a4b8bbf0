"""Model Registry commands and model-deploy's Prepare stage, against moto's SageMaker."""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from bridge.aws.registry import ModelPackageArn
from bridge.core.output import Reporter
from bridge.deploy.operations import PrepareParams, prepare_release, render_stage
from bridge.errors import ConfigError, UserError
from bridge.registry import operations as model_registry
from bridge.registry.operations import (
    DescribePackageParams,
    LatestPackageParams,
    SetStatusParams,
)
from bridge.settings.stage import StageConfig, load_stage_config
from tests.support.fakes import StaticClients
from tests.support.registry import add_model_package

ACCOUNT = "123456789012"
GROUP = "churn-xgb"


def stage_document(stage: str = "staging", **overrides) -> dict:
    document = {
        "stage": stage,
        "account_id": "222222222222",
        "region": "eu-west-1",
        "deploy_role_arn": "arn:aws:iam::222222222222:role/smbridge-deploy",
        "execution_role_arn": "arn:aws:iam::222222222222:role/smbridge-sagemaker-endpoint",
        "name_prefix": "smbridge-demo",
        "inference": {"type": "realtime", "instance_type": "ml.m5.large", "instance_count": 1},
    }
    document.update(overrides)
    return document


@pytest.fixture
def registry():
    with mock_aws():
        sagemaker = boto3.client("sagemaker", region_name="eu-west-1")

        def add(status: str) -> str:
            return add_model_package(sagemaker, GROUP, status)

        clients = StaticClients(sagemaker=sagemaker, sts=boto3.client("sts", "eu-west-1"))
        yield clients, add


def quiet() -> Reporter:
    return Reporter("text", out=io.StringIO(), err=io.StringIO())


def test_latest_is_the_newest_approved_not_the_oldest(registry):
    clients, add = registry
    first, second = add("Approved"), add("Approved")
    add("PendingManualApproval")
    add("Rejected")
    newest = model_registry.latest(
        LatestPackageParams(group=GROUP), clients=clients, reporter=quiet()
    )
    assert newest.arn == second != first
    anything = LatestPackageParams(group=GROUP, status=None)
    assert model_registry.latest(anything, clients=clients, reporter=quiet()).version == 4
    with pytest.raises(UserError, match="no Approved version"):
        empty = LatestPackageParams(group="empty-group")
        model_registry.latest(empty, clients=clients, reporter=quiet())


def test_approve_and_reject_record_who_and_why(registry):
    clients, add = registry
    arn = add("PendingManualApproval")
    approve = SetStatusParams(
        arn=arn, status="Approved", comment="AUC 0.99 on holdout", approver="alice"
    )
    approved = model_registry.set_status(approve, clients=clients, reporter=quiet())
    assert approved.status == "Approved"
    assert approved.approval_description == "Approved by alice: AUC 0.99 on holdout"
    reject = SetStatusParams(arn=arn, status="Rejected", comment="drift found")
    rejected = model_registry.set_status(reject, clients=clients, reporter=quiet())
    assert rejected.approval_description.startswith(f"Rejected by arn:aws:sts::{ACCOUNT}:")
    assert rejected.approval_description.endswith(": drift found")
    with pytest.raises(UserError, match="--comment is required"):
        SetStatusParams(arn=arn, status="Approved", comment=" ")


def test_plans_are_pure_and_say_who(registry):
    """A plan is built from the parameters alone: no client exists to call."""
    _, add = registry
    arn = add("PendingManualApproval")
    plan = model_registry.plan_set_status(
        SetStatusParams(arn=arn, status="Rejected", comment="drift", approver="bob")
    )
    update = next(step for step in plan.steps if step.operation == "UpdateModelPackage")
    assert update.arguments["ApprovalDescription"] == "Rejected by bob: drift"
    assert plan.title == "AWS calls registry reject would make"
    latest = model_registry.plan_latest(LatestPackageParams(group=GROUP))
    assert [s.operation for s in latest.steps] == ["ListModelPackages", "DescribeModelPackage"]


def test_bad_arn_is_one_line():
    with pytest.raises(UserError, match=r"expected arn:aws:sagemaker:<region>"):
        DescribePackageParams(arn="arn:aws:s3:::bucket/key")


def write_configs(tmp_path: Path) -> list[Path]:
    files = []
    for stage, extra in (
        ("staging", {}),
        (
            "production",
            {
                "account_id": "333333333333",
                "deployment": {"strategy": "Canary", "canary_size_percent": 10},
                "data_capture": {"enabled": True, "s3_uri": "s3://capture/x/"},
            },
        ),
    ):
        path = tmp_path / f"{stage}.json"
        path.write_text(json.dumps(stage_document(stage, **extra)))
        files.append(path)
    return files


def prepare(clients, tmp_path, **fields):
    params = PrepareParams(
        out_dir=tmp_path / "out",
        stage_configs=write_configs(tmp_path),
        allowed_account=ACCOUNT,
        allowed_region="eu-west-1",
        **fields,
    )
    return prepare_release(params, clients=clients, reporter=quiet())


def test_prepare_renders_every_stage_for_an_approved_package(registry, tmp_path):
    clients, add = registry
    arn = add("Approved")
    result = prepare(clients, tmp_path, model_package_arn=arn)
    assert [s.stage for s in result.stages] == ["staging", "production"]
    staging = json.loads((tmp_path / "out" / "staging.json").read_text())
    assert staging["parameters"]["ModelPackageArn"] == arn
    assert staging["parameters"]["DeploymentStrategy"] == "AllAtOnce"
    production = json.loads((tmp_path / "out" / "production.json").read_text())
    assert production["parameters"]["DeploymentStrategy"] == "Canary"
    assert production["parameters"]["DataCaptureEnabled"] == "true"
    assert production["parameters"]["DataCaptureSamplingPercent"] == "100"
    assert production["account_id"] == "333333333333"


def test_prepare_with_a_group_takes_its_newest_approved(registry, tmp_path):
    clients, add = registry
    add("Approved")
    newest = add("Approved")
    add("PendingManualApproval")
    result = prepare(clients, tmp_path, group=GROUP)
    assert result.model_package["arn"] == newest


@pytest.mark.parametrize("status", ["PendingManualApproval", "Rejected"])
def test_prepare_refuses_unless_approved(registry, tmp_path, status):
    clients, add = registry
    arn = add(status)
    with pytest.raises(UserError, match=f"is {status}, not Approved"):
        prepare(clients, tmp_path, model_package_arn=arn)
    assert not (tmp_path / "out" / "staging.json").exists()


@pytest.mark.parametrize(
    ("arn", "message"),
    [
        (f"arn:aws:sagemaker:eu-west-1:999999999999:model-package/{GROUP}/1", "999999999999"),
        (f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model-package/{GROUP}/1", "region us-east-1"),
        (f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:model-package-group/{GROUP}", "expected arn"),
    ],
)
def test_prepare_checks_the_arn_before_any_call(registry, tmp_path, arn, message):
    clients, _ = registry
    with pytest.raises(UserError, match=message):
        prepare(clients, tmp_path, model_package_arn=arn)


def test_render_names_fit_sagemaker_limits_and_change_with_the_version():
    config = StageConfig.model_validate(stage_document(name_prefix="a-very-long-prefix-x"))
    group = "g" * 63
    v1 = render_stage(
        config,
        ModelPackageArn.parse(f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:model-package/{group}/1"),
    )
    v2 = render_stage(
        config,
        ModelPackageArn.parse(f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:model-package/{group}/2"),
    )
    for plan in (v1, v2):
        for key in ("ModelName", "EndpointName", "EndpointConfigName"):
            assert len(plan.parameters[key]) <= 63, key
        assert len(plan.stack_name) <= 128
    assert v1.stack_name == v2.stack_name  # one stack per stage and model
    assert v1.parameters["EndpointName"] == v2.parameters["EndpointName"]  # same endpoint
    assert v1.parameters["EndpointConfigName"] != v2.parameters["EndpointConfigName"]
    assert v1.parameters["ModelName"] != v2.parameters["ModelName"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"inference": {"type": "gpu"}}, "inference"),
        (
            {"deployment": {"strategy": "Canary"}, "inference": {"type": "serverless"}},
            "Canary/Linear needs inference.type realtime",
        ),
        ({"data_capture": {"enabled": True}}, "s3_uri"),
        ({"account_id": "12"}, "account_id"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_stage_config_is_one_line(tmp_path, change, message):
    path = tmp_path / "staging.json"
    path.write_text(json.dumps(stage_document(**change)))
    with pytest.raises(ConfigError) as info:
        load_stage_config(path)
    assert message in str(info.value)
    assert str(info.value).startswith(str(path))


def test_the_sdk_prints_nothing_by_default(registry, capsys):
    """Printing is the CLI's: an SDK call without a reporter writes nothing, on an agent too,
    and still hands back the output variables it would publish."""
    clients, add = registry
    arn = add("Approved")
    package = model_registry.latest(LatestPackageParams(group=GROUP), clients=clients)
    assert package.arn == arn
    assert capsys.readouterr() == ("", "")
    silent = Reporter.silent()
    model_registry.latest(LatestPackageParams(group=GROUP), clients=clients, reporter=silent)
    assert silent.outputs == {"modelPackageArn": arn}
    assert capsys.readouterr() == ("", "")
