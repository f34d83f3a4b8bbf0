"""Injection: text from outside is data, never a command for the agent, the shell or a template.

Outside text here: model package group names and ARNs, approval comments and approver names,
SageMaker failure reasons, CloudFormation stack event reasons, endpoint answers, the events the
trigger receives and the template parameters of the runs it starts. The hostile values carry
shell syntax (``$(…)``, backticks, ``;``, quotes, line breaks, CR), Azure Pipelines syntax
(``${{ … }}``, ``$[ … ]``, ``$(…)`` macros) and logging commands (``##vso[``, ``##[``, also after a
bare CR or inside a JSON document).

"Executable" is the agent's rule (Microsoft Learn, "Logging commands",
learn.microsoft.com/azure/devops/pipelines/scripts/logging-commands: the agent scans each line a
step writes and acts on ``##vso[area.action …]message`` and on the formatting commands
``##[command]message``; microsoft/azure-pipelines-agent's ``Command.TryParse`` finds ``##vso[``
anywhere in a line, ``##[`` at its start after blanks; a line ends at ``\\n``, ``\\r\\n`` or a bare
``\\r``). tests/unit/test_agent_injection.py feeds hostile text to the Reporter one method at a
time and through ``pipeline start --wait`` and ``registry describe``; this file runs the other
commands whose output carries outside text, end to end on an agent, in text and JSON.

Three parts:

(a) the CLI on an agent (``TF_BUILD=True``): every physical line of stdout and stderr is either
    not executable or one of smbridge's own commands (output variables, ``task.logissue``,
    ``##[group]``/``##[endgroup]``), and an own command carries no foreign command in its data.
(b) azure-pipelines/*.yml, parsed: an outside value (a free-text template parameter, an output
    variable, a variable set from one by a runtime expression) reaches a script only through
    ``env:``; no script body, script-like task input or condition holds a ``${{ }}``, ``$[ ]``
    or ``$( )`` that expands one. Then every script that takes one runs in bash with hostile
    values: nothing executes, each value arrives as one argument, nothing becomes a command.
(c) the Runs API body the trigger sends: hostile values only as JSON strings, never evaluated by
    us; identifiers safe for the YAML above (no ``$``, brackets, quotes, whitespace); packages
    of accounts or regions the trigger is not configured for are refused before any request
    (extends tests/unit/test_trigger_events.py, which checks ``parse_event`` alone).

Seeded randomness only (``SEED``, printed in every failure message).
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import responses
import yaml
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from bridge.sandbox.ado_contract import REFERENCE_DIR
from tests.support.fake_ado import DECLARED_PARAMETERS, FakeAzureDevOps

SEED = 1111
REPO = Path(__file__).resolve().parents[2]
EVENT_FILE = REFERENCE_DIR / "sagemaker-events" / "model-package-approved.json"
APPROVED = json.loads(EVENT_FILE.read_text())

HOSTILE = [
    "reason ##vso[task.setvariable variable=AWS_ROLE_ARN]arn:aws:iam::1:role/evil",
    "ok\r##vso[task.complete result=Succeeded;]done",
    "x\n##[error]fake error\r\n  ##[group]not ours",
    '{"FailureReason": "##vso[task.prependpath]/tmp/evil", "n": "\\r##[endgroup]"}',
    "$(System.AccessToken) ${{ parameters.modelPackageArn }} $[ variables['System.AccessToken'] ]",
    "a; rm -rf / # `id` $(id) 'single' \"double\" \\ back",
    "###vso[task.uploadfile]/etc/passwd ##VSO[task.setvariable variable=X]y",
]
MIXED = " | ".join(HOSTILE)


# -- the agent's rule -----------------------------------------------------------------------------


def physical_lines(text: str) -> list[str]:
    """``text`` split as the agent's ``StreamReader.ReadLine`` splits it."""
    return re.split(r"\r\n|\r|\n", text)


def executable(line: str) -> bool:
    """The agent acts on ``##vso[`` anywhere in a line, and on ``##[`` at its start after blanks
    (matched case-insensitively, as bridge/core/agent.py assumes of the agent)."""
    return "##vso[" in line.lower() or line.lstrip().startswith("##[")


# smbridge's own commands (bridge/core/agent.py builds them): prefix → what follows is data
OWN_COMMANDS = [
    re.compile(r"##vso\[task\.setvariable variable=[A-Za-z][A-Za-z0-9_]*;isoutput=true\]"),
    re.compile(r"##vso\[task\.logissue type=(?:error|warning)\]"),
    re.compile(r"##\[group\]"),
    re.compile(r"##\[endgroup\]$"),
]


def _unescape(data: str) -> str:
    """The agent's ``Command.Unescape`` of a command's data."""
    for token, escaped in ((";", "%3B"), ("\r", "%0D"), ("\n", "%0A"), ("]", "%5D")):
        data = data.replace(escaped, token)
    return data.replace("%AZP25", "%")


def foreign_commands(text: str) -> list[str]:
    """Every line of ``text`` the agent would act on that smbridge did not write as its own
    command, or that carries another command in its data."""
    found = []
    for line in physical_lines(text):
        if not executable(line):
            continue
        match = next((p.match(line) for p in OWN_COMMANDS if p.match(line)), None)
        if match is None:
            found.append(line)
            continue
        data = _unescape(line[match.end() :])
        if any(executable(part) for part in physical_lines(data)):
            found.append(line)
    return found


