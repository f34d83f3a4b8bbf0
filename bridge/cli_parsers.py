"""The one way smbridge declares a (sub)command, shared by cli.py and cli_ado.py."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


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
