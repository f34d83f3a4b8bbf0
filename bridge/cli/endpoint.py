"""``smbridge endpoint test``: invoke a SageMaker endpoint with real held-out rows and check the
answers (status, shape, range, accuracy, latency). Argument parsing and rendering only; the work
is :mod:`bridge.deploy.endpoint_test`.
"""

from __future__ import annotations

import argparse

from bridge.cli.common import add_actions, add_command, planned
from bridge.core.output import Reporter
from bridge.errors import UserError

TEST_HELP = "invoke an endpoint with real sample rows and check the answers"


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    actions = add_actions(parser)
    test = add_command(actions, "test", TEST_HELP, _cmd_test, uses=("config", "aws", "dry_run"))
    test.add_argument("--endpoint", required=True, metavar="NAME", help="the endpoint's name")
    test.add_argument(
        "--stage-config",
        metavar="FILE",
        help="model-deploy/config/<stage>.json: the stage's region, role and test files",
    )
    test.add_argument(
        "--payload", metavar="FILE", help="rows to send (default: from --stage-config)"
    )
    test.add_argument(
        "--expect", metavar="FILE", help="expectations JSON (default: from --stage-config)"
    )
    test.add_argument("--junit", metavar="FILE", help="also write the results as JUnit XML here")


def _cmd_test(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.deploy.endpoint_test import (
        EndpointTestFailed,
        load_expectations,
        load_payload,
        run_endpoint_test,
        write_junit,
    )
    from bridge.settings.stage import load_stage_config

    stage = load_stage_config(args.stage_config) if args.stage_config else None
    payload = args.payload or (stage.endpoint_test.payload if stage else None)
    if not payload:
        raise UserError("--payload is not set: pass it or --stage-config")
    rows = load_payload(payload)
    expect = load_expectations(args.expect or (stage.endpoint_test.expect if stage else None))
    if args.dry_run:
        return planned(
            reporter,
            f"AWS calls endpoint test would make on {args.endpoint}",
            "sagemaker-runtime",
            "InvokeEndpoint",
            {"EndpointName": args.endpoint, "ContentType": expect.content_type},
            f"{len(rows)} times, once per payload row",
        )
    from bridge.cli.clients import aws_clients
    from bridge.cli.common import load_config
    from bridge.deploy.operations import stage_clients

    base = aws_clients(args, load_config(args), reporter)
    clients = stage_clients(stage, base) if stage else base
    with reporter.group(f"Endpoint test: {args.endpoint} ({len(rows)} rows)"):
        report = run_endpoint_test(
            clients.client("sagemaker-runtime"), args.endpoint, rows, expect, reporter=reporter
        )
    if args.junit:
        write_junit(report, args.junit)
        reporter.info(f"JUnit results: {args.junit}")
    reporter.result(report.model_dump())
    if not report.passed:
        failed = [c.name for c in report.checks if not c.passed]
        raise EndpointTestFailed(f"endpoint {args.endpoint} failed: {'; '.join(failed)}")
    return 0
