"""``smbridge pipeline build|upsert|start|status|stop``: SageMaker pipelines (model build).

Argument parsing and rendering only; each handler calls one function of
:mod:`bridge.pipeline.operations`. Only ``build`` and ``upsert`` of a ``module:function``
definition load the SageMaker SDK (through the operation); nothing heavy is imported here.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from bridge.cli import common
from bridge.cli.common import add_actions, add_command, require, required_region, validated
from bridge.core.output import Reporter
from bridge.errors import UserError, cut, shown

AWS_COMMAND = ("config", "aws", "dry_run")
# where the README's quick start has `pipeline build --out` write the definition
DEFAULT_DEFINITION_FILE = "build/pipeline-definition.json"


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    actions = add_actions(parser)

    build = add_command(
        actions,
        "build",
        "build the definition offline (no AWS call) and write it",
        _cmd_build,
        uses=("config", "region"),
    )
    _definition_options(build)
    build.add_argument(
        "--out", metavar="FILE", help="write the definition JSON here (default: a summary only)"
    )

    upsert = add_command(
        actions,
        "upsert",
        "create or update the pipeline; no write when unchanged",
        _cmd_upsert,
        uses=AWS_COMMAND,
    )
    _definition_options(upsert)
    upsert.add_argument("--description", help="pipeline description (pipeline.description)")
    upsert.add_argument("--parallelism", type=int, help="max parallel steps (pipeline.parallelism)")

    start = add_command(
        actions,
        "start",
        "start an execution, optionally wait for it",
        _cmd_start,
        uses=AWS_COMMAND,
    )
    start.add_argument("--pipeline-name", help="pipeline name (pipeline.name)")
    start.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a pipeline parameter (repeatable; defaults: pipeline.parameters)",
    )
    start.add_argument("--wait", action="store_true", help="follow the execution to its end")
    start.add_argument(
        "--timeout", help="with --wait: stop the execution after this long (e.g. 6h, 90m)"
    )
    start.add_argument("--display-name", help="the execution's display name")
    start.add_argument(
        "--definition-file",
        metavar="FILE",
        help="check --param against this built definition before any call (default with "
        f"--dry-run: {DEFAULT_DEFINITION_FILE} if it exists, or a .json pipeline.definition)",
    )
    start.add_argument(
        "--client-request-token",
        help="idempotency token (default: derived from the Azure DevOps run and parameters)",
    )

    for action, text, handler in (
        ("status", "show an execution and its steps", _cmd_status),
        ("stop", "stop an execution", _cmd_stop),
    ):
        sub = add_command(actions, action, text, handler, uses=AWS_COMMAND)
        sub.add_argument(
            "--execution-arn", metavar="ARN", help="the execution (default: the latest one)"
        )
        sub.add_argument("--pipeline-name", help="pipeline name (pipeline.name)")


def _definition_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--definition", help="module:function or a .json file (pipeline.definition)")
    sub.add_argument("--pipeline-name", help="pipeline name (pipeline.name)")
    sub.add_argument(
        "--execution-role-arn",
        metavar="ARN",
        help="the role SageMaker runs the steps as (pipeline.execution_role_arn)",
    )
    sub.add_argument("--bucket", help="artifact bucket for staged code (pipeline.artifact_bucket)")
    sub.add_argument(
        "--model-package-group", help="where the model is registered (model_package_group)"
    )
    sub.add_argument(
        "--staging-dir", metavar="DIR", help="keep the staged code bundles here (default: temp)"
    )


# -- helpers ------------------------------------------------------------------------------------


def _pipeline_name(args: argparse.Namespace, config: Any) -> str:
    return require(args.pipeline_name or config.pipeline.name, "pipeline.name", "--pipeline-name")


def _build_fields(args: argparse.Namespace, config: Any) -> dict[str, Any]:
    p = config.pipeline
    return {
        "definition": args.definition or p.definition,
        "pipeline_name": _pipeline_name(args, config),
        "region": required_region(args, config),
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


def _definition_file(args: argparse.Namespace, config: Any) -> str | None:
    """The built definition a dry run checks parameters against: the flag, a .json
    pipeline.definition, or ``pipeline build --out``'s usual file when it exists."""
    from pathlib import Path

    if args.definition_file:
        return args.definition_file
    if not args.dry_run:
        return None
    if (config.pipeline.definition or "").endswith(".json"):
        return config.pipeline.definition
    return DEFAULT_DEFINITION_FILE if Path(DEFAULT_DEFINITION_FILE).is_file() else None


def _parse_params(pairs: Sequence[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--param {shown(pair)}: expected NAME=VALUE")
        if name.strip() in result:
            raise UserError(
                f"--param {cut(name.strip())} is given more than once; give each parameter once"
            )
        result[name.strip()] = value
    return result


def _clients(args: argparse.Namespace, config: Any, reporter: Reporter) -> Any:
    from bridge.cli.clients import aws_clients

    return aws_clients(args, config, reporter)


# -- commands -----------------------------------------------------------------------------------


def _cmd_build(args: argparse.Namespace, reporter: Reporter) -> int:
    from pathlib import Path

    from bridge.cli.common import load_config
    from bridge.pipeline.operations import BuildParams, build_definition, describe_build

    config = load_config(args)
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
        files = f"{count} file{'s' if count > 1 else ''}"
        reporter.info(f"  code for {bundle}/ ({files}; uploaded by upsert, not by build)")
    if args.out:
        reporter.info(f"written to {args.out}")
    reporter.result(result.model_dump())
    return 0


def _cmd_upsert(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.cli.common import load_config
    from bridge.pipeline.operations import UpsertParams, upsert_pipeline

    config = load_config(args)
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
    return common.report_result(reporter, result)


def _cmd_start(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.cli.common import load_config
    from bridge.core.durations import parse_duration
    from bridge.pipeline.operations import StartParams, start_pipeline

    config = load_config(args)
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
            "definition_file": _definition_file(args, config),
            "dry_run": args.dry_run,
        },
        flags={"display_name": "--display-name", "client_request_token": "--client-request-token"},
    )
    clients = None if args.dry_run else _clients(args, config, reporter)
    # a failure's JSON document (status, error, exit code) is main's, as for every command
    result = start_pipeline(params, clients=clients, reporter=reporter)
    return common.report_result(reporter, result)


def _execution_command(args: argparse.Namespace, reporter: Reporter, func_name: str) -> int:
    from bridge.cli.common import load_config
    from bridge.pipeline import operations as ops

    config = load_config(args)
    params = ops.ExecutionParams(
        execution_arn=args.execution_arn,
        pipeline_name=None if args.execution_arn else _pipeline_name(args, config),
        dry_run=args.dry_run,
    )
    clients = None if args.dry_run else _clients(args, config, reporter)
    result = getattr(ops, func_name)(params, clients=clients, reporter=reporter)
    return common.report_result(reporter, result)


def _cmd_status(args: argparse.Namespace, reporter: Reporter) -> int:
    return _execution_command(args, reporter, "pipeline_status")


def _cmd_stop(args: argparse.Namespace, reporter: Reporter) -> int:
    return _execution_command(args, reporter, "stop_pipeline")
