"""Azure Pipelines YAML under azure-pipelines/: the reference schema, and the rules the files keep.

Schema: ``reference/azure-pipelines-yaml.schema.json`` (draft-07, the schema of the
Azure Pipelines VS Code extension; it knows the built-in tasks and their inputs, not marketplace
extensions such as the AWS Toolkit).

How a file is checked against it: the PyYAML parse, as it is, with a plain Draft7Validator. The
schema types the pipeline's own scalars as strings (``timeoutInMinutes``, ``batch``,
``fetchDepth``, ``isSkippable``), so the files quote them (``timeoutInMinutes: "400"``; Azure
Pipelines reads them as strings anyway); task ``inputs`` keep their declared types. The schema is
loose in places (``variables`` as a mapping accepts anything, ``pool`` allows extra keys), which
is fine; ``test_schema_rejects_broken_yaml`` proves the check does fail on a misspelled key, an
unknown step key, and task inputs of the wrong type or value.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

REPO_ROOT = Path(__file__).resolve().parents[2]
PIPELINES_DIR = REPO_ROOT / "azure-pipelines"
MODEL_BUILD = PIPELINES_DIR / "model-build.yml"
SCHEMA_PATH = REPO_ROOT / "reference" / "azure-pipelines-yaml.schema.json"
YAML_FILES = sorted(p for p in PIPELINES_DIR.rglob("*") if p.suffix in (".yml", ".yaml"))

ALLOWED_SMBRIDGE_COMMANDS = {
    ("pipeline", "build"),
    ("pipeline", "upsert"),
    ("pipeline", "start"),
    ("pipeline", "status"),
    ("pipeline", "stop"),
    # model-deploy.yml (smbridge prepare and smbridge deploy take no second word, so this scan
    # does not see them; tests/unit/test_model_deploy_yaml.py checks every invocation there)
    ("endpoint", "test"),
    ("registry", "describe"),
}
# Predefined variables whose value the pipeline author does not control. Even these are not used
# as $(...) in scripts here (the scripts read $BUILD_ARTIFACTSTAGINGDIRECTORY etc.), but the
# rule only forbids macros for values someone could influence.
FIXED_PREDEFINED = {
    "Build.ArtifactStagingDirectory",
    "Build.SourcesDirectory",
    "Build.BinariesDirectory",
    "Pipeline.Workspace",
    "Agent.TempDirectory",
    "System.DefaultWorkingDirectory",
}
SCRIPT_KEYS = ("script", "bash", "pwsh", "powershell")
BUILD_CONDITION = (
    "and(succeeded(), eq(variables['Build.SourceBranch'], 'refs/heads/main'), "
    "ne(variables['Build.Reason'], 'PullRequest'))"
)
TRIGGER_PATHS = {"model-build/**", "bridge/**", "bridge.yaml", "azure-pipelines/model-build.yml"}


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def schema_errors(validator: Draft7Validator, document: Any) -> list[str]:
    """Errors of the document exactly as PyYAML parses it (no coercion: what Microsoft's schema,
    and the VS Code extension that uses it, sees)."""
    errors = sorted(validator.iter_errors(document), key=lambda e: e.path)
    messages = []
    for error in errors:
        # anyOf errors nest the useful detail; show the deepest, most specific ones
        leaves = [e for e in error.context if not e.context] or [error]
        best = min(leaves, key=lambda e: len(e.message))
        messages.append(f"at /{'/'.join(map(str, error.path))}: {best.message[:300]}")
    return messages


def stages(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["stage"]: s for s in doc["stages"]}


def expand_steps(steps: list[dict[str, Any]], base: Path) -> Iterator[dict[str, Any]]:
    """Steps with ``- template:`` entries replaced by the template's steps (unexpanded text)."""
    for step in steps:
        if "template" in step:
            template = load(base.parent / step["template"])
            yield from expand_steps(template["steps"], base.parent / step["template"])
        else:
            yield step


DEPLOYMENT_HOOKS = ("preDeploy", "deploy", "routeTraffic", "postRouteTraffic")


