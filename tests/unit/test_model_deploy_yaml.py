"""azure-pipelines/model-deploy.yml: the schema, the approval gate, and how values flow.

The rules, each a function returning its problems (empty when the pipeline keeps it), so the
mutation tests at the end can show that every rule fails on a pipeline that breaks it:

- ``parameter_problems``: exactly the four parameters the approval trigger sends
  (``bridge.trigger.routing.RESERVED_PARAMETERS``), all ``string`` with default ``' '`` (a
  default of ``''`` makes a string parameter required in the Run pipeline panel; the scripts trim
  the blank away, see tests/unit/test_pipeline_outside_values.py); the Runs API answers 400 to an
  undeclared one.
- ``gate_problems``: the stage graph (``dependsOn``, by default the previous stage) is
  Prepare -> DeployStaging -> TestStaging -> DeployProd -> PostDeploy, each stage depending
  directly on the one before it and its condition implying that one succeeded (a small parser of
  Azure Pipelines condition expressions decides: ``succeeded()``, ``and(...)`` with such a term,
  ``eq(dependencies.X.result, 'Succeeded')``; anything with ``always()``, ``or``, ``not``,
  ``succeededOrFailed()`` ... does not). Nothing in DeployProd runs on failure, nothing in
  TestStaging can hide a failed test (``continueOnError``, ``enabled: false``). The one
  exception in DeployProd: ``PublishTestResults@2`` may run on failure (it publishes the smoke
  test's results and makes no AWS call).
- ``environment_problems``: every ``smbridge deploy --stage S`` runs in a deployment job whose
  environment ends in ``-S`` (so production goes through the environment's Approval check), the
  name fixed at compile time.
- ``script_problems``: no ``${{`` and no ``$(`` in any script body; every smbridge invocation
  is ``prepare``, ``deploy``, ``endpoint test`` or ``registry describe``.
- ``output_variable_problems``: every ``stageDependencies``/``dependencies`` reference names a
  direct dependency, a job there, and a step whose ``name:`` runs the smbridge command that sets
  that variable (deployment jobs need the ``<job>.`` prefix); every ``$(...)`` in an ``env:``
  is a variable defined for that step.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from bridge.cli.app import build_parser
from bridge.core.durations import parse_duration
from bridge.trigger.routing import RESERVED_PARAMETERS
from tests.unit import test_azure_pipelines_yaml as shared

MODEL_DEPLOY = shared.PIPELINES_DIR / "model-deploy.yml"

PARAMETERS = ("modelPackageArn", "modelPackageGroupName", "modelPackageVersion", "sourceEventId")
# The default of every parameter: blank, which the Run pipeline panel accepts (a default of ''
# would make the field required there) and the scripts trim to empty.
PLACEHOLDER = " "
# Tasks that may run after a failure in DeployProd: they publish results, deploy nothing.
RESULT_PUBLISHERS = {"PublishTestResults@2"}
CHAIN = ("Prepare", "DeployStaging", "TestStaging", "DeployProd", "PostDeploy")
SUBCOMMANDS = {("prepare",), ("deploy",), ("endpoint", "test"), ("registry", "describe")}
TWO_WORD_COMMANDS = {"endpoint", "registry", "pipeline", "trigger"}
# templates/setup-python.yml checks the install with this; it calls no AWS API.
VERSION_CHECK = ["--version"]
# The output variables each command sets (##vso[task.setvariable ...;isoutput=true]).
CLI_OUTPUTS = {
    ("prepare",): {"modelPackageArn", "modelPackageVersion"},
    ("deploy",): {"endpointName", "endpointArn", "stackName"},
}
# Variables from the smbridge-aws variable group, and predefined variables the env: may map.
GROUP_VARIABLES = {"AWS_ROLE_ARN"}
PREDEFINED_PREFIXES = ("System.", "Build.", "Pipeline.", "Agent.")
# Conditions that let a job or step run after a failure.
FAILURE_CONDITIONS = ("always()", "failed(", "canceled()", "succeededorfailed(")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    schema = json.loads(shared.SCHEMA_PATH.read_text(encoding="utf-8"))
    return Draft7Validator(schema)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return load()


def load() -> dict[str, Any]:
    return shared.load(MODEL_DEPLOY)


# --------------------------------------------------------------------------- navigation


def stage_map(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["stage"]: s for s in doc.get("stages", [])}


def job_name(job: dict[str, Any]) -> str:
    return job.get("job") or job.get("deployment") or ""


def is_deployment(job: dict[str, Any]) -> bool:
    return "deployment" in job


def raw_steps(job: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A job's own steps (templates not expanded), deployment hooks included, for mutation."""
    for steps in shared.job_step_lists(job):
        yield from steps


def steps_of(job: dict[str, Any]) -> list[dict[str, Any]]:
    """A job's steps with step templates expanded."""
    return [
        s for steps in shared.job_step_lists(job) for s in shared.expand_steps(steps, MODEL_DEPLOY)
    ]


