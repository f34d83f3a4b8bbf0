"""Flags → AWS clients (through :mod:`bridge.access`); botocore failures that escaped a
capability. Imported by the handlers that call AWS (it loads boto3), never at start-up.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from bridge import access
from bridge.access import AwsClients
from bridge.cli.common import AwsChoice
from bridge.cli.common import region as command_region
from bridge.core.output import Reporter
from bridge.errors import BridgeError, CredentialsError, ServiceError, UserError
from bridge.settings.bridge_config import BridgeConfig


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
    return access.aws_clients(
        config,
        region=region or command_region(args, config),
        role_arn=choice.role_arn,
        web_identity=args.web_identity,
        profile=choice.profile,
        reporter=reporter,
        use_role=not args.no_role,
    )


def library_error(exc: Exception) -> BridgeError | None:
    """A botocore failure that escaped a capability's wrapper, as the bridge error it stands
    for; None for anything else."""
    if not type(exc).__module__.startswith("botocore"):
        return None
    from bridge.access import NO_CREDENTIALS, describe

    names = {cls.__name__ for cls in type(exc).__mro__}
    if "NoCredentialsError" in names:
        return CredentialsError(NO_CREDENTIALS)
    if "NoRegionError" in names:
        return UserError("no AWS region: set region in bridge.yaml, --region or AWS_DEFAULT_REGION")
    if "ClientError" in names:
        operation: Any = getattr(exc, "operation_name", "AWS call")
        return ServiceError(f"{operation} failed: {describe(exc)}")
    return ServiceError(f"AWS call failed: {exc}")
