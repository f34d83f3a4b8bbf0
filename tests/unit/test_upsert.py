"""upsert against moto: create, unchanged (no write call), update, invalid, >1 MB via S3."""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from bridge.core.agent import AgentRun
from bridge.core.output import Reporter
from bridge.errors import DefinitionError
from bridge.pipeline.operations import UpsertParams, upsert_pipeline
from tests.support.fakes import StaticClients

ROLE = "arn:aws:iam::123456789012:role/exec"
WRITES = {"CreatePipeline", "UpdatePipeline", "AddTags", "PutObject", "DeletePipeline"}


def definition(threshold: float = 0.9, padding: str = "") -> dict:
    return {
        "Version": "2020-12-01",
        "Metadata": {"padding": padding} if padding else {},
        "Parameters": [{"Name": "AucThreshold", "Type": "Float", "DefaultValue": threshold}],
        "Steps": [
            {"Name": "Fail", "Type": "Fail", "Arguments": {"ErrorMessage": "AUC too low"}},
        ],
    }


@pytest.fixture
def aws():
    with mock_aws():
        sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(
            Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        calls: list[str] = []
        for client in (sagemaker, s3):
            client.meta.events.register(
                "before-call.*.*", lambda model, **_: calls.append(model.name)
            )
        yield StaticClients(sagemaker=sagemaker, s3=s3), calls


def params(tmp_path: Path, document: dict, **overrides) -> UpsertParams:
    file = tmp_path / "definition.json"
    file.write_text(json.dumps(document))
    fields = {
        "definition": str(file),
        "pipeline_name": "demo",
        "region": "eu-west-1",
        "execution_role_arn": ROLE,
        "bucket": "artifacts",
        "model_package_group": "demo-group",
        **overrides,
    }
    return UpsertParams(**fields)


def run(p: UpsertParams, clients, run_ctx: AgentRun | None = None):
    reporter = Reporter("text", out=io.StringIO(), err=io.StringIO())
    return upsert_pipeline(p, clients=clients, reporter=reporter, agent_run=run_ctx or AgentRun())


def test_create_then_unchanged_makes_no_write(aws, tmp_path):
    clients, calls = aws
    created = run(params(tmp_path, definition()), clients)
    assert created.action == "created"
    assert "CreatePipeline" in calls
    calls.clear()
    again = run(params(tmp_path, definition()), clients)
    assert again.action == "unchanged"
    assert again.pipeline_arn == created.pipeline_arn
    assert calls == ["DescribePipeline"]
    assert not WRITES & set(calls)


def test_reformatted_json_is_still_unchanged(aws, tmp_path):
    clients, calls = aws
    run(params(tmp_path, definition()), clients)
    file = tmp_path / "pretty.json"
    file.write_text(json.dumps(definition(), indent=4, sort_keys=False))
    calls.clear()
    assert run(params(tmp_path, definition(), definition=str(file)), clients).action == "unchanged"
    assert not WRITES & set(calls)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"document": definition(threshold=0.8)}, "definition"),
        ({"execution_role_arn": "arn:aws:iam::123456789012:role/other"}, "role"),
        ({"description": "new text"}, "description"),
        ({"parallelism": 3}, "parallelism"),
    ],
)
def test_each_compared_field_triggers_one_update(aws, tmp_path, change, field):
    clients, calls = aws
    run(params(tmp_path, definition()), clients)
    calls.clear()
    document = change.pop("document", definition())
    updated = run(params(tmp_path, document, **change), clients)
    assert updated.action == "updated"
    assert updated.changed == [field]
    assert calls.count("UpdatePipeline") == 1
    assert "CreatePipeline" not in calls
    described = clients.client("sagemaker").describe_pipeline(PipelineName="demo")
    if field == "definition":
        stored = json.loads(described["PipelineDefinition"])
        assert stored["Parameters"][0]["DefaultValue"] == 0.8