def find_step(doc: dict[str, Any], stage: str, name: str) -> dict[str, Any]:
    for job in stage_map(doc)[stage]["jobs"]:
        for step in raw_steps(job):
            if step.get("name") == name:
                return step
    raise AssertionError(f"{stage}: no step named {name}")


def dependency_graph(doc: dict[str, Any]) -> dict[str, set[str]]:
    """Direct stage dependencies: ``dependsOn``, or the previous stage when it is absent."""
    graph: dict[str, set[str]] = {}
    previous: str | None = None
    for stage in doc.get("stages", []):
        name = stage["stage"]
        if "dependsOn" in stage:
            value = stage["dependsOn"]
            deps = {value} if isinstance(value, str) else set(value or [])
            graph[name] = {d for d in deps if d}
        else:
            graph[name] = {previous} if previous else set()
        previous = name
    return graph


def ancestors(graph: dict[str, set[str]], node: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph.get(node, ()))
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(graph.get(current, ()))
    return seen


# --------------------------------------------------------------------------- conditions

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<punct>[(),])|(?P<word>(?:[^\s(),'\[]|\['(?:[^']|'')*'\])+))"
)

Expr = tuple[Any, ...]


def parse_condition(text: str) -> Expr:
    """``('call', name, [args])``, ``('ref', text)`` or ``('lit', value)``; names lowercased."""
    tokens: list[tuple[str, str]] = []
    pos, text = 0, text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ValueError(f"cannot parse condition at {text[pos:]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1

    def expr(i: int) -> tuple[Expr, int]:
        if i >= len(tokens):
            raise ValueError(f"condition {text!r} ends too early")
        kind, value = tokens[i]
        if kind == "str":
            return ("lit", value[1:-1].replace("''", "'")), i + 1
        if kind != "word":
            raise ValueError(f"unexpected {value!r} in condition {text!r}")
        if i + 1 < len(tokens) and tokens[i + 1] == ("punct", "("):
            args: list[Expr] = []
            i += 2
            while i < len(tokens) and tokens[i] != ("punct", ")"):
                arg, i = expr(i)
                args.append(arg)
                if i < len(tokens) and tokens[i] == ("punct", ","):
                    i += 1
            if i >= len(tokens):
                raise ValueError(f"condition {text!r}: unclosed {value}(")
            return ("call", value.lower(), args), i + 1
        return ("ref", value.lower()), i + 1

    result, end = expr(0)
    if end != len(tokens):
        raise ValueError(f"trailing tokens in condition {text!r}")
    return result


def implies_succeeded(condition: str | None, dependency: str) -> bool:
    """Whether a stage/job ``condition`` can only be true when ``dependency`` succeeded.

    ``None`` is the default condition, ``succeeded()``. Only forms that require success count;
    ``or``, ``not``, ``always()``, ``succeededOrFailed()``, ``failed()`` ... never do.
    """
    if condition is None:
        return True
    result_ref = ("ref", f"dependencies.{dependency.lower()}.result")

    def check(node: Expr) -> bool:
        if node[0] != "call":
            return False
        name, args = node[1], node[2]
        if name == "succeeded":
            named = {a[1].lower() for a in args if a[0] == "lit"}
            return not args or (bool(dependency) and dependency.lower() in named)
        if name == "and":
            return any(check(a) for a in args)
        if name == "eq" and len(args) == 2:
            return result_ref in args and ("lit", "Succeeded") in args
        if name == "in" and len(args) > 1 and args[0] == result_ref:
            return all(a[0] == "lit" and a[1] == "Succeeded" for a in args[1:])
        return False

    return check(parse_condition(condition))


def runs_on_failure(condition: str | None) -> bool:
    return condition is not None and any(
        f in condition.replace(" ", "").lower() for f in FAILURE_CONDITIONS
    )


def requires_success(condition: str | None) -> bool:
    """A job or step condition that holds only when everything before it succeeded."""
    return not runs_on_failure(condition) and implies_succeeded(condition, "")


# --------------------------------------------------------------------------- scripts


def smbridge_invocations(body: str) -> list[list[str]]:
    """Argument lists of the smbridge calls in a script (one per line; ``\\`` continuations
    joined; cut at redirections and operators)."""
    calls = []
    for line in body.replace("\\\n", " ").splitlines():
        stripped = line.strip()
        if not re.match(r"smbridge\s", stripped):
            continue
        tokens = shlex.split(stripped, comments=True)
        cut = next(
            (i for i, t in enumerate(tokens) if t in {">", ">>", "2>", "|", "&&", "||", ";"}),
            len(tokens),
        )
        calls.append(tokens[1:cut])
    return calls


def subcommand(argv: list[str]) -> tuple[str, ...]:
    if argv and argv[0] in TWO_WORD_COMMANDS and len(argv) > 1:
        return (argv[0], argv[1])
    return tuple(argv[:1])


def option(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv else None


def steps_with_scripts(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict]]:
    for stage in doc.get("stages", []):
        for job in stage.get("jobs", []):
            for step in steps_of(job):
                if shared.script_body(step) is not None:
                    yield stage["stage"], job, step


def smbridge_steps(doc: dict[str, Any]) -> Iterator[tuple[str, dict, dict, list[str]]]:
    """Every smbridge command the pipeline runs (the install check aside)."""
    for stage, job, step in steps_with_scripts(doc):
        for argv in smbridge_invocations(shared.script_body(step) or ""):
            if argv != VERSION_CHECK:
                yield stage, job, step, argv


# --------------------------------------------------------------------------- the rules


def parameter_problems(doc: dict[str, Any]) -> list[str]:
    params = doc.get("parameters") or []
    names = [p.get("name") for p in params]
    problems = []
    if sorted(names) != sorted(PARAMETERS) or len(names) != len(PARAMETERS):
        problems.append(f"parameters are {names}, expected exactly {list(PARAMETERS)}")
    for p in params:
        if p.get("type") != "string":
            problems.append(f"parameter {p.get('name')}: type {p.get('type')!r}, not string")
        if p.get("default", None) != PLACEHOLDER:
            problems.append(
                f"parameter {p.get('name')}: default {p.get('default')!r}, not {PLACEHOLDER!r}"
            )
        if "values" in p:
            problems.append(f"parameter {p.get('name')}: restricted values")
    return problems


def gate_problems(doc: dict[str, Any]) -> list[str]:
    stages = stage_map(doc)
    graph = dependency_graph(doc)
    problems = [f"stage {name} missing" for name in CHAIN if name not in stages]
    if problems:
        return problems
    for parent, child in itertools.pairwise(CHAIN):
        if parent not in graph[child]:
            problems.append(f"{child} does not depend directly on {parent}")
        condition = stages[child].get("condition")
        try:
            if not implies_succeeded(condition, parent):
                problems.append(f"{child} can run without {parent} succeeding: {condition!r}")
        except ValueError as error:
            problems.append(f"{child}: {error}")
    if "TestStaging" not in ancestors(graph, "DeployProd"):
        problems.append("DeployProd does not depend (even transitively) on TestStaging")
    for name in ("Prepare", "DeployStaging", "TestStaging"):
        if str(stages[name].get("isSkippable")).lower() != "false":
            problems.append(f"{name} can be deselected at queue time (isSkippable)")
    for name in ("DeployStaging", "TestStaging", "DeployProd"):
        for job in stages[name]["jobs"]:
            try:
                if not requires_success(job.get("condition")):
                    problems.append(f"{name}/{job_name(job)}: condition {job.get('condition')!r}")
            except ValueError as error:
                problems.append(f"{name}/{job_name(job)}: {error}")
            if str(job.get("continueOnError", False)).lower() == "true":
                problems.append(f"{name}/{job_name(job)}: continueOnError")
    for job in stages["DeployProd"]["jobs"]:
        for strategy in (job.get("strategy") or {}).values():
            if isinstance(strategy, dict) and "on" in strategy:
                problems.append(f"DeployProd/{job_name(job)}: on: failure/success hooks")
        for step in steps_of(job):
            if runs_on_failure(step.get("condition")) and step.get("task") not in RESULT_PUBLISHERS:
                problems.append(f"DeployProd: step {step.get('displayName')!r} runs on failure")
    tests = [argv for stage, _, _, argv in smbridge_steps(doc) if stage == "TestStaging"]
    if not any(subcommand(a) == ("endpoint", "test") for a in tests):
        problems.append("TestStaging runs no smbridge endpoint test")
    for job in stages["TestStaging"]["jobs"]:
        for step in steps_of(job):
            if str(step.get("continueOnError", False)).lower() == "true":
                problems.append(f"TestStaging: step {step.get('displayName')!r} continueOnError")
            if str(step.get("enabled", True)).lower() == "false":
                problems.append(f"TestStaging: step {step.get('displayName')!r} disabled")
    publish = [
        s
        for job in stages["TestStaging"]["jobs"]
        for s in steps_of(job)
        if s.get("task") == "PublishTestResults@2"
    ]
    if not publish or any(s.get("condition") != "succeededOrFailed()" for s in publish):
        problems.append("TestStaging: PublishTestResults@2 with succeededOrFailed() missing")
    return problems


def environment_name(job: dict[str, Any]) -> str:
    env = job.get("environment", "")
    return env.get("name", "") if isinstance(env, dict) else env


def environment_problems(doc: dict[str, Any]) -> list[str]:
    problems = []
    root_vars = {v["name"]: v["value"] for v in doc.get("variables", []) if "name" in v}
    for stage, job, _, argv in smbridge_steps(doc):
        if subcommand(argv) != ("deploy",):
            continue
        target = option(argv, "--stage")
        env = environment_name(job)
        if not is_deployment(job):
            problems.append(f"{stage}: smbridge deploy in a regular job (no environment, no gate)")
        elif not env.endswith(f"-{target}"):
            problems.append(f"{stage}: smbridge deploy --stage {target} in environment {env!r}")
    expected = {"DeployStaging": "-staging", "DeployProd": "-production"}
    for stage, suffix in expected.items():
        jobs = stage_map(doc).get(stage, {}).get("jobs", [])
        if not jobs or not all(is_deployment(j) for j in jobs):
            problems.append(f"{stage}: every job must be a deployment job")
        for job in jobs:
            env = environment_name(job)
            if not env.endswith(suffix):
                problems.append(f"{stage}: environment {env!r} does not end in {suffix}")
            # Fixed when the run is compiled: a literal, or ${{ variables.X }} of a literal root
            # variable. Never $(...) or $[...] (resolved too late for environments and checks).
            for var in re.findall(r"\$\{\{\s*variables\.(\w+)\s*\}\}", env):
                value = str(root_vars.get(var, "$(undefined)"))
                if "$" in value:
                    problems.append(f"{stage}: environment variable {var} is not a literal")
            if re.search(r"\$\(|\$\[", env):
                problems.append(
                    f"{stage}: environment {env!r} is not fixed at compile time"
                    " (use ${{ variables.X }})"
                )
    return problems


def script_problems(doc: dict[str, Any]) -> list[str]:
    problems = []
    for stage, _, step in steps_with_scripts(doc):
        body = shared.script_body(step) or ""
        where = f"{stage}: {step.get('displayName')!r}"
        if "${{" in body:
            problems.append(f"{where}: template expression in the script")
        if "$(" in body:
            problems.append(f"{where}: $( in the script")
        calls = smbridge_invocations(body)
        if len(re.findall(r"(?<![\w./-])smbridge\s", body)) != len(calls):
            problems.append(f"{where}: an smbridge call not at the start of a line")
        for argv in calls:
            if argv != VERSION_CHECK and subcommand(argv) not in SUBCOMMANDS:
                problems.append(f"{where}: smbridge {' '.join(subcommand(argv))}")
    return problems


def _output_key_problem(job: dict[str, Any], key: str) -> str | None:
    """``key`` names an output variable of ``job`` (``<job>.<step>.<var>`` for runOnce
    deployment jobs, ``<step>.<var>`` for regular jobs) set by that step's smbridge command."""
    parts = key.split(".")
    if is_deployment(job):
        if len(parts) != 3 or parts[0] != job_name(job):
            return f"{key!r}: a deployment job's output needs the prefix {job_name(job)}."
        parts = parts[1:]
    if len(parts) != 2:
        return f"{key!r}: expected <step>.<variable>"
    step_name, variable = parts
    steps = [s for s in steps_of(job) if s.get("name") == step_name]
    if not steps:
        return f"{key!r}: no step named {step_name} in job {job_name(job)}"
    calls = smbridge_invocations(shared.script_body(steps[0]) or "")
    sets = set().union(*(CLI_OUTPUTS.get(subcommand(a), set()) for a in calls))
    if variable not in sets:
        return f"{key!r}: step {step_name} does not set {variable} (it sets {sorted(sets)})"
    return None


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def _variables(block: Any) -> dict[str, str]:
    if isinstance(block, dict):
        return {k: str(v) for k, v in block.items()}
    return {v["name"]: str(v["value"]) for v in block or [] if "name" in v}


def output_variable_problems(doc: dict[str, Any]) -> list[str]:
    problems = []
    stages = stage_map(doc)
    graph = dependency_graph(doc)
    root_vars = set(_variables(doc.get("variables")))
    references = 0
    for name, stage in stages.items():
        for text in _strings(stage):
            for src, job, key in re.findall(
                r"stageDependencies\.(\w+)\.(\w+)\.outputs\['([^']+)'\]", text
            ):
                references += 1
                problems += _stage_reference_problems(stages, graph, name, src, job, key)
            for src, key in re.findall(
                r"(?<!stage)dependencies\.(\w+)\.outputs\['([^']+)'\]", text
            ):
                references += 1
                if src in stages:  # stage level: '<job>.<rest>'
                    job, _, rest = key.partition(".")
                    problems += _stage_reference_problems(stages, graph, name, src, job, rest)
                else:
                    jobs = {job_name(j): j for j in stage.get("jobs", [])}
                    if src not in jobs:
                        problems.append(f"{name}: dependencies.{src}: no such stage or job")
                    elif problem := _output_key_problem(jobs[src], key):
                        problems.append(f"{name}: {problem}")
        # every $(...) an env: maps is defined for that step
        stage_vars = root_vars | set(_variables(stage.get("variables")))
        for job in stage.get("jobs", []):
            defined = stage_vars | set(_variables(job.get("variables")))
            earlier: list[dict[str, Any]] = []
            for step in steps_of(job):
                for var, value in (step.get("env") or {}).items():
                    for macro in re.findall(r"\$\(([^)]*)\)", str(value)):
                        known = (
                            macro in defined
                            or macro in GROUP_VARIABLES
                            or macro.startswith(PREDEFINED_PREFIXES)
                            or _earlier_output(earlier, macro)
                        )
                        if not known:
                            problems.append(f"{name}: env {var}: $({macro}) is not defined here")
                earlier.append(step)
    if references == 0:
        problems.append("no output variable references found")
    return problems


def _earlier_output(steps: list[dict[str, Any]], macro: str) -> bool:
    step_name, _, variable = macro.partition(".")
    for step in steps:
        if step.get("name") == step_name:
            calls = smbridge_invocations(shared.script_body(step) or "")
            return any(variable in CLI_OUTPUTS.get(subcommand(a), set()) for a in calls)
    return False


def _stage_reference_problems(
    stages: dict[str, dict[str, Any]],
    graph: dict[str, set[str]],
    stage: str,
    src: str,
    job: str,
    key: str,
) -> list[str]:
    where = f"{stage}: {src}.{job}.{key}"
    if src not in stages:
        return [f"{where}: no stage {src}"]
    if src not in graph[stage]:
        return [f"{where}: {src} is not a direct dependency of {stage}"]
    jobs = {job_name(j): j for j in stages[src].get("jobs", [])}
    if job not in jobs:
        return [f"{where}: no job {job} in {src}"]
    problem = _output_key_problem(jobs[job], key)
    return [f"{where}: {problem}"] if problem else []


RULES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "parameters": parameter_problems,
    "gate": gate_problems,
    "environments": environment_problems,
    "scripts": script_problems,
    "output variables": output_variable_problems,
}


