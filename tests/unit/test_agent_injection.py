"""On an agent, nothing smbridge prints on behalf of someone else can become a logging command.

The Azure Pipelines agent reads stdout and stderr line by line (``ReadLine``: a line ends at
``\\n``, ``\\r\\n`` or a bare ``\\r``) and executes every line holding ``##vso[`` anywhere; the
log viewer formats lines starting with ``##[`` (``##[error]``, ``##[group]``...). See
https://learn.microsoft.com/azure/devops/pipelines/scripts/logging-commands and the agent's
``Command.TryParse`` (microsoft/azure-pipelines-agent, Command.cs): the first ``##vso[`` of a
line starts the command, the first ``]`` after it ends the properties, the rest is data.

Every test feeds values a service could return (a FailureReason, an ApprovalDescription, an
exception message...) and checks each physical line: only smbridge's own commands may match.
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from bridge.cli import clients as cli_clients
from bridge.cli import pipeline as cli_pipeline
from bridge.cli import trigger as cli_trigger
from bridge.cli.app import main
from bridge.core import agent
from bridge.core.output import Reporter
from bridge.errors import ServiceError
from tests.support.fakes import ScriptedStep, StaticClients

HOSTILE = [
    "reason ##vso[task.setvariable variable=AWS_ROLE_ARN]arn:aws:iam::1:role/evil",
    "x\n##[error]fake",
    "##vso[task.prependpath]/tmp/evil",
    "a\r##vso[task.complete result=Succeeded;]done",
    "  ##[group]not ours\r\n\t##[endgroup]",
    "###vso[task.uploadfile]/etc/passwd and ##VSO[task.setvariable variable=X]y",
]
PACKAGE = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/demo-group/3"


def agent_would_execute(line: str) -> bool:
    """The agent's rule, exactly: ``##vso[`` anywhere, or ``##[`` at the start after blanks."""
    return "##vso[" in line or line.lstrip().startswith("##[")


def physical_lines(text: str) -> list[str]:
    """``text`` split as the agent's ``StreamReader.ReadLine`` splits it."""
    return re.split(r"\r\n|\r|\n", text)


def commands(text: str) -> list[str]:
    """Every line of ``text`` the agent would act on."""
    return [line for line in physical_lines(text) if agent_would_execute(line)]


def agent_unescape(data: str) -> str:
    """The agent's ``Command.Unescape`` (mappings first, then ``%AZP25``)."""
    for token, escaped in ((";", "%3B"), ("\r", "%0D"), ("\n", "%0A"), ("]", "%5D")):
        data = data.replace(escaped, token)
    return data.replace("%AZP25", "%")


def own_command(line: str, prefix: str) -> str:
    """``line`` is our command ``prefix…``: exactly one command in it; returns its data."""
    assert line.startswith(prefix), line
    data = line[len(prefix) :]
    assert not agent_would_execute(data), f"foreign command inside our own: {line!r}"
    return data


@pytest.fixture
def on_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_BUILD", "True")


@pytest.fixture
def agent_reporter(on_agent) -> tuple[Reporter, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Reporter("agent", out=out, err=err), out, err


# -- the Reporter, one path at a time ------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(
    "say",
    [
        lambda r, v: r.info(f"failure reason: {v}"),
        lambda r, v: r.progress(f"step Train: Failed: {v}"),
        lambda r, v: r.table(["step", "reason"], [["Train", v], [v, "-"]]),
        lambda r, v: r.traceback(f"Traceback (most recent call last):\nRuntimeError: {v}\n"),
    ],
    ids=["info", "progress", "table", "traceback"],
)
def test_plain_lines_never_hold_a_command(agent_reporter, say, value):
    reporter, out, err = agent_reporter
    say(reporter, value)
    reporter.output_variable("executionArn", "arn:aws:sagemaker:eu-west-1:1:pipeline/p/execution/e")
    assert commands(err.getvalue()) == []
    assert commands(out.getvalue()) == [
        "##vso[task.setvariable variable=executionArn;isoutput=true]"
        "arn:aws:sagemaker:eu-west-1:1:pipeline/p/execution/e"
    ]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("kind", ["warning", "error"])
def test_issues_are_one_logissue_line_each(agent_reporter, kind, value):
    reporter, out, err = agent_reporter
    getattr(reporter, kind)(f"stack event: {value}")
    (line,) = commands(out.getvalue() + err.getvalue())
    data = own_command(line, f"##vso[task.logissue type={kind}]")
    shown = agent_unescape(data)
    assert shown.startswith("stack event: ")
    assert not any(agent_would_execute(part) for part in physical_lines(shown))


@pytest.mark.parametrize("value", HOSTILE)
def test_group_titles_hold_no_command(agent_reporter, value):
    reporter, out, _ = agent_reporter
    with reporter.group(f"Deploy {value}"):
        reporter.info("inside")
    start, end = commands(out.getvalue())
    own_command(start, "##[group]Deploy ")
    assert end == "##[endgroup]"


