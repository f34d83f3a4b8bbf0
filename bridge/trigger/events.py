"""The EventBridge event ``SageMaker Model Package State Change``, validated with pydantic.

What SageMaker sends (SageMaker developer guide, "Events that Amazon SageMaker sends to Amazon
EventBridge", model package state change): the envelope EventBridge adds (``id``, ``source``,
``detail-type``, ``account``, ``region``, ``time``) and a ``detail`` mirroring
DescribeModelPackage. Not every event carries every field: the documented example has ISO
timestamps and ``LastModifiedTime``, events captured from the service carry ``CreationTime`` as
epoch milliseconds (an integer or a float) and no ``LastModifiedTime``. So only what the trigger
cannot work without is required (group, version, ARN, status); the time of the change is
``LastModifiedTime``, else the envelope's ``time``.

Everything here ends up in logs and in the deploy run's parameters, so identifiers are ASCII
only, and the ARN must belong to the event: its partition, region, account, group and version
are the event's.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Collection
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from bridge.errors import UserError, cut, first_error, shown

DETAIL_TYPE = "SageMaker Model Package State Change"
# EventBridge refuses events over 256 KB; anything larger did not come from it.
MAX_EVENT_BYTES = 256 * 1024
# botocore's SageMaker model: ModelPackageGroupName / EntityName pattern, ASCII only.
GROUP_NAME = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$"
MODEL_PACKAGE_ARN = re.compile(
    r"arn:(?P<partition>aws[a-z-]*):sagemaker:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):"
    r"model-package/(?P<group>[A-Za-z0-9-]+)/(?P<version>[0-9]+)",
    re.ASCII,
)
# An EventBridge event id is a UUID; events put by other producers may use any printable id.
# Never whitespace, brackets, `$` or quotes: it is logged and passed to the deploy run.
EVENT_ID = r"^[A-Za-z0-9][A-Za-z0-9._:/#@+=-]{0,127}$"
ACCOUNT_ID = r"^[0-9]{12}$"
REGION = r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$"
# Model packages did not exist before 2017; anything outside these years is not a real change.
EARLIEST, LATEST = datetime(2010, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)
EARLIEST_MS, LATEST_MS = int(EARLIEST.timestamp()) * 1000, int(LATEST.timestamp()) * 1000


class InvalidEvent(UserError):
    """The input is not a model package state change event we can act on."""


def _timestamp(value: Any) -> datetime:
    """An ISO 8601 string with a time zone, or epoch milliseconds (int or float), as SageMaker
    sends them; anything else (naive, out of range, NaN, a bool) is refused."""
    if isinstance(value, bool):
        raise ValueError("is a boolean, expected a timestamp")
    if isinstance(value, (int, float)):
        # compared as given: an integer may be too large for a float
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("is not a finite number")
        if not EARLIEST_MS <= value < LATEST_MS:
            raise ValueError(
                f"{shown(value)} epoch milliseconds is outside {EARLIEST.year}-{LATEST.year - 1}"
            )
        return datetime.fromtimestamp(value / 1000.0, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("is not an ISO 8601 timestamp") from None
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            raise ValueError("has no time zone (expected e.g. 2026-11-20T09:15:41Z)")
        if not EARLIEST <= parsed < LATEST:
            raise ValueError(f"is outside {EARLIEST.year}-{LATEST.year - 1}")
        return parsed.astimezone(UTC)
    raise ValueError("expected an ISO 8601 string or epoch milliseconds")


Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]
Identifier = Annotated[str, Field(pattern=EVENT_ID)]


class ModelPackageDetail(BaseModel):
    """The fields of ``detail`` the trigger uses (it mirrors DescribeModelPackage)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model_package_group_name: str = Field(alias="ModelPackageGroupName", pattern=GROUP_NAME)
    model_package_version: int = Field(alias="ModelPackageVersion", ge=1, strict=True)
    model_package_arn: str = Field(alias="ModelPackageArn", max_length=2048)
    model_approval_status: Literal["Approved", "Rejected", "PendingManualApproval"] = Field(
        alias="ModelApprovalStatus"
    )
    last_modified_time: Timestamp | None = Field(None, alias="LastModifiedTime")
    creation_time: Timestamp | None = Field(None, alias="CreationTime")
    approval_description: str = Field("", alias="ApprovalDescription", max_length=1024)


