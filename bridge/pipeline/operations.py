"""Pipeline commands as SDK functions: build, upsert, start (and wait), status, stop.

Each takes a pydantic parameters model (validated once) and returns a result model; the CLI only
maps arguments onto the parameters. Example::

    from bridge import AwsAuth, AwsClients, StartParams, start_pipeline
    clients = AwsClients(AwsAuth(region="eu-west-1"))
    result = start_pipeline(StartParams(pipeline_name="churn-build", wait=True), clients=clients)
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bridge.aws import pipelines as sm
from bridge.aws.session import AwsClients
from bridge.aws.tags import clean_tags
from bridge.aws.waiter import DEFAULT_POLL_POLICY, PollPolicy, WaitTimedOut, wait_for_execution
from bridge.core.agent import AgentRun
from bridge.core.output import Reporter
from bridge.core.plan import Plan, PlannedCall
from bridge.core.signals import CancelRequested, cancel_on_signals
from bridge.errors import (
    BridgeError,
    Cancelled,
    CredentialsError,
    ExecutionFailed,
    ParameterError,
    ServiceError,
    UserError,
    WaitTimeout,
)
from bridge.pipeline.definition import BuiltDefinition, canonical_json, load_definition, sha256_text


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BuildParams(_Params):
    """What is needed to build a definition offline."""

    definition: str = Field(description="a .json file or module:function returning a Pipeline")
    pipeline_name: str
    region: str
    execution_role_arn: str
    bucket: str
    model_package_group: str
    code_prefix: str | None = None
    staging_dir: Path | None = Field(None, description="where code bundles are staged")


class UpsertParams(BuildParams):
    description: str = ""
    parallelism: int | None = None
    display_name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    dry_run: bool = False


class StartParams(_Params):
    pipeline_name: str
    parameters: dict[str, str] = Field(default_factory=dict)
    wait: bool = False
    timeout_seconds: float | None = Field(None, gt=0)
    display_name: str | None = None
    description: str | None = None
    client_request_token: str | None = Field(None, min_length=32, max_length=128)
    definition_file: Path | None = Field(
        None,
        description="a built definition (pipeline build --out) to check the parameters against "
        "offline, before any call (a real start also checks them against the deployed one)",
    )
    dry_run: bool = False


class ExecutionParams(_Params):
    execution_arn: str | None = None
    pipeline_name: str | None = None
    dry_run: bool = False


class StepResult(BaseModel):
    name: str
    status: str
    duration_seconds: float | None = None
    failure_reason: str = ""


class BuildResult(BaseModel):
    pipeline_name: str
    definition_sha256: str
    size_bytes: int
    steps: list[str]
    parameters: list[dict[str, Any]]
    uploads: list[dict[str, str]]
    output_file: str | None = None


class UpsertResult(BaseModel):
    pipeline_name: str
    action: Literal["created", "updated", "unchanged", "planned"]
    pipeline_arn: str | None = None
    spec_sha256: str
    changed: list[str] = Field(default_factory=list)
    uploaded: list[str] = Field(default_factory=list)
    planned_calls: list[dict[str, Any]] = Field(default_factory=list)
    plan: Plan | None = Field(default=None, exclude=True, description="a dry run's plan")


class ExecutionResult(BaseModel):
    execution_arn: str | None = None
    status: str
    failure_reason: str = ""
    steps: list[StepResult] = Field(default_factory=list)
    planned_calls: list[dict[str, Any]] = Field(default_factory=list)
    plan: Plan | None = Field(default=None, exclude=True, description="a dry run's plan")


# -- build / upsert -----------------------------------------------------------------------------


def build_definition(params: BuildParams) -> BuiltDefinition:
    """Build (or read) the definition and check its structure. Makes no AWS call."""
    staging = params.staging_dir or Path(tempfile.mkdtemp(prefix="smbridge-stage-"))
    built = load_definition(
        params.definition,
        region=params.region,
        role_arn=params.execution_role_arn,
        bucket=params.bucket,
        pipeline_name=params.pipeline_name,
        model_package_group_name=params.model_package_group,
        staging_dir=staging,
        code_prefix=params.code_prefix,
    )
    sm.validate_definition(built.definition_json, source=params.definition)
    return built


def describe_build(params: BuildParams, built: BuiltDefinition) -> BuildResult:
    return BuildResult(
        pipeline_name=params.pipeline_name,
        definition_sha256=sha256_text(canonical_json(built.definition_json)),
        size_bytes=built.size_bytes,
        steps=built.step_names,
        parameters=built.parameters,
        uploads=[{"local": str(u.local_path), "s3_uri": u.s3_uri} for u in built.uploads],
    )


def upsert_pipeline(
    params: UpsertParams,
    *,
    clients: AwsClients | None = None,
    reporter: Reporter | None = None,
    agent_run: AgentRun | None = None,
) -> UpsertResult:
    """Create the pipeline, update it when its definition, role, description or parallelism
    changed, or report ``unchanged`` without any write call."""
    reporter = reporter or Reporter.silent()
    run = agent_run or AgentRun.from_environ()
    with reporter.group(f"Build definition of {params.pipeline_name}"):
        built = build_definition(params)
        summary = describe_build(params, built)
        reporter.info(
            f"definition {summary.definition_sha256[:12]} ({summary.size_bytes} bytes), "
            f"steps: {', '.join(summary.steps)}"
        )
    spec = sm.PipelineSpec(
        name=params.pipeline_name,
        definition_json=built.definition_json,
        role_arn=params.execution_role_arn,
        description=params.description,
        parallelism=params.parallelism,
        display_name=params.display_name,
    )
    tags = clean_tags({**params.tags, **run.tags(), "smbridge:spec-sha256": spec.sha256})
    if params.dry_run:
        calls = _upsert_plan(params, spec, built, tags)
        plan = Plan(f"AWS calls upsert would make for {params.pipeline_name}", calls)
        return UpsertResult(
            pipeline_name=params.pipeline_name,
            action="planned",
            spec_sha256=spec.sha256,
            planned_calls=plan.calls(),
            plan=plan,
        )
    if clients is None:
        raise UserError("upsert needs AWS clients (or dry_run=True)")
    with reporter.group(f"Upsert SageMaker pipeline {params.pipeline_name}"):
        outcome = sm.upsert_pipeline(
            clients.client("sagemaker"),
            spec,
            s3=clients.client("s3") if built.uploads or spec_is_large(spec) else None,
            uploads=built.uploads,
            tags=tags,
            definition_bucket=params.bucket,
            definition_prefix=params.code_prefix or params.pipeline_name,
        )
        detail = f" ({', '.join(outcome.changed)})" if outcome.action == "updated" else ""
        reporter.info(f"pipeline {params.pipeline_name}: {outcome.action}{detail}")
        for uri in outcome.uploaded:
            reporter.info(f"uploaded {uri}")
    reporter.output_variable("pipelineArn", outcome.pipeline_arn)
    reporter.output_variable("pipelineAction", outcome.action)
    return UpsertResult(
        pipeline_name=params.pipeline_name,
        action=outcome.action,
        pipeline_arn=outcome.pipeline_arn,
        spec_sha256=outcome.spec_sha256,
        changed=outcome.changed,
        uploaded=outcome.uploaded,
    )


def spec_is_large(spec: sm.PipelineSpec) -> bool:
    return len(spec.definition_json.encode("utf-8")) > sm.INLINE_DEFINITION_LIMIT


def _upsert_plan(
    params: UpsertParams, spec: sm.PipelineSpec, built: BuiltDefinition, tags: dict[str, str]
) -> list[PlannedCall]:
    calls = [PlannedCall("sagemaker", "DescribePipeline", {"PipelineName": spec.name})]
    changed = "if missing or any of definition/role/description/parallelism differs"
    if built.uploads:
        prefixes = sorted({u.s3_uri.rsplit("/code/", 1)[0] + "/code/" for u in built.uploads})
        calls.append(
            PlannedCall(
                "s3",
                "HeadObject+PutObject",
                {"Files": len(built.uploads), "Under": ", ".join(prefixes)},
                f"{changed}; only files not in S3 yet (content-addressed keys)",
            )
        )
    definition_arg: dict[str, Any] = {"PipelineDefinition": f"<{built.size_bytes} bytes>"}
    if spec_is_large(spec):
        definition_arg = {"PipelineDefinitionS3Location": f"s3://{params.bucket}/…/definitions/"}
        calls.append(PlannedCall("s3", "PutObject", {"Bucket": params.bucket}, changed))
    common = sm.write_arguments(spec, definition_arg)
    calls.append(PlannedCall("sagemaker", "CreatePipeline", {**common, "Tags": tags}, "if missing"))
    calls.append(PlannedCall("sagemaker", "UpdatePipeline", common, "if it exists and differs"))
    calls.append(PlannedCall("sagemaker", "AddTags", {"Tags": tags}, "after an update"))
    return calls


# -- start / wait / status / stop ---------------------------------------------------------------


def start_pipeline(
    params: StartParams,
    *,
    clients: AwsClients | None = None,
    reporter: Reporter | None = None,
    agent_run: AgentRun | None = None,
    poll_policy: PollPolicy = DEFAULT_POLL_POLICY,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> ExecutionResult:
    """Start an execution (parameters checked against the pipeline's declared ones first) and,
    with ``wait``, follow it to the end. Raises :class:`ExecutionFailed` when it fails."""
    reporter = reporter or Reporter.silent()
    run = agent_run or AgentRun.from_environ()
    token = params.client_request_token or run.request_token(
        "start", params.pipeline_name, *sorted(f"{k}={v}" for k, v in params.parameters.items())
    )
    if params.dry_run:
        if params.definition_file is not None:
            check_parameters_offline(params.definition_file, params.parameters)
        else:
            reporter.warning(
                "parameters not checked offline: no built definition (run 'smbridge pipeline "
                "build --out build/pipeline-definition.json', or pass --definition-file)"
            )
        plan = plan_start(params, token=token, poll_policy=poll_policy)
        return ExecutionResult(status="planned", planned_calls=plan.calls(), plan=plan)
    if clients is None:
        raise UserError("start needs AWS clients (or dry_run=True)")
    if params.definition_file is not None:
        check_parameters_offline(params.definition_file, params.parameters)
    sagemaker = clients.client("sagemaker")
    pipeline = sm.describe_pipeline(sagemaker, params.pipeline_name)
    if pipeline is None:
        raise UserError(
            f"pipeline {params.pipeline_name} does not exist in {clients.region or 'this region'}; "
            "run 'smbridge pipeline upsert' first or check --pipeline-name"
        )
    declared = sm.declared_parameters(pipeline.get("PipelineDefinition", "{}"))
    parameter_list = sm.check_parameters(declared, params.parameters)
    request_token = token or str(uuid.uuid4())

    def start() -> str:
        return sm.start_execution(
            sagemaker,
            params.pipeline_name,
            parameters=parameter_list,
            client_request_token=request_token,
            display_name=params.display_name,
            description=params.description,
        )

    arn: str | None = None
    with cancel_on_signals() as scope:
        try:
            arn = start()
            reporter.info(f"started {arn}")
            reporter.output_variable("executionArn", arn)
            if not params.wait:
                return ExecutionResult(execution_arn=arn, status="Executing")
            state = _wait(
                sagemaker, arn, params.timeout_seconds, reporter, poll_policy, sleep, monotonic
            )
        except KeyboardInterrupt as exc:  # CancelRequested (SIGINT/SIGTERM) or a plain Ctrl-C
            scope.shield()  # a second signal (SIGTERM 7.5 s after SIGINT) must not cut this short
            raise _cancel(exc, sagemaker, arn, start, params.pipeline_name, reporter) from None
        except (CredentialsError, ServiceError) as exc:
            if arn is None:
                raise
            raise _still_running(exc, arn) from exc
    return _finish(state, reporter)


def _still_running(exc: CredentialsError | ServiceError, arn: str) -> BridgeError:
    """The wait failed (credentials that could not be refreshed, SageMaker not answering)
    while the execution goes on: it is not stopped (without credentials it cannot be), so the
    message says where it is. The same error class, so the same exit code."""
    return type(exc)(
        f"{exc}; the execution {arn} keeps running: follow it with 'smbridge pipeline status "
        f"--execution-arn {arn}', stop it with 'smbridge pipeline stop --execution-arn {arn}'"
    )


def plan_start(
    params: StartParams, *, token: str | None = None, poll_policy: PollPolicy = DEFAULT_POLL_POLICY
) -> Plan:
    """The calls ``start`` would make (pure: no call, no credential; ``token``: the request
    token an agent run derives, else ``<random>``)."""
    calls = [
        PlannedCall("sagemaker", "DescribePipeline", {"PipelineName": params.pipeline_name}),
        PlannedCall(
            "sagemaker",
            "StartPipelineExecution",
            {
                "PipelineName": params.pipeline_name,
                "PipelineParameters": [
                    {"Name": k, "Value": v} for k, v in params.parameters.items()
                ],
                "ClientRequestToken": token or params.client_request_token or "<random>",
            },
            "after checking the parameters against the declared ones",
        ),
    ]
    if params.wait:
        calls.append(
            PlannedCall(
                "sagemaker",
                "DescribePipelineExecution+ListPipelineExecutionSteps",
                {"every": f"{poll_policy.initial_interval:g}s→{poll_policy.max_interval:g}s"},
                "until Succeeded/Failed/Stopped",
            )
        )
    return Plan(f"AWS calls start would make for {params.pipeline_name}", calls)


def check_parameters_offline(definition_file: Path, parameters: dict[str, str]) -> None:
    """Check parameter names, types and enum values against a built definition, as
    StartPipelineExecution will against the deployed one. Raises :class:`ParameterError` (naming
    the parameter and the file) or :class:`UserError` (an unreadable file)."""
    try:
        declared = sm.declared_parameters(definition_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a pipeline definition JSON"
        raise UserError(
            f"--definition-file {definition_file}: {reason}; build it with 'smbridge pipeline "
            "build --out FILE'"
        ) from None
    try:
        sm.check_parameters(declared, parameters)
    except ParameterError as exc:
        raise ParameterError(
            f"{exc} (checked against {definition_file}; rebuild it if the pipeline changed)"
        ) from None


def _cancel(
    exc: KeyboardInterrupt,
    sagemaker: Any,
    arn: str | None,
    start: Callable[[], str],
    pipeline_name: str,
    reporter: Reporter,
) -> Cancelled:
    """Stop the execution this command started, then say what happened (exit 130).

    Cancelled while StartPipelineExecution was in flight, the ARN is unknown although SageMaker
    may have started the execution. StartPipelineExecution is idempotent on ClientRequestToken
    (botocore's SageMaker model marks it ``idempotencyToken``; the API reference: "An idempotent
    operation completes no more than once"), so the same call with the same token and parameters
    returns that execution's ARN. If the interrupted request never reached SageMaker, the repeat
    starts the execution instead, and it is stopped at once: either way none is left running.
    (ListPipelineExecutions cannot tell ours from another job's: its summaries carry no token.)
    """
    reason = str(exc) if isinstance(exc, CancelRequested) else "interrupted"
    if arn is None:
        reporter.warning(
            f"{reason} while StartPipelineExecution was in flight: repeating it with the same "
            "ClientRequestToken to learn which execution it started"
        )
        try:
            arn = start()
        except Exception as err:  # reported: the cancellation is what matters
            reporter.error(f"could not learn the execution's ARN: {err}")
            return Cancelled(
                f"{reason} while starting an execution of {pipeline_name}; could not learn "
                f"whether one started ({err}), so none was stopped: check with 'smbridge "
                f"pipeline status --pipeline-name {pipeline_name}'"
            )
        reporter.info(f"the start call, repeated with the same token, returns {arn}")
        reporter.output_variable("executionArn", arn)
    else:
        reporter.warning(f"{reason}: stopping the SageMaker execution {arn}")
    return Cancelled(f"{reason}: {_stop(sagemaker, arn, reporter).summary}")


def _wait(
    sagemaker: Any,
    arn: str,
    timeout: float | None,
    reporter: Reporter,
    policy: PollPolicy,
    sleep: Callable[[float], None],
    monotonic: Callable[[], float],
) -> sm.ExecutionState:
    try:
        with reporter.group(f"Waiting for {arn.rsplit('/', 1)[-1]}"):
            return wait_for_execution(
                sagemaker,
                arn,
                progress=reporter.progress,
                timeout_seconds=timeout,
                policy=policy,
                monotonic=monotonic,
                sleep=sleep,
            )
    except WaitTimedOut as exc:
        reporter.warning(f"timed out while {exc.state.status}: stopping {arn}")
        stopped = _stop(sagemaker, arn, reporter)
        if stopped.final is not None:  # it ended as the deadline passed: its outcome stands
            return stopped.final
        raise WaitTimeout(
            f"execution {arn} still {exc.state.status} after --timeout; {stopped.summary}"
        ) from None


@dataclass(frozen=True)
class _Stopped:
    """What stopping an execution came to, in words; ``final``: its state if it had ended."""

    summary: str
    final: sm.ExecutionState | None = None


def _stop(sagemaker: Any, arn: str, reporter: Reporter) -> _Stopped:
    """Stop ``arn`` on the way out of a cancel or a timeout. Raises nothing but a cancel (a
    KeyboardInterrupt: the caller then stops again, shielded): the reason for stopping matters
    more than the stop's own failure, which the summary reports."""
    try:
        outcome = sm.stop_execution(sagemaker, arn, client_request_token=str(uuid.uuid4()))
    except Exception as exc:
        reporter.error(f"could not stop {arn}: {exc}")
        return _Stopped(f"could not stop {arn} ({exc}); it may still be running")
    if outcome.requested:
        reporter.info(f"stop requested for {arn}")
        return _Stopped(f"stop requested for {arn}")
    try:
        state = sm.describe_execution(sagemaker, arn)
    except Exception as exc:
        reporter.error(f"SageMaker did not stop {arn} ({outcome.refusal}); describing it: {exc}")
        return _Stopped(f"SageMaker did not stop {arn} ({outcome.refusal}); its status is unknown")
    return _refused_stop(arn, outcome, state, reporter)


def _refused_stop(
    arn: str, outcome: sm.StopOutcome, state: sm.ExecutionState, reporter: Reporter
) -> _Stopped:
    if state.terminal:
        reporter.info(f"{arn} had already ended ({state.status}): nothing to stop")
        return _Stopped(f"{arn} had already ended ({state.status}), nothing to stop", state)
    if state.status == "Stopping":
        reporter.info(f"{arn} is already stopping")
        return _Stopped(f"{arn} was already stopping")
    reporter.error(f"SageMaker did not stop {arn} ({outcome.refusal}); it is {state.status}")
    return _Stopped(f"SageMaker did not stop {arn} ({outcome.refusal}); it is still {state.status}")


def _finish(state: sm.ExecutionState, reporter: Reporter) -> ExecutionResult:
    result = _result(state)
    _show_steps(reporter, result)
    if state.status == "Succeeded":
        reporter.info(f"execution {state.arn}: Succeeded")
        return result
    failing = state.failing_step()
    where = (
        f" at step {failing.name}: {failing.failure_reason or failing.status}" if failing else ""
    )
    reason = state.failure_reason or (failing.failure_reason if failing else "")
    message = f"execution {state.status}{where}"
    if reason and reason not in message:
        message += f" ({reason})"
    raise ExecutionFailed(message)


def _result(state: sm.ExecutionState) -> ExecutionResult:
    return ExecutionResult(
        execution_arn=state.arn,
        status=state.status,
        failure_reason=state.failure_reason,
        steps=[
            StepResult(
                name=s.name,
                status=s.status,
                duration_seconds=s.duration_seconds,
                failure_reason=s.failure_reason,
            )
            for s in state.steps
        ],
    )


def _show_steps(reporter: Reporter, result: ExecutionResult) -> None:
    reporter.table(
        ["step", "status", "duration", "failure reason"],
        [
            [s.name, s.status, _duration(s.duration_seconds), s.failure_reason[:80]]
            for s in result.steps
        ],
    )


def _plan_target(params: ExecutionParams) -> str:
    return params.execution_arn or f"<latest of {params.pipeline_name}>"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _execution_arn(params: ExecutionParams, sagemaker: Any) -> str:
    if params.execution_arn:
        return params.execution_arn
    if params.pipeline_name:
        return sm.latest_execution_arn(sagemaker, params.pipeline_name)
    raise UserError("give --execution-arn, or --pipeline-name for its latest execution")


def plan_status(params: ExecutionParams) -> Plan:
    """The calls ``status`` would make (pure: no call, no credential)."""
    target = _plan_target(params)
    calls = [
        PlannedCall("sagemaker", "DescribePipelineExecution", {"PipelineExecutionArn": target}),
        PlannedCall("sagemaker", "ListPipelineExecutionSteps", {"PipelineExecutionArn": target}),
    ]
    if not params.execution_arn:
        listing = {"PipelineName": params.pipeline_name}
        calls.insert(0, PlannedCall("sagemaker", "ListPipelineExecutions", listing))
    return Plan("AWS calls status would make", calls)


def plan_stop(params: ExecutionParams) -> Plan:
    """The call ``stop`` would make (pure)."""
    target = {"PipelineExecutionArn": _plan_target(params)}
    return Plan(
        "AWS calls stop would make", [PlannedCall("sagemaker", "StopPipelineExecution", target)]
    )


def pipeline_status(
    params: ExecutionParams, *, clients: AwsClients | None = None, reporter: Reporter | None = None
) -> ExecutionResult:
    """The execution's status and its steps (the latest execution with only a pipeline name)."""
    reporter = reporter or Reporter.silent()
    if params.dry_run:
        plan = plan_status(params)
        return ExecutionResult(status="planned", planned_calls=plan.calls(), plan=plan)
    if clients is None:
        raise UserError("status needs AWS clients (or dry_run=True)")
    sagemaker = clients.client("sagemaker")
    state = sm.describe_execution(sagemaker, _execution_arn(params, sagemaker))
    result = _result(state)
    reporter.info(f"execution {state.arn}: {state.status}")
    if state.failure_reason:
        reporter.info(f"failure reason: {state.failure_reason}")
    _show_steps(reporter, result)
    return result


def stop_pipeline(
    params: ExecutionParams, *, clients: AwsClients | None = None, reporter: Reporter | None = None
) -> ExecutionResult:
    """Ask SageMaker to stop the execution (a no-op when it already finished)."""
    reporter = reporter or Reporter.silent()
    if params.dry_run:
        plan = plan_stop(params)
        return ExecutionResult(status="planned", planned_calls=plan.calls(), plan=plan)
    if clients is None:
        raise UserError("stop needs AWS clients (or dry_run=True)")
    sagemaker = clients.client("sagemaker")
    arn = _execution_arn(params, sagemaker)
    outcome = sm.stop_execution(sagemaker, arn, client_request_token=str(uuid.uuid4()))
    state = sm.describe_execution(sagemaker, arn, with_steps=False)
    if outcome.requested:
        reporter.info(f"stop requested for {arn}: now {state.status}")
    elif state.terminal or state.status == "Stopping":
        # ConflictException: the execution ended (or is ending) just before the stop arrived.
        verb = "is already stopping" if state.status == "Stopping" else "had already ended"
        reporter.info(f"{arn} {verb} ({state.status}): nothing to stop")
    else:
        raise ServiceError(
            f"StopPipelineExecution {arn} was refused ({outcome.refusal}); it is {state.status}"
        )
    return ExecutionResult(execution_arn=arn, status=state.status)