# --------------------------------------------------------------------------- the file


def test_found_by_the_shared_schema_test() -> None:
    assert MODEL_DEPLOY in shared.YAML_FILES


def test_schema_accepts(validator: Draft7Validator, doc: dict[str, Any]) -> None:
    assert shared.schema_errors(validator, doc) == []


def test_schema_rejects_a_broken_copy(validator: Draft7Validator, doc: dict[str, Any]) -> None:
    broken = copy.deepcopy(doc)
    stage_map(broken)["DeployProd"]["jobs"][0]["enviroment"] = "x-production"
    assert shared.schema_errors(validator, broken)


@pytest.mark.parametrize("rule", list(RULES))
def test_rule(doc: dict[str, Any], rule: str) -> None:
    assert RULES[rule](doc) == []


def test_parameters_are_the_triggers(doc: dict[str, Any]) -> None:
    assert {p["name"] for p in doc["parameters"]} == set(RESERVED_PARAMETERS)
    assert [p["name"] for p in doc["parameters"]] == list(PARAMETERS)


def test_runs_only_through_the_api_or_by_hand(doc: dict[str, Any]) -> None:
    assert doc["trigger"] == "none"
    assert doc["pr"] == "none"
    assert "schedules" not in doc and "resources" not in doc


def test_run_name_carries_the_version(doc: dict[str, Any]) -> None:
    # template expressions outside env: appear only here (the version is digits; the ARN would
    # bring ':' and '/', which a run number may not contain)
    assert "parameters.modelPackageVersion" in doc["name"]
    assert not re.search(r"parameters\.(?!modelPackageVersion\b)", doc["name"])


