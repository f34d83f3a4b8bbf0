"""SageMaker pipelines with boto3: upsert (no write when unchanged), start, describe, stop.

What upsert compares lives here too: the canonical JSON of a definition and its SHA-256, and the
content-addressed files a definition refers to (:class:`StagedUpload`);
:mod:`bridge.pipeline.definition` builds on them. The waiting loop lives in
:mod:`bridge.aws.waiter`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from bridge.aws.errors import aws_call, describe, error_code
from bridge.aws.tags import tag_list
from bridge.errors import DefinitionError, ParameterError, ServiceError

# CreatePipeline takes an inline definition up to 1 MB; beyond that it must come from S3.
INLINE_DEFINITION_LIMIT = 1_000_000
TERMINAL_STATUSES = frozenset({"Succeeded", "Failed", "Stopped"})
PARAMETER_TYPES = frozenset({"String", "Integer", "Float", "Boolean"})


def canonical_json(text_or_document: str | Mapping[str, Any]) -> str:
    """Key-sorted, compact, ASCII JSON: equal documents give equal strings, byte for byte,
    whatever their formatting (what upsert hashes, and what the build sends)."""
    document = (
        json.loads(text_or_document) if isinstance(text_or_document, str) else text_or_document
    )
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StagedUpload:
    """A file the definition refers to by S3 URI; staged locally until ``upsert`` uploads it."""

    local_path: Path
    s3_uri: str
    sha256: str


@dataclass(frozen=True)
class PipelineSpec:
    """Everything ``upsert`` compares: the definition and the pipeline's own settings."""

    name: str
    definition_json: str
    role_arn: str
    description: str = ""
    parallelism: int | None = None
    display_name: str | None = None

    def fingerprint(self) -> dict[str, str]:
        """Per-field hashes; the pipeline is unchanged when all of them match."""
        try:
            definition = canonical_json(self.definition_json)
        except json.JSONDecodeError:  # never equal to a valid definition: an update follows
            definition = "unparseable:" + self.definition_json
        return {
            "definition": sha256_text(definition),
            "role": sha256_text(self.role_arn),
            "description": sha256_text(self.description or ""),
            "parallelism": sha256_text(str(self.parallelism or "")),
        }

    @property
    def sha256(self) -> str:
        return sha256_text(canonical_json(self.fingerprint()))


