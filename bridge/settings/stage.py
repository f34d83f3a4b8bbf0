"""Stage deployment configs (``model-deploy/config/<stage>.json``), validated with pydantic."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bridge.errors import ConfigError, first_error, shown
from bridge.settings.bridge_config import AccountId, Region, RoleArn

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


# botocore's STS model, AssumeRole ExternalId: length 2-1224, pattern [\w+=,.@:\/-]*. The
# service's \w is ASCII ([A-Za-z0-9_]); Python's and pydantic's are Unicode-aware, hence spelt
# out here.
EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9_+=,.@:/-]{2,1224}$"
# An Azure DevOps service connection id (a GUID), as passed to the OIDC token request.
SERVICE_CONNECTION_ID_PATTERN = (
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
# infra/deploy-role.yaml names the roles "<NamePrefix>-deploy" and
# "<NamePrefix>-deploy-cloudformation".
CLOUDFORMATION_ROLE_SUFFIX = "-cloudformation"


def default_cloudformation_role_arn(deploy_role_arn: str) -> str:
    """The CloudFormation service role that infra/deploy-role.yaml creates next to a deploy
    role: the deploy role's ARN with ``-cloudformation`` appended to its name."""
    return deploy_role_arn + CLOUDFORMATION_ROLE_SUFFIX


class StageConfig(_Strict):
    stage: str = Field(pattern=r"^[a-z][a-z0-9-]{0,15}$")
    account_id: AccountId
    region: Region
    deploy_role_arn: RoleArn | None = Field(
        None,
        description=(
            "role smbridge assumes in the stage account (infra/deploy-role.yaml output "
            "DeployRoleArn); unset = the caller's own credentials"
        ),
    )
    external_id: str | None = Field(
        None,
        pattern=EXTERNAL_ID_PATTERN,
        description=(
            "sts:ExternalId sent with AssumeRole of deploy_role_arn (the deploy-role stack's "
            "ExternalId parameter); 2-1224 characters of letters, digits and _+=,.@:/-"
        ),
    )
    service_connection_id: str | None = Field(
        None,
        pattern=SERVICE_CONNECTION_ID_PATTERN,
        description=(
            "Azure DevOps service connection (id) whose OIDC token is exchanged directly for "
            "deploy_role_arn with AssumeRoleWithWebIdentity (deploy-role stack with "
            "TrustMode=AzureDevOpsOidc); unset = deploy_role_arn is assumed from the caller's "
            "credentials (AssumeRole, role chaining)"
        ),
    )
    cloudformation_role_arn: RoleArn | None = Field(
        None,
        description=(
            "CloudFormation service role passed as RoleARN of CreateChangeSet, "
            "ContinueUpdateRollback and DeleteStack (deploy-role stack output "
            "CloudFormationServiceRoleArn). Default with deploy_role_arn: that ARN + "
            "'-cloudformation'; null = none (CloudFormation then uses the role the stack "
            "already has, else the caller's credentials)"
        ),
    )
    execution_role_arn: RoleArn
    name_prefix: NamePrefix
    inference: Inference
    data_capture: DataCapture = Field(default_factory=DataCapture)
    deployment: Deployment = Field(default_factory=Deployment)
    endpoint_test: EndpointTestSettings = Field(default_factory=EndpointTestSettings)
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _default_cloudformation_role(cls, data: object) -> object:
        # Only when the key is absent: an explicit null means "no service role".
        if isinstance(data, dict) and "cloudformation_role_arn" not in data:
            deploy_role = data.get("deploy_role_arn")
            if isinstance(deploy_role, str) and deploy_role:
                return {
                    **data,
                    "cloudformation_role_arn": default_cloudformation_role_arn(deploy_role),
                }
        return data

    @model_validator(mode="after")
    def _consistent(self) -> StageConfig:
        if (self.external_id or self.service_connection_id) and not self.deploy_role_arn:
            raise ValueError("external_id and service_connection_id need deploy_role_arn")
        if self.external_id and self.service_connection_id:
            raise ValueError(
                "external_id applies to AssumeRole only; with service_connection_id the deploy "
                "role is assumed with AssumeRoleWithWebIdentity, which takes none"
            )
        if self.deployment.strategy != "AllAtOnce" and self.inference.type != "realtime":
            raise ValueError("deployment.strategy Canary/Linear needs inference.type realtime")
        if self.data_capture.enabled and self.inference.type != "realtime":
            raise ValueError("data_capture is supported for realtime endpoints only")
        return self


def load_stage_config(path: str | Path) -> StageConfig:
    """Read and validate a stage config; one-line :class:`ConfigError` naming file and key."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"{file}: stage config not found; pass an existing file to --stage-config"
        )

    def integer(digits: str) -> int:
        # int() would raise a ValueError (not a JSONDecodeError) past Python's limit
        count = len(digits.lstrip("-"))
        if count > sys.get_int_max_str_digits() > 0:
            raise ConfigError(
                f"{file}: holds a number of {count} digits, more than the "
                f"{sys.get_int_max_str_digits()} Python reads"
            )
        return int(digits)

    def mapping(pairs: list[tuple[str, object]]) -> dict[str, object]:
        # a "\ud800" key: pydantic cannot read it, and reports it at no location at all
        for key, _ in pairs:
            if re.search("[\ud800-\udfff]", key):
                raise ConfigError(
                    f"{file}: the key {json.dumps(key)} holds a \\u escape of a lone surrogate, "
                    "which is not a character"
                )
        return dict(pairs)

    try:
        text = file.read_text(encoding="utf-8")
        document = json.loads(text, parse_int=integer, object_pairs_hook=mapping)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{file}: byte {exc.object[exc.start]:#04x} at offset {exc.start} is not UTF-8; "
            "save the file as UTF-8"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise ConfigError(f"{file}: nested too deeply to be a stage config") from None
    try:
        return StageConfig.model_validate(document)
    except ValidationError as exc:
        key, message = first_error(exc)
        got = exc.errors()[0].get("input")
        # The external id is NoEcho in the deploy-role stack: never repeated in a message.
        hidden = isinstance(got, dict | list) or key == "external_id"
        got_text = "" if hidden else f", got {shown(got)}"
        raise ConfigError(f"{file}: {key or '.'}: {message}{got_text}") from None
