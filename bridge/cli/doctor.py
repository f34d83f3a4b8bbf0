"""``smbridge doctor``: run the set-up checks, read-only, and say for each ``ok`` or what to fix.

Argument parsing and rendering only; the checks are :mod:`bridge.doctor`. Exit code 0 when no
check failed (skipped ones do not count), 4 when one did (``DoctorFailed``, an
``ExecutionFailed``: the code of a failed execution or endpoint test). With ``--output json``,
exactly one document ``{"ok": …, "checks": [{"name", "status", "detail", "fix"}]}``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from bridge.cli.common import command, validated
from bridge.core.output import Reporter
from bridge.errors import CredentialsError, UserError

DOCTOR_HELP = "check the set-up, read-only: for each check, ok or what to fix"
DESCRIPTION = (
    DOCTOR_HELP
    + ": placeholders left in bridge.yaml and model-deploy/config/*.json, the AWS identity, the "
    "job's OIDC token (on an agent), the automation and trigger stacks, the trigger's routes and "
    "their pipelines' parameters, the environments with their checks and permissions, the "
    "service connections the stage configs name, and the trigger's secret. Only reads: "
    "Describe/Get/List calls and GET requests (plus, on an agent, the OIDC token request, and "
    "with a role the credential exchange AssumeRole or AssumeRoleWithWebIdentity). Exit code 4 "
    "when a check fails."
)
STAGE_CONFIGS = "model-deploy/config"
STATUS_LABELS = {"ok": "ok  ", "fail": "FAIL", "skip": "skip"}


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    command(parser, _cmd_doctor, uses=("config", "aws", "dry_run"), description=DESCRIPTION)
    parser.add_argument(
        "--routes",
        metavar="FILE",
        help="the trigger's routing JSON (default: SMBRIDGE_ROUTES, SMBRIDGE_ROUTES_PARAMETER, "
        "else the trigger stack's RoutesJson or RoutesParameterName)",
    )
    parser.add_argument(
        "--automation-stack",
        default="smbridge-automation",
        metavar="NAME",
        help="the stack of infra/automation-account.yaml (default: smbridge-automation)",
    )
    parser.add_argument(
        "--trigger-stack",
        default="smbridge-trigger",
        metavar="NAME",
        help="the stack of infra/trigger.yaml (default: smbridge-trigger)",
    )
    parser.add_argument(
        "--ado-secret",
        metavar="ARN",
        help="the trigger's Azure DevOps secret, name or ARN (default: SMBRIDGE_ADO_SECRET_ARN, "
        "else the trigger stack's AzureDevOpsSecretArn)",
    )


def _effective_config(args: argparse.Namespace) -> tuple[Any, dict[str, str]]:
    """bridge.yaml with the flags applied as the commands apply them, and where each value set
    came from (file, variable or flag)."""
    from bridge.cli.common import load_config
    from bridge.cli.config import effective_settings

    config = load_config(args)
    sources = {
        row["key"]: row["from"] or config.source
        for row in effective_settings(args, config)
        if row["source"] != "default"
    }
    aws: dict[str, Any] = {}
    if args.role_arn:
        aws["role_arn"] = args.role_arn
    if args.no_role:
        aws.update(role_arn=None, web_identity=False)
    if args.profile:
        aws["profile"] = args.profile
    update: dict[str, Any] = {"aws": config.aws.model_copy(update=aws)} if aws else {}
    if args.region:
        update["region"] = args.region
    return (config.model_copy(update=update) if update else config), sources


def _params(args: argparse.Namespace) -> Any:
    from bridge.core.agent import on_agent
    from bridge.doctor.operations import DoctorParams

    config, sources = _effective_config(args)
    fields: dict[str, Any] = {
        "config": config,
        "config_sources": sources,
        "stage_configs": tuple(str(p) for p in sorted(Path(STAGE_CONFIGS).glob("*.json"))),
        "automation_stack": args.automation_stack,
        "trigger_stack": args.trigger_stack,
        "on_agent": on_agent(),
    }
    if args.routes:
        path = Path(args.routes)
        if not path.is_file():
            raise UserError(f"--routes {args.routes}: file not found")
        fields.update(routes_json=path.read_text(encoding="utf-8"), routes_source=args.routes)
    elif os.environ.get("SMBRIDGE_ROUTES"):
        fields.update(routes_json=os.environ["SMBRIDGE_ROUTES"], routes_source="SMBRIDGE_ROUTES")
    elif os.environ.get("SMBRIDGE_ROUTES_PARAMETER"):
        fields["routes_parameter"] = os.environ["SMBRIDGE_ROUTES_PARAMETER"]
    if args.ado_secret:
        fields.update(ado_secret=args.ado_secret, ado_secret_source="--ado-secret")
    elif os.environ.get("SMBRIDGE_ADO_SECRET_ARN"):
        fields.update(
            ado_secret=os.environ["SMBRIDGE_ADO_SECRET_ARN"],
            ado_secret_source="SMBRIDGE_ADO_SECRET_ARN",
        )
    flags = {
        "automation_stack": "--automation-stack",
        "trigger_stack": "--trigger-stack",
        "ado_secret": "--ado-secret",
    }
    return validated(DoctorParams, fields, flags=flags)


def _cmd_doctor(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.core.plan import render_plan
    from bridge.doctor import operations as doctor

    params = _params(args)
    if args.dry_run:
        return render_plan(reporter, doctor.plan(params))
    from bridge.cli.clients import aws_clients
    from bridge.cli.common import explain

    aws, aws_error = None, ""
    try:
        aws = aws_clients(args, params.config, reporter)
    except CredentialsError as exc:  # e.g. --web-identity off an agent: the checks say so
        aws_error = str(explain(exc, getattr(args, "aws_choice", None)))
    clients = doctor.connect(params, aws=aws, aws_error=aws_error, reporter=reporter)
    result = doctor.run(params, clients=clients, reporter=reporter)
    for check in result.checks:
        fix = f"; fix: {check.fix}" if check.fix else ""
        reporter.info(f"{STATUS_LABELS[check.status]} {check.name}: {check.detail}{fix}")
    reporter.result(result.model_dump(mode="json"))
    failed = [c.name for c in result.checks if c.status == "fail"]
    if failed:
        raise doctor.DoctorFailed(
            f"{len(failed)} of {len(result.checks)} checks failed: {', '.join(failed)}"
        )
    return 0
