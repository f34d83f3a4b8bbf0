"""botocore failures as one-line :class:`~bridge.errors.ServiceError` messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from bridge.errors import CredentialsError, ServiceError

T = TypeVar("T")


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip()
    return str(exc) or type(exc).__name__


NO_CREDENTIALS = (
    "no AWS credentials; configure the default chain (environment, profile, AWSShellScript@1) "
    "or use --role-arn / --web-identity"
)


def aws_call(
    what: str,
    func: Callable[..., T],
    /,
    *,
    tolerate: Callable[[ClientError], bool] | None = None,
    **kwargs: Any,
) -> T | None:
    """Call ``func(**kwargs)``; turn botocore failures into one-line bridge errors.

    ``tolerate``: a service error it accepts (e.g. "does not exist") makes the call return
    ``None`` instead of raising.
    """
    try:
        return func(**kwargs)
    except NoCredentialsError:
        raise CredentialsError(f"{what}: {NO_CREDENTIALS}") from None
    except ClientError as exc:
        if tolerate is not None and tolerate(exc):
            return None
        raise ServiceError(f"{what} failed: {describe(exc)}") from exc
    except BotoCoreError as exc:
        raise ServiceError(f"{what} failed: {describe(exc)}") from exc
