"""The trigger handler: exactly one run per approval, through duplicates, faults and crashes.

DynamoDB (idempotency records and the ledger) is moto; the real aws-lambda-powertools
Idempotency utility runs on it. Azure DevOps is tests/support/fake_ado.py, every request checked
against the official OpenAPI specs.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from datetime import UTC, datetime, timedelta

import boto3
import pytest
import responses
from moto import mock_aws

from bridge.errors import BridgeError, CredentialsError
from bridge.sandbox.ado_contract import REFERENCE_DIR
from bridge.trigger.events import InvalidEvent
from bridge.trigger.handler import TriggerRuntime, build_runtime, handle
from bridge.trigger.local import LocalContext
from bridge.trigger.settings import TriggerSettings
from tests.support.fake_ado import FakeAzureDevOps, Fault

APPROVED = json.loads(
    (REFERENCE_DIR / "sagemaker-events" / "model-package-approved.json").read_text()
)
ROUTES = {
    "routes": {
        "churn-xgb": {"organization": "contoso", "project": "mlops", "pipelineId": 12},
    }
}
SECRET_PAT = "PAT-SENTINEL-7f3a9c"
TABLE = "smbridge-idempotency"


def event(
    status: str = "Approved",
    *,
    event_id: str | None = None,
    modified: datetime | None = None,
    group: str = "churn-xgb",
    version: int = 4,
) -> dict:
    data = copy.deepcopy(APPROVED)
    data["id"] = event_id or f"evt-{time.monotonic_ns()}"
    detail = data["detail"]
    detail["ModelApprovalStatus"] = status
    detail["ModelPackageGroupName"] = group
    detail["ModelPackageVersion"] = version
    detail["ModelPackageArn"] = (
        f"arn:aws:sagemaker:eu-west-1:111122223333:model-package/{group}/{version}"
    )
    if modified is not None:
        detail["LastModifiedTime"] = modified.isoformat().replace("+00:00", "Z")
    return data


class _CurrentStdout:
    """Writes wherever sys.stdout points now (pytest swaps it per test)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture(autouse=True)
def logs_to_captured_stdout():
    """powertools' Logger binds sys.stdout at import; follow pytest's capture instead."""
    from bridge.trigger.handler import logger

    handler = logger.registered_handler
    original = handler.stream
    handler.stream = _CurrentStdout()
    yield
    handler.stream = original


@pytest.fixture
def world(monkeypatch):
    monkeypatch.setenv("POWERTOOLS_IDEMPOTENCY_DISABLED", "false")
    with mock_aws(), responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        session = boto3.Session(region_name="eu-west-1")
        dynamodb = session.client("dynamodb")
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        secrets = session.client("secretsmanager")
        arn = secrets.create_secret(Name="ado-pat", SecretString=SECRET_PAT)["ARN"]
        ado = FakeAzureDevOps(pat=SECRET_PAT).install(mock)
        settings = TriggerSettings.from_environ(
            {
                "SMBRIDGE_ROUTES": json.dumps(ROUTES),
                "SMBRIDGE_ADO_SECRET_ARN": arn,
                "SMBRIDGE_IDEMPOTENCY_TABLE": TABLE,
            }
        )
        runtime = build_runtime(settings, session=session)
        sleeps: list[float] = []
        runtime.sleep = sleeps.append
        yield runtime, ado, sleeps, secrets, arn


def run(runtime: TriggerRuntime, evt: dict, ctx: LocalContext | None = None) -> dict:
    return handle(evt, ctx or LocalContext(), runtime)


def test_approval_starts_one_run_with_one_request(world):
    runtime, ado, _, _, _ = world
    result = run(runtime, event())
    assert result["status"] == "started"
    assert len(ado.requests) == 1  # exactly one HTTP request to Azure DevOps
    (created,) = ado.runs
    assert created["templateParameters"] == {
        "modelPackageArn": "arn:aws:sagemaker:eu-west-1:111122223333:model-package/churn-xgb/4",
        "modelPackageGroupName": "churn-xgb",
        "modelPackageVersion": "4",
        "sourceEventId": created["templateParameters"]["sourceEventId"],
    }
    assert created["refName"] == "refs/heads/main"
    assert result["runId"] == created["id"]
    assert result["webUrl"].endswith(f"id={created['id']}")