def test_template_parameters_only_in_env_and_name(doc: dict[str, Any]) -> None:
    sites = []

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, (*path, str(k)))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, (*path, str(i)))
        elif isinstance(node, str) and "parameters." in node:
            sites.append((path, node))

    walk(doc.get("stages"), ("stages",))
    assert sites, "the parameters must reach smbridge prepare"
    for path, value in sites:
        assert path[-2] == "env", path
        (param,) = re.fullmatch(r"\$\{\{\s*parameters\.(\w+)\s*\}\}", value).groups()
        assert param in PARAMETERS


def test_the_strict_production_condition(doc: dict[str, Any]) -> None:
    prod = stage_map(doc)["DeployProd"]
    assert " ".join(prod["condition"].split()) == (
        "and(succeeded(), eq(dependencies.TestStaging.result, 'Succeeded'))"
    )
    assert set(prod["dependsOn"]) == {"Prepare", "TestStaging"}
    assert "isSkippable" not in prod  # DeployProd itself may be deselected: nothing runs then


def test_prepare_dispatches_arn_or_group_and_publishes_the_params(doc: dict[str, Any]) -> None:
    step = find_step(doc, "Prepare", "prepare")
    calls = smbridge_invocations(step["bash"])
    assert [subcommand(a) for a in calls] == [("prepare",), ("prepare",)]
    assert option(calls[0], "--model-package-arn") == "${MODEL_PACKAGE_ARN}"
    assert option(calls[1], "--group") == "${MODEL_PACKAGE_GROUP_NAME}"
    assert {option(a, "--out") for a in calls} == {
        "${BUILD_ARTIFACTSTAGINGDIRECTORY}/deploy-params"
    }
    assert step["env"]["MODEL_PACKAGE_ARN"] == "${{ parameters.modelPackageArn }}"
    assert step["env"]["MODEL_PACKAGE_GROUP_NAME"] == "${{ parameters.modelPackageGroupName }}"
    (job,) = stage_map(doc)["Prepare"]["jobs"]
    (publish,) = [s for s in steps_of(job) if s.get("task") == "PublishPipelineArtifact@1"]
    assert publish["inputs"] == {
        "targetPath": "$(Build.ArtifactStagingDirectory)/deploy-params",
        "artifact": "deploy-params",
        "publishLocation": "pipeline",
    }
    for stage in ("DeployStaging", "DeployProd"):
        for job in stage_map(doc)[stage]["jobs"]:
            downloads = [s for s in steps_of(job) if "download" in s]
            assert [(d["download"], d["artifact"]) for d in downloads] == [
                ("current", "deploy-params")
            ]
            # deployment jobs do not check out the repository on their own
            assert steps_of(job)[0] == {"checkout": "self", "fetchDepth": "1"}


