"""Cancelling ``smbridge pipeline start --wait`` the way the Azure Pipelines agent does, measured.

The agent cancels a step by sending its process SIGINT, then SIGTERM if it has not exited 7.5 s
later, then kills the process tree 2.5 s after that (microsoft/azure-pipelines-agent,
src/Agent.Sdk/ProcessInvoker.cs: ``_defaultSigintTimeout = 7500 ms``, ``_defaultSigtermTimeout =
2500 ms``, ``CancelAndKillProcessTree``: SendSIGINT, SendSIGTERM, KillProcessTree;
docs/design/jobcancellation.md; reference/README.md). The SageMaker execution must therefore be
asked to stop before SIGTERM would come, and a SIGTERM that does come must not cut the clean-up
short.

The command runs as a subprocess (``python -m bridge``, with an agent job's variables) against
moto's server in this process (:func:`bridge.sandbox.aws.aws_emulator`), with
:func:`bridge.sandbox.moto_fixes.executions_run_until_stopped`: executions stay ``Executing``
until stopped, StartPipelineExecution is idempotent on its token as SageMaker documents, and
StopPipelineExecution (which moto lacks) is a stand-in; every request is held against
botocore's SageMaker model and time-stamped on arrival with this process's monotonic clock, the
clock the signal is sent by. The one timing assertion (stop request < 7.5 s after SIGINT) is the
agent's deadline, not a performance target; the measured figures are printed
(``[cancellation] …``) for RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bridge.sandbox.aws import ACCOUNT_ID, AwsEmulator, aws_emulator
from bridge.sandbox.moto_fixes import ExecutionLog, ExecutionRequest, executions_run_until_stopped

pytestmark = pytest.mark.slow

# The agent's SIGINT → SIGTERM delay (ProcessInvoker.cs, _defaultSigintTimeout).
AGENT_SIGTERM_AFTER = 7.5
PIPELINE = "churn-build"
DEFINITION = {
    "Version": "2020-12-01",
    "Parameters": [{"Name": "AucThreshold", "Type": "Float", "DefaultValue": 0.7}],
    "Steps": [{"Name": "Train", "Type": "Training", "Arguments": {}}],
}
# What the agent sets for a job (bridge.core.agent.AgentRun): the request token is derived
# from them, so a repeated start in the same job is the same request.
AGENT_VARIABLES = {
    "TF_BUILD": "True",
    "SYSTEM_COLLECTIONID": "c0ffee00-0000-4000-8000-000000000001",
    "SYSTEM_TEAMPROJECTID": "c0ffee00-0000-4000-8000-000000000002",
    "SYSTEM_JOBID": "c0ffee00-0000-4000-8000-000000000003",
    "BUILD_BUILDID": "4711",
    "SYSTEM_JOBATTEMPT": "1",
}
WAIT = 30.0  # seconds any step of a test may take before it fails (a hung process, not a figure)


@dataclass
class Sandbox:
    emulator: AwsEmulator
    log: ExecutionLog
    workdir: Path
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    def start_command(self, *extra: str) -> subprocess.Popen[str]:
        """``smbridge pipeline start --wait`` as the agent's step would run it."""
        environment = {"PATH": os.environ.get("PATH", ""), **self.emulator.environment}
        environment.update(AGENT_VARIABLES)
        process = subprocess.Popen(
            [sys.executable, "-m", "bridge", "pipeline", "start", "--wait",
             "--pipeline-name", PIPELINE, "--param", "AucThreshold=0.8",
             "--region", self.emulator.region, "--output", "json", *extra],
            cwd=self.workdir, env=environment, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.processes.append(process)
        return process


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    with aws_emulator() as emulator, executions_run_until_stopped() as log:
        emulator.client("sagemaker").create_pipeline(
            PipelineName=PIPELINE,
            PipelineDefinition=json.dumps(DEFINITION),
            RoleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/smbridge-sagemaker-execution",
            ClientRequestToken="create-" + "0" * 32,
        )
        box = Sandbox(emulator, log, tmp_path)
        try:
            yield box
        finally:
            for process in box.processes:  # a failed test leaves nothing running
                if process.poll() is None:
                    process.kill()
                    process.communicate()
        assert log.violations == [], "requests broke botocore's SageMaker model"


@dataclass(frozen=True)
class Finished:
    """How the command ended, and the requests the server had received by then."""

    code: int
    document: dict[str, Any]
    stderr: str
    exited_at: float
    requests: tuple[ExecutionRequest, ...]

    def of(self, operation: str) -> list[ExecutionRequest]:
        return [r for r in self.requests if r.operation == operation]


def finish(sandbox: Sandbox, process: subprocess.Popen[str]) -> Finished:
    try:
        out, err = process.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"smbridge did not exit within {WAIT:g} s of the signal:\n{err}")
    exited_at = time.monotonic()
    requests = tuple(sandbox.log.requests)
    try:
        document = json.loads(out)
    except ValueError:
        pytest.fail(f"no JSON document on stdout (exit {process.returncode}):\n{out}\n{err}")
    return Finished(process.returncode, document, err, exited_at, requests)