def job_step_lists(job: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """A job's steps; for a deployment job, the steps of every lifecycle hook of its strategy."""
    yield job.get("steps", [])
    if "deployment" not in job:
        return  # a regular job's strategy is a matrix or parallel slices, not hooks
    for strategy in (job.get("strategy") or {}).values():
        if not isinstance(strategy, dict):
            continue
        hooks = [strategy.get(name) or {} for name in DEPLOYMENT_HOOKS]
        hooks += list((strategy.get("on") or {}).values())
        for hook in hooks:
            yield hook.get("steps", [])


def all_steps(doc: dict[str, Any], base: Path = MODEL_BUILD) -> Iterator[tuple[str, dict]]:
    for stage in doc.get("stages", []):
        for job in stage.get("jobs", []):
            for steps in job_step_lists(job):
                for step in expand_steps(steps, base):
                    yield stage["stage"], step


def job_steps(doc: dict[str, Any], stage: str) -> list[dict[str, Any]]:
    (job,) = stages(doc)[stage]["jobs"]
    return list(expand_steps(job["steps"], MODEL_BUILD))


def script_body(step: dict[str, Any]) -> str | None:
    for key in SCRIPT_KEYS:
        if key in step:
            return step[key]
    if "inputs" in step and "inlineScript" in step["inputs"]:
        return step["inputs"]["inlineScript"]
    return None


def smbridge_commands(text: str) -> list[tuple[str, str]]:
    return [
        (m.group(1), m.group(2))
        for m in re.finditer(r"(?:^|[;&|(\s])smbridge\s+([a-z][a-z-]*)\s+([a-z][a-z-]*)", text)
    ]


@pytest.fixture(scope="module")
def model_build() -> dict[str, Any]:
    return load(MODEL_BUILD)


# --------------------------------------------------------------------------- schema


def test_yaml_files_found() -> None:
    assert MODEL_BUILD in YAML_FILES
    assert SCHEMA_PATH.is_file(), SCHEMA_PATH


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(PIPELINES_DIR)))
def test_schema_accepts(validator: Draft7Validator, path: Path) -> None:
    assert schema_errors(validator, load(path)) == []


def test_typed_scalars_where_the_schema_wants_strings_are_rejected(
    validator: Draft7Validator, model_build: dict[str, Any]
) -> None:
    """``fetchDepth: 1`` (an int) is what the schema rejected once: it wants a string."""
    assert schema_errors(validator, model_build) == []
    for key, typed in (("fetchDepth", 1), ("timeoutInMinutes", 30)):
        broken = copy.deepcopy(model_build)
        job = broken["stages"][0]["jobs"][0]
        target = job["steps"][0] if key == "fetchDepth" else job
        target[key] = typed
        assert schema_errors(validator, broken), key


