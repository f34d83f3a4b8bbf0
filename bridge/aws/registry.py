"""SageMaker Model Registry with boto3: describe, newest by creation time, approve/reject.

The seed projects pick the OLDEST approved version by mistake: ``ListModelPackages`` sorts
ascending by default. Here the newest is asked for explicitly (``SortOrder=Descending``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import ClientError

from bridge.aws.errors import aws_call, describe, error_code
from bridge.errors import ServiceError, UserError

ARN_PATTERN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):sagemaker:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"model-package/(?P<group>[A-Za-z0-9][A-Za-z0-9-]{0,62})/(?P<version>\d+)$",
    re.ASCII,  # `\d` would match other scripts' digits
)
# ListModelPackages with a filter may answer an empty page that still carries a NextToken;
# a group with this many empty pages in a row is not something to wait on.
MAX_PAGES = 100
ApprovalStatus = Literal["Approved", "Rejected", "PendingManualApproval"]


@dataclass(frozen=True)
class ModelPackageArn:
    arn: str
    partition: str
    region: str
    account: str
    group: str
    version: int

    @classmethod
    def parse(cls, arn: str, *, flag: str = "--model-package-arn") -> ModelPackageArn:
        match = ARN_PATTERN.match(arn.strip())
        if not match:
            raise UserError(
                f"{flag} {arn!r}: expected "
                "arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>"
            )
        return cls(
            arn=arn.strip(),
            partition=match["partition"],
            region=match["region"],
            account=match["account"],
            group=match["group"],
            version=int(match["version"]),
        )


@dataclass(frozen=True)
class ModelPackage:
    arn: str
    group: str
    version: int
    status: str
    created: datetime | None
    approval_description: str = ""
    image: str = ""
    model_data_url: str = ""

    @property
    def approved(self) -> bool:
        return self.status == "Approved"

    def summary(self) -> dict[str, Any]:
        return {
            "arn": self.arn,
            "group": self.group,
            "version": self.version,
            "status": self.status,
            "created": self.created.isoformat() if self.created else None,
            "approval_description": self.approval_description,
            "image": self.image,
            "model_data_url": self.model_data_url,
        }


def _package(response: dict[str, Any]) -> ModelPackage:
    containers = response.get("InferenceSpecification", {}).get("Containers", [{}])
    first = containers[0] if containers else {}
    return ModelPackage(
        arn=response["ModelPackageArn"],
        group=response.get("ModelPackageGroupName", ""),
        version=int(response.get("ModelPackageVersion", 0)),
        status=response.get("ModelApprovalStatus", "Unknown"),
        created=response.get("CreationTime"),
        approval_description=response.get("ApprovalDescription", ""),
        image=first.get("Image", ""),
        model_data_url=first.get("ModelDataUrl", ""),
    )


def describe_model_package(sagemaker: Any, arn: str) -> ModelPackage:
    try:
        return _package(sagemaker.describe_model_package(ModelPackageName=arn))
    except ClientError as exc:
        if error_code(exc) in ("ValidationException", "ResourceNotFound") and (
            "not exist" in describe(exc).lower() or "not found" in describe(exc).lower()
        ):
            raise UserError(
                f"model package {arn} does not exist (or is not shared with you)"
            ) from None
        raise ServiceError(f"DescribeModelPackage {arn} failed: {describe(exc)}") from exc


def latest_model_package(
    sagemaker: Any, group: str, *, status: ApprovalStatus | None = "Approved"
) -> ModelPackage | None:
    """The NEWEST version of ``group`` (by creation time) with ``status`` (any when None)."""
    kwargs: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "ModelPackageType": "Versioned",
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
        "MaxResults": 1,
    }
    if status:
        kwargs["ModelApprovalStatus"] = status
    for _ in range(MAX_PAGES):
        response = aws_call(f"ListModelPackages {group}", sagemaker.list_model_packages, **kwargs)
        summaries = response.get("ModelPackageSummaryList", [])
        if summaries:
            return describe_model_package(sagemaker, summaries[0]["ModelPackageArn"])
        token = response.get("NextToken")
        if not token:
            return None
        kwargs["NextToken"] = token  # an empty page that is not the last one
    raise ServiceError(
        f"ListModelPackages {group}: {MAX_PAGES} pages without a model package; try again"
    )


def set_approval(sagemaker: Any, arn: str, status: ApprovalStatus, description: str) -> None:
    aws_call(
        f"UpdateModelPackage {arn}",
        sagemaker.update_model_package,
        ModelPackageArn=arn,
        ModelApprovalStatus=status,
        ApprovalDescription=description[:1024],
    )
