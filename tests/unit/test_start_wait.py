"""start / --wait / status / stop against a scripted SageMaker (tests/support/fakes.py)."""

from __future__ import annotations

import io
import os
import signal

import pytest

from bridge.agent import AgentRun
from bridge.aws.waiter import PollPolicy
from bridge.errors import Cancelled, ExecutionFailed, ParameterError, UserError, WaitTimeout
from bridge.output import Reporter
from bridge.pipeline import (
    ExecutionParams,
    StartParams,
    pipeline_status,
    start_pipeline,
    stop_pipeline,
)
from tests.support.fakes import ScriptedStep

PARAMETERS = [
    {"Name": "InputDataUrl", "Type": "String", "DefaultValue": "s3://b/data.csv"},
    {"Name": "AucThreshold", "Type": "Float", "DefaultValue": 0.9},
    {"Name": "TrainingInstanceCount", "Type": "Integer", "DefaultValue": 1},
    {"Name": "SkipEvaluation", "Type": "Boolean", "DefaultValue": False},
]
THREE_STEPS = [
    ScriptedStep("Preprocess", 0, 120),
    ScriptedStep("Train", 120, 900),
    ScriptedStep("Evaluate", 900, 1000),
]


@pytest.fixture
def reporter() -> tuple[Reporter, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return Reporter("text", out=out, err=err), out, err


def _start(fake_clients, clock, reporter, **kwargs):
    params = StartParams(pipeline_name="demo", **kwargs)
    return start_pipeline(
        params,
        clients=fake_clients,
        reporter=reporter,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        agent_run=AgentRun(),
    )


def test_start_passes_checked_parameters(fake_clients, fake_sagemaker, clock, reporter):
    fake_sagemaker.add_pipeline("demo", PARAMETERS)
    result = _start(
        fake_clients,
        clock,
        reporter[0],
        parameters={"AucThreshold": "0.8", "SkipEvaluation": "true"},
    )
    assert result.status == "Executing"
    (start_body,) = [body for op, body, _ in fake_sagemaker.calls if op == "StartPipelineExecution"]
    assert start_body["PipelineParameters"] == [
        {"Name": "AucThreshold", "Value": "0.8"},
        {"Name": "SkipEvaluation", "Value": "true"},
    ]
    assert len(start_body["ClientRequestToken"]) >= 32


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"Threshold": "0.8"}, "declares no such parameter"),
        ({"AucThreshold": "high"}, "expected a float"),
        ({"TrainingInstanceCount": "1.5"}, "expected a integer"),
        ({"SkipEvaluation": "yes"}, "expected a boolean"),
    ],
)
def test_bad_parameters_fail_before_any_start(
    fake_clients, fake_sagemaker, clock, reporter, given, message
):
    fake_sagemaker.add_pipeline("demo", PARAMETERS)
    with pytest.raises(ParameterError, match=message):
        _start(fake_clients, clock, reporter[0], parameters=given)
    assert fake_sagemaker.operations() == ["DescribePipeline"]


def test_missing_pipeline_is_a_user_error(fake_clients, fake_sagemaker, clock, reporter):
    with pytest.raises(UserError, match=r"does not exist.*upsert"):
        _start(fake_clients, clock, reporter[0])


def test_wait_reports_each_step_change_once_and_backs_off(
    fake_clients, fake_sagemaker, clock, reporter
):
    fake_sagemaker.add_pipeline("demo", PARAMETERS)
    fake_sagemaker.script = THREE_STEPS
    rep, out, _ = reporter
    result = _start(fake_clients, clock, rep, wait=True)
    assert result.status == "Succeeded"
    assert [s.name for s in result.steps] == ["Preprocess", "Train", "Evaluate"]
    text = out.getvalue()
    for step in ("Preprocess", "Train", "Evaluate"):
        assert text.count(f"step {step}: Executing") == 1
        assert text.count(f"step {step}: Succeeded") == 1
    assert "duration" in text and "13m00s" in text  # the summary table: Train took 780 s
    # Adaptive polling: 5 s after a change, growing to at most 60 s while nothing changes.
    assert clock.sleeps[0] == 5.0
    assert max(clock.sleeps) <= 60.0
    assert any(a < b for a, b in zip(clock.sleeps, clock.sleeps[1:], strict=False))
    describes = fake_sagemaker.operations().count("DescribePipelineExecution")
    assert describes < 1000 / 5  # far fewer than fixed 5 s polling


def test_long_wait_polls_about_once_a_minute(fake_clients, fake_sagemaker, clock, reporter):
    fake_sagemaker.add_pipeline("demo", PARAMETERS)
    fake_sagemaker.script = [ScriptedStep("Train", 0, 6 * 3600)]
    _start(fake_clients, clock, reporter[0], wait=True)
    describes = fake_sagemaker.operations().count("DescribePipelineExecution")
    assert 6 * 60 <= describes <= 6 * 60 + 20


