"""``smbridge``: the top-level parser and ``main`` (error handling, exit codes).

Each command group lives in its own module (bridge/cli/<group>.py) with its parser next to its
handlers; a group's module is imported only when the command line names it, so ``smbridge
--help`` imports none of them, and no module imports boto3, pydantic or the SageMaker SDK before
a handler runs. A new command group is one module with ``configure(parser, name)`` and one line
in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from bridge import __version__
from bridge.cli.common import (
    ALWAYS,
    AWS,
    EXIT_CODES,
    CliReporter,
    Parser,
    UsageError,
    add_common_options,
    explain,
    finish,
    wants_json,
)
from bridge.errors import BridgeError, UserError, scrubbed, without_secrets

# command → (module, one-line help). The module's configure(parser, command) declares the rest.
COMMANDS: dict[str, tuple[str, str]] = {
    "pipeline": ("bridge.cli.pipeline", "SageMaker pipelines (model build)"),
    "prepare": (
        "bridge.cli.deploy",
        "model-deploy's Prepare stage: check and resolve the package, render stage parameters",
    ),
    "deploy": ("bridge.cli.deploy", "deploy an Approved model package onto a stage"),
    "registry": ("bridge.cli.registry", "SageMaker Model Registry"),
    "endpoint": ("bridge.cli.endpoint", "SageMaker endpoints"),
    "trigger": ("bridge.cli.trigger", "the approval trigger (Lambda)"),
    "ado": ("bridge.cli.ado", "Azure DevOps: environments, approval check, approvals"),
    "config": ("bridge.cli.config", "the effective configuration and where it came from"),
    "demo": ("bridge.cli.demo", "the whole loop on this machine: local AWS, Azure DevOps stand-in"),
    "doctor": ("bridge.cli.doctor", "check the set-up, read-only: ok or what to fix, per check"),
}


class _CommandParser(Parser):
    """A command's parser, configured by its module the first time it is used (parsing, help)."""

    module = ""
    command_name = ""
    _configured = False

    def configure(self) -> None:
        if not self._configured:
            self._configured = True
            importlib.import_module(self.module).configure(self, self.command_name)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self.configure()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self.configure()
        return super().format_help()

    def format_usage(self) -> str:
        self.configure()
        return super().format_usage()


class _TopParser(Parser):
    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        namespace, extras = super().parse_known_args(args, namespace)
        return finish(self, namespace), extras


def build_parser(*, complete: bool = False) -> argparse.ArgumentParser:
    """The ``smbridge`` parser. Command modules load on use; ``complete=True`` loads them all
    (to walk every option)."""
    parser = _TopParser(
        prog="smbridge",
        description="The bridge between Azure DevOps and Amazon SageMaker.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"smbridge {__version__}")
    add_common_options(
        parser,
        ["config", *AWS, "dry_run", *ALWAYS],
        "common options (before or after the command; each command takes those it uses)",
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=_CommandParser
    )
    for name, (module, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.module, sub.command_name = module, name
        if complete:
            sub.configure()
    return parser


def _error_document(reporter: CliReporter, message: str, code: int) -> None:
    if not reporter.results_written:
        reporter.result({"status": "error", "error": message, "exit_code": code})


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``smbridge`` console script; returns the exit code (a usage error
    raises ``SystemExit(2)`` as argparse does, after its JSON document with ``-o json``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        if wants_json(argv):  # argparse's message may echo a value: cut, secrets described
            _error_document(CliReporter("json"), scrubbed(f"{exc.prog}: {exc.message}"), 2)
        raise
    reporter = CliReporter.for_environment(args.output)

    def debug_traceback() -> None:
        if args.debug:
            reporter.traceback(traceback.format_exc())

    def failed(error: BridgeError) -> int:
        reporter.error(str(error))
        _error_document(reporter, str(error), error.exit_code)
        return error.exit_code

    try:
        _check_region(getattr(args, "region", None))
        code = args.handler(args, reporter)
    except BridgeError as exc:
        debug_traceback()
        return failed(explain(exc, getattr(args, "aws_choice", None)))
    except KeyboardInterrupt:
        reporter.error("interrupted")
        _error_document(reporter, "interrupted", 130)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head -1`): nothing more to say to it.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stays open until exit
        return 141
    except Exception as exc:
        debug_traceback()
        translated = _library_error(exc)
        if translated is not None:
            return failed(translated)
        # a library's message may quote what it was given (a header, a URL): secret shapes out
        message = (
            f"internal error ({type(exc).__name__}); rerun with --debug and report it: "
            f"{without_secrets(str(exc))}"
        )
        reporter.error(message)
        _error_document(reporter, message, 1)
        return 1
    if not reporter.results_written:
        reporter.result({"status": "ok" if code == 0 else "error", "exit_code": code})
    return code


def _check_region(region: str | None) -> None:
    import re

    if region is not None and not re.fullmatch(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]", region):
        from bridge.errors import shown

        # shown: a value pasted into the wrong flag (a key, a token) is described, not echoed
        raise UserError(f"--region {shown(region)}: expected an AWS region like eu-west-1")


def _library_error(exc: Exception) -> BridgeError | None:
    if not type(exc).__module__.startswith("botocore"):
        return None
    from bridge.cli.clients import library_error

    return library_error(exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