def validate_definition(definition_json: str, *, source: str) -> dict[str, Any]:
    """Structural checks SageMaker would otherwise reject later, as one-line errors."""
    try:
        document = json.loads(definition_json)
    except json.JSONDecodeError as exc:
        raise DefinitionError(f"{source}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(document, dict):
        raise DefinitionError(f"{source}: a pipeline definition is a JSON object")
    steps = document.get("Steps")
    if not isinstance(steps, list) or not steps:
        raise DefinitionError(f"{source}: 'Steps' must be a non-empty list")
    names = [step.get("Name") if isinstance(step, dict) else None for step in steps]
    if any(not isinstance(name, str) or not name for name in names):
        raise DefinitionError(f"{source}: every step needs a 'Name'")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DefinitionError(f"{source}: duplicate step names: {', '.join(duplicates)}")
    for parameter in document.get("Parameters", []):
        if parameter.get("Type") not in PARAMETER_TYPES:
            raise DefinitionError(
                f"{source}: parameter {parameter.get('Name')!r} has type "
                f"{parameter.get('Type')!r}; expected one of {', '.join(sorted(PARAMETER_TYPES))}"
            )
    return document


def declared_parameters(definition_json: str) -> dict[str, dict[str, Any]]:
    return {p["Name"]: p for p in json.loads(definition_json).get("Parameters", [])}


def check_parameters(
    declared: Mapping[str, Mapping[str, Any]], given: Mapping[str, str]
) -> list[dict[str, str]]:
    """Validate ``--param`` values against the declared parameters; the StartPipelineExecution
    ``PipelineParameters`` list. Raises :class:`ParameterError` naming the first bad one."""
    result = []
    for name, value in given.items():
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise ParameterError(
                f"--param {name}: the pipeline declares no such parameter (declared: {known})"
            )
        parameter = declared[name]
        kind = parameter.get("Type", "String")
        if not _fits(kind, value):
            raise ParameterError(f"--param {name}={value!r}: expected a {kind.lower()} value")
        enum = parameter.get("EnumValues")
        if enum and value not in enum:
            raise ParameterError(f"--param {name}={value!r}: expected one of {', '.join(enum)}")
        result.append({"Name": name, "Value": value})
    return result


def _fits(kind: str, value: str) -> bool:
    try:
        if kind == "Integer":
            int(value)
        elif kind == "Float":
            float(value)
        elif kind == "Boolean":
            return value.lower() in ("true", "false")
    except ValueError:
        return False
    return True


# -- reading ------------------------------------------------------------------------------------


def describe_pipeline(sagemaker: Any, name: str) -> dict[str, Any] | None:
    """DescribePipeline, or ``None`` when there is no such pipeline."""

    def missing(exc: ClientError) -> bool:
        # SageMaker answers ResourceNotFound; moto a ValidationException "Could not find".
        message = describe(exc).lower()
        return error_code(exc) == "ResourceNotFound" or (
            error_code(exc) == "ValidationException"
            and ("does not exist" in message or "could not find" in message)
        )

    return aws_call(
        f"DescribePipeline {name}",
        sagemaker.describe_pipeline,
        tolerate=missing,
        PipelineName=name,
    )


def existing_spec(description: Mapping[str, Any]) -> PipelineSpec:
    parallelism = (description.get("ParallelismConfiguration") or {}).get(
        "MaxParallelExecutionSteps"
    )
    return PipelineSpec(
        name=description["PipelineName"],
        definition_json=description.get("PipelineDefinition", "{}"),
        role_arn=description.get("RoleArn", ""),
        description=description.get("PipelineDescription", ""),
        parallelism=parallelism,
    )


def changed_fields(wanted: PipelineSpec, current: PipelineSpec) -> list[str]:
    mine, theirs = wanted.fingerprint(), current.fingerprint()
    return [key for key in mine if mine[key] != theirs[key]]


# -- writing ------------------------------------------------------------------------------------


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise DefinitionError(f"{uri!r} is not an s3://bucket/key URI")
    return parsed.netloc, parsed.path.lstrip("/")


def upload_missing(s3: Any, uploads: Iterable[StagedUpload]) -> list[str]:
    """Upload staged files whose content-addressed key is not in S3 yet; return the URIs sent."""
    sent = []
    for upload in uploads:
        bucket, key = split_s3_uri(upload.s3_uri)
        present = aws_call(
            f"S3 HeadObject {upload.s3_uri}",
            s3.head_object,
            tolerate=lambda exc: error_code(exc) in ("404", "NoSuchKey", "NotFound"),
            Bucket=bucket,
            Key=key,
        )
        if present is not None:
            continue
        aws_call(
            f"S3 upload {upload.s3_uri}",
            s3.upload_file,
            Filename=str(upload.local_path),
            Bucket=bucket,
            Key=key,
        )
        sent.append(upload.s3_uri)
    return sent


@dataclass
class UpsertOutcome:
    action: Literal["created", "updated", "unchanged"]
    pipeline_arn: str
    spec_sha256: str
    changed: list[str] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)


def _definition_argument(
    s3: Any, spec: PipelineSpec, definition_bucket: str | None, definition_prefix: str
) -> dict[str, Any]:
    size = len(spec.definition_json.encode("utf-8"))
    if size <= INLINE_DEFINITION_LIMIT:
        return {"PipelineDefinition": spec.definition_json}
    if not definition_bucket:
        raise DefinitionError(
            f"the definition is {size} bytes (over 1 MB): set pipeline.artifact_bucket so it can "
            "go through S3"
        )
    key = f"{definition_prefix.strip('/')}/definitions/{sha256_text(spec.definition_json)}.json"
    response = aws_call(
        f"S3 PutObject s3://{definition_bucket}/{key}",
        s3.put_object,
        Bucket=definition_bucket,
        Key=key,
        Body=spec.definition_json.encode("utf-8"),
        ContentType="application/json",
    )
    location = {"Bucket": definition_bucket, "ObjectKey": key}
    if response.get("VersionId"):
        location["VersionId"] = response["VersionId"]
    return {"PipelineDefinitionS3Location": location}


