"""``smbridge registry latest|describe|approve|reject``: the SageMaker Model Registry.

Argument parsing and rendering only; each handler calls one function of
:mod:`bridge.registry.operations`.
"""

from __future__ import annotations

import argparse
from typing import Any

from bridge.cli.common import (
    add_actions,
    add_command,
    registry_region,
    report_result,
    require,
    validated,
)
from bridge.core.output import Reporter
from bridge.core.plan import render_plan

USES = ("config", "aws", "dry_run")
STATUSES = ["Approved", "Rejected", "PendingManualApproval", "any"]


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    actions = add_actions(parser)
    latest = add_command(
        actions, "latest", "the newest version of a group (by creation time)", _cmd_latest,
        uses=USES,
    )  # fmt: skip
    latest.add_argument("--group", help="model package group (default: model_package_group)")
    latest.add_argument(
        "--status",
        default="Approved",
        choices=STATUSES,
        help="only versions with this approval status (default: Approved; any: all)",
    )
    describe = add_command(actions, "describe", "one model package", _cmd_describe, uses=USES)
    describe.add_argument("arn", metavar="ARN", help="the model package (version) ARN")
    for action, status in (("approve", "Approved"), ("reject", "Rejected")):
        text = f"set a model package {status}, recording who and why"
        sub = add_command(actions, action, text, _cmd_set_status, uses=USES)
        sub.set_defaults(status=status)
        sub.add_argument("arn", metavar="ARN", help="the model package (version) ARN")
        sub.add_argument("--comment", required=True, help="why (recorded in the package)")
        sub.add_argument(
            "--approver", help="who (default: the Azure DevOps requester or AWS identity)"
        )


def _clients(args: argparse.Namespace, reporter: Reporter, region: str | None) -> Any:
    from bridge.cli.clients import aws_clients
    from bridge.cli.common import load_config

    return aws_clients(args, load_config(args), reporter, region=region)


def _cmd_latest(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.cli.clients import aws_clients
    from bridge.cli.common import load_config
    from bridge.registry import operations as model_registry

    config = load_config(args)
    group = require(args.group or config.model_package_group, "model_package_group", "--group")
    params = validated(
        model_registry.LatestPackageParams,
        {"group": group, "status": None if args.status == "any" else args.status},
        flags={"group": "--group", "status": "--status"},
    )
    if args.dry_run:
        return render_plan(reporter, model_registry.plan_latest(params))
    clients = aws_clients(args, config, reporter, region=registry_region(args, config))
    return report_result(
        reporter, model_registry.latest(params, clients=clients, reporter=reporter)
    )


def _cmd_describe(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.registry import operations as model_registry

    params = model_registry.DescribePackageParams(arn=args.arn)
    if args.dry_run:
        return render_plan(reporter, model_registry.plan_describe(params))
    clients = _clients(args, reporter, model_registry.parse_arn(params.arn).region)
    result = model_registry.describe(params, clients=clients, reporter=reporter)
    return report_result(reporter, result)


def _cmd_set_status(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.registry import operations as model_registry

    fields = {
        "arn": args.arn,
        "status": args.status,
        "comment": args.comment,
        "approver": args.approver,
    }
    params = validated(model_registry.SetStatusParams, fields, flags={"comment": "--comment"})
    if args.dry_run:
        return render_plan(reporter, model_registry.plan_set_status(params))
    clients = _clients(args, reporter, model_registry.parse_arn(params.arn).region)
    result = model_registry.set_status(params, clients=clients, reporter=reporter)
    return report_result(reporter, result)
