"""The model-build job end to end against moto: build model-build/ with the SageMaker SDK
(offline), upsert (code to S3 first, then CreatePipeline), upsert again (unchanged, no write),
start --wait. moto runs executions to Succeeded at once and lacks ListPipelineExecutionSteps,
which is answered with an empty list here."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from bridge.cli.app import main

REPO_ROOT = Path(__file__).resolve().parents[2]
WRITES = {"CreatePipeline", "UpdatePipeline", "AddTags", "PutObject", "CreateMultipartUpload"}

pytestmark = pytest.mark.slow


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch):
    from moto.sagemaker.responses import SageMakerResponse

    monkeypatch.setattr(
        SageMakerResponse,
        "list_pipeline_execution_steps",
        lambda self: json.dumps({"PipelineExecutionSteps": []}),
        raising=False,
    )
    monkeypatch.chdir(REPO_ROOT)
    calls: list[str] = []
    original = boto3.session.Session.client

    def recording_client(self, *args, **kwargs):
        client = original(self, *args, **kwargs)
        client.meta.events.register("before-call.*.*", lambda model, **_: calls.append(model.name))
        return client

    monkeypatch.setattr(boto3.session.Session, "client", recording_client)
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(
            Bucket="smbridge-artifacts-111111111111-eu-west-1",
            CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
        )
        yield s3, calls


def test_upsert_uploads_code_then_is_unchanged_then_runs(sandbox, capsys, tmp_path):
    s3, calls = sandbox
    out = tmp_path / "pipeline-definition.json"
    calls.clear()  # the fixture's CreateBucket
    assert main(["pipeline", "build", "--out", str(out)]) == 0
    built = capsys.readouterr().out
    assert calls == [], "build is offline"
    assert "uploaded by upsert, not by build" in built
    assert "staged" not in built  # reads like an upload that did not happen
    assert main(["pipeline", "upsert", "--output", "json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["action"] == "created"
    assert created["uploaded"], "the code bundles must be uploaded before the pipeline write"
    listing = s3.list_objects_v2(Bucket="smbridge-artifacts-111111111111-eu-west-1")
    keys = {obj["Key"] for obj in listing["Contents"]}
    for uri in created["uploaded"]:
        assert uri.split("/", 3)[3] in keys
    assert calls.index("CreatePipeline") > max(
        i for i, name in enumerate(calls) if name in ("PutObject", "CreateMultipartUpload")
    )

    calls.clear()
    assert main(["pipeline", "upsert", "--output", "json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["action"] == "unchanged"
    assert again["spec_sha256"] == created["spec_sha256"]
    assert not WRITES & set(calls), calls

    assert main(["pipeline", "start", "--wait", "--output", "json"]) == 0
    execution = json.loads(capsys.readouterr().out)
    assert execution["status"] == "Succeeded"