def test_duplicate_events_of_one_approval_make_one_run(world):
    runtime, ado, _, _, _ = world
    first = event(event_id="a")
    results = [run(runtime, first), run(runtime, first), run(runtime, event(event_id="b"))]
    assert [r["status"] for r in results] == ["started", "duplicate", "duplicate"]
    assert len(ado.runs) == 1
    assert {r["runId"] for r in results} == {ado.runs[0]["id"]}
    assert ado.post_count() == 1


@pytest.mark.parametrize("status", ["Rejected", "PendingManualApproval"])
def test_not_approved_starts_nothing(world, status):
    runtime, ado, _, _, _ = world
    assert run(runtime, event(status))["status"] == "ignored"
    assert ado.requests == []


def test_unknown_group_is_ignored_not_an_error(world, capsys):
    runtime, ado, _, _, _ = world
    result = run(runtime, event(group="other-group"))
    assert result == {"status": "ignored", "reason": "no route"}
    assert "ignored: no route for group other-group" in capsys.readouterr().out
    assert ado.requests == []


def test_default_route_catches_other_groups(world):
    runtime, ado, _, _, _ = world
    from bridge.trigger.routing import parse_routes

    default = {"organization": "contoso", "project": "mlops", "pipelineId": 13, "branch": "release"}
    runtime.routes = parse_routes(json.dumps({**ROUTES, "default": default}), source="test")
    assert run(runtime, event(group="other-group"))["status"] == "started"
    assert ado.runs[0]["pipelineId"] == 13
    assert ado.runs[0]["refName"] == "refs/heads/release"


def test_reapproval_after_rejection_makes_a_second_run(world):
    runtime, ado, _, _, _ = world
    t0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    assert run(runtime, event(modified=t0))["status"] == "started"
    assert run(runtime, event("Rejected", modified=t0 + timedelta(hours=1)))["status"] == "ignored"
    # A late duplicate of the first approval, delivered after the rejection: it has its run.
    stale = run(runtime, event(modified=t0))
    assert stale["status"] == "duplicate"
    assert stale["runId"] == ado.runs[0]["id"]
    assert run(runtime, event(modified=t0 + timedelta(hours=2)))["status"] == "started"
    assert run(runtime, event(modified=t0 + timedelta(hours=2)))["status"] == "duplicate"
    assert len(ado.runs) == 2


def test_429_honours_retry_after(world):
    runtime, ado, sleeps, _, _ = world
    ado.faults.append(Fault("status", 429, {"Retry-After": "7", "X-RateLimit-Remaining": "0"}))
    assert run(runtime, event())["status"] == "started"
    assert sleeps == [7.0]
    assert len(ado.runs) == 1
    assert [m for m, *_ in ado.requests] == ["POST", "POST"]  # 429: not processed, no check


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", 500),
        Fault("status", 503),
        Fault("timeout"),
        Fault("connection"),
    ],
)
def test_transient_failure_not_processed_retries_after_a_check(world, fault):
    runtime, ado, sleeps, _, _ = world
    ado.faults.append(fault)
    assert run(runtime, event())["status"] == "started"
    assert len(ado.runs) == 1
    assert [m for m, *_ in ado.requests] == ["POST", "GET", "POST"]
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 1.0  # full jitter, first backoff


@pytest.mark.parametrize(
    "fault", [Fault("status", 500, processed=True), Fault("timeout", processed=True)]
)
def test_transient_failure_after_the_run_was_created_finds_it(world, fault):
    runtime, ado, _, _, _ = world
    ado.faults.append(fault)
    result = run(runtime, event())
    assert result["status"] == "found-existing"
    assert len(ado.runs) == 1
    assert result["runId"] == ado.runs[0]["id"]
    assert [m for m, *_ in ado.requests] == ["POST", "GET"]