class ModelPackageStateChange(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    id: Identifier
    source: Literal["aws.sagemaker"]
    detail_type: Literal["SageMaker Model Package State Change"] = Field(alias="detail-type")
    # EventBridge always sets these; moto's put_events leaves ``account`` out.
    account: str | None = Field(None, pattern=ACCOUNT_ID)
    region: str | None = Field(None, pattern=REGION)
    time: Timestamp | None = None
    detail: ModelPackageDetail

    @property
    def approved(self) -> bool:
        return self.detail.model_approval_status == "Approved"

    @property
    def changed_at(self) -> datetime:
        """When the package changed: ``LastModifiedTime``, else the event's ``time``."""
        when = self.detail.last_modified_time or self.time
        assert when is not None  # parse_event refuses events with neither
        return when


@lru_cache(maxsize=64)
def partition_of(region: str) -> str | None:
    """The AWS partition of ``region`` from botocore's endpoint data (``None``: unknown)."""
    import botocore.session

    try:
        return str(botocore.session.get_session().get_partition_for_region(region))
    except Exception:  # botocore's UnknownRegionError, or data without the region
        return None


def _check_arn(change: ModelPackageStateChange, registry_accounts: Collection[str]) -> None:
    detail = change.detail
    match = MODEL_PACKAGE_ARN.fullmatch(detail.model_package_arn)
    if match is None:
        raise InvalidEvent(
            "event field detail.ModelPackageArn: not a model package version ARN "
            "(arn:<partition>:sagemaker:<region>:<account>:model-package/<group>/<version>)"
        )
    arn = match.groupdict()
    expected = {
        "group": detail.model_package_group_name,
        "version": str(detail.model_package_version),
        "region": change.region,
        "account": change.account,
    }
    for part, value in expected.items():
        if value is not None and arn[part] != value:
            raise InvalidEvent(
                f"event field detail.ModelPackageArn: its {part} {shown(arn[part])} is not the "
                f"event's {shown(value)}"
            )
    partition = partition_of(arn["region"])
    if partition is None:
        raise InvalidEvent(
            f"event field detail.ModelPackageArn: region {shown(arn['region'])} is in no known "
            "AWS partition"
        )
    if arn["partition"] != partition:
        raise InvalidEvent(
            f"event field detail.ModelPackageArn: partition {shown(arn['partition'])} is not "
            f"{cut(arn['region'])}'s ({partition!r})"
        )
    if registry_accounts and arn["account"] not in registry_accounts:
        raise InvalidEvent(
            f"event field detail.ModelPackageArn: account {arn['account']} is not a "
            "configured registry account (SMBRIDGE_REGISTRY_ACCOUNTS)"
        )


def _load(raw: bytes) -> Any:
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event is {len(raw)} bytes, over EventBridge's 256 KB limit")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant, parse_int=_int)
    except UnicodeDecodeError:
        raise InvalidEvent("event is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"event is not JSON ({exc.msg})") from None
    except RecursionError:
        raise InvalidEvent("event is nested too deeply to be an EventBridge event") from None


def _refuse_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def _int(text: str) -> int:
    """A JSON integer; one of more digits than Python converts is refused (``int()`` would
    raise a ValueError that is not a JSONDecodeError)."""
    digits = len(text.lstrip("-"))
    if digits > sys.get_int_max_str_digits() > 0:
        raise InvalidEvent(_too_many_digits(digits))
    return int(text)


def _too_many_digits(digits: int) -> str:
    return (
        f"event holds a number of {digits} digits, more than the "
        f"{sys.get_int_max_str_digits()} Python reads"
    )


def _longest_integer(event: Any) -> int:
    """The number of digits of the longest integer in ``event`` (0: none)."""
    longest, stack, seen = 0, [event], set()
    while stack:
        item = stack.pop()
        if isinstance(item, dict | list | tuple):
            if id(item) in seen:  # a circular reference
                continue
            seen.add(id(item))
            stack.extend(item.values() if isinstance(item, dict) else item)
        elif isinstance(item, int) and not isinstance(item, bool) and item:
            digits = int(math.log10(abs(item))) + 1
            digits += (abs(item) >= 10**digits) - (abs(item) < 10 ** (digits - 1))
            longest = max(longest, digits)
    return longest


def _size(event: dict[str, Any]) -> int:
    try:
        return len(json.dumps(event, default=str).encode())
    except RecursionError:
        raise InvalidEvent("event is nested too deeply to be an EventBridge event") from None
    except ValueError:  # an integer of too many digits to write, or a circular reference
        digits = _longest_integer(event)
        if digits > sys.get_int_max_str_digits():
            raise InvalidEvent(_too_many_digits(digits)) from None
        raise InvalidEvent("event is nested too deeply to be an EventBridge event") from None


def parse_event(event: Any, *, registry_accounts: Collection[str] = ()) -> ModelPackageStateChange:
    """Validate an EventBridge event; raise :class:`InvalidEvent` with a one-line reason.

    ``registry_accounts``: when given, the model package must live in one of these accounts.
    """
    if isinstance(event, str):
        try:
            event = event.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidEvent("event is not UTF-8 text") from None
    if isinstance(event, bytes):
        event = _load(event)
    if not isinstance(event, dict):
        raise InvalidEvent("event is not a JSON object")
    size = _size(event)
    if size > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event is {size} bytes, over EventBridge's 256 KB limit")
    if event.get("source") != "aws.sagemaker":
        raise InvalidEvent(
            f"event source is {_shown(event.get('source'))}, expected 'aws.sagemaker'"
        )
    if event.get("detail-type") != DETAIL_TYPE:
        raise InvalidEvent(
            f"detail-type is {_shown(event.get('detail-type'))}, expected {DETAIL_TYPE!r}"
        )
    try:
        change = ModelPackageStateChange.model_validate(event)
    except ValidationError as exc:
        where, message = first_error(exc)
        raise InvalidEvent(f"event field {where}: {message}") from None
    if change.detail.last_modified_time is None and change.time is None:
        raise InvalidEvent(
            "event field detail.LastModifiedTime: missing, and the event has no time either"
        )
    _check_arn(change, registry_accounts)
    return change


def _shown(value: Any) -> str:
    """A value from the event in an error message: bounded, one line, quoted."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