def test_each_stage_uses_its_own_config_and_results(doc: dict[str, Any]) -> None:
    expected = {
        "DeployStaging": "staging",
        "TestStaging": "staging",
        "DeployProd": "production",
        "PostDeploy": "production",
    }
    seen = set()
    for stage, job, _, argv in smbridge_steps(doc):
        target = expected.get(stage)
        if subcommand(argv) == ("deploy",):
            assert option(argv, "--stage") == target
            assert option(argv, "--stage-config") == f"model-deploy/config/{target}.json"
            assert option(argv, "--model-package-arn") == "${MODEL_PACKAGE_ARN}"
            # smbridge stops waiting (and says so) before Azure Pipelines kills the job
            budget = parse_duration(option(argv, "--timeout") or "3h")
            assert budget <= (int(job["timeoutInMinutes"]) - 10) * 60, stage
        elif subcommand(argv) == ("endpoint", "test"):
            assert option(argv, "--endpoint") == "${ENDPOINT_NAME}"
            assert option(argv, "--stage-config") == f"model-deploy/config/{target}.json"
            junit = f"test-results/endpoint-{target}.xml"
            assert option(argv, "--junit") == junit
            (publish,) = [s for s in steps_of(job) if s.get("task") == "PublishTestResults@2"]
            assert publish["condition"] == "succeededOrFailed()"
            assert publish["inputs"]["testResultsFormat"] == "JUnit"
            assert publish["inputs"]["testResultsFiles"] == junit
        elif subcommand(argv) == ("registry", "describe"):
            assert stage == "PostDeploy"
            assert argv[2] == "${MODEL_PACKAGE_ARN}"
            assert option(argv, "--output") == "json"
        seen.add((stage, subcommand(argv)))
    # The production smoke test runs in DeployProd, the only job that references the production
    # service connection (tests/unit/test_pipeline_trust_boundary.py); PostDeploy only records.
    assert seen == {
        ("Prepare", ("prepare",)),
        ("DeployStaging", ("deploy",)),
        ("TestStaging", ("endpoint", "test")),
        ("DeployProd", ("deploy",)),
        ("DeployProd", ("endpoint", "test")),
        ("PostDeploy", ("registry", "describe")),
    }


