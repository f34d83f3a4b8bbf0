"""``smbridge ado …``: Azure DevOps environments (Exclusive Lock and production Approval checks,
the model-deploy pipeline's permission on them), and approvals.

Argument parsing and rendering only; each handler calls one function of bridge/ado/setup.py.
Nothing heavy is imported at module level (bridge/cli/app.py imports this module for ``--help``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from bridge.cli.common import add_command, require, validated
from bridge.core.output import Reporter
from bridge.errors import UserError, exit_codes_epilog

if TYPE_CHECKING:
    from bridge.ado.setup import EnvironmentsSettings
    from bridge.azure_devops.client import AzureDevOpsClient
    from bridge.settings.bridge_config import BridgeConfig

ADO_EXIT_CODES = (
    exit_codes_epilog()
    + """
credential (first found): SYSTEM_ACCESSTOKEN (an agent's System.AccessToken, mapped into the
step's env), SMBRIDGE_ADO_PAT, AZURE_DEVOPS_EXT_PAT (the az devops CLI's). --dry-run needs none.
"""
)

SETUP_HELP = (
    "ensure environments <prefix>-staging and <prefix>-production exist, each has an Exclusive "
    "Lock check (model-deploy's lockBehavior: sequential), production has one Approval check as "
    "bridge.yaml's azure_devops.environments says, and the model-deploy pipeline is authorised "
    "on both (idempotent)"
)


def add_ado_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register ``smbridge ado setup`` and ``smbridge ado approvals list|approve|reject``.

    ``commands`` is the top-level ``add_subparsers()`` object, ``common`` the parent parser
    carrying --config, --dry-run, --output, --debug, ….
    """
    ado = commands.add_parser("ado", help="Azure DevOps: environments, approval check, approvals")
    actions = ado.add_subparsers(dest="action", metavar="ACTION", required=True)

    def add(
        group: Any, name: str, help_text: str, handler: Callable[..., int]
    ) -> argparse.ArgumentParser:
        sub = add_command(group, name, help_text, handler, parents=common, epilog=ADO_EXIT_CODES)
        sub.add_argument(
            "--organization", help="Azure DevOps organization (azure_devops.organization)"
        )
        sub.add_argument("--project", help="Azure DevOps project (azure_devops.project)")
        return sub

    setup = add(actions, "setup", SETUP_HELP, _cmd_setup)
    setup.add_argument(
        "--prefix", help="environment name prefix (azure_devops.environments.prefix)"
    )
    setup.add_argument(
        "--pipeline-id",
        type=int,
        metavar="ID",
        help="the model-deploy pipeline's id (definitionId in its URL), authorised on both "
        "environments (azure_devops.environments.pipeline_id)",
    )

    approvals = actions.add_parser("approvals", help="approvals waiting on pipeline runs")
    decisions = approvals.add_subparsers(dest="approvals_action", metavar="ACTION", required=True)
    listing = add(decisions, "list", "list approvals (default: pending ones)", _cmd_list)
    listing.add_argument(
        "--state",
        default="pending",
        choices=["pending", "approved", "rejected", "canceled", "timedOut", "completed", "all"],
    )
    listing.add_argument("--top", type=int, help="at most this many approvals")
    for name, handler in (("approve", _cmd_approve), ("reject", _cmd_reject)):
        sub = add(decisions, name, f"{name} a pending approval", handler)
        sub.add_argument("approval_id", metavar="ID", help="the approval id (see approvals list)")
        sub.add_argument("--comment", required=True, help="why (kept in the run's history)")


# -- helpers ------------------------------------------------------------------------------------


def _load_config(path: str | None) -> BridgeConfig:
    from bridge.settings.bridge_config import load_config

    return load_config(path)


def environments_settings(config: BridgeConfig) -> EnvironmentsSettings:
    """``azure_devops.environments`` of bridge.yaml ."""
    settings = getattr(config.azure_devops, "environments", None)
    if settings is None:
        raise UserError(
            "azure_devops.environments is not set: add prefix, pipeline_id (model-deploy's) "
            "and production_approval (approvers, minimum_approvers, timeout_minutes, "
            "instructions) to bridge.yaml"
        )
    return settings


def _project(args: argparse.Namespace, config: BridgeConfig) -> tuple[str, str]:
    ado = config.azure_devops
    organization = args.organization or (ado.organization if ado else None)
    project = args.project or (ado.project if ado else None)
    return (
        require(organization, "azure_devops.organization", "--organization"),
        require(project, "azure_devops.project", "--project"),
    )


def _client(
    organization: str, reporter: Reporter, environ: Mapping[str, str] | None = None
) -> AzureDevOpsClient:
    from bridge.azure_devops.client import AzureDevOpsClient
    from bridge.azure_devops.credentials import credential_from_environ

    credential = credential_from_environ(os.environ if environ is None else environ)
    reporter.add_secret_source(credential.secrets)
    return AzureDevOpsClient(organization, credential)


# -- commands -----------------------------------------------------------------------------------


def _cmd_setup(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.ado.setup import SetupParams, setup_environments

    config = _load_config(args.config)
    organization, project = _project(args, config)
    params = validated(
        SetupParams.from_settings,
        {
            "settings": environments_settings(config),
            "organization": organization,
            "project": project,
            "prefix": args.prefix,
            "pipeline_id": args.pipeline_id,
            "dry_run": args.dry_run,
        },
    )
    client = None if args.dry_run else _client(organization, reporter)
    result = setup_environments(params, client=client, reporter=reporter)
    reporter.result(result.model_dump(mode="json"))
    return 0


def _cmd_list(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.ado.setup import ApprovalsListParams, list_approvals

    organization, project = _project(args, _load_config(args.config))
    params = validated(
        ApprovalsListParams,
        {
            "organization": organization,
            "project": project,
            "state": args.state,
            "top": args.top,
            "dry_run": args.dry_run,
        },
    )
    client = None if args.dry_run else _client(organization, reporter)
    result = list_approvals(params, client=client, reporter=reporter)
    reporter.result(result.model_dump(mode="json"))
    return 0


def _decision(args: argparse.Namespace, reporter: Reporter, approve: bool) -> int:
    from bridge.ado import setup as ado_setup

    organization, project = _project(args, _load_config(args.config))
    params = validated(
        ado_setup.ApprovalDecisionParams,
        {
            "organization": organization,
            "project": project,
            "approval_id": args.approval_id,
            "comment": args.comment,
            "dry_run": args.dry_run,
        },
    )
    client = None if args.dry_run else _client(organization, reporter)
    decide = ado_setup.approve if approve else ado_setup.reject
    result = decide(params, client=client, reporter=reporter)
    reporter.result(result.model_dump(mode="json"))
    return 0


def _cmd_approve(args: argparse.Namespace, reporter: Reporter) -> int:
    return _decision(args, reporter, approve=True)


def _cmd_reject(args: argparse.Namespace, reporter: Reporter) -> int:
    return _decision(args, reporter, approve=False)
