"""Service connections in azure-pipelines/*.yml: who can get which OIDC token.

Two rules, each a function returning its problems (empty when the files keep it), with mutations
at the end showing that each can fail:

- ``connection_problems`` (every pipeline): a job that makes smbridge request a service
  connection's token references that same connection in a task input. Since 2026-03 Azure
  DevOps refuses the token otherwise (``There is no explicit reference to service connection
  {id} from current stage <Stage>.<Job>``: dotnet/docker-tools#2012, fixed in #2013 by an
  ``AzureCLI@2`` step with ``azureSubscription:`` in every job that needs the token). Each
  lifecycle hook of a deployment job runs as a job of its own, so each hook is checked on its
  own. smbridge sends a connection id from
  ``SMBRIDGE_AWS__SERVICE_CONNECTION_ID`` (a step's env:), from bridge.yaml
  ``aws.service_connection_id`` (every call), or, for ``deploy --config`` and ``endpoint test
  --stage-config``, from the stage config's ``service_connection_id`` (the stage's deploy role,
  ``bridge.deploy.operations.stage_clients``). A YAML variable of that name is refused outright:
  pipeline variables reach every step's environment (Microsoft Learn, "Define variables":
  "System and user-defined variables also get injected as environment variables for your platform").
- ``boundary_problems`` (model-deploy.yml): each stage's connection is referenced only by the
  jobs of that stage, the production one only by the production deploy job, and each stage
  config (its deploy role) is used only there, so no other job can get a token the production
  role accepts. Before a stage starts Azure DevOps evaluates the checks of every resource the
  stage uses (Microsoft Learn, "Define approvals and checks": "Before the execution of a stage
  can begin, all checks on all the resources used in that stage must be satisfied"), so the
  production connection's Approval and Branch control apply to that stage and to any other
  stage that would reference it.

Connection inputs are matched by name (Microsoft's schema,
reference/azure-pipelines-yaml.schema.json: ``azureSubscription`` alias
``connectedServiceNameARM`` of ``AzureCLI@2``, ``connectedServiceName``, ``serviceConnection``
...); their value is a literal or ``${{ variables.X }}`` of a literal root variable, fixed when
the run is compiled. Referencing a connection by its id is what Microsoft's own samples do
(Learn, "Deploy a Python web app": ``azureServiceConnectionId`` / ``azureSubscription:
$(azureServiceConnectionId)``).
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from tests.unit import test_azure_pipelines_yaml as shared

REPO_ROOT = shared.REPO_ROOT
MODEL_DEPLOY = shared.PIPELINES_DIR / "model-deploy.yml"
MODEL_BUILD = shared.MODEL_BUILD
PIPELINES = (MODEL_BUILD, MODEL_DEPLOY)
BRIDGE_YAML = REPO_ROOT / "bridge.yaml"
CREDENTIALS_DOC = REPO_ROOT / "docs" / "credentials.md"

ID_ENV = "SMBRIDGE_AWS__SERVICE_CONNECTION_ID"
# Task inputs that name a service connection (lower case: Azure Pipelines matches input names
# case-insensitively), from the schema's task definitions and their aliases.
CONNECTION_INPUTS = {
    "azuresubscription",
    "connectedservicenamearm",
    "connectedservicename",
    "azureserviceconnection",
    "serviceconnection",
    "genericservice",
    "azuredevopsserviceconnection",
    "workloadidentityserviceconnection",
    "awscredentials",  # the AWS Toolkit's tasks (not in the schema)
}
GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")

# model-deploy.yml: which jobs may use which stage's connection and config.
STAGE_JOBS = {
    "staging": {("DeployStaging", "staging"), ("TestStaging", "endpoint_tests")},
    "production": {("DeployProd", "production")},
}
STAGE_CONNECTION_VARIABLES = {
    "staging": "stagingServiceConnectionId",
    "production": "productionServiceConnectionId",
}
STAGE_CONFIGS = {
    "staging": "model-deploy/config/staging.json",
    "production": "model-deploy/config/production.json",
}

StageConfigReader = Callable[[str], dict[str, Any]]


def read_stage_config(path: str) -> dict[str, Any]:
    file = REPO_ROOT / path
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}


def bridge_connection_id() -> str | None:
    config = yaml.safe_load(BRIDGE_YAML.read_text(encoding="utf-8")) or {}
    return (config.get("aws") or {}).get("service_connection_id")


# --------------------------------------------------------------------------- navigation


def variables_of(block: Any) -> dict[str, str]:
    if isinstance(block, dict):
        return {str(k): str(v) for k, v in block.items()}
    return {v["name"]: str(v["value"]) for v in block or [] if "name" in v}


def units(doc: dict[str, Any], path: Path) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    """(stage, job, steps) for every job as it runs: a regular job, or each lifecycle hook of a
    deployment job (each hook is a job of its own at run time). Templates expanded."""
    for stage in doc.get("stages", []):
        for job in stage.get("jobs", []):
            name = job.get("job") or job.get("deployment") or ""
            for steps in shared.job_step_lists(job):
                if steps:
                    yield stage["stage"], name, list(shared.expand_steps(steps, path))


def resolve(value: Any, variables: dict[str, str]) -> str:
    """A literal, or ``${{ variables.X }}`` / ``$(X)`` of a variable defined in the YAML."""
    text = str(value).strip()
    match = re.fullmatch(r"\$\{\{\s*variables\.(\w+)\s*\}\}|\$\(\s*([\w.]+)\s*\)", text)
    if not match:
        return text
    name = match.group(1) or match.group(2)
    return variables.get(name, f"<undefined variable {name}>")


def referenced_connections(
    steps: list[dict[str, Any]], variables: dict[str, str]
) -> tuple[set[str], list[str]]:
    """The connections the steps' task inputs reference, and problems with how they do."""
    found, problems = set(), []
    for step in steps:
        for key, value in (step.get("inputs") or {}).items():
            if key.lower() not in CONNECTION_INPUTS:
                continue
            text = str(value)
            if "$(" in text or "$[" in text:
                problems.append(
                    f"{step.get('task')} input {key}: {text!r} is resolved at run time; use a "
                    "literal or ${{ variables.X }} (fixed when the run is compiled)"
                )
            found.add(resolve(text, variables))
    return found, problems


