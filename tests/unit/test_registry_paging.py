"""ListModelPackages as SageMaker pages it.

SageMaker API reference, ListModelPackages: results are paged with ``NextToken``; with filters
(``ModelApprovalStatus``) a page may hold fewer than ``MaxResults`` summaries — none at all —
and still carry a ``NextToken``. moto never answers so, so botocore's Stubber plays the service
(it validates each request and response against botocore's SageMaker model).
"""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber

from bridge.aws import registry
from bridge.aws.registry import ModelPackageArn, latest_model_package
from bridge.errors import ServiceError, UserError

GROUP = "churn-xgb"
ARN = f"arn:aws:sagemaker:eu-west-1:123456789012:model-package/{GROUP}/7"
QUERY = {
    "ModelPackageGroupName": GROUP,
    "ModelPackageType": "Versioned",
    "SortBy": "CreationTime",
    "SortOrder": "Descending",
    "MaxResults": 1,
    "ModelApprovalStatus": "Approved",
}
SUMMARY = {
    "ModelPackageName": GROUP,
    "ModelPackageGroupName": GROUP,
    "ModelPackageVersion": 7,
    "ModelPackageArn": ARN,
    "CreationTime": datetime(2026, 11, 20, tzinfo=UTC),
    "ModelPackageStatus": "Completed",
    "ModelApprovalStatus": "Approved",
}
DESCRIBED = {
    "ModelPackageName": GROUP,
    "ModelPackageGroupName": GROUP,
    "ModelPackageVersion": 7,
    "ModelPackageArn": ARN,
    "CreationTime": datetime(2026, 11, 20, tzinfo=UTC),
    "ModelPackageStatus": "Completed",
    "ModelPackageStatusDetails": {"ValidationStatuses": []},
    "ModelApprovalStatus": "Approved",
}


@pytest.fixture
def sagemaker():
    client = boto3.client(
        "sagemaker",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_empty_pages_with_a_next_token_are_followed(sagemaker):
    client, stubber = sagemaker
    stubber.add_response(
        "list_model_packages", {"ModelPackageSummaryList": [], "NextToken": "a"}, QUERY
    )
    stubber.add_response(
        "list_model_packages",
        {"ModelPackageSummaryList": [], "NextToken": "b"},
        {**QUERY, "NextToken": "a"},
    )
    stubber.add_response(
        "list_model_packages", {"ModelPackageSummaryList": [SUMMARY]}, {**QUERY, "NextToken": "b"}
    )
    stubber.add_response("describe_model_package", DESCRIBED, {"ModelPackageName": ARN})
    package = latest_model_package(client, GROUP)
    assert package is not None and package.arn == ARN and package.version == 7


def test_an_empty_last_page_means_none(sagemaker):
    client, stubber = sagemaker
    stubber.add_response(
        "list_model_packages", {"ModelPackageSummaryList": [], "NextToken": "a"}, QUERY
    )
    stubber.add_response(
        "list_model_packages", {"ModelPackageSummaryList": []}, {**QUERY, "NextToken": "a"}
    )
    assert latest_model_package(client, GROUP) is None


def test_endless_empty_pages_are_bounded(sagemaker, monkeypatch):
    client, stubber = sagemaker
    monkeypatch.setattr(registry, "MAX_PAGES", 3)
    stubber.add_response(
        "list_model_packages", {"ModelPackageSummaryList": [], "NextToken": "t"}, QUERY
    )
    for _ in range(2):
        stubber.add_response(
            "list_model_packages",
            {"ModelPackageSummaryList": [], "NextToken": "t"},
            {**QUERY, "NextToken": "t"},
        )
    with pytest.raises(ServiceError, match="3 pages without a model package"):
        latest_model_package(client, GROUP)


def test_arn_digits_are_ascii_only():
    with pytest.raises(UserError):
        ModelPackageArn.parse(ARN.replace("123456789012", "\u0661" * 12))
    with pytest.raises(UserError):
        ModelPackageArn.parse(ARN[:-1] + "\u0667")
