"""bridge.aws.stacks against a CloudFormation that behaves as the API reference says.

moto's CloudFormation never rolls back, ignores OnStackFailure and RoleARN, does not page
DescribeChangeSet and has no ContinueUpdateRollback, so these run against
tests/support/fake_cloudformation.py: a real botocore client (requests validated against
botocore's CloudFormation model, answers against its output shapes) answered by a fake that
refuses what the service refuses. Each test names the behaviour it relies on.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from bridge.aws.stacks import StackFailed, deploy_stack, request_token
from bridge.errors import ServiceError, UserError, WaitTimeout
from tests.support.fake_cloudformation import FakeCloudFormation

NAME = "smbridge-demo-churn-xgb-production"
ROLE = "arn:aws:iam::222222222222:role/smbridge-deploy-cloudformation"


def template(*names: str) -> str:
    return json.dumps(
        {
            "Parameters": {"Version": {"Type": "String"}},
            "Resources": {n: {"Type": "AWS::SNS::Topic"} for n in names},
        }
    )


@pytest.fixture
def fake() -> FakeCloudFormation:
    return FakeCloudFormation(assumable_roles={ROLE})


@pytest.fixture
def cfn(fake: FakeCloudFormation) -> Any:
    return fake.attach(boto3.client("cloudformation", region_name="eu-west-1"))


def deploy(cfn: Any, body: str, version: str = "1", **kwargs: Any):
    lines: list[str] = []
    kwargs.setdefault("role_arn", ROLE)
    result = deploy_stack(
        cfn,
        stack_name=NAME,
        template_body=body,
        parameters={"Version": version},
        tags={"smbridge:stage": "production"},
        progress=lines.append,
        sleep=lambda s: None,
        **kwargs,
    )
    return result, lines


def test_create_then_update_with_the_service_role_on_every_operation(fake, cfn):
    created, _ = deploy(cfn, template("A", "B"), run_id="azdo-100-1")
    assert (created.action, created.status) == ("created", "CREATE_COMPLETE")
    updated, _ = deploy(cfn, template("A", "B"), version="2", run_id="azdo-101-1")
    assert (updated.action, updated.status) == ("updated", "UPDATE_COMPLETE")
    # CreateChangeSet RoleARN: "CloudFormation uses this role for all future operations".
    assert [c.get("RoleARN") for c in fake.calls_of("CreateChangeSet")] == [ROLE, ROLE]
    # OnStackFailure is valid with ChangeSetType CREATE only (botocore's model documentation).
    assert [c.get("OnStackFailure") for c in fake.calls_of("CreateChangeSet")] == ["DELETE", None]
    # Every event of an operation carries its ClientRequestToken: the run, without a stack tag.
    tokens = {e.get("ClientRequestToken") for e in fake.stack(NAME).events}
    assert {t for t in tokens if t} == {
        c["ClientRequestToken"] for c in fake.calls_of("ExecuteChangeSet")
    }
    assert all(t.startswith(("azdo-100-1-smbridge-", "azdo-101-1-smbridge-")) for t in tokens if t)


def test_same_template_parameters_and_tags_is_unchanged(fake, cfn):
    deploy(cfn, template("A"))
    again, lines = deploy(cfn, template("A"))
    assert again.action == "unchanged"
    assert "stack smbridge-demo-churn-xgb-production: no changes" in lines
    assert fake.calls_of("ExecuteChangeSet") and len(fake.calls_of("ExecuteChangeSet")) == 1
    assert len(fake.calls_of("DeleteChangeSet")) == 1  # the empty change set is cleaned up


def test_a_tag_change_alone_modifies_every_resource(fake, cfn):
    """Why per-run values must stay out of stack tags: the fake, like CloudFormation,
    propagates stack tags to the resources, so a tag-only change is a real update."""
    deploy(cfn, template("A", "B"))
    result = deploy_stack(
        cfn, stack_name=NAME, template_body=template("A", "B"), parameters={"Version": "1"},
        tags={"smbridge:stage": "production", "azdo:build-id": "101"}, progress=lambda _: None,
        role_arn=ROLE, sleep=lambda s: None,
    )  # fmt: skip
    assert result.action == "updated"
    assert [(c["action"], c["scope"]) for c in result.changes] == [("Modify", "Tags")] * 2


def test_change_set_changes_are_read_from_every_page(fake, cfn):
    """DescribeChangeSet pages Changes with NextToken (botocore's model)."""
    fake.page_size = 2
    names = [f"Topic{i}" for i in range(5)]
    result, lines = deploy(cfn, template(*names))
    assert [c["logical_id"] for c in result.changes] == names
    assert sum(line.startswith("change: Add") for line in lines) == 5
    pages = [c for c in fake.calls_of("DescribeChangeSet") if "NextToken" in c]
    assert len(pages) == 2


def test_update_rollback_failed_is_continued_then_updated(fake, cfn):
    """UPDATE_ROLLBACK_FAILED cannot be updated; ContinueUpdateRollback (with the service role)
    brings it to UPDATE_ROLLBACK_COMPLETE, after which the update goes ahead."""
    fake.put_stack(
        NAME, "UPDATE_ROLLBACK_FAILED", template=template("A"), parameters={"Version": "1"}
    )
    result, lines = deploy(cfn, template("A"), version="2", run_id="azdo-7-2")
    assert (result.action, result.status) == ("updated", "UPDATE_COMPLETE")
    (cont,) = fake.calls_of("ContinueUpdateRollback")
    assert cont["RoleARN"] == ROLE
    assert cont["StackName"] == fake.stack(NAME).stack_id
    assert cont["ClientRequestToken"].startswith("azdo-7-2-rollback-")
    assert any("continuing the rollback" in line for line in lines)
    assert any("UPDATE_ROLLBACK_COMPLETE" in line for line in lines)


def test_a_rollback_that_fails_again_is_a_clear_failure(fake, cfn):
    fake.put_stack(NAME, "UPDATE_ROLLBACK_FAILED", template=template("A"))
    fake.outcomes = ["fail-rollback-fails"]
    with pytest.raises(StackFailed) as info:
        deploy(cfn, template("A"), version="2")
    message = str(info.value)
    assert "continuing its rollback ended UPDATE_ROLLBACK_FAILED" in message
    assert "Endpoint" in message and "--resources-to-skip" in message
    assert fake.calls_of("CreateChangeSet") == []  # no update attempted on a broken stack


def test_an_update_whose_rollback_fails_says_the_next_deploy_continues_it(fake, cfn):
    deploy(cfn, template("A"))
    fake.outcomes = ["fail-rollback-fails"]
    with pytest.raises(StackFailed, match="the next deploy continues the rollback first"):
        deploy(cfn, template("A"), version="2")
    assert fake.stack(NAME).status == "UPDATE_ROLLBACK_FAILED"
    fake.outcomes = ["success"]  # the cause fixed: the next run rolls back, then updates
    result, _ = deploy(cfn, template("A"), version="2")
    assert result.status == "UPDATE_COMPLETE"


def test_rollback_complete_is_deleted_and_created_again(fake, cfn):
    """A failed first creation (ROLLBACK_COMPLETE) can only be deleted (CreateChangeSet UPDATE
    refuses it, and CREATE refuses an existing stack)."""
    old = fake.put_stack(NAME, "ROLLBACK_COMPLETE")
    result, lines = deploy(cfn, template("A"), run_id="azdo-9-1")
    assert (result.action, result.status) == ("created", "CREATE_COMPLETE")
    (delete,) = fake.calls_of("DeleteStack")
    assert delete["StackName"] == old.stack_id and delete["RoleARN"] == ROLE
    assert delete["ClientRequestToken"].startswith("azdo-9-1-delete-")
    assert old.status == "DELETE_COMPLETE"
    assert fake.stack(NAME).stack_id != old.stack_id
    assert any("ROLLBACK_COMPLETE" in line and "deleting it" in line for line in lines)


def test_a_failed_first_creation_deletes_the_stack(fake, cfn):
    """OnStackFailure=DELETE: the failed stack is deleted; its events, read by stack id, still
    give the reason, and the next deploy creates it afresh."""
    fake.outcomes = ["fail"]
    with pytest.raises(StackFailed) as info:
        deploy(cfn, template("A"))
    assert "creation failed and CloudFormation deleted it" in str(info.value)
    assert "A failed" in str(info.value)
    with pytest.raises(AssertionError):
        fake.stack(NAME)  # gone by name
    result, _ = deploy(cfn, template("A"))
    assert result.action == "created"


def test_rollback_failed_is_refused(fake, cfn):
    fake.put_stack(NAME, "ROLLBACK_FAILED")
    with pytest.raises(UserError, match="ROLLBACK_FAILED"):
        deploy(cfn, template("A"))
    assert fake.calls_of("DeleteStack") == fake.calls_of("CreateChangeSet") == []


def test_a_role_cloudformation_cannot_assume_fails_the_change_set(fake, cfn):
    with pytest.raises(ServiceError, match="is invalid or cannot be assumed"):
        deploy(cfn, template("A"), role_arn="arn:aws:iam::222222222222:role/not-there")


def test_request_tokens_fit_botocores_pattern():
    # botocore's CloudFormation model: ClientRequestToken [a-zA-Z0-9][-a-zA-Z0-9]*, 1-128.
    import re

    import botocore.session

    shape = (
        botocore.session.get_session()
        .get_service_model("cloudformation")
        .operation_model("ExecuteChangeSet")
        .input_shape.members["ClientRequestToken"]
    )
    pattern, limit = shape.metadata["pattern"], shape.metadata["max"]
    token = request_token("azdo-12345-2", "smbridge-0123456789ab")["ClientRequestToken"]
    assert re.fullmatch(pattern, token) and len(token) <= limit
    assert request_token(None, "x") == {}
    assert request_token("bad id", "x") == {}  # a space does not fit: no token at all
    assert request_token("a" * 200, "x") == {}


def test_stubber_checks_the_exact_requests_of_a_continued_rollback():
    """The same path against botocore's Stubber: the exact parameters of each call."""
    cfn = boto3.client("cloudformation", region_name="eu-west-1")
    sid = f"arn:aws:cloudformation:eu-west-1:222222222222:stack/{NAME}/1"
    stack = {"StackName": NAME, "StackId": sid, "CreationTime": "2026-01-01"}
    event = {"StackId": sid, "StackName": NAME, "Timestamp": "2026-01-01"}
    with Stubber(cfn) as stub:
        stub.add_response(
            "describe_stacks",
            {"Stacks": [{**stack, "StackStatus": "UPDATE_ROLLBACK_FAILED"}]},
            {"StackName": NAME},
        )
        stub.add_response(
            "describe_stack_events",
            {"StackEvents": [{**event, "EventId": "1", "ResourceStatus": "UPDATE_FAILED"}]},
            {"StackName": sid},
        )
        stub.add_response("continue_update_rollback", {}, {"StackName": sid, "RoleARN": ROLE})
        stub.add_response(
            "describe_stack_events",
            {"StackEvents": [{**event, "EventId": "1", "ResourceStatus": "UPDATE_FAILED"}]},
            {"StackName": sid},
        )
        stub.add_response(
            "describe_stacks",
            {"Stacks": [{**stack, "StackStatus": "UPDATE_ROLLBACK_COMPLETE"}]},
            {"StackName": sid},
        )
        stub.add_response(
            "describe_stack_events",
            {
                "StackEvents": [
                    {**event, "EventId": "2", "ResourceStatus": "UPDATE_ROLLBACK_COMPLETE"},
                    {**event, "EventId": "1", "ResourceStatus": "UPDATE_FAILED"},
                ]
            },
            {"StackName": sid},
        )
        stub.add_response(
            "create_change_set",
            {"Id": "arn:cs", "StackId": sid},
            {
                "StackName": NAME, "ChangeSetName": ANY, "ChangeSetType": "UPDATE",
                "TemplateBody": "{}", "Parameters": [], "Tags": [], "Capabilities": [],
                "Description": "smbridge deploy", "RoleARN": ROLE,
            },
        )  # fmt: skip
        stub.add_response(
            "describe_change_set",
            {
                "Status": "FAILED",
                "StatusReason": "The submitted information didn't contain changes.",
            },
            {"ChangeSetName": "arn:cs"},
        )
        stub.add_response("delete_change_set", {}, {"ChangeSetName": "arn:cs"})
        result = deploy_stack(
            cfn, stack_name=NAME, template_body="{}", parameters={}, tags={},
            progress=lambda _: None, role_arn=ROLE, sleep=lambda s: None,
        )  # fmt: skip
        stub.assert_no_pending_responses()
    assert result.action == "unchanged"


# -- the waits go through the shared poller (bridge.core.polling) ------------------------------

SID = f"arn:aws:cloudformation:eu-west-1:222222222222:stack/{NAME}/1"


def _event(event_id: str, logical: str, status: str) -> dict[str, Any]:
    return {
        "StackId": SID, "StackName": NAME, "EventId": event_id, "Timestamp": "2026-01-01",
        "LogicalResourceId": logical, "ResourceType": "AWS::SNS::Topic", "ResourceStatus": status,
    }  # fmt: skip


def _stub_create(stub: Stubber, *change_set_statuses: str) -> None:
    stub.add_client_error(
        "describe_stacks", "ValidationError", f"Stack with id {NAME} does not exist",
        expected_params={"StackName": NAME},
    )  # fmt: skip
    stub.add_response("create_change_set", {"Id": "arn:cs", "StackId": SID})
    for status in change_set_statuses:
        stub.add_response(
            "describe_change_set", {"Status": status, "Changes": []}, {"ChangeSetName": "arn:cs"}
        )
    stub.add_response("execute_change_set", {}, {"ChangeSetName": "arn:cs"})


def _stub_look(stub: Stubber, events: list[dict[str, Any]], status: str | None = None) -> None:
    stub.add_response("describe_stack_events", {"StackEvents": events}, {"StackName": SID})
    if status is not None:
        stack = {"StackName": NAME, "StackId": SID, "CreationTime": "2026-01-01"}
        stub.add_response(
            "describe_stacks", {"Stacks": [{**stack, "StackStatus": status}]}, {"StackName": SID}
        )


def test_deploy_waits_go_through_the_shared_poller(clock, monkeypatch):
    """The change set wait and the stack wait are two waits of one poller: 5 s after a change
    (a new change set status, a new stack event), growing while nothing happens."""
    from tests.unit.test_polling import spy_on_poller

    waits = spy_on_poller(monkeypatch)
    cfn = boto3.client("cloudformation", region_name="eu-west-1")
    first = [_event("1", NAME, "CREATE_IN_PROGRESS")]
    second = [_event("2", "A", "CREATE_COMPLETE"), *first]
    done = [_event("3", NAME, "CREATE_COMPLETE"), *second]
    lines: list[str] = []
    with Stubber(cfn) as stub:
        _stub_create(stub, "CREATE_PENDING", "CREATE_IN_PROGRESS", "CREATE_COMPLETE")
        _stub_look(stub, first, "CREATE_IN_PROGRESS")
        _stub_look(stub, first, "CREATE_IN_PROGRESS")
        _stub_look(stub, first, "CREATE_IN_PROGRESS")
        _stub_look(stub, second, "CREATE_IN_PROGRESS")
        _stub_look(stub, done, "CREATE_COMPLETE")
        _stub_look(stub, done)  # the events written as the stack settled
        result = deploy_stack(
            cfn, stack_name=NAME, template_body="{}", parameters={}, tags={},
            progress=lines.append, sleep=clock.sleep, monotonic=clock.monotonic,
        )  # fmt: skip
        stub.assert_no_pending_responses()
    assert (result.action, result.status, result.events_seen) == ("created", "CREATE_COMPLETE", 3)
    assert len(waits) == 2 and waits[0] is waits[1]  # one poller, one deadline
    # change set: PENDING 5 IN_PROGRESS 5 COMPLETE | stack: event 1, 5, 7.5, 11.25, event 2, 5
    assert clock.sleeps == [5, 5, 5, 7.5, 11.25, 5]
    assert waits[0].looks == 3 + 5
    assert [line for line in lines if "AWS::SNS::Topic" in line] == [
        f"{NAME} (AWS::SNS::Topic): CREATE_IN_PROGRESS",
        "A (AWS::SNS::Topic): CREATE_COMPLETE",
        f"{NAME} (AWS::SNS::Topic): CREATE_COMPLETE",
    ]


def test_deploy_timeout_is_one_deadline_for_every_phase(clock):
    """The change set took 12.5 s of a 30 s timeout: the stack wait has the 17.5 s left."""
    cfn = boto3.client("cloudformation", region_name="eu-west-1")
    running = [_event("1", NAME, "CREATE_IN_PROGRESS")]
    with Stubber(cfn) as stub:
        _stub_create(stub, "CREATE_PENDING", "CREATE_PENDING", "CREATE_COMPLETE")
        for _ in range(4):  # at 12.5, 17.5, 25 and 30 s
            _stub_look(stub, running, "CREATE_IN_PROGRESS")
        with pytest.raises(WaitTimeout) as info:
            deploy_stack(
                cfn, stack_name=NAME, template_body="{}", parameters={}, tags={},
                progress=lambda _: None, timeout_seconds=30,
                sleep=clock.sleep, monotonic=clock.monotonic,
            )  # fmt: skip
        stub.assert_no_pending_responses()
    assert str(info.value) == f"stack {NAME}: still CREATE_IN_PROGRESS after the timeout"
    assert info.value.exit_code == 5
    assert clock.sleeps == [5, 7.5, 5, 7.5, 5] and clock.now == 30
