"""The EventBridge event ``SageMaker Model Package State Change``, validated with pydantic."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridge.errors import UserError, first_error

DETAIL_TYPE = "SageMaker Model Package State Change"
# EventBridge refuses events over 256 KB; anything larger did not come from it.
MAX_EVENT_BYTES = 256 * 1024
MODEL_PACKAGE_ARN = r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package/[A-Za-z0-9-]+/\d+$"


class InvalidEvent(UserError):
    """The input is not a model package state change event we can act on."""


class ModelPackageDetail(BaseModel):
    """The fields of ``detail`` the trigger uses (it mirrors DescribeModelPackage)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model_package_group_name: str = Field(alias="ModelPackageGroupName", min_length=1)
    model_package_version: int = Field(alias="ModelPackageVersion", ge=1, strict=True)
    model_package_arn: str = Field(alias="ModelPackageArn", pattern=MODEL_PACKAGE_ARN)
    model_approval_status: Literal["Approved", "Rejected", "PendingManualApproval"] = Field(
        alias="ModelApprovalStatus"
    )
    last_modified_time: datetime = Field(alias="LastModifiedTime")
    creation_time: datetime | None = Field(None, alias="CreationTime")
    approval_description: str = Field("", alias="ApprovalDescription")


class ModelPackageStateChange(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    id: str = Field(min_length=1)
    source: Literal["aws.sagemaker"]
    detail_type: Literal["SageMaker Model Package State Change"] = Field(alias="detail-type")
    account: str = Field(pattern=r"^\d{12}$")
    region: str
    time: datetime
    detail: ModelPackageDetail

    @property
    def approved(self) -> bool:
        return self.detail.model_approval_status == "Approved"


def parse_event(event: Any) -> ModelPackageStateChange:
    """Validate an EventBridge event; raise :class:`InvalidEvent` with a one-line reason."""
    if isinstance(event, (str, bytes)):
        raw = event if isinstance(event, bytes) else event.encode()
        if len(raw) > MAX_EVENT_BYTES:
            raise InvalidEvent(f"event is {len(raw)} bytes, over EventBridge's 256 KB limit")
        try:
            event = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidEvent(f"event is not JSON ({exc.msg})") from None
    if not isinstance(event, dict):
        raise InvalidEvent("event is not a JSON object")
    size = len(json.dumps(event, default=str).encode())
    if size > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event is {size} bytes, over EventBridge's 256 KB limit")
    if event.get("source") != "aws.sagemaker":
        raise InvalidEvent(f"event source is {event.get('source')!r}, expected 'aws.sagemaker'")
    if event.get("detail-type") != DETAIL_TYPE:
        raise InvalidEvent(f"detail-type is {event.get('detail-type')!r}, expected {DETAIL_TYPE!r}")
    try:
        return ModelPackageStateChange.model_validate(event)
    except ValidationError as exc:
        where, message = first_error(exc)
        raise InvalidEvent(f"event field {where}: {message}") from None
