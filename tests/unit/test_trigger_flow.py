"""Approvals driven the way production drives them: SageMaker's events put on the bus, matched
by the trigger rule's own pattern (infra/trigger.yaml, Lambda mode), delivered to the trigger
queue (its visibility timeout and redrive policy from the same template), polled by Lambda's
SQS event source (tests/support/event_source.py: moto does not invoke Lambda) into the real
handler, against the Azure DevOps stand-in (every request checked against the OpenAPI specs).

Sources of the behaviour encoded here:
- SageMaker developer guide, "Events that SageMaker sends to EventBridge": one event type for
  every change of a package; SageMaker may send several events for one change.
- EventBridge user guide: at-least-once delivery, no ordering.
- Lambda developer guide, "Using Lambda with Amazon SQS": a failed batch returns to the queue
  after the visibility timeout; SQS moves it to the dead-letter queue after maxReceiveCount
  receives (SQS developer guide, "dead-letter queues").
moto gaps covered here: its put_events accepts source aws.sagemaker (the real service refuses
it from a caller, SageMaker itself sends it) and delivers no ``account`` (the parser accepts an
event without one; the configured registry accounts still bound the ARN).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import responses
from moto import mock_aws

from bridge.sandbox.ado_contract import REFERENCE_DIR
from bridge.sandbox.event_source import EventSourceMapping
from bridge.trigger.handler import build_runtime, process
from bridge.trigger.local import LocalContext, replay
from bridge.trigger.settings import TriggerSettings
from tests.support.fake_ado import FakeAzureDevOps, Fault
from tests.unit.test_infra_templates import REGION, Renderer, load_template

REPO_ROOT = REFERENCE_DIR.parent
TEMPLATE = load_template(REPO_ROOT / "infra" / "trigger.yaml")
LAMBDA_PARAMS = {
    "AzureDevOpsSecretArn": f"arn:aws:secretsmanager:{REGION}:123456789012:secret:ado-AbCdEf",
    "CodeS3Bucket": "smbridge-artifacts",
    "CodeS3Key": "trigger.zip",
    "RoutesJson": "{}",
    "ModelPackageGroupNames": "churn-xgb,fraud-xgb",
}
EXAMPLE = json.loads((REFERENCE_DIR / "sagemaker-events/model-package-approved.json").read_text())
CAPTURED = json.loads(
    (REFERENCE_DIR / "sagemaker-events/model-package-approved-captured-shape.json").read_text()
)
PAT = "flow-pat-sentinel"
ROUTES = {
    "routes": {"churn-xgb": {"organization": "contoso", "project": "mlops", "pipelineId": 12}}
}
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


class Flow:
    def __init__(self, mock: responses.RequestsMock) -> None:
        rendered = Renderer(TEMPLATE, LAMBDA_PARAMS)
        self.queue_props = rendered.properties("TriggerQueue")
        session = boto3.Session(region_name=REGION)
        self.sqs = session.client("sqs")
        self.events = session.client("events")
        dlq = self.sqs.create_queue(QueueName="dlq")["QueueUrl"]
        dlq_arn = self._arn(dlq)
        redrive = self.queue_props["RedrivePolicy"]
        self.max_receives = int(redrive["maxReceiveCount"])
        queue = self.sqs.create_queue(
            QueueName="trigger",
            Attributes={
                "VisibilityTimeout": str(self.queue_props["VisibilityTimeout"]),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": self.max_receives}
                ),
            },
        )["QueueUrl"]
        self.dlq, self.queue = dlq, queue
        rule = rendered.properties("ApprovalRule")
        self.events.put_rule(Name="approvals", EventPattern=json.dumps(rule["EventPattern"]))
        (target,) = rule["Targets"]
        self.events.put_targets(
            Rule="approvals", Targets=[{"Id": target["Id"], "Arn": self._arn(queue)}]
        )
        session.client("dynamodb").create_table(
            TableName="idem",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        self.ado = FakeAzureDevOps(pat=PAT).install(mock)
        settings = TriggerSettings.from_environ(
            {
                "SMBRIDGE_ROUTES": json.dumps(ROUTES),
                "SMBRIDGE_ADO_PAT": PAT,
                "SMBRIDGE_IDEMPOTENCY_TABLE": "idem",
                "SMBRIDGE_REGISTRY_ACCOUNTS": "111122223333",
            }
        )
        self.runtime = build_runtime(settings, session=session)
        self.runtime.sleep = lambda seconds: None
        self.lambda_ = EventSourceMapping(
            self.sqs, queue, lambda event: process(event, LocalContext(), self.runtime)
        )

    def _arn(self, url: str) -> str:
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]

    def put(
        self,
        status: str,
        at: datetime | None,
        *,
        group: str = "churn-xgb",
        version: int = 4,
        event: dict[str, Any] | None = None,
        **detail: Any,
    ) -> None:
        """SageMaker reporting one state of the package (``at``: its LastModifiedTime)."""
        source = copy.deepcopy(event or EXAMPLE)
        body = source["detail"]
        arn = f"arn:aws:sagemaker:{REGION}:111122223333:model-package/{group}/{version}"
        body.update(ModelApprovalStatus=status, ModelPackageGroupName=group,
                    ModelPackageVersion=version, ModelPackageArn=arn, **detail)  # fmt: skip
        if at is not None:
            body["LastModifiedTime"] = at.isoformat().replace("+00:00", "Z")
        result = self.events.put_events(
            Entries=[
                {
                    "Source": "aws.sagemaker",
                    "DetailType": "SageMaker Model Package State Change",
                    "Detail": json.dumps(body),
                    "Resources": [arn],
                    "Time": at or T0,
                }
            ]
        )
        assert result["FailedEntryCount"] == 0

    def runs(self) -> list[dict[str, Any]]:
        return self.ado.runs

    def dead_letters(self) -> list[dict[str, Any]]:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.dlq, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return [{}] * int(attrs["ApproximateNumberOfMessages"])


@pytest.fixture
def flow(monkeypatch):
    monkeypatch.setenv("POWERTOOLS_IDEMPOTENCY_DISABLED", "false")
    with mock_aws(), responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield Flow(mock)


def source_events(flow: Flow) -> list[str]:
    return [run["templateParameters"]["sourceEventId"] for run in flow.runs()]


def test_approve_reject_reapprove_makes_two_runs(flow):
    flow.put("PendingManualApproval", T0)
    flow.put("Approved", T0 + timedelta(minutes=1))
    flow.lambda_.drain()
    flow.put("Rejected", T0 + timedelta(minutes=2))
    flow.lambda_.drain()
    flow.put("Approved", T0 + timedelta(minutes=3))
    flow.lambda_.drain()
    assert len(flow.runs()) == 2
    assert len(set(source_events(flow))) == 2


def test_a_late_rejection_still_gives_the_reapproval_its_run(flow):
    """approve t1, re-approve t3, then the rejection t2 arrives late (the issue's case)."""
    flow.put("Approved", T0 + timedelta(minutes=1))
    flow.put("Approved", T0 + timedelta(minutes=3))
    flow.lambda_.drain()
    assert len(flow.runs()) == 1
    flow.put("Rejected", T0 + timedelta(minutes=2))
    flow.lambda_.drain()
    assert len(flow.runs()) == 2


def test_duplicates_and_later_changes_of_one_approval_make_one_run(flow):
    at = T0 + timedelta(minutes=1)
    flow.put("Approved", at)
    flow.put("Approved", at)  # the same change sent twice (two events, two ids)
    flow.put("Approved", at + timedelta(minutes=5), ModelPackageDescription="edited")
    flow.put("Approved", at + timedelta(minutes=6),
             ModelLifeCycle={"Stage": "Staging", "StageStatus": "Deployed"})  # fmt: skip
    flow.lambda_.drain()
    assert len(flow.runs()) == 1


def test_captured_shape_without_last_modified_time_starts_a_run(flow):
    flow.put("Approved", None, event=CAPTURED, version=5)
    flow.lambda_.drain()
    (run,) = flow.runs()
    assert run["templateParameters"]["modelPackageVersion"] == "5"


def test_state_changes_of_groups_outside_the_rule_are_not_delivered(flow):
    flow.put("Approved", T0, group="other-model")
    assert flow.lambda_.drain() == 0
    assert flow.runs() == []


def test_a_listed_group_without_a_route_is_handled_and_starts_nothing(flow):
    flow.put("Approved", T0, group="fraud-xgb")
    assert flow.lambda_.drain() == 1
    assert flow.runs() == [] and flow.lambda_.errors == []


def test_an_outage_shorter_than_the_queues_retries_loses_nothing(flow):
    """Azure DevOps down for every attempt but the last the queue allows: one run, no DLQ.
    With the template's defaults, those attempts are (maxReceiveCount - 1) visibility
    timeouts apart in time, at least 24 hours (tests/unit/test_trigger_infra.py)."""
    flow.runtime.budget = type(flow.runtime.budget)(max_attempts=1)  # one POST per invocation
    failures = flow.max_receives - 1
    flow.ado.faults.extend(Fault("status", 503) for _ in range(failures))
    flow.put("Approved", T0)
    flow.lambda_.drain()
    assert len(flow.lambda_.errors) == failures
    assert len(flow.runs()) == 1
    assert flow.dead_letters() == []
    assert (failures * int(flow.queue_props["VisibilityTimeout"])) >= 24 * 3600


def test_a_longer_outage_dead_letters_and_replay_finishes_the_job(flow):
    flow.runtime.budget = type(flow.runtime.budget)(max_attempts=1)
    flow.ado.faults.extend(Fault("status", 503) for _ in range(flow.max_receives))
    flow.put("Approved", T0)
    flow.lambda_.drain()
    assert flow.runs() == []
    assert len(flow.dead_letters()) == 1
    report = replay(flow.sqs, flow.dlq, flow.runtime)
    assert (report.handled, report.failed) == (1, 0)
    assert len(flow.runs()) == 1