def test_the_rule_matches_the_agents():
    assert foreign_commands("a\r##vso[task.complete]x\n") == ["##vso[task.complete]x"]
    assert foreign_commands("  ##[error]x") == ["  ##[error]x"]
    assert foreign_commands("text ##VsO[task.setvariable variable=a]b") != []
    assert foreign_commands("##vso[task.logissue type=error]fine: **vso[x]") == []
    assert foreign_commands("##vso[task.logissue type=error]a%0D##vso[task.complete]") != []
    assert foreign_commands("##[group]Deploy\n##[endgroup]\nplain # [text]") == []
    assert foreign_commands("x ##[error] not at the start") == []


# -- (a) the CLI on an agent ----------------------------------------------------------------------

EXECUTION = "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/demo/execution/abc123def456"
PACKAGE = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/smbridge-demo/3"


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A job on an agent, in a folder with a bridge.yaml; the trigger's log stream restored."""
    from bridge.trigger.handler import logger

    monkeypatch.setenv("TF_BUILD", "True")
    monkeypatch.setenv("BUILD_BUILDID", "42")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bridge.yaml").write_text(
        "region: eu-west-1\npipeline:\n  name: demo\nazure_devops:\n  organization: contoso\n"
        "  project: mlops\n"
    )
    original = logger.registered_handler.stream
    yield tmp_path
    logger.registered_handler.stream = original


def smbridge(argv: list[str], capsys) -> tuple[int, str]:
    """Run the CLI; (exit code, stdout and stderr). The JSON document of ``-o json`` is in
    :data:`LAST_STDOUT`."""
    from bridge.cli.app import main

    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    LAST_STDOUT[:] = [captured.out]
    return code, captured.out + "\n" + captured.err


LAST_STDOUT: list[str] = [""]


def assert_inert(text: str, where: str) -> None:
    found = foreign_commands(text)
    assert found == [], f"{where} (seed {SEED}): the agent would run {found!r}"


class _Clients:
    """What a command asks of its AWS clients: ``client(service)``, ``in_region(region)``."""

    def __init__(self, **clients: Any) -> None:
        self._clients = clients

    def client(self, service: str) -> Any:
        return self._clients[service]

    def in_region(self, region: str) -> _Clients:
        return self

    def session(self) -> Any:
        return boto3.Session(region_name="eu-west-1")


def _use(monkeypatch: pytest.MonkeyPatch, clients: _Clients) -> None:
    from bridge.cli import clients as cli_clients

    monkeypatch.setattr(cli_clients, "aws_clients", lambda *a, **k: clients)


# ---- pipeline status / stop: SageMaker's FailureReason, step names (botocore Stubber)


def _failed_execution(stubber: Stubber, reason: str) -> None:
    started = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    stubber.add_response(
        "describe_pipeline_execution",
        {
            "PipelineExecutionArn": EXECUTION,
            "PipelineExecutionStatus": "Failed",
            "FailureReason": reason,
            "PipelineExecutionDisplayName": reason[:80],
        },
        {"PipelineExecutionArn": EXECUTION},
    )
    stubber.add_response(
        "list_pipeline_execution_steps",
        {
            "PipelineExecutionSteps": [
                {
                    "StepName": "Preprocess",
                    "StepStatus": "Succeeded",
                    "StartTime": started,
                    "EndTime": started,
                },
                {
                    "StepName": "Train",
                    "StepDisplayName": reason,
                    "StepStatus": "Failed",
                    "StartTime": started,
                    "EndTime": started,
                    "FailureReason": reason,
                },
            ]
        },
        {"PipelineExecutionArn": EXECUTION, "SortOrder": "Ascending"},
    )


@pytest.mark.parametrize("output", ["text", "json"])
@pytest.mark.parametrize("reason", [*HOSTILE, MIXED], ids=lambda v: v[:24])
def test_pipeline_status_with_a_hostile_failure_reason(agent, monkeypatch, capsys, reason, output):
    client = boto3.client("sagemaker", region_name="eu-west-1")
    stubber = Stubber(client)
    _failed_execution(stubber, reason)
    stubber.activate()
    _use(monkeypatch, _Clients(sagemaker=client))
    code, text = smbridge(
        ["pipeline", "status", "--execution-arn", EXECUTION, "-o", output], capsys
    )
    assert code == 0, text
    if output == "text":
        assert "failure reason: " in text
    else:
        document = json.loads(LAST_STDOUT[0])
        assert document["status"] == "Failed"
        assert document["steps"][1]["failure_reason"] == reason  # the data itself is kept
    stubber.assert_no_pending_responses()
    assert_inert(text, f"pipeline status -o {output}")


@pytest.mark.parametrize("reason", [HOSTILE[1], MIXED], ids=["cr", "mixed"])
def test_pipeline_stop_refused_with_a_hostile_message(agent, monkeypatch, capsys, reason):
    """StopPipelineExecution refused (a ValidationException naming a status) while the
    execution still runs: the refusal is quoted in the error, on one logissue line."""
    client = boto3.client("sagemaker", region_name="eu-west-1")
    stubber = Stubber(client)
    stubber.add_client_error(
        "stop_pipeline_execution",
        service_error_code="ValidationException",
        service_message=f"status {reason}",
        http_status_code=400,
        expected_params={"PipelineExecutionArn": EXECUTION, "ClientRequestToken": ANY},
    )
    stubber.add_response(
        "describe_pipeline_execution",
        {"PipelineExecutionArn": EXECUTION, "PipelineExecutionStatus": "Executing"},
        {"PipelineExecutionArn": EXECUTION},
    )
    stubber.activate()
    _use(monkeypatch, _Clients(sagemaker=client))
    code, text = smbridge(["pipeline", "stop", "--execution-arn", EXECUTION], capsys)
    assert code == 3, text
    assert "was refused" in text
    stubber.assert_no_pending_responses()
    assert_inert(text, "pipeline stop")


