"""What every command module shares: the common options, declaring a command, the parser class,
required settings, parameters, dry-run endings, and the CLI's reporter.

Nothing heavy at import time: ``smbridge --help`` imports this module and bridge/cli/app.py only.

The common options (``--config``, ``--region``, ``--output/-o``, …) are accepted before the
command (``smbridge -o json pipeline status``) or after it (``smbridge pipeline status -o json``).
Each command declares which of them it uses (``uses=``); only those appear in its ``--help``, and
one of the others given before the command is a usage error naming it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.core.agent import neutralize, on_agent
from bridge.core.output import Reporter
from bridge.errors import (
    BridgeError,
    CredentialsError,
    UserError,
    exit_codes_epilog,
    first_error,
    shown,
    without_secrets,
)

EXIT_CODES = exit_codes_epilog()


@dataclass(frozen=True)
class CommonOption:
    """One common option: its flags, argparse keywords and the default a command gets when the
    option is not given (a callable, read when the command line is parsed)."""

    flags: tuple[str, ...]
    kwargs: dict[str, Any]
    default: Callable[[], Any]


COMMON_OPTIONS: dict[str, CommonOption] = {
    "config": CommonOption(
        ("--config",),
        {
            "metavar": "FILE",
            "help": "the bridge config to read (default: $SMBRIDGE_CONFIG, else ./bridge.yaml "
            "if present)",
        },
        lambda: os.environ.get("SMBRIDGE_CONFIG") or None,
    ),
    "region": CommonOption(
        ("--region",),
        {
            "help": "AWS region (default: bridge.yaml's region, then AWS_REGION, then "
            "AWS_DEFAULT_REGION)"
        },
        lambda: None,
    ),
    "profile": CommonOption(
        ("--profile",),
        {
            "help": "AWS profile of the default credential chain (default: bridge.yaml's "
            "aws.profile, then AWS_DEFAULT_PROFILE / AWS_PROFILE)"
        },
        lambda: None,
    ),
    "role_arn": CommonOption(
        ("--role-arn",),
        {
            "metavar": "ARN",
            "help": "assume this role, e.g. in the automation account (default: bridge.yaml's "
            "aws.role_arn)",
        },
        lambda: None,
    ),
    "no_role": CommonOption(
        ("--no-role",),
        {
            "action": "store_true",
            "help": "assume no role this run, even if bridge.yaml (or SMBRIDGE_AWS__ROLE_ARN) "
            "names one: use the default chain's own credentials",
        },
        lambda: False,
    ),
    "web_identity": CommonOption(
        ("--web-identity",),
        {
            "action": "store_true",
            "help": "exchange the Azure DevOps job's OIDC token for the role's credentials "
            "(keyless; needs a role)",
        },
        lambda: None,
    ),
    "dry_run": CommonOption(
        ("--dry-run",),
        {"action": "store_true", "help": "print the calls it would make; make none"},
        lambda: False,
    ),
    "output": CommonOption(
        ("-o", "--output"),
        {
            "choices": ["text", "json"],
            "help": "json: exactly one JSON document on stdout, errors included; progress on "
            "stderr (default: text)",
        },
        lambda: "text",
    ),
    "debug": CommonOption(
        ("--debug",), {"action": "store_true", "help": "show tracebacks"}, lambda: False
    ),
}

# What a command may name in ``uses=`` (output and debug: every command).
AWS = ("region", "profile", "role_arn", "no_role", "web_identity")
USES = {
    "config": ("config",),
    "region": ("region",),
    "aws": AWS,
    "dry_run": ("dry_run",),
}
ALWAYS = ("output", "debug")
# Common options that take a value (for reading ``-o json`` before argparse has run).
VALUE_FLAGS = frozenset(
    flag
    for option in COMMON_OPTIONS.values()
    if option.kwargs.get("action") is None
    for flag in option.flags
)


class UsageError(SystemExit):
    """A command line argparse refuses. Still a ``SystemExit(2)`` (argparse's contract), with the
    message kept so that ``main`` can also put it in the JSON document."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(2)
        self.prog = prog
        self.message = message


class Parser(argparse.ArgumentParser):
    """argparse prints its own messages (a usage error echoes the bad value): on an agent they
    are neutralised like every other line. Every parser of the CLI is one of these."""

    def _print_message(self, message: str, file: Any = None) -> None:
        super()._print_message(neutralize(message) if message and on_agent() else message, file)

    def error(self, message: str) -> Any:  # argparse's signature says NoReturn
        # argparse quotes the bad value ("invalid choice: '…'"): a credential pasted into the
        # wrong argument is described, not echoed.
        message = without_secrets(message)
        # One line, like every other input error (argparse would print the usage block first).
        self._print_message(
            f"error: {self.prog}: {message} (see '{self.prog} --help')\n", sys.stderr
        )
        raise UsageError(self.prog, message)


def add_common_options(parser: argparse.ArgumentParser, dests: Iterable[str], title: str) -> None:
    """The common options ``dests`` on ``parser``, with no default: a value given before the
    command is not overwritten by the command's parser (see :func:`finish`)."""
    group = parser.add_argument_group(title)
    for dest in dests:
        option = COMMON_OPTIONS[dest]
        group.add_argument(*option.flags, dest=dest, default=argparse.SUPPRESS, **option.kwargs)


def command(
    parser: argparse.ArgumentParser,
    handler: Callable[..., int],
    *,
    uses: Sequence[str],
    description: str,
    epilog: str = EXIT_CODES,
) -> argparse.ArgumentParser:
    """Make ``parser`` a command that runs ``handler(args, reporter)``.

    ``uses``: the groups of common options it takes, of ``config``, ``region`` (the region
    alone), ``aws`` (region and credentials), ``dry_run``; ``--output`` and ``--debug`` always.
    Its own arguments are added to the returned parser by the caller.
    """
    dests = [dest for use in uses for dest in USES[use]] + list(ALWAYS)
    parser.description = description
    parser.epilog = epilog
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_common_options(parser, dests, "common options (also accepted before the command)")
    parser.set_defaults(handler=handler, common_options=frozenset(dests), prog=parser.prog)
    return parser


def add_command(
    actions: Any,
    name: str,
    help_text: str,
    handler: Callable[..., int],
    *,
    uses: Sequence[str],
    description: str | None = None,
    epilog: str = EXIT_CODES,
) -> argparse.ArgumentParser:
    """A command ``name`` under ``actions`` (an ``add_subparsers()`` object)."""
    sub = actions.add_parser(name, help=help_text)
    return command(sub, handler, uses=uses, description=description or help_text, epilog=epilog)


def add_actions(parser: argparse.ArgumentParser, dest: str = "action") -> Any:
    """The sub-commands of a command group (``smbridge pipeline ACTION``)."""
    return parser.add_subparsers(dest=dest, metavar="ACTION", required=True, parser_class=Parser)


def finish(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """After parsing: refuse a common option the command does not use (given before it), give
    the command's unset common options their defaults, and note which ones were given
    (``args.given``: ``config show`` says a value came from a flag)."""
    uses = getattr(args, "common_options", frozenset(ALWAYS))
    given = {dest for dest in COMMON_OPTIONS if dest in vars(args)}
    for dest in sorted(given - uses):
        flag = COMMON_OPTIONS[dest].flags[-1]
        parser.error(f"argument {flag}: not used by {getattr(args, 'prog', parser.prog)}")
    for dest in uses - given:
        setattr(args, dest, COMMON_OPTIONS[dest].default())
    args.given = frozenset(given)
    return args


def wants_json(argv: Sequence[str]) -> bool:
    """Whether ``argv`` asks for ``--output json``, read before parsing (a usage error is then
    reported as a JSON document too). The last one given wins, as with argparse."""
    value = None
    skip = False
    for index, token in enumerate(argv):
        if skip:
            skip = False
            continue
        if token == "--":
            break
        if token in ("-o", "--output"):
            value = argv[index + 1] if index + 1 < len(argv) else None
            skip = True
        elif token.startswith("--output="):
            value = token.partition("=")[2]
        elif token.startswith("-o") and not token.startswith("--"):
            value = token[2:].removeprefix("=")
        elif token in VALUE_FLAGS:
            skip = True  # its value, even if it reads like an option
    return value == "json"


# Credentials the CLI may find in its environment: whatever a command prints, they are masked
# (README, "Azure DevOps side as code"; the AWS SDK's variables).
ENVIRONMENT_SECRETS = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "SYSTEM_ACCESSTOKEN",
    "SMBRIDGE_ADO_PAT",
    "AZURE_DEVOPS_EXT_PAT",
)
# Shorter values are not real credentials (tests set AWS_SECRET_ACCESS_KEY=testing), and masking
# them would star ordinary words.
MIN_ENVIRONMENT_SECRET = 16


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """The credential values of :data:`ENVIRONMENT_SECRETS` as set now, with the forms they
    travel in: a PAT's ``Basic`` credentials (base64 of ``:PAT``), and the ``pat`` and
    ``clientSecret`` of a JSON secret (bridge/azure_devops/credentials.py reads those)."""
    import base64
    import json

    env = os.environ if environ is None else environ
    found: list[str] = []
    for name in ENVIRONMENT_SECRETS:
        value = env.get(name, "").strip()
        if len(value) < MIN_ENVIRONMENT_SECRET:
            continue
        values = [value]
        if value.startswith("{"):
            try:
                document = json.loads(value)
            except ValueError:
                document = None
            if isinstance(document, dict):
                values += [
                    v
                    for k, v in document.items()
                    if k in ("pat", "clientSecret") and isinstance(v, str)
                ]
        for item in values:
            found += [item, base64.b64encode(f":{item}".encode()).decode()]
    return [s for s in found if len(s) >= 4]


class CliReporter(Reporter):
    """The CLI's :class:`Reporter`: it knows whether the result document was written, so that
    ``main`` writes exactly one in every outcome, and it masks the credentials of its
    environment (:func:`environment_secrets`) in everything it prints."""

    results_written = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_secret_source(environment_secrets)

    def result(self, data: dict[str, Any]) -> None:
        self.results_written += 1
        super().result(data)


# -- helpers for the handlers -------------------------------------------------------------------


def require(value: Any, key: str, flag: str) -> Any:
    """``value``, or a one-line error naming the bridge.yaml key and the flag that set it."""
    if value in (None, ""):
        raise UserError(f"{key} is not set: add it to bridge.yaml or pass {flag}")
    return value


def validated(
    model: Callable[..., Any], fields: dict[str, Any], *, flags: dict[str, str] | None = None
) -> Any:
    """``model(**fields)``, a pydantic model or factory; its first error as one line, naming the
    command-line argument (``flags``: field name → argument) rather than the field."""
    from pydantic import ValidationError

    try:
        return model(**fields)
    except ValidationError as exc:
        key, message = first_error(exc)
        key = (flags or {}).get(key, key)
        raise UserError(f"{key}: {message}" if key else message) from None


def planned(
    reporter: Reporter,
    title: str,
    service: str,
    operation: str,
    arguments: Any = None,
    when: str = "",
) -> int:
    """A one-step dry run's end: its plan, as text and as the JSON result; exit 0."""
    from bridge.core.plan import Plan, PlannedStep, render_plan

    step = PlannedStep(service, operation, {} if arguments is None else arguments, when)
    return render_plan(reporter, Plan(title, [step]))


def report_result(reporter: Reporter, result: Any, *, json_mode: bool = False) -> int:
    """An operation's end: a dry run's plan (:func:`bridge.core.plan.render_plan`), otherwise
    the result as the JSON document; exit 0."""
    plan = getattr(result, "plan", None)
    if plan is not None:
        from bridge.core.plan import render_plan

        return render_plan(reporter, plan)
    reporter.result(result.model_dump(mode="json") if json_mode else result.model_dump())
    return 0


def load_config(args: argparse.Namespace) -> Any:
    """bridge.yaml (``--config``), with its ``SMBRIDGE_*`` overrides."""
    from bridge.settings.bridge_config import load_config as load

    return load(args.config)


def region(args: argparse.Namespace, config: Any) -> str | None:
    """The region a command works in: ``--region``, bridge.yaml's ``region``, ``AWS_REGION``,
    ``AWS_DEFAULT_REGION`` (the same order for a definition built offline and for AWS calls)."""
    return (
        args.region
        or config.region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or None
    )


def required_region(args: argparse.Namespace, config: Any) -> str:
    return require(region(args, config), "region", "--region")


def registry_region(args: argparse.Namespace, config: Any) -> str | None:
    """Where the Model Registry is: ``model_registry.region``, else the command's region."""
    return config.model_registry.region or args.region or config.region


# -- AWS credentials as the user should read about them ------------------------------------------


@dataclass(frozen=True)
class AwsChoice:
    """The role and profile a command uses, and where each came from (for error messages)."""

    role_arn: str | None
    role_source: str
    profile: str | None
    profile_source: str


def _causes(exc: BaseException) -> set[str]:
    """Class names of the exceptions behind ``exc`` (``raise … from None`` keeps the context)."""
    names: set[str] = set()
    seen = exc.__cause__ or exc.__context__
    for _ in range(5):
        if seen is None:
            break
        names.update(cls.__name__ for cls in type(seen).__mro__)
        seen = seen.__cause__ or seen.__context__
    return names


def explain(exc: BridgeError, choice: AwsChoice | None) -> BridgeError:
    """A credentials error as the user should read it: no base credentials to assume a role
    with (not "AssumeRole … failed: NoCredentialsError"), a missing profile with its name and
    where it was set."""
    if not isinstance(exc, CredentialsError):
        return exc
    causes = _causes(exc)
    if "NoCredentialsError" in causes and "no AWS credentials" not in str(exc):
        if choice is not None and choice.role_arn:
            what = f"role {choice.role_arn} ({choice.role_source})"
        else:
            what = "the stage's deploy role"
        return CredentialsError(
            f"no AWS credentials to assume {what} with: configure the default chain "
            "(environment, profile, AWSShellScript@1), or use --web-identity on an agent (the "
            "job's OIDC token needs no AWS credentials)"
        )
    if "ProfileNotFound" in causes and choice is not None and choice.profile:
        where = f" ({choice.profile_source})" if choice.profile_source else ""
        unset = f", or unset {choice.profile_source}" if choice.profile_source.isupper() else ""
        return CredentialsError(
            f"AWS profile {shown(choice.profile)}{where} is not in the AWS config files "
            f"(AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE; default ~/.aws/): check its "
            f"name{unset}"
        )
    return exc
