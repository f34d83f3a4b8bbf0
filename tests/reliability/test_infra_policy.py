"""Infrastructure policy: every CloudFormation template of the repository (infra/ and
model-deploy/templates/) passes cfn-lint and checkov with no finding, and every suppression of
either tool is justified where it is written.

* cfn-lint (its Python API, the version pinned by the project's dev extra) on every template.
* Suppressions, read from the templates' Metadata with cfn-lint's own YAML decoder (it keeps the
  line of every node, so the comments around an entry can be found):

  - cfn-lint: ``Metadata: cfn-lint: config: ignore_checks: [...]`` (cfn-lint's documented
    resource- and template-level configuration). YAML has no field for a reason, so the reason is
    a comment in the ``cfn-lint:`` block (or directly above it) that names each ignored rule id.
  - checkov: ``Metadata: checkov: skip: [{id, comment}]`` (checkov's CloudFormation suppression;
    it reports the comment as the suppression's reason). The comment is the reason.

  A suppression without a reason (fewer than eight words besides the ids) fails, and so does a
  stale one: each ignored cfn-lint rule must fire on its resource once the ignore is removed,
  and checkov must report exactly as many skipped checks as there are skip entries (one skip
  entry suppresses at most one result). Nothing may suppress findings outside the templates
  (no ``.cfnlintrc`` or ``.checkov.yaml``, no ``--skip-check``/``--soft-fail`` in the script).
* checkov (scripts/checkov.sh, as CI runs it before pytest) when its virtual environment holds
  the pinned version; skipped otherwise, with the command to create it (set
  ``SMBRIDGE_REQUIRE_CHECKOV=1`` to make a missing environment fail instead). The script's own
  guards are exercised on copies: a finding in its second folder, an unparseable template, a
  folder whose YAML is not CloudFormation and an empty folder each make it exit non-zero.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.sandbox.cfn import load_template

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIRS = ("infra", "model-deploy/templates")  # what scripts/checkov.sh scans
SUFFIXES = (".yaml", ".yml", ".json")
TEMPLATES = sorted(
    path
    for directory in TEMPLATE_DIRS
    for path in (REPO_ROOT / directory).iterdir()
    if path.suffix in SUFFIXES
)
CHECKOV_SCRIPT = REPO_ROOT / "scripts" / "checkov.sh"
CHECKOV_VENV = Path(os.environ.get("CHECKOV_VENV") or REPO_ROOT / ".venv-checkov")
# read here, before tests/conftest.py clears SMBRIDGE_* for each test
REQUIRE_CHECKOV = os.environ.get("SMBRIDGE_REQUIRE_CHECKOV") == "1"
MIN_REASON_WORDS = 8
CHECKOV_ID = re.compile(r"^(CKV2?_[A-Z0-9]+_[0-9]+|BC_[A-Z0-9_]+)$")
CFN_LINT_ID = re.compile(r"^[EWI][0-9]{4}$")
SKIP_DIRS = {"node_modules", "build", "dist", "__pycache__"}


def rel(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


# --------------------------------------------------------------------------- discovery


def looks_like_template(path: Path) -> bool:
    """A CloudFormation template: a mapping with AWSTemplateFormatVersion, or Resources whose
    entries have an ``AWS::`` Type."""
    text = path.read_text(errors="replace")
    if "AWSTemplateFormatVersion" not in text and "AWS::" not in text:
        return False
    try:
        document = load_template(path)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError):
        return False
    if not isinstance(document, dict):
        return False
    if "AWSTemplateFormatVersion" in document:
        return True
    resources = document.get("Resources")
    return isinstance(resources, dict) and any(
        isinstance(r, dict) and str(r.get("Type", "")).startswith("AWS::")
        for r in resources.values()
    )


def repository_files() -> Iterator[Path]:
    for root, dirs, files in os.walk(REPO_ROOT):
        dirs[:] = [
            d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS and "egg-info" not in d
        ]
        for name in files:
            if name.endswith(SUFFIXES):
                yield Path(root) / name


def test_every_template_of_the_repository_is_in_a_scanned_folder() -> None:
    found = sorted(p for p in repository_files() if looks_like_template(p))
    assert found == TEMPLATES, "a template outside infra/ and model-deploy/templates/ is unscanned"
    for directory in TEMPLATE_DIRS:
        assert any(p.parent == REPO_ROOT / directory for p in TEMPLATES), directory


# --------------------------------------------------------------------------- cfn-lint


@pytest.mark.parametrize("path", TEMPLATES, ids=rel)
def test_cfn_lint_reports_nothing(path: Path) -> None:
    from cfnlint.api import lint_file

    matches = lint_file(path)
    assert not matches, "\n".join(str(m) for m in matches)


# --------------------------------------------------------------------------- suppressions


@dataclass
class Suppression:
    tool: str  # "cfn-lint" or "checkov"
    file: str
    where: str  # a resource's logical id, or "Metadata" (template level)
    ids: list[str]
    reason: str
    problems: list[str]
    span: tuple[int, int] | None = None  # cfn-lint: the ignore_checks value's character span

    def __str__(self) -> str:
        return f"{self.file}:{self.where}: {self.tool} {self.ids}: {'; '.join(self.problems)}"


_COMMENT = re.compile(r"(?:^|\s)#(.*)$")


def _comments(lines: list[str], first: int, last: int) -> list[str]:
    """Comments on lines ``first..last`` (0-based, inclusive) and the comment lines directly
    above ``first``."""
    above = []
    line = first - 1
    while line >= 0 and lines[line].lstrip().startswith("#"):
        above.insert(0, lines[line].lstrip()[1:].strip())
        line -= 1
    inside = [
        m.group(1).strip() for text in lines[first : last + 1] if (m := _COMMENT.search(text))
    ]
    return above + inside


def _words(text: str, ids: list[str]) -> int:
    for check_id in ids:
        text = text.replace(check_id, " ")
    return len(re.findall(r"[A-Za-z]{2,}", text))


def _cfn_lint_suppression(
    file: str, where: str, key: Any, value: Any, lines: list[str]
) -> Suppression:
    problems: list[str] = []
    config = value.get("config") if isinstance(value, dict) else None
    if not isinstance(config, dict):
        return Suppression("cfn-lint", file, where, [], "", ["cfn-lint metadata without config"])
    unknown = sorted(set(value) - {"config"}) + sorted(set(config) - {"ignore_checks"})
    if unknown:
        problems.append(f"unreviewed cfn-lint settings {unknown} (extend this test to judge them)")
    ignored = config.get("ignore_checks", [])
    if isinstance(ignored, str):
        ignored = [ignored]
    ids = [str(i) for i in ignored]
    bad = [i for i in ids if not CFN_LINT_ID.match(i)]
    if bad:
        problems.append(f"not a single cfn-lint rule id: {bad} (prefixes ignore whole families)")
    node = config.get("ignore_checks")
    last = node.end_mark.line if hasattr(node, "end_mark") else key.start_mark.line
    comments = _comments(lines, key.start_mark.line, last)
    reason = " ".join(comments)
    for check_id in ids:
        if not any(check_id in c for c in comments):
            problems.append(f"no comment in the cfn-lint block names {check_id} and says why")
    if _words(reason, ids) < MIN_REASON_WORDS:
        problems.append(f"reason too short: {reason!r}")
    span = (node.start_mark.index, node.end_mark.index) if hasattr(node, "start_mark") else None
    return Suppression("cfn-lint", file, where, ids, reason, problems, span)


def _checkov_suppressions(file: str, where: str, value: Any) -> list[Suppression]:
    skips = value.get("skip") if isinstance(value, dict) else None
    if not isinstance(skips, list):
        return [Suppression("checkov", file, where, [], "", ["checkov metadata without skip list"])]
    found = []
    for skip in skips:
        problems = []
        skip = skip if isinstance(skip, dict) else {"id": skip}
        check_id, comment = str(skip.get("id", "")), skip.get("comment")
        if not CHECKOV_ID.match(check_id):
            problems.append(f"not a checkov check id: {check_id!r}")
        if not isinstance(comment, str) or _words(comment, [check_id]) < MIN_REASON_WORDS:
            problems.append(f"no reason (comment) that says why it is safe: {comment!r}")
        found.append(Suppression("checkov", file, where, [check_id], str(comment or ""), problems))
    return found


def suppressions(text: str, file: str) -> list[Suppression]:
    """Every cfn-lint and checkov suppression in a template's text, with what is wrong with it."""
    from cfnlint.decode import decode_str

    template, errors = decode_str(text)
    assert not errors, f"{file}: cfn-lint cannot decode it: {errors}"
    lines = text.splitlines()
    holders: list[tuple[str, Any]] = [("Metadata", template.get("Metadata"))]
    holders += [
        (name, resource.get("Metadata"))
        for name, resource in (template.get("Resources") or {}).items()
        if isinstance(resource, dict)
    ]
    found: list[Suppression] = []
    for where, metadata in holders:
        if not isinstance(metadata, dict):
            continue
        for key, value in metadata.items():
            if key == "cfn-lint":
                found.append(_cfn_lint_suppression(file, where, key, value, lines))
            elif key in ("checkov", "bridgecrew") and where == "Metadata":
                problem = "checkov reads resource Metadata only: a template-level skip does nothing"
                found.append(Suppression("checkov", file, where, [], "", [problem]))
            elif key in ("checkov", "bridgecrew"):
                found += _checkov_suppressions(file, where, value)
    if re.search(r"checkov:skip=|cfn-lint:\s*disable", text):
        problem = "an inline suppression comment: use the resource's Metadata with a reason"
        found.append(Suppression("checkov", file, "text", [], "", [problem]))
    return found