@pytest.mark.parametrize("value", HOSTILE)
def test_text_mode_on_an_agent_is_neutral_on_stderr_too(on_agent, value):
    """An SDK caller's default ``Reporter()`` on an agent: warnings and errors go to stderr."""
    out, err = io.StringIO(), io.StringIO()
    reporter = Reporter("text", out=out, err=err)
    reporter.info(value)
    reporter.warning(value)
    reporter.error(value)
    assert commands(out.getvalue()) == []
    assert commands(err.getvalue()) == []
    assert "error: " in err.getvalue()


def test_output_variables_keep_their_value_and_mask_secrets(agent_reporter):
    reporter, out, _ = agent_reporter
    reporter.add_secret("p%ss;w]rd\nx")
    reporter.info(HOSTILE[0])
    reporter.output_variable("token", "p%ss;w]rd\nx")
    reporter.output_variable("x;y]", "100% a;b]c\r\nd")
    token, other = commands(out.getvalue())
    assert token == "##vso[task.setvariable variable=token;isoutput=true]***"
    data = own_command(other, "##vso[task.setvariable variable=x%3By%5D;isoutput=true]")
    assert agent_unescape(data) == "100% a;b]c\r\nd"


# -- JSON documents on an agent -------------------------------------------------------------------


def _hostile_document() -> dict[str, Any]:
    return {
        "status": "Failed",
        "failure_reason": HOSTILE[0],
        "steps": [{"name": "Train", "failure_reason": value} for value in HOSTILE],
        HOSTILE[2]: "a key too",
        "nested": {"comment": "\\##[error]x ##vso##vso[task.complete]"},
    }


def test_json_document_on_an_agent_parses_to_the_same_values(on_agent, capsys):
    reporter = Reporter.for_environment("json")
    reporter.info(f"progress: {HOSTILE[1]}")
    reporter.error(HOSTILE[3])
    reporter.result(_hostile_document())
    captured = capsys.readouterr()
    assert commands(captured.out) == []
    assert commands(captured.err) == []
    assert json.loads(captured.out) == _hostile_document()


def test_json_neutraliser_keeps_any_document_valid():
    for value in [*HOSTILE, "##[", "##vso[", "\\##vso[", "\\\\##[", "##vso\\u005b", "é##[x"]:
        for indent in (None, 2):
            document = json.dumps({value: [value, {"k": value}]}, indent=indent)
            safe = agent.neutralize_json(document)
            assert commands(safe) == []
            assert json.loads(safe) == json.loads(document)


# -- the neutraliser itself -----------------------------------------------------------------------

IGNORABLE = "\u200b\u00ad\u2060\ufeff\x00\u034f\ufe0f"


@pytest.mark.parametrize(
    "value",
    [
        *HOSTILE,
        "##vso##vso[task.setvariable variable=A]b",
        "####[error]x",
        "#\u200b#vso[task.prependpath]/tmp/evil",  # a culture-sensitive IndexOf skips U+200B
        "##\u00advso[task.setvariable variable=A]b",
        "#\x00#[error]x",
        "##v\ufe0fso[task.complete]",
    ],
)
def test_neutralize_leaves_nothing_an_agent_could_match(value):
    safe = agent.neutralize(value)
    for line in physical_lines(safe):
        assert not agent_would_execute(line)
        # an older agent matches culture-sensitively: ignorable characters do not count
        stripped = "".join(ch for ch in line if ch not in IGNORABLE)
        assert not agent_would_execute(stripped), line
    assert agent.neutralize("plain # text [with] ## marks") == "plain # text [with] ## marks"


# -- the CLI: top-level errors, --debug tracebacks, argparse -------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "bridge.yaml").write_text(
        "region: eu-west-1\n"
        "model_package_group: demo-group\n"
        "pipeline:\n"
        "  name: demo\n"
        "  definition: definition.json\n"
        "  execution_role_arn: arn:aws:iam::123456789012:role/exec\n"
        "  artifact_bucket: artifacts\n"
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _raising(exc: BaseException):
    def handler(args, reporter):
        raise exc

    return handler


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (lambda v: ServiceError(f"DescribeStackEvents failed: {v}"), 3),
        (lambda v: RuntimeError(v), 1),
        (
            lambda v: ClientError(
                {"Error": {"Code": "ValidationException", "Message": v}}, "DescribeModelPackage"
            ),
            3,
        ),
    ],
    ids=["bridge-error", "internal-error", "botocore-error"],
)
def test_cli_error_line_and_debug_traceback(
    project, on_agent, monkeypatch, capsys, exc, code, value
):
    monkeypatch.setattr(cli_pipeline, "_cmd_status", _raising(exc(value)))
    assert main(["pipeline", "status", "--debug"]) == code
    captured = capsys.readouterr()
    assert "Traceback" in captured.err
    assert commands(captured.err) == []
    (line,) = commands(captured.out)
    own_command(line, "##vso[task.logissue type=error]")


