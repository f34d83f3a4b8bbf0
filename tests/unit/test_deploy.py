"""smbridge deploy against moto: the real templates (made moto-compatible the way
test_deploy_templates.py does: moto has no alarms/autoscaling in CloudFormation and reads only
PrimaryContainer), the stage's deploy role assumed into its own account, change sets, events,
rollbacks (a Stubber: moto never rolls back), batch transform."""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from bridge.aws.session import AwsAuth, AwsClients
from bridge.aws.stacks import StackFailed, deploy_stack
from bridge.core.output import Reporter
from bridge.core.plan import render_plan
from bridge.deploy.operations import DeployParams, deploy_stage
from bridge.errors import UserError
from tests.support.moto_patches import (  # noqa: F401
    moto_change_sets_with_outputs,
    moto_compatible,
)
from tests.support.registry import add_model_package
from tests.unit.test_infra_templates import load_template

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = REPO_ROOT / "model-deploy" / "templates"
STAGE_ACCOUNT = "222222222222"
REGISTRY_ACCOUNT = "123456789012"
GROUP = "smbridge-demo"


@pytest.fixture
def templates_dir(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    target.mkdir()
    for name in ("realtime.yaml", "batch-model.yaml"):
        template, _ = moto_compatible(load_template(TEMPLATES / name))
        (target / name).write_text(json.dumps(template))
    return target


def stage_file(tmp_path: Path, **overrides) -> Path:
    document = json.loads((REPO_ROOT / "model-deploy" / "config" / "staging.json").read_text())
    document.update(overrides)
    path = tmp_path / f"{document['stage']}.json"
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
def aws(moto_change_sets_with_outputs):  # noqa: F811
    with mock_aws():
        sagemaker = boto3.client("sagemaker", region_name="eu-west-1")

        def add(status: str) -> str:
            return add_model_package(sagemaker, GROUP, status)

        yield AwsClients(AwsAuth(region="eu-west-1")), add


def stage_session() -> boto3.Session:
    sts = boto3.client("sts", region_name="eu-west-1")
    credentials = sts.assume_role(
        RoleArn=f"arn:aws:iam::{STAGE_ACCOUNT}:role/smbridge-deploy", RoleSessionName="check"
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name="eu-west-1",
    )


def deploy(clients, arn, config, templates_dir, out=None, **fields):
    out = out or io.StringIO()
    reporter = Reporter("agent", out=out, err=io.StringIO())
    params = DeployParams(
        stage="staging", model_package_arn=arn, config_file=config, templates_dir=templates_dir,
        **fields,
    )  # fmt: skip
    return deploy_stage(params, clients=clients, reporter=reporter, sleep=lambda s: None), out


def test_deploy_creates_the_stack_in_the_stage_account(aws, tmp_path, templates_dir):
    clients, add = aws
    arn = add("Approved")
    result, out = deploy(clients, arn, stage_file(tmp_path), templates_dir)
    assert result.action == "created"
    assert result.endpoint_name and result.endpoint_arn
    text = out.getvalue()
    assert (
        f"##vso[task.setvariable variable=endpointName;isoutput=true]{result.endpoint_name}" in text
    )
    assert "##vso[task.setvariable variable=stackName;isoutput=true]" in text
    stage_cfn = stage_session().client("cloudformation")
    stack = stage_cfn.describe_stacks(StackName=result.stack_name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert f":{STAGE_ACCOUNT}:" in stack["StackId"]
    tags = {t["Key"]: t["Value"] for t in stack["Tags"]}
    assert tags["smbridge:model-package-version"] == "1"
    # Not in the registry (caller's) account.
    with pytest.raises(Exception, match="does not exist"):
        boto3.client("cloudformation", "eu-west-1").describe_stacks(StackName=result.stack_name)
    # Every stack event printed once.
    event_lines = [line for line in text.splitlines() if "(AWS::" in line and "] " in line]
    assert event_lines and len(event_lines) == len(set(event_lines))


def test_same_version_again_is_unchanged_and_a_new_version_updates(aws, tmp_path, templates_dir):
    clients, add = aws
    v1 = add("Approved")
    config = stage_file(tmp_path)
    first, _ = deploy(clients, v1, config, templates_dir)
    again, _ = deploy(clients, v1, config, templates_dir)
    assert again.action == "unchanged"
    v2 = add("Approved")
    updated, _ = deploy(clients, v2, config, templates_dir)
    assert updated.action == "updated"
    assert updated.stack_name == first.stack_name
    assert updated.model_name != first.model_name


@pytest.mark.parametrize("status", ["PendingManualApproval", "Rejected"])
def test_unapproved_packages_are_refused_and_nothing_is_deployed(
    aws, tmp_path, templates_dir, status
):
    clients, add = aws
    arn = add(status)
    with pytest.raises(UserError, match=f"is {status}, not Approved"):
        deploy(clients, arn, stage_file(tmp_path), templates_dir)
    stacks = stage_session().client("cloudformation").list_stacks()["StackSummaries"]
    assert stacks == []


def test_stage_and_config_must_agree(aws, tmp_path, templates_dir):
    clients, add = aws
    config = stage_file(tmp_path, stage="production")
    with pytest.raises(UserError, match=r"--stage staging but .* is for stage production"):
        deploy(clients, add("Approved"), config, templates_dir)


def test_dry_run_prints_the_change_set_and_calls_nothing(tmp_path, monkeypatch):
    import botocore.client

    calls: list[str] = []
    monkeypatch.setattr(
        botocore.client.BaseClient, "_make_api_call", lambda self, op, params: calls.append(op)
    )
    out = io.StringIO()
    params = DeployParams(
        stage="staging",
        model_package_arn=f"arn:aws:sagemaker:eu-west-1:{REGISTRY_ACCOUNT}:model-package/{GROUP}/7",
        config_file=REPO_ROOT / "model-deploy" / "config" / "staging.json",
        templates_dir=TEMPLATES,
        dry_run=True,
    )
    result = deploy_stage(params, reporter=Reporter("text", out=out))
    assert calls == []
    assert out.getvalue() == ""  # the SDK is silent: the CLI renders the plan
    render_plan(Reporter("text", out=out), result.plan)
    text = out.getvalue()
    assert text.startswith("dry run: the change set deploy would create on staging")
    assert "cloudformation:CreateChangeSet" in text
    assert "sts:AssumeRole" in text
    assert '"DeploymentStrategy":"AllAtOnce"' in text
    assert result.action == "planned"


def test_batch_runs_a_transform_job_with_the_stack_model(aws, tmp_path, templates_dir):
    clients, add = aws
    config = stage_file(
        tmp_path,
        inference={
            "type": "batch",
            "input_s3_uri": "s3://in/prefix/",
            "output_s3_uri": "s3://out/prefix/",
        },
    )
    result, _ = deploy(clients, add("Approved"), config, templates_dir)
    assert result.transform_job
    job = (
        stage_session()
        .client("sagemaker")
        .describe_transform_job(TransformJobName=result.transform_job)
    )
    assert job["TransformJobStatus"] == "Completed"
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://in/prefix/"
    assert result.endpoint_name is None


def test_a_rollback_is_a_failure_with_its_reason():
    """moto never rolls back: a Stubber plays CloudFormation's answers for a failed update."""
    cfn = boto3.client("cloudformation", region_name="eu-west-1")
    stack = {"StackName": "s", "StackStatus": "UPDATE_COMPLETE", "CreationTime": "2026-01-01"}
    events = [
        {"EventId": "3", "StackName": "s", "StackId": "sid", "LogicalResourceId": "s",
         "ResourceType": "AWS::CloudFormation::Stack", "Timestamp": "2026-01-01",
         "ResourceStatus": "UPDATE_ROLLBACK_COMPLETE"},
        {"EventId": "2", "StackName": "s", "StackId": "sid", "LogicalResourceId": "Endpoint",
         "ResourceType": "AWS::SageMaker::Endpoint", "Timestamp": "2026-01-01",
         "ResourceStatus": "UPDATE_FAILED",
         "ResourceStatusReason": "Alarm smbridge-latency fired: automatic rollback"},
    ]  # fmt: skip
    with Stubber(cfn) as stub:
        stub.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": "s"})
        stub.add_response("create_change_set", {"Id": "cs-1"}, {
            "StackName": "s", "ChangeSetName": ANY, "ChangeSetType": "UPDATE",
            "TemplateBody": "{}", "Parameters": [], "Tags": [], "Capabilities": [],
            "Description": ANY})  # fmt: skip
        stub.add_response(
            "describe_change_set",
            {"Status": "CREATE_COMPLETE", "Changes": []},
            {"ChangeSetName": "cs-1"},
        )
        stub.add_response("describe_stack_events", {"StackEvents": []}, {"StackName": "s"})
        stub.add_response("execute_change_set", {}, {"ChangeSetName": "cs-1"})
        stub.add_response("describe_stack_events", {"StackEvents": events}, {"StackName": "s"})
        rolled_back = {**stack, "StackStatus": "UPDATE_ROLLBACK_COMPLETE"}
        stub.add_response("describe_stacks", {"Stacks": [rolled_back]}, {"StackName": "s"})
        stub.add_response("describe_stack_events", {"StackEvents": events}, {"StackName": "s"})
        lines: list[str] = []
        with pytest.raises(StackFailed) as info:
            deploy_stack(
                cfn, stack_name="s", template_body="{}", parameters={}, tags={},
                progress=lines.append, sleep=lambda s: None,
            )  # fmt: skip
    assert "UPDATE_ROLLBACK_COMPLETE" in str(info.value)
    assert "Alarm smbridge-latency fired" in str(info.value)
    assert sum("UPDATE_FAILED" in line for line in lines) == 1  # printed once


# ------------------------------------------- stack behaviour moto does not have (a strict fake)


def agent_run(monkeypatch, build_id: str, attempt: str = "1") -> None:
    """The variables the Azure Pipelines agent sets for a run (bridge.core.agent.AgentRun)."""
    for name, value in {
        "TF_BUILD": "True",
        "BUILD_BUILDID": build_id,
        "BUILD_BUILDNUMBER": f"deploy-v1-20261201.{build_id}",
        "SYSTEM_JOBATTEMPT": attempt,
        "BUILD_DEFINITIONNAME": "model-deploy",
        "BUILD_REPOSITORY_NAME": "mlops",
        "BUILD_SOURCEVERSION": "0" * 40,
        "BUILD_SOURCEBRANCH": "refs/heads/main",
    }.items():
        monkeypatch.setenv(name, value)


def deploy_with_fake(clients, arn, config, fake, **fields):
    """deploy_stage with the stage's CloudFormation answered by ``fake`` (the registry check
    still goes to moto)."""
    from tests.support.fake_cloudformation import FakeCloudFormation
    from tests.support.fakes import StaticClients

    assert isinstance(fake, FakeCloudFormation)
    cfn = fake.attach(boto3.client("cloudformation", region_name="eu-west-1"))
    params = DeployParams(
        stage="staging", model_package_arn=arn, config_file=config, templates_dir=TEMPLATES,
        **fields,
    )  # fmt: skip
    out = io.StringIO()
    result = deploy_stage(
        params,
        clients=clients,
        reporter=Reporter("agent", out=out, err=io.StringIO()),
        stage_clients_factory=lambda stage, base: StaticClients(cloudformation=cfn),
        sleep=lambda s: None,
    )
    return result, out.getvalue()


DERIVED_CFN_ROLE = f"arn:aws:iam::{STAGE_ACCOUNT}:role/smbridge-deploy-cloudformation"


def test_a_new_run_of_the_same_version_is_unchanged(aws, tmp_path, monkeypatch):
    """CreateChangeSet Tags are the stack's tags, which CloudFormation propagates to every
    resource (CloudFormation user guide, "Stack tags"): a tag carrying the run id would make
    every redeploy a change set modifying every resource. The run is in the operation's
    ClientRequestToken (carried by its stack events) and the change set's description instead."""
    from tests.support.fake_cloudformation import FakeCloudFormation

    clients, add = aws
    arn = add("Approved")
    config = stage_file(tmp_path)
    fake = FakeCloudFormation(assumable_roles={DERIVED_CFN_ROLE})
    agent_run(monkeypatch, "100")
    first, _ = deploy_with_fake(clients, arn, config, fake)
    assert first.action == "created"
    agent_run(monkeypatch, "101")
    again, _ = deploy_with_fake(clients, arn, config, fake)
    assert again.action == "unchanged"
    stack = fake.stack(first.stack_name)
    assert stack.tags == {
        "project": "smbridge-demo",
        "smbridge:stage": "staging",
        "smbridge:model-package-group": GROUP,
        "smbridge:model-package-version": "1",
    }
    (execute,) = fake.calls_of("ExecuteChangeSet")
    assert execute["ClientRequestToken"].startswith("azdo-100-1-smbridge-")
    assert {e.get("ClientRequestToken") for e in stack.events} >= {execute["ClientRequestToken"]}
    first_cs, second_cs = fake.calls_of("CreateChangeSet")
    assert "build 100" in first_cs["Description"] and "build 101" in second_cs["Description"]
    # A new version by the next run is still an update.
    agent_run(monkeypatch, "102")
    updated, _ = deploy_with_fake(clients, add("Approved"), config, fake)
    assert updated.action == "updated"


def test_the_cloudformation_service_role_is_passed_by_default(aws, tmp_path):
    """Default stage config: the deploy role's ARN + "-cloudformation" (infra/deploy-role.yaml's
    CloudFormationServiceRole) as RoleARN of CreateChangeSet, so CloudFormation does not work
    with the deploy role's one-hour chained session."""
    from tests.support.fake_cloudformation import FakeCloudFormation

    clients, add = aws
    fake = FakeCloudFormation(assumable_roles={DERIVED_CFN_ROLE})
    result, _ = deploy_with_fake(clients, add("Approved"), stage_file(tmp_path), fake)
    assert result.action == "created"
    (create,) = fake.calls_of("CreateChangeSet")
    assert create["RoleARN"] == DERIVED_CFN_ROLE
    assert create["OnStackFailure"] == "DELETE"
    # An explicit role wins; an explicit null sends none.
    own = "arn:aws:iam::222222222222:role/team-cfn"
    fake = FakeCloudFormation(assumable_roles={own})
    deploy_with_fake(
        clients, add("Approved"), stage_file(tmp_path, cloudformation_role_arn=own), fake
    )
    assert fake.calls_of("CreateChangeSet")[0]["RoleARN"] == own
    fake = FakeCloudFormation(assumable_roles=set())
    deploy_with_fake(
        clients, add("Approved"), stage_file(tmp_path, cloudformation_role_arn=None), fake
    )
    assert "RoleARN" not in fake.calls_of("CreateChangeSet")[0]


def test_dry_run_shows_the_service_role_and_the_deploy_role_call(tmp_path):
    out = io.StringIO()
    config = stage_file(tmp_path, external_id="smbridge-staging-7f3a")
    params = DeployParams(
        stage="staging",
        model_package_arn=f"arn:aws:sagemaker:eu-west-1:{REGISTRY_ACCOUNT}:model-package/{GROUP}/7",
        config_file=config,
        templates_dir=TEMPLATES,
        dry_run=True,
    )
    result = deploy_stage(params, reporter=Reporter("text", out=out))
    calls = {c["operation"]: c["arguments"] for c in result.planned_calls}
    assert calls["CreateChangeSet"]["RoleARN"] == DERIVED_CFN_ROLE
    assert calls["AssumeRole"]["RoleArn"] == f"arn:aws:iam::{STAGE_ACCOUNT}:role/smbridge-deploy"
    assert "ExternalId" in calls["AssumeRole"]
    assert "smbridge-staging-7f3a" not in out.getvalue()  # NoEcho in the deploy-role stack


# ------------------------------------------- batch transform: the wait goes through the poller

TRANSFORM = "smbridge-demo-v1-abc"


def _transform_job(status: str, **extra) -> dict:
    return {
        "TransformJobName": TRANSFORM,
        "TransformJobArn": f"arn:aws:sagemaker:eu-west-1:{STAGE_ACCOUNT}:transform-job/{TRANSFORM}",
        "TransformJobStatus": status,
        "ModelName": "m",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in/"}}
        },
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "CreationTime": "2026-01-01",
        **extra,
    }


def _run_transform(clock, *statuses, **kwargs):
    from bridge.aws.endpoints import run_transform_job

    sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
    lines: list[str] = []
    with Stubber(sagemaker) as stub:
        stub.add_response("create_transform_job", {"TransformJobArn": "arn:job"})
        for status in statuses:
            extra = {"FailureReason": "ClientError: bad input"} if status == "Failed" else {}
            stub.add_response(
                "describe_transform_job",
                _transform_job(status, **extra),
                {"TransformJobName": TRANSFORM},
            )
        try:
            job = run_transform_job(
                sagemaker, job_name=TRANSFORM, model_name="m", input_s3_uri="s3://b/in/",
                output_s3_uri="s3://b/out/", instance_type="ml.m5.large", instance_count=1,
                content_type="text/csv", split_type="Line", progress=lines.append,
                sleep=clock.sleep, monotonic=clock.monotonic, **kwargs,
            )  # fmt: skip
        finally:
            stub.assert_no_pending_responses()
    return job, lines


def test_transform_job_wait_goes_through_the_shared_poller(clock, monkeypatch):
    from tests.unit.test_polling import spy_on_poller

    waits = spy_on_poller(monkeypatch)
    job, lines = _run_transform(clock, *["InProgress"] * 5, "Completed")
    assert job["TransformJobStatus"] == "Completed"
    assert len(waits) == 1 and waits[0].looks == 6
    assert clock.sleeps == [5, 7.5, 11.25, 16.875, 25.3125]  # the shared default policy
    assert lines == [
        f"transform job {TRANSFORM} started",
        f"transform job {TRANSFORM}: InProgress",
        f"transform job {TRANSFORM}: Completed",
    ]


def test_transform_job_failure_and_timeout(clock):
    from bridge.errors import ServiceError, WaitTimeout

    with pytest.raises(ServiceError, match=f"transform job {TRANSFORM} Failed: ClientError"):
        _run_transform(clock, "InProgress", "Failed")
    clock.sleeps.clear()
    with pytest.raises(WaitTimeout, match=f"{TRANSFORM} still InProgress after the timeout"):
        _run_transform(clock, *["InProgress"] * 4, timeout_seconds=20)
    assert clock.sleeps == [5, 7.5, 7.5]
