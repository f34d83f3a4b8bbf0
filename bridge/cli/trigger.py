"""``smbridge trigger simulate|replay|package``: the approval trigger (Lambda), run locally.

Argument parsing and rendering only; the work is in :mod:`bridge.trigger` (``local``,
``package``). The trigger's modules need aws-lambda-powertools (the ``trigger`` extra); they are
imported when a command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from typing import Any

from bridge.cli.common import add_actions, add_command, planned
from bridge.core.output import Reporter, agent_safe_stream
from bridge.core.plan import AZURE_DEVOPS, Plan, PlannedStep, render_plan
from bridge.errors import UserError

TRIGGER_ENVIRONMENT = """

Settings come from the same environment variables as the Lambda: SMBRIDGE_ROUTES (or
--routes, or SMBRIDGE_ROUTES_PARAMETER), SMBRIDGE_ADO_SECRET_ARN (or SMBRIDGE_ADO_PAT for
local runs), SMBRIDGE_IDEMPOTENCY_TABLE (without it, duplicates are only caught in-process),
SMBRIDGE_REGISTRY_ACCOUNTS (model packages of other accounts are refused), SMBRIDGE_MAX_ATTEMPTS,
SMBRIDGE_IDEMPOTENCY_TTL_SECONDS."""
ROUTES_HELP = "routing JSON file (default: SMBRIDGE_ROUTES)"
DRY_RUN_ROUTES = (
    "--dry-run needs the routes locally: --routes FILE or SMBRIDGE_ROUTES "
    "(a dry run reads no SSM parameter)"
)
# infra/trigger.yaml: Runtime python3.12, Architectures [arm64]
LAMBDA_PLATFORM = "manylinux2014_aarch64"
LAMBDA_PYTHON = "3.12"


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    actions = add_actions(parser)

    def add(action: str, text: str, handler: Any, uses: tuple[str, ...]) -> Any:
        # `package` runs no trigger: the settings paragraph is not about it
        description = text if action == "package" else text + TRIGGER_ENVIRONMENT
        return add_command(actions, action, text, handler, uses=uses, description=description)

    simulate = add(
        "simulate",
        "run the trigger locally on an event file; print the request",
        _cmd_simulate,
        ("config", "aws", "dry_run"),
    )
    simulate.add_argument(
        "--event", required=True, metavar="FILE", help="EventBridge event JSON file"
    )
    simulate.add_argument("--routes", metavar="FILE", help=ROUTES_HELP)
    replay = add(
        "replay",
        "re-drive dead-lettered events through the trigger (idempotent)",
        _cmd_replay,
        ("config", "aws", "dry_run"),
    )
    replay.add_argument("--queue-url", required=True, metavar="URL", help="the trigger's DLQ URL")
    replay.add_argument("--routes", metavar="FILE", help=ROUTES_HELP)
    replay.add_argument(
        "--max-messages",
        type=int,
        default=100,
        metavar="N",
        help="stop after this many messages (default: 100)",
    )
    package = add("package", "build the trigger Lambda's zip", _cmd_package, ("dry_run",))
    package.add_argument(
        "--out",
        default="dist/smbridge-trigger.zip",
        metavar="FILE",
        help="zip to write (default: dist/smbridge-trigger.zip)",
    )
    package.add_argument(
        "--mode",
        choices=["pip", "environment"],
        default="pip",
        help="pip: wheels for --platform from PyPI (default); environment: copy this Python's "
        "packages (offline; runs only where the platform is this machine's)",
    )
    package.add_argument(
        "--platform",
        default=LAMBDA_PLATFORM,
        help=f"the Lambda's wheel platform (default: {LAMBDA_PLATFORM}, arm64 Linux)",
    )
    package.add_argument(
        "--python-version",
        default=LAMBDA_PYTHON,
        metavar="X.Y",
        help=f"the Lambda's Python (default: {LAMBDA_PYTHON})",
    )


# -- helpers ------------------------------------------------------------------------------------


def _trigger_settings(args: argparse.Namespace, *, need_credential: bool) -> Any:
    from pathlib import Path

    from bridge.trigger.settings import TriggerSettings

    environ = dict(os.environ)
    if args.routes:
        path = Path(args.routes)
        if not path.is_file():
            raise UserError(f"--routes {args.routes}: file not found")
        try:
            environ["SMBRIDGE_ROUTES"] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(
                f"--routes {args.routes}: byte {exc.object[exc.start]:#04x} at offset "
                f"{exc.start} is not UTF-8; save the routes as UTF-8 JSON"
            ) from None
    return TriggerSettings.from_environ(environ, require_credential=need_credential)


def _local_routes(args: argparse.Namespace) -> Any:
    """The routing table a dry run checks against (``--routes`` or ``SMBRIDGE_ROUTES``)."""
    from bridge.trigger.routing import parse_routes

    if not args.routes and not os.environ.get("SMBRIDGE_ROUTES"):
        raise UserError(DRY_RUN_ROUTES)
    settings = _trigger_settings(args, need_credential=False)
    if not settings.routes:
        raise UserError(DRY_RUN_ROUTES)
    return parse_routes(settings.routes, source="--routes" if args.routes else "SMBRIDGE_ROUTES")


def _trigger_module(name: str) -> Any:
    """Import a trigger module; its logs (powertools JSON lines) go to stderr in the CLI, so
    stdout stays for the result."""
    import importlib

    try:
        module = importlib.import_module(f"bridge.trigger.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != "aws_lambda_powertools":
            raise
        raise UserError(
            "the trigger needs aws-lambda-powertools: pip install 'smbridge[trigger]'"
        ) from None
    from bridge.trigger.handler import logger

    logger.registered_handler.stream = agent_safe_stream(sys.stderr)  # neutral on an agent
    return module


def _trigger_runtime(args: argparse.Namespace, reporter: Reporter, clients: Any = None) -> Any:
    from bridge.cli.clients import aws_clients
    from bridge.cli.common import load_config

    build_runtime = _trigger_module("handler").build_runtime
    settings = _trigger_settings(args, need_credential=True)
    clients = clients or aws_clients(args, load_config(args), reporter)
    runtime = build_runtime(settings, session=clients.session())
    # whatever the credential holds (a PAT from the environment or Secrets Manager, a token)
    reporter.add_secret_source(runtime.credential.secrets)
    return runtime


def _print_requests(reporter: Reporter, requests: list[dict[str, Any]]) -> None:
    for request in requests:
        reporter.info(f"{request['method']} {request['url']} -> HTTP {request['status']}")
        if request["body"] is not None:
            reporter.info(json.dumps(request["body"], indent=2))


def this_platform() -> tuple[str, str, str]:
    """(system, machine, python X.Y) of this interpreter, machine as wheel tags spell it."""
    machine = platform.machine().lower()
    machine = {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64"}.get(machine, machine)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return sys.platform, machine, version


def platform_mismatches(wheel_platform: str, python_version: str) -> list[str]:
    """How this Python differs from the Lambda's (``--platform``, ``--python-version``)."""
    system, machine, version = this_platform()
    target_machine = next(
        (m for m in ("aarch64", "x86_64") if wheel_platform.endswith(m)), wheel_platform
    )
    problems = []
    if system != "linux":
        problems.append(f"this is {system}, the Lambda runs Linux")
    if machine != target_machine:
        problems.append(f"this machine is {machine}, the Lambda {target_machine}")
    if version != python_version:
        problems.append(f"this is Python {version}, the Lambda's is {python_version}")
    return problems


