"""``smbridge doctor``: a fully set-up sandbox (moto + the Azure DevOps stand-in) is all green;
breaking one precondition fails exactly that check, with its fix, while the others keep their
status (a check that needs the broken one is ``skip``, naming it). Every call is a read, no
secret is ever printed, a dry run makes no call, ``-o json`` is one document in every outcome.

Azure DevOps is the stand-in (bridge/sandbox/azure_devops.py on ``responses``), which answers
every request doctor sends (Pipelines - Get, Endpoints - Get and the job's OIDC token included),
each held against the specs in reference/."""

from __future__ import annotations

import base64
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import responses
from moto import mock_aws

from bridge.ado.setup import SetupParams, setup_environments
from bridge.azure_devops.client import AzureDevOpsClient
from bridge.azure_devops.credentials import PatCredential
from bridge.cli.app import main
from bridge.doctor import lookups, placeholders
from bridge.doctor.checks import CHECKS
from bridge.sandbox.azure_devops import OIDC_SIGNATURE
from bridge.settings.bridge_config import load_config
from tests.support.fake_ado import FakeAzureDevOps

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"
ORG, PROJECT, GROUP = "acme-ml", "mlops", "churn-model"
PIPELINE = 12  # model-deploy's id
ACCOUNT = "210987654321"
EXECUTION_ROLE = f"arn:aws:iam::{ACCOUNT}:role/smbridge-sagemaker-execution"
BUCKET = f"smbridge-artifacts-{ACCOUNT}-{REGION}"
CONNECTION_ID = "5b0d6b1e-9c1a-4f3e-8a2b-7c6d5e4f3a21"
APPROVER = "3b3db741-9d03-4e32-a7c0-6c3dfc2013c1"
# sentinels: none of them may ever reach stdout, stderr or the JSON document
PAT = "DOCTOR-ADO-PAT-SENTINEL-0c1d2e"
ACCESS_TOKEN = "SYSTEM-ACCESS-TOKEN-SENTINEL-9a8b7c"
SECRET_PAT = "TRIGGER-SECRET-PAT-SENTINEL-5e6f70"
SP_SECRET = "SERVICE-PRINCIPAL-SECRET-SENTINEL-1234"
PROJECT_ID = "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"  # System.OidcRequestUri names the project by id
OIDC_URI = (
    f"https://dev.azure.com/{ORG}/{PROJECT_ID}/_apis/distributedtask/"
    "hubs/build/plans/0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f/jobs/12345678-9abc-4def-8123-456789abcdef"
    "/oidctoken"
)
ORGANIZATION_ID = "6e5d4c3b-2a19-4807-9f6e-5d4c3b2a1908"
ISSUER = f"https://vstoken.dev.azure.com/{ORGANIZATION_ID}"
SUBJECT = f"p://{ORG}/{PROJECT}/model-deploy"
AUDIENCE = "api://AzureADTokenExchange"
ROUTES = {"routes": {GROUP: {"organization": ORG, "project": PROJECT, "pipelineId": PIPELINE}}}
CHECK_NAMES = [check.name for check in CHECKS]
GREEN = dict.fromkeys(CHECK_NAMES, "ok")
READ_OPERATION = re.compile(r"^(Describe|Get|List)[A-Z]")

BRIDGE_YAML = f"""\
region: {REGION}
model_package_group: {GROUP}
model_registry:
  account_id: "{ACCOUNT}"
pipeline:
  name: {GROUP}-build
  execution_role_arn: {EXECUTION_ROLE}
  artifact_bucket: {BUCKET}
  description: Trains the churn model (the smbridge example)
azure_devops:
  organization: {ORG}
  project: {PROJECT}
  environments:
    prefix: churn
    pipeline_id: {PIPELINE}
    production_approval:
      approvers:
        - id: {APPROVER}
          display_name: ML reviewers
      minimum_approvers: 1
      timeout_minutes: 4320
      instructions: Check the staging endpoint first.
"""


