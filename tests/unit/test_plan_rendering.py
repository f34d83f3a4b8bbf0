"""Every dry run of the CLI prints one format (``dry run: <title> (no call made)`` then one line
per step) and, with ``-o json``, one JSON shape; none makes an AWS call or an HTTP request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from bridge.cli.app import main
from tests.unit.test_cli import (  # noqa: F401 (fixtures)
    EXECUTION_ARN,
    PACKAGE,
    PAYLOAD,
    STAGING,
    TEMPLATES,
    no_aws_calls,
    project,
)
from tests.unit.test_trigger_cli import EVENT_FILE, ROUTES

APPROVAL = "0f8fad5b-d9cb-469f-a165-70867728950e"
ADO = ["--organization", "contoso", "--project", "mlops"]


@pytest.fixture
def no_http(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    sent: list[str] = []

    def refuse(self, request, **kwargs):
        sent.append(request.url)
        raise AssertionError(f"dry run sent an HTTP request: {request.url}")

    monkeypatch.setattr(requests.Session, "send", refuse)
    return sent


@pytest.fixture
def routes(project: Path) -> str:  # noqa: F811
    with (project / "bridge.yaml").open("a") as config:
        config.write(
            "azure_devops:\n"
            "  organization: contoso\n"
            "  project: mlops\n"
            "  environments:\n"
            "    prefix: smbridge-demo\n"
            "    pipeline_id: 13\n"
            "    production_approval:\n"
            "      approvers: [{id: 11111111-1111-1111-1111-111111111111}]\n"
            "      minimum_approvers: 1\n"
        )
    path = project / "routes.json"
    path.write_text(json.dumps(ROUTES))
    return str(path)


COMMANDS = [
    ["pipeline", "upsert"],
    ["pipeline", "start", "--param", "AucThreshold=0.8", "--wait"],
    ["pipeline", "status"],
    ["pipeline", "stop", "--execution-arn", EXECUTION_ARN],
    ["prepare", "--group", "g", "--out", "o", "--stage-config", STAGING],
    ["deploy", "--stage", "staging", "--model-package-arn", PACKAGE, "--stage-config", STAGING,
     "--templates-dir", TEMPLATES],
    ["registry", "latest", "--group", "g"],
    ["registry", "describe", PACKAGE],
    ["registry", "approve", PACKAGE, "--comment", "looks good"],
    ["endpoint", "test", "--endpoint", "e", "--stage-config", STAGING, "--payload", PAYLOAD,
     "--expect", PAYLOAD.replace("payload.csv", "expect.json")],
    ["trigger", "simulate", "--event", str(EVENT_FILE), "--routes", "{routes}"],
    ["trigger", "replay", "--queue-url", "https://sqs.eu-west-1.amazonaws.com/1/q", "--routes",
     "{routes}"],
    ["trigger", "package", "--out", "trigger.zip"],
    ["ado", "setup", *ADO],
    ["ado", "approvals", "list", *ADO],
    ["ado", "approvals", "approve", APPROVAL, "--comment", "ok", *ADO],
]  # fmt: skip


def _argv(command: list[str], routes: str) -> list[str]:
    return [routes if a == "{routes}" else a for a in command] + ["--dry-run"]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:3]))
def test_text_is_the_one_format(command, routes, no_aws_calls, no_http, capsys):  # noqa: F811
    assert main(_argv(command, routes)) == 0
    out = capsys.readouterr().out
    assert no_aws_calls == [] and no_http == []
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("dry run: "))
    assert header.endswith(" (no call made)")
    assert "== Dry run" not in out and "would call" not in out


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:3]))
def test_json_is_the_one_shape(command, routes, no_aws_calls, no_http, capsys):  # noqa: F811
    assert main([*_argv(command, routes), "-o", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert no_aws_calls == [] and no_http == []
    assert set(document) == {"dry_run", "title", "steps"}
    assert document["dry_run"] is True and document["title"]
    for step in document["steps"]:
        assert set(step) == {"service", "operation", "arguments", "when"}
    if command[:2] != ["trigger", "simulate"] or document["steps"]:
        assert document["steps"]


def test_the_pipeline_plans_are_pure_functions_of_the_parameters():
    """No client exists here: a plan needs only the parameters, and equals the dry run's."""
    from bridge.pipeline import operations as ops

    start = ops.StartParams(pipeline_name="demo", parameters={"AucThreshold": "0.8"}, wait=True)
    plan = ops.plan_start(start)
    assert [s.operation for s in plan.steps] == [
        "DescribePipeline",
        "StartPipelineExecution",
        "DescribePipelineExecution+ListPipelineExecutionSteps",
    ]
    dry = ops.start_pipeline(start.model_copy(update={"dry_run": True}))
    assert dry.plan is not None
    assert (
        dry.plan.steps[1].arguments["PipelineParameters"]
        == (plan.steps[1].arguments["PipelineParameters"])
    )
    latest = ops.ExecutionParams(pipeline_name="demo")
    assert [s.operation for s in ops.plan_status(latest).steps] == [
        "ListPipelineExecutions",
        "DescribePipelineExecution",
        "ListPipelineExecutionSteps",
    ]
    arn = "arn:aws:sagemaker:eu-west-1:111111111111:pipeline/demo/execution/abc"
    stop = ops.plan_stop(ops.ExecutionParams(execution_arn=arn))
    assert stop.steps[0].arguments == {"PipelineExecutionArn": arn}
