"""``smbridge registry latest|describe|approve|reject``: the SageMaker Model Registry.

Argument parsing and rendering only; each handler calls one function of
:mod:`bridge.registry.operations`.
"""

from __future__ import annotations

import argparse
from typing import Any

from bridge.cli.common import add_actions, add_command, planned, registry_region, require
from bridge.core.output import Reporter

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


def _package_arn(arn: str) -> Any:
    """The ARN's parts, checked offline; a malformed one is an error naming ``ARN``."""
    from bridge.registry.operations import parse_arn

    return parse_arn(arn, flag="ARN")


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
    status = None if args.status == "any" else args.status
    if args.dry_run:
        from bridge.core.plan import Plan, PlannedStep, render_plan

        listing = {
            "ModelPackageGroupName": group,
            "ModelApprovalStatus": status,
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            "MaxResults": 1,
        }
        return render_plan(
            reporter,
            Plan(
                f"AWS calls registry latest would make for {group}",
                [
                    PlannedStep("sagemaker", "ListModelPackages", listing),
                    PlannedStep("sagemaker", "DescribeModelPackage", {}, "on the one found"),
                ],
            ),
        )
    clients = aws_clients(args, config, reporter, region=registry_region(args, config))
    reporter.result(model_registry.latest(group, status=status, clients=clients, reporter=reporter))
    return 0


def _cmd_describe(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.registry import operations as model_registry

    arn = _package_arn(args.arn)
    if args.dry_run:
        return planned(
            reporter,
            "AWS calls registry describe would make",
            "sagemaker",
            "DescribeModelPackage",
            {"ModelPackageName": arn.arn},
        )
    clients = _clients(args, reporter, arn.region)
    reporter.result(model_registry.describe(args.arn, clients=clients, reporter=reporter))
    return 0


def _cmd_set_status(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.registry import operations as model_registry

    arn = _package_arn(args.arn)
    clients = None if args.dry_run else _clients(args, reporter, arn.region)
    result = model_registry.set_status(
        args.arn,
        args.status,
        comment=args.comment,
        approver=args.approver,
        clients=clients,
        reporter=reporter,
        dry_run=args.dry_run,
    )
    plan = result.pop("plan", None)
    if plan is not None:
        from bridge.core.plan import render_plan

        return render_plan(reporter, plan)
    reporter.result(result)
    return 0