def stage_config(stage: str, account: str, **extra: Any) -> dict[str, Any]:
    return {
        "stage": stage,
        "account_id": account,
        "region": REGION,
        "deploy_role_arn": f"arn:aws:iam::{account}:role/smbridge-deploy",
        "execution_role_arn": f"arn:aws:iam::{account}:role/smbridge-sagemaker-endpoint",
        "name_prefix": "churn",
        "inference": {"type": "serverless"},
        **extra,
    }


AUTOMATION_TEMPLATE = {
    "Parameters": {
        "ExecutionRoleArn": {"Type": "String"},
        "BucketName": {"Type": "String"},
        "GroupName": {"Type": "String"},
        "OidcAudience": {"Type": "String", "Default": AUDIENCE},
    },
    "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
    "Outputs": {
        "SageMakerExecutionRoleArn": {"Value": {"Ref": "ExecutionRoleArn"}},
        "ArtifactsBucketName": {"Value": {"Ref": "BucketName"}},
        "ModelPackageGroupName": {"Value": {"Ref": "GroupName"}},
        "CiRoleArn": {"Value": f"arn:aws:iam::{ACCOUNT}:role/smbridge-ci"},
    },
}
TRIGGER_TEMPLATE = {
    "Parameters": {
        "AzureDevOpsSecretArn": {"Type": "String"},
        "ModelPackageGroupNames": {"Type": "String", "Default": ""},
        "RoutesJson": {"Type": "String", "Default": ""},
        "RoutesParameterName": {"Type": "String", "Default": ""},
        "DeliveryMode": {"Type": "String", "Default": "Lambda"},
    },
    "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
}


class Sandbox:
    """A set-up project: bridge.yaml, stage configs, model-deploy.yml, routes; the automation and
    trigger stacks and the trigger's secret in moto; in the Azure DevOps stand-in the pipeline
    (its YAML at /azure-pipelines/model-deploy.yml), the service connection, and the environments
    with their checks and the pipeline authorised (by the project's own setup)."""

    def __init__(self, root: Path, mock: responses.RequestsMock) -> None:
        self.root = root
        self.mock = mock
        (root / "bridge.yaml").write_text(BRIDGE_YAML)
        configs = root / "model-deploy" / "config"
        configs.mkdir(parents=True)
        self.write_json(configs / "staging.json", stage_config("staging", "210987654322"))
        production = stage_config("production", "210987654323", service_connection_id=CONNECTION_ID)
        self.write_json(configs / "production.json", production)
        (root / "azure-pipelines").mkdir()
        shutil.copy(REPO_ROOT / "azure-pipelines" / "model-deploy.yml", self.pipeline_yaml)
        self.write_json(root / "routes.json", ROUTES)
        # Azure DevOps
        self.fake = FakeAzureDevOps(
            pat=PAT,
            accepted_auth={f"Bearer {ACCESS_TOKEN}"},
            pipelines=frozenset({PIPELINE}),
            pipeline_names={PIPELINE: "model-deploy"},
            pipeline_paths={PIPELINE: "/azure-pipelines/model-deploy.yml"},
            service_connections={CONNECTION_ID: "churn-production"},
            project_names={PROJECT_ID: PROJECT},
            organization_id=ORGANIZATION_ID,
        ).install(mock)
        config = load_config(root / "bridge.yaml")
        assert config.azure_devops and config.azure_devops.environments
        params = SetupParams.from_settings(
            config.azure_devops.environments, organization=ORG, project=PROJECT
        )
        client = AzureDevOpsClient(ORG, PatCredential(PAT, source="test"))
        setup_environments(params, client=client)  # the project's own setup: the real shapes
        # AWS
        import boto3

        session = boto3.Session(region_name=REGION)
        self.cfn = session.client("cloudformation")
        self.secrets = session.client("secretsmanager")
        self.secret_arn = self.secrets.create_secret(
            Name="smbridge/azure-devops", SecretString=SECRET_PAT
        )["ARN"]
        self.create_stack(
            "smbridge-automation",
            AUTOMATION_TEMPLATE,
            ExecutionRoleArn=EXECUTION_ROLE,
            BucketName=BUCKET,
            GroupName=GROUP,
        )
        self.create_stack(
            "smbridge-trigger",
            TRIGGER_TEMPLATE,
            AzureDevOpsSecretArn=self.secret_arn,
            ModelPackageGroupNames=GROUP,
        )

    @property
    def pipeline_yaml(self) -> Path:
        return self.root / "azure-pipelines" / "model-deploy.yml"

    @property
    def oidc_requests(self) -> int:
        return self.fake.operations().count("Oidctoken_Create")

    @staticmethod
    def write_json(path: Path, document: Any) -> None:
        path.write_text(json.dumps(document, indent=2))

    def create_stack(self, name: str, template: dict[str, Any], **parameters: str) -> None:
        self.cfn.create_stack(
            StackName=name,
            TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        )

    def environment(self, name: str) -> dict[str, Any]:
        return next(e for e in self.fake.environments if e["name"] == name)