def smbridge_calls(body: str) -> list[list[str]]:
    """The smbridge commands of a script (templates/setup-python.yml's install check aside)."""
    calls = []
    for line in body.replace("\\\n", " ").splitlines():
        stripped = line.strip()
        if re.match(r"smbridge\s", stripped):
            argv = shlex.split(stripped, comments=True)[1:]
            if argv != ["--version"]:
                calls.append(argv)
    return calls


def option(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv and argv.index(flag) + 1 < len(argv) else None


def stage_config_paths(argv: list[str]) -> list[str]:
    """The stage configs an smbridge call reads (their deploy role and connection)."""
    if argv[:1] == ["deploy"]:
        return [p for p in [option(argv, "--stage-config")] if p]
    if argv[:2] == ["endpoint", "test"]:
        return [p for p in [option(argv, "--stage-config")] if p]
    return []


def passed_connections(
    step: dict[str, Any],
    variables: dict[str, str],
    stage_config: StageConfigReader,
    bridge_id: str | None,
) -> tuple[set[str], list[str]]:
    """The connection ids a step makes smbridge send, and problems with how it sets them."""
    found, problems = set(), []
    env = step.get("env") or {}
    if ID_ENV in env:
        found.add(resolve(env[ID_ENV], variables))
    body = shared.script_body(step) or ""
    if re.search(r"SERVICE_CONNECTION_ID|serviceConnectionId", body):
        problems.append(
            f"{step.get('displayName')!r}: sets a service connection id inside the script; map "
            f"{ID_ENV} in env: from a YAML variable instead"
        )
    for argv in smbridge_calls(body):
        if "--web-identity" in argv and bridge_id and ID_ENV not in env:
            found.add(bridge_id)
        for path in stage_config_paths(argv):
            connection = stage_config(path).get("service_connection_id")
            if connection:
                found.add(str(connection))
    return found, problems


# --------------------------------------------------------------------------- the rules


def connection_problems(
    doc: dict[str, Any],
    path: Path,
    *,
    stage_config: StageConfigReader = read_stage_config,
    bridge_id: str | None = None,
) -> list[str]:
    problems = []
    root = variables_of(doc.get("variables"))
    scopes = [("root", doc.get("variables"))]
    for stage in doc.get("stages", []):
        scopes.append((stage["stage"], stage.get("variables")))
        scopes += [(stage["stage"], job.get("variables")) for job in stage.get("jobs", [])]
    for where, block in scopes:
        if any(name.upper() == ID_ENV for name in variables_of(block)):
            problems.append(
                f"{path.name} {where}: variable {ID_ENV} would reach every step, also in jobs "
                "that do not reference the connection"
            )
    stages = {s["stage"]: s for s in doc.get("stages", [])}
    for stage, job, steps in units(doc, path):
        variables = {**root, **variables_of(stages[stage].get("variables"))}
        where = f"{path.name} {stage}/{job}"
        referenced, input_problems = referenced_connections(steps, variables)
        problems += [f"{where}: {p}" for p in input_problems]
        for step in steps:
            passed, step_problems = passed_connections(step, variables, stage_config, bridge_id)
            problems += [f"{where}: {p}" for p in step_problems]
            for connection in sorted(passed - referenced):
                problems.append(
                    f"{where}: step {step.get('displayName')!r} requests the token of service "
                    f"connection {connection} but no task in this job references it "
                    f"(referenced: {sorted(referenced) or 'none'})"
                )
    return problems


def boundary_problems(
    doc: dict[str, Any], *, stage_config: StageConfigReader = read_stage_config
) -> list[str]:
    problems = []
    root = variables_of(doc.get("variables"))
    ids = {stage: root.get(var, "") for stage, var in STAGE_CONNECTION_VARIABLES.items()}
    for stage, connection in ids.items():
        if not GUID.fullmatch(connection):
            problems.append(
                f"root variable {STAGE_CONNECTION_VARIABLES[stage]}: {connection!r} is not a "
                "service connection id (a GUID)"
            )
    if len(set(ids.values())) != len(ids):
        problems.append(f"the stages share a service connection: {ids}")
    stages = {s["stage"]: s for s in doc.get("stages", [])}
    seen: dict[str, set[tuple[str, str]]] = {name: set() for name in ids}
    for stage, job, steps in units(doc, MODEL_DEPLOY):
        variables = {**root, **variables_of(stages[stage].get("variables"))}
        referenced, _ = referenced_connections(steps, variables)
        for name, connection in ids.items():
            if connection in referenced:
                seen[name].add((stage, job))
                if (stage, job) not in STAGE_JOBS[name]:
                    problems.append(
                        f"{stage}/{job} references the {name} service connection: only "
                        f"{sorted(STAGE_JOBS[name])} may"
                    )
        first_smbridge = next(
            (i for i, s in enumerate(steps) if smbridge_calls(shared.script_body(s) or "")),
            None,
        )
        for i, step in enumerate(steps):
            body = shared.script_body(step) or ""
            references_a_stage = bool(
                step.get("task")
                and referenced_connections([step], variables)[0] & set(ids.values())
            )
            if references_a_stage and first_smbridge is not None and i > first_smbridge:
                problems.append(f"{stage}/{job}: the connection is referenced after smbridge runs")
            for argv in smbridge_calls(body):
                for path in stage_config_paths(argv):
                    for name, config in STAGE_CONFIGS.items():
                        if path == config and (stage, job) not in STAGE_JOBS[name]:
                            problems.append(
                                f"{stage}/{job}: smbridge {' '.join(argv[:2])} uses {path} (the "
                                f"{name} deploy role) outside {sorted(STAGE_JOBS[name])}"
                            )
    for name, jobs in STAGE_JOBS.items():
        for stage, job in sorted(jobs - seen[name]):
            problems.append(f"{stage}/{job} does not reference the {name} service connection")
        configured = stage_config(STAGE_CONFIGS[name]).get("service_connection_id")
        if configured and configured != ids[name]:
            problems.append(
                f"{STAGE_CONFIGS[name]}: service_connection_id {configured} is not "
                f"{STAGE_CONNECTION_VARIABLES[name]} ({ids[name]}), the connection its jobs "
                "reference"
            )
    return problems


# --------------------------------------------------------------------------- the files


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    return Draft7Validator(json.loads(shared.SCHEMA_PATH.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def deploy_doc() -> dict[str, Any]:
    return shared.load(MODEL_DEPLOY)


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.name)
def test_every_requested_connection_is_referenced_by_its_job(path: Path) -> None:
    assert connection_problems(shared.load(path), path, bridge_id=bridge_connection_id()) == []


def test_sc_mode_with_every_stage_on_its_connection(deploy_doc: dict[str, Any]) -> None:
    """The stage configs as docs/credentials.md says to set them (``service_connection_id`` =
    the YAML's id for that stage): every job that then requests a stage connection's token
    references it. Before 2026-03's change nothing referenced them and every deploy failed."""
    root = variables_of(deploy_doc.get("variables"))

    def intended(path: str) -> dict[str, Any]:
        config = read_stage_config(path)
        for stage, config_path in STAGE_CONFIGS.items():
            if path == config_path:
                variable = STAGE_CONNECTION_VARIABLES[stage]
                return {**config, "service_connection_id": root.get(variable, f"<no {variable}>")}
        return config

    assert connection_problems(deploy_doc, MODEL_DEPLOY, stage_config=intended) == []


def test_production_is_reachable_only_from_the_production_deploy_job(
    deploy_doc: dict[str, Any],
) -> None:
    assert boundary_problems(deploy_doc) == []


def test_reference_steps_are_light_and_schema_valid(
    validator: Draft7Validator, deploy_doc: dict[str, Any]
) -> None:
    """AzureCLI@2 (the schema's task for an Azure Resource Manager connection) signs in with the
    connection and runs one constant line: nothing from outside, no smbridge."""
    assert shared.schema_errors(validator, deploy_doc) == []
    references = [
        step
        for _, _, steps in units(deploy_doc, MODEL_DEPLOY)
        for step in steps
        if step.get("task") == "AzureCLI@2"
    ]
    assert len(references) == 3  # DeployStaging, TestStaging, DeployProd
    for step in references:
        inputs = step["inputs"]
        assert re.fullmatch(
            r"\$\{\{ variables\.\w+ServiceConnectionId \}\}", inputs["azureSubscription"]
        )
        assert inputs["scriptType"] == "bash" and inputs["scriptLocation"] == "inlineScript"
        assert re.fullmatch(r'echo "[a-z ]+"', inputs["inlineScript"])
        assert "env" not in step


def test_docs_name_the_variables_and_the_subjects() -> None:
    text = CREDENTIALS_DOC.read_text(encoding="utf-8")
    for name in STAGE_CONNECTION_VARIABLES.values():
        assert name in text, name
    for needle in ("sc://{organization}/{project}/", "p://{organization}/{project}/", "/eid1/"):
        assert needle in text, needle
    assert "2027-07-01" in text or "July 1, 2027" in text


# --------------------------------------------------------------------------- the rules can fail


def _steps(doc: dict[str, Any], stage: str, job: str | None = None) -> list[dict[str, Any]]:
    for s in doc["stages"]:
        if s["stage"] != stage:
            continue
        for j in s["jobs"]:
            if job in (None, j.get("job"), j.get("deployment")):
                if "deployment" in j:
                    return j["strategy"]["runOnce"]["deploy"]["steps"]
                return j["steps"]
    raise AssertionError(f"{stage}/{job}")


def _named(doc: dict[str, Any], stage: str, name: str) -> dict[str, Any]:
    (step,) = [s for s in _steps(doc, stage) if s.get("name") == name]
    return step


def _without_reference(stage: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        steps = _steps(doc, stage)
        steps[:] = [s for s in steps if s.get("task") != "AzureCLI@2"]

    return mutate


def _env(stage: str, name: str, value: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        _named(doc, stage, name)["env"][ID_ENV] = value

    return mutate


def _root_id_variable(doc: dict[str, Any]) -> None:
    doc["variables"].append({"name": ID_ENV, "value": "33333333-3333-4333-8333-333333333333"})


def _reference_production_in(stage: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        (prod_ref,) = [s for s in _steps(doc, "DeployProd") if s.get("task") == "AzureCLI@2"]
        _steps(doc, stage).insert(2, copy.deepcopy(prod_ref))

    return mutate


def _production_smoke_test_in_post_deploy(doc: dict[str, Any]) -> None:
    smoke = copy.deepcopy(_named(doc, "DeployProd", "endpoint_test"))
    _steps(doc, "PostDeploy").insert(2, smoke)


def _macro_connection(doc: dict[str, Any]) -> None:
    (ref,) = [s for s in _steps(doc, "DeployProd") if s.get("task") == "AzureCLI@2"]
    ref["inputs"]["azureSubscription"] = "$(productionServiceConnectionId)"


def _reference_after_deploy(doc: dict[str, Any]) -> None:
    steps = _steps(doc, "DeployProd")
    (ref,) = [s for s in steps if s.get("task") == "AzureCLI@2"]
    steps.remove(ref)
    steps.append(ref)


PROD_ID = "33333333-3333-4333-8333-333333333333"


def with_prod_id(path: str) -> dict[str, Any]:
    """Stage configs as they should be: production's names the production connection."""
    return {"service_connection_id": PROD_ID} if path.endswith("production.json") else {}


def _one_connection_for_both(doc: dict[str, Any]) -> None:
    for variable in doc["variables"]:
        if variable.get("name") == "stagingServiceConnectionId":
            variable["value"] = PROD_ID


CONNECTION_MUTATIONS: dict[str, tuple[Path, Callable[[dict[str, Any]], None], dict[str, Any]]] = {
    "deploy job without its reference (id from the stage config)": (
        MODEL_DEPLOY,
        _without_reference("DeployProd"),
        {"stage_config": with_prod_id},
    ),
    "id in env of a job that references nothing": (
        MODEL_DEPLOY,
        _env("PostDeploy", "record", "$(productionServiceConnectionId)"),
        {},
    ),
    "id in env of a job that references another connection": (
        MODEL_DEPLOY,
        _env("TestStaging", "endpoint_test", "${{ variables.productionServiceConnectionId }}"),
        {},
    ),
    "id as a pipeline variable": (MODEL_DEPLOY, _root_id_variable, {}),
    "model-build sends an id without referencing it": (
        MODEL_BUILD,
        _env("Build", "upsert", "11111111-1111-4111-8111-111111111111"),
        {},
    ),
    "bridge.yaml names a connection no job references": (
        MODEL_BUILD,
        lambda d: None,
        {"bridge_id": "11111111-1111-4111-8111-111111111111"},
    ),
    "connection input resolved at run time": (MODEL_DEPLOY, _macro_connection, {}),
}


@pytest.mark.parametrize("case", list(CONNECTION_MUTATIONS))
def test_connection_rule_fails_on_a_broken_copy(validator: Draft7Validator, case: str) -> None:
    path, mutate, kwargs = CONNECTION_MUTATIONS[case]
    broken = copy.deepcopy(shared.load(path))
    mutate(broken)
    assert shared.schema_errors(validator, broken) == []  # the rule, not the schema, catches it
    assert connection_problems(broken, path, **kwargs), case


BOUNDARY_MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "production connection referenced in TestStaging": _reference_production_in("TestStaging"),
    "production connection referenced in PostDeploy": _reference_production_in("PostDeploy"),
    "production deploy job without its reference": _without_reference("DeployProd"),
    "staging test job without its reference": _without_reference("TestStaging"),
    "production smoke test back in PostDeploy": _production_smoke_test_in_post_deploy,
    "reference after the deploy": _reference_after_deploy,
    "both stages on one connection": _one_connection_for_both,
}


@pytest.mark.parametrize("case", list(BOUNDARY_MUTATIONS))
def test_boundary_rule_fails_on_a_broken_copy(
    validator: Draft7Validator, deploy_doc: dict[str, Any], case: str
) -> None:
    broken = copy.deepcopy(deploy_doc)
    BOUNDARY_MUTATIONS[case](broken)
    assert broken != deploy_doc
    assert shared.schema_errors(validator, broken) == []
    assert boundary_problems(broken), case


def test_boundary_rule_checks_the_stage_configs(deploy_doc: dict[str, Any]) -> None:
    other = "44444444-4444-4444-8444-444444444444"
    problems = boundary_problems(
        deploy_doc,
        stage_config=lambda p: {"service_connection_id": other} if "production" in p else {},
    )
    assert problems and "productionServiceConnectionId" in problems[0]
    # the same id in the config and the YAML is consistent
    assert boundary_problems(deploy_doc, stage_config=with_prod_id) == []
    assert connection_problems(deploy_doc, MODEL_DEPLOY, stage_config=with_prod_id) == []
