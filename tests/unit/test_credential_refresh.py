"""Long waits survive short-lived credentials: a 6-hour execution with 15-minute credentials.

STS and SageMaker are fakes behind real botocore clients (tests/support/fakes.py), so every
SageMaker request is really signed with whatever credentials botocore holds at that moment; the
fake SageMaker rejects a request signed with an expired key.
"""

from __future__ import annotations

import io

import boto3
import pytest
import responses

from bridge.aws.session import AwsAuth, AwsClients
from bridge.azure_devops.oidc import AzureDevOpsOidcTokenSource
from bridge.core.agent import AgentRun
from bridge.core.output import Reporter
from bridge.errors import CredentialsError
from bridge.pipeline.operations import StartParams, start_pipeline
from tests.support.fakes import FakeSageMaker, FakeSts, ScriptedStep

ROLE = "arn:aws:iam::123456789012:role/smbridge-ci"
SIX_HOURS = 6 * 3600


def _clients_with_fakes(clock, auth):
    base = boto3.Session(region_name="eu-west-1")
    sts = FakeSts(clock, lifetime=900)
    sts.attach(base.events)
    clients = AwsClients(auth, clock=clock.datetime, base=base)
    sagemaker = FakeSageMaker(clock)
    sagemaker.add_pipeline("demo", [])
    sagemaker.script = [ScriptedStep("Train", 0, SIX_HOURS)]
    expired: list[tuple[str, float]] = []

    def check(access_key: str) -> None:
        if not sts.valid_at(access_key, clock.now):
            expired.append((access_key, clock.now))

    sagemaker.credential_check = check
    sagemaker.attach(clients.client("sagemaker"))
    return clients, sts, sagemaker, expired


def _wait(clients, clock):
    return start_pipeline(
        StartParams(pipeline_name="demo", wait=True),
        clients=clients,
        reporter=Reporter("text", out=io.StringIO(), err=io.StringIO()),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        agent_run=AgentRun(),
    )


def test_assumed_role_credentials_refresh_during_a_six_hour_wait(clock):
    auth = AwsAuth(region="eu-west-1", role_arn=ROLE, duration_seconds=900)
    clients, sts, sagemaker, expired = _clients_with_fakes(clock, auth)
    result = _wait(clients, clock)
    assert result.status == "Succeeded"
    assert expired == []  # no request was ever signed with expired credentials
    # 15-minute credentials refreshed 5 minutes before expiry: one AssumeRole per ~10 minutes,
    # not one per request (botocore's default 15-minute margin would do that).
    requests_made = len(sagemaker.calls)
    assert SIX_HOURS / 900 <= len(sts.issued) <= SIX_HOURS / 600 + 2
    assert len(sts.issued) < requests_made / 10


def test_web_identity_asks_for_a_fresh_oidc_token_at_each_refresh(clock):
    tokens = iter(f"oidc-token-{n}" for n in range(1000))
    auth = AwsAuth(
        region="eu-west-1",
        role_arn=ROLE,
        duration_seconds=900,
        web_identity_token=lambda: next(tokens),
    )
    clients, sts, _, expired = _clients_with_fakes(clock, auth)
    assert _wait(clients, clock).status == "Succeeded"
    assert expired == []
    assert len(sts.tokens_seen) == len(sts.issued) >= SIX_HOURS / 900
    assert len(set(sts.tokens_seen)) == len(sts.tokens_seen)


def test_without_refresh_the_same_wait_would_fail(clock):
    """Proves the check above can fail: static 15-minute credentials expire mid-wait."""
    base = boto3.Session(region_name="eu-west-1")
    sts = FakeSts(clock, lifetime=900)
    sts.attach(base.events)
    credentials = base.client("sts").assume_role(RoleArn=ROLE, RoleSessionName="static")[
        "Credentials"
    ]
    static = boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name="eu-west-1",
    )
    sagemaker = FakeSageMaker(clock)
    sagemaker.add_pipeline("demo", [])
    sagemaker.script = [ScriptedStep("Train", 0, SIX_HOURS)]
    expired = []
    sagemaker.credential_check = lambda key: (
        None if sts.valid_at(key, clock.now) else expired.append(key)
    )
    from tests.support.fakes import StaticClients

    client = sagemaker.attach(static.client("sagemaker"))
    _wait(StaticClients(sagemaker=client), clock)
    assert expired  # requests after minute 15 carried expired credentials


@responses.activate
def test_oidc_token_request_shape_and_secret_safety():
    uri = (
        "https://dev.azure.com/contoso/p1/_apis/distributedtask/hubs/build/plans/1/jobs/2/oidctoken"
    )
    responses.post(uri, json={"oidcToken": "jwt-value"})
    source = AzureDevOpsOidcTokenSource(
        uri, "SYSTEM-ACCESS-TOKEN-SENTINEL", service_connection_id="sc1"
    )
    assert source() == "jwt-value"
    (call,) = responses.calls
    assert call.request.method == "POST"
    assert "api-version=7.1-preview.1" in call.request.url
    assert "serviceConnectionId=sc1" in call.request.url
    assert call.request.headers["Authorization"] == "Bearer SYSTEM-ACCESS-TOKEN-SENTINEL"


@responses.activate
@pytest.mark.parametrize("status", [401, 403, 404])
def test_oidc_failures_are_one_line_and_secret_free(status):
    uri = "https://dev.azure.com/contoso/p1/_apis/oidctoken"
    responses.post(uri, status=status, body="denied for SYSTEM-ACCESS-TOKEN-SENTINEL")
    source = AzureDevOpsOidcTokenSource(uri, "SYSTEM-ACCESS-TOKEN-SENTINEL")
    with pytest.raises(CredentialsError) as info:
        source()
    assert f"HTTP {status}" in str(info.value)
    assert "SENTINEL" not in str(info.value)
    assert "\n" not in str(info.value)


def test_web_identity_outside_an_agent_says_what_to_do():
    with pytest.raises(CredentialsError, match="SYSTEM_OIDCREQUESTURI"):
        AzureDevOpsOidcTokenSource.from_environ({})
    with pytest.raises(CredentialsError, match=r"\$\(System.AccessToken\)"):
        AzureDevOpsOidcTokenSource.from_environ({"SYSTEM_OIDCREQUESTURI": "https://x"})