def test_retries_are_bounded_and_the_event_is_kept(world):
    runtime, ado, _, _, _ = world
    ado.faults.extend(Fault("status", 502) for _ in range(10))
    with pytest.raises(BridgeError, match=r"route contoso/mlops/pipeline 12: .*HTTP 502"):
        run(runtime, event())
    assert ado.post_count() == runtime.budget.max_attempts
    assert ado.runs == []
    # The failure removed the in-progress record: EventBridge's retry succeeds once Azure
    # DevOps recovers, after checking that no run exists.
    ado.faults.clear()
    ado.requests.clear()
    assert run(runtime, event())["status"] == "started"
    assert len(ado.runs) == 1
    assert [m for m, *_ in ado.requests] == ["GET", "POST"]


def test_no_time_left_means_no_wait(world):
    runtime, ado, sleeps, _, _ = world
    ado.faults.append(Fault("status", 429, {"Retry-After": "30"}))
    with pytest.raises(BridgeError, match="no time left"):
        run(runtime, event(), LocalContext(timeout_seconds=10))
    assert sleeps == []


@pytest.mark.parametrize(
    ("mutate", "status"),
    [
        (lambda r, a: setattr(a, "declared", frozenset({"modelPackageArn"})), 400),
        (lambda r, a: setattr(a, "pipelines", frozenset()), 404),
        (lambda r, a: a.faults.append(Fault("status", 403)), 403),
        (lambda r, a: setattr(a, "pat", "some-other-pat"), 401),
    ],
)
def test_client_errors_fail_at_once_naming_route_and_status(world, mutate, status):
    runtime, ado, sleeps, _, _ = world
    mutate(runtime, ado)
    with pytest.raises(BridgeError) as info:
        run(runtime, event())
    message = str(info.value)
    assert message.startswith("route contoso/mlops/pipeline 12:")
    assert f"HTTP {status}" in message
    assert sleeps == []
    assert ado.runs == []
    expected_posts = 2 if status == 401 else 1  # 401: one retry with the secret read again
    assert ado.post_count() == expected_posts


def test_rotated_pat_is_read_again_after_401(world):
    runtime, ado, _, secrets, arn = world
    assert run(runtime, event(version=4))["status"] == "started"
    reads_before = runtime.credential.secret_reads
    secrets.put_secret_value(SecretId=arn, SecretString="ROTATED-PAT-1234")
    ado.pat = "ROTATED-PAT-1234"
    assert run(runtime, event(version=5))["status"] == "started"
    assert runtime.credential.secret_reads == reads_before + 1
    assert len(ado.runs) == 2


def test_secret_is_read_once_per_container(world):
    runtime, _, _, _, _ = world
    for version in (1, 2, 3):
        run(runtime, event(version=version))
    assert runtime.credential.secret_reads == 1


def test_crash_between_run_created_and_record_completed(world, monkeypatch):
    """The Lambda dies after POST succeeded and the ledger noted the run, but before the
    idempotency record is completed. The retry knows the run from the ledger: no request."""
    runtime, ado, _, _, _ = world
    persistence = runtime.persistence

    def crash(*args, **kwargs):
        raise SystemExit("Lambda container killed")

    monkeypatch.setattr(persistence, "save_success", crash)
    with pytest.raises(SystemExit):
        run(runtime, event(event_id="first"), LocalContext(timeout_seconds=0.001))
    assert len(ado.runs) == 1
    monkeypatch.undo()
    time.sleep(0.01)  # the in-progress record expires with the (1 ms) remaining Lambda time
    result = run(runtime, event(event_id="retry"))
    assert result["status"] == "duplicate"
    assert result["runId"] == ado.runs[0]["id"]
    assert len(ado.runs) == 1
    assert [m for m, *_ in ado.requests] == ["POST"]