@pytest.fixture
def aws_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every AWS operation any client makes, through botocore's ``before-call`` event."""
    calls: list[tuple[str, str]] = []
    original = botocore.session.Session.create_client

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = original(self, *args, **kwargs)

        def record(model: Any, **_: Any) -> None:
            calls.append((model.service_model.service_name, model.name))

        client.meta.events.register("before-call", record)
        return client

    monkeypatch.setattr(botocore.session.Session, "create_client", create_client)
    return calls


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws_calls: list) -> Any:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TF_BUILD", "True")
    monkeypatch.setenv("SYSTEM_OIDCREQUESTURI", OIDC_URI)
    monkeypatch.setenv("SYSTEM_ACCESSTOKEN", ACCESS_TOKEN)
    with mock_aws(), responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        box = Sandbox(tmp_path, mock)
        aws_calls.clear()
        box.setup_requests = len(mock.calls)
        yield box
        assert box.fake.violations == [] and box.fake.unimplemented == []


def doctor(capsys: pytest.CaptureFixture[str], *argv: str, routes: bool = True) -> Any:
    """``smbridge doctor -o json``: (exit code, the one JSON document, stdout, stderr)."""
    extra = ["--routes", "routes.json"] if routes else []
    code = main(["doctor", "-o", "json", *extra, *argv])
    captured = capsys.readouterr()
    document = json.loads(captured.out)  # exactly one document, or this raises
    return code, document, captured.out, captured.err


def statuses(document: dict[str, Any]) -> dict[str, str]:
    return {check["name"]: check["status"] for check in document["checks"]}


def the(document: dict[str, Any], name: str) -> dict[str, Any]:
    return next(check for check in document["checks"] if check["name"] == name)


def http_methods(box: Sandbox) -> list[tuple[str, str]]:
    calls = list(box.mock.calls)[box.setup_requests :]
    return [(call.request.method, call.request.url) for call in calls]


# the stand-in's tokens: their signature, and their header (the same in every token)
TOKEN_HEADER = base64.urlsafe_b64encode(b'{"alg": "RS256", "typ": "JWT"}').decode().rstrip("=")
SENTINELS = (PAT, ACCESS_TOKEN, SECRET_PAT, SP_SECRET, OIDC_SIGNATURE, TOKEN_HEADER)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for sentinel in SENTINELS:
            assert sentinel not in text


# -- all green ------------------------------------------------------------------------------------


