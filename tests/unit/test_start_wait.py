"""start / --wait / status / stop against a scripted SageMaker (tests/support/fakes.py)."""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import signal
import threading

import boto3
import pytest

from bridge.aws.session import CLIENT_CONFIG
from bridge.aws.waiter import PollPolicy
from bridge.core.agent import AgentRun
from bridge.core.output import Reporter
from bridge.errors import Cancelled, ExecutionFailed, ParameterError, UserError, WaitTimeout
from bridge.pipeline.operations import (
    ExecutionParams,
    StartParams,
    pipeline_status,
    start_pipeline,
    stop_pipeline,
)
from tests.support.fakes import ScriptedStep, StaticClients, _ServiceError

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


# -- cancelled while StartPipelineExecution is in flight (issue 8, item 3) ----------------------
# The agent cancels with SIGINT, then SIGTERM 7.5 s later, then kills the tree 2.5 s after that
# (reference/README.md). StartPipelineExecution is idempotent on ClientRequestToken: botocore's
# SageMaker model marks the member `idempotencyToken`, and the API reference says "An idempotent
# operation completes no more than once" (the same token returns the same execution).


def _start_cancelled_in_flight(fake_sagemaker, when: str, interrupt):
    """The first StartPipelineExecution is interrupted: after SageMaker started the execution
    (the response is lost) or before the request reached it."""
    original = fake_sagemaker.op_StartPipelineExecution
    seen = []

    def start(body):
        seen.append(body)
        if len(seen) > 1:
            return original(body)
        if when == "after":
            original(body)
        interrupt()
        raise AssertionError("the interrupt did not interrupt")

    fake_sagemaker.op_StartPipelineExecution = start
    return seen


def _sigint():
    os.kill(os.getpid(), signal.SIGINT)


def _keyboard_interrupt():
    raise KeyboardInterrupt


@pytest.mark.parametrize("interrupt", [_sigint, _keyboard_interrupt], ids=["SIGINT", "Ctrl-C"])
@pytest.mark.parametrize("when", ["after", "before"])
def test_cancel_during_start_stops_the_execution_it_started(
    fake_clients, fake_sagemaker, clock, reporter, when, interrupt
):
    fake_sagemaker.add_pipeline("demo", PARAMETERS)
    fake_sagemaker.script = [ScriptedStep("Train", 0, 7200)]
    seen = _start_cancelled_in_flight(fake_sagemaker, when, interrupt)
    rep, _, err = reporter
    try:
        _start(fake_clients, clock, rep, wait=True, parameters={"AucThreshold": "0.8"})
    except KeyboardInterrupt:  # (not pytest.raises: pytest ends the session on this one)
        pytest.fail("KeyboardInterrupt escaped start_pipeline: the execution was left running")
    except Cancelled as exc:
        cancelled = exc
    else:
        pytest.fail("start_pipeline returned after a cancel")
    assert cancelled.exit_code == 130
    # Asked again with the same token and parameters: one execution, never two.
    assert len(seen) == 2 and seen[0] == seen[1]
    (execution,) = fake_sagemaker.executions.values()
    assert execution.token == seen[0]["ClientRequestToken"]
    stops = [b for op, b, _ in fake_sagemaker.calls if op == "StopPipelineExecution"]
    assert [s["PipelineExecutionArn"] for s in stops] == [execution.arn]
    assert execution.stopped_at is not None
    assert f"stop requested for {execution.arn}" in str(cancelled)
    assert "StartPipelineExecution was in flight" in err.getvalue()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_during_the_recovery_does_not_interrupt_it(
    fake_clients, fake_sagemaker, clock, reporter
):
    """SIGINT interrupts the start; SIGTERM arrives while the start is repeated: both the repeat
    and the stop still go through."""
    fake_sagemaker.add_pipeline("demo", PARAMETERS)
    fake_sagemaker.script = [ScriptedStep("Train", 0, 7200)]
    original = fake_sagemaker.op_StartPipelineExecution
    calls = []

    def start(body):
        calls.append(body)
        if len(calls) == 1:
            original(body)
            os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        return original(body)

    fake_sagemaker.op_StartPipelineExecution = start
    with pytest.raises(Cancelled, match="cancelled by SIGINT: stop requested"):
        _start(fake_clients, clock, reporter[0], wait=True)
    (execution,) = fake_sagemaker.executions.values()
    assert execution.stopped_at is not None


