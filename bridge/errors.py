"""One exception hierarchy. Each class carries its process exit code and what it means
(``exit_code``, ``meaning``): the CLI's help, the README's table and the SDK read them from here
(:func:`exit_codes`), nowhere else."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class BridgeError(Exception):
    """Base class: every error smbridge raises on purpose. ``str()`` is one line, secret-free."""

    exit_code = 1
    meaning = "internal error (a bug: rerun with --debug and report it)"


class UserError(BridgeError):
    """The input is wrong; the message names what and how to fix it."""

    exit_code = 2
    meaning = "bad input: config, argument, parameter or definition (the message says which)"


class ConfigError(UserError):
    """``bridge.yaml`` or an ``SMBRIDGE_*`` variable is invalid."""


class DefinitionError(UserError):
    """The pipeline definition cannot be loaded, built or is invalid."""


class ParameterError(UserError):
    """A ``--param`` is not declared by the pipeline or its value does not fit the declared type."""


class ServiceError(BridgeError):
    """A cloud service call failed (after retries)."""

    exit_code = 3
    meaning = "an AWS or Azure DevOps call failed (the message names the operation)"


class ExecutionFailed(BridgeError):
    """The pipeline execution ended in Failed or Stopped."""

    exit_code = 4
    meaning = "the pipeline execution Failed or was Stopped, or an endpoint test failed"


class WaitTimeout(BridgeError):
    """The wait exceeded ``--timeout``."""

    exit_code = 5
    meaning = (
        "--timeout expired (a pipeline execution is stopped; a stack is left to CloudFormation)"
    )


class CredentialsError(BridgeError):
    """No usable AWS or Azure DevOps credentials, a refused credential, or a failed role
    assumption."""

    exit_code = 6
    meaning = "no usable AWS or Azure DevOps credentials, or a role could not be assumed"


class Cancelled(BridgeError):
    """The process was asked to stop (SIGINT/SIGTERM)."""

    exit_code = 130
    meaning = "cancelled by SIGINT/SIGTERM (the execution it started is asked to stop first)"


EXIT_CLASSES: tuple[type[BridgeError], ...] = (
    BridgeError,
    UserError,
    ServiceError,
    ExecutionFailed,
    WaitTimeout,
    CredentialsError,
    Cancelled,
)


def exit_codes() -> list[tuple[int, str]]:
    """(exit code, meaning) for every code smbridge exits with, 0 first."""
    return [(0, "success")] + [(cls.exit_code, cls.meaning) for cls in EXIT_CLASSES]


def exit_codes_epilog() -> str:
    """The ``exit codes:`` section of ``--help``."""
    return "exit codes:\n" + "".join(f"  {code:<4} {text}\n" for code, text in exit_codes())


# How much of a value or message an error line may echo.
SHOWN_CHARS = 80
MESSAGE_CHARS = 300

# Credentials people paste into the wrong place, recognised so that an error never echoes them.
# Shapes, not proof: a 40-character name without a hyphen is taken for an AWS secret key too
# (it is then described, not shown; the file still has it).
_SECRET_SHAPES = (
    # Azure DevOps personal access token, classic (52 of [a-z0-9]) and current (84 characters).
    re.compile(r"(?<![A-Za-z0-9])[a-z0-9]{52}(?![A-Za-z0-9])"),
    re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9]{84}(?![A-Za-z0-9])"),
    # AWS secret access key (40 base64 characters) and access key id.
    re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])"),
    re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),
    # Entra ID (Azure AD) application client secret: 3 URL-unreserved characters, a version
    # digit, "Q~", then 31-34 more (microsoft/security-utilities, AadClientAppIdentifiable-
    # Credentials SEC101/050 and /156). Its '.', '-' and '~' split it for _TOKEN below.
    re.compile(
        r"(?<![A-Za-z0-9._~-])[A-Za-z0-9._~-]{3}[0-9]Q~[A-Za-z0-9._~-]{31,34}(?![A-Za-z0-9._~-])"
    ),
)
# Any other long token (session tokens, client secrets, JWT parts) unless it reads like words.
_TOKEN = re.compile(r"[A-Za-z0-9+/=_~]{32,}")


def _random_looking(token: str) -> bool:
    """Mixes letters of both cases or digits, and its lowercase letters are not mostly in runs
    of three or more (``ChurnModelTrainingPipelineForProduction`` is; random text is not)."""
    kinds = {c.isupper() - c.isdigit() for c in token if c.isalnum()}
    if len(kinds) < 2:
        return False
    runs = [len(run) for run in re.findall(r"[a-z]+", token)]
    return sum(n for n in runs if n >= 3) < 0.85 * sum(runs) or not runs


def secret_parts(text: str) -> list[str]:
    """The parts of ``text`` shaped like a credential (an Azure DevOps PAT, an AWS key...)."""
    found = [m.group() for shape in _SECRET_SHAPES for m in shape.finditer(text)]
    found += [m.group() for m in _TOKEN.finditer(text) if _random_looking(m.group())]
    return found


def looks_like_secret(text: str) -> bool:
    return bool(secret_parts(text))


def secret_description(value: str, what: str = "value") -> str:
    return f"<{len(value)}-character {what}, looks like a secret; not shown>"


def cut(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters of it followed by ``…(N chars)``."""
    if not text.isprintable():
        text = repr(text)[1:-1]
    return text if len(text) <= limit else f"{text[:limit]}…({len(text)} chars)"