def test_pipeline_start_wait_json_on_an_agent(agent, monkeypatch, capsys):
    """start --wait with ``-o json`` (text mode: tests/unit/test_agent_injection.py): progress on
    stderr, the error document on stdout, hostile step names and reasons in both."""
    from bridge.pipeline import operations as pipeline
    from tests.support.fakes import FakeClock, FakeSageMaker, ScriptedStep

    clock = FakeClock()
    fake = FakeSageMaker(clock)
    fake.add_pipeline("demo", [])
    fake.script = [
        ScriptedStep(HOSTILE[2], 0, 60),
        ScriptedStep("Train", 60, 600, status="Failed", failure_reason=MIXED),
    ]
    client = fake.attach(boto3.client("sagemaker", region_name="eu-west-1"))
    _use(monkeypatch, _Clients(sagemaker=client))
    real_start = pipeline.start_pipeline
    monkeypatch.setattr(
        pipeline,
        "start_pipeline",
        lambda params, **kw: real_start(params, sleep=clock.sleep, monotonic=clock.monotonic, **kw),
    )
    from bridge.cli.app import main

    assert main(["pipeline", "start", "--wait", "-o", "json"]) == 4
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["exit_code"] == 4 and "Train" in document["error"]
    assert_inert(captured.out, "start --wait -o json: stdout")
    assert_inert(captured.err, "start --wait -o json: stderr")


# ---- deploy: CloudFormation stack events and the rollback reason (FakeCloudFormation)


def _hostile_cloudformation(reason: str) -> Any:
    from tests.support.fake_cloudformation import FakeCloudFormation

    class Hostile(FakeCloudFormation):
        """CloudFormation whose failure and rollback reasons are ``reason`` (the service puts a
        resource handler's own message there: ResourceStatusReason, StackStatusReason)."""

        def _event(self, stack, logical, rtype, status, text):  # type: ignore[override]
            if "FAILED" in status or "ROLLBACK" in status:
                text = f"{text} {reason}".strip()
            super()._event(stack, logical, rtype, status, text)

    fake = Hostile()
    fake.outcomes = ["fail"]
    return fake


