from __future__ import annotations

import copy
import json

import pytest

from bridge.trigger.events import InvalidEvent, parse_event
from tests.support.ado_contract import REFERENCE_DIR

APPROVED = json.loads(
    (REFERENCE_DIR / "sagemaker-events" / "model-package-approved.json").read_text()
)


def with_detail(**changes):
    event = copy.deepcopy(APPROVED)
    for key, value in changes.items():
        if value is None:
            event["detail"].pop(key)
        else:
            event["detail"][key] = value
    return event


def test_approved_example_parses():
    change = parse_event(APPROVED)
    assert change.approved
    assert change.detail.model_package_version == 4
    assert change.detail.model_package_group_name == "churn-xgb"
    assert change.id == APPROVED["id"]


@pytest.mark.parametrize("status", ["Rejected", "PendingManualApproval"])
def test_other_statuses_parse_but_are_not_approved(status):
    assert not parse_event(with_detail(ModelApprovalStatus=status)).approved


def test_json_string_input():
    assert parse_event(json.dumps(APPROVED)).approved


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (with_detail(ModelPackageArn=None), "detail.ModelPackageArn: Field required"),
        (with_detail(ModelApprovalStatus="Approvedd"), "detail.ModelApprovalStatus"),
        (with_detail(ModelPackageVersion="4"), "detail.ModelPackageVersion"),
        (with_detail(ModelPackageArn="arn:aws:s3:::bucket"), "detail.ModelPackageArn"),
        (with_detail(LastModifiedTime="yesterday"), "detail.LastModifiedTime"),
        ({**APPROVED, "source": "aws.s3"}, "source is 'aws.s3'"),
        ({**APPROVED, "detail-type": "SageMaker Endpoint State Change"}, "detail-type"),
        ({**APPROVED, "account": "abc"}, "event field account"),
        ("not json", "not JSON"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_bad_events_are_one_line_errors(event, message):
    with pytest.raises(InvalidEvent) as info:
        parse_event(event)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_oversized_payload_is_refused():
    event = with_detail(ApprovalDescription="x" * (300 * 1024))
    with pytest.raises(InvalidEvent, match="over EventBridge's 256 KB limit"):
        parse_event(event)
    with pytest.raises(InvalidEvent, match="256 KB"):
        parse_event(json.dumps(event))