def _count(n: int, what: str, noun: str) -> str:
    return f"{what} {n} {noun}{'' if n == 1 else 's'}"


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """How an error line echoes a value someone wrote: short, on one line, never a secret."""
    if isinstance(value, str):
        if looks_like_secret(value):
            return secret_description(value)
        return repr(value) if len(value) <= limit else f"{value[:limit]!r}…({len(value)} chars)"
    if isinstance(value, dict):
        return _count(len(value), "a mapping of", "key")
    if isinstance(value, list | tuple | set | frozenset):
        return _count(len(value), "a list of", "item")
    if isinstance(value, bytes | bytearray):
        return f"{len(value)} bytes of binary data"
    try:
        text = repr(value)
    except ValueError:  # an int beyond sys.get_int_max_str_digits()
        return "a very large number"
    return cut(text, limit)


def shown_key(key: object) -> str:
    """A mapping key or location part as an error line names it (not quoted)."""
    text = str(key)
    if looks_like_secret(text):
        return secret_description(text, "key")
    return cut(text)


def mask(text: str, secrets: Iterable[str], replacement: str | Callable[[str], str] = "***") -> str:
    """``text`` with every secret replaced by ``***`` (longest first: a secret may contain
    another), or by ``replacement(secret)``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, replacement(secret) if callable(replacement) else replacement)
    return text


def without_secrets(text: str) -> str:
    """``text`` with every part shaped like a credential described instead (any length, any
    number of lines: for tracebacks and library messages, which quote what they were given)."""
    return mask(text, secret_parts(text), secret_description)


def scrubbed(message: str, value: Any = None, limit: int = MESSAGE_CHARS) -> str:
    """A message fit for an error line: ``value`` (the input it is about) shown cut if it is
    echoed, secret-looking parts described, one line, at most ``limit`` characters."""
    if isinstance(value, str) and value and value in message:
        if looks_like_secret(value):
            message = mask(message, [value], secret_description(value))
        elif len(value) > SHOWN_CHARS:
            message = mask(message, [value], cut(value))
    return cut(mask(message, secret_parts(message), secret_description), limit)


def first_error(exc: ValidationError) -> tuple[str, str]:
    """The first pydantic error as (dotted key, message), for one-line errors.

    Neither part echoes the input whole: long values are cut, secret-looking ones described."""
    error = exc.errors(include_url=False)[0]
    key = ".".join(shown_key(p) for p in error["loc"] if not str(p).startswith("function-"))
    message = str(error["msg"]).removeprefix("Value error, ")
    return key, scrubbed(message, error.get("input"))
