"""How `smbridge deploy` reaches a stage account: the stage config's external_id (AssumeRole),
service_connection_id (AssumeRoleWithWebIdentity with that connection's OIDC token) and
cloudformation_role_arn, checked against botocore's STS model with its Stubber."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
import responses
from botocore.stub import Stubber

from bridge.aws.session import AwsAuth, AwsClients
from bridge.deploy.operations import stage_clients
from bridge.errors import ConfigError
from bridge.settings.stage import EXTERNAL_ID_PATTERN, StageConfig, load_stage_config

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "model-deploy" / "config"
DEPLOY_ROLE = "arn:aws:iam::222222222222:role/smbridge-deploy"
CONNECTION = "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b"
OIDC_URI = (
    "https://dev.azure.com/contoso/p1/_apis/distributedtask/hubs/build/plans/1/jobs/2/oidctoken"
)
CREDENTIALS = {
    "AccessKeyId": "ASIASTAGEFAKE0000001",
    "SecretAccessKey": "secret",
    "SessionToken": "session",
    "Expiration": "2099-01-01T00:00:00Z",
}


def staging(**overrides: Any) -> StageConfig:
    document = json.loads((CONFIG_DIR / "staging.json").read_text())
    document.update(overrides)
    return StageConfig.model_validate(document)


def sts_model_shape(operation: str, member: str) -> dict[str, Any]:
    model = botocore.session.get_session().get_service_model("sts")
    return model.operation_model(operation).input_shape.members[member].metadata


def base_with_stubbed_sts() -> tuple[AwsClients, Stubber]:
    """Caller clients whose session hands out one STS client, stubbed (botocore's Stubber
    validates every request against the STS model)."""
    session = boto3.Session(region_name="eu-west-1")
    sts = session.client("sts")
    session.client = lambda service, **_: sts  # type: ignore[method-assign]
    return AwsClients(AwsAuth(region="eu-west-1"), base=session), Stubber(sts)


def fetch(clients: AwsClients) -> str:
    return clients.session().get_credentials().get_frozen_credentials().access_key


# ------------------------------------------------------------------ ExternalId


def test_assume_role_sends_the_stage_external_id():
    """botocore's STS model: AssumeRole takes ExternalId; the deploy-role stack's trust policy
    requires sts:ExternalId when its ExternalId parameter is set."""
    base, stub = base_with_stubbed_sts()
    config = staging(external_id="smbridge-staging-7f3a")
    stub.add_response(
        "assume_role",
        {"Credentials": CREDENTIALS},
        {
            "RoleArn": DEPLOY_ROLE,
            "RoleSessionName": "smbridge-deploy-staging",
            "DurationSeconds": 3600,
            "ExternalId": "smbridge-staging-7f3a",
        },
    )
    with stub:
        assert fetch(stage_clients(config, base)) == CREDENTIALS["AccessKeyId"]
        stub.assert_no_pending_responses()


def test_without_external_id_none_is_sent():
    base, stub = base_with_stubbed_sts()
    stub.add_response(
        "assume_role",
        {"Credentials": CREDENTIALS},
        {
            "RoleArn": DEPLOY_ROLE,
            "RoleSessionName": "smbridge-deploy-staging",
            "DurationSeconds": 3600,
        },
    )
    with stub:
        fetch(stage_clients(staging(), base))
        stub.assert_no_pending_responses()


def test_external_id_pattern_is_botocores():
    """botocore's STS model: ExternalId pattern [\\w+=,.@:\\/-]*, length 2-1224. STS evaluates
    \\w as ASCII word characters; the config model must accept exactly those values."""
    meta = sts_model_shape("AssumeRole", "ExternalId")
    assert (meta["min"], meta["max"]) == (2, 1224)

    def service_accepts(value: str) -> bool:
        return meta["min"] <= len(value) <= meta["max"] and bool(
            re.fullmatch(meta["pattern"], value, re.ASCII)
        )

    samples = [
        "ab", "a", "a" * 1224, "a" * 1225, "smbridge-staging_7f3a", "x+=,.@:/-_y", "with space",
        "quote\"", "semi;colon", "tab\tx", "ümlaut", "ab\n", "日本語", "a\\b", "*", "a*b",
    ]  # fmt: skip
    for value in samples:
        document = {**staging().model_dump(), "external_id": value}
        try:
            StageConfig.model_validate(document)
            accepted = True
        except ValueError:
            accepted = False
        assert accepted is service_accepts(value), value
        assert bool(re.fullmatch(EXTERNAL_ID_PATTERN, value)) is service_accepts(value), value


def test_a_bad_external_id_is_named_but_never_echoed(tmp_path):
    document = json.loads((CONFIG_DIR / "staging.json").read_text())
    document["external_id"] = "not allowed!secret-ish"
    path = tmp_path / "staging.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError) as info:
        load_stage_config(path)
    assert "external_id" in str(info.value)
    assert "secret-ish" not in str(info.value)


def test_external_id_and_service_connection_need_a_deploy_role_and_exclude_each_other():
    with pytest.raises(ValueError, match="need deploy_role_arn"):
        staging(deploy_role_arn=None, external_id="abc")
    with pytest.raises(ValueError, match="AssumeRoleWithWebIdentity"):
        staging(external_id="abc", service_connection_id=CONNECTION)
    with pytest.raises(ValueError, match="service_connection_id"):
        staging(service_connection_id="not-a-guid")


# ------------------------------------------------------------------ the stage's own OIDC trust


@responses.activate
def test_a_service_connection_stage_exchanges_its_own_token(monkeypatch):
    """service_connection_id: the token of that connection (sub sc://org/project/connection) is
    exchanged for the deploy role directly, with no AssumeRole from the automation account and
    no ExternalId (AssumeRoleWithWebIdentity has none: botocore's STS model)."""
    assert (
        "ExternalId"
        not in botocore.session.get_session()
        .get_service_model("sts")
        .operation_model("AssumeRoleWithWebIdentity")
        .input_shape.members
    )
    monkeypatch.setenv("SYSTEM_OIDCREQUESTURI", OIDC_URI)
    monkeypatch.setenv("SYSTEM_ACCESSTOKEN", "SYSTEM-ACCESS-TOKEN")
    responses.post(OIDC_URI, json={"oidcToken": "production-connection-jwt"})
    base, stub = base_with_stubbed_sts()
    config = staging(stage="production", service_connection_id=CONNECTION)
    stub.add_response(
        "assume_role_with_web_identity",
        {"Credentials": CREDENTIALS},
        {
            "RoleArn": DEPLOY_ROLE,
            "RoleSessionName": "smbridge-deploy-production",
            "DurationSeconds": 3600,
            "WebIdentityToken": "production-connection-jwt",
        },
    )
    with stub:
        assert fetch(stage_clients(config, base)) == CREDENTIALS["AccessKeyId"]
        stub.assert_no_pending_responses()
    (call,) = responses.calls
    assert f"serviceConnectionId={CONNECTION}" in call.request.url


def test_the_production_config_uses_its_own_service_connection():
    production = load_stage_config(CONFIG_DIR / "production.json")
    assert production.service_connection_id and production.external_id is None
    assert load_stage_config(CONFIG_DIR / "staging.json").service_connection_id is None


# ------------------------------------------------------------------ the CloudFormation role


def test_cloudformation_role_defaults_to_the_deploy_roles_service_role():
    """infra/deploy-role.yaml names them <NamePrefix>-deploy and
    <NamePrefix>-deploy-cloudformation."""
    assert staging().cloudformation_role_arn == DEPLOY_ROLE + "-cloudformation"
    own = "arn:aws:iam::222222222222:role/team-cfn"
    assert staging(cloudformation_role_arn=own).cloudformation_role_arn == own
    assert staging(cloudformation_role_arn=None).cloudformation_role_arn is None
    assert staging(deploy_role_arn=None).cloudformation_role_arn is None
    # A dump validates back to the same config (prepare and tests round-trip configs).
    assert StageConfig.model_validate(staging().model_dump()) == staging()
