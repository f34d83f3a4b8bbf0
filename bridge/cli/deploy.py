"""``smbridge prepare`` and ``smbridge deploy``: model-deploy's Prepare stage and one stage's
deploy (one CloudFormation stack per stage and model, through change sets).

Argument parsing and rendering only; each handler calls one function of
:mod:`bridge.deploy.operations`. ``--config`` is the bridge config (bridge.yaml) here as
everywhere; a stage's config is ``--stage-config``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bridge.cli import common
from bridge.cli.common import COMMON_OPTIONS, command, planned, validated
from bridge.core.output import Reporter
from bridge.errors import UserError

PREPARE_HELP = (
    "model-deploy's Prepare stage: validate and resolve the package, refuse unless Approved, "
    "render each stage's deployment parameters"
)
DEPLOY_HELP = (
    "deploy an Approved model package onto a stage (one CloudFormation stack, change sets)"
)
LEGACY_STAGE_CONFIG = (
    "deploy --config {file}: --config is the bridge config (bridge.yaml) in every command; "
    "pass the stage config as --stage-config {file} (the old spelling will stop working)"
)


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    if name == "prepare":
        _configure_prepare(parser)
    else:
        _configure_deploy(parser)


def _configure_prepare(prepare: argparse.ArgumentParser) -> None:
    command(prepare, _cmd_prepare, uses=("config", "aws", "dry_run"), description=PREPARE_HELP)
    source = prepare.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model-package-arn", metavar="ARN", help="the model package version to deploy"
    )
    source.add_argument("--group", help="a model package group: deploy its newest Approved version")
    prepare.add_argument("--out", required=True, metavar="DIR", help="folder for <stage>.json")
    prepare.add_argument(
        "--stage-config",
        action="append",
        metavar="FILE",
        help="a stage config (repeatable; default: model-deploy/config/*.json)",
    )


def _configure_deploy(deploy: argparse.ArgumentParser) -> None:
    command(deploy, _cmd_deploy, uses=("config", "aws", "dry_run"), description=DEPLOY_HELP)
    deploy.add_argument("--stage", required=True, help="stage name, e.g. staging")
    deploy.add_argument(
        "--model-package-arn", required=True, metavar="ARN", help="the Approved version"
    )
    deploy.add_argument(
        "--stage-config",
        metavar="FILE",
        help="the stage's config, model-deploy/config/<stage>.json (required)",
    )
    deploy.add_argument(
        "--templates-dir",
        default="model-deploy/templates",
        metavar="DIR",
        help="CloudFormation templates (default: model-deploy/templates)",
    )
    deploy.add_argument("--timeout", default="3h", help="stop waiting after this (default: 3h)")
    # deprecated spelling of --config (bridge.yaml) from when --config was the stage config
    deploy.add_argument("--bridge-config", help=argparse.SUPPRESS)


# -- helpers ------------------------------------------------------------------------------------


def _stage_configs(args: argparse.Namespace) -> list[Path]:
    if args.stage_config:
        files = [Path(f) for f in args.stage_config]
    else:
        files = sorted(Path("model-deploy/config").glob("*.json"))
    if not files:
        raise UserError("no stage configs: pass --stage-config or add model-deploy/config/*.json")
    return files


def deploy_stage_config(args: argparse.Namespace, reporter: Reporter) -> str:
    """The stage config file, accepting the old spellings ``deploy --config <stage>.json`` and
    ``--bridge-config`` with a deprecation warning (pipelines written for earlier versions
    still use them; the bridge config is then the default one)."""
    if args.bridge_config:
        reporter.warning("--bridge-config is deprecated: pass bridge.yaml as --config")
        if "config" in args.given and args.stage_config is None:
            args.stage_config = args.config  # both old flags: --config was the stage config
        args.config = args.bridge_config
    elif (
        args.stage_config is None
        and "config" in args.given
        and Path(args.config or "").suffix.lower() == ".json"
    ):
        reporter.warning(LEGACY_STAGE_CONFIG.format(file=args.config))
        args.stage_config = args.config
        args.config = COMMON_OPTIONS["config"].default()
    if not args.stage_config:
        raise UserError(
            "--stage-config is required: the stage's config, e.g. model-deploy/config/staging.json"
        )
    return str(args.stage_config)


# -- commands -----------------------------------------------------------------------------------


def _cmd_prepare(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.cli.common import load_config
    from bridge.deploy.operations import PrepareParams, prepare_release

    config = load_config(args)
    registry_region = common.registry_region(args, config)
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
        flags={"model_package_arn": "--model-package-arn", "group": "--group", "out_dir": "--out"},
    )
    if args.dry_run:
        from bridge.deploy.operations import check_offline

        check_offline(params)
        operation = "DescribeModelPackage" if params.model_package_arn else "ListModelPackages"
        arguments = (
            {"ModelPackageName": params.model_package_arn}
            if params.model_package_arn
            else {"ModelPackageGroupName": params.group}
        )
        return planned(
            reporter,
            f"AWS calls prepare would make in {registry_region}",
            "sagemaker",
            operation,
            arguments,
            f"then write one <stage>.json per stage config to {params.out_dir}",
        )
    from bridge.cli.clients import aws_clients

    clients = aws_clients(args, config, reporter, region=registry_region)
    result = prepare_release(params, clients=clients, reporter=reporter)
    reporter.result(result.model_dump())
    return 0


def _cmd_deploy(args: argparse.Namespace, reporter: Reporter) -> int:
    from bridge.cli.common import load_config
    from bridge.core.durations import parse_duration
    from bridge.deploy.operations import DeployParams, deploy_stage

    stage_config = deploy_stage_config(args, reporter)  # first: it may set args.config
    config = load_config(args)  # a dry run checks bridge.yaml too
    params = validated(
        DeployParams,
        {
            "stage": args.stage,
            "model_package_arn": args.model_package_arn,
            "config_file": Path(stage_config),
            "templates_dir": Path(args.templates_dir),
            "dry_run": args.dry_run,
            "timeout_seconds": parse_duration(args.timeout),
            "allowed_account": config.model_registry.account_id,
            "allowed_region": common.registry_region(args, config),
        },
        flags={
            "stage": "--stage",
            "model_package_arn": "--model-package-arn",
            "config_file": "--stage-config",
            "templates_dir": "--templates-dir",
        },
    )
    clients: Any = None
    if not args.dry_run:
        from bridge.cli.clients import aws_clients

        clients = aws_clients(args, config, reporter)
    return common.report_result(reporter, deploy_stage(params, clients=clients, reporter=reporter))