ALL_SUPPRESSIONS = [s for path in TEMPLATES for s in suppressions(path.read_text(), rel(path))]


def test_every_suppression_carries_its_reason() -> None:
    unjustified = [str(s) for s in ALL_SUPPRESSIONS if s.problems]
    assert not unjustified, "\n".join(unjustified)
    assert ALL_SUPPRESSIONS, "the templates hold suppressions: the parser must find them"


UNJUSTIFIED = """\
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Metadata:
      cfn-lint:
        config:
          ignore_checks: [W3005]
      checkov:
        skip:
          - id: CKV_AWS_27
          - id: CKV_AWS_26
            comment: fine
  Other:
    Type: AWS::SQS::Queue
    Metadata:
      cfn-lint:
        # W1001 flags the Ref to a parameter whose default is empty, which a Rule rejects
        config:
          ignore_checks: [E3002, W1001]
"""

JUSTIFIED = """\
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Metadata:
      cfn-lint:
        config:
          # W3005 flags the explicit DependsOn, which is kept because the queue policy must exist
          # before the rule can deliver
          ignore_checks: [W3005]
      checkov:
        skip:
          - id: CKV_AWS_27
            comment: >-
              Encrypted with SSE-SQS, which this check does not recognise as encryption at rest.
"""


def test_the_suppression_check_can_fail() -> None:
    """An ignore without a comment, skips without or with a one-word reason, and a reason that
    does not name the rule it excuses: each is reported; the justified twin passes."""
    found = {(s.where, tuple(s.ids)): s.problems for s in suppressions(UNJUSTIFIED, "x.yaml")}
    assert set(found) == {
        ("Queue", ("W3005",)),
        ("Queue", ("CKV_AWS_27",)),
        ("Queue", ("CKV_AWS_26",)),
        ("Other", ("E3002", "W1001")),
    }
    assert all(found.values()), found
    assert found[("Other", ("E3002", "W1001"))] == [
        "no comment in the cfn-lint block names E3002 and says why"
    ]
    good = suppressions(JUSTIFIED, "y.yaml")
    assert len(good) == 2 and [s.problems for s in good] == [[], []], good


