from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest

from bridge.sandbox.ado_contract import REFERENCE_DIR
from bridge.trigger.events import InvalidEvent, parse_event

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


# --------------------------------------------------------------------------- as AWS sends them
# SageMaker developer guide, "Events that Amazon SageMaker sends to Amazon EventBridge": the
# documented model package example carries ISO timestamps and LastModifiedTime; events captured
# from the service (AWS samples) carry CreationTime as epoch milliseconds (int or float) and no
# LastModifiedTime. reference/sagemaker-events/README.md names each example's source.
DOCUMENTED = json.loads(
    (REFERENCE_DIR / "sagemaker-events" / "model-package-rejected-documented.json").read_text()
)
CAPTURED = json.loads(
    (REFERENCE_DIR / "sagemaker-events" / "model-package-approved-captured-shape.json").read_text()
)


def test_the_documented_example_parses():
    change = parse_event(DOCUMENTED)
    assert change.detail.model_approval_status == "Rejected"
    assert change.changed_at == datetime(2021, 2, 24, 17, 0, 14, tzinfo=UTC)


def test_captured_shape_epoch_millis_and_no_last_modified_time():
    change = parse_event(CAPTURED)
    assert change.detail.creation_time == datetime(2026, 11, 20, 9, 52, 1, 417000, tzinfo=UTC)
    assert change.detail.last_modified_time is None
    assert change.changed_at == datetime(2026, 11, 20, 10, 2, 7, tzinfo=UTC)  # the event's time


@pytest.mark.parametrize("value", [1795168321417, 1795168321417.0, 1795168321417.5])
def test_epoch_milliseconds_int_or_float(value):
    change = parse_event(with_detail(LastModifiedTime=value))
    assert change.changed_at.year == 2026
    assert change.changed_at.tzinfo is not None


@pytest.mark.parametrize("field", ["ModelPackageGroupName", "ModelPackageVersion",
                                   "ModelPackageArn", "ModelApprovalStatus"])  # fmt: skip
def test_only_what_the_trigger_needs_is_required(field):
    optional_gone = with_detail(
        LastModifiedTime=None, CreationTime=None, ApprovalDescription=None,
        InferenceSpecification=None, ModelMetrics=None,
    )  # fmt: skip
    assert parse_event(optional_gone).changed_at == datetime(2026, 11, 20, 9, 15, 42, tzinfo=UTC)
    missing = copy.deepcopy(optional_gone)
    del missing["detail"][field]
    with pytest.raises(InvalidEvent, match=f"^event field detail.{field}: Field required$"):
        parse_event(missing)


def test_neither_last_modified_time_nor_time_is_a_rejection():
    event = with_detail(LastModifiedTime=None)
    del event["time"]
    with pytest.raises(InvalidEvent, match=r"detail\.LastModifiedTime: missing"):
        parse_event(event)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0001-01-01T00:00:00", "has no time zone"),
        ("0001-01-01T00:00:00+01:00", "outside 2010-2199"),
        ("9999-12-31T23:59:59-01:00", "outside 2010-2199"),
        ("2026-11-20T09:15:41", "has no time zone"),
        (10**30, "outside"),
        (-(10**30), "outside"),
        (1.5e308, "outside"),
        (1795168321, "outside"),  # seconds, not milliseconds: 1970
        (True, "is a boolean"),
        ([2026], "expected an ISO 8601 string or epoch milliseconds"),
    ],
)
def test_odd_timestamps_are_rejections(value, message):
    with pytest.raises(InvalidEvent) as info:
        parse_event(with_detail(LastModifiedTime=value))
    assert "detail.LastModifiedTime" in str(info.value)
    assert message in str(info.value)


def test_nan_and_infinity_are_not_json():
    text = json.dumps(APPROVED).replace('"2026-11-20T09:15:41Z"', "NaN", 1)
    with pytest.raises(InvalidEvent, match="not JSON"):
        parse_event(text)


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps(APPROVED).encode().replace(b"reviewed", b"review\xffed"),
        b"\xfe\xff\x00{",
        json.dumps(APPROVED, ensure_ascii=False).encode("utf-16"),
    ],
)
def test_non_utf8_bytes_are_rejections(raw):
    with pytest.raises(InvalidEvent, match=r"not UTF-8|not JSON"):
        parse_event(raw)


