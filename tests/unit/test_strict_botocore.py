"""The checker that holds every AWS request of the tests to botocore's model (patterns, lengths,
enums, ranges), where botocore itself checks only types and required members."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from tests.support.strict_botocore import ModelViolation, validate_request


def test_sagemaker_tag_values_outside_the_pattern_are_refused():
    # botocore's SageMaker model: TagValue pattern ([\p{L}\p{Z}\p{N}_.:/=+\-@]*), max 256
    good = {
        "ResourceArn": "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/p",
        "Tags": [{"Key": "k", "Value": "repo 1"}],
    }
    validate_request("sagemaker", "AddTags", good)
    for value in ("repo (1)", "a&b", "#7", "a,b", "x" * 257):
        bad = {**good, "Tags": [{"Key": "k", "Value": value}]}
        with pytest.raises(ModelViolation, match=r"Tags\[0\]\.Value"):
            validate_request("sagemaker", "AddTags", bad)


def test_cloudformation_tag_value_may_not_be_empty():
    # botocore's CloudFormation model: TagValue min 1, max 256
    params = {"StackName": "s", "ChangeSetName": "c", "Tags": [{"Key": "k", "Value": ""}]}
    with pytest.raises(ModelViolation, match="at least 1"):
        validate_request("cloudformation", "CreateChangeSet", params)


def test_client_request_token_length():
    # botocore's SageMaker model: IdempotencyToken, 32 to 128 characters
    params = {"PipelineName": "p", "ClientRequestToken": "short"}
    with pytest.raises(ModelViolation, match="ClientRequestToken"):
        validate_request("sagemaker", "StartPipelineExecution", params)


def test_the_conftest_hook_checks_real_client_calls():
    client = boto3.client("sagemaker", region_name="eu-west-1")
    with Stubber(client) as stubber:
        stubber.add_response("add_tags", {"Tags": []})
        with pytest.raises(ModelViolation):
            client.add_tags(
                ResourceArn="arn:aws:sagemaker:eu-west-1:123456789012:pipeline/p",
                Tags=[{"Key": "AzureDevOps:Pipeline", "Value": "repo (1)"}],
            )