def wait_for(event: threading.Event, what: str, process: subprocess.Popen[str]) -> None:
    if not event.wait(WAIT):
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"{what} never happened:\n{err}")


def delivered(pid: int, signum: int) -> None:
    """Wait until the kernel has handed ``signum`` to the process (it is no longer pending;
    /proc/PID/status SigPnd and ShdPnd), so a hold that follows is held while it is handled."""
    if not Path("/proc/self/status").exists():  # not Linux: give it time instead
        time.sleep(0.5)
        return
    bit = 1 << (signum - 1)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return  # it exited
        pending = 0
        for line in status.splitlines():
            if line.startswith(("SigPnd:", "ShdPnd:")):
                pending |= int(line.split()[1], 16)
        if not pending & bit:
            return
        time.sleep(0.005)
    pytest.fail(f"signal {signum} still pending after {WAIT:g} s")


Figure = Callable[[str, float, ExecutionRequest, Finished], None]


@pytest.fixture
def figure(capsys: Any, record_property: Any) -> Figure:
    """Reports a case's figures: the benchmark-style line RELIABILITY.md quotes (printed even
    without ``-s``) and the same as JUnit XML properties."""

    def report(case: str, sigint_at: float, stop: ExecutionRequest, finished: Finished) -> None:
        to_stop = stop.at - sigint_at
        to_exit = finished.exited_at - sigint_at
        record_property("sigint_to_stop_request_ms", round(to_stop * 1000, 1))
        record_property("sigint_to_exit_ms", round(to_exit * 1000, 1))
        with capsys.disabled():
            print(
                f"\n[cancellation] {case}: SIGINT -> StopPipelineExecution at the server "
                f"{to_stop * 1000:.0f} ms ({to_stop / AGENT_SIGTERM_AFTER:.1%} of the agent's "
                f"{AGENT_SIGTERM_AFTER:g} s before SIGTERM); SIGINT -> exit {to_exit * 1000:.0f} ms"
            )

    return report


def execution_arns(sandbox: Sandbox) -> list[str]:
    summaries = sandbox.emulator.client("sagemaker").list_pipeline_executions(
        PipelineName=PIPELINE
    )["PipelineExecutionSummaries"]
    return [s["PipelineExecutionArn"] for s in summaries]


def assert_stopped_once(sandbox: Sandbox, finished: Finished, sigint_at: float) -> ExecutionRequest:
    """Exit 130, one execution, exactly one StopPipelineExecution for it, sent before the
    agent's SIGTERM would have come, and SageMaker now stopping it."""
    assert finished.code == 130, finished.stderr
    (arn,) = execution_arns(sandbox)
    (stop,) = finished.of("StopPipelineExecution")
    assert stop.body["PipelineExecutionArn"] == arn
    assert 0 < stop.at - sigint_at < AGENT_SIGTERM_AFTER
    assert finished.document == {
        "status": "error",
        "error": f"cancelled by SIGINT: stop requested for {arn}",
        "exit_code": 130,
    }
    described = sandbox.emulator.client("sagemaker").describe_pipeline_execution(
        PipelineExecutionArn=arn
    )
    assert described["PipelineExecutionStatus"] == "Stopping"
    return stop


