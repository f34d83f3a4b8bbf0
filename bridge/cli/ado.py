"""``smbridge ado …``: Azure DevOps environments (Exclusive Lock and production Approval checks,
the model-deploy pipeline's permission on them), and approvals.

Argument parsing and rendering only; each handler calls one function of bridge/ado/setup.py.
No AWS option here (``ado`` makes no AWS call). Nothing heavy is imported at module level.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Mapping
from typing import Any

from bridge.cli import common
from bridge.cli.common import add_actions, add_command, load_config, require, validated
from bridge.core.output import Reporter
from bridge.errors import UserError, exit_codes_epilog

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
USES = ("config", "dry_run")
STATES = ["pending", "approved", "rejected", "canceled", "timedOut", "completed", "all"]


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    """``smbridge ado setup`` and ``smbridge ado approvals list|approve|reject``."""
    actions = add_actions(parser)

    def add(group: Any, action: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        sub = add_command(group, action, help_text, handler, uses=USES, epilog=ADO_EXIT_CODES)
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
    approvals.description = "approvals waiting on pipeline runs"
    decisions = add_actions(approvals, dest="approvals_action")
    listing = add(decisions, "list", "list approvals (default: pending ones)", _cmd_list)
    listing.add_argument(
        "--state",
        default="pending",
        choices=STATES,
        help="only approvals in this state (default: pending; all: every one)",
    )
    listing.add_argument("--top", type=int, metavar="N", help="at most this many approvals")
    for action, handler in (("approve", _cmd_approve), ("reject", _cmd_reject)):
        sub = add(decisions, action, f"{action} a pending approval", handler)
        sub.add_argument(
            "approval_id",
            metavar="ID",
            type=approval_id,
            help="the approval id, a UUID (see smbridge ado approvals list)",
        )
        sub.add_argument("--comment", required=True, help="why (kept in the run's history)")


def add_ado_commands(commands: Any, common: Any = None) -> None:
    """Deprecated: ``smbridge ado`` is wired in by bridge/cli/app.py. Registers ``ado`` under
    ``commands`` (an ``add_subparsers()`` object); ``common`` is ignored."""
    configure(commands.add_parser("ado", help="Azure DevOps: environments, approvals"), "ado")


def approval_id(value: str) -> str:
    """argparse type of ``ID``: a UUID, or an error naming the argument (not a model field)."""
    try:
        uuid.UUID(value.strip())
    except ValueError:
        from bridge.errors import shown

        raise argparse.ArgumentTypeError(
            f"{shown(value)} is not an approval id: expected a UUID like "
            "3b3db741-9d03-4e32-a7c0-6c3dfc2013c1 (see smbridge ado approvals list)"
        ) from None
    return value.strip()


# -- helpers ------------------------------------------------------------------------------------


def environments_settings(config: Any) -> Any:
    """``azure_devops.environments`` of bridge.yaml ."""
    settings = getattr(config.azure_devops, "environments", None)
    if settings is None:
        raise UserError(
            "azure_devops.environments is not set: add prefix, pipeline_id (model-deploy's) "
            "and production_approval (approvers, minimum_approvers, timeout_minutes, "
            "instructions) to bridge.yaml"
        )
    return settings


def _project(args: argparse.Namespace, config: Any) -> tuple[str, str]:
    ado = config.azure_devops
    organization = args.organization or (ado.organization if ado else None)
    project = args.project or (ado.project if ado else None)
    return (
        require(organization, "azure_devops.organization", "--organization"),
        require(project, "azure_devops.project", "--project"),
    )


def _client(organization: str, reporter: Reporter, environ: Mapping[str, str] | None = None) -> Any:
    from bridge.ado.setup import connect

    return connect(organization, reporter=reporter, environ=environ)


# -- commands -----------------------------------------------------------------------------------


def _cmd_setup(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.ado.setup import SetupParams, setup_environments

    config = load_config(args)
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
        flags={
            "environment_prefix": "--prefix",
            "prefix": "--prefix",
            "pipeline_id": "--pipeline-id",
        },
    )
    client = None if args.dry_run else _client(organization, reporter)
    result = setup_environments(params, client=client, reporter=reporter)
    return common.report_result(reporter, result, json_mode=True)


def _cmd_list(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.ado.setup import ApprovalsListParams, list_approvals

    organization, project = _project(args, load_config(args))
    params = validated(
        ApprovalsListParams,
        {
            "organization": organization,
            "project": project,
            "state": args.state,
            "top": args.top,
            "dry_run": args.dry_run,
        },
        flags={"top": "--top", "state": "--state"},
    )
    client = None if args.dry_run else _client(organization, reporter)
    result = list_approvals(params, client=client, reporter=reporter)
    return common.report_result(reporter, result, json_mode=True)


def _decision(args: argparse.Namespace, reporter: Reporter, approve: bool) -> int:
    from bridge.ado import setup as ado_setup

    organization, project = _project(args, load_config(args))
    params = validated(
        ado_setup.ApprovalDecisionParams,
        {
            "organization": organization,
            "project": project,
            "approval_id": args.approval_id,
            "comment": args.comment,
            "dry_run": args.dry_run,
        },
        flags={"approval_id": "ID", "comment": "--comment"},
    )
    client = None if args.dry_run else _client(organization, reporter)
    decide = ado_setup.approve if approve else ado_setup.reject
    result = decide(params, client=client, reporter=reporter)
    return common.report_result(reporter, result, json_mode=True)


def _cmd_approve(args: argparse.Namespace, reporter: Reporter) -> int:
    return _decision(args, reporter, approve=True)


def _cmd_reject(args: argparse.Namespace, reporter: Reporter) -> int:
    return _decision(args, reporter, approve=False)
