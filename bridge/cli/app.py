"""``smbridge``: argument parsing and rendering only; every command calls one SDK function.

Heavy modules (boto3, pydantic, the SageMaker SDK) are imported inside the command handlers so
that ``smbridge --help`` starts fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from bridge import __version__
from bridge.cli.ado import add_ado_commands
from bridge.cli.common import add_command, require, validated
from bridge.core.agent import neutralize, on_agent
from bridge.core.output import Reporter, agent_safe_stream
from bridge.errors import BridgeError, UserError, exit_codes_epilog

if TYPE_CHECKING:
    from bridge.aws.session import AwsClients
    from bridge.settings.bridge_config import BridgeConfig

TRIGGER_ENVIRONMENT = """

Settings come from the same environment variables as the Lambda: SMBRIDGE_ROUTES (or
--routes, or SMBRIDGE_ROUTES_PARAMETER), SMBRIDGE_ADO_SECRET_ARN (or SMBRIDGE_ADO_PAT for
local runs), SMBRIDGE_IDEMPOTENCY_TABLE (without it, duplicates are only caught in-process)."""

EXIT_CODES = exit_codes_epilog()


def _common_options(*, config_flag: str = "--config") -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument(
        config_flag,
        dest="config",
        default=os.environ.get("SMBRIDGE_CONFIG"),
        help="bridge.yaml to read (default: ./bridge.yaml if present; env SMBRIDGE_CONFIG)",
    )
    group.add_argument("--region", help="AWS region (default: bridge.yaml region, then AWS env)")
    group.add_argument("--profile", help="AWS profile of the default credential chain")
    group.add_argument("--role-arn", help="assume this role (e.g. in the automation account)")
    group.add_argument(
        "--web-identity",
        action="store_true",
        default=None,
        help="exchange the Azure DevOps job's OIDC token for the role's credentials",
    )
    group.add_argument(
        "--dry-run", action="store_true", help="print the AWS calls it would make; make none"
    )
    group.add_argument(
        "--output", choices=["text", "json"], default="text", help="json: one document on stdout"
    )
    group.add_argument("--debug", action="store_true", help="show tracebacks")
    return common


class _Parser(argparse.ArgumentParser):
    """argparse prints its own messages (a usage error echoes the bad value): on an agent they
    are neutralised like every other line. Sub-commands use the same class."""

    def _print_message(self, message: str, file: Any = None) -> None:
        super()._print_message(neutralize(message) if message and on_agent() else message, file)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="smbridge",
        description="The bridge between Azure DevOps and Amazon SageMaker.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"smbridge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common_options()

    def add_leaf(
        parent: Any,
        name: str,
        help_text: str,
        handler: Callable[..., int],
        parents: argparse.ArgumentParser = common,
        description: str | None = None,
    ) -> argparse.ArgumentParser:
        return add_command(
            parent,
            name,
            help_text,
            handler,
            parents=parents,
            epilog=EXIT_CODES,
            description=description,
        )

    pipeline = commands.add_parser("pipeline", help="SageMaker pipelines (model build)")
    actions = pipeline.add_subparsers(dest="action", metavar="ACTION", required=True)

    def add(name: str, help_text: str, handler: Callable[..., int]) -> argparse.ArgumentParser:
        return add_leaf(actions, name, help_text, handler)

    def definition_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--definition", help="module:function or .json (pipeline.definition)")
        sub.add_argument("--pipeline-name", help="pipeline name (pipeline.name)")
        sub.add_argument("--execution-role-arn", help="pipeline.execution_role_arn")
        sub.add_argument("--bucket", help="artifact bucket for code (pipeline.artifact_bucket)")
        sub.add_argument("--model-package-group", help="model_package_group")
        sub.add_argument("--staging-dir", help="keep staged code bundles here (default: temp)")

    build = add("build", "build the definition offline (no AWS call) and write it", _cmd_build)
    definition_options(build)
    build.add_argument("--out", help="write the definition JSON here (default: stdout summary)")

    upsert = add("upsert", "create or update the pipeline; no write when unchanged", _cmd_upsert)
    definition_options(upsert)
    upsert.add_argument("--description", help="pipeline.description")
    upsert.add_argument("--parallelism", type=int, help="max parallel steps (pipeline.parallelism)")

    start = add("start", "start an execution, optionally wait for it", _cmd_start)
    start.add_argument("--pipeline-name", help="pipeline name (pipeline.name)")
    start.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="pipeline parameter"
    )
    start.add_argument("--wait", action="store_true", help="follow the execution to its end")
    start.add_argument("--timeout", help="with --wait: stop the execution after this (e.g. 6h)")
    start.add_argument("--display-name", help="execution display name")
    start.add_argument("--client-request-token", help="idempotency token (default: from the run)")

    for name, text, handler in (
        ("status", "show an execution and its steps", _cmd_status),
        ("stop", "stop an execution", _cmd_stop),
    ):
        sub = add(name, text, handler)
        sub.add_argument("--execution-arn", help="the execution (default: latest of the pipeline)")
        sub.add_argument("--pipeline-name", help="pipeline name (pipeline.name)")

    prepare = add_leaf(
        commands,
        "prepare",
        "model-deploy's Prepare stage: validate and resolve the package, refuse unless "
        "Approved, render each stage's deployment parameters",
        _cmd_prepare,
    )
    source = prepare.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-package-arn", help="the model package version to deploy")
    source.add_argument("--group", help="a model package group: its newest Approved version")
    prepare.add_argument("--out", required=True, help="folder for <stage>.json files")
    prepare.add_argument(
        "--stage-config",
        action="append",
        help="stage config files (default: model-deploy/config/*.json)",
    )

    deploy = add_leaf(
        commands,
        "deploy",
        "deploy an Approved model package onto a stage (one CloudFormation stack, change sets)",
        _cmd_deploy,
        # --config is the stage config here (as in model-deploy.yml); bridge.yaml is optional.
        parents=_common_options(config_flag="--bridge-config"),
    )
    deploy.add_argument("--stage", required=True, help="stage name, e.g. staging")
    deploy.add_argument("--model-package-arn", required=True, help="the Approved version")
    deploy.add_argument(
        "--config", dest="stage_config", required=True, help="model-deploy/config/<stage>.json"
    )
    deploy.add_argument(
        "--templates-dir", default="model-deploy/templates", help="CloudFormation templates"
    )
    deploy.add_argument("--timeout", default="3h", help="stop waiting after this (default 3h)")

    registry_parser = commands.add_parser("registry", help="SageMaker Model Registry")
    registry_actions = registry_parser.add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    latest = add_leaf(registry_actions, "latest", "the newest version of a group", _cmd_latest)
    latest.add_argument("--group", help="model package group (default: model_package_group)")
    latest.add_argument(
        "--status",
        default="Approved",
        choices=["Approved", "Rejected", "PendingManualApproval", "any"],
    )
    describe_parser = add_leaf(registry_actions, "describe", "one model package", _cmd_describe)
    describe_parser.add_argument("arn")
    for name, status in (("approve", "Approved"), ("reject", "Rejected")):
        text = f"set a model package {status}, recording who and why"
        sub = add_leaf(registry_actions, name, text, _cmd_set_status)
        sub.set_defaults(status=status)
        sub.add_argument("arn")
        sub.add_argument("--comment", required=True, help="why (recorded in the package)")
        sub.add_argument(
            "--approver", help="who (default: the Azure DevOps requester or AWS identity)"
        )

    endpoint = commands.add_parser("endpoint", help="SageMaker endpoints")
    endpoint_actions = endpoint.add_subparsers(dest="action", metavar="ACTION", required=True)
    text = "invoke an endpoint with real sample rows and check the answers"
    endpoint_test = add_leaf(endpoint_actions, "test", text, _cmd_endpoint_test)
    endpoint_test.add_argument("--endpoint", required=True)
    endpoint_test.add_argument("--payload", help="rows to send (default: from --stage-config)")
    endpoint_test.add_argument("--expect", help="expectations JSON (default: from --stage-config)")
    endpoint_test.add_argument(
        "--stage-config", help="model-deploy/config/<stage>.json: region, role, test files"
    )
    endpoint_test.add_argument("--junit", help="write JUnit XML here")

    trigger = commands.add_parser("trigger", help="the approval trigger (Lambda)")
    trigger_actions = trigger.add_subparsers(dest="action", metavar="ACTION", required=True)

    def add_trigger(
        name: str, help_text: str, handler: Callable[..., int]
    ) -> argparse.ArgumentParser:
        return add_leaf(
            trigger_actions, name, help_text, handler, description=help_text + TRIGGER_ENVIRONMENT
        )

    simulate = add_trigger(
        "simulate", "run the trigger locally on an event file; print the request", _cmd_simulate
    )
    simulate.add_argument("--event", required=True, help="EventBridge event JSON file")
    simulate.add_argument("--routes", help="routing JSON file (default: SMBRIDGE_ROUTES)")
    replay = add_trigger(
        "replay", "re-drive dead-lettered events through the trigger (idempotent)", _cmd_replay
    )
    replay.add_argument("--queue-url", required=True, help="the trigger's DLQ URL")
    replay.add_argument("--routes", help="routing JSON file (default: SMBRIDGE_ROUTES)")
    replay.add_argument("--max-messages", type=int, default=100)
    package = add_trigger("package", "build the trigger Lambda's zip", _cmd_package)
    package.add_argument("--out", default="dist/smbridge-trigger.zip", help="zip to write")
    package.add_argument(
        "--mode",
        choices=["pip", "environment"],
        default="pip",
        help="pip: wheels for --platform from PyPI (default); environment: copy this Python's",
    )
    package.add_argument("--platform", default="manylinux2014_aarch64", help="Lambda arm64")
    package.add_argument("--python-version", default="3.12")

    add_ado_commands(commands, common)
    return parser


# -- helpers ------------------------------------------------------------------------------------


def _config(args: argparse.Namespace) -> BridgeConfig:
    from bridge.settings.bridge_config import load_config

    return load_config(args.config)


def _clients(
    args: argparse.Namespace,
    config: BridgeConfig,
    reporter: Reporter,
    *,
    region: str | None = None,
) -> AwsClients:
    from bridge.aws.session import AwsClients
    from bridge.cli.clients import aws_auth

    auth = aws_auth(
        config,
        region=region or args.region,
        role_arn=args.role_arn,
        web_identity=args.web_identity,
        profile=args.profile,
        reporter=reporter,
    )
    return AwsClients(auth)


def _checked_region(region: str | None) -> str | None:
    import re

    if region is not None and not re.fullmatch(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d", region):
        raise UserError(f"--region {region!r}: expected an AWS region like eu-west-1")
    return region


def _registry_region(args: argparse.Namespace, config: BridgeConfig) -> str | None:
    return config.model_registry.region or args.region or config.region


def _region(args: argparse.Namespace, config: BridgeConfig) -> str:
    region = args.region or config.region or os.environ.get("AWS_REGION")
    region = region or os.environ.get("AWS_DEFAULT_REGION")
    return require(region, "region", "--region")


def _pipeline_name(args: argparse.Namespace, config: BridgeConfig) -> str:
    return require(args.pipeline_name or config.pipeline.name, "pipeline.name", "--pipeline-name")


def _build_fields(args: argparse.Namespace, config: BridgeConfig) -> dict[str, Any]:
    p = config.pipeline
    return {
        "definition": args.definition or p.definition,
        "pipeline_name": _pipeline_name(args, config),
        "region": _region(args, config),
        "execution_role_arn": require(
            args.execution_role_arn or p.execution_role_arn,
            "pipeline.execution_role_arn",
            "--execution-role-arn",
        ),
        "bucket": require(args.bucket or p.artifact_bucket, "pipeline.artifact_bucket", "--bucket"),
        "model_package_group": require(
            args.model_package_group or config.model_package_group,
            "model_package_group",
            "--model-package-group",
        ),
        "code_prefix": p.code_prefix,
        "staging_dir": args.staging_dir,
    }


def _parse_params(pairs: Sequence[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--param {pair!r}: expected NAME=VALUE")
        result[name.strip()] = value
    return result


# -- commands -----------------------------------------------------------------------------------


def _planned(reporter: Reporter, text: str, **fields: Any) -> int:
    """A dry run's end: what would happen, as a line and as the JSON result; exit 0."""
    reporter.info(text)
    reporter.result({"status": "planned", **fields})
    return 0