@pytest.mark.parametrize(
    "moment",
    ["while sleeping between two looks", "during DescribePipelineExecution"],
    ids=["sleeping", "DescribePipelineExecution"],
)
def test_sigint_during_the_wait_stops_the_execution_before_sigterm(sandbox, figure, moment):
    """SIGINT while the command sleeps between two looks at the execution, or while its
    DescribePipelineExecution waits for SageMaker's answer (held until the stop arrives)."""
    looked, stopped = threading.Event(), threading.Event()
    process: subprocess.Popen[str] | None = None
    sigint_at: list[float] = []

    def on_describe(_: ExecutionRequest) -> None:
        looked.set()
        if moment == "during DescribePipelineExecution" and not sigint_at:
            assert process is not None
            sigint_at.append(time.monotonic())
            process.send_signal(signal.SIGINT)
            stopped.wait(WAIT)  # the answer the command was waiting for comes too late

    sandbox.log.hooks["DescribePipelineExecution"] = on_describe
    sandbox.log.hooks["StopPipelineExecution"] = lambda _: stopped.set()
    process = sandbox.start_command()
    wait_for(looked, "a first look at the execution", process)
    if moment == "while sleeping between two looks":
        time.sleep(0.5)  # the first poll interval is 5 s: the command is sleeping now
        sigint_at.append(time.monotonic())
        process.send_signal(signal.SIGINT)
    finished = finish(sandbox, process)
    stop = assert_stopped_once(sandbox, finished, sigint_at[0])
    # It stopped polling once cancelled: no look after the one the signal interrupted.
    assert len(finished.of("DescribePipelineExecution")) == 1
    assert "cancelled by SIGINT: stopping the SageMaker execution" in finished.stderr
    figure(f"SIGINT {moment}", sigint_at[0], stop, finished)


def test_sigint_during_the_start_call_stops_the_execution_it_started(sandbox, figure):
    """SIGINT while StartPipelineExecution waits for its answer: SageMaker has started the
    execution but the ARN never arrives. The same request again, with the same
    ClientRequestToken, returns that execution (StartPipelineExecution is idempotent on it:
    botocore's model marks the member ``idempotencyToken``), which is then stopped: one
    execution, none left running."""
    stopped = threading.Event()
    process: subprocess.Popen[str] | None = None
    sigint_at: list[float] = []

    def on_start(_: ExecutionRequest) -> None:
        if not sigint_at:  # the first start: started, then the caller is cancelled
            assert process is not None
            sigint_at.append(time.monotonic())
            process.send_signal(signal.SIGINT)
            stopped.wait(WAIT)

    sandbox.log.hooks["StartPipelineExecution"] = on_start
    sandbox.log.hooks["StopPipelineExecution"] = lambda _: stopped.set()
    process = sandbox.start_command()
    finished = finish(sandbox, process)
    stop = assert_stopped_once(sandbox, finished, sigint_at[0])
    first, again = finished.of("StartPipelineExecution")
    assert again.body == first.body  # the same token and parameters: the same request
    assert first.body["ClientRequestToken"].startswith("azdo-")  # derived from the job
    assert first.body["PipelineParameters"] == [{"Name": "AucThreshold", "Value": "0.8"}]
    assert finished.of("DescribePipelineExecution") == []  # never waited on
    assert "while StartPipelineExecution was in flight" in finished.stderr
    figure("SIGINT during StartPipelineExecution", sigint_at[0], stop, finished)


