"""StopPipelineExecution refused with ConflictException: the execution had just ended.

Source: botocore's SageMaker service model lists ``ConflictException`` among the errors of
StopPipelineExecution (``operation_model('StopPipelineExecution').error_shapes``); the service
answers it for an execution that ended (or is ending) when the stop arrives. That is a clean
outcome: describe the execution and report its final status (issue 8, item 11).

moto has no StopPipelineExecution: botocore's ``Stubber`` (the request is validated against the
model before the stub answers) and the scripted ``FakeSageMaker`` behind a real client stand in.
"""

from __future__ import annotations

import io
import os
import signal

import boto3
import botocore.session
import pytest
from botocore.stub import ANY, Stubber

from bridge.core.agent import AgentRun
from bridge.core.output import Reporter
from bridge.errors import Cancelled, ServiceError
from bridge.pipeline.operations import ExecutionParams, StartParams, start_pipeline, stop_pipeline
from tests.support.fakes import ScriptedStep, StaticClients, _ServiceError

ARN = "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/demo/execution/abc123"
PARAMETERS = [{"Name": "AucThreshold", "Type": "Float", "DefaultValue": 0.9}]
CONFLICT = "Pipeline execution is not in a state that allows it to be stopped."


def _reporter() -> tuple[Reporter, io.StringIO]:
    out = io.StringIO()
    return Reporter("text", out=out, err=out), out


def test_the_model_lists_conflict_for_stop_pipeline_execution():
    operation = (
        botocore.session.get_session()
        .get_service_model("sagemaker")
        .operation_model("StopPipelineExecution")
    )
    assert "ConflictException" in {shape.name for shape in operation.error_shapes}
    assert set(operation.input_shape.required_members) == {
        "PipelineExecutionArn",
        "ClientRequestToken",
    }


def _stubbed_stop(stub: Stubber, code: str, status: str) -> None:
    stub.add_client_error(
        "stop_pipeline_execution",
        service_error_code=code,
        service_message=CONFLICT,
        http_status_code=400,
        expected_params={"PipelineExecutionArn": ARN, "ClientRequestToken": ANY},
    )
    stub.add_response(
        "describe_pipeline_execution",
        {"PipelineExecutionArn": ARN, "PipelineExecutionStatus": status},
        {"PipelineExecutionArn": ARN},
    )


@pytest.mark.parametrize("status", ["Succeeded", "Failed", "Stopped"])
def test_stop_of_an_execution_that_just_ended_reports_its_status(status):
    sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
    reporter, out = _reporter()
    with Stubber(sagemaker) as stub:
        _stubbed_stop(stub, "ConflictException", status)
        result = stop_pipeline(
            ExecutionParams(execution_arn=ARN),
            clients=StaticClients(sagemaker=sagemaker),
            reporter=reporter,
        )
        stub.assert_no_pending_responses()
    assert result.status == status
    assert f"{ARN} had already ended ({status}): nothing to stop" in out.getvalue()
    assert "stop requested" not in out.getvalue()


def test_stop_refused_while_still_running_is_an_error():
    """A conflict that the execution's status does not explain is not hidden."""
    sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
    with Stubber(sagemaker) as stub:
        _stubbed_stop(stub, "ConflictException", "Executing")
        with pytest.raises(ServiceError, match=r"refused.*ConflictException.*Executing") as info:
            stop_pipeline(
                ExecutionParams(execution_arn=ARN),
                clients=StaticClients(sagemaker=sagemaker),
                reporter=_reporter()[0],
            )
    assert info.value.exit_code == 3


def test_other_stop_errors_still_fail():
    sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
    with Stubber(sagemaker) as stub:
        stub.add_client_error(
            "stop_pipeline_execution", service_error_code="ResourceNotFound", http_status_code=400
        )
        with pytest.raises(ServiceError, match="ResourceNotFound"):
            stop_pipeline(
                ExecutionParams(execution_arn=ARN),
                clients=StaticClients(sagemaker=sagemaker),
                reporter=_reporter()[0],
            )


# -- the same answer on the way out of a timeout or a cancel (FakeSageMaker, real client) -------


def _ends_as_the_stop_arrives(fake_sagemaker, final: str) -> None:
    """StopPipelineExecution arrives just as the execution ends: SageMaker answers Conflict."""

    def stop(body):
        execution = fake_sagemaker.executions[body["PipelineExecutionArn"]]
        now = fake_sagemaker.clock.now
        for step in execution.steps:
            step.end = min(step.end, now)
            if final == "Failed":
                step.status, step.failure_reason = "Failed", "AlgorithmError: diverged"
        raise _ServiceError("ConflictException", CONFLICT)

    fake_sagemaker.op_StopPipelineExecution = stop


def _start(fake_clients, clock, reporter, **kwargs):
    return start_pipeline(
        StartParams(pipeline_name="demo", wait=True, **kwargs),
        clients=fake_clients,
        reporter=reporter,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        agent_run=AgentRun(),
    )


def test_timeout_as_the_execution_succeeds_reports_success(fake_clients, fake_sagemaker, clock):
    fake_sagemaker.add_pipeline("demo", PARAMETERS)
    fake_sagemaker.script = [ScriptedStep("Train", 0, 7200)]
    _ends_as_the_stop_arrives(fake_sagemaker, "Succeeded")
    reporter, out = _reporter()
    result = _start(fake_clients, clock, reporter, timeout_seconds=600)
    assert result.status == "Succeeded"
    assert fake_sagemaker.operations().count("StopPipelineExecution") == 1
    assert "had already ended (Succeeded): nothing to stop" in out.getvalue()


def test_cancel_as_the_execution_fails_says_it_had_ended(fake_clients, fake_sagemaker, clock):
    fake_sagemaker.add_pipeline("demo", PARAMETERS)
    fake_sagemaker.script = [ScriptedStep("Train", 0, 7200)]
    _ends_as_the_stop_arrives(fake_sagemaker, "Failed")
    clock.on_sleep.append(lambda c: os.kill(os.getpid(), signal.SIGINT) if c.now > 100 else None)
    reporter, _ = _reporter()
    with pytest.raises(Cancelled) as info:
        _start(fake_clients, clock, reporter)
    (execution,) = fake_sagemaker.executions.values()
    assert info.value.exit_code == 130
    assert str(info.value) == (
        f"cancelled by SIGINT: {execution.arn} had already ended (Failed), nothing to stop"
    )