def test_invocations_parse_with_the_real_cli(doc: dict[str, Any]) -> None:
    """Every flag exists and every required argument is given (smbridge's own parser)."""
    parser = build_parser()
    for stage, _, _, argv in smbridge_steps(doc):
        try:
            parser.parse_args(argv)
        except SystemExit as error:  # argparse reports the problem on stderr
            raise AssertionError(f"{stage}: smbridge {' '.join(argv)}") from error


def test_every_aws_call_is_keyless(doc: dict[str, Any]) -> None:
    assert {"group": "smbridge-aws"} in doc["variables"]
    for stage, _, step, argv in smbridge_steps(doc):
        assert "--web-identity" in argv, stage
        assert step["env"]["SYSTEM_ACCESSTOKEN"] == "$(System.AccessToken)", stage
        assert step["env"]["SMBRIDGE_AWS__ROLE_ARN"] == "$(AWS_ROLE_ARN)", stage


def test_install_uses_core_only(doc: dict[str, Any]) -> None:
    template = shared.load(shared.PIPELINES_DIR / "templates" / "setup-python.yml")
    (extras,) = template["parameters"]
    assert "core" in extras["values"]
    for stage in doc["stages"]:
        for job in stage["jobs"]:
            uses = [s for s in raw_steps(job) if "template" in s]
            assert uses == [
                {"template": "templates/setup-python.yml", "parameters": {"extras": "core"}}
            ], stage["stage"]


def test_timeouts(doc: dict[str, Any]) -> None:
    minutes = {s["stage"]: int(j["timeoutInMinutes"]) for s in doc["stages"] for j in s["jobs"]}
    assert minutes["DeployProd"] >= 120  # blue/green with canary traffic shifting: about 1 h
    assert minutes["DeployStaging"] >= 60
    assert all(0 < m <= 150 for m in minutes.values())


