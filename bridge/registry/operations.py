"""Model Registry commands as SDK functions: latest, describe, approve, reject.

Each command is a frozen parameters model, a pure ``plan_*`` (the calls it would make; no call,
no credential) and the function that runs it and returns a :class:`PackageResult`. Example::

    from bridge import AwsAuth, AwsClients, LatestPackageParams, latest_model_package
    clients = AwsClients(AwsAuth(region="eu-west-1"))
    package = latest_model_package(LatestPackageParams(group="churn"), clients=clients)
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.aws import registry
from bridge.aws.errors import aws_call
from bridge.aws.session import AwsClients
from bridge.core.agent import on_agent
from bridge.core.output import Reporter
from bridge.core.plan import Plan, PlannedStep
from bridge.errors import UserError

ApprovalStatus = Literal["Approved", "Rejected", "PendingManualApproval"]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LatestPackageParams(_Params):
    """The newest version of a group with a given approval status."""

    group: str = Field(min_length=1, description="the model package group")
    status: ApprovalStatus | None = Field(
        "Approved", description="only versions with this approval status (None: any)"
    )


class DescribePackageParams(_Params):
    """One model package version."""

    arn: str = Field(description="the model package (version) ARN")

    @field_validator("arn")
    @classmethod
    def _arn(cls, value: str) -> str:
        return registry.ModelPackageArn.parse(value, flag="ARN").arn


class SetStatusParams(DescribePackageParams):
    """Approve or reject one version, saying who and why."""

    status: Literal["Approved", "Rejected"] = Field(description="the new approval status")
    comment: str = Field(description="why (recorded in the package's approval description)")
    approver: str | None = Field(
        None, description="who (default: the Azure DevOps requester, else the AWS identity)"
    )

    @field_validator("comment")
    @classmethod
    def _comment(cls, value: str) -> str:
        if not value.strip():
            raise UserError("--comment is required: say why (it is recorded with the decision)")
        return value.strip()


class PackageResult(BaseModel):
    """A model package version as the registry describes it."""

    arn: str
    group: str
    version: int
    status: str
    created: str | None = None
    approval_description: str = ""
    image: str = ""
    model_data_url: str = ""


def parse_arn(arn: str, *, flag: str = "ARN") -> registry.ModelPackageArn:
    """The model package ARN's parts, checked offline; a malformed one is a
    :class:`~bridge.errors.UserError` naming ``flag``."""
    return registry.ModelPackageArn.parse(arn, flag=flag)


# -- plans (pure) -------------------------------------------------------------------------------


def plan_latest(params: LatestPackageParams) -> Plan:
    listing = {
        "ModelPackageGroupName": params.group,
        "ModelApprovalStatus": params.status,
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
        "MaxResults": 1,
    }
    return Plan(
        f"AWS calls registry latest would make for {params.group}",
        [
            PlannedStep("sagemaker", "ListModelPackages", listing),
            PlannedStep("sagemaker", "DescribeModelPackage", {}, "on the one found"),
        ],
    )


def plan_describe(params: DescribePackageParams) -> Plan:
    step = PlannedStep("sagemaker", "DescribeModelPackage", {"ModelPackageName": params.arn})
    return Plan("AWS calls registry describe would make", [step])


def plan_set_status(params: SetStatusParams) -> Plan:
    who = params.approver or "<you>"
    update = {
        "ModelPackageArn": params.arn,
        "ModelApprovalStatus": params.status,
        "ApprovalDescription": _description(params, who),
    }
    steps = [
        PlannedStep("sts", "GetCallerIdentity", {}, "no --approver and not on an agent"),
        PlannedStep("sagemaker", "UpdateModelPackage", update),
        PlannedStep("sagemaker", "DescribeModelPackage", {"ModelPackageName": params.arn}),
    ]
    verb = "approve" if params.status == "Approved" else "reject"
    return Plan(f"AWS calls registry {verb} would make", steps)


# -- runs ---------------------------------------------------------------------------------------


def latest(
    params: LatestPackageParams, *, clients: AwsClients, reporter: Reporter | None = None
) -> PackageResult:
    """The newest version of the group (by creation time) with the status."""
    reporter = reporter or Reporter.silent()
    package = registry.latest_model_package(
        clients.client("sagemaker"), params.group, status=params.status
    )
    if package is None:
        raise UserError(
            f"model package group {params.group} has no {params.status or 'any'} version"
        )
    reporter.info(f"{package.arn} ({package.status}, created {package.created})")
    reporter.output_variable("modelPackageArn", package.arn)
    return PackageResult(**package.summary())


def describe(
    params: DescribePackageParams, *, clients: AwsClients, reporter: Reporter | None = None
) -> PackageResult:
    """One model package version."""
    reporter = reporter or Reporter.silent()
    package = registry.describe_model_package(clients.client("sagemaker"), params.arn)
    for key, value in package.summary().items():
        reporter.info(f"{key}: {value}")
    return PackageResult(**package.summary())


def set_status(
    params: SetStatusParams, *, clients: AwsClients, reporter: Reporter | None = None
) -> PackageResult:
    """Approve or reject, recording who and why in the package's approval description."""
    reporter = reporter or Reporter.silent()
    description = _description(params, _who(clients, params.approver))
    sagemaker = clients.client("sagemaker")
    registry.set_approval(sagemaker, params.arn, params.status, description)
    package = registry.describe_model_package(sagemaker, params.arn)
    reporter.info(f"{params.arn}: {package.status} ({package.approval_description})")
    return PackageResult(**package.summary())


def _description(params: SetStatusParams, who: str) -> str:
    return f"{params.status} by {who}: {params.comment}"


def _who(clients: AwsClients, approver: str | None) -> str:
    if approver:
        return approver
    if on_agent() and os.environ.get("BUILD_REQUESTEDFOR"):
        run = os.environ.get("BUILD_BUILDID", "?")
        return f"{os.environ['BUILD_REQUESTEDFOR']} (Azure DevOps run {run})"
    identity = aws_call("GetCallerIdentity", clients.client("sts").get_caller_identity)
    return identity["Arn"]


# The names the SDK exports (``from bridge import latest_model_package``).
latest_model_package = latest
describe_model_package = describe
set_model_package_status = set_status
