"""``smbridge doctor`` against the sandbox (issue 10): green on a set-up sandbox, and each
precondition broken in that same sandbox fails exactly its own check (the checks that need it
``skip``, naming it), every other check unchanged. doctor runs as a subprocess of the real CLI
(``python -m bridge doctor -o json``) with the sandbox's environment, as an agent's step runs it.

The sandbox, assembled once for the module:

* AWS is moto's server (:func:`bridge.sandbox.aws.aws_emulator`), as account 210987654321
  (``MOTO_ACCOUNT_ID``): moto's default account, 123456789012, is the documentation's example
  account id, which the placeholders check rightly reports in bridge.yaml.
* The automation stack is infra/automation-account.yaml itself, created by moto's
  CloudFormation, without its ``AWS::SageMaker::ModelPackageGroup`` (moto cannot create one: the
  group is made with CreateModelPackageGroup instead, and the ``ModelPackageGroupArn`` output is
  the ARN it would have). moto skips the IAM OIDC provider. Its outputs (the roles, the bucket,
  the group) are what bridge.yaml holds, as infra/README.md says to copy them.
* The trigger stack is infra/trigger.yaml itself (Lambda mode; moto skips the alarms and the
  queue policy), its code in the artifacts bucket, the trigger's secret (a PAT) in Secrets
  Manager, and the routes in the SSM parameter its ``RoutesParameterName`` names.
* A moto gap, patched here for the module: DescribeStacks shows a ``CommaDelimitedList``
  parameter (``ModelPackageGroupNames``) as a Python list (``['churn-model']``); CloudFormation
  returns the value as given (``churn-model``).
* Azure DevOps is the stand-in over HTTP (:class:`bridge.sandbox.ado_server.AzureDevOpsServer`),
  set up through the real ``smbridge ado setup`` (environments, their checks, the pipeline's
  permissions); the pipeline (model-deploy, id 12, its YAML azure-pipelines/model-deploy.yml) and
  the production service connection are the stand-in's. No request may break the specs in
  reference/ (``stand_in.violations == []``), nor reach an operation it does not answer.
* The workspace: bridge.yaml and model-deploy/config/*.json with no placeholder value, and the
  pipeline's YAML.

``oidc-token`` checks the job's OIDC token, so it is ``skip`` off an agent; the agent run sets
``TF_BUILD``, ``SYSTEM_OIDCREQUESTURI`` (the stand-in's ``Oidctoken_Create``) and
``SYSTEM_ACCESSTOKEN``, and every check is ``ok``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.doctor.checks import CHECKS

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "210987654321"
STAGE_ACCOUNTS = {"staging": "210987654322", "production": "210987654323"}
ORGANIZATION, PROJECT, GROUP = "acme-ml", "mlops", "churn-model"
PROJECT_ID = "8d3c5b2a-1f4e-4a6b-9c8d-7e6f5a4b3c2d"
ORGANIZATION_ID = "6e5d4c3b-2a19-4807-9f6e-5d4c3b2a1908"
PIPELINE = 12
CONNECTION_ID = "5b0d6b1e-9c1a-4f3e-8a2b-7c6d5e4f3a21"
CONNECTION = "smbridge-production"
APPROVER = "5a1e0c3d-7b2f-4e8a-9c6d-1f0b2a3c4d5e"
PAT = "sandbox-doctor-pat-not-real"
REVIEWER_PAT = "sandbox-doctor-reviewer-pat-not-real"
JOB_TOKEN = "sandbox-doctor-job-token-not-real"
ROUTES_PARAMETER = "/smbridge/routes"
CHECK_NAMES = [check.name for check in CHECKS]
GREEN = dict.fromkeys(CHECK_NAMES, "ok")
OFF_AGENT = {**GREEN, "oidc-token": "skip"}
# what would make the CLI read another credential, another config or think it is on an agent
FOREIGN = ("TF_BUILD", "SYSTEM_OIDCREQUESTURI", "SYSTEM_ACCESSTOKEN", "AZURE_DEVOPS_EXT_PAT")


@contextlib.contextmanager
def _list_parameters_as_given() -> Iterator[None]:
    """DescribeStacks: a list parameter's value as the comma-separated string it was given."""
    from moto.cloudformation.models import Stack

    original = Stack.parameter_list

    def parameter_list(self: Any) -> list[dict[str, Any]]:
        listed = original.fget(self)  # type: ignore[attr-defined]
        return [
            {**p, "ParameterValue": ",".join(map(str, p["ParameterValue"]))}
            if isinstance(p.get("ParameterValue"), list)
            else p
            for p in listed
        ]

    Stack.parameter_list = property(parameter_list)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        Stack.parameter_list = original  # type: ignore[method-assign]


