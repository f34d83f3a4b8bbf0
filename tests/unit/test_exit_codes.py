"""Exit codes live on the exception classes only; the help and the README agree with them."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import bridge
from bridge.cli.app import build_parser
from bridge.errors import BridgeError, exit_codes, exit_codes_epilog

README = Path(__file__).resolve().parents[2] / "README.md"


def _all_error_classes() -> set[type[BridgeError]]:
    for module in pkgutil.walk_packages(bridge.__path__, "bridge."):
        if module.name.endswith(("pipeline.sdk", "trigger.handler", "__main__")):
            continue  # the SDK, the Lambda entry and `python -m bridge` (runs the CLI)
        importlib.import_module(module.name)
    found: set[type[BridgeError]] = set()
    stack = [BridgeError]
    while stack:
        cls = stack.pop()
        found.add(cls)
        stack.extend(cls.__subclasses__())
    return found


def test_every_error_class_exits_with_a_documented_code():
    documented = {code for code, _ in exit_codes()}
    for cls in _all_error_classes():
        assert cls.exit_code in documented, f"{cls.__module__}.{cls.__name__}: {cls.exit_code}"


def test_readme_table_lists_exactly_the_codes():
    section = README.read_text().split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = [int(code) for code in re.findall(r"^\| (\d+) \|", section, re.M)]
    assert rows == [code for code, _ in exit_codes()]


def test_help_shows_the_generated_table():
    assert build_parser().epilog == exit_codes_epilog()
    for code, meaning in exit_codes():
        assert f"  {code:<4} {meaning}" in exit_codes_epilog()
