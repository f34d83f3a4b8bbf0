"""The layers, enforced (docs/architecture.md): the import-linter contracts in pyproject.toml
hold, and the trigger's Lambda package lists exactly the modules its handler imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grimp
from importlinter.api import read_configuration

from bridge.trigger.package import BRIDGE_MODULES

REPO_ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = REPO_ROOT / "pyproject.toml"
LAMBDA_HANDLER = "bridge.trigger.handler"


def test_the_import_contracts_hold():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache", "--no-logo", str(PYPROJECT)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_only_the_cli_has_ignored_imports():
    """Every other layer keeps the contracts outright; the CLI's exceptions are temporary."""
    contracts = read_configuration(str(PYPROJECT))["contracts_options"]
    assert contracts, "no [[tool.importlinter.contracts]] in pyproject.toml"
    for contract in contracts:
        for ignored in contract.get("ignore_imports", []):
            importer = ignored.split("->")[0].strip()
            assert importer == "bridge.cli" or importer.startswith("bridge.cli."), (
                f"contract {contract['name']!r} ignores {ignored!r}: fix the import instead"
            )


def _module_file(module: str) -> str:
    """``bridge.trigger.handler`` -> ``trigger/handler.py`` (relative to bridge/, as listed)."""
    parts = module.split(".")[1:]
    package_dir = REPO_ROOT.joinpath("bridge", *parts)
    if (package_dir / "__init__.py").is_file():
        return "/".join([*parts, "__init__.py"])
    return "/".join(parts) + ".py"


def test_the_lambda_package_lists_exactly_what_the_handler_imports():
    # Only imports that run count (the zip need not carry a TYPE_CHECKING import); imports inside
    # functions do. Python also loads every parent package of an imported module.
    graph = grimp.build_graph("bridge", exclude_type_checking_imports=True, cache_dir=None)
    imported = {LAMBDA_HANDLER, *graph.find_upstream_modules(LAMBDA_HANDLER)}
    modules = {m for m in imported if m == "bridge" or m.startswith("bridge.")}
    with_parents = {".".join(m.split(".")[:n]) for m in modules for n in range(1, m.count(".") + 2)}
    needed = {_module_file(m) for m in with_parents}

    listed = set(BRIDGE_MODULES)
    assert len(listed) == len(BRIDGE_MODULES), "BRIDGE_MODULES lists a module twice"
    assert not needed - listed, f"imported by {LAMBDA_HANDLER} but not packaged: {needed - listed}"
    assert not listed - needed, f"packaged but not imported by {LAMBDA_HANDLER}: {listed - needed}"
    for name in BRIDGE_MODULES:
        assert (REPO_ROOT / "bridge" / name).is_file(), f"BRIDGE_MODULES: bridge/{name} is missing"