CFN_LINT_IGNORES = [s for s in ALL_SUPPRESSIONS if s.tool == "cfn-lint"]


@pytest.mark.parametrize(
    "suppression", CFN_LINT_IGNORES, ids=lambda s: f"{s.file}:{s.where}:{','.join(s.ids)}"
)
def test_each_cfn_lint_ignore_is_still_needed(suppression: Suppression) -> None:
    """Without its ignore, the rule fires on that resource (a stale ignore hides nothing today
    but would hide tomorrow's real finding)."""
    from cfnlint.api import lint

    assert suppression.span is not None
    text = (REPO_ROOT / suppression.file).read_text()
    start, end = suppression.span
    for check_id in suppression.ids:
        rest = [i for i in suppression.ids if i != check_id]
        changed = text[:start] + "[" + ", ".join(rest) + "]" + text[end:]
        fired = [
            m
            for m in lint(changed)
            if m.rule.id == check_id
            and (suppression.where == "Metadata" or m.path[:2] == ["Resources", suppression.where])
        ]
        assert fired, f"{suppression.file}:{suppression.where}: {check_id} no longer fires"


# --------------------------------------------------------------------------- checkov


def test_the_script_scans_every_folder_and_suppresses_nothing_itself() -> None:
    script = CHECKOV_SCRIPT.read_text()
    (loop,) = re.findall(r"^for directory in (.+); do$", script, re.M)
    assert loop.split() == list(TEMPLATE_DIRS)
    for option in ("--skip-check", "--soft-fail", "--check ", "--skip-path", "--baseline"):
        assert option not in script, option
    for config in (".checkov.yaml", ".checkov.yml", ".cfnlintrc", ".cfnlintrc.yaml"):
        for directory in (".", *TEMPLATE_DIRS):
            assert not (REPO_ROOT / directory / config).exists(), f"{directory}/{config}"


def pinned_checkov_version() -> str:
    (version,) = re.findall(r'^CHECKOV_VERSION="([^"]+)"$', CHECKOV_SCRIPT.read_text(), re.M)
    return version