def test_cli_error_in_json_mode_on_an_agent(project, on_agent, monkeypatch, capsys):
    monkeypatch.setattr(cli_pipeline, "_cmd_status", _raising(ServiceError(HOSTILE[0])))
    assert main(["pipeline", "status", "--output", "json"]) == 3
    captured = capsys.readouterr()
    assert commands(captured.out + captured.err) == []


def test_argparse_errors_echo_no_command(project, on_agent, capsys):
    with pytest.raises(SystemExit):
        main(["registry", "latest", "--status", HOSTILE[2]])
    captured = capsys.readouterr()
    assert "invalid choice" in captured.err
    assert commands(captured.out + captured.err) == []


def test_trigger_logs_on_an_agent_hold_no_command(on_agent, capsys):
    from bridge.trigger.handler import logger

    original = logger.registered_handler.stream
    try:
        cli_trigger._trigger_module("handler")
        logger.warning(f"rejected: {HOSTILE[0]}", extra={"reason": HOSTILE[1]})
    finally:
        logger.registered_handler.stream = original
    err = capsys.readouterr().err
    assert "rejected" in err
    assert commands(err) == []
    record = json.loads(err.strip().splitlines()[-1])
    assert record["reason"] == HOSTILE[1]


# -- end to end: service text through real commands -----------------------------------------------


def test_pipeline_start_wait_with_a_hostile_failure_reason(
    project, on_agent, monkeypatch, capsys, fake_sagemaker, fake_clients, clock
):
    """SageMaker's FailureReason reaches progress lines, the steps table and the error line."""
    from bridge.pipeline import operations as pipeline

    monkeypatch.setenv("BUILD_BUILDID", "42")
    fake_sagemaker.add_pipeline("demo", [])
    reason = HOSTILE[0] + "\n" + HOSTILE[1]
    fake_sagemaker.script = [
        ScriptedStep("Preprocess", 0, 60),
        ScriptedStep("Train", 60, 600, status="Failed", failure_reason=reason),
    ]
    real_start = pipeline.start_pipeline
    monkeypatch.setattr(cli_clients, "aws_clients", lambda *a, **k: fake_clients)
    monkeypatch.setattr(
        pipeline,
        "start_pipeline",
        lambda params, **kw: real_start(params, sleep=clock.sleep, monotonic=clock.monotonic, **kw),
    )
    assert main(["pipeline", "start", "--wait"]) == 4
    captured = capsys.readouterr()
    assert "Train" in captured.out and "role/evil" in captured.out
    assert commands(captured.err) == []
    found = commands(captured.out)
    assert found[0].startswith("##vso[task.setvariable variable=executionArn;isoutput=true]arn:")
    assert found[1].startswith("##[group]Waiting for ")
    assert found[2] == "##[endgroup]"
    data = own_command(found[3], "##vso[task.logissue type=error]")
    assert "execution Failed at step Train" in agent_unescape(data)
    assert len(found) == 4


def _described(description: str) -> StaticClients:
    client = boto3.client("sagemaker", region_name="eu-west-1")
    stubber = Stubber(client)
    stubber.add_response(
        "describe_model_package",
        {
            "ModelPackageName": "demo-group",
            "ModelPackageGroupName": "demo-group",
            "ModelPackageVersion": 3,
            "ModelPackageArn": PACKAGE,
            "CreationTime": datetime(2026, 1, 2, tzinfo=UTC),
            "ModelPackageStatus": "Completed",
            "ModelPackageStatusDetails": {"ValidationStatuses": []},
            "ModelApprovalStatus": "Approved",
            "ApprovalDescription": description,
        },
        {"ModelPackageName": PACKAGE},
    )
    stubber.activate()
    return StaticClients(sagemaker=client)


@pytest.mark.parametrize("value", HOSTILE)
def test_registry_describe_prints_a_hostile_approval_description(
    project, on_agent, monkeypatch, capsys, value
):
    monkeypatch.setattr(cli_clients, "aws_clients", lambda *a, **k: _described(value))
    assert main(["registry", "describe", PACKAGE]) == 0
    captured = capsys.readouterr()
    assert "approval_description: " in captured.out
    assert commands(captured.out + captured.err) == []


@pytest.mark.parametrize("value", HOSTILE)
def test_registry_describe_json_on_an_agent(project, on_agent, monkeypatch, capsys, value):
    monkeypatch.setattr(cli_clients, "aws_clients", lambda *a, **k: _described(value))
    assert main(["registry", "describe", PACKAGE, "--output", "json"]) == 0
    captured = capsys.readouterr()
    assert commands(captured.out + captured.err) == []
    assert json.loads(captured.out)["approval_description"] == value