def _approved_package(stubber: Stubber) -> None:
    stubber.add_response(
        "describe_model_package",
        {
            "ModelPackageName": "smbridge-demo",
            "ModelPackageGroupName": "smbridge-demo",
            "ModelPackageVersion": 3,
            "ModelPackageArn": PACKAGE,
            "CreationTime": datetime(2026, 12, 1, tzinfo=UTC),
            "ModelPackageStatus": "Completed",
            "ModelPackageStatusDetails": {"ValidationStatuses": []},
            "ModelApprovalStatus": "Approved",
            "ApprovalDescription": MIXED,
            "InferenceSpecification": {
                "Containers": [
                    {
                        "Image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/x:1",
                        "ModelDataUrl": "s3://bucket/model.tar.gz",
                    }
                ],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
        },
        {"ModelPackageName": PACKAGE},
    )


@pytest.mark.parametrize("output", ["text", "json"])
@pytest.mark.parametrize(
    "reason", [HOSTILE[0], HOSTILE[1], HOSTILE[3], MIXED], ids=lambda v: v[:20]
)
def test_deploy_prints_hostile_stack_events_inertly(agent, monkeypatch, capsys, reason, output):
    from bridge.deploy import operations

    sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
    stubber = Stubber(sagemaker)
    _approved_package(stubber)
    stubber.activate()
    _use(monkeypatch, _Clients(sagemaker=sagemaker))
    fake = _hostile_cloudformation(reason)
    cfn = fake.attach(boto3.client("cloudformation", region_name="eu-west-1"))
    real_deploy = operations.deploy_stage

    def deploy_stage(params: Any, **kwargs: Any) -> Any:
        kwargs["stage_clients_factory"] = lambda stage, base: _Clients(cloudformation=cfn)
        return real_deploy(params, sleep=lambda s: None, **kwargs)

    monkeypatch.setattr(operations, "deploy_stage", deploy_stage)
    argv = ["deploy", "--stage", "staging", "--model-package-arn", PACKAGE, "--stage-config",
            str(REPO / "model-deploy/config/staging.json"), "--templates-dir",
            str(REPO / "model-deploy/templates"), "-o", output]  # fmt: skip
    code, text = smbridge(argv, capsys)
    assert code == 3, text
    assert "CREATE_FAILED" in text  # the events were printed
    assert fake.calls_of("ExecuteChangeSet")
    assert_inert(text, f"deploy -o {output}")


# ---- endpoint test: the endpoint's answers and its model errors (botocore Stubber)


def _endpoint(rows: int) -> Any:
    runtime = boto3.client("sagemaker-runtime", region_name="eu-west-1")
    stubber = Stubber(runtime)
    for n in range(rows):
        if n % 3 == 2:
            stubber.add_client_error(
                "invoke_endpoint",
                service_error_code="ModelError",
                service_message=MIXED,
                http_status_code=424,
            )
            continue
        body = (HOSTILE[n % len(HOSTILE)] if n % 3 == 1 else "0.7").encode()
        stubber.add_response(
            "invoke_endpoint",
            {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "text/csv"},
        )
    stubber.activate()
    return runtime


@pytest.mark.parametrize("output", ["text", "json"])
def test_endpoint_test_report_with_hostile_answers(agent, monkeypatch, capsys, output):
    """Unparseable answers (quoted in the shape check) and ModelError messages (in the status
    check): the report table, the error line and the JSON report."""
    rows = 6
    payload = agent / "payload.csv"
    payload.write_text("".join(f"{n},1.5,2.5\n" for n in range(rows)))
    _use(monkeypatch, _Clients(**{"sagemaker-runtime": _endpoint(rows)}))
    argv = ["endpoint", "test", "--endpoint", "smbridge-demo-staging", "--payload", str(payload),
            "--junit", str(agent / "junit.xml"), "-o", output]  # fmt: skip
    code, text = smbridge(argv, capsys)
    assert code == 4, text
    assert "FAIL" in text or '"passed": false' in text
    assert (agent / "junit.xml").is_file()
    assert_inert(text, f"endpoint test -o {output}")


# ---- ado approvals: hostile names, comments, instructions (FakeAzureDevOps)

ANN = "3b3db741-9d03-4e32-a7c0-6c3dfc2013c1"
PAT = "INJECTION-PAT-SENTINEL-7"


@pytest.fixture
def ado(agent, monkeypatch):
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", PAT)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeAzureDevOps(pat=PAT).install(mock)


def _hostile_approval(fake: FakeAzureDevOps, value: str) -> str:
    approval_id = fake.add_approval([ANN], pipeline=value)
    approval = fake.approvals[approval_id]
    approval["instructions"] = value
    approval["pipeline"]["owner"]["name"] = value
    approval["steps"][0]["assignedApprover"]["displayName"] = value
    approval["steps"][0]["comment"] = value
    approval["steps"][0]["actualApprover"] = {"id": ANN, "displayName": value}
    return approval_id


@pytest.mark.parametrize("output", ["text", "json"])
@pytest.mark.parametrize("value", [*HOSTILE, MIXED], ids=lambda v: v[:24])
def test_ado_approvals_list_with_hostile_names_and_comments(ado, capsys, value, output):
    approval_id = _hostile_approval(ado, value)
    code, text = smbridge(["ado", "approvals", "list", "-o", output], capsys)
    assert code == 0, text
    assert approval_id in text
    if output == "json":
        (approval,) = json.loads(LAST_STDOUT[0])["approvals"]
        assert approval["steps"][0]["comment"] == value  # the data itself is kept
    assert_inert(text, f"ado approvals list -o {output}")


def test_ado_approve_with_a_hostile_comment_and_a_hostile_refusal(ado, monkeypatch, capsys):
    """The comment is sent as a JSON string exactly; the service's refusal (a 400 naming what it
    was sent) is printed inertly."""
    from bridge.sandbox.azure_devops import service_error
    from tests.support import fake_ado

    approval_id = ado.add_approval([ANN])
    code, text = smbridge(["ado", "approvals", "approve", approval_id, "--comment", MIXED], capsys)
    assert code == 0, text
    assert json.loads(ado.requests[-1][2])[0]["comment"] == MIXED
    assert_inert(text, "ado approvals approve")

    second = ado.add_approval([ANN])
    refuse = lambda self, request: (400, {}, service_error(f"cannot approve: {MIXED}"))  # noqa: E731
    handlers = {**fake_ado._ADMIN_HANDLERS, "Approvals_Update": refuse}
    monkeypatch.setattr(fake_ado, "_ADMIN_HANDLERS", handlers)
    code, text = smbridge(["ado", "approvals", "reject", second, "--comment", MIXED], capsys)
    assert code == 3, text
    assert "cannot approve" in text
    assert_inert(text, "ado approvals reject (refused)")


# ---- trigger simulate: a hostile event, hostile template parameters, a hostile refusal

ROUTES = {"default": {"organization": "contoso", "project": "mlops", "pipelineId": 12}}


def _event_file(where: Path, event: dict[str, Any]) -> str:
    path = where / "event.json"
    path.write_text(json.dumps(event))
    return str(path)


def _with(event: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(event)
    if field in changed["detail"] or field.startswith("Model") or field == "ApprovalDescription":
        changed["detail"][field] = value
    else:
        changed[field] = value
    return changed


EVENT_FIELDS = ["id", "source", "detail-type", "account", "region", "ModelPackageGroupName",
                "ModelPackageArn", "ModelApprovalStatus", "ApprovalDescription"]  # fmt: skip


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
@pytest.mark.parametrize("field", EVENT_FIELDS)
def test_trigger_simulate_with_a_hostile_event(ado, capsys, monkeypatch, field, dry_run):
    monkeypatch.setenv("SMBRIDGE_ROUTES", json.dumps(ROUTES))
    event = _with(APPROVED, field, MIXED)
    argv = ["trigger", "simulate", "--event", _event_file(Path.cwd(), event)]
    code, text = smbridge([*argv, *(["--dry-run"] if dry_run else [])], capsys)
    if field == "ApprovalDescription":  # not used: the run starts with the event's own values
        assert code == 0, text
        assert len(ado.runs) == (0 if dry_run else 1)
    else:
        assert code == 2, text
        assert ado.runs == []
    assert_inert(text, f"trigger simulate, hostile {field}")


def test_trigger_simulate_prints_hostile_template_parameters_inertly(ado, capsys, monkeypatch):
    """A route's own template parameters (for a pipeline declaring them) are printed in the
    request the simulation shows, as JSON on an agent."""
    ado.declared = DECLARED_PARAMETERS | {"note"}
    routes = {"default": {**ROUTES["default"], "templateParameters": {"note": MIXED}}}
    monkeypatch.setenv("SMBRIDGE_ROUTES", json.dumps(routes))
    for dry_run in ([], ["--dry-run"]):
        code, text = smbridge(["trigger", "simulate", "--event", str(EVENT_FILE), *dry_run], capsys)
        assert code == 0, text
        assert "templateParameters" in text
        assert_inert(text, f"trigger simulate {dry_run}")
    (run,) = ado.runs
    assert run["templateParameters"]["note"] == MIXED


def test_trigger_simulate_with_a_hostile_refusal(ado, capsys, monkeypatch):
    """The Runs API answers 400 with a message quoting a hostile value: the error line, the
    report's requests and the trigger's JSON log lines are inert."""
    monkeypatch.setenv("SMBRIDGE_ROUTES", json.dumps(ROUTES))
    monkeypatch.setattr(
        ado, "_run", lambda request: (400, {}, json.dumps({"message": f"refused: {MIXED}"}))
    )
    code, text = smbridge(["trigger", "simulate", "--event", str(EVENT_FILE)], capsys)
    assert code == 3, text
    assert "refused" in text and '"level":"ERROR"' in text
    assert_inert(text, "trigger simulate, refused")


# -- (b) azure-pipelines/*.yml --------------------------------------------------------------------

PIPELINES_DIR = REPO / "azure-pipelines"
YAML_FILES = sorted(PIPELINES_DIR.rglob("*.yml"))
# Keys whose value a shell or interpreter runs (the step shortcuts, and the inputs of Bash@3,
# PowerShell@2, CmdLine@2, AzureCLI@2, PythonScript@0 that hold a script or its arguments).
SCRIPT_STEP_KEYS = ("script", "bash", "pwsh", "powershell")
SCRIPT_INPUTS = ("script", "inlineScript", "arguments", "scriptArguments", "Inline", "inline")
# Predefined variables the pipeline's author does not control and no one outside can set
# (paths on the agent); any other macro is treated as outside.
FIXED_VARIABLES = {
    "Build.ArtifactStagingDirectory",
    "Build.SourcesDirectory",
    "Build.BinariesDirectory",
    "Pipeline.Workspace",
    "Agent.TempDirectory",
    "Agent.OS",
    "System.DefaultWorkingDirectory",
}
TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
RUNTIME = re.compile(r"\$\[(.*?)\]", re.DOTALL)
MACRO = re.compile(r"\$\(([^()]*)\)")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def strings(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """Every string in the document (keys too), with where it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, "<key>"), str(key)
            yield from strings(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from strings(value, (*path, str(index)))
    elif isinstance(node, str):
        yield path, node


def free_parameters(doc: dict[str, Any]) -> set[str]:
    """Template parameters anyone starting a run may set to any text (no ``values:`` list)."""
    return {
        p["name"]
        for p in doc.get("parameters") or []
        if "values" not in p and p.get("type", "string") in ("string", "object", "stepList")
    }


def literal_variables() -> set[str]:
    """Variables the YAML files define from literals and fixed paths only (no expression, no
    other macro). Over all files: a steps template sees its including pipeline's variables."""
    names: set[str] = set()
    for path in YAML_FILES:
        for node in _variable_lists(load(path)):
            for item in node:
                if not (isinstance(item, dict) and "name" in item):
                    continue
                value = str(item.get("value", ""))
                fixed = all(m in FIXED_VARIABLES for m in MACRO.findall(value))
                if fixed and "${{" not in value and "$[" not in value:
                    names.add(item["name"])
    return names


def _variable_lists(node: Any) -> Iterator[list[Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "variables" and isinstance(value, list):
                yield value
            yield from _variable_lists(value)
    elif isinstance(node, list):
        for value in node:
            yield from _variable_lists(value)


def outside_macros(text: str, literals: set[str]) -> list[str]:
    return [m for m in MACRO.findall(text) if m not in FIXED_VARIABLES and m not in literals]


def outside_templates(text: str, free: set[str]) -> list[str]:
    return [
        expression.strip()
        for expression in TEMPLATE.findall(text)
        if any(re.search(rf"\bparameters\.{name}\b", expression) for name in free)
        or (
            re.search(r"\bvariables\b", expression)
            and not re.fullmatch(r"\s*variables\.\w+\s*", expression)
        )
    ]


def sink_texts(step: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, text) of a step's script bodies and script-like task inputs."""
    for key in SCRIPT_STEP_KEYS:
        if isinstance(step.get(key), str):
            yield key, step[key]
    for key, value in (step.get("inputs") or {}).items():
        if key in SCRIPT_INPUTS and isinstance(value, str):
            yield f"inputs.{key}", value


def steps_of(node: Any) -> Iterator[dict[str, Any]]:
    """Every step (an item of any ``steps:`` list), deployment hooks included."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "steps" and isinstance(value, list):
                yield from (s for s in value if isinstance(s, dict))
            yield from steps_of(value)
    elif isinstance(node, list):
        for value in node:
            yield from steps_of(value)


def yaml_problems(doc: dict[str, Any]) -> list[str]:
    """Where an outside value could become code: see the module docstring, part (b)."""
    free, literals = free_parameters(doc), literal_variables()
    problems = []
    for step in steps_of(doc):
        label = repr(step.get("displayName") or step.get("name") or step.get("task") or "?")
        for where, text in sink_texts(step):
            if TEMPLATE.search(text):
                problems.append(f"{label} {where}: a template expression in a script")
            if RUNTIME.search(text):
                problems.append(f"{label} {where}: a runtime expression in a script")
            for macro in MACRO.findall(text):
                if macro not in FIXED_VARIABLES:
                    problems.append(f"{label} {where}: macro $({macro}) spliced into a script")
    for path, text in strings(doc):
        if path == ("name",):  # the run name: its own test (test_pipeline_outside_values.py)
            continue
        in_env = len(path) >= 2 and path[-2] == "env"
        in_variable = len(path) >= 1 and path[-1] == "value" and "variables" in path
        is_condition = len(path) >= 1 and path[-1] == "condition"
        where = "/".join(path)
        for expression in outside_templates(text, free):
            whole = re.fullmatch(r"\$\{\{\s*parameters\.\w+\s*\}\}", text.strip())
            if in_env and whole:
                continue
            problems.append(f"{where}: template expression ${{{{ {expression} }}}} outside env:")
        for macro in outside_macros(text, literals):
            if in_env and text.strip() == f"$({macro})":
                continue
            problems.append(f"{where}: outside value $({macro}) outside env:")
        if RUNTIME.search(text) and not (in_variable or is_condition):
            problems.append(f"{where}: runtime expression outside variables: and conditions")
        if is_condition and (outside_macros(text, literals) or outside_templates(text, free)):
            problems.append(f"{where}: an outside value spliced into a condition")
    return problems


def test_yaml_files_are_found_and_hold_outside_values():
    names = {p.name for p in YAML_FILES}
    assert {"model-build.yml", "model-deploy.yml", "setup-python.yml"} <= names
    deploy = load(PIPELINES_DIR / "model-deploy.yml")
    assert free_parameters(deploy) == {
        "modelPackageArn", "modelPackageGroupName", "modelPackageVersion", "sourceEventId"
    }  # fmt: skip
    sinks = sum(1 for path in YAML_FILES for s in steps_of(load(path)) for _ in sink_texts(s))
    assert sinks >= 12  # bash steps and AzureCLI@2 inline scripts


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_outside_values_reach_scripts_through_env_only(path: Path):
    assert yaml_problems(load(path)) == []


ARN_PARAMETER = "${{ parameters.modelPackageArn }}"
BROKEN = {
    "parameter in a script": ("bash", f"smbridge prepare --model-package-arn {ARN_PARAMETER}"),
    "output variable in a script": ("bash", 'echo "$(stack.endpointName)"'),
    "runtime expression in a script": ("bash", "echo $[ variables.resolvedModelPackageArn ]"),
    "outside macro in task arguments": (
        "inputs",
        {"arguments": "--arn $(resolvedModelPackageArn)"},
    ),
    "inline script of AzureCLI@2": ("inputs", {"inlineScript": f"az x --name {ARN_PARAMETER}"}),
    "parameter in a condition": ("condition", "eq('${{ parameters.modelPackageGroupName }}', 'x')"),
    "parameter in a task input": ("inputs", {"artifact": "${{ parameters.modelPackageVersion }}"}),
    "output variable in a task input": ("inputs", {"targetPath": "$(prepare.modelPackageArn)"}),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_the_yaml_check_fails_on_a_broken_copy(case: str):
    doc = load(PIPELINES_DIR / "model-deploy.yml")
    key, value = BROKEN[case]
    step = {"task": "Bash@3", "displayName": case, "inputs": {}}
    if key == "inputs":
        step["inputs"] = value
    else:
        step = {"displayName": case, key: value, **({"bash": "true"} if key == "condition" else {})}
    doc["stages"][0]["jobs"][0]["steps"].append(step)
    assert yaml_problems(doc), case


# ---- the scripts themselves, run with hostile values

SHELL_HOSTILE = [
    '$(touch "$CANARY")',
    '`touch "$CANARY"`',
    '"; touch "$CANARY"; echo "',
    "'; touch \"$CANARY\"; echo '",
    'arn\ntouch "$CANARY"',
    "x\r##vso[task.setvariable variable=AWS_ROLE_ARN]arn:aws:iam::1:role/evil",
    "${{ parameters.modelPackageArn }} $[ variables.x ] $(System.AccessToken)",
    "--role-arn arn:aws:iam::111111111111:role/evil --no-role",
    "${IFS}touch${IFS}$CANARY; *",
    "##[error]fake\n##vso[task.complete result=Succeeded;]",
]


def _outside_env(step: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    """The step's env: names whose value comes from outside (a free parameter, a non-literal
    variable or an output variable)."""
    free, literals = free_parameters(doc), literal_variables()
    names = []
    for name, value in (step.get("env") or {}).items():
        text = str(value)
        outside = outside_templates(text, free) or outside_macros(text, literals)
        # the job's token and the variable group's role: set by the pipeline's owners
        if outside and name not in ("SYSTEM_ACCESSTOKEN", "SMBRIDGE_AWS__ROLE_ARN"):
            names.append(name)
    return names


def _bash_steps() -> list[tuple[str, dict[str, Any], str, list[str]]]:
    """(label, step, the outside env: name set to the hostile value, the other outside names,
    which get the blank placeholder ``' '``: model-deploy.yml's parameters default to it)."""
    found = []
    for path in YAML_FILES:
        doc = load(path)
        for step in steps_of(doc):
            names = _outside_env(step, doc)
            if isinstance(step.get("bash"), str):
                label = f"{path.name}:{step.get('displayName') or step.get('name')}"
                for name in names:
                    others = [n for n in names if n != name]
                    found.append((f"{label}:{name}", step, name, others))
    return found


BASH_STEPS = _bash_steps()


@pytest.fixture
def fake_smbridge(tmp_path: Path) -> tuple[Path, Path]:
    """``smbridge`` on PATH recording its arguments, NUL-separated, one call per file."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    calls.mkdir()
    script = bin_dir / "smbridge"
    script.write_text(
        "#!/bin/bash\n"
        f'out="$(mktemp "{calls}/call.XXXXXX")"\n'
        'for a in "$@"; do printf "%s\\0" "$a" >> "$out"; done\n'
    )
    script.chmod(0o755)
    return bin_dir, calls


def _recorded(calls: Path) -> list[list[str]]:
    return [p.read_bytes().decode().split("\0")[:-1] for p in sorted(calls.iterdir())]


def test_every_script_with_an_outside_value_is_run_below():
    steps = {step.get("name") or step.get("displayName") for _, step, _, _ in BASH_STEPS}
    assert {"prepare", "stack", "endpoint_test", "record", "Summary"} <= steps
    assert len(BASH_STEPS) >= 10


@pytest.mark.parametrize("value", SHELL_HOSTILE, ids=lambda v: v[:20])
@pytest.mark.parametrize(
    ("label", "step", "name", "others"), BASH_STEPS, ids=[b[0] for b in BASH_STEPS]
)
def test_scripts_take_hostile_values_as_data(
    fake_smbridge, tmp_path, label, step, name, others, value
):
    """The outside env: value ``name`` set to ``value``, as the agent sets it (the macro or the
    template expression replaced by the value itself), the others blank; bash runs the body.
    Nothing runs as code, nothing prints a command, and a value the script passes to smbridge
    arrives as exactly one argument (trimmed where the script trims it)."""
    bin_dir, calls = fake_smbridge
    canary = tmp_path / "PWNED"
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "glob-target").write_text("")
    (tmp_path / "staging").mkdir()
    env = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "LC_ALL": "C.UTF-8",
        "CANARY": str(canary),
        "BUILD_ARTIFACTSTAGINGDIRECTORY": str(tmp_path / "staging"),
        **dict.fromkeys(others, " "),
        name: value,
    }
    done = subprocess.run(
        ["bash", "-c", step["bash"]], env=env, cwd=workdir, capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip
    where = f"{label} = {value!r} (seed {SEED})"
    assert not canary.exists(), f"{where}: the value ran as code"
    assert done.returncode == 0, f"{where}: {done.stderr}"
    assert_inert(done.stdout + done.stderr, where)
    body = step["bash"]
    if re.search(rf"smbridge\b[^\n]*\$\{{?{name}\b", body):  # passed to smbridge
        expected = value.strip(" \t\n") if f"read -r -d '' {name} " in body else value
        (call,) = _recorded(calls)
        assert call.count(expected) == 1, f"{where}: not one argument: {call!r}"
        assert "glob-target" not in call, where


# -- (c) the Runs API body the trigger sends ------------------------------------------------------

SAFE_PARAMETER = re.compile(r"[A-Za-z0-9._:/#@+=-]+")
FUZZ_CASES = 300


class _Context:
    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def _runtime(*, accounts: frozenset[str] = frozenset(), **routes: Any) -> Any:
    from bridge.azure_devops.credentials import SecretCredential
    from bridge.trigger.handler import TriggerRuntime
    from bridge.trigger.ledger import MemoryLedger
    from bridge.trigger.routing import parse_routes

    table = {"default": {**ROUTES["default"], **routes}}
    return TriggerRuntime(
        routes=parse_routes(json.dumps(table), source="test"),
        credential=SecretCredential(lambda: PAT, source="test"),
        ledger=MemoryLedger(),
        persistence=None,
        registry_accounts=accounts,
        sleep=lambda s: None,
    )


@pytest.fixture
def runs_api():
    from bridge.trigger.handler import logger

    original = logger.registered_handler.stream
    logger.registered_handler.stream = io.StringIO()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake = FakeAzureDevOps(pat=PAT, declared=DECLARED_PARAMETERS | {"note", "comment"})
        yield fake.install(mock)
    logger.registered_handler.stream = original


def _posted(fake: FakeAzureDevOps) -> list[Any]:
    """The raw bodies of every Runs - Run Pipeline request, as sent."""
    return [
        body for method, _, body, operation in fake.requests if operation == "Runs_Run Pipeline"
    ]


def test_route_parameters_are_sent_as_json_strings_unevaluated(runs_api):
    from bridge.trigger.handler import handle

    extras = {"note": MIXED, "comment": "${{ parameters.modelPackageArn }}$(System.AccessToken)"}
    runtime = _runtime(templateParameters=extras)
    result = handle(copy.deepcopy(APPROVED), _Context(), runtime)
    assert result["status"] == "started"
    (raw,) = _posted(runs_api)
    body = json.loads(raw)
    detail = APPROVED["detail"]
    assert body["templateParameters"] == {
        **extras,
        "modelPackageArn": detail["ModelPackageArn"],
        "modelPackageGroupName": detail["ModelPackageGroupName"],
        "modelPackageVersion": str(detail["ModelPackageVersion"]),
        "sourceEventId": APPROVED["id"],
    }
    assert all(isinstance(v, str) for v in body["templateParameters"].values())
    assert set(body) == {"templateParameters", "resources"}


def _hostile_fragments(rng: random.Random) -> str:
    pieces = [
        *HOSTILE, "$(", "${{", "$[", "`", ";", "'", '"', "\n", "\r", " ", "\t", "#", "[", "]",
        "{", "}", "\\", "\u2028", "\x00", "é", "arn:aws:sagemaker:eu-west-1:111122223333:",
        "model-package/churn-xgb/4", "churn-xgb", "4",
    ]  # fmt: skip
    return "".join(rng.choice(pieces) for _ in range(rng.randint(1, 4)))


FUZZ_FIELDS = [
    "id",
    "account",
    "region",
    "ModelPackageGroupName",
    "ModelPackageArn",
    "ModelPackageVersion",
    "ModelApprovalStatus",
    "ApprovalDescription",
    "time",
]


def test_hostile_events_never_reach_the_runs_api_body(runs_api):
    """Seeded: each case puts hostile text into one field of the approved event (or around the
    real value). Either the event is refused and nothing is sent, or exactly one run is started
    whose parameters are the event's own, each a JSON string safe to hand to a shell or a
    template (no ``$``, brackets, braces, quotes, whitespace or line breaks)."""
    from bridge.trigger.events import InvalidEvent
    from bridge.trigger.handler import handle

    rng = random.Random(SEED)
    outcomes = {"refused": 0, "started": 0}
    for case in range(FUZZ_CASES):
        field = rng.choice(FUZZ_FIELDS)
        base = APPROVED if field in ("id", "account", "region", "time") else APPROVED["detail"]
        original = str(base.get(field, ""))
        hostile = _hostile_fragments(rng)
        value = rng.choice([hostile, original + hostile, hostile + original])
        event = _with(APPROVED, field, value)
        event["id"] = event["id"] if field == "id" else f"evt-{case}"
        runtime = _runtime()
        before = len(_posted(runs_api))
        where = f"case {case}: {field}={value!r} (seed {SEED})"
        try:
            handle(event, _Context(), runtime)
        except InvalidEvent:
            outcomes["refused"] += 1
            assert len(_posted(runs_api)) == before, where
            continue
        outcomes["started"] += 1
        sent = _posted(runs_api)[before:]
        assert len(sent) == 1, where
        parameters = json.loads(sent[0])["templateParameters"]
        assert set(parameters) == {"modelPackageArn", "modelPackageGroupName",
                                   "modelPackageVersion", "sourceEventId"}, where  # fmt: skip
        for name, text in parameters.items():
            assert isinstance(text, str) and SAFE_PARAMETER.fullmatch(text), f"{where}: {name}"
            assert not executable(text), where
        assert parameters["modelPackageVersion"].isdigit(), where
        assert parameters["modelPackageArn"] == event["detail"]["ModelPackageArn"], where
    # both kinds happened, so neither half of the property was vacuous
    assert outcomes["refused"] >= FUZZ_CASES // 3 and outcomes["started"] >= 20, outcomes


OTHER_ACCOUNT = "444455556666"
ARN = APPROVED["detail"]["ModelPackageArn"]


def _foreign(account: str | None = None, region: str | None = None, envelope: bool = True):
    event = copy.deepcopy(APPROVED)
    arn = ARN
    if account:
        arn = arn.replace(":111122223333:", f":{account}:")
    if region:
        arn = arn.replace(":eu-west-1:", f":{region}:")
    event["detail"]["ModelPackageArn"] = arn
    if envelope:
        event["account"] = arn.split(":")[4]
    else:
        del event["account"]
        del event["region"]
    return event


# (event, configured accounts, refused?)
ORIGINS = {
    "configured account": (_foreign(), frozenset({"111122223333"}), False),
    "account not configured": (_foreign(OTHER_ACCOUNT), frozenset({"111122223333"}), True),
    "ARN in another region than the event": (_foreign(region="us-east-1"), frozenset(), True),
    "no envelope, account not configured": (
        _foreign(OTHER_ACCOUNT, envelope=False),
        frozenset({"111122223333"}),
        True,
    ),
    "no envelope, another region, account configured": (
        _foreign(region="us-east-1", envelope=False),
        frozenset({"111122223333"}),
        False,
    ),
}


@pytest.mark.parametrize("case", list(ORIGINS))
def test_packages_from_elsewhere_are_refused_before_any_request(runs_api, case):
    from bridge.trigger.events import InvalidEvent
    from bridge.trigger.handler import handle

    event, accounts, refused = ORIGINS[case]
    runtime = _runtime(accounts=accounts)
    if refused:
        with pytest.raises(InvalidEvent, match=r"detail\.ModelPackageArn"):
            handle(event, _Context(), runtime)
        assert runs_api.requests == []
    else:
        assert handle(event, _Context(), runtime)["status"] == "started"
        assert len(_posted(runs_api)) == 1


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_simulate_and_its_dry_run_refuse_an_unconfigured_account(ado, capsys, monkeypatch, dry_run):
    """``SMBRIDGE_REGISTRY_ACCOUNTS`` applies to the dry run too: it showed ``start`` for a
    package the run itself refuses (fixed in bridge/cli/trigger.py)."""
    monkeypatch.setenv("SMBRIDGE_ROUTES", json.dumps(ROUTES))
    monkeypatch.setenv("SMBRIDGE_REGISTRY_ACCOUNTS", f"{OTHER_ACCOUNT},999988887777")
    argv = ["trigger", "simulate", "--event", str(EVENT_FILE), *(["--dry-run"] if dry_run else [])]
    code, text = smbridge(argv, capsys)
    assert code == 2, text
    assert "not a configured registry account" in text
    assert ado.requests == []
    monkeypatch.setenv("SMBRIDGE_REGISTRY_ACCOUNTS", "111122223333")
    code, text = smbridge(argv, capsys)
    assert code == 0, text
    assert len(ado.runs) == (0 if dry_run else 1)