@pytest.fixture(scope="module")
def checkov_venv() -> Path:
    python = CHECKOV_VENV / "bin" / "python"
    pinned = pinned_checkov_version()
    installed = None
    if python.exists():
        probe = subprocess.run(
            [
                str(python),
                "-c",
                "from importlib.metadata import version; print(version('checkov'))",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        installed = probe.stdout.strip() if probe.returncode == 0 else None
    if installed != pinned:
        reason = (
            f"checkov {pinned} is not installed in {CHECKOV_VENV} (found {installed or 'none'}): "
            "run `bash scripts/checkov.sh` once to create it (CI runs it before pytest)"
        )
        if REQUIRE_CHECKOV:
            pytest.fail(reason)
        pytest.skip(reason)
    return CHECKOV_VENV


def run_script(root: Path, venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CHECKOV_")}
    return subprocess.run(
        ["bash", str(root / "scripts" / "checkov.sh"), *args],
        env={**environment, "CHECKOV_VENV": str(venv)},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def script_sections(stdout: str) -> dict[str, dict[str, Any]]:
    """``scripts/checkov.sh -o json`` prints ``<folder>:`` then checkov's JSON, per folder."""
    sections = re.split(r"^(\S+):\n", stdout, flags=re.M)[1:]
    return {
        name: json.loads(body) for name, body in zip(sections[::2], sections[1::2], strict=True)
    }


def test_checkov_reports_nothing_on_every_template(checkov_venv: Path) -> None:
    run = run_script(REPO_ROOT, checkov_venv, "-o", "json")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    sections = script_sections(run.stdout)
    assert list(sections) == list(TEMPLATE_DIRS)
    for directory, report in sections.items():
        summary = report["summary"]
        assert report["results"]["failed_checks"] == [], directory
        assert (summary["failed"], summary["parsing_errors"]) == (0, 0), (directory, summary)
        here = [p for p in TEMPLATES if p.parent == REPO_ROOT / directory]
        # every resource of every template was read: checkov skips a file it does not take for
        # CloudFormation without a word
        resources = sum(len(load_template(p)["Resources"]) for p in here)
        assert summary["resource_count"] == resources, (directory, summary)
        # one skip entry suppresses at most one result: equal counts mean none is stale
        skips = [
            s for s in ALL_SUPPRESSIONS if s.tool == "checkov" and s.file.startswith(directory)
        ]
        assert summary["skipped"] == len(skips), (directory, summary, [str(s) for s in skips])


def _tree(tmp_path: Path, infra: dict[str, str], deploy: dict[str, str]) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(CHECKOV_SCRIPT, tmp_path / "scripts" / "checkov.sh")
    for folder, files in (("infra", infra), ("model-deploy/templates", deploy)):
        (tmp_path / folder).mkdir(parents=True)
        for name, text in files.items():
            (tmp_path / folder / name).write_text(text)
    return tmp_path


def _without_metadata(path: Path) -> str:
    template = load_template(path)
    for resource in template["Resources"].values():
        resource.pop("Metadata", None)
    return json.dumps(template)


def test_the_script_fails_on_a_finding_in_its_second_folder(
    checkov_venv: Path, tmp_path: Path
) -> None:
    """checkov 3.3.30 given two --directory options scans the first twice: the script runs once
    per folder, so a finding in the second one counts."""
    serverless = REPO_ROOT / "model-deploy" / "templates" / "serverless.yaml"
    clean = (REPO_ROOT / "infra" / "model-package-group-policy.yaml").read_text()
    root = _tree(
        tmp_path, {"group.yaml": clean}, {"serverless.json": _without_metadata(serverless)}
    )
    run = run_script(root, checkov_venv)
    assert run.returncode != 0, run.stdout
    model_deploy = run.stdout.split("model-deploy/templates:", 1)[1]
    assert "CKV_AWS_370" in model_deploy, run.stdout


def test_the_script_fails_on_an_unparseable_template_or_a_folder_without_one(
    checkov_venv: Path, tmp_path: Path
) -> None:
    """checkov exits 0 on a template it cannot parse, and prints nothing for a folder whose YAML
    is not CloudFormation: the script counts both as findings."""
    broken = (
        'AWSTemplateFormatVersion: "2010-09-09"\nResources:\n  Q:\n    Type: [AWS::SQS::Queue\n'
    )
    not_a_template = "name: model-deploy notes\nsteps: [staging, production]\n"
    root = _tree(tmp_path, {"broken.yaml": broken}, {"notes.yaml": not_a_template})
    run = run_script(root, checkov_venv)
    assert run.returncode != 0, run.stdout
    assert "could not parse a template in infra" in run.stderr, run.stderr
    assert "scanned no CloudFormation resource in model-deploy/templates" in run.stderr, run.stderr


def test_the_script_fails_on_an_empty_folder(checkov_venv: Path, tmp_path: Path) -> None:
    run = run_script(_tree(tmp_path, {}, {}), checkov_venv)
    assert run.returncode != 0, run.stdout
    for directory in TEMPLATE_DIRS:
        assert f"no CloudFormation template in {directory}" in run.stderr, run.stderr
