"""Model Registry commands as SDK functions: latest, describe, approve, reject."""

from __future__ import annotations

import os
from typing import Any, Literal

from bridge.aws import registry
from bridge.aws.errors import aws_call
from bridge.aws.session import AwsClients
from bridge.core.agent import on_agent
from bridge.core.output import Reporter
from bridge.errors import UserError


def parse_arn(arn: str, *, flag: str = "ARN") -> registry.ModelPackageArn:
    """The model package ARN's parts, checked offline; a malformed one is a
    :class:`~bridge.errors.UserError` naming ``flag``."""
    return registry.ModelPackageArn.parse(arn, flag=flag)


def latest(
    group: str,
    *,
    status: registry.ApprovalStatus | None = "Approved",
    clients: AwsClients,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """The newest version of ``group`` (by creation time) with ``status``."""
    reporter = reporter or Reporter()
    package = registry.latest_model_package(clients.client("sagemaker"), group, status=status)
    if package is None:
        raise UserError(f"model package group {group} has no {status or 'any'} version")
    reporter.info(f"{package.arn} ({package.status}, created {package.created})")
    reporter.output_variable("modelPackageArn", package.arn)
    return package.summary()


def describe(arn: str, *, clients: AwsClients, reporter: Reporter | None = None) -> dict[str, Any]:
    reporter = reporter or Reporter()
    registry.ModelPackageArn.parse(arn)
    package = registry.describe_model_package(clients.client("sagemaker"), arn)
    for key, value in package.summary().items():
        reporter.info(f"{key}: {value}")
    return package.summary()


def _who(clients: AwsClients, approver: str | None) -> str:
    if approver:
        return approver
    if on_agent() and os.environ.get("BUILD_REQUESTEDFOR"):
        run = os.environ.get("BUILD_BUILDID", "?")
        return f"{os.environ['BUILD_REQUESTEDFOR']} (Azure DevOps run {run})"
    identity = aws_call("GetCallerIdentity", clients.client("sts").get_caller_identity)
    return identity["Arn"]


def set_status(
    arn: str,
    status: Literal["Approved", "Rejected"],
    *,
    comment: str,
    approver: str | None = None,
    clients: AwsClients | None = None,
    reporter: Reporter | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Approve or reject, recording who and why in the package's approval description."""
    reporter = reporter or Reporter()
    registry.ModelPackageArn.parse(arn)
    if not comment.strip():
        raise UserError("--comment is required: say why (it is recorded with the decision)")
    if dry_run:
        from bridge.core.plan import Plan, PlannedStep

        update = {
            "ModelPackageArn": arn,
            "ModelApprovalStatus": status,
            "ApprovalDescription": f"{status} by <you>: {comment.strip()}",
        }
        step = PlannedStep("sagemaker", "UpdateModelPackage", update)
        plan = Plan(f"AWS calls registry {status.lower()[:-1]} would make", [step])
        return {"arn": arn, "status": "planned", "planned_calls": plan.calls(), "plan": plan}
    if clients is None:
        raise UserError("set_status needs AWS clients (or dry_run=True)")
    who = _who(clients, approver)
    description = f"{status} by {who}: {comment.strip()}"
    sagemaker = clients.client("sagemaker")
    registry.set_approval(sagemaker, arn, status, description)
    package = registry.describe_model_package(sagemaker, arn)
    reporter.info(f"{arn}: {package.status} ({package.approval_description})")
    return package.summary()


# The names the SDK exports (``from bridge import latest_model_package``).
latest_model_package = latest
describe_model_package = describe
set_model_package_status = set_status