def test_agent_run_tags_are_attached(aws, tmp_path):
    clients, _ = aws
    agent = AgentRun(build_id="77", repository="model-build", commit="abc123", definition_name="mb")
    created = run(params(tmp_path, definition()), clients, agent)
    tags = clients.client("sagemaker").list_tags(ResourceArn=created.pipeline_arn)["Tags"]
    tag_map = {t["Key"]: t["Value"] for t in tags}
    assert tag_map["azdo:build-id"] == "77"
    assert tag_map["azdo:repository"] == "model-build"
    assert tag_map["azdo:commit"] == "abc123"
    assert tag_map["smbridge:spec-sha256"] == created.spec_sha256


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"Version": "2020-12-01", "Steps": []}', "non-empty list"),
        ('{"Steps": [{"Name": "A"}, {"Name": "A"}]}', "duplicate step names: A"),
        ('{"Steps": [{"Name": "A"}], "Parameters": [{"Name": "P", "Type": "Str"}]}', "type 'Str'"),
    ],
)
def test_invalid_definition_is_refused_before_any_call(aws, tmp_path, text, message):
    clients, calls = aws
    file = tmp_path / "bad.json"
    file.write_text(text)
    with pytest.raises(DefinitionError, match=message) as info:
        run(params(tmp_path, {}, definition=str(file)), clients)
    assert info.value.exit_code == 2
    assert calls == []


def test_definition_the_service_rejects_is_a_definition_error(tmp_path):
    """moto accepts any definition; SageMaker validates it (Stubber gives its answer)."""
    sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
    with Stubber(sagemaker) as stub:
        stub.add_client_error("describe_pipeline", "ResourceNotFound", "Pipeline does not exist")
        stub.add_client_error(
            "create_pipeline",
            "ValidationException",
            "Invalid pipeline definition: Step 'Fail' references unknown property",
        )
        with pytest.raises(DefinitionError, match=r"rejected the definition.*unknown property"):
            run(params(tmp_path, definition()), StaticClients(sagemaker=sagemaker))


def test_missing_definition_file(aws, tmp_path):
    clients, _ = aws
    with pytest.raises(DefinitionError, match="not found"):
        run(params(tmp_path, {}, definition=str(tmp_path / "nope.json")), clients)


def test_bad_target_syntax(aws, tmp_path):
    clients, _ = aws
    with pytest.raises(DefinitionError, match="module:function"):
        run(params(tmp_path, {}, definition="model-build/pipeline.py"), clients)


def test_large_definition_goes_through_s3(aws, tmp_path):
    clients, _ = aws
    big = definition(padding="x" * 1_100_000)
    created = run(params(tmp_path, big), clients)
    assert created.action == "created"
    keys = clients.client("s3").list_objects_v2(Bucket="artifacts")["Contents"]
    (key,) = [k["Key"] for k in keys]
    assert key.startswith("demo/definitions/") and key.endswith(".json")
    # (moto then describes such a pipeline with the definition as a Python repr, not JSON, so the
    # "unchanged" check for large definitions is not repeated here; it is size-independent.)


def test_large_definition_request_uses_s3_location(tmp_path):
    """moto does not show the request; a Stubber asserts CreatePipeline's arguments."""
    sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
    big = definition(padding="x" * 1_100_000)
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(
            Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        with Stubber(sagemaker) as stub:
            stub.add_client_error("describe_pipeline", "ResourceNotFound", "does not exist")
            from botocore.stub import ANY

            stub.add_response(
                "create_pipeline",
                {"PipelineArn": "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/demo"},
                {
                    "PipelineName": "demo",
                    "RoleArn": ROLE,
                    "PipelineDescription": "",
                    "PipelineDefinitionS3Location": {"Bucket": "artifacts", "ObjectKey": ANY},
                    "ClientRequestToken": ANY,
                    "Tags": ANY,
                },
            )
            result = run(params(tmp_path, big), StaticClients(sagemaker=sagemaker, s3=s3))
            stub.assert_no_pending_responses()
    assert result.action == "created"
