"""One exception hierarchy; each class carries the process exit code documented in the README.

| code | class               | meaning                                                        |
|------|---------------------|----------------------------------------------------------------|
| 0    |                     | success                                                        |
| 1    | (any other)         | a bug in smbridge: please report it (traceback with --debug)   |
| 2    | UserError           | bad input: config file, argument, parameter, definition        |
| 3    | ServiceError        | AWS or Azure DevOps refused or failed a call                   |
| 4    | ExecutionFailed     | the SageMaker pipeline execution ended Failed or Stopped       |
| 5    | WaitTimeout         | ``--timeout`` expired (an execution is stopped)                |
| 6    | CredentialsError    | no usable AWS/Azure DevOps credentials, or a role assumption   |
| 130  | Cancelled           | SIGINT/SIGTERM (agent cancel); the execution was stopped       |
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class BridgeError(Exception):
    """Base class: every error smbridge raises on purpose. ``str()`` is one line, secret-free."""

    exit_code = 1


class UserError(BridgeError):
    """The input is wrong; the message names what and how to fix it."""

    exit_code = 2


class ConfigError(UserError):
    """``bridge.yaml`` or an ``SMBRIDGE_*`` variable is invalid."""


class DefinitionError(UserError):
    """The pipeline definition cannot be loaded, built or is invalid."""


class ParameterError(UserError):
    """A ``--param`` is not declared by the pipeline or its value does not fit the declared type."""


class ServiceError(BridgeError):
    """A cloud service call failed (after retries)."""

    exit_code = 3


class ExecutionFailed(BridgeError):
    """The pipeline execution ended in Failed or Stopped."""

    exit_code = 4


class WaitTimeout(BridgeError):
    """The wait exceeded ``--timeout``."""

    exit_code = 5


class CredentialsError(BridgeError):
    """No usable AWS credentials, or the role/web-identity exchange failed."""

    exit_code = 6


class Cancelled(BridgeError):
    """The process was asked to stop (SIGINT/SIGTERM)."""

    exit_code = 130


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***`` (longest first: a secret may contain
    another)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def first_error(exc: ValidationError) -> tuple[str, str]:
    """The first pydantic error as (dotted key, message), for one-line errors."""
    error = exc.errors()[0]
    key = ".".join(str(p) for p in error["loc"] if not str(p).startswith("function-"))
    return key, str(error["msg"]).removeprefix("Value error, ")