def test_sigterm_during_the_clean_up_does_not_cut_it_short(sandbox, figure):
    """The agent's SIGTERM arrives while StopPipelineExecution waits for its answer: the
    command still reads the answer and reports the stop (unshielded, the second signal would
    abandon the call and exit with a bare "interrupted"), and it exits 130, not killed by the
    signal."""
    looked = threading.Event()
    process: subprocess.Popen[str] | None = None
    sigint_at: list[float] = []
    sigterm_sent: list[float] = []

    def on_stop(_: ExecutionRequest) -> None:
        assert process is not None
        process.send_signal(signal.SIGTERM)
        delivered(process.pid, signal.SIGTERM)
        sigterm_sent.append(time.monotonic())
        time.sleep(0.2)  # the answer comes after the handler has run

    sandbox.log.hooks["DescribePipelineExecution"] = lambda _: looked.set()
    sandbox.log.hooks["StopPipelineExecution"] = on_stop
    process = sandbox.start_command()
    wait_for(looked, "a first look at the execution", process)
    time.sleep(0.5)
    sigint_at.append(time.monotonic())
    process.send_signal(signal.SIGINT)
    finished = finish(sandbox, process)
    assert sigterm_sent, "the stop never arrived"
    stop = assert_stopped_once(sandbox, finished, sigint_at[0])
    assert "stop requested for" in finished.stderr
    assert "interrupted" not in finished.stderr
    figure("SIGINT, then SIGTERM during the stop call", sigint_at[0], stop, finished)


@dataclass(frozen=True)
class RawAnswer:
    status: int
    code: str


def raw_sagemaker_call(emulator: AwsEmulator, operation: str, body: dict[str, Any]) -> RawAnswer:
    """One SageMaker JSON-protocol request to moto's server without botocore (moto checks no
    signature; the credential scope names the service)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        emulator.url + "/",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"SageMaker.{operation}",
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIASANDBOXNOTREAL00/20261201/"
            f"{emulator.region}/sagemaker/aws4_request, SignedHeaders=host, Signature=0",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return RawAnswer(response.status, "")
    except urllib.error.HTTPError as error:
        return RawAnswer(error.code, json.loads(error.read() or b"{}").get("__type", ""))


def test_the_stop_stand_in_answers_as_the_model_says(sandbox):
    """The StopPipelineExecution stand-in (moto has none), called as botocore sends it: one
    stop moves the execution to Stopping, the same token again is the same request, another
    stop of it is a ConflictException (botocore's model lists it for this operation), an
    unknown execution ResourceNotFound, and a request outside the model a ValidationException
    that is recorded."""
    from botocore.exceptions import ClientError

    sagemaker = sandbox.emulator.client("sagemaker")
    token = "start-" + "1" * 32
    arn = sagemaker.start_pipeline_execution(PipelineName=PIPELINE, ClientRequestToken=token)[
        "PipelineExecutionArn"
    ]
    again = sagemaker.start_pipeline_execution(PipelineName=PIPELINE, ClientRequestToken=token)
    assert again["PipelineExecutionArn"] == arn  # idempotent on its token
    assert execution_arns(sandbox) == [arn]
    stop = {"PipelineExecutionArn": arn, "ClientRequestToken": "stop-" + "2" * 32}
    assert sagemaker.stop_pipeline_execution(**stop)["PipelineExecutionArn"] == arn
    assert sagemaker.stop_pipeline_execution(**stop)["PipelineExecutionArn"] == arn
    states = [
        sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"]
        for _ in range(2)
    ]
    assert states == ["Stopping", "Stopped"]
    codes = []
    for body in (
        {**stop, "ClientRequestToken": "stop-" + "3" * 32},
        {**stop, "PipelineExecutionArn": arn + "x", "ClientRequestToken": "stop-" + "4" * 32},
    ):
        with pytest.raises(ClientError) as info:
            sagemaker.stop_pipeline_execution(**body)
        codes.append(info.value.response["Error"]["Code"])
    assert codes == ["ConflictException", "ResourceNotFound"]
    # Outside the model (an account id of 1 digit): botocore in this process refuses to send
    # it (tests/support/strict_botocore.py), so it goes as raw JSON, as another client might.
    bad = {**stop, "PipelineExecutionArn": "arn:aws:sagemaker:eu-west-1:1:pipeline/p/execution/e"}
    answer = raw_sagemaker_call(sandbox.emulator, "StopPipelineExecution", bad)
    assert (answer.status, answer.code) == (400, "ValidationException")
    (violation,) = sandbox.log.violations  # the account id is not 12 digits
    assert "StopPipelineExecution.PipelineExecutionArn" in violation
    sandbox.log.violations.clear()
    assert [r.operation for r in sandbox.log.requests].count("StopPipelineExecution") == 5