def test_output_variables_the_later_stages_read(doc: dict[str, Any]) -> None:
    """The exact references (the CLI sets these names; the steps are named to match)."""
    variables = {name: _variables(stage.get("variables")) for name, stage in stage_map(doc).items()}
    arn = "$[ stageDependencies.Prepare.prepare.outputs['prepare.modelPackageArn'] ]"
    assert variables["DeployStaging"] == {"resolvedModelPackageArn": arn}
    assert variables["DeployProd"] == {"resolvedModelPackageArn": arn}
    assert variables["TestStaging"] == {
        "stagingEndpointName": (
            "$[ stageDependencies.DeployStaging.staging.outputs['staging.stack.endpointName'] ]"
        )
    }
    assert variables["PostDeploy"] == {"resolvedModelPackageArn": arn}
    # the smoke test reads the deploy step's output in the same job
    (smoke,) = [
        s
        for s in steps_of(stage_map(doc)["DeployProd"]["jobs"][0])
        if s.get("name") == "endpoint_test"
    ]
    assert smoke["env"]["ENDPOINT_NAME"] == "$(stack.endpointName)"


def test_the_shared_scan_sees_the_deployment_steps(doc: dict[str, Any]) -> None:
    """tests/unit/test_azure_pipelines_yaml.py's env-only rule covers deployment hooks too."""
    scanned = shared.file_steps(doc, MODEL_DEPLOY)
    deploys = [s for s in scanned if s.get("name") == "stack"]
    assert len(deploys) == 2
    assert all(shared.script_violations(s) == [] for s in scanned)


# --------------------------------------------------------------------------- the checks can fail