def _cmd_build(args: argparse.Namespace, reporter: Reporter) -> int:
    from pathlib import Path

    from bridge.pipeline.operations import BuildParams, build_definition, describe_build

    config = _config(args)
    params = validated(BuildParams, _build_fields(args, config))
    built = build_definition(params)
    result = describe_build(params, built)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(built.definition_json, encoding="utf-8")
        result.output_file = args.out
    reporter.info(
        f"definition of {params.pipeline_name}: {result.definition_sha256[:12]}, "
        f"{result.size_bytes} bytes, {len(result.steps)} steps: {', '.join(result.steps)}"
    )
    for parameter in result.parameters:
        default = parameter.get("DefaultValue", "")
        reporter.info(f"  parameter {parameter['Name']} ({parameter['Type']}) = {default}")
    bundles: dict[str, int] = {}
    for upload in result.uploads:
        bundle = upload["s3_uri"].rsplit("/code/", 1)
        key = bundle[0] + "/code/" + bundle[1].split("/", 1)[0] if len(bundle) == 2 else bundle[0]
        bundles[key] = bundles.get(key, 0) + 1
    for bundle, count in bundles.items():
        reporter.info(f"  staged {bundle}/ ({count} file{'s' if count > 1 else ''})")
    if args.out:
        reporter.info(f"written to {args.out}")
    reporter.result(result.model_dump())
    return 0


