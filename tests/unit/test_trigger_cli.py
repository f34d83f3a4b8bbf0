"""smbridge trigger simulate / replay / package."""

from __future__ import annotations

import compileall
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import pytest
import responses
from moto import mock_aws

from bridge.cli.app import main
from bridge.sandbox.ado_contract import REFERENCE_DIR
from tests.support.fake_ado import FakeAzureDevOps, Fault

EVENT_FILE = REFERENCE_DIR / "sagemaker-events" / "model-package-approved.json"
ROUTES = {
    "routes": {"churn-xgb": {"organization": "contoso", "project": "mlops", "pipelineId": 12}}
}
PAT = "LOCAL-PAT-SENTINEL-42"


@pytest.fixture(autouse=True)
def outside_the_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run where no bridge.yaml is (the repository's assumes a role in another account)."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def routes_file(tmp_path: Path) -> Path:
    path = tmp_path / "routes.json"
    path.write_text(json.dumps(ROUTES))
    return path


@pytest.fixture
def fake_ado():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeAzureDevOps(pat=PAT).install(mock)


def test_simulate_dry_run_sends_nothing(routes_file, fake_ado, capsys):
    argv = ["trigger", "simulate", "--event", str(EVENT_FILE), "--routes", str(routes_file)]
    assert main([*argv, "--dry-run", "--output", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert fake_ado.requests == []
    assert plan["dry_run"] is True and plan["title"].startswith("start: route ")
    (step,) = plan["steps"]
    assert step["service"] == "azure-devops"
    assert step["operation"] == (
        "POST https://dev.azure.com/contoso/mlops/_apis/pipelines/12/runs?api-version=7.1"
    )
    assert step["arguments"]["templateParameters"]["modelPackageVersion"] == "4"


def test_simulate_sends_exactly_what_the_dry_run_showed(routes_file, fake_ado, capsys, monkeypatch):
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", PAT)
    argv = ["trigger", "simulate", "--event", str(EVENT_FILE), "--routes", str(routes_file)]
    assert main([*argv, "--dry-run", "--output", "json"]) == 0
    (step,) = json.loads(capsys.readouterr().out)["steps"]
    assert main([*argv, "--output", "json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["status"] == "started"
    (sent,) = report["requests"]
    assert sent["method"] == "POST"
    assert f"{sent['method']} {sent['url']}" == step["operation"]
    assert sent["body"] == step["arguments"]
    assert len(fake_ado.runs) == 1
    assert PAT not in captured.out + captured.err


def test_simulate_failure_prints_the_request_and_exits_3(
    routes_file, fake_ado, capsys, monkeypatch
):
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", PAT)
    fake_ado.faults.append(Fault("status", 403))
    argv = ["trigger", "simulate", "--event", str(EVENT_FILE), "--routes", str(routes_file)]
    assert main(argv) == 3
    captured = capsys.readouterr()
    assert "POST https://dev.azure.com/contoso/mlops/_apis/pipelines/12/runs" in captured.out
    assert "HTTP 403" in captured.err
    assert PAT not in captured.out + captured.err


def test_simulate_ignores_a_rejected_event(routes_file, tmp_path, capsys):
    event = json.loads(EVENT_FILE.read_text())
    event["detail"]["ModelApprovalStatus"] = "Rejected"
    file = tmp_path / "rejected.json"
    file.write_text(json.dumps(event))
    assert main(["trigger", "simulate", "--event", str(file), "--routes", str(routes_file),
                 "--dry-run"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "dry run: record: status Rejected: remembered in the ledger" in out


def test_simulate_bad_event_file(routes_file, tmp_path, capsys):
    file = tmp_path / "bad.json"
    file.write_text("{nope")
    assert main(["trigger", "simulate", "--event", str(file), "--routes", str(routes_file)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_replay_redrives_the_dlq_once(routes_file, capsys, monkeypatch):
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", PAT)
    event = json.loads(EVENT_FILE.read_text())
    # moto patches requests too: the Azure DevOps fake goes on top of it, not under it.
    with mock_aws(), responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake_ado = FakeAzureDevOps(pat=PAT).install(mock)
        sqs = boto3.client("sqs", region_name="eu-west-1")
        url = sqs.create_queue(QueueName="trigger-dlq")["QueueUrl"]
        dynamodb = boto3.client("dynamodb", region_name="eu-west-1")
        dynamodb.create_table(
            TableName="idem",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        monkeypatch.setenv("SMBRIDGE_IDEMPOTENCY_TABLE", "idem")
        # An EventBridge target DLQ message (the event) and a Lambda on-failure record of a
        # duplicate of the same approval: one run in all.
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))
        duplicate = {**event, "id": "another-delivery"}
        sqs.send_message(
            QueueUrl=url,
            MessageBody=json.dumps({"requestContext": {}, "requestPayload": duplicate}),
        )
        argv = ["trigger", "replay", "--queue-url", url, "--routes", str(routes_file),
                "--region", "eu-west-1"]  # fmt: skip
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "2 handled and deleted, 0 kept on purpose" in out
        assert len(fake_ado.runs) == 1
        assert "Messages" not in sqs.receive_message(QueueUrl=url)
        assert main(argv) == 0  # an empty queue is fine
        assert "replayed 0 message(s)" in capsys.readouterr().out


def test_replay_handles_every_message_and_keeps_what_it_cannot_finish(
    routes_file, capsys, monkeypatch
):
    """One message it cannot finish must not stop the others: an approval another invocation is
    starting right now (powertools' in-progress record) and an invalid event stay in the queue,
    a group without a route is kept (not deleted: a route may be added), the rest is handled."""
    monkeypatch.setenv("SMBRIDGE_ADO_PAT", PAT)
    event = json.loads(EVENT_FILE.read_text())
    with mock_aws(), responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake_ado = FakeAzureDevOps(pat=PAT).install(mock)
        sqs = boto3.client("sqs", region_name="eu-west-1")
        url = sqs.create_queue(QueueName="trigger-dlq", Attributes={"VisibilityTimeout": "0"})[
            "QueueUrl"
        ]
        dynamodb = boto3.client("dynamodb", region_name="eu-west-1")
        dynamodb.create_table(
            TableName="idem",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        monkeypatch.setenv("SMBRIDGE_IDEMPOTENCY_TABLE", "idem")
        busy = json.loads(json.dumps(event))
        busy["detail"]["ModelPackageVersion"] = 7
        busy["detail"]["ModelPackageArn"] = busy["detail"]["ModelPackageArn"][:-1] + "7"
        unrouted = json.loads(json.dumps(event))
        unrouted["detail"]["ModelPackageGroupName"] = "other-model"
        unrouted["detail"]["ModelPackageArn"] = unrouted["detail"]["ModelPackageArn"].replace(
            "churn-xgb", "other-model"
        )
        invalid = {**event, "detail": {**event["detail"], "ModelPackageArn": "arn:aws:s3:::x"}}
        for body in (busy, unrouted, invalid, event):
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))

        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyAlreadyInProgressError,
        )

        from bridge.trigger import handler

        real = handler.start_approval

        def another_invocation_is_on_it(change, *args, **kwargs):
            if change.detail.model_package_version == 7:
                raise IdempotencyAlreadyInProgressError("in progress")
            return real(change, *args, **kwargs)

        monkeypatch.setattr(handler, "start_approval", another_invocation_is_on_it)
        argv = ["trigger", "replay", "--queue-url", url, "--routes", str(routes_file),
                "--region", "eu-west-1", "--max-messages", "4"]  # fmt: skip
        assert main(argv) == 3  # one message failed
        out = capsys.readouterr().out
        assert "replayed 4 message(s): 1 handled and deleted, 2 kept on purpose" in out
        assert "1 failed and kept" in out
        assert "no route for its group: kept in the queue" in out
        assert "another invocation is starting this approval's run; left for later" in out
        assert len(fake_ado.runs) == 1
        left = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        assert left["Attributes"]["ApproximateNumberOfMessages"] == "3"


@pytest.mark.slow
def test_package_imports_in_a_clean_venv_without_the_sagemaker_sdk(tmp_path, capsys):
    out = tmp_path / "trigger.zip"
    assert main(["trigger", "package", "--mode", "environment", "--out", str(out),
                 "--output", "json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    size_mb = report["size_bytes"] / 1e6
    print(f"trigger zip: {size_mb:.2f} MB zipped, {report['unpacked_bytes'] / 1e6:.2f} MB unpacked")
    assert size_mb < 15  # far from Lambda's 50 MB zip limit
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "function")
    assert "bridge/trigger/handler.py" in names
    assert not any(name.startswith(("sagemaker", "boto3/", "botocore/")) for name in names)
    assert "bridge/pipeline/sdk.py" not in names
    # The Lambda runtime's own boto3: the same copier, from this environment.
    from bridge.trigger import package

    runtime = tmp_path / "runtime"
    for name in package.distribution_closure(("boto3",), frozenset()):
        package_dist = __import__("importlib.metadata").metadata.distribution(name)
        for file in package_dist.files or []:
            source = Path(package_dist.locate_file(file))
            if source.is_file() and "__pycache__" not in Path(str(file)).parts:
                target = runtime / Path(str(file))
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(source.read_bytes())
    compileall.compile_dir(runtime, quiet=1)  # as the Lambda runtime's own boto3 is
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    probe = (
        "import sys;"
        "import bridge.trigger.handler as h;"
        "assert callable(h.lambda_handler);"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('sagemaker', 'yaml', 'moto')];"
        "print(bad)"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        env={"PYTHONPATH": f"{tmp_path / 'function'}:{runtime}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert report["compiled"] is True  # bytecode inside: no compiling at a cold start


def test_trigger_variables_are_not_config_overrides():
    from bridge.settings.bridge_config import NOT_OVERRIDES
    from bridge.trigger.settings import TriggerSettings

    trigger_variables = {f"SMBRIDGE_{name.upper()}" for name in TriggerSettings.model_fields}
    assert trigger_variables <= NOT_OVERRIDES