def test_crash_between_run_created_and_ledger_written(world, monkeypatch):
    """The Lambda dies after POST succeeded, before anything recorded the run. The retry (after
    the in-progress record expired) must look for the run (Builds - List, matched on the ARN
    and the approval's sourceEventId) and find it, not create a second one."""
    runtime, ado, _, _, _ = world

    def crash(*args, **kwargs):
        raise SystemExit("Lambda container killed")

    monkeypatch.setattr(runtime.ledger, "record_run", crash)
    with pytest.raises(SystemExit):
        run(runtime, event(event_id="first"), LocalContext(timeout_seconds=0.001))
    assert len(ado.runs) == 1
    monkeypatch.undo()
    time.sleep(0.01)  # the in-progress record expires with the (1 ms) remaining Lambda time
    result = run(runtime, event(event_id="retry"))
    assert result["status"] == "found-existing"
    assert result["runId"] == ado.runs[0]["id"]
    assert ado.runs[0]["templateParameters"]["sourceEventId"] == "first"
    assert len(ado.runs) == 1
    assert [m for m, *_ in ado.requests] == ["POST", "GET"]


def test_invalid_event_fails_the_invocation(world, capsys):
    runtime, ado, _, _, _ = world
    bad = event()
    del bad["detail"]["ModelPackageArn"]
    with pytest.raises(InvalidEvent):
        run(runtime, bad)
    assert "rejected: invalid event" in capsys.readouterr().out
    assert ado.requests == []


def test_logs_are_structured_json_with_arn_route_run(world, capsys):
    runtime, _, _, _, _ = world
    run(runtime, event())
    lines = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    started = [line for line in lines if line.get("outcome") == "started"]
    assert started, lines
    record = started[0]
    assert record["model_package_arn"].endswith("model-package/churn-xgb/4")
    assert record["route"] == "contoso/mlops/pipeline 12"
    assert record["run_id"] >= 1000 and record["run_url"].startswith("https://")


def test_the_secret_never_reaches_output(world, capsys):
    """Push the sentinel PAT through every failure path; grep everything that came out."""
    runtime, ado, _, secrets, arn = world
    texts: list[str] = []
    scenarios = [
        lambda: ado.faults.append(Fault("status", 400)),
        lambda: ado.faults.append(Fault("status", 403)),
        lambda: setattr(ado, "pipelines", frozenset()),
        lambda: ado.faults.extend(Fault("status", 500) for _ in range(10)),
        lambda: ado.faults.extend(Fault("timeout") for _ in range(10)),
        lambda: ado.faults.extend(Fault("connection") for _ in range(10)),
        lambda: setattr(ado, "pat", "wrong"),
    ]
    for version, scenario in enumerate(scenarios, start=10):
        ado.pipelines, ado.pat = frozenset({12, 13}), SECRET_PAT
        ado.faults.clear()
        scenario()
        with pytest.raises(Exception) as info:
            run(runtime, event(version=version))
        texts.append(repr(info.value) + str(info.value) + repr(info.value.__cause__))
    secrets.put_secret_value(SecretId=arn, SecretString='{"pat": ""}')
    runtime.credential.invalidate()
    with pytest.raises(CredentialsError) as info:
        run(runtime, event(version=99))
    texts.append(str(info.value))
    texts.append(repr(runtime.credential))
    captured = capsys.readouterr()
    everything = "\n".join([*texts, captured.out, captured.err])
    import base64

    encoded = base64.b64encode(f":{SECRET_PAT}".encode()).decode()
    assert SECRET_PAT not in everything
    assert encoded not in everything
    assert "HTTP 400" in everything and "HTTP 401" in everything  # the failures did happen


def test_idempotency_config_is_built_once_per_container(world, monkeypatch):
    """powertools: build IdempotencyConfig once and register each invocation's Lambda context
    (``register_lambda_context``), not a new config and wrapper per event."""
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig

    runtime, ado, _, _, _ = world
    built: list[object] = []
    original_init = IdempotencyConfig.__init__

    def counting_init(self, *args, **kwargs):
        built.append(self)
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(IdempotencyConfig, "__init__", counting_init)
    config = runtime.idempotency
    for version in (1, 2, 3):
        assert run(runtime, event(version=version))["status"] == "started"
    assert built == []  # no config per event
    assert runtime.idempotency is config
    assert len(ado.runs) == 3