# -- commands -----------------------------------------------------------------------------------


def _cmd_simulate(args: argparse.Namespace, reporter: Reporter) -> int:
    local = _trigger_module("local")

    event = local.read_event(args.event)
    if args.dry_run:
        routes = _local_routes(args)
        # the run's own check first: a package of an account outside SMBRIDGE_REGISTRY_ACCOUNTS
        # is refused by the handler, so the dry run must not show it starting a run
        accounts = _trigger_settings(args, need_credential=False).registry_account_ids
        _trigger_module("events").parse_event(event, registry_accounts=accounts)
        return render_plan(reporter, _event_plan(local.plan_event(event, routes)))
    runtime = _trigger_runtime(args, reporter)
    try:
        report = local.simulate(event, runtime)
    except local.SimulationFailed as exc:
        _print_requests(reporter, exc.report["requests"])
        reporter.result(exc.report)
        raise
    _print_requests(reporter, report["requests"])
    reporter.info(
        f"result: {report['status']}" + (f", run {report['runId']}" if "runId" in report else "")
    )
    reporter.result(report)
    return 0


def _event_plan(decision: dict[str, Any]) -> Plan:
    """The trigger's decision on one event (:func:`bridge.trigger.local.plan_event`) as a plan."""
    if decision["action"] != "start":
        return Plan(f"{decision['action']}: {decision['reason']}")
    request = decision["request"]
    step = PlannedStep(
        AZURE_DEVOPS,
        f"{request['method']} {request['url']}",
        request["body"],
        f"unless the ledger shows this approval of {decision['dedupe_key']['modelPackageArn']} "
        "already has a run",
    )
    return Plan(f"start: route {decision['route']}", [step])


