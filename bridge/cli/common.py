"""What cli.py and cli_ado.py share: declaring a command, required settings, parameters."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from bridge.errors import UserError, first_error


def add_command(
    parent: Any,
    name: str,
    help_text: str,
    handler: Callable[..., int],
    *,
    parents: argparse.ArgumentParser,
    epilog: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """A leaf command under ``parent`` (a subparsers object) that runs ``handler``."""
    sub = parent.add_parser(
        name,
        help=help_text,
        description=description or help_text,
        parents=[parents],
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.set_defaults(handler=handler)
    return sub


def require(value: Any, key: str, flag: str) -> Any:
    """``value``, or a one-line error naming the bridge.yaml key and the flag that set it."""
    if value in (None, ""):
        raise UserError(f"{key} is not set: add it to bridge.yaml or pass {flag}")
    return value


def validated(model: Callable[..., Any], fields: dict[str, Any]) -> Any:
    """``model(**fields)``, a pydantic model or factory; its first error as one line."""
    from pydantic import ValidationError

    try:
        return model(**fields)
    except ValidationError as exc:
        key, message = first_error(exc)
        raise UserError(f"{key}: {message}" if key else message) from None
