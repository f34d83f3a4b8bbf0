"""ruff check and ruff format are part of the test suite, so CI enforces them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _ruff() -> list[str]:
    candidate = Path(sys.executable).with_name("ruff")
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which("ruff")
    if not found:
        pytest.fail("ruff is not installed: pip install -e '.[dev]'")
    return [found]


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]])
def test_ruff_is_clean(args):
    result = subprocess.run([*_ruff(), *args], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


OUTSIDE = re.compile(r"\.\./shared|\"shared\"\s*/\s*\"reference\"|parents?\[\d+\]\.parent\b")


def test_nothing_reads_outside_the_repository():
    """A user's clone has no sibling folders: the reference data lives in reference/."""
    roots = ["bridge", "tests", "benchmarks", "model-build", "model-deploy", "scripts", ".ci"]
    offenders = []
    for root in roots:
        for path in (REPO_ROOT / root).rglob("*"):
            if path.suffix not in (".py", ".sh", ".yml", ".yaml", "") or not path.is_file():
                continue
            if path == Path(__file__):
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if OUTSIDE.search(line):
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_reference_data_names_its_source_and_licence():
    readme = (REPO_ROOT / "reference" / "README.md").read_text()
    files = [
        p for p in (REPO_ROOT / "reference").rglob("*.json") if p.parent.name != "ado-examples"
    ]
    assert files
    for path in files:
        listed = (
            readme if path.parent.name == "reference" else (path.parent / "README.md").read_text()
        )
        assert f"`{path.name}`" in listed, f"{path.name} has no source/licence line"
    assert "MIT" in readme
