"""Config and flags → AWS clients; botocore failures that escaped a capability.

The one place that joins the Azure DevOps OIDC token source to the AWS session, so that ``aws/``
and ``azure_devops/`` never import each other. Imported by the handlers that call AWS (it loads
boto3), never at start-up.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from bridge.aws.session import AwsAuth, AwsClients  # layers: needs bridge.<capability>.aws_clients
from bridge.azure_devops.oidc import (  # layers: needs bridge.<capability>.aws_clients
    AzureDevOpsOidcTokenSource,
)
from bridge.cli.common import AwsChoice
from bridge.cli.common import region as command_region
from bridge.core.output import Reporter
from bridge.errors import BridgeError, CredentialsError, ServiceError, UserError
from bridge.settings.bridge_config import BridgeConfig


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
    """Flags win over ``bridge.yaml``, which wins over the environment's defaults.

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


def choose(args: argparse.Namespace, config: BridgeConfig) -> AwsChoice:
    """Role and profile from the flags, bridge.yaml (file or ``SMBRIDGE_*``) and the AWS
    environment, in that order; ``--no-role`` turns off a configured role for this run."""
    from bridge.cli.config import source_text

    if args.no_role:
        if args.role_arn:
            raise UserError("--no-role and --role-arn: pass one of them")
        if args.web_identity:
            raise UserError("--no-role and --web-identity: web identity needs a role; pass one")
        role, role_source = None, "--no-role"
    elif args.role_arn:
        role, role_source = args.role_arn, "--role-arn"
    else:
        role, role_source = config.aws.role_arn, source_text(config, ("aws", "role_arn"))
    if args.profile:
        profile, profile_source = args.profile, "--profile"
    elif config.aws.profile:
        profile, profile_source = config.aws.profile, source_text(config, ("aws", "profile"))
    else:
        # botocore reads AWS_DEFAULT_PROFILE first, then AWS_PROFILE
        names = ("AWS_DEFAULT_PROFILE", "AWS_PROFILE")
        variable = next((name for name in names if os.environ.get(name)), "")
        profile, profile_source = os.environ.get(variable) or None, variable
    return AwsChoice(role, role_source, profile, profile_source)


def aws_clients(
    args: argparse.Namespace,
    config: BridgeConfig,
    reporter: Reporter,
    *,
    region: str | None = None,
) -> AwsClients:
    """Clients for a command: ``region`` (default: :func:`bridge.cli.common.region`), the role
    and profile of :func:`choose`."""
    choice = choose(args, config)
    args.aws_choice = choice  # for bridge.cli.common.explain
    auth = aws_auth(
        config,
        region=region or command_region(args, config),
        role_arn=choice.role_arn,
        web_identity=args.web_identity,
        profile=choice.profile,
        reporter=reporter,
        use_role=not args.no_role,
    )
    return AwsClients(auth)


def library_error(exc: Exception) -> BridgeError | None:
    """A botocore failure that escaped a capability's wrapper, as the bridge error it stands
    for; None for anything else."""
    if not type(exc).__module__.startswith("botocore"):
        return None
    from bridge.aws.errors import (  # layers: needs bridge.errors.NO_AWS_CREDENTIALS, describe
        NO_CREDENTIALS,
        describe,
    )

    names = {cls.__name__ for cls in type(exc).__mro__}
    if "NoCredentialsError" in names:
        return CredentialsError(NO_CREDENTIALS)
    if "NoRegionError" in names:
        return UserError("no AWS region: set region in bridge.yaml, --region or AWS_DEFAULT_REGION")
    if "ClientError" in names:
        operation: Any = getattr(exc, "operation_name", "AWS call")
        return ServiceError(f"{operation} failed: {describe(exc)}")
    return ServiceError(f"AWS call failed: {exc}")