def test_a_set_up_sandbox_is_all_green_and_only_reads(sandbox, capsys, aws_calls):
    code, document, out, err = doctor(capsys)
    assert statuses(document) == GREEN, document
    assert code == 0
    assert set(document) == {"ok", "checks"} and document["ok"] is True
    for check in document["checks"]:
        assert set(check) == {"name", "status", "detail", "fix"}
        assert check["fix"] == ""
    # reads only: Describe/Get/List AWS operations, GET requests (and the OIDC token request)
    assert aws_calls and all(READ_OPERATION.match(operation) for _, operation in aws_calls)
    assert {op for _, op in aws_calls} == {
        "GetCallerIdentity",
        "DescribeStacks",
        "GetSecretValue",
    }
    requests = http_methods(sandbox)
    assert [url for method, url in requests if method != "GET"] == [
        url for _, url in requests if url.startswith(OIDC_URI)
    ]
    assert sandbox.oidc_requests == 1
    assert_no_secret(out, err)
    token = the(document, "oidc-token")["detail"]
    for claim in (ISSUER, SUBJECT, AUDIENCE):
        assert claim in token
    statement = json.loads(token.split("needs ", 1)[1])
    host = ISSUER.removeprefix("https://")
    assert statement["Principal"]["Federated"] == f"arn:aws:iam::123456789012:oidc-provider/{host}"
    assert statement["Condition"]["StringEquals"] == {
        f"{host}:aud": AUDIENCE,
        f"{host}:sub": SUBJECT,
    }
    assert "azure-pipelines/model-deploy.yml" in the(document, "pipeline-parameters")["detail"]
    assert (
        f"sc://{ORG}/{PROJECT}/churn-production" in the(document, "service-connections")["detail"]
    )


