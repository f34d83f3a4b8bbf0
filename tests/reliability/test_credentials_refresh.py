"""Short-lived credentials expiring during ``pipeline start --wait``: each one is replaced before
it expires, no request ever carries an expired one, and a refresh that fails is retried while
there is time and ends the wait cleanly when there is none.

Extends tests/unit/test_credential_refresh.py (same fakes, same six-hour wait: FakeSts issues
15-minute credentials on a fake clock, FakeSageMaker behind a real botocore client, so every
request is really signed with what botocore holds at that moment) with the timeline of every
credential: when STS issued it, when it expires, which requests it signed. The web identity
case goes the CLI's way (bridge.yaml's ``aws`` section through :func:`bridge.access.aws_auth`,
the agent's ``SYSTEM_OIDCREQUESTURI``/``SYSTEM_ACCESSTOKEN``) to the Azure DevOps stand-in's
``Oidctoken_Create`` (tests/support/fake_ado.py; each request held against the distributedTask
7.1 spec), whose tokens are dated by the same fake clock.

Refresh margins (bridge/aws/session.py, ``_LifetimeScaledCredentials``): botocore's advisory
and mandatory refresh windows scaled to the lifetime, a third and a sixth of it (300 s and
150 s before a 15-minute credential expires). A refresh failing in the advisory window leaves
the current credentials in use (botocore's ``RefreshableCredentials._protected_refresh``); in
the mandatory window it raises.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import boto3
import botocore.endpoint
import pytest
import responses
from botocore.awsrequest import AWSResponse

from bridge.access import aws_auth
from bridge.aws.session import AwsAuth, AwsClients
from bridge.core.agent import AgentRun
from bridge.core.output import Reporter
from bridge.errors import CredentialsError, ServiceError
from bridge.pipeline.operations import StartParams, start_pipeline
from bridge.settings.bridge_config import BridgeConfig
from tests.support import fake_ado
from tests.support.fake_ado import FakeAzureDevOps
from tests.support.fakes import EPOCH, FakeClock, FakeSageMaker, FakeSts, RawBody, ScriptedStep
from tests.unit.test_credential_refresh import ROLE, SIX_HOURS

SEED = 20261123  # botocore's retry jitter (see the clock fixture)
LIFETIME = 900  # the shortest DurationSeconds STS allows (botocore's STS model: min 900)
ADVISORY = LIFETIME // 3  # bridge/aws/session.py: refresh from here on, failures tolerated
MANDATORY = LIFETIME // 6  # ... and from here on a failed refresh raises
ORGANIZATION, PROJECT_ID, PROJECT = "contoso", "7d5bc4a2-1f3e-4c6b-9a8d-2e1f0c3b4a59", "mlops"
CONNECTION_ID, CONNECTION = "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b", "aws-automation"
JOB_ACCESS_TOKEN = "job-access-token-sentinel"
OIDC_REQUEST_URI = (
    f"https://dev.azure.com/{ORGANIZATION}/{PROJECT_ID}/_apis/distributedtask/hubs/build/plans/"
    "0b1c2d3e-0000-4000-8000-000000000001/jobs/0b1c2d3e-0000-4000-8000-000000000002/oidctoken"
)


@dataclass
class Credential:
    key: str
    issued: float
    expires: float
    used_at: list[float] = field(default_factory=list)


@dataclass
class Timeline:
    """The fakes of one wait, and every credential's life: issued, expires, and when it signed
    a SageMaker request."""

    clock: FakeClock
    sts: UnreliableSts
    sagemaker: FakeSageMaker
    clients: AwsClients
    signed: list[tuple[str, float]] = field(default_factory=list)

    def credentials(self) -> list[Credential]:
        by_key = {
            key: Credential(key, issued, expiry)
            for (key, expiry), issued in zip(self.sts.issued, self.sts.issued_at, strict=True)
        }
        for key, at in self.signed:
            by_key[key].used_at.append(at)  # a key STS never issued fails here
        return list(by_key.values())


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    """The fake clock, also the one botocore's retries sleep on (botocore.endpoint sleeps
    between attempts), their jitter drawn from ``random`` seeded with :data:`SEED`."""
    clock = FakeClock()
    monkeypatch.setattr(botocore.endpoint, "time", SimpleNamespace(sleep=clock.sleep))
    state = random.getstate()
    random.seed(SEED)  # botocore's ExponentialBackoff draws from the module's random()
    try:
        yield clock
    finally:
        random.setstate(state)


@dataclass
class UnreliableSts(FakeSts):
    """FakeSts, unreachable from ``down[0]`` to ``down[1]`` (fake seconds): it answers
    IDPCommunicationError, "the identity provider could not be reached... often a transient
    error" (STS API reference, AssumeRoleWithWebIdentity; AssumeRole gets the same here).
    botocore retries it (its STS retry rules), sleeping on the fake clock here."""

    down: tuple[float, float] = (float("inf"), float("inf"))
    failures: list[float] = field(default_factory=list)
    issued_at: list[float] = field(default_factory=list)  # when each of ``issued`` was

    def _handle(self, request: Any, **kwargs: Any) -> AWSResponse:
        start, end = self.down
        if not start <= self.clock.now < end:
            self.issued_at.append(self.clock.now)
            return super()._handle(request, **kwargs)
        self.failures.append(self.clock.now)
        xml = (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
            "<Type>Sender</Type><Code>IDPCommunicationError</Code><Message>The identity "
            "provider could not be reached</Message></Error><RequestId>r</RequestId>"
            "</ErrorResponse>"
        )
        return AWSResponse(request.url, 400, {"Content-Type": "text/xml"}, RawBody(xml.encode()))


def timeline(
    clock: FakeClock, auth: AwsAuth, *, sts_down: tuple[float, float] | None = None
) -> Timeline:
    """A six-hour execution to wait for, through STS that is down during ``sts_down``."""
    base = boto3.Session(region_name="eu-west-1")
    sts = UnreliableSts(clock, lifetime=LIFETIME, down=sts_down or (float("inf"),) * 2)
    sts.attach(base.events)
    clients = AwsClients(auth, clock=clock.datetime, base=base)
    sagemaker = FakeSageMaker(clock)
    sagemaker.add_pipeline("demo", [])
    sagemaker.script = [ScriptedStep("Train", 0, SIX_HOURS)]
    world = Timeline(clock, sts, sagemaker, clients)
    sagemaker.credential_check = lambda key: world.signed.append((key, clock.now))
    sagemaker.attach(clients.client("sagemaker"))
    return world


def wait(world: Timeline):
    return start_pipeline(
        StartParams(pipeline_name="demo", wait=True),
        clients=world.clients,
        reporter=Reporter("text", out=io.StringIO(), err=io.StringIO()),
        sleep=world.clock.sleep,
        monotonic=world.clock.monotonic,
        agent_run=AgentRun(),
    )


def assert_each_replaced_before_it_expires(world: Timeline) -> list[Credential]:
    credentials = world.credentials()
    assert len(credentials) >= SIX_HOURS / LIFETIME
    for credential in credentials:
        assert credential.used_at, f"{credential.key} was fetched and never used"
        # no request signed before it was issued or once it had expired
        assert all(credential.issued <= t < credential.expires for t in credential.used_at)
    for old, new in itertools.pairwise(credentials):
        # STS was called again inside the advisory window, before the mandatory one...
        assert MANDATORY < old.expires - new.issued <= ADVISORY, (old, new)
        # ...and from then on only the new credentials sign (never back to the old ones)
        assert max(old.used_at) <= min(new.used_at)
    return credentials


def test_each_assumed_role_credential_is_replaced_before_it_expires(clock):
    world = timeline(clock, AwsAuth(region="eu-west-1", role_arn=ROLE, duration_seconds=LIFETIME))
    assert wait(world).status == "Succeeded"
    credentials = assert_each_replaced_before_it_expires(world)
    assert clock.now >= SIX_HOURS
    assert len(world.sts.tokens_seen) == 0  # AssumeRole: no web identity token sent
    # one STS call per credential, not one per request
    assert len(credentials) == len(world.sts.issued) < len(world.signed) / 10


@pytest.fixture
def stand_in(clock, monkeypatch) -> FakeAzureDevOps:
    """The Azure DevOps stand-in on ``responses``; its OIDC tokens dated by the fake clock (the
    stand-in dates them by the real one: every token of a fake six hours would be identical)."""
    ado = FakeAzureDevOps(
        accepted_auth={f"Bearer {JOB_ACCESS_TOKEN}"},
        service_connections={CONNECTION_ID: CONNECTION},
        project_names={PROJECT_ID: PROJECT},
    )
    issue = fake_ado._ADMIN_HANDLERS["Oidctoken_Create"]

    def dated_by_the_fake_clock(self: Any, request: Any) -> Any:
        now = int(clock.datetime().timestamp())
        self.oidc_claims = {"iat": now, "nbf": now, "exp": now + 3600}
        return issue(self, request)

    monkeypatch.setattr(
        fake_ado,
        "_ADMIN_HANDLERS",
        {**fake_ado._ADMIN_HANDLERS, "Oidctoken_Create": dated_by_the_fake_clock},
    )
    return ado


def claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_web_identity_exchanges_a_fresh_oidc_token_before_each_expiry(clock, stand_in, monkeypatch):
    """bridge.yaml ``aws.web_identity`` on an agent: every refresh asks Oidctoken_Create for a
    new token of the service connection and exchanges exactly that one."""
    monkeypatch.setenv("SYSTEM_OIDCREQUESTURI", OIDC_REQUEST_URI)
    monkeypatch.setenv("SYSTEM_ACCESSTOKEN", JOB_ACCESS_TOKEN)
    config = BridgeConfig.model_validate(
        {
            "region": "eu-west-1",
            "aws": {
                "role_arn": ROLE,
                "web_identity": True,
                "service_connection_id": CONNECTION_ID,
                "session_duration_seconds": LIFETIME,
            },
        }
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        stand_in.install(mock)
        world = timeline(clock, aws_auth(config))
        assert wait(world).status == "Succeeded"
    credentials = assert_each_replaced_before_it_expires(world)
    assert stand_in.operations().count("Oidctoken_Create") == len(credentials)
    assert len(world.sts.tokens_seen) == len(credentials)
    assert len(set(world.sts.tokens_seen)) == len(credentials)
    for credential, token in zip(credentials, world.sts.tokens_seen, strict=True):
        seen = claims(token)
        # issued for this exchange (at the fake moment STS was called), not an older one
        assert seen["iat"] == int(EPOCH.timestamp() + credential.issued)
        assert seen["exp"] > seen["iat"]
        assert seen["sub"] == f"sc://{ORGANIZATION}/{PROJECT}/{CONNECTION}"
        assert seen["aud"] == "api://AzureADTokenExchange"
        assert seen["iss"] == stand_in.oidc_issuer
    assert stand_in.violations == []


def test_a_refresh_failing_before_expiry_is_retried_and_the_wait_goes_on(clock):
    """STS unreachable for the first two minutes of the first advisory window: the current
    credentials keep signing, each later request tries again, and the refresh that succeeds
    still comes before they expire."""
    auth = AwsAuth(
        region="eu-west-1",
        role_arn=ROLE,
        duration_seconds=LIFETIME,
        web_identity_token=iter(f"oidc-token-{n}" for n in range(10_000)).__next__,
    )
    world = timeline(clock, auth, sts_down=(LIFETIME - ADVISORY, LIFETIME - ADVISORY + 120))
    assert wait(world).status == "Succeeded"
    first, second, *_ = world.credentials()
    seed = f"botocore's retry jitter seeded with {SEED}"
    assert len(world.sts.failures) >= 2, seed  # tried again at a later request, not given up
    assert all(first.expires - ADVISORY <= t < second.issued for t in world.sts.failures), seed
    assert second.issued < first.expires, seed
    assert max(first.used_at) < first.expires  # no request ever carried expired credentials
    assert all(c.issued <= t < c.expires for c in world.credentials() for t in c.used_at)


def test_credentials_that_cannot_be_refreshed_end_the_wait_before_they_expire(clock):
    """STS unreachable from the first advisory window on: the wait ends with a credentials
    error (exit 6) inside the mandatory window, before the credentials expire, never with a
    request signed by expired ones; the message says the execution keeps running and how to
    reach it (nothing can stop it without credentials)."""
    auth = AwsAuth(region="eu-west-1", role_arn=ROLE, duration_seconds=LIFETIME)
    world = timeline(clock, auth, sts_down=(LIFETIME - ADVISORY, float("inf")))
    with pytest.raises(CredentialsError) as info:
        wait(world)
    assert info.value.exit_code == 6
    (only,) = world.credentials()
    seed = f"botocore's retry jitter seeded with {SEED}"
    assert only.expires - MANDATORY <= clock.now < only.expires, seed
    assert max(only.used_at) < only.expires, seed
    assert len(world.sts.failures) >= 2, seed
    (execution,) = world.sagemaker.executions.values()
    message = str(info.value)
    # the role was assumed before: a refresh failing, not the trust policy (bridge/aws/session.py)
    assert "failed while refreshing credentials that worked until now: IDPCommunication" in message
    assert "trust policy" not in message
    assert f"{execution.arn} keeps running" in message
    assert f"smbridge pipeline stop --execution-arn {execution.arn}" in message
    assert "StopPipelineExecution" not in world.sagemaker.operations()


def test_a_wait_refused_midway_names_the_execution_that_keeps_running(clock):
    """The role loses sagemaker:DescribePipelineExecution an hour into the wait (SageMaker
    answers AccessDeniedException, botocore's SageMaker error for it, not retried): the command
    fails with exit 3 and says which execution goes on without it."""
    from tests.support.fakes import _ServiceError

    world = timeline(clock, AwsAuth(region="eu-west-1", role_arn=ROLE, duration_seconds=LIFETIME))
    describe = world.sagemaker.op_DescribePipelineExecution

    def refused_after_an_hour(body: dict[str, Any]) -> dict[str, Any]:
        if clock.now >= 3600:
            raise _ServiceError("AccessDeniedException", "not authorized to perform it")
        return describe(body)

    world.sagemaker.op_DescribePipelineExecution = refused_after_an_hour  # type: ignore[method-assign]
    with pytest.raises(ServiceError) as info:
        wait(world)
    assert info.value.exit_code == 3
    (execution,) = world.sagemaker.executions.values()
    assert str(info.value).startswith(f"DescribePipelineExecution {execution.arn} failed: Access")
    assert f"the execution {execution.arn} keeps running" in str(info.value)
    assert "StopPipelineExecution" not in world.sagemaker.operations()