def write_arguments(spec: PipelineSpec, definition: dict[str, Any]) -> dict[str, Any]:
    """The arguments CreatePipeline and UpdatePipeline share (``definition``: inline or S3)."""
    arguments: dict[str, Any] = {
        "PipelineName": spec.name,
        "RoleArn": spec.role_arn,
        "PipelineDescription": spec.description,
        **definition,
    }
    if spec.display_name:
        arguments["PipelineDisplayName"] = spec.display_name
    if spec.parallelism:
        arguments["ParallelismConfiguration"] = {"MaxParallelExecutionSteps": spec.parallelism}
    return arguments


def _write(what: str, func: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        return aws_call(what, func, **kwargs)
    except ServiceError as exc:
        cause = exc.__cause__
        if isinstance(cause, ClientError) and error_code(cause) == "ValidationException":
            raise DefinitionError(f"{what} rejected the definition: {describe(cause)}") from cause
        raise


def upsert_pipeline(
    sagemaker: Any,
    spec: PipelineSpec,
    *,
    s3: Any = None,
    uploads: Iterable[StagedUpload] = (),
    tags: Mapping[str, str] | None = None,
    definition_bucket: str | None = None,
    definition_prefix: str = "",
) -> UpsertOutcome:
    """Create the pipeline, update it if any compared field changed, or do nothing at all.

    Staged code uploads go to S3 before the pipeline write, and only when there is one.
    """
    current = describe_pipeline(sagemaker, spec.name)
    if current is not None:
        changed = changed_fields(spec, existing_spec(current))
        if not changed:
            return UpsertOutcome("unchanged", current["PipelineArn"], spec.sha256)
    uploaded = upload_missing(s3, uploads) if s3 is not None else []
    definition = _definition_argument(s3, spec, definition_bucket, definition_prefix or spec.name)
    common = write_arguments(spec, definition)
    tags_member = tag_list(tags or {})
    if current is None:
        response = _write(
            f"CreatePipeline {spec.name}",
            sagemaker.create_pipeline,
            ClientRequestToken=spec.sha256[:64],
            Tags=tags_member,
            **common,
        )
        return UpsertOutcome(
            "created", response["PipelineArn"], spec.sha256, ["pipeline"], uploaded
        )
    response = _write(f"UpdatePipeline {spec.name}", sagemaker.update_pipeline, **common)
    if tags_member:
        aws_call(
            "AddTags", sagemaker.add_tags, ResourceArn=response["PipelineArn"], Tags=tags_member
        )
    return UpsertOutcome("updated", response["PipelineArn"], spec.sha256, changed, uploaded)


# -- executions ---------------------------------------------------------------------------------


def start_execution(
    sagemaker: Any,
    pipeline_name: str,
    *,
    parameters: list[dict[str, str]],
    client_request_token: str | None = None,
    display_name: str | None = None,
    description: str | None = None,
) -> str:
    """StartPipelineExecution; with the same ``client_request_token`` SageMaker returns the
    execution it already started instead of starting a second one."""
    kwargs: dict[str, Any] = {"PipelineName": pipeline_name, "PipelineParameters": parameters}
    if client_request_token:
        kwargs["ClientRequestToken"] = client_request_token
    if display_name:
        kwargs["PipelineExecutionDisplayName"] = display_name
    if description:
        kwargs["PipelineExecutionDescription"] = description
    response = aws_call(
        f"StartPipelineExecution {pipeline_name}", sagemaker.start_pipeline_execution, **kwargs
    )
    return response["PipelineExecutionArn"]


@dataclass(frozen=True)
class StepState:
    name: str
    status: str
    started: datetime | None = None
    ended: datetime | None = None
    failure_reason: str = ""

    @property
    def duration_seconds(self) -> float | None:
        if self.started and self.ended:
            return (self.ended - self.started).total_seconds()
        return None


@dataclass(frozen=True)
class ExecutionState:
    arn: str
    status: str
    failure_reason: str = ""
    steps: tuple[StepState, ...] = ()

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def failing_step(self) -> StepState | None:
        for step in self.steps:
            if step.status in ("Failed", "Stopped") and step.failure_reason:
                return step
        return next((s for s in self.steps if s.status == "Failed"), None)


def list_steps(sagemaker: Any, execution_arn: str) -> tuple[StepState, ...]:
    steps: list[StepState] = []
    kwargs: dict[str, Any] = {"PipelineExecutionArn": execution_arn, "SortOrder": "Ascending"}
    while True:
        page = aws_call(
            "ListPipelineExecutionSteps", sagemaker.list_pipeline_execution_steps, **kwargs
        )
        for item in page.get("PipelineExecutionSteps", []):
            steps.append(
                StepState(
                    name=item.get("StepDisplayName") or item.get("StepName", "?"),
                    status=item.get("StepStatus", "Unknown"),
                    started=item.get("StartTime"),
                    ended=item.get("EndTime"),
                    failure_reason=item.get("FailureReason", ""),
                )
            )
        if not page.get("NextToken"):
            return tuple(steps)
        kwargs["NextToken"] = page["NextToken"]


def describe_execution(
    sagemaker: Any, execution_arn: str, *, with_steps: bool = True
) -> ExecutionState:
    response = aws_call(
        f"DescribePipelineExecution {execution_arn}",
        sagemaker.describe_pipeline_execution,
        PipelineExecutionArn=execution_arn,
    )
    return ExecutionState(
        arn=execution_arn,
        status=response.get("PipelineExecutionStatus", "Unknown"),
        failure_reason=response.get("FailureReason", ""),
        steps=list_steps(sagemaker, execution_arn) if with_steps else (),
    )


def latest_execution_arn(sagemaker: Any, pipeline_name: str) -> str:
    response = aws_call(
        f"ListPipelineExecutions {pipeline_name}",
        sagemaker.list_pipeline_executions,
        PipelineName=pipeline_name,
        SortBy="CreationTime",
        SortOrder="Descending",
        MaxResults=1,
    )
    summaries = response.get("PipelineExecutionSummaries", [])
    if not summaries:
        raise ServiceError(f"pipeline {pipeline_name} has no executions yet")
    return summaries[0]["PipelineExecutionArn"]


@dataclass(frozen=True)
class StopOutcome:
    """StopPipelineExecution accepted, or refused (``refusal``: what SageMaker answered)."""

    requested: bool
    refusal: str = ""


def _stop_refused(exc: ClientError) -> bool:
    """SageMaker refusing to stop an execution that has ended or is ending. botocore's SageMaker
    model lists ``ConflictException`` for StopPipelineExecution (an execution that just ended);
    a ValidationException naming its status is the same answer for one that ended earlier."""
    code = error_code(exc)
    return code == "ConflictException" or (
        code == "ValidationException" and "status" in describe(exc).lower()
    )


def stop_execution(sagemaker: Any, execution_arn: str, *, client_request_token: str) -> StopOutcome:
    """StopPipelineExecution. An execution that has already ended is not an error: the outcome
    says the stop was refused (the caller describes the execution for its final status)."""
    refusal = ""

    def refused(exc: ClientError) -> bool:
        nonlocal refusal
        if _stop_refused(exc):
            refusal = describe(exc)
            return True
        return False

    response = aws_call(
        f"StopPipelineExecution {execution_arn}",
        sagemaker.stop_pipeline_execution,
        tolerate=refused,
        PipelineExecutionArn=execution_arn,
        ClientRequestToken=client_request_token,
    )
    if response is None:
        return StopOutcome(requested=False, refusal=refusal)
    return StopOutcome(requested=True)