def test_text_output_is_one_line_per_check(sandbox, capsys):
    assert main(["doctor", "--routes", "routes.json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1].rstrip(":") for line in lines] == CHECK_NAMES
    assert all(line.startswith("ok ") for line in lines)


def test_off_an_agent_the_token_check_is_skipped_with_the_reason(sandbox, capsys, monkeypatch):
    for name in ("TF_BUILD", "SYSTEM_OIDCREQUESTURI", "SYSTEM_ACCESSTOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", PAT)
    code, document, out, err = doctor(capsys)
    assert statuses(document) == {**GREEN, "oidc-token": "skip"}
    assert "not on an Azure DevOps agent" in the(document, "oidc-token")["detail"]
    assert the(document, "azure-devops-credential")["detail"] == "from SMBRIDGE_ADO_PAT"
    assert code == 0 and document["ok"] is True
    assert sandbox.oidc_requests == 0
    assert_no_secret(out, err)


# -- each check, broken ---------------------------------------------------------------------------


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


def _placeholder_in_bridge_yaml(box: Sandbox, monkeypatch: Any) -> None:
    _replace(box.root / "bridge.yaml", f'account_id: "{ACCOUNT}"', 'account_id: "111111111111"')


def _placeholder_in_a_stage_config(box: Sandbox, monkeypatch: Any) -> None:
    _replace(box.root / "model-deploy/config/staging.json", '"churn"', '"<name prefix>"')


def _no_credentials(box: Sandbox, monkeypatch: Any) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)


def _automation_stack_missing(box: Sandbox, monkeypatch: Any) -> None:
    box.cfn.delete_stack(StackName="smbridge-automation")


def _output_mismatch(box: Sandbox, monkeypatch: Any) -> None:
    _replace(box.root / "bridge.yaml", EXECUTION_ROLE, f"arn:aws:iam::{ACCOUNT}:role/other")


def _trigger_stack_missing(box: Sandbox, monkeypatch: Any) -> None:
    box.cfn.delete_stack(StackName="smbridge-trigger")


def _route_to_a_missing_pipeline(box: Sandbox, monkeypatch: Any) -> None:
    routes = json.loads(json.dumps(ROUTES))
    routes["routes"][GROUP]["pipelineId"] = 99
    box.write_json(box.root / "routes.json", routes)


def _extra_parameter(box: Sandbox, monkeypatch: Any) -> None:
    _replace(
        box.pipeline_yaml,
        "\nparameters:\n",
        "\nparameters:\n  - name: stageName\n    type: string\n    default: staging\n",
    )


def _missing_parameter(box: Sandbox, monkeypatch: Any) -> None:
    text = box.pipeline_yaml.read_text()
    block = re.search(r"  - name: sourceEventId\n(    .*\n)+", text)
    assert block
    box.pipeline_yaml.write_text(text.replace(block.group(0), ""))


def _environment_missing(box: Sandbox, monkeypatch: Any) -> None:
    box.fake.environments.remove(box.environment("churn-production"))


def _approval_check_missing(box: Sandbox, monkeypatch: Any) -> None:
    box.fake.checks[:] = [c for c in box.fake.checks if c["type"]["name"] != "Approval"]


def _exclusive_lock_missing(box: Sandbox, monkeypatch: Any) -> None:
    staging = str(box.environment("churn-staging")["id"])
    box.fake.checks[:] = [
        c
        for c in box.fake.checks
        if not (c["type"]["name"] == "ExclusiveLock" and c["resource"]["id"] == staging)
    ]


def _pipeline_not_authorised(box: Sandbox, monkeypatch: Any) -> None:
    production = str(box.environment("churn-production")["id"])
    box.fake.permissions[("environment", production)]["pipelines"] = []


def _service_connection_missing(box: Sandbox, monkeypatch: Any) -> None:
    box.fake.service_connections.clear()


def _secret_malformed(box: Sandbox, monkeypatch: Any) -> None:
    value = json.dumps({"tenantId": "t", "clientSecret": SP_SECRET})
    box.secrets.put_secret_value(SecretId=box.secret_arn, SecretString=value)


def _token_expired(box: Sandbox, monkeypatch: Any) -> None:
    box.fake.oidc_claims["exp"] = int(time.time()) - 60


def _token_for_another_audience(box: Sandbox, monkeypatch: Any) -> None:
    box.fake.oidc_claims["aud"] = "api://SomeoneElse"


BREAKS = [
    # (break, the check that fails, words of its fix, the checks that need it: now skipped)
    (_placeholder_in_bridge_yaml, "placeholders", "replace them with your own values", {}),
    (_placeholder_in_a_stage_config, "placeholders", "replace them with your own values", {}),
    (
        _no_credentials,
        "aws-identity",
        "configure AWS credentials",
        {"automation-stack": "skip", "trigger-stack": "skip", "trigger-secret": "skip"},
    ),
    (_automation_stack_missing, "automation-stack", "deploy infra/automation-account.yaml", {}),
    (
        _output_mismatch,
        "automation-stack",
        f"set pipeline.execution_role_arn to {EXECUTION_ROLE}",
        {},
    ),
    (
        _trigger_stack_missing,
        "trigger-stack",
        "deploy infra/trigger.yaml",
        {"trigger-secret": "skip"},
    ),
    (
        _route_to_a_missing_pipeline,
        "routes",
        "correct pipelineId",
        {"pipeline-parameters": "skip"},
    ),
    (_extra_parameter, "pipeline-parameters", "remove stageName from azure-pipelines/", {}),
    (_missing_parameter, "pipeline-parameters", "add sourceEventId (type: string)", {}),
    (
        _environment_missing,
        "environments",
        "run `smbridge ado setup`",
        {"approval-check": "skip", "exclusive-locks": "skip", "pipeline-authorised": "skip"},
    ),
    (_approval_check_missing, "approval-check", "run `smbridge ado setup`", {}),
    (_exclusive_lock_missing, "exclusive-locks", "run `smbridge ado setup`", {}),
    (_pipeline_not_authorised, "pipeline-authorised", f"Permit pipeline {PIPELINE}", {}),
    (_service_connection_missing, "service-connections", "put the right id", {}),
    (_secret_malformed, "trigger-secret", "store a PAT", {}),
    (_token_expired, "oidc-token", "check the agent's clock", {}),
    (
        _token_for_another_audience,
        "oidc-token",
        "set OidcAudience of stack smbridge-automation",
        {},
    ),
]


@pytest.mark.parametrize(
    ("broken", "check", "fix", "dependents"),
    BREAKS,
    ids=[item[0].__name__.strip("_") for item in BREAKS],
)
def test_a_broken_precondition_fails_its_check_only(
    sandbox, capsys, monkeypatch, aws_calls, broken, check, fix, dependents
):
    broken(sandbox, monkeypatch)
    aws_calls.clear()  # the break's own calls
    code, document, out, err = doctor(capsys)
    assert statuses(document) == {**GREEN, check: "fail", **dependents}, document
    failed = the(document, check)
    assert fix in failed["fix"], failed
    assert failed["detail"] and "\n" not in failed["detail"] + failed["fix"]
    for name, status in dependents.items():
        assert (
            "(see " in the(document, name)["detail"] or "no stack" in the(document, name)["detail"]
        )
        assert status == "skip"
    assert document["ok"] is False and code == 4  # DoctorFailed: an ExecutionFailed
    assert f"checks failed: {check}" in err
    assert all(READ_OPERATION.match(operation) for _, operation in aws_calls)
    assert all(method == "GET" or url.startswith(OIDC_URI) for method, url in http_methods(sandbox))
    assert_no_secret(out, err)


def test_a_placeholder_is_named_with_its_file_and_key(sandbox, capsys, monkeypatch):
    _placeholder_in_bridge_yaml(sandbox, monkeypatch)
    _placeholder_in_a_stage_config(sandbox, monkeypatch)
    _, document, _, _ = doctor(capsys)
    detail = the(document, "placeholders")["detail"]
    assert "bridge.yaml: model_registry.account_id = '111111111111'" in detail
    assert "example account id 111111111111" in detail
    assert "model-deploy/config/staging.json: name_prefix = '<name prefix>' (marker" in detail


def test_an_override_variable_is_named_as_the_placeholder_s_source(sandbox, capsys, monkeypatch):
    monkeypatch.setenv("SMBRIDGE_PIPELINE__ARTIFACT_BUCKET", "replace-me-bucket")
    _, document, _, _ = doctor(capsys)
    detail = the(document, "placeholders")["detail"]
    assert "SMBRIDGE_PIPELINE__ARTIFACT_BUCKET: pipeline.artifact_bucket" in detail


def test_the_repo_s_example_configuration_is_all_placeholders():
    config = load_config(REPO_ROOT / "bridge.yaml", environ={})
    keys = {key for key, _, _ in placeholders.find(config.model_dump(mode="json"))}
    assert {
        "model_registry.account_id",
        "aws.role_arn",
        "pipeline.execution_role_arn",
        "pipeline.artifact_bucket",
        "azure_devops.organization",
    } <= keys
    assert "pipeline.description" not in keys  # "(smbridge example)": free text
    production = json.loads((REPO_ROOT / "model-deploy/config/production.json").read_text())
    keys = {key for key, _, _ in placeholders.find(production)}
    assert {"account_id", "deploy_role_arn", "service_connection_id"} <= keys


def test_a_pipeline_yaml_outside_the_checkout_is_skipped_saying_which(sandbox, capsys):
    sandbox.fake.pipeline_paths[PIPELINE] = "/other-repo/deploy.yml"
    code, document, _, _ = doctor(capsys)
    assert statuses(document) == {**GREEN, "pipeline-parameters": "skip"}
    assert (
        "/other-repo/deploy.yml (Pipelines - Get) is not under"
        in the(document, "pipeline-parameters")["detail"]
    )
    assert code == 0


def test_routes_come_from_the_trigger_stack_without_routes(sandbox, capsys):
    sandbox.cfn.update_stack(
        StackName="smbridge-trigger",
        TemplateBody=json.dumps(TRIGGER_TEMPLATE),
        Parameters=[
            {"ParameterKey": "AzureDevOpsSecretArn", "ParameterValue": sandbox.secret_arn},
            {"ParameterKey": "ModelPackageGroupNames", "ParameterValue": GROUP},
            {"ParameterKey": "RoutesJson", "ParameterValue": json.dumps(ROUTES)},
        ],
    )
    code, document, _, _ = doctor(capsys, routes=False)
    assert statuses(document) == GREEN, document
    assert the(document, "routes")["detail"].startswith(
        "stack smbridge-trigger parameter RoutesJson: "
    )
    assert code == 0


def test_without_any_routes_the_route_checks_are_skipped(sandbox, capsys):
    code, document, _, _ = doctor(capsys, routes=False)
    skipped = {"routes": "skip", "pipeline-parameters": "skip"}
    assert statuses(document) == {**GREEN, **skipped}
    assert "no routes given" in the(document, "routes")["detail"]
    assert code == 0


def test_a_service_principal_secret_is_accepted_and_never_shown(sandbox, capsys):
    value = {"tenantId": "t", "clientId": "c", "clientSecret": SP_SECRET}
    sandbox.secrets.put_secret_value(SecretId=sandbox.secret_arn, SecretString=json.dumps(value))
    code, document, out, err = doctor(capsys, "--ado-secret", sandbox.secret_arn)
    assert statuses(document) == GREEN and code == 0
    assert "an Entra service principal" in the(document, "trigger-secret")["detail"]
    assert "(--ado-secret)" in the(document, "trigger-secret")["detail"]
    assert_no_secret(out, err)


# -- dry run, one document ------------------------------------------------------------------------


def test_a_dry_run_lists_the_checks_and_makes_no_call(sandbox, capsys, aws_calls):
    assert main(["doctor", "--dry-run", "-o", "json", "--routes", "routes.json"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["dry_run"] is True
    checks_named = {step["when"].split(":")[0] for step in document["steps"]}
    assert checks_named == set(CHECK_NAMES)
    operations = [step["operation"] for step in document["steps"]]
    pipeline_url = f"GET https://dev.azure.com/{ORG}/{PROJECT}/_apis/pipelines/{PIPELINE}"
    assert any(op.startswith(pipeline_url) for op in operations)
    assert any(f"serviceendpoint/endpoints/{CONNECTION_ID}" in op for op in operations)
    assert aws_calls == []
    assert http_methods(sandbox) == []
    assert sandbox.oidc_requests == 0
    assert_no_secret(captured.out, captured.err)


def test_json_is_one_document_for_an_input_error_too(sandbox, capsys):
    code = main(["doctor", "-o", "json", "--routes", "missing.json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 2
    assert (
        document["exit_code"] == 2 and "--routes missing.json: file not found" in document["error"]
    )


def test_a_connection_s_subject_names_the_organization_not_its_url():
    for organization in (ORG, f"https://dev.azure.com/{ORG}/", f"http://127.0.0.1:8080/{ORG}"):
        assert lookups.organization_name(organization) == ORG
    assert lookups.organization_name(f"https://{ORG}.visualstudio.com") == ORG
    endpoint = {
        "name": "churn-production",
        "authorization": {"scheme": "WorkloadIdentityFederation"},
    }
    subject = lookups.endpoint_subject(endpoint, f"https://dev.azure.com/{ORG}", PROJECT)
    assert subject == f"sc://{ORG}/{PROJECT}/churn-production"
    # the connection's own subject wins (with the Entra issuer it holds ids, not names)
    stated = "/eid1/c/pub/t/abc/a/def/sc/123/456"
    endpoint["authorization"]["parameters"] = {"workloadIdentityFederationSubject": stated}
    assert lookups.endpoint_subject(endpoint, ORG, PROJECT) == stated
