"""``smbridge demo``: the whole loop on this machine (bridge/demo/loop.py), no cloud account.

Exit code 0 when the loop did what it should (a model below the AUC threshold registers nothing;
a rejected production approval leaves production untouched: both are the loop working), 4 when a
step failed (a failed staging test included), 2 for a bad option.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bridge.cli.common import command
from bridge.core.output import Reporter
from bridge.errors import ExecutionFailed

DESCRIPTION = (
    "the whole loop on this machine, through the code production runs: train and evaluate the "
    "model on the bundled data, upsert and run the model-build pipeline, register and approve "
    "the version, deliver SageMaker's event through the trigger rule to the trigger, which starts "
    "a model-deploy run; then deploy staging, test it, approve the production gate as a named "
    "reviewer and deploy production. AWS is moto's server and Azure DevOps a stand-in, both on "
    "127.0.0.1; needs pip install -e '.[demo]' in a clone of the repository"
)


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    command(parser, _cmd_demo, uses=(), description=DESCRIPTION)
    parser.add_argument(
        "--auc-threshold",
        type=float,
        default=0.9,
        metavar="X",
        help="the model-build condition (default: 0.9; try 0.999 to see nothing registered)",
    )
    parser.add_argument(
        "--break-staging",
        action="store_true",
        help="the staging endpoint answers wrong predictions: its test fails, production waits",
    )
    parser.add_argument(
        "--reject-production",
        action="store_true",
        help="the reviewer rejects the production approval: production is not deployed",
    )
    parser.add_argument(
        "--work-dir", metavar="DIR", help="keep the demo's files here (default: a temporary folder)"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show each smbridge command's own output"
    )


def _cmd_demo(args: argparse.Namespace, reporter: Reporter) -> int:
    import sys

    from bridge.demo.loop import DemoOptions, run_demo

    if not 0.0 <= args.auc_threshold <= 1.0:
        from bridge.errors import UserError

        raise UserError(f"--auc-threshold {args.auc_threshold}: expected a value from 0 to 1")
    options = DemoOptions(
        auc_threshold=args.auc_threshold,
        break_staging=args.break_staging,
        reject_production=args.reject_production,
        work_dir=Path(args.work_dir) if args.work_dir else None,
        verbose=args.verbose,
    )
    json_mode = reporter.mode == "json"
    result = run_demo(options, out=sys.stderr if json_mode else sys.stdout)
    failure = None if result.ok else ExecutionFailed(f"demo: {result.outcome}")
    if json_mode:  # one document: the demo's result, with the error when it failed
        status = {"status": "ok", "exit_code": 0}
        if failure is not None:
            status = {"status": "error", "error": str(failure), "exit_code": failure.exit_code}
        reporter.result({**result.as_dict(), **status})
    if failure is not None:
        raise failure
    return 0
