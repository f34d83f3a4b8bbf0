"""The sandbox fixtures work together: the trigger's Azure DevOps client reaches the stand-in
over HTTP, and botocore reaches moto's server, with nothing but the environment changed."""

from __future__ import annotations

import boto3
import pytest

from bridge.azure_devops.client import AzureDevOpsClient
from bridge.azure_devops.credentials import PatCredential
from tests.support.sandbox import ADO_PAT, ado_server, ado_stand_in, aws_sandbox  # noqa: F401

pytestmark = pytest.mark.slow


def test_a_run_started_against_the_stand_in_and_a_bucket_in_moto(aws_sandbox, ado_server):  # noqa: F811
    client = AzureDevOpsClient(
        ado_server.organization_url("contoso"), PatCredential(ADO_PAT, source="test")
    )
    run = client.run_pipeline(
        "mlops",
        12,
        template_parameters={
            "modelPackageArn": "arn:aws:sagemaker:eu-west-1:123456789012:model-package/g/1",
            "modelPackageGroupName": "g",
            "modelPackageVersion": "1",
            "sourceEventId": "e-1",
        },
    )
    assert run.id == ado_server.stand_in.runs[-1]["id"]
    s3 = boto3.client("s3")  # no endpoint given: AWS_ENDPOINT_URL sends it to moto
    s3.create_bucket(
        Bucket="fixture-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["fixture-bucket"]