def _cmd_upsert(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.pipeline.operations import UpsertParams, upsert_pipeline

    config = _config(args)
    p = config.pipeline
    params = validated(
        UpsertParams,
        {
            **_build_fields(args, config),
            "description": args.description if args.description is not None else p.description,
            "parallelism": args.parallelism or p.parallelism,
            "tags": dict(p.tags),
            "dry_run": args.dry_run,
        },
    )
    clients = None if args.dry_run else _clients(args, config, reporter)
    result = upsert_pipeline(params, clients=clients, reporter=reporter)
    reporter.result(result.model_dump())
    return 0


def _cmd_start(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.core.durations import parse_duration
    from bridge.pipeline.operations import StartParams, start_pipeline

    config = _config(args)
    timeout = parse_duration(args.timeout) if args.timeout else None
    if timeout and not args.wait:
        raise UserError("--timeout needs --wait")
    params = validated(
        StartParams,
        {
            "pipeline_name": _pipeline_name(args, config),
            "parameters": {**config.pipeline.parameters, **_parse_params(args.param)},
            "wait": args.wait,
            "timeout_seconds": timeout,
            "display_name": args.display_name,
            "client_request_token": args.client_request_token,
            "dry_run": args.dry_run,
        },
    )
    clients = None if args.dry_run else _clients(args, config, reporter)
    try:
        result = start_pipeline(params, clients=clients, reporter=reporter)
    except BridgeError as exc:
        reporter.result({"status": "error", "error": str(exc), "exit_code": exc.exit_code})
        raise
    reporter.result(result.model_dump())
    return 0


def _execution_command(args: argparse.Namespace, reporter: Reporter, func_name: str) -> int:
    from bridge.pipeline import operations as ops

    config = _config(args)
    params = ops.ExecutionParams(
        execution_arn=args.execution_arn,
        pipeline_name=None if args.execution_arn else _pipeline_name(args, config),
        dry_run=args.dry_run,
    )
    clients = None if args.dry_run else _clients(args, config, reporter)
    result = getattr(ops, func_name)(params, clients=clients, reporter=reporter)
    reporter.result(result.model_dump())
    return 0


def _cmd_status(args: argparse.Namespace, reporter: Reporter) -> int:
    return _execution_command(args, reporter, "pipeline_status")


def _cmd_stop(args: argparse.Namespace, reporter: Reporter) -> int:
    return _execution_command(args, reporter, "stop_pipeline")


def _trigger_settings(args: argparse.Namespace, *, need_credential: bool) -> Any:
    from pathlib import Path

    from bridge.trigger.settings import TriggerSettings

    environ = dict(os.environ)
    if args.routes:
        path = Path(args.routes)
        if not path.is_file():
            raise UserError(f"--routes {args.routes}: file not found")
        environ["SMBRIDGE_ROUTES"] = path.read_text(encoding="utf-8")
    return TriggerSettings.from_environ(environ, require_credential=need_credential)


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


def _trigger_runtime(
    args: argparse.Namespace, reporter: Reporter, clients: AwsClients | None = None
) -> Any:
    build_runtime = _trigger_module("handler").build_runtime

    settings = _trigger_settings(args, need_credential=True)
    clients = clients or _clients(args, _config(args), reporter)
    runtime = build_runtime(settings, session=clients.session())
    # whatever the credential holds (a PAT from the environment or Secrets Manager, a token)
    reporter.add_secret_source(runtime.credential.secrets)
    return runtime


def _cmd_simulate(args: argparse.Namespace, reporter: Reporter) -> int:
    local = _trigger_module("local")

    event = local.read_event(args.event)
    if args.dry_run:
        from bridge.trigger.routing import parse_routes

        settings = _trigger_settings(args, need_credential=False)
        if not settings.routes:
            raise UserError("--dry-run needs the routes locally: --routes FILE or SMBRIDGE_ROUTES")
        plan = local.plan_event(event, parse_routes(settings.routes, source="routes"))
        if plan["action"] in ("ignore", "record"):
            reporter.info(f"dry run: {plan['action']}: {plan['reason']}")
        else:
            request = plan["request"]
            reporter.info(f"dry run: route {plan['route']}; would send (no call made):")
            reporter.info(f"{request['method']} {request['url']}")
            reporter.info(json.dumps(request["body"], indent=2))
        reporter.result(plan)
        return 0
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


def _print_requests(reporter: Reporter, requests: list[dict[str, Any]]) -> None:
    for request in requests:
        reporter.info(f"{request['method']} {request['url']} -> HTTP {request['status']}")
        if request["body"] is not None:
            reporter.info(json.dumps(request["body"], indent=2))


def _cmd_replay(args: argparse.Namespace, reporter: Reporter) -> int:
    local = _trigger_module("local")

    if args.dry_run:
        return _planned(
            reporter,
            f"dry run: would call sqs:ReceiveMessage(QueueUrl={args.queue_url!r}) up to "
            f"{args.max_messages} messages, run the trigger on each, and sqs:DeleteMessage "
            "each one handled (none made)",
            queue_url=args.queue_url,
        )
    clients = _clients(args, _config(args), reporter)
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

    from bridge.trigger.package import build_package

    if args.dry_run:
        return _planned(
            reporter,
            f"dry run: would build {args.out} ({args.mode}, {args.platform})",
            out=args.out,
        )
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
    reporter.result({**result.__dict__, "path": str(result.path)})
    return 0


def _stage_configs(args: argparse.Namespace) -> list[Any]:
    from pathlib import Path

    if args.stage_config:
        files = [Path(f) for f in args.stage_config]
    else:
        files = sorted(Path("model-deploy/config").glob("*.json"))
    if not files:
        raise UserError("no stage configs: pass --stage-config or add model-deploy/config/*.json")
    return files


def _cmd_prepare(args: argparse.Namespace, reporter: Reporter) -> int:
    from pathlib import Path

    from bridge.deploy.operations import PrepareParams, prepare_release

    config = _config(args)
    registry_region = _registry_region(args, config)
    params = validated(
        PrepareParams,
        {
            "model_package_arn": args.model_package_arn or None,
            "group": args.group or None,
            "out_dir": Path(args.out),
            "stage_configs": _stage_configs(args),
            "allowed_account": config.model_registry.account_id,
            "allowed_region": registry_region,
        },
    )
    if args.dry_run:
        from bridge.deploy.operations import check_offline

        check_offline(params)
        operation = "DescribeModelPackage" if params.model_package_arn else "ListModelPackages"
        return _planned(
            reporter,
            f"dry run: would call sagemaker:{operation} in {registry_region} and write one "
            f"<stage>.json per stage config to {params.out_dir} (no call)",
            operation=operation,
        )
    clients = _clients(args, config, reporter, region=registry_region)
    result = prepare_release(params, clients=clients, reporter=reporter)
    reporter.result(result.model_dump())
    return 0


def _cmd_deploy(args: argparse.Namespace, reporter: Reporter) -> int:
    from pathlib import Path

    from bridge.core.durations import parse_duration
    from bridge.deploy.operations import DeployParams, deploy_stage

    params = validated(
        DeployParams,
        {
            "stage": args.stage,
            "model_package_arn": args.model_package_arn,
            "config_file": Path(args.stage_config),
            "templates_dir": Path(args.templates_dir),
            "dry_run": args.dry_run,
            "timeout_seconds": parse_duration(args.timeout),
        },
    )
    clients = None if args.dry_run else _clients(args, _config(args), reporter)
    result = deploy_stage(params, clients=clients, reporter=reporter)
    reporter.result(result.model_dump())
    return 0


def _cmd_latest(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.registry import operations as model_registry

    config = _config(args)
    group = require(args.group or config.model_package_group, "model_package_group", "--group")
    status = None if args.status == "any" else args.status
    if args.dry_run:
        return _planned(
            reporter,
            f"dry run: would call sagemaker:ListModelPackages(ModelPackageGroupName={group!r}, "
            f"ModelApprovalStatus={status!r}, SortBy='CreationTime', SortOrder='Descending', "
            "MaxResults=1) and DescribeModelPackage (no call)",
            group=group,
        )
    clients = _clients(args, config, reporter, region=_registry_region(args, config))
    reporter.result(model_registry.latest(group, status=status, clients=clients, reporter=reporter))
    return 0


def _cmd_describe(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.aws.registry import ModelPackageArn
    from bridge.registry import operations as model_registry

    arn = ModelPackageArn.parse(args.arn, flag="ARN")
    if args.dry_run:
        return _planned(
            reporter,
            f"dry run: would call sagemaker:DescribeModelPackage({args.arn!r})",
            arn=arn.arn,
        )
    config = _config(args)
    clients = _clients(args, config, reporter, region=arn.region)
    reporter.result(model_registry.describe(args.arn, clients=clients, reporter=reporter))
    return 0


def _cmd_set_status(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.aws.registry import ModelPackageArn
    from bridge.registry import operations as model_registry

    arn = ModelPackageArn.parse(args.arn, flag="ARN")
    clients = None if args.dry_run else _clients(args, _config(args), reporter, region=arn.region)
    result = model_registry.set_status(
        args.arn,
        args.status,
        comment=args.comment,
        approver=args.approver,
        clients=clients,
        reporter=reporter,
        dry_run=args.dry_run,
    )
    reporter.result(result)
    return 0


def _cmd_endpoint_test(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.deploy.endpoint_test import (
        EndpointTestFailed,
        load_expectations,
        load_payload,
        run_endpoint_test,
        write_junit,
    )
    from bridge.deploy.operations import stage_clients
    from bridge.settings.stage import load_stage_config

    stage = load_stage_config(args.stage_config) if args.stage_config else None
    payload = args.payload or (stage.endpoint_test.payload if stage else None)
    if not payload:
        raise UserError("--payload is not set: pass it or --stage-config")
    rows = load_payload(payload)
    expect = load_expectations(args.expect or (stage.endpoint_test.expect if stage else None))
    if args.dry_run:
        return _planned(
            reporter,
            f"dry run: would call sagemaker-runtime:InvokeEndpoint(EndpointName={args.endpoint!r},"
            f" ContentType={expect.content_type!r}) {len(rows)} times (no call)",
            endpoint=args.endpoint,
            rows=len(rows),
        )
    base = _clients(args, _config(args), reporter)
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


def _library_error(exc: Exception) -> BridgeError | None:
    """botocore failures that escaped a wrapper, as the bridge error they stand for."""
    if not type(exc).__module__.startswith("botocore"):
        return None
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

    from bridge.aws.errors import NO_CREDENTIALS, describe
    from bridge.errors import CredentialsError, ServiceError

    if isinstance(exc, NoCredentialsError):
        return CredentialsError(NO_CREDENTIALS)
    if isinstance(exc, NoRegionError):
        return UserError("no AWS region: set region in bridge.yaml, --region or AWS_DEFAULT_REGION")
    if isinstance(exc, ClientError):
        operation = getattr(exc, "operation_name", "AWS call")
        return ServiceError(f"{operation} failed: {describe(exc)}")
    return ServiceError(f"AWS call failed: {exc}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``smbridge`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    reporter = Reporter.for_environment(args.output)

    def debug_traceback() -> None:
        if args.debug:
            reporter.traceback(traceback.format_exc())

    try:
        _checked_region(getattr(args, "region", None))
        return args.handler(args, reporter)
    except BridgeError as exc:
        debug_traceback()
        reporter.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        reporter.error("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head -1`): nothing more to say to it.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stays open until exit
        return 141
    except Exception as exc:
        debug_traceback()
        translated = _library_error(exc)
        if translated is not None:
            reporter.error(str(translated))
            return translated.exit_code
        reporter.error(
            f"internal error ({type(exc).__name__}); rerun with --debug and report it: {exc}"
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
