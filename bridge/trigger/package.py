"""Build the trigger Lambda's deployment zip: the trigger's part of ``bridge`` and its
dependencies, without boto3 (the Lambda runtime provides it) and never the SageMaker SDK.

Two ways to get the dependencies:
* ``pip`` (default): ``pip install --target`` wheels for the Lambda platform (python3.12,
  arm64: ``manylinux2014_aarch64``), from PyPI.
* ``environment``: copy the distributions installed in this Python (offline; the result only runs
  on a Lambda whose platform matches this machine, so it is for tests and local checks).
The zip is reproducible: sorted entries, fixed timestamps. When this Python's version is the
target's, it also carries bytecode, so a cold start does not compile.
"""

from __future__ import annotations

import compileall
import hashlib
import importlib.metadata as metadata
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from bridge.errors import BridgeError, UserError

# What the trigger imports; boto3/botocore come with the Lambda runtime.
REQUIREMENTS = ("aws-lambda-powertools==3.37.0", "pydantic>=2.6", "requests>=2.31")
PROVIDED_BY_RUNTIME = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
)
BRIDGE_MODULES = (
    "__init__.py",
    "errors.py",
    "azure_devops/__init__.py",
    "azure_devops/client.py",
    "azure_devops/credentials.py",
    "trigger/__init__.py",
    "trigger/decision.py",
    "trigger/events.py",
    "trigger/handler.py",
    "trigger/ledger.py",
    "trigger/routing.py",
    "trigger/settings.py",
    "trigger/starter.py",
)
FIXED_TIME = (2020, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class PackageResult:
    path: Path
    size_bytes: int
    unpacked_bytes: int
    files: int
    sha256: str
    compiled: bool


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distribution_closure(roots: tuple[str, ...], exclude: frozenset[str]) -> list[str]:
    """Installed distributions needed by ``roots`` (transitively), minus ``exclude``."""
    seen: dict[str, str] = {}
    pending = [re.split(r"[<>=!~;\[ ]", root, maxsplit=1)[0] for root in roots]
    while pending:
        name = _normalise(pending.pop())
        if name in seen or name in exclude:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise UserError(
                f"{name} is not installed here; install smbridge[trigger] or use the pip mode"
            ) from None
        seen[name] = dist.metadata["Name"]
        for requirement in dist.requires or []:
            if "extra ==" in requirement:
                continue
            if ";" in requirement and not _marker_applies(requirement.split(";", 1)[1]):
                continue
            pending.append(re.split(r"[<>=!~;\[ (]", requirement.strip(), maxsplit=1)[0])
    return sorted(seen.values())


def _marker_applies(marker: str) -> bool:
    try:
        from packaging.markers import Marker
    except ImportError:  # pragma: no cover - packaging ships with pip/setuptools
        return True
    return Marker(marker.strip()).evaluate()


def _copy_from_environment(target: Path) -> None:
    roots = ("aws-lambda-powertools", "pydantic", "requests")
    for name in distribution_closure(roots, PROVIDED_BY_RUNTIME):
        dist = metadata.distribution(name)
        for file in dist.files or []:
            source = Path(dist.locate_file(file))
            parts = Path(str(file)).parts
            if not source.is_file() or ".." in parts or "__pycache__" in parts:
                continue
            destination = target / Path(str(file))
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


def _pip_install(target: Path, platform: str, python_version: str) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--target",
        str(target),
        "--platform",
        platform,
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--only-binary=:all:",
        "--no-compile",
        *REQUIREMENTS,
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise BridgeError(f"pip could not fetch the trigger's dependencies: {last}")
    for name in PROVIDED_BY_RUNTIME:  # pulled in transitively; the runtime has its own
        for path in target.glob(f"{name.replace('-', '_')}*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def build_package(
    out: Path,
    *,
    mode: str = "pip",
    platform: str = "manylinux2014_aarch64",
    python_version: str = "3.12",
) -> PackageResult:
    """Write the Lambda zip to ``out`` and describe it."""
    source_root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="smbridge-lambda-") as tmp:
        staging = Path(tmp)
        if mode == "environment":
            _copy_from_environment(staging)
            python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
        elif mode == "pip":
            _pip_install(staging, platform, python_version)
        else:
            raise UserError(f"--mode {mode!r}: expected pip or environment")
        for relative in BRIDGE_MODULES:
            destination = staging / "bridge" / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source_root / relative, destination)
        for stale in list(staging.rglob("__pycache__")):
            shutil.rmtree(stale)
        compiled = python_version == f"{sys.version_info.major}.{sys.version_info.minor}"
        if compiled:
            # Lambda's file system is read-only: without bytecode in the zip, every cold start
            # compiles every module again (about 1 s for pydantic, powertools and requests).
            # Unchecked hashes: valid whatever the (fixed) timestamps in the zip say.
            compileall.compile_dir(
                staging,
                quiet=1,
                workers=1,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        out.parent.mkdir(parents=True, exist_ok=True)
        unpacked = 0
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
            for path in files:
                info = zipfile.ZipInfo(path.relative_to(staging).as_posix(), FIXED_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                data = path.read_bytes()
                unpacked += len(data)
                archive.writestr(info, data)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    return PackageResult(out, out.stat().st_size, unpacked, len(files), digest, compiled)