def _set(stage: str, **fields: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        for key, value in fields.items():
            if value is None:
                stage_map(d)[stage].pop(key, None)
            else:
                stage_map(d)[stage][key] = value

    return mutate


def _job(stage: str, **fields: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        stage_map(d)[stage]["jobs"][0].update(fields)

    return mutate


def _step(stage: str, name: str, **fields: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        find_step(d, stage, name).update(fields)

    return mutate


def _replace_in_stage(stage: str, old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        index = [s["stage"] for s in d["stages"]].index(stage)
        text = yaml.safe_dump(d["stages"][index], sort_keys=False, width=10**6)
        assert old in text, old
        d["stages"][index] = yaml.safe_load(text.replace(old, new))

    return mutate


def _regular_production_job(d: dict[str, Any]) -> None:
    job = stage_map(d)["DeployProd"]["jobs"][0]
    steps = job["strategy"]["runOnce"]["deploy"]["steps"]
    for key in ("deployment", "environment", "strategy"):
        job.pop(key)
    job["job"] = "production"
    job["steps"] = steps


def _extra_parameter(d: dict[str, Any]) -> None:
    d["parameters"].append({"name": "region", "type": "string", "default": ""})


def _param_default(d: dict[str, Any]) -> None:
    d["parameters"][2]["default"] = "1"


def _param_required_by_hand(d: dict[str, Any]) -> None:
    d["parameters"][1]["default"] = ""


def _unpublished_junit(d: dict[str, Any]) -> None:
    job = stage_map(d)["TestStaging"]["jobs"][0]
    job["steps"] = [s for s in job["steps"] if s.get("task") != "PublishTestResults@2"]


PROD_STAGE_CONDITIONS = [
    "always()",
    "succeededOrFailed()",
    "or(succeeded(), eq(variables['Build.Reason'], 'Manual'))",
    "succeeded('Prepare')",
    "and(succeeded('Prepare'), ne(dependencies.TestStaging.result, 'Failed'))",
    "in(dependencies.TestStaging.result, 'Succeeded', 'Failed')",
    "not(failed())",
]

MUTATIONS: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {
    **{
        f"DeployProd condition {c}": ("gate", _set("DeployProd", condition=c))
        for c in PROD_STAGE_CONDITIONS
    },
    "DeployProd drops TestStaging": ("gate", _set("DeployProd", dependsOn=["Prepare"])),
    "DeployProd depends on nothing": ("gate", _set("DeployProd", dependsOn=[])),
    "DeployProd job runs always": ("gate", _job("DeployProd", condition="always()")),
    "DeployProd job continues on error": ("gate", _job("DeployProd", continueOnError="true")),
    "DeployProd deploy step runs always": (
        "gate",
        _step("DeployProd", "stack", condition="always()"),
    ),
    "TestStaging tolerates a failed test": (
        "gate",
        _step("TestStaging", "endpoint_test", continueOnError="true"),
    ),
    "TestStaging test disabled": ("gate", _step("TestStaging", "endpoint_test", enabled="false")),
    "TestStaging runs after a failed staging deploy": (
        "gate",
        _set("TestStaging", condition="succeededOrFailed()"),
    ),
    "TestStaging skippable": ("gate", _set("TestStaging", isSkippable=None)),
    "TestStaging results only on success": (
        "gate",
        _replace_in_stage(
            "TestStaging", "condition: succeededOrFailed()", "condition: succeeded()"
        ),
    ),
    "TestStaging results not published": ("gate", _unpublished_junit),
    "DeployStaging before Prepare": ("gate", _set("DeployStaging", dependsOn=[])),
    "production deploy in a regular job": ("environments", _regular_production_job),
    "production environment misnamed": ("environments", _job("DeployProd", environment="x-prod")),
    "environment from a runtime variable": (
        "environments",
        _job("DeployStaging", environment="$(environmentPrefix)-staging"),
    ),
    "macro spliced into a script": (
        "scripts",
        _step("DeployProd", "stack", bash='smbridge deploy --model-package-arn "$(arn)"'),
    ),
    "parameter spliced into a script": (
        "scripts",
        _step("Prepare", "prepare", bash="smbridge prepare --group ${{ parameters.group }}"),
    ),
    "unlisted smbridge command": (
        "scripts",
        _step("PostDeploy", "record", bash='smbridge registry approve "$ARN" --comment ok'),
    ),
    "smbridge hidden after an operator": (
        "scripts",
        _step("PostDeploy", "record", bash="true && smbridge registry approve x --comment ok"),
    ),
    "output read from a misnamed step": (
        "output variables",
        _replace_in_stage(
            "DeployStaging", "'prepare.modelPackageArn'", "'resolve.modelPackageArn'"
        ),
    ),
    "deployment output without the job prefix": (
        "output variables",
        _replace_in_stage("TestStaging", "'staging.stack.endpointName'", "'stack.endpointName'"),
    ),
    "output variable the command does not set": (
        "output variables",
        _replace_in_stage("TestStaging", "staging.stack.endpointName", "staging.stack.endpointUrl"),
    ),
    "same-job output the command does not set": (
        "output variables",
        _replace_in_stage("DeployProd", "$(stack.endpointName)", "$(stack.endpointUrl)"),
    ),
    "output from a stage that is not a dependency": (
        "output variables",
        _set("DeployProd", dependsOn=None),  # default: TestStaging only, Prepare unreachable
    ),
    "env maps an undefined variable": (
        "output variables",
        _step("TestStaging", "endpoint_test", env={"ENDPOINT_NAME": "$(stagingEndpoint)"}),
    ),
    "fifth parameter": ("parameters", _extra_parameter),
    "parameter with a default": ("parameters", _param_default),
    "parameter required in the Run pipeline panel": ("parameters", _param_required_by_hand),
}


@pytest.mark.parametrize("case", list(MUTATIONS))
def test_a_broken_copy_fails_its_rule(
    validator: Draft7Validator, doc: dict[str, Any], case: str
) -> None:
    rule, mutate = MUTATIONS[case]
    broken = copy.deepcopy(doc)
    mutate(broken)
    assert broken != doc
    # still a valid pipeline for the schema: the rule, not the schema, is what catches it
    if rule != "parameters":
        assert shared.schema_errors(validator, broken) == []
    assert RULES[rule](broken), f"rule {rule!r} accepted: {case}"


def test_a_broken_file_text_fails(tmp_path: Path) -> None:
    """The same through the YAML text: DeployProd after a failed TestStaging."""
    text = MODEL_DEPLOY.read_text(encoding="utf-8")
    old = "condition: and(succeeded(), eq(dependencies.TestStaging.result, 'Succeeded'))"
    assert text.count(old) == 1
    broken = yaml.safe_load(text.replace(old, "condition: always()"))
    assert gate_problems(broken) == [
        "DeployProd can run without TestStaging succeeding: 'always()'"
    ]
    both = "      - Prepare\n      - TestStaging\n"
    assert text.count(both) == 1
    dropped = yaml.safe_load(text.replace(both, "      - Prepare\n"))
    assert "DeployProd does not depend directly on TestStaging" in gate_problems(dropped)
    assert "DeployProd does not depend (even transitively) on TestStaging" in gate_problems(dropped)


@pytest.mark.parametrize(
    ("condition", "dependency", "expected"),
    [
        (None, "A", True),
        ("succeeded()", "A", True),
        ("and(succeeded(), eq(variables['x'], 'y'))", "A", True),
        ("eq(dependencies.A.result, 'Succeeded')", "A", True),
        ("eq('Succeeded', dependencies.a.result)", "A", True),
        ("in(dependencies.A.result, 'Succeeded')", "A", True),
        ("succeeded('A', 'B')", "A", True),
        ("succeeded('B')", "A", False),
        ("always()", "A", False),
        ("succeededOrFailed()", "A", False),
        ("or(succeeded(), always())", "A", False),
        ("not(failed())", "A", False),
        ("eq(dependencies.A.result, 'Failed')", "A", False),
        ("in(dependencies.A.result, 'Succeeded', 'Skipped')", "A", False),
        ("eq(dependencies.B.result, 'Succeeded')", "A", False),
    ],
)
def test_condition_reader(condition: str | None, dependency: str, expected: bool) -> None:
    assert implies_succeeded(condition, dependency) is expected


def test_condition_reader_rejects_what_it_cannot_read() -> None:
    with pytest.raises(ValueError):
        parse_condition("and(succeeded(), ")
