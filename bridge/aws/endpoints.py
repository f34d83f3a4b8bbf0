"""SageMaker runtime invocations and batch transform jobs (boto3 only)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from bridge.aws.errors import aws_call, describe, error_code
from bridge.core.polling import DEFAULT_POLL_POLICY, Change, Poller, PollPolicy, PollTimedOut
from bridge.errors import ServiceError, WaitTimeout

_TRANSFORM_ENDS = frozenset({"Completed", "Failed", "Stopped"})


@dataclass(frozen=True)
class Invocation:
    status: int
    body: str
    latency_ms: float
    error: str = ""


def invoke(
    runtime: Any,
    endpoint: str,
    body: str,
    *,
    content_type: str,
    accept: str,
    monotonic: Callable[[], float] = time.perf_counter,
) -> Invocation:
    """One InvokeEndpoint; a model error is a result (status and message), not an exception."""
    started = monotonic()
    try:
        response = runtime.invoke_endpoint(
            EndpointName=endpoint, ContentType=content_type, Accept=accept, Body=body.encode()
        )
    except ClientError as exc:
        elapsed = (monotonic() - started) * 1000
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if error_code(exc) in ("ValidationError", "ModelError"):
            return Invocation(status or 400, "", elapsed, describe(exc))
        raise ServiceError(f"InvokeEndpoint {endpoint} failed: {describe(exc)}") from exc
    payload = response["Body"].read().decode("utf-8", "replace")
    elapsed = (monotonic() - started) * 1000
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 200))
    return Invocation(status, payload, elapsed)


def run_transform_job(
    sagemaker: Any,
    *,
    job_name: str,
    model_name: str,
    input_s3_uri: str,
    output_s3_uri: str,
    instance_type: str,
    instance_count: int,
    content_type: str,
    split_type: str,
    progress: Callable[[str], None],
    timeout_seconds: float = 6 * 3600,
    policy: PollPolicy = DEFAULT_POLL_POLICY,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """CreateTransformJob (idempotent by name: an existing job is followed, not restarted),
    then follow it through the shared poller to Completed (returned), Failed or Stopped
    (:class:`ServiceError`) or the timeout (:class:`WaitTimeout`)."""
    created = aws_call(
        f"CreateTransformJob {job_name}",
        sagemaker.create_transform_job,
        tolerate=lambda exc: "already exists" in describe(exc).lower(),
        TransformJobName=job_name,
        ModelName=model_name,
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_s3_uri}},
            "ContentType": content_type,
            "SplitType": split_type,
        },
        TransformOutput={"S3OutputPath": output_s3_uri, "AssembleWith": "Line"},
        TransformResources={"InstanceType": instance_type, "InstanceCount": instance_count},
    )
    if created is None:
        progress(f"transform job {job_name} exists; following it")
    else:
        progress(f"transform job {job_name} started")
    poller = Poller(policy, timeout_seconds=timeout_seconds, monotonic=monotonic, sleep=sleep)
    try:
        job = poller.until(
            lambda: aws_call(
                "DescribeTransformJob", sagemaker.describe_transform_job, TransformJobName=job_name
            ),
            done=lambda job: _status(job) in _TRANSFORM_ENDS,
            changes=lambda job: [Change("status", _status(job))],
            on_change=lambda change: progress(f"transform job {job_name}: {change.value}"),
        )
    except PollTimedOut as exc:
        status = _status(exc.last)
        raise WaitTimeout(f"transform job {job_name} still {status} after the timeout") from None
    status = _status(job)
    if status != "Completed":
        raise ServiceError(
            f"transform job {job_name} {status}: {job.get('FailureReason', 'no reason given')}"
        )
    return job


def _status(job: object) -> str:
    return str(job.get("TransformJobStatus", "")) if isinstance(job, dict) else ""
