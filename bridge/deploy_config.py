"""Stage deployment configs (``model-deploy/config/<stage>.json``), validated with pydantic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bridge.config import AccountId, Region, RoleArn
from bridge.errors import ConfigError, first_error

NamePrefix = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,30}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Autoscaling(_Strict):
    min_capacity: int = Field(1, ge=0)
    max_capacity: int = Field(1, ge=1)
    target_invocations_per_instance: int = Field(100, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.max_capacity < self.min_capacity:
            raise ValueError("max_capacity must be >= min_capacity")
        return self


class RealtimeInference(_Strict):
    type: Literal["realtime"]
    instance_type: str = "ml.m5.large"
    instance_count: int = Field(1, ge=1)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)


class ServerlessInference(_Strict):
    type: Literal["serverless"]
    memory_size_mb: Literal[1024, 2048, 3072, 4096, 5120, 6144] = 2048
    max_concurrency: int = Field(5, ge=1, le=200)
    provisioned_concurrency: int = Field(0, ge=0)


class AsyncInference(_Strict):
    type: Literal["async"]
    instance_type: str = "ml.m5.large"
    instance_count: int = Field(1, ge=1)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    output_s3_uri: str = Field(pattern=r"^s3://")
    failure_s3_uri: str = ""
    max_concurrent_invocations_per_instance: int = Field(4, ge=1, le=1000)


class BatchInference(_Strict):
    type: Literal["batch"]
    instance_type: str = "ml.m5.large"
    instance_count: int = Field(1, ge=1)
    input_s3_uri: str = Field(pattern=r"^s3://")
    output_s3_uri: str = Field(pattern=r"^s3://")
    content_type: str = "text/csv"
    split_type: Literal["None", "Line", "RecordIO", "TFRecord"] = "Line"


Inference = Annotated[
    RealtimeInference | ServerlessInference | AsyncInference | BatchInference,
    Field(discriminator="type"),
]


class DataCapture(_Strict):
    enabled: bool = False
    s3_uri: str = ""
    sampling_percent: int = Field(100, ge=1, le=100)

    @model_validator(mode="after")
    def _destination(self) -> DataCapture:
        if self.enabled and not self.s3_uri.startswith("s3://"):
            raise ValueError("s3_uri (s3://...) is required when data capture is enabled")
        return self


class Deployment(_Strict):
    """SageMaker deployment guardrails: blue/green with canary or linear traffic shifting."""

    strategy: Literal["AllAtOnce", "Canary", "Linear"] = "AllAtOnce"
    canary_size_percent: int = Field(10, ge=1, le=50)
    linear_step_percent: int = Field(25, ge=10, le=50)
    wait_interval_seconds: int = Field(300, ge=0, le=3600)
    termination_wait_seconds: int = Field(120, ge=0, le=3600)
    maximum_execution_timeout_seconds: int = Field(3600, ge=600, le=28800)
    # The template adds its own two alarms; SageMaker takes at most ten.
    rollback_alarm_names: list[str] = Field(default_factory=list, max_length=8)


class EndpointTestSettings(_Strict):
    payload: str = "model-deploy/tests/payload.csv"
    expect: str = "model-deploy/tests/expect.json"


class StageConfig(_Strict):
    stage: str = Field(pattern=r"^[a-z][a-z0-9-]{0,15}$")
    account_id: AccountId
    region: Region
    deploy_role_arn: RoleArn | None = None
    # infra/deploy-role.yaml with UseCloudFormationServiceRole=true: its service role's ARN.
    cloudformation_role_arn: RoleArn | None = None
    execution_role_arn: RoleArn
    name_prefix: NamePrefix
    inference: Inference
    data_capture: DataCapture = Field(default_factory=DataCapture)
    deployment: Deployment = Field(default_factory=Deployment)
    endpoint_test: EndpointTestSettings = Field(default_factory=EndpointTestSettings)
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> StageConfig:
        if self.deployment.strategy != "AllAtOnce" and self.inference.type != "realtime":
            raise ValueError("deployment.strategy Canary/Linear needs inference.type realtime")
        if self.data_capture.enabled and self.inference.type != "realtime":
            raise ValueError("data_capture is supported for realtime endpoints only")
        return self


def load_stage_config(path: str | Path) -> StageConfig:
    """Read and validate a stage config; one-line :class:`ConfigError` naming file and key."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file}: stage config not found; pass an existing file to --config")
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    try:
        return StageConfig.model_validate(document)
    except ValidationError as exc:
        key, message = first_error(exc)
        got = exc.errors()[0].get("input")
        got_text = "" if isinstance(got, dict | list) else f", got {got!r}"
        raise ConfigError(f"{file}: {key or '.'}: {message}{got_text}") from None