def _mutations(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    broken = copy.deepcopy(doc)
    broken["stagez"] = broken.pop("stages")
    yield "misspelled top-level key", broken

    def first_task(d: dict[str, Any], name: str) -> dict[str, Any]:
        for stage in d["stages"]:
            for job in stage["jobs"]:
                for step in job["steps"]:
                    if step.get("task") == name:
                        return step
        raise AssertionError(name)

    broken = copy.deepcopy(doc)
    first_task(broken, "PublishTestResults@2")["inputs"]["testResultsFormat"] = "JUnitXml"
    yield "task input outside its allowed values", broken

    broken = copy.deepcopy(doc)
    first_task(broken, "PublishTestResults@2")["inputs"]["failTaskOnMissingResultsFile"] = "sure"
    yield "boolean task input given a string", broken

    broken = copy.deepcopy(doc)
    first_task(broken, "PublishPipelineArtifact@1")["inputs"]["parallelCount"] = ["8"]
    yield "integer task input given a list", broken

    broken = copy.deepcopy(doc)
    first_task(broken, "PublishTestResults@2")["inputs"]["testResultFiles"] = "x.xml"
    yield "unknown task input", broken

    broken = copy.deepcopy(doc)
    step = stages(broken)["Validate"]["jobs"][0]["steps"][-1]
    step["displayNam"] = step.pop("displayName")
    yield "misspelled step key", broken

    broken = copy.deepcopy(doc)
    broken["stages"][0]["jobs"][0]["steps"].append({"task": "AWSShellScript@1", "inputs": {}})
    yield "task the schema does not know", broken


@pytest.mark.parametrize("case", [name for name, _ in _mutations(load(MODEL_BUILD))])
def test_schema_rejects_broken_yaml(
    validator: Draft7Validator, model_build: dict[str, Any], case: str
) -> None:
    broken = dict(_mutations(model_build))[case]
    assert schema_errors(validator, broken), f"schema accepted: {case}"


def test_schema_rejects_broken_yaml_text(validator: Draft7Validator) -> None:
    text = MODEL_BUILD.read_text(encoding="utf-8").replace("\nstages:\n", "\nstagez:\n", 1)
    assert "stagez:" in text
    assert schema_errors(validator, yaml.safe_load(text))


# --------------------------------------------------------------------------- structure


def test_triggers(model_build: dict[str, Any]) -> None:
    for block in ("trigger", "pr"):
        trigger = model_build[block]
        assert trigger["branches"]["include"] == ["main"], block
        assert set(trigger["paths"]["include"]) >= TRIGGER_PATHS, block
    # every template the pipeline includes also triggers it
    assert "azure-pipelines/templates/**" in model_build["trigger"]["paths"]["include"]


def test_variables_and_pip_cache(model_build: dict[str, Any]) -> None:
    variables = {v["name"]: v["value"] for v in model_build["variables"] if "name" in v}
    assert variables["pythonVersion"] == "3.11"
    assert variables["PIP_CACHE_DIR"]
    caches = [s for _, s in all_steps(model_build) if s.get("task") == "Cache@2"]
    assert caches
    assert all(s["inputs"]["path"] == "$(PIP_CACHE_DIR)" for s in caches)


def test_validate_always_runs_lint_tests_and_junit(model_build: dict[str, Any]) -> None:
    validate = stages(model_build)["Validate"]
    assert "condition" not in validate
    steps = job_steps(model_build, "Validate")
    scripts = "\n".join(filter(None, map(script_body, steps)))
    assert re.search(r"^\s*ruff check \.\s*$", scripts, re.M)
    assert re.search(r"^\s*ruff format --check \.\s*$", scripts, re.M)
    assert "pytest tests/unit --junitxml=test-results/unit.xml" in scripts
    assert any(
        s.get("task") == "UsePythonVersion@0" and s["inputs"]["versionSpec"] == "$(pythonVersion)"
        for s in steps
    )
    assert 'pip install -e ".[${INSTALL_EXTRAS}]"' in scripts
    (publish,) = [s for s in steps if s.get("task") == "PublishTestResults@2"]
    assert publish["condition"] == "succeededOrFailed()"
    assert publish["inputs"]["testResultsFormat"] == "JUnit"
    assert publish["inputs"]["testResultsFiles"] == "test-results/unit.xml"
    (build,) = [
        s for s in steps if ("pipeline", "build") in smbridge_commands(script_body(s) or "")
    ]
    body = " ".join(build["bash"].split())
    assert body == (
        "smbridge pipeline build --config bridge.yaml "
        '--out "$BUILD_ARTIFACTSTAGINGDIRECTORY/pipeline-definition.json"'
    )
    (artifact,) = [s for s in steps if s.get("task") == "PublishPipelineArtifact@1"]
    assert artifact["inputs"]["targetPath"] == (
        "$(Build.ArtifactStagingDirectory)/pipeline-definition.json"
    )
    assert steps.index(build) < steps.index(artifact)


def test_validate_stage_has_no_aws_access(model_build: dict[str, Any]) -> None:
    """PR builds run Validate: no job token for OIDC, no variable group, no --web-identity."""
    validate = stages(model_build)["Validate"]
    assert "variables" not in validate
    for step in job_steps(model_build, "Validate"):
        assert "SYSTEM_ACCESSTOKEN" not in step.get("env", {})
        assert "--web-identity" not in (script_body(step) or "")


def test_build_stage_only_on_main_and_never_for_prs(model_build: dict[str, Any]) -> None:
    build = stages(model_build)["Build"]
    assert " ".join(build["condition"].split()) == BUILD_CONDITION
    assert build["dependsOn"] == "Validate"
    assert any("group" in v for v in build["variables"])


def test_build_job_upserts_then_waits_with_keyless_credentials(model_build: dict[str, Any]) -> None:
    (job,) = stages(model_build)["Build"]["jobs"]
    assert int(job["timeoutInMinutes"]) >= 6 * 60 + 30
    steps = job_steps(model_build, "Build")
    by_name = {s["name"]: s for s in steps if "name" in s}
    upsert, start = by_name["upsert"], by_name["start"]
    assert upsert["bash"].strip() == "smbridge pipeline upsert --config bridge.yaml --web-identity"
    assert start["bash"].strip() == (
        "smbridge pipeline start --config bridge.yaml --web-identity --wait --timeout 6h"
    )
    assert steps.index(upsert) < steps.index(start)
    for step in (upsert, start):
        assert step["env"]["SYSTEM_ACCESSTOKEN"] == "$(System.AccessToken)"
        assert re.fullmatch(r"\$\([A-Za-z_][A-Za-z0-9_.]*\)", step["env"]["SMBRIDGE_AWS__ROLE_ARN"])
    (summary,) = [s for s in steps if s.get("displayName") == "Summary"]
    assert summary["env"] == {
        "PIPELINE_ARN": "$(upsert.pipelineArn)",
        "EXECUTION_ARN": "$(start.executionArn)",
    }
    assert "--web-identity" in "\n".join(filter(None, map(script_body, steps)))
    text = MODEL_BUILD.read_text(encoding="utf-8")
    assert "AWSShellScript@1" in text and "awsCredentials:" in text  # the commented alternative
    assert not any(s.get("task", "").startswith("AWSShellScript") for s in steps)


def file_steps(doc: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    steps = list(expand_steps(doc.get("steps", []), path))
    return steps + [s for _, s in all_steps(doc, path)]


def script_violations(step: dict[str, Any]) -> list[str]:
    """What a step's script does against the env-only rule (empty when it keeps it)."""
    body = script_body(step)
    if body is None:
        return []
    problems = []
    if "${{" in body:
        problems.append("template expression spliced into the script")
    for macro in re.findall(r"\$\(([^)]*)\)", body):
        if macro not in FIXED_PREDEFINED:
            problems.append(f"$({macro}) spliced into the script")
    if re.search(r"(?:^|[;&|(\s])smbridge\s", body):
        # inputs of smbridge calls: literal flags, or environment variables from env: or the agent
        env = set(step.get("env", {}))
        for var in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", body):
            if var not in env and not var.startswith(("BUILD_", "SYSTEM_", "AGENT_")):
                problems.append(f"${var} is neither in env: nor predefined")
    return problems


def test_rule_checkers_catch_violations() -> None:
    """The two rule checks below must be able to fail."""
    assert script_violations({"bash": "smbridge pipeline start --timeout ${{ parameters.t }}"})
    assert script_violations({"bash": "smbridge pipeline start --pipeline-name $(name)"})
    assert script_violations({"bash": "smbridge pipeline start --pipeline-name $NAME"})
    assert not script_violations(
        {"bash": "smbridge pipeline start --pipeline-name $NAME", "env": {"NAME": "$(name)"}}
    )
    assert smbridge_commands("x && smbridge model deploy --x") == [("model", "deploy")]
    assert ("model", "deploy") not in ALLOWED_SMBRIDGE_COMMANDS


def test_scripts_take_values_from_env_only() -> None:
    checked = 0
    for path in YAML_FILES:
        for step in file_steps(load(path), path):
            problems = script_violations(step)
            assert not problems, f"{path.name}: {step.get('displayName')!r}: {problems}"
            checked += script_body(step) is not None
    assert checked >= 5


def test_smbridge_commands_are_known() -> None:
    found: set[tuple[str, str]] = set()
    for path in YAML_FILES:
        doc = load(path)
        bodies = [script_body(s) or "" for s in file_steps(doc, path)]
        # commented-out alternatives count too: strip the comment markers and scan every line
        commented = [
            re.sub(r"^\s*#\s?", "", line)
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.lstrip().startswith("#")
        ]
        command_lines = [
            line
            for line in commented
            # commented YAML (indented, or a step key), not prose that starts with the word
            if re.match(r"(\s+|\s*-\s+(bash|script):\s*|(bash|script):\s*)smbridge\s", line)
        ]
        for text in [*bodies, *command_lines]:
            for command in smbridge_commands(text):
                assert command in ALLOWED_SMBRIDGE_COMMANDS, f"{path.name}: smbridge {command}"
                found.add(command)
    assert {("pipeline", "build"), ("pipeline", "upsert"), ("pipeline", "start")} <= found
