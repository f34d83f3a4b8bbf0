"""Fixes for the moto gaps the loop meets, each a context manager that undoes itself.

moto (in-process or its server thread in this process) answers most of what smbridge calls; where
it does not behave like the service on a point the loop depends on, these make it do so:

* :func:`change_sets_adopt_their_template`: moto executes a change set without adopting its
  template or computing the stack's Outputs (``create_stack`` does both); CloudFormation does.
* :func:`no_execution_steps`: moto lacks ``ListPipelineExecutionSteps`` (its executions succeed at
  once): answer with no steps.
* :func:`moto_compatible`: a copy of a model-deploy template that moto's CloudFormation can
  create (it lacks CloudWatch alarms and Application Auto Scaling; it reads ``PrimaryContainer``,
  not ``Containers``).
* :func:`executions_run_until_stopped` (opt-in, for cancellation tests; not in the sandbox by
  default): executions stay ``Executing`` until stopped, StartPipelineExecution is idempotent on
  its ``ClientRequestToken``, and a stand-in StopPipelineExecution (moto has none); every request
  of the three is held against botocore's SageMaker model and recorded with the time it arrived.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

MOTO_UNSUPPORTED = {
    "AWS::CloudWatch::Alarm",
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
}


@contextmanager
def change_sets_adopt_their_template() -> Iterator[None]:
    from moto.cloudformation.models import ChangeSet

    original = ChangeSet.apply

    def apply(self: Any) -> None:
        original(self)
        stack = self.stack
        stack.template = self.template
        stack._parse_template()
        stack.output_map = stack._create_output_map()

    ChangeSet.apply = apply  # type: ignore[method-assign]
    try:
        yield
    finally:
        ChangeSet.apply = original  # type: ignore[method-assign]


@contextmanager
def no_execution_steps() -> Iterator[None]:
    from moto.sagemaker.responses import SageMakerResponse

    missing = object()
    original = getattr(SageMakerResponse, "list_pipeline_execution_steps", missing)
    SageMakerResponse.list_pipeline_execution_steps = (  # type: ignore[attr-defined]
        lambda self: json.dumps({"PipelineExecutionSteps": []})
    )
    try:
        yield
    finally:
        if original is missing:
            del SageMakerResponse.list_pipeline_execution_steps  # type: ignore[attr-defined]
        else:
            SageMakerResponse.list_pipeline_execution_steps = original  # type: ignore[attr-defined]


def moto_compatible(tpl: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Copy of ``tpl`` that moto's CloudFormation can create, and the resources it dropped (only
    :data:`MOTO_UNSUPPORTED` types; a reference to a dropped alarm becomes its name)."""
    from moto.cloudformation.parsing import get_model_map

    supported = get_model_map()
    tpl = copy.deepcopy(tpl)
    dropped = {n for n, r in tpl["Resources"].items() if r["Type"] not in supported}
    unexpected = {tpl["Resources"][n]["Type"] for n in dropped} - MOTO_UNSUPPORTED
    if unexpected:
        raise ValueError(f"moto cannot create {', '.join(sorted(unexpected))}")
    alarm_names = {
        n: tpl["Resources"][n]["Properties"]["AlarmName"]
        for n in dropped
        if tpl["Resources"][n]["Type"] == "AWS::CloudWatch::Alarm"
    }
    for name in dropped:
        del tpl["Resources"][name]

    def replace(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Ref"} and node["Ref"] in alarm_names:
                return alarm_names[node["Ref"]]
            return {k: replace(v) for k, v in node.items()}
        if isinstance(node, list):
            return [replace(v) for v in node]
        return node

    tpl["Resources"] = replace(tpl["Resources"])
    model = tpl["Resources"]["Model"]["Properties"]
    (model["PrimaryContainer"],) = model.pop("Containers")
    return tpl, dropped


# -- executions that run until they are stopped ------------------------------------------------


@dataclass(frozen=True)
class ExecutionRequest:
    """One request the patched SageMaker received: ``at`` is ``time.monotonic()`` on arrival
    (the server runs in this process: comparable with the caller's own clock)."""

    operation: str
    body: dict[str, Any]
    at: float


@dataclass
class ExecutionLog:
    """What :func:`executions_run_until_stopped` saw. ``hooks``: operation name → a function
    called with each such request in the server's thread once it has been acted on and before
    it is answered (to send a signal while the caller waits for the answer, or to hold it)."""

    requests: list[ExecutionRequest] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    hooks: dict[str, Callable[[ExecutionRequest], None]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def of(self, operation: str) -> list[ExecutionRequest]:
        with self._lock:
            return [r for r in self.requests if r.operation == operation]

    def _received(self, operation: str, body: dict[str, Any]) -> ExecutionRequest:
        request = ExecutionRequest(operation, body, time.monotonic())
        with self._lock:
            self.requests.append(request)
        return request

    def _answering(self, request: ExecutionRequest) -> None:
        hook = self.hooks.get(request.operation)
        if hook is not None:
            hook(request)


def model_violations(operation: str, params: dict[str, Any]) -> list[str]:
    """Where ``params`` break botocore's SageMaker model for ``operation``: its validator
    (required members, types, minimum lengths) plus the ``max`` and ``pattern`` of each
    top-level string member, which botocore leaves to the service."""
    import botocore.session
    from botocore.validate import ParamValidator

    shape = (
        botocore.session.get_session()
        .get_service_model("sagemaker")
        .operation_model(operation)
        .input_shape
    )
    report = ParamValidator().validate(params, shape)
    problems = [report.generate_report()] if report.has_errors() else []
    for name, member in shape.members.items():
        value = params.get(name)
        if member.type_name != "string" or not isinstance(value, str):
            continue
        limit, pattern = member.metadata.get("max"), member.metadata.get("pattern")
        if limit is not None and len(value) > limit:
            problems.append(f"{operation}.{name}: {len(value)} characters, at most {limit}")
        if pattern and re.fullmatch(pattern, value) is None:
            problems.append(f"{operation}.{name}: {value[:80]!r} does not match {pattern}")
    return problems


@contextmanager
def executions_run_until_stopped() -> Iterator[ExecutionLog]:
    """moto's pipeline executions are ``Succeeded`` the moment they start, its
    StartPipelineExecution starts a new execution for every call whatever its token, and it has
    no StopPipelineExecution. Here, as the SageMaker API reference describes them:

    * StartPipelineExecution is idempotent on ``ClientRequestToken`` (botocore's model marks it
      ``idempotencyToken``; "An idempotent operation completes no more than once"): the same
      token on the same pipeline returns the execution it started. A new execution is
      ``Executing``.
    * DescribePipelineExecution reports ``Executing`` until a stop, ``Stopping`` on the first
      look after it, then ``Stopped``.
    * StopPipelineExecution is a stand-in, not moto's: it moves an ``Executing`` execution to
      ``Stopping`` and answers its ARN; the same ``ClientRequestToken`` again answers the same;
      an execution that has ended gets ``ConflictException`` (botocore's model lists it for
      this operation; the service's wording is not recorded), an unknown one
      ``ResourceNotFound``.

    Each request is first held against botocore's model (:func:`model_violations`): a violation
    is recorded in ``violations`` and answered ``ValidationException``, as the service would.
    """
    from moto.sagemaker.exceptions import ConflictException, ResourceNotFound, ValidationError
    from moto.sagemaker.responses import SageMakerResponse
    from moto.sagemaker.utils import get_pipeline_execution_from_arn

    log = ExecutionLog()
    stopped_by_token: dict[str, str] = {}
    originals = {
        name: SageMakerResponse.__dict__.get(name)
        for name in (
            "start_pipeline_execution",
            "describe_pipeline_execution",
            "stop_pipeline_execution",
        )
    }
    start_original = SageMakerResponse.start_pipeline_execution
    describe_original = SageMakerResponse.describe_pipeline_execution

    def received(response: Any, operation: str) -> ExecutionRequest:
        body = json.loads(response.body or "{}")
        request = log._received(operation, body)
        problems = model_violations(operation, body)
        if problems:
            log.violations.extend(problems)
            raise ValidationError(message="; ".join(problems))
        return request

    def start(self: Any) -> Any:
        request = received(self, "StartPipelineExecution")
        name, token = request.body["PipelineName"], request.body["ClientRequestToken"]
        pipeline = self.sagemaker_backend.pipelines.get(name)
        if pipeline is not None:
            for arn, execution in pipeline.pipeline_executions.items():
                if execution.client_request_token == token:
                    log._answering(request)
                    return json.dumps({"PipelineExecutionArn": arn})
        answer = start_original(self)
        arn = answer.result["PipelineExecutionArn"]
        self.sagemaker_backend.pipelines[name].pipeline_executions[
            arn
        ].pipeline_execution_status = "Executing"
        log._answering(request)
        return answer

    def describe(self: Any) -> Any:
        request = received(self, "DescribePipelineExecution")
        answer = describe_original(self)
        execution = get_pipeline_execution_from_arn(
            self.sagemaker_backend.pipelines, request.body["PipelineExecutionArn"]
        )
        if execution.pipeline_execution_status == "Stopping":
            execution.pipeline_execution_status = "Stopped"  # this look still says Stopping
        log._answering(request)
        return answer

    def stop(self: Any) -> str:
        request = received(self, "StopPipelineExecution")
        arn, token = request.body["PipelineExecutionArn"], request.body["ClientRequestToken"]
        if stopped_by_token.get(token) == arn:
            log._answering(request)
            return json.dumps({"PipelineExecutionArn": arn})
        try:
            execution = get_pipeline_execution_from_arn(self.sagemaker_backend.pipelines, arn)
        except ValidationError:
            raise ResourceNotFound(f"Pipeline execution {arn} does not exist.") from None
        if execution.pipeline_execution_status != "Executing":
            raise ConflictException(
                f"Pipeline execution {arn} is {execution.pipeline_execution_status}: cannot stop"
            )
        execution.pipeline_execution_status = "Stopping"
        stopped_by_token[token] = arn
        log._answering(request)
        return json.dumps({"PipelineExecutionArn": arn})

    SageMakerResponse.start_pipeline_execution = start  # type: ignore[method-assign]
    SageMakerResponse.describe_pipeline_execution = describe  # type: ignore[method-assign]
    SageMakerResponse.stop_pipeline_execution = stop  # type: ignore[attr-defined]
    try:
        yield log
    finally:
        for name, original in originals.items():
            if original is None:
                delattr(SageMakerResponse, name)
            else:
                setattr(SageMakerResponse, name, original)
