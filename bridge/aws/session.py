"""AWS sessions: region, profile, assume-role and web-identity chains that refresh before expiry.

A six-hour wait outlives 15-minute or one-hour credentials, so role credentials are
botocore ``DeferredRefreshableCredentials``: fetched on first use (a dry run never fetches) and
fetched again before they expire, at a margin scaled to their lifetime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.session
from botocore import UNSIGNED
from botocore.config import Config
from botocore.credentials import CredentialProvider, DeferredRefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError

from bridge import __version__
from bridge.aws.errors import describe
from bridge.errors import CredentialsError, UserError

TokenProvider = Callable[[], str]
Clock = Callable[[], datetime]

CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 8},
    user_agent_extra=f"smbridge/{__version__}",
    connect_timeout=10,
    read_timeout=60,
)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AwsAuth:
    """Where credentials come from.

    Without ``role_arn``: the default boto3 chain (environment, profile, the AWS Toolkit's
    ``AWSShellScript@1``, instance role). With ``role_arn``: that role is assumed from the chain.
    With ``role_arn`` and ``web_identity_token``: ``AssumeRoleWithWebIdentity`` with a token
    fetched anew at every refresh (no AWS credentials needed beforehand).
    """

    region: str | None = None
    profile: str | None = None
    role_arn: str | None = None
    web_identity_token: TokenProvider | None = None
    role_session_name: str = "smbridge"
    duration_seconds: int = 3600
    # sts:ExternalId for AssumeRole (a role whose trust policy requires it); not sent with
    # AssumeRoleWithWebIdentity, which has no such parameter.
    external_id: str | None = field(default=None, repr=False)


class _LifetimeScaledCredentials(DeferredRefreshableCredentials):
    """botocore refreshes 15 min (advisory) and 10 min (mandatory) before expiry. With 15-minute
    credentials that means one STS call per request; scale the margins to the lifetime instead."""

    def __init__(
        self,
        refresh_using: Callable[[], dict[str, str]],
        method: str,
        lifetime_seconds: int,
        time_fetcher: Clock,
    ) -> None:
        super().__init__(refresh_using=refresh_using, method=method, time_fetcher=time_fetcher)
        self._advisory_refresh_timeout = min(15 * 60, lifetime_seconds // 3)
        self._mandatory_refresh_timeout = min(10 * 60, lifetime_seconds // 6)


class _FixedProvider(CredentialProvider):
    METHOD = "smbridge-role"
    CANONICAL_NAME = "smbridge-role"

    def __init__(self, credentials: DeferredRefreshableCredentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> DeferredRefreshableCredentials:
        return self._credentials


def _metadata(credentials: dict[str, Any]) -> dict[str, str]:
    expiration = credentials["Expiration"]
    if isinstance(expiration, datetime):
        expiration = expiration.isoformat()
    return {
        "access_key": credentials["AccessKeyId"],
        "secret_key": credentials["SecretAccessKey"],
        "token": credentials["SessionToken"],
        "expiry_time": str(expiration),
    }


def _role_fetcher(auth: AwsAuth, base: boto3.Session) -> Callable[[], dict[str, str]]:
    role_arn = auth.role_arn
    assert role_arn is not None
    common = {
        "RoleArn": role_arn,
        "RoleSessionName": auth.role_session_name,
        "DurationSeconds": auth.duration_seconds,
    }
    if auth.web_identity_token is not None:
        token_provider = auth.web_identity_token
        sts = base.client("sts", config=CLIENT_CONFIG.merge(Config(signature_version=UNSIGNED)))

        def call() -> dict[str, Any]:  # a fresh OIDC token for every exchange
            return sts.assume_role_with_web_identity(WebIdentityToken=token_provider(), **common)

        failure = (
            f"AssumeRoleWithWebIdentity for {role_arn} failed: {{}}; check the role's trust "
            "policy (issuer, aud, sub) - see docs/credentials.md"
        )
    else:
        sts = base.client("sts", config=CLIENT_CONFIG)

        external = {"ExternalId": auth.external_id} if auth.external_id else {}

        def call() -> dict[str, Any]:
            return sts.assume_role(**common, **external)

        failure = (
            f"AssumeRole {role_arn} failed: {{}}; check that the calling identity may assume it "
            "(its trust policy) and --role-arn"
        )

    operation = "AssumeRoleWithWebIdentity" if auth.web_identity_token else "AssumeRole"
    fetched = 0

    def fetch() -> dict[str, str]:
        nonlocal fetched
        try:
            response = call()
        except (ClientError, BotoCoreError) as exc:
            if fetched:  # the role was assumed before: not its trust policy, most likely
                raise CredentialsError(
                    f"{operation} for {role_arn} failed while refreshing credentials that "
                    f"worked until now: {_reason(exc)}; the current ones expire within minutes "
                    "(botocore's mandatory refresh window): rerun once STS answers"
                ) from None
            raise CredentialsError(failure.format(_reason(exc))) from None
        fetched += 1
        return _metadata(response["Credentials"])

    return fetch


def _reason(exc: Exception) -> str:
    # Not str(exc) for botocore's own errors: a parameter error could quote the token.
    return describe(exc) if isinstance(exc, ClientError) else type(exc).__name__


def create_session(
    auth: AwsAuth, *, clock: Clock = utc_now, base: boto3.Session | None = None
) -> boto3.Session:
    """A boto3 session for ``auth``. Makes no AWS call: credentials are fetched on first use.

    ``base`` is the session whose default chain calls STS (default: one for ``auth.profile``).
    """
    if auth.web_identity_token is not None and not auth.role_arn:
        raise UserError("--web-identity needs a role to assume: set aws.role_arn or --role-arn")
    if base is None:
        try:
            base = boto3.Session(profile_name=auth.profile, region_name=auth.region)
        except BotoCoreError as exc:
            raise CredentialsError(f"AWS profile {auth.profile!r}: {exc}") from None
    if not auth.role_arn:
        return base
    credentials = _LifetimeScaledCredentials(
        refresh_using=_role_fetcher(auth, base),
        method="web-identity" if auth.web_identity_token else "assume-role",
        lifetime_seconds=auth.duration_seconds,
        time_fetcher=clock,
    )
    target = botocore.session.Session()
    target.get_component("credential_provider").insert_before("env", _FixedProvider(credentials))
    return boto3.Session(botocore_session=target, region_name=auth.region)


class AwsClients:
    """Lazily created, cached boto3 clients for one :class:`AwsAuth` (no call until first use)."""

    def __init__(
        self, auth: AwsAuth, *, clock: Clock = utc_now, base: boto3.Session | None = None
    ) -> None:
        self.auth = auth
        self._clock = clock
        self._base = base
        self._session: boto3.Session | None = None
        self._clients: dict[str, Any] = {}

    @property
    def region(self) -> str | None:
        return self.auth.region

    def session(self) -> boto3.Session:
        """The boto3 session (created on first use; still no AWS call)."""
        if self._session is None:
            self._session = create_session(self.auth, clock=self._clock, base=self._base)
        return self._session

    def in_region(self, region: str) -> AwsClients:
        """Clients in ``region`` on the same session: the same credentials, no new STS call."""
        view = AwsClients(replace(self.auth, region=region), clock=self._clock)
        view._session = self.session()
        return view

    def client(self, service: str) -> Any:
        if service not in self._clients:
            session = self.session()
            region = self.auth.region or session.region_name
            if not region:
                raise UserError(
                    "no AWS region: set region in bridge.yaml, --region, or AWS_DEFAULT_REGION"
                )
            self._clients[service] = session.client(
                service, region_name=region, config=CLIENT_CONFIG
            )
        return self._clients[service]