def test_failed_execution_raises_with_step_and_reason(
    fake_clients, fake_sagemaker, clock, reporter
):
    fake_sagemaker.add_pipeline("demo", PARAMETERS)
    fake_sagemaker.script = [
        ScriptedStep("Preprocess", 0, 60),
        ScriptedStep("Train", 60, 300, "Failed", "AlgorithmError: training diverged"),
    ]
    with pytest.raises(ExecutionFailed) as info:
        _start(fake_clients, clock, reporter[0], wait=True)
    assert "Train" in str(info.value)
    assert "AlgorithmError: training diverged" in str(info.value)
    assert info.value.exit_code == 4


def test_timeout_stops_the_execution(fake_clients, fake_sagemaker, clock, reporter):
    fake_sagemaker.add_pipeline("demo", PARAMETERS)
    fake_sagemaker.script = [ScriptedStep("Train", 0, 7200)]
    with pytest.raises(WaitTimeout) as info:
        _start(fake_clients, clock, reporter[0], wait=True, timeout_seconds=600)
    assert info.value.exit_code == 5
    assert fake_sagemaker.operations().count("StopPipelineExecution") == 1
    assert clock.now == pytest.approx(600)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_agent_cancel_signal_stops_the_execution(
    fake_clients, fake_sagemaker, clock, reporter, signum
):
    """A real signal delivered mid-wait: the handler raises, the execution is stopped."""
    fake_sagemaker.add_pipeline("demo", PARAMETERS)
    fake_sagemaker.script = [ScriptedStep("Train", 0, 7200)]

    def cancel_after_a_while(c):
        if c.now > 300:
            os.kill(os.getpid(), signum)

    clock.on_sleep.append(cancel_after_a_while)
    with pytest.raises(Cancelled) as info:
        _start(fake_clients, clock, reporter[0], wait=True)
    assert info.value.exit_code == 130
    stops = [b for op, b, _ in fake_sagemaker.calls if op == "StopPipelineExecution"]
    assert len(stops) == 1
    (execution,) = fake_sagemaker.executions.values()
    assert stops[0]["PipelineExecutionArn"] == execution.arn
    assert execution.stopped_at is not None
    # The previous handlers are back once the command returns.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_second_signal_does_not_interrupt_the_stop(fake_clients, fake_sagemaker, clock, reporter):
    """The agent sends SIGTERM 7.5 s after SIGINT; the stop call must still go through."""
    fake_sagemaker.add_pipeline("demo", PARAMETERS)
    fake_sagemaker.script = [ScriptedStep("Train", 0, 7200)]
    original_stop = fake_sagemaker.op_StopPipelineExecution

    def stop_with_sigterm(body):
        os.kill(os.getpid(), signal.SIGTERM)
        return original_stop(body)

    fake_sagemaker.op_StopPipelineExecution = stop_with_sigterm
    clock.on_sleep.append(lambda c: os.kill(os.getpid(), signal.SIGINT) if c.now > 100 else None)
    with pytest.raises(Cancelled):
        _start(fake_clients, clock, reporter[0], wait=True)
    (execution,) = fake_sagemaker.executions.values()
    assert execution.stopped_at is not None


def test_same_run_and_attempt_reuse_the_execution(fake_clients, fake_sagemaker, clock, reporter):
    """A retried agent step sends the same ClientRequestToken: no second execution."""
    fake_sagemaker.add_pipeline("demo", PARAMETERS)
    run = AgentRun(build_id="42", job_attempt="1", collection_id="c", project_id="p", job_id="j")
    params = StartParams(pipeline_name="demo")
    first = start_pipeline(params, clients=fake_clients, reporter=reporter[0], agent_run=run)
    second = start_pipeline(params, clients=fake_clients, reporter=reporter[0], agent_run=run)
    assert first.execution_arn == second.execution_arn
    assert len(fake_sagemaker.executions) == 1
    retry = AgentRun(build_id="42", job_attempt="2", collection_id="c", project_id="p", job_id="j")
    third = start_pipeline(params, clients=fake_clients, reporter=reporter[0], agent_run=retry)
    assert third.execution_arn != first.execution_arn


def test_status_of_latest_and_stop(fake_clients, fake_sagemaker, clock, reporter):
    fake_sagemaker.add_pipeline("demo", PARAMETERS)
    fake_sagemaker.script = THREE_STEPS
    started = _start(fake_clients, clock, reporter[0])
    clock.now = 200
    status = pipeline_status(
        ExecutionParams(pipeline_name="demo"), clients=fake_clients, reporter=reporter[0]
    )
    assert status.execution_arn == started.execution_arn
    assert status.status == "Executing"
    assert [(s.name, s.status) for s in status.steps] == [
        ("Preprocess", "Succeeded"),
        ("Train", "Executing"),
    ]
    stopped = stop_pipeline(
        ExecutionParams(execution_arn=started.execution_arn),
        clients=fake_clients,
        reporter=reporter[0],
    )
    assert stopped.status == "Stopped"
    # Stopping a finished execution again is not an error.
    stop_pipeline(
        ExecutionParams(execution_arn=started.execution_arn),
        clients=fake_clients,
        reporter=reporter[0],
    )


def test_poll_policy_resets_on_change():
    policy = PollPolicy(initial_interval=5, max_interval=60, factor=2)
    assert policy.next_interval(5, changed=False) == 10
    assert policy.next_interval(40, changed=False) == 60
    assert policy.next_interval(60, changed=True) == 5
