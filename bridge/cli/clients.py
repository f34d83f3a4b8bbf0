"""Config and flags → :class:`~bridge.aws.session.AwsAuth`.

The one place that joins the Azure DevOps OIDC token source to the AWS session, so that ``aws/``
and ``azure_devops/`` never import each other.
"""

from __future__ import annotations

from bridge.aws.session import AwsAuth
from bridge.azure_devops.oidc import AzureDevOpsOidcTokenSource
from bridge.core.output import Reporter
from bridge.settings.bridge_config import BridgeConfig


def aws_auth(
    config: BridgeConfig,
    *,
    region: str | None = None,
    role_arn: str | None = None,
    web_identity: bool | None = None,
    profile: str | None = None,
    reporter: Reporter | None = None,
) -> AwsAuth:
    """Flags win over ``bridge.yaml``, which wins over the environment's defaults.

    No network call is made here: the OIDC token and role credentials are fetched on first use.
    """
    use_web_identity = config.aws.web_identity if web_identity is None else web_identity
    token_source = None
    if use_web_identity:
        token_source = AzureDevOpsOidcTokenSource.from_environ(
            service_connection_id=config.aws.service_connection_id
        )
        if reporter is not None:
            reporter.add_secret(token_source.access_token)
    return AwsAuth(
        region=region or config.region,
        profile=profile or config.aws.profile,
        role_arn=role_arn or config.aws.role_arn,
        web_identity_token=token_source,
        role_session_name=config.aws.role_session_name,
        duration_seconds=config.aws.session_duration_seconds,
    )