def test_lone_surrogate_text_is_a_rejection():
    with pytest.raises(InvalidEvent, match="not UTF-8"):
        parse_event(json.dumps(APPROVED).replace("reviewed", "review\ud800ed"))


def test_deeply_nested_text_is_a_rejection():
    with pytest.raises(InvalidEvent, match="nested too deeply"):
        parse_event("[" * 100_000 + "]" * 100_000)


# --------------------------------------------------------------------------- the ARN is the event's
ARN = "arn:aws:sagemaker:eu-west-1:111122223333:model-package/churn-xgb/4"


@pytest.mark.parametrize(
    ("arn", "message"),
    [
        ("arn:aws:sagemaker:eu-west-1:444455556666:model-package/churn-xgb/4", "account"),
        ("arn:aws:sagemaker:us-east-1:111122223333:model-package/churn-xgb/4", "region"),
        ("arn:aws-cn:sagemaker:eu-west-1:111122223333:model-package/churn-xgb/4", "partition"),
        ("arn:aws:sagemaker:eu-west-1:111122223333:model-package/fraud-xgb/4", "group"),
        ("arn:aws:sagemaker:eu-west-1:111122223333:model-package/churn-xgb/5", "version"),
        # U+0661 ARABIC-INDIC DIGIT ONE: `\d` matches it, an ARN never carries it
        ("arn:aws:sagemaker:eu-west-1:١١١١٢٢٢٢٣٣٣٣:model-package/churn-xgb/4", "not a model"),
        ("arn:aws:sagemaker:eu-west-1:111122223333:model-package/churn-xgb/٤", "not a model"),
        (ARN + "\n##vso[task.setvariable variable=x]1", "not a model"),
    ],
)
def test_the_arn_must_belong_to_the_event(arn, message):
    with pytest.raises(InvalidEvent) as info:
        parse_event(with_detail(ModelPackageArn=arn))
    assert str(info.value).startswith("event field detail.ModelPackageArn")
    assert message in str(info.value)


def test_an_arn_in_another_partition_matches_its_own_region():
    event = copy.deepcopy(APPROVED)
    event["region"] = "cn-north-1"
    event["detail"]["ModelPackageArn"] = ARN.replace("arn:aws:", "arn:aws-cn:").replace(
        "eu-west-1", "cn-north-1"
    )
    assert parse_event(event).detail.model_package_arn.startswith("arn:aws-cn:")
    event["detail"]["ModelPackageArn"] = event["detail"]["ModelPackageArn"].replace(
        "arn:aws-cn:", "arn:aws:"
    )
    with pytest.raises(InvalidEvent, match="partition 'aws' is not cn-north-1's"):
        parse_event(event)


def test_without_account_the_arn_is_still_checked_against_the_configured_accounts():
    event = copy.deepcopy(APPROVED)
    del event["account"]  # moto's put_events delivers no account
    assert parse_event(event, registry_accounts={"111122223333"}).detail.model_package_arn == ARN
    with pytest.raises(InvalidEvent, match="not a configured registry account"):
        parse_event(event, registry_accounts={"999988887777"})


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("id", "evt-1\nnext line"),
        ("id", "##vso[task.setvariable variable=AWS_ROLE_ARN]arn:aws:iam::1:role/x"),
        ("id", "$(System.AccessToken)"),
        ("id", ""),
        ("ModelPackageGroupName", "churn-xgb\n##vso[task.prependpath]/tmp/evil"),
        ("ModelPackageGroupName", "churn_xgb"),
        ("ModelPackageGroupName", "\uff43\uff48\uff55\uff52\uff4e"),  # fullwidth "churn"
    ],
)
def test_ids_and_names_that_could_become_commands_are_refused(where, value):
    event = copy.deepcopy(APPROVED)
    if where == "id":
        event["id"] = value
    else:
        event["detail"][where] = value
    with pytest.raises(InvalidEvent) as info:
        parse_event(event)
    assert "\n" not in str(info.value)
    assert "##vso" not in str(info.value)
