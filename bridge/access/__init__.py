"""AWS access from configuration: bridge.yaml's ``aws`` section (and the caller's overrides) →
an :class:`~bridge.aws.session.AwsAuth` / :class:`~bridge.aws.session.AwsClients`::

    from bridge.access import aws_clients
    from bridge.settings.bridge_config import load_config

    clients = aws_clients(load_config(), region="eu-west-1")

The one place that joins the Azure DevOps OIDC token source to the AWS session, so that ``aws/``
and ``azure_devops/`` never import each other. Importing it loads boto3. ``NO_CREDENTIALS`` and
``describe`` (bridge/aws/errors.py) are re-exported for callers above this layer.
"""

from __future__ import annotations

from bridge.aws.errors import NO_CREDENTIALS, describe
from bridge.aws.session import AwsAuth, AwsClients
from bridge.azure_devops.oidc import AzureDevOpsOidcTokenSource
from bridge.core.output import Reporter
from bridge.settings.bridge_config import BridgeConfig

__all__ = ["NO_CREDENTIALS", "AwsAuth", "AwsClients", "aws_auth", "aws_clients", "describe"]


def aws_auth(
    config: BridgeConfig,
    *,
    region: str | None = None,
    role_arn: str | None = None,
    web_identity: bool | None = None,
    profile: str | None = None,
    reporter: Reporter | None = None,
    use_role: bool = True,
) -> AwsAuth:
    """Arguments win over ``bridge.yaml``, which wins over the environment's defaults.

    ``use_role=False``: no role at all, not even ``aws.role_arn`` of bridge.yaml (``--no-role``).
    No network call is made here: the OIDC token and role credentials are fetched on first use.
    """
    role = (role_arn or config.aws.role_arn) if use_role else None
    use_web_identity = config.aws.web_identity if web_identity is None else web_identity
    token_source = None
    if use_web_identity and use_role:
        token_source = AzureDevOpsOidcTokenSource.from_environ(
            service_connection_id=config.aws.service_connection_id
        )
        if reporter is not None:
            reporter.add_secret(token_source.access_token)
    return AwsAuth(
        region=region or config.region,
        profile=profile or config.aws.profile,
        role_arn=role,
        web_identity_token=token_source,
        role_session_name=config.aws.role_session_name,
        duration_seconds=config.aws.session_duration_seconds,
    )


def aws_clients(
    config: BridgeConfig,
    *,
    region: str | None = None,
    profile: str | None = None,
    role_arn: str | None = None,
    use_role: bool = True,
    web_identity: bool | None = None,
    reporter: Reporter | None = None,
) -> AwsClients:
    """Clients for :func:`aws_auth` of the same arguments."""
    return AwsClients(
        aws_auth(
            config,
            region=region,
            role_arn=role_arn,
            web_identity=web_identity,
            profile=profile,
            reporter=reporter,
            use_role=use_role,
        )
    )