def _cmd_replay(args: argparse.Namespace, reporter: Reporter) -> int:
    local = _trigger_module("local")

    if args.dry_run:
        routes = _local_routes(args)
        groups = sorted(routes.routes)
        steps = [
            PlannedStep(
                "sqs",
                "ReceiveMessage",
                {"QueueUrl": args.queue_url, "MaxNumberOfMessages": args.max_messages},
                "until the queue is empty or the maximum is reached",
            ),
            PlannedStep(
                "trigger",
                "handle",
                {"routes": groups, "default_route": routes.default is not None},
                "on each message",
            ),
            PlannedStep("sqs", "DeleteMessage", {"QueueUrl": args.queue_url}, "each one handled"),
        ]
        return render_plan(reporter, Plan("calls trigger replay would make", steps))
    from bridge.cli.clients import aws_clients
    from bridge.cli.common import load_config

    clients = aws_clients(args, load_config(args), reporter)
    runtime = _trigger_runtime(args, reporter, clients)
    sqs = clients.client("sqs")
    report = local.replay(sqs, args.queue_url, runtime, max_messages=args.max_messages)
    for item in report.results:
        reporter.info(json.dumps(item, sort_keys=True))
    reporter.info(
        f"replayed {report.received} message(s): {report.handled} handled and deleted, "
        f"{report.kept} kept on purpose (no route, or in progress: see each reason), "
        f"{report.failed} failed and kept"
    )
    reporter.result(report.__dict__)
    return 0 if report.failed == 0 else 3


def _cmd_package(args: argparse.Namespace, reporter: Reporter) -> int:
    from pathlib import Path

    mismatches = platform_mismatches(args.platform, args.python_version)
    if args.mode == "environment" and mismatches:
        reporter.warning(
            f"--mode environment copies this Python's packages, but {'; '.join(mismatches)} "
            f"(--platform {args.platform}, --python-version {args.python_version}; "
            "infra/trigger.yaml: python3.12 on arm64): compiled dependencies such as "
            "pydantic-core will not import there. This zip is for local checks; build one to "
            "deploy with --mode pip (the default)"
        )
    matches = args.mode == "pip" or not mismatches
    if args.dry_run:
        arguments = {
            "out": args.out,
            "mode": args.mode,
            "platform": args.platform,
            "python_version": args.python_version,
            "platform_matches": matches,
        }
        return planned(reporter, "trigger package would build a zip", "local", "build", arguments)
    from bridge.trigger.package import build_package

    result = build_package(
        Path(args.out), mode=args.mode, platform=args.platform, python_version=args.python_version
    )
    reporter.info(
        f"wrote {result.path}: {result.size_bytes / 1e6:.1f} MB zipped, "
        f"{result.unpacked_bytes / 1e6:.1f} MB unpacked, {result.files} files, "
        f"sha256 {result.sha256}"
    )
    if not result.compiled:
        reporter.warning(
            f"no bytecode in the zip: build with Python {args.python_version} for faster cold "
            "starts (Lambda cannot write .pyc files)"
        )
    reporter.output_variable("triggerPackage", str(result.path))
    reporter.result({**result.__dict__, "path": str(result.path), "platform_matches": matches})
    return 0