def test_cancel_during_start_without_an_arn_does_not_claim_a_stop(
    fake_clients, fake_sagemaker, clock, reporter
):
    """The repeated start fails too: nothing was stopped, and the message says so."""
    fake_sagemaker.add_pipeline("demo", PARAMETERS)
    original = fake_sagemaker.op_StartPipelineExecution
    calls = []

    def start(body):
        calls.append(body)
        if len(calls) == 1:
            original(body)
            _sigint()
        raise _ServiceError("ResourceLimitExceeded", "too many executions")

    fake_sagemaker.op_StartPipelineExecution = start
    with pytest.raises(Cancelled) as info:
        _start(fake_clients, clock, reporter[0], wait=True)
    message = str(info.value)
    assert info.value.exit_code == 130
    assert "stop requested" not in message
    assert "could not learn whether one started" in message and "none was stopped" in message
    assert "ResourceLimitExceeded" in message
    assert "pipeline status --pipeline-name demo" in message
    assert "StopPipelineExecution" not in fake_sagemaker.operations()


def test_cancel_after_start_names_the_stop(fake_clients, fake_sagemaker, clock, reporter):
    """Cancelled while waiting, the message says a stop was requested (not that it ended)."""
    fake_sagemaker.add_pipeline("demo", PARAMETERS)
    fake_sagemaker.script = [ScriptedStep("Train", 0, 7200)]
    clock.on_sleep.append(lambda c: _sigint() if c.now > 100 else None)
    with pytest.raises(Cancelled) as info:
        _start(fake_clients, clock, reporter[0], wait=True)
    (execution,) = fake_sagemaker.executions.values()
    assert str(info.value) == f"cancelled by SIGINT: stop requested for {execution.arn}"


@pytest.mark.parametrize("during", ["StartPipelineExecution", "DescribePipelineExecution"])
def test_sigint_while_a_request_waits_on_the_socket(fake_sagemaker, clock, reporter, during):
    """The real path: SIGINT reaches the main thread while botocore (the CLI's client config,
    standard retries) waits on a real socket for SageMaker's answer (a loopback server answering
    as FakeSageMaker), which never comes. botocore wraps any Exception raised there into a
    retryable HTTPClientError (URLLib3Session.send) and sends the request again: the cancel must
    get through anyway. For the start, SageMaker has started the execution and the response is
    lost: it is found again with the same token, and stopped."""
    fake_sagemaker.add_pipeline("demo", PARAMETERS)
    fake_sagemaker.script = [ScriptedStep("Train", 0, 7200)]
    main_thread = threading.main_thread().ident
    release = threading.Event()
    seen: dict[str, list[dict]] = {}

    class SageMakerOverHttp(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            operation = self.headers["X-Amz-Target"].split(".", 1)[1]
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            fake_sagemaker.calls.append((operation, body, ""))
            result = getattr(fake_sagemaker, "op_" + operation)(body)
            seen.setdefault(operation, []).append(body)
            if operation == during and len(seen[operation]) == 1:
                signal.pthread_kill(main_thread, signal.SIGINT)  # the caller is cancelled
                release.wait(10)  # before the answer
            payload = json.dumps(result, default=lambda d: d.timestamp()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(payload)

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SageMakerOverHttp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = boto3.client(
            "sagemaker",
            region_name="eu-west-1",
            endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
            config=CLIENT_CONFIG,
        )
        with pytest.raises(Cancelled) as info:
            _start(StaticClients(sagemaker=client), clock, reporter[0], wait=True)
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    starts = seen["StartPipelineExecution"]
    assert len(starts) == (2 if during == "StartPipelineExecution" else 1)
    assert all(body == starts[0] for body in starts)
    assert len(seen.get("DescribePipelineExecution", [])) <= 1  # not polled on after the cancel
    (execution,) = fake_sagemaker.executions.values()
    assert execution.stopped_at is not None
    assert str(info.value) == f"cancelled by SIGINT: stop requested for {execution.arn}"


def test_wait_goes_through_the_shared_poller(
    fake_clients, fake_sagemaker, clock, reporter, monkeypatch
):
    """One ``Poller.until`` per wait, with the given policy: an interval reset at each step
    change, one DescribePipelineExecution per look, one sleep between two looks."""
    from tests.unit.test_polling import spy_on_poller

    waits = spy_on_poller(monkeypatch)
    fake_sagemaker.add_pipeline("demo", PARAMETERS)
    fake_sagemaker.script = [ScriptedStep("Preprocess", 0, 30), ScriptedStep("Train", 30, 60)]
    params = StartParams(pipeline_name="demo", wait=True)
    result = start_pipeline(
        params,
        clients=fake_clients,
        reporter=reporter[0],
        poll_policy=PollPolicy(initial_interval=2, max_interval=8, factor=2),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        agent_run=AgentRun(),
    )
    assert result.status == "Succeeded"
    assert len(waits) == 1
    # t=0 (Preprocess starts) 2 4 8 8 → t=30 (Train starts) 2 4 8 8 → t=60 (both done)
    assert clock.sleeps == [2, 4, 8, 8, 8, 2, 4, 8, 8, 8]
    assert waits[0].looks == len(clock.sleeps) + 1
    assert fake_sagemaker.operations().count("DescribePipelineExecution") == waits[0].looks