@dataclass
class Doctor:
    """One doctor run: exit code, the JSON document, stderr."""

    code: int
    document: dict[str, Any]
    err: str

    @property
    def statuses(self) -> dict[str, str]:
        return {check["name"]: check["status"] for check in self.document["checks"]}

    def check(self, name: str) -> dict[str, Any]:
        return next(c for c in self.document["checks"] if c["name"] == name)


@dataclass
class Sandbox:
    root: Path
    aws: Any  # bridge.sandbox.aws.AwsEmulator
    server: Any  # bridge.sandbox.ado_server.AzureDevOpsServer
    stand_in: Any  # bridge.sandbox.azure_devops.AzureDevOpsStandIn
    outputs: dict[str, str]
    secret_arn: str
    routes: dict[str, Any]

    @property
    def organization_url(self) -> str:
        return str(self.server.organization_url(ORGANIZATION))

    def environ(self, **extra: str) -> dict[str, str]:
        """This process's environment (the emulator's AWS variables in it) without anything
        that would point the CLI elsewhere, plus ``extra``."""
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SMBRIDGE_") and k not in FOREIGN
        }
        return {**base, **extra}

    def cli(self, *argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bridge", *argv],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    def doctor(self, *, on_agent: bool = False) -> Doctor:
        if on_agent:
            plan, job = uuid.uuid4(), uuid.uuid4()
            env = self.environ(
                TF_BUILD="True",
                SYSTEM_ACCESSTOKEN=JOB_TOKEN,
                SYSTEM_OIDCREQUESTURI=(
                    f"{self.organization_url}/{PROJECT_ID}/_apis/distributedtask/hubs/build/"
                    f"plans/{plan}/jobs/{job}/oidctoken"
                ),
            )
        else:
            env = self.environ(SMBRIDGE_ADO_PAT=PAT)
        completed = self.cli("doctor", "-o", "json", env=env)
        document = json.loads(completed.stdout)  # exactly one document, or this raises
        run = Doctor(completed.returncode, document, completed.stderr)
        for text in (completed.stdout, completed.stderr):
            for secret in (PAT, REVIEWER_PAT, JOB_TOKEN):
                assert secret not in text
        assert run.code == (0 if document["ok"] else 4), (run.code, completed.stderr)
        return run

    def bridge_yaml(self) -> Path:
        return self.root / "bridge.yaml"

    def environment(self, name: str) -> dict[str, Any]:
        return next(e for e in self.stand_in.environments if e["name"] == name)

    def put_routes(self, routes: dict[str, Any]) -> None:
        self.aws.client("ssm").put_parameter(
            Name=ROUTES_PARAMETER, Value=json.dumps(routes), Type="String", Overwrite=True
        )


def _automation_stack(aws: Any) -> dict[str, str]:
    """infra/automation-account.yaml in moto (see the module docstring); its outputs."""
    from bridge.sandbox.cfn import load_template

    template = load_template(REPO_ROOT / "infra" / "automation-account.yaml")
    del template["Resources"]["ModelPackageGroup"]
    template["Outputs"]["ModelPackageGroupArn"]["Value"] = {
        "Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:"
        "model-package-group/${ModelPackageGroupName}"
    }
    aws.client("sagemaker").create_model_package_group(ModelPackageGroupName=GROUP)
    cfn = aws.client("cloudformation")
    parameters = {
        "ModelPackageGroupName": GROUP,
        "AzureDevOpsOrganizationId": ORGANIZATION_ID,
        "AllowedSubjects": f"p://{ORGANIZATION}/{PROJECT}/model-deploy",
    }
    cfn.create_stack(
        StackName="smbridge-automation",
        TemplateBody=json.dumps(template),
        Capabilities=["CAPABILITY_NAMED_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    (stack,) = cfn.describe_stacks(StackName="smbridge-automation")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack
    return {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}


def _trigger_stack(aws: Any, bucket: str, secret_arn: str) -> None:
    """infra/trigger.yaml in moto (Lambda mode), its code in the artifacts bucket."""
    from bridge.sandbox.cfn import load_template

    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("bridge/__init__.py", "")
    aws.client("s3").put_object(Bucket=bucket, Key="trigger/trigger.zip", Body=code.getvalue())
    parameters = {
        "AzureDevOpsSecretArn": secret_arn,
        "CodeS3Bucket": bucket,
        "CodeS3Key": "trigger/trigger.zip",
        "ModelPackageGroupNames": GROUP,
        "RoutesParameterName": ROUTES_PARAMETER,
    }
    cfn = aws.client("cloudformation")
    cfn.create_stack(
        StackName="smbridge-trigger",
        TemplateBody=json.dumps(load_template(REPO_ROOT / "infra" / "trigger.yaml")),
        Capabilities=["CAPABILITY_NAMED_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    (stack,) = cfn.describe_stacks(StackName="smbridge-trigger")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack


def _workspace(root: Path, organization_url: str, outputs: dict[str, str]) -> None:
    """bridge.yaml from the automation stack's outputs, the stage configs, the pipeline YAML."""
    config = {
        "region": "eu-west-1",
        "model_package_group": outputs["ModelPackageGroupName"],
        "model_registry": {"account_id": ACCOUNT},
        "aws": {"role_arn": outputs["CiRoleArn"], "session_duration_seconds": 3600},
        "pipeline": {
            "name": f"{GROUP}-build",
            "definition": f"{REPO_ROOT / 'model-build' / 'pipeline.py'}:get_pipeline",
            "execution_role_arn": outputs["SageMakerExecutionRoleArn"],
            "artifact_bucket": outputs["ArtifactsBucketName"],
            "description": "Trains the churn model",
        },
        "azure_devops": {
            "organization": organization_url,
            "project": PROJECT,
            "environments": {
                "prefix": "churn",
                "pipeline_id": PIPELINE,
                "production_approval": {
                    "approvers": [{"id": APPROVER, "display_name": "Dana Reviewer"}],
                    "minimum_approvers": 1,
                    "timeout_minutes": 4320,
                    "instructions": "Check the staging endpoint test results first.",
                },
            },
        },
    }
    (root / "bridge.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    configs = root / "model-deploy" / "config"
    configs.mkdir(parents=True)
    for stage, account in STAGE_ACCOUNTS.items():
        text = (REPO_ROOT / "model-deploy" / "config" / f"{stage}.json").read_text()
        example = {"staging": "222222222222", "production": "333333333333"}[stage]
        stage_config = json.loads(text.replace(example, account))
        stage_config["name_prefix"] = "churn"
        if "service_connection_id" in stage_config:
            stage_config["service_connection_id"] = CONNECTION_ID
        (configs / f"{stage}.json").write_text(json.dumps(stage_config, indent=2))
    (root / "azure-pipelines").mkdir()
    shutil.copy(REPO_ROOT / "azure-pipelines" / "model-deploy.yml", root / "azure-pipelines")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    from bridge.sandbox.ado_server import AzureDevOpsServer
    from bridge.sandbox.aws import aws_emulator, patched_environ
    from bridge.sandbox.azure_devops import AzureDevOpsStandIn

    root = tmp_path_factory.mktemp("doctor-sandbox")
    with contextlib.ExitStack() as stack:
        stack.enter_context(patched_environ({"MOTO_ACCOUNT_ID": ACCOUNT}))
        aws = stack.enter_context(aws_emulator())
        stack.enter_context(_list_parameters_as_given())
        stand_in = AzureDevOpsStandIn.for_pipeline_yaml(
            REPO_ROOT / "azure-pipelines" / "model-deploy.yml",
            pat=PAT,
            pipelines=frozenset({PIPELINE}),
            pipeline_names={PIPELINE: "model-deploy"},
            service_connections={CONNECTION_ID: CONNECTION},
            project_names={PROJECT_ID: PROJECT},
            organization_id=ORGANIZATION_ID,
            accepted_auth={f"Bearer {JOB_TOKEN}"},
        )
        stand_in.add_reviewer("Dana Reviewer", REVIEWER_PAT, identity_id=APPROVER)
        server = stack.enter_context(AzureDevOpsServer(stand_in))
        outputs = _automation_stack(aws)
        secret_arn = aws.client("secretsmanager").create_secret(
            Name="smbridge/azure-devops", SecretString=json.dumps({"pat": PAT})
        )["ARN"]
        _trigger_stack(aws, outputs["ArtifactsBucketName"], secret_arn)
        _workspace(root, server.organization_url(ORGANIZATION), outputs)
        routes = {
            "routes": {
                GROUP: {
                    "organization": server.organization_url(ORGANIZATION),
                    "project": PROJECT,
                    "pipelineId": PIPELINE,
                }
            }
        }
        box = Sandbox(root, aws, server, stand_in, outputs, secret_arn, routes)
        box.put_routes(routes)
        setup = box.cli("ado", "setup", env=box.environ(SMBRIDGE_ADO_PAT=PAT))
        assert setup.returncode == 0, setup.stderr + setup.stdout
        assert stand_in.violations == [] and stand_in.unimplemented == []
        yield box
        assert stand_in.violations == [], stand_in.violations
        assert stand_in.unimplemented == [], stand_in.unimplemented


@pytest.fixture
def sandbox_checked(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The sandbox, with no contract violation and no unanswered operation after the test."""
    yield sandbox
    assert sandbox.stand_in.violations == [], sandbox.stand_in.violations
    assert sandbox.stand_in.unimplemented == [], sandbox.stand_in.unimplemented


# -- green ----------------------------------------------------------------------------------------


def test_the_sandbox_is_green_off_an_agent(sandbox_checked: Sandbox) -> None:
    run = sandbox_checked.doctor()
    assert run.statuses == OFF_AGENT, run.document
    assert run.code == 0 and run.document["ok"] is True
    assert "not on an Azure DevOps agent" in run.check("oidc-token")["detail"]
    assert run.check("azure-devops-credential")["detail"] == "from SMBRIDGE_ADO_PAT"
    routes = run.check("routes")["detail"]
    assert routes.startswith(f"SSM parameter {ROUTES_PARAMETER} (stack smbridge-trigger)")
    assert "azure-pipelines/model-deploy.yml" in run.check("pipeline-parameters")["detail"]
    service = run.check("service-connections")["detail"]
    assert f"sc://{ORGANIZATION}/{PROJECT}/{CONNECTION}" in service
    assert "a PAT" in run.check("trigger-secret")["detail"]
    assert "role/smbridge-ci" in run.check("aws-identity")["detail"]


def test_the_sandbox_is_green_on_an_agent(sandbox_checked: Sandbox) -> None:
    before = sandbox_checked.stand_in.operations().count("Oidctoken_Create")
    run = sandbox_checked.doctor(on_agent=True)
    assert run.statuses == GREEN, run.document
    assert run.code == 0
    assert sandbox_checked.stand_in.operations().count("Oidctoken_Create") == before + 1
    token = run.check("oidc-token")["detail"]
    issuer = f"https://vstoken.dev.azure.com/{ORGANIZATION_ID}"
    assert f"iss {issuer}, sub p://{ORGANIZATION}/{PROJECT}/model-deploy" in token
    statement = json.loads(token.split("needs ", 1)[1])
    host = issuer.removeprefix("https://")
    assert statement["Principal"]["Federated"] == f"arn:aws:iam::{ACCOUNT}:oidc-provider/{host}"
    assert run.check("azure-devops-credential")["detail"] == "from SYSTEM_ACCESSTOKEN"


# -- each check, broken ---------------------------------------------------------------------------

Undo = Callable[[], None]


def _replace(path: Path, old: str, new: str) -> Undo:
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))
    return lambda: path.write_text(text)


def _placeholder_in_bridge_yaml(box: Sandbox) -> Undo:
    return _replace(box.bridge_yaml(), f"account_id: '{ACCOUNT}'", "account_id: '111111111111'")


def _output_mismatch(box: Sandbox) -> Undo:
    role = box.outputs["SageMakerExecutionRoleArn"]
    return _replace(box.bridge_yaml(), role, f"arn:aws:iam::{ACCOUNT}:role/another-role")


def _approval_check_deleted(box: Sandbox) -> Undo:
    checks = list(box.stand_in.checks)
    box.stand_in.checks[:] = [c for c in checks if c["type"]["name"] != "Approval"]
    assert len(box.stand_in.checks) == len(checks) - 1
    return lambda: box.stand_in.checks.__setitem__(slice(None), checks)


def _exclusive_lock_deleted(box: Sandbox) -> Undo:
    checks = list(box.stand_in.checks)
    staging = str(box.environment("churn-staging")["id"])
    box.stand_in.checks[:] = [
        c
        for c in checks
        if not (c["type"]["name"] == "ExclusiveLock" and str(c["resource"]["id"]) == staging)
    ]
    assert len(box.stand_in.checks) == len(checks) - 1
    return lambda: box.stand_in.checks.__setitem__(slice(None), checks)


def _environment_deleted(box: Sandbox) -> Undo:
    environments = list(box.stand_in.environments)
    box.stand_in.environments.remove(box.environment("churn-production"))
    return lambda: box.stand_in.environments.__setitem__(slice(None), environments)


def _permission_revoked(box: Sandbox) -> Undo:
    production = str(box.environment("churn-production")["id"])
    permissions = box.stand_in.permissions[("environment", production)]
    pipelines = list(permissions["pipelines"])
    assert any(p["id"] == PIPELINE for p in pipelines)
    permissions["pipelines"] = [p for p in pipelines if p["id"] != PIPELINE]
    return lambda: permissions.__setitem__("pipelines", pipelines)


def _service_connection_unknown(box: Sandbox) -> Undo:
    name = box.stand_in.service_connections.pop(CONNECTION_ID)
    return lambda: box.stand_in.service_connections.__setitem__(CONNECTION_ID, name)


def _secret_malformed(box: Sandbox) -> Undo:
    secrets = box.aws.client("secretsmanager")
    secrets.put_secret_value(SecretId=box.secret_arn, SecretString=json.dumps({"tenantId": "t"}))
    return lambda: secrets.put_secret_value(
        SecretId=box.secret_arn, SecretString=json.dumps({"pat": PAT})
    )


def _route_to_a_missing_pipeline(box: Sandbox) -> Undo:
    routes = json.loads(json.dumps(box.routes))
    routes["routes"][GROUP]["pipelineId"] = 99
    box.put_routes(routes)
    return lambda: box.put_routes(box.routes)


def _parameter_missing_from_the_yaml(box: Sandbox) -> Undo:
    yaml_file = box.root / "azure-pipelines" / "model-deploy.yml"
    text = yaml_file.read_text()
    block = re.search(r"  - name: sourceEventId\n(    .*\n)+", text)
    assert block
    yaml_file.write_text(text.replace(block.group(0), ""))
    return lambda: yaml_file.write_text(text)


SEE = ("(see ", "no stack", "not found or not readable")
BREAKS = [
    # (break, the check that fails, words of its fix, the checks that need it: now skipped)
    (_placeholder_in_bridge_yaml, "placeholders", "replace them with your own values", {}),
    (_output_mismatch, "automation-stack", "set pipeline.execution_role_arn to", {}),
    (_route_to_a_missing_pipeline, "routes", "correct pipelineId", {"pipeline-parameters"}),
    (_parameter_missing_from_the_yaml, "pipeline-parameters", "add sourceEventId", {}),
    (
        _environment_deleted,
        "environments",
        "run `smbridge ado setup`",
        {"approval-check", "exclusive-locks", "pipeline-authorised"},
    ),
    (_approval_check_deleted, "approval-check", "run `smbridge ado setup`", {}),
    (_exclusive_lock_deleted, "exclusive-locks", "run `smbridge ado setup`", {}),
    (_permission_revoked, "pipeline-authorised", f"Permit pipeline {PIPELINE}", {}),
    (_service_connection_unknown, "service-connections", "put the right id", {}),
    (_secret_malformed, "trigger-secret", "store a PAT", {}),
]


@pytest.mark.parametrize(
    ("broken", "check", "fix", "dependents"),
    BREAKS,
    ids=[item[0].__name__.strip("_") for item in BREAKS],
)
def test_a_broken_precondition_fails_its_check_only(
    sandbox_checked: Sandbox,
    broken: Callable[[Sandbox], Undo],
    check: str,
    fix: str,
    dependents: set[str],
) -> None:
    undo = broken(sandbox_checked)
    try:
        run = sandbox_checked.doctor()
    finally:
        undo()
    expected = {**OFF_AGENT, check: "fail", **dict.fromkeys(dependents, "skip")}
    assert run.statuses == expected, run.document
    failed = run.check(check)
    assert fix in failed["fix"], failed
    assert failed["detail"] and "\n" not in failed["detail"] + failed["fix"]
    for name in dependents:
        assert any(words in run.check(name)["detail"] for words in SEE), run.check(name)
    assert run.code == 4 and run.document["ok"] is False
    assert f"checks failed: {check}" in run.err


def test_a_token_for_another_audience_fails_the_token_check_only(sandbox_checked: Sandbox) -> None:
    sandbox_checked.stand_in.oidc_claims["aud"] = "api://SomeoneElse"
    try:
        run = sandbox_checked.doctor(on_agent=True)
    finally:
        sandbox_checked.stand_in.oidc_claims.clear()
    assert run.statuses == {**GREEN, "oidc-token": "fail"}, run.document
    assert "set OidcAudience of stack smbridge-automation" in run.check("oidc-token")["fix"]
    assert run.code == 4


def test_the_sandbox_is_green_again_after_the_breaks(sandbox_checked: Sandbox) -> None:
    """Each break was undone: the same sandbox is green again (no state leaked between runs)."""
    assert sandbox_checked.doctor().statuses == OFF_AGENT
