"""model-deploy.yml's stages, run locally through the CLI in the pipeline's order, with output
variables passed from stage to stage the way the agent does (parsed from ##vso lines): Prepare →
DeployStaging → TestStaging → DeployProd (deploy, then the production endpoint test in the same
job: the only job that references the production service connection). AWS is moto
(CloudFormation in the stage accounts through their deploy roles); the endpoint is the stand-in
serving the real trained model. Production's role is reached the way the agent reaches it: an
OIDC token for the production service connection from ``System.OidcRequestUri`` (the Azure
DevOps side answered by ``responses``; moto's STS accepts AssumeRoleWithWebIdentity).
The YAML itself (DeployProd only after a successful TestStaging) is checked in
tests/unit/test_model_deploy_yaml.py; here the CLI's exit codes carry that decision."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import responses
import yaml
from moto import mock_aws

from bridge.cli.app import main
from tests.support.fake_endpoint import FakeEndpoint, train_model
from tests.support.moto_patches import (  # noqa: F401
    moto_change_sets_with_outputs,
    moto_compatible,
)
from tests.support.registry import add_model_package
from tests.unit.test_infra_templates import load_template

REPO_ROOT = Path(__file__).resolve().parents[2]
GROUP = "smbridge-demo"
OIDC_URI = (
    "https://dev.azure.com/contoso/mlops/_apis/distributedtask/hubs/build/plans/p/jobs/j/oidctoken"
)
ACCESS_TOKEN = "system-access-token-sentinel"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return train_model(tmp_path_factory.mktemp("model"))


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_file: Path):
    """A checkout-like folder: bridge.yaml, stage configs, test payload, moto-ready templates."""
    shutil.copytree(REPO_ROOT / "model-deploy" / "config", tmp_path / "model-deploy" / "config")
    shutil.copytree(REPO_ROOT / "model-deploy" / "tests", tmp_path / "model-deploy" / "tests")
    templates = tmp_path / "model-deploy" / "templates"
    templates.mkdir()
    for name in ("realtime.yaml",):
        template, _ = moto_compatible(load_template(REPO_ROOT / "model-deploy/templates" / name))
        (templates / name).write_text(json.dumps(template))
    config = yaml.safe_load((REPO_ROOT / "bridge.yaml").read_text())
    config["model_registry"] = {"account_id": "123456789012"}
    config["aws"].pop("role_arn")
    (tmp_path / "bridge.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TF_BUILD", "True")
    monkeypatch.setenv("SYSTEM_OIDCREQUESTURI", OIDC_URI)
    monkeypatch.setenv("SYSTEM_ACCESSTOKEN", ACCESS_TOKEN)
    endpoints: list[FakeEndpoint] = []
    original = boto3.session.Session.client

    def client(self, service, *args, **kwargs):
        made = original(self, service, *args, **kwargs)
        if service == "sagemaker-runtime":
            for endpoint in endpoints:
                endpoint.attach(made)
        return made

    monkeypatch.setattr(boto3.session.Session, "client", client)
    return tmp_path, endpoints, model_file


def outputs(text: str) -> dict[str, str]:
    pattern = r"##vso\[task\.setvariable variable=(\w+);isoutput=true\](.*)"
    return dict(re.findall(pattern, text))


def run(capsys, *argv: str) -> tuple[int, dict[str, str], str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, outputs(captured.out), captured.out + captured.err


def approved_package() -> str:
    sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
    return add_model_package(sagemaker, GROUP, "Approved")


def stacks_in(account: str) -> list[str]:
    credentials = boto3.client("sts", "eu-west-1").assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/smbridge-deploy", RoleSessionName="check"
    )["Credentials"]
    cfn = boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name="eu-west-1",
    ).client("cloudformation")
    return [s["StackName"] for s in cfn.list_stacks()["StackSummaries"]]


def release(capsys, endpoints, model_file, *, break_staging: bool) -> dict[str, int]:
    codes: dict[str, int] = {}
    code, prepared, _ = run(capsys, "prepare", "--group", GROUP, "--out", "deploy-params")
    codes["Prepare"] = code
    arn = prepared["modelPackageArn"]
    code, staging, _ = run(
        capsys, "deploy", "--stage", "staging", "--model-package-arn", arn,
        "--stage-config", "model-deploy/config/staging.json",
    )  # fmt: skip
    codes["DeployStaging"] = code
    endpoint = FakeEndpoint(model_file, name=staging["endpointName"])
    if break_staging:
        endpoint.transform = lambda text: "\n".join(str(1 - float(v)) for v in text.split())
    endpoints.append(endpoint)
    code, _, _ = run(
        capsys, "endpoint", "test", "--endpoint", staging["endpointName"],
        "--stage-config", "model-deploy/config/staging.json",
        "--junit", "test-results/endpoint-staging.xml",
    )  # fmt: skip
    codes["TestStaging"] = code
    if code != 0:  # model-deploy.yml: DeployProd needs TestStaging to succeed
        return codes
    code, production, _ = run(
        capsys, "deploy", "--stage", "production", "--model-package-arn", arn,
        "--stage-config", "model-deploy/config/production.json",
    )  # fmt: skip
    codes["DeployProd"] = code
    endpoints.append(FakeEndpoint(model_file, name=production["endpointName"]))
    code, _, _ = run(
        capsys, "endpoint", "test", "--endpoint", production["endpointName"],
        "--stage-config", "model-deploy/config/production.json",
    )  # fmt: skip
    codes["TestProduction"] = code
    return codes


@pytest.fixture
def release_of_an_approved_package(workspace, capsys, moto_change_sets_with_outputs):  # noqa: F811
    """Within moto, with an Approved package: ``release(break_staging)`` runs the stages."""
    _, endpoints, model_file = workspace
    with mock_aws(), responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        token_requests: list[str] = []

        def oidc_token(request):
            assert request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
            token_requests.append(parse_qs(urlsplit(request.url).query)["serviceConnectionId"][0])
            return 200, {}, json.dumps({"oidcToken": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzYyJ9.c2ln"})

        mock.add_callback("POST", OIDC_URI, callback=oidc_token)
        approved_package()
        yield lambda break_staging: (
            release(capsys, endpoints, model_file, break_staging=break_staging),
            token_requests,
        )


def test_a_good_model_goes_through_to_production(release_of_an_approved_package):
    codes, token_requests = release_of_an_approved_package(False)
    assert codes == {
        "Prepare": 0, "DeployStaging": 0, "TestStaging": 0, "DeployProd": 0, "TestProduction": 0,
    }  # fmt: skip
    production_connection = json.loads(
        (REPO_ROOT / "model-deploy/config/production.json").read_text()
    )["service_connection_id"]
    # Only production's steps asked for a token, and only for production's connection.
    assert token_requests and set(token_requests) == {production_connection}
    assert stacks_in("222222222222") == ["smbridge-demo-staging"]
    assert stacks_in("333333333333") == ["smbridge-demo-production"]
    production = json.loads(Path("deploy-params/production.json").read_text())
    assert production["parameters"]["DeploymentStrategy"] == "Canary"
    assert Path("test-results/endpoint-staging.xml").is_file()


def test_a_failed_staging_test_leaves_production_untouched(release_of_an_approved_package):
    codes, token_requests = release_of_an_approved_package(True)
    assert codes == {"Prepare": 0, "DeployStaging": 0, "TestStaging": 4}
    assert token_requests == []
    assert stacks_in("222222222222") == ["smbridge-demo-staging"]
    assert stacks_in("333333333333") == []
    junit = Path("test-results/endpoint-staging.xml").read_text()
    assert 'failures="1"' in junit
