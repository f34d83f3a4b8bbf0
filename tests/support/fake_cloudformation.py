"""A CloudFormation stand-in at least as strict as the service where smbridge depends on it.

Plugged into a real botocore client behind its ``before-call`` event (as botocore's Stubber
is): botocore still validates every request against the service model before the fake sees it,
and every answer is validated against the operation's output shape. moto cannot replace it:
its CloudFormation never rolls back, ignores OnStackFailure and RoleARN, does not page
DescribeChangeSet and has no ContinueUpdateRollback.

What it models, from the CloudFormation API reference and user guide:

* CreateChangeSet: CREATE only for a new stack (or one in REVIEW_IN_PROGRESS), UPDATE only for
  an existing one that is not in progress, ROLLBACK_COMPLETE ("can not be updated": a failed
  first creation must be deleted) or UPDATE_ROLLBACK_FAILED (ContinueUpdateRollback first);
  OnStackFailure=DELETE only with CREATE; RoleARN must be a role CloudFormation can assume
  (``assumable_roles``) and stays the stack's role for every later operation.
* A change set with nothing different (template, parameters, tags) ends FAILED with "The
  submitted information didn't contain changes."; one where only the stack tags differ still
  modifies every resource (scope Tags: stack tags propagate to the resources).
* DescribeChangeSet pages its Changes (``page_size``) with NextToken.
* ExecuteChangeSet only for an AVAILABLE change set; it deletes the stack's other change sets;
  its ClientRequestToken is carried by every event of the operation.
* Stacks progress one step per DescribeStacks (the fake's clock). A failed creation rolls back
  to ROLLBACK_COMPLETE, or with OnStackFailure=DELETE is deleted (DELETE_COMPLETE); a failed
  update rolls back to UPDATE_ROLLBACK_COMPLETE, or UPDATE_ROLLBACK_FAILED when its rollback
  fails too. ContinueUpdateRollback only in UPDATE_ROLLBACK_FAILED.
* DescribeStacks / DescribeStackEvents by name see live stacks only; by stack id also deleted
  ones. DeleteStack of a stack that does not exist succeeds.
"""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.validate import ParamValidator

EPOCH = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
NO_CHANGES = (
    "The submitted information didn't contain changes. Submit different information to create "
    "a change set."
)


class FakeError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _resources(template_body: str) -> list[tuple[str, str]]:
    try:
        template = json.loads(template_body)
    except ValueError:
        from cfnlint.decode import decode_str

        template, matches = decode_str(template_body)
        assert template is not None, matches
    return [(name, res["Type"]) for name, res in template.get("Resources", {}).items()]


@dataclass
class Stack:
    stack_id: str
    name: str
    status: str
    created: datetime
    template: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    role_arn: str | None = None
    status_reason: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    # (logical id, type, status, reason) steps still to happen, one per DescribeStacks
    pending: list[tuple[str, str, str, str]] = field(default_factory=list)
    token: str | None = None  # ClientRequestToken of the operation in progress
    on_success: Any = None  # applied when the last pending step is reached


@dataclass
class ChangeSet:
    change_set_id: str
    name: str
    stack_id: str
    change_type: str
    template: str
    parameters: dict[str, str]
    tags: dict[str, str]
    changes: list[dict[str, Any]]
    status: str = "CREATE_PENDING"
    reason: str = ""
    execution: str = "UNAVAILABLE"
    on_stack_failure: str = "ROLLBACK"
    final_status: str = "CREATE_COMPLETE"
    description: str = ""


class FakeCloudFormation:
    """See the module docstring. ``outcomes``: what the next operations do ("success", "fail"
    = a resource fails and the rollback succeeds, "fail-rollback-fails"); default success."""

    def __init__(
        self,
        account: str = "222222222222",
        region: str = "eu-west-1",
        *,
        page_size: int = 100,
        assumable_roles: set[str] | None = None,
    ) -> None:
        self.account = account
        self.region = region
        self.page_size = page_size
        self.assumable_roles = assumable_roles
        self.stacks: dict[str, Stack] = {}  # by stack id
        self.change_sets: dict[str, ChangeSet] = {}  # by id
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.outcomes: list[str] = []
        self._clock = 0

    # ------------------------------------------------------------------ plumbing

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-parameter-build.cloudformation", self._capture)
        client.meta.events.register("before-call.cloudformation", self._answer)
        return client

    @staticmethod
    def _capture(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["fake_cloudformation_params"] = copy.deepcopy(params)

    def _answer(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[Any, Any]:
        # botocore validated the request against the model between the two events.
        params = context.pop("fake_cloudformation_params")
        self.calls.append((model.name, params))
        handler = getattr(self, "_" + _snake(model.name), None)
        assert handler is not None, f"the fake does not implement {model.name}"
        try:
            body = handler(**params)
        except FakeError as exc:
            error = {"Error": {"Code": exc.code, "Message": exc.message, "Type": "Sender"}}
            error["ResponseMetadata"] = {"HTTPStatusCode": 400}
            return AWSResponse(None, 400, {}, None), error
        report = ParamValidator().validate(body, model.output_shape) if model.output_shape else None
        assert report is None or not report.has_errors(), report.generate_report()
        body["ResponseMetadata"] = {"HTTPStatusCode": 200}
        return AWSResponse(None, 200, {}, None), body

    def _now(self) -> datetime:
        self._clock += 1
        return EPOCH + timedelta(seconds=self._clock)

    def _arn(self, kind: str, name: str) -> str:
        return f"arn:aws:cloudformation:{self.region}:{self.account}:{kind}/{name}/{uuid.uuid4()}"

    def _live(self, name_or_id: str) -> Stack:
        stack = self._find(name_or_id)
        if stack is None:
            raise FakeError("ValidationError", f"Stack with id {name_or_id} does not exist")
        return stack

    def _find(self, name_or_id: str) -> Stack | None:
        if name_or_id in self.stacks:
            return self.stacks[name_or_id]  # by id: deleted stacks too
        for stack in self.stacks.values():
            if stack.name == name_or_id and stack.status != "DELETE_COMPLETE":
                return stack
        return None

    def _event(self, stack: Stack, logical: str, rtype: str, status: str, reason: str) -> None:
        event = {
            "StackId": stack.stack_id,
            "EventId": str(uuid.uuid4()),
            "StackName": stack.name,
            "LogicalResourceId": logical,
            "ResourceType": rtype,
            "Timestamp": self._now(),
            "ResourceStatus": status,
        }
        if reason:
            event["ResourceStatusReason"] = reason
        if stack.token:
            event["ClientRequestToken"] = stack.token
        stack.events.append(event)
        if logical == stack.name and rtype == "AWS::CloudFormation::Stack":
            stack.status = status
            stack.status_reason = reason

    def _start(self, stack: Stack, steps: list[tuple[str, str, str, str]], token: str | None):
        stack.token = token
        first, *rest = steps
        self._event(stack, *first)
        stack.pending = rest

    def _advance(self, stack: Stack) -> None:
        if stack.pending:
            self._event(stack, *stack.pending.pop(0))
            if not stack.pending:
                if stack.on_success and stack.status in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
                    stack.on_success()
                stack.on_success = None
                stack.token = None

    def _outcome(self) -> str:
        return self.outcomes.pop(0) if self.outcomes else "success"

    def _stack_shape(self, stack: Stack) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "StackId": stack.stack_id,
            "StackName": stack.name,
            "CreationTime": stack.created,
            "StackStatus": stack.status,
            "Tags": [{"Key": k, "Value": v} for k, v in stack.tags.items()],
            "Parameters": [
                {"ParameterKey": k, "ParameterValue": v} for k, v in stack.parameters.items()
            ],
        }
        if stack.status_reason:
            shape["StackStatusReason"] = stack.status_reason
        if stack.role_arn:
            shape["RoleARN"] = stack.role_arn
        if stack.status in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"):
            shape["Outputs"] = [
                {"OutputKey": "StackVersion", "OutputValue": str(len(stack.events))}
            ]
        return shape

    def _role(self, stack: Stack, role_arn: str | None) -> None:
        if role_arn is None:
            return
        if self.assumable_roles is not None and role_arn not in self.assumable_roles:
            raise FakeError("ValidationError", f"Role {role_arn} is invalid or cannot be assumed")
        stack.role_arn = role_arn  # "CloudFormation uses this role for all future operations"

    # ------------------------------------------------------------------ operations

    def _describe_stacks(self, StackName: str, **_: Any) -> dict[str, Any]:
        stack = self._live(StackName)
        self._advance(stack)
        return {"Stacks": [self._stack_shape(stack)]}

    def _describe_stack_events(
        self, StackName: str, NextToken: str | None = None, **_: Any
    ) -> dict[str, Any]:
        stack = self._live(StackName)
        newest_first = list(reversed(stack.events))
        start = int(NextToken or 0)
        page = newest_first[start : start + self.page_size]
        body: dict[str, Any] = {"StackEvents": page}
        if start + self.page_size < len(newest_first):
            body["NextToken"] = str(start + self.page_size)
        return body

    def _create_change_set(
        self,
        StackName: str,
        ChangeSetName: str,
        TemplateBody: str,
        ChangeSetType: str = "UPDATE",
        Parameters: list[dict[str, str]] | None = None,
        Tags: list[dict[str, str]] | None = None,
        RoleARN: str | None = None,
        OnStackFailure: str | None = None,
        Description: str = "",
        **_: Any,
    ) -> dict[str, Any]:
        stack = self._find(StackName)
        if OnStackFailure == "DELETE" and ChangeSetType != "CREATE":
            raise FakeError(
                "ValidationError", "OnStackFailure DELETE is only valid with ChangeSetType CREATE"
            )
        if ChangeSetType == "CREATE":
            if stack is not None and stack.status != "REVIEW_IN_PROGRESS":
                raise FakeError(
                    "ValidationError",
                    f"Stack [{StackName}] already exists and cannot be created again with the "
                    f"changeSet [{ChangeSetName}].",
                )
            if stack is None:
                stack = Stack(
                    self._arn("stack", StackName), StackName, "REVIEW_IN_PROGRESS", self._now()
                )
                self.stacks[stack.stack_id] = stack
                self._event(
                    stack,
                    StackName,
                    "AWS::CloudFormation::Stack",
                    "REVIEW_IN_PROGRESS",
                    "User Initiated",
                )
        else:
            if stack is None:
                raise FakeError("ValidationError", f"Stack [{StackName}] does not exist")
            if stack.status in (
                "REVIEW_IN_PROGRESS",
                "ROLLBACK_COMPLETE",
                "ROLLBACK_FAILED",
                "UPDATE_ROLLBACK_FAILED",
                "DELETE_FAILED",
            ) or stack.status.endswith("_IN_PROGRESS"):
                raise FakeError(
                    "ValidationError",
                    f"Stack:{stack.stack_id} is in {stack.status} state and can not be updated.",
                )
        if any(
            cs.name == ChangeSetName and cs.stack_id == stack.stack_id
            for cs in self.change_sets.values()
        ):
            raise FakeError("AlreadyExistsException", f"ChangeSet {ChangeSetName} already exists")
        self._role(stack, RoleARN)
        parameters = {p["ParameterKey"]: p["ParameterValue"] for p in Parameters or []}
        tags = {t["Key"]: t["Value"] for t in Tags or []}
        resources = _resources(TemplateBody)
        if ChangeSetType == "CREATE":
            changes = [_change("Add", name, rtype, []) for name, rtype in resources]
        else:
            scope = []
            if TemplateBody != stack.template or parameters != stack.parameters:
                scope.append("Properties")
            if tags != stack.tags:
                scope.append("Tags")  # stack tags propagate to every resource
            changes = (
                [_change("Modify", name, rtype, scope) for name, rtype in resources]
                if scope
                else []
            )
        change_set = ChangeSet(
            self._arn("changeSet", ChangeSetName), ChangeSetName, stack.stack_id, ChangeSetType,
            TemplateBody, parameters, tags, changes,
            on_stack_failure=OnStackFailure or "ROLLBACK", description=Description,
        )  # fmt: skip
        if not changes:
            change_set.final_status, change_set.reason = "FAILED", NO_CHANGES
        self.change_sets[change_set.change_set_id] = change_set
        return {"Id": change_set.change_set_id, "StackId": stack.stack_id}

    def _change_set(self, name: str) -> ChangeSet:
        if name not in self.change_sets:
            raise FakeError("ChangeSetNotFound", f"ChangeSet [{name}] does not exist")
        return self.change_sets[name]

    def _describe_change_set(
        self, ChangeSetName: str, NextToken: str | None = None, **_: Any
    ) -> dict[str, Any]:
        change_set = self._change_set(ChangeSetName)
        if change_set.status == "CREATE_PENDING":
            change_set.status = "CREATE_IN_PROGRESS"
        elif change_set.status == "CREATE_IN_PROGRESS":
            change_set.status = change_set.final_status
            change_set.execution = (
                "AVAILABLE" if change_set.status == "CREATE_COMPLETE" else "UNAVAILABLE"
            )
        stack = self.stacks[change_set.stack_id]
        start = int(NextToken.rsplit("|", 1)[1]) if NextToken else 0
        body: dict[str, Any] = {
            "ChangeSetName": change_set.name,
            "ChangeSetId": change_set.change_set_id,
            "StackId": stack.stack_id,
            "StackName": stack.name,
            "Status": change_set.status,
            "ExecutionStatus": change_set.execution,
            "Changes": change_set.changes[start : start + self.page_size],
        }
        if change_set.description:
            body["Description"] = change_set.description
        if change_set.reason and change_set.status == "FAILED":
            body["StatusReason"] = change_set.reason
        if start + self.page_size < len(change_set.changes):
            body["NextToken"] = f"{change_set.change_set_id}|{start + self.page_size}"
        return body

    def _delete_change_set(self, ChangeSetName: str, **_: Any) -> dict[str, Any]:
        self._change_set(ChangeSetName)
        del self.change_sets[ChangeSetName]
        return {}

    def _execute_change_set(
        self, ChangeSetName: str, ClientRequestToken: str | None = None, **_: Any
    ) -> dict[str, Any]:
        change_set = self._change_set(ChangeSetName)
        if change_set.execution != "AVAILABLE":
            raise FakeError(
                "InvalidChangeSetStatus",
                f"ChangeSet [{change_set.change_set_id}] cannot be executed in its current "
                f"status of [{change_set.status}]",
            )
        stack = self.stacks[change_set.stack_id]
        change_set.execution = "EXECUTE_IN_PROGRESS"
        for other in [c for c in self.change_sets.values() if c.stack_id == stack.stack_id]:
            if other is not change_set:
                del self.change_sets[other.change_set_id]
        resources = [
            (c["ResourceChange"]["LogicalResourceId"], c["ResourceChange"]["ResourceType"])
            for c in change_set.changes
        ]
        outcome = self._outcome()
        me = (stack.name, "AWS::CloudFormation::Stack")
        if change_set.change_type == "CREATE":
            steps = [(*me, "CREATE_IN_PROGRESS", "User Initiated")]
            if outcome == "success":
                for name, rtype in resources:
                    steps += [
                        (name, rtype, "CREATE_IN_PROGRESS", ""),
                        (name, rtype, "CREATE_COMPLETE", ""),
                    ]
                steps.append((*me, "CREATE_COMPLETE", ""))
            else:
                name, rtype = resources[0]
                failure = f'Resource handler returned message: "{name} failed"'
                steps += [
                    (name, rtype, "CREATE_IN_PROGRESS", ""),
                    (name, rtype, "CREATE_FAILED", failure),
                ]
                if change_set.on_stack_failure == "DELETE":
                    steps += [
                        (
                            *me,
                            "DELETE_IN_PROGRESS",
                            "The following resource(s) failed to create: ["
                            + name
                            + "]. Delete requested by user.",
                        ),
                        (name, rtype, "DELETE_COMPLETE", ""),
                        (*me, "DELETE_COMPLETE", ""),
                    ]
                else:
                    steps += [
                        (
                            *me,
                            "ROLLBACK_IN_PROGRESS",
                            "The following resource(s) failed to create: [" + name + "].",
                        ),
                        (name, rtype, "DELETE_COMPLETE", ""),
                        (*me, "ROLLBACK_COMPLETE", ""),
                    ]
        else:
            steps = [(*me, "UPDATE_IN_PROGRESS", "User Initiated")]
            if outcome == "success":
                for name, rtype in resources:
                    steps += [
                        (name, rtype, "UPDATE_IN_PROGRESS", ""),
                        (name, rtype, "UPDATE_COMPLETE", ""),
                    ]
                steps += [
                    (*me, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", ""),
                    (*me, "UPDATE_COMPLETE", ""),
                ]
            else:
                name, rtype = resources[0]
                steps += [
                    (name, rtype, "UPDATE_IN_PROGRESS", ""),
                    (name, rtype, "UPDATE_FAILED", f"{name} failed to update"),
                ]
                steps += self._rollback_steps(stack, name, rtype, outcome == "fail")
        self._start(stack, steps, ClientRequestToken)

        def adopt() -> None:
            stack.template = change_set.template
            stack.parameters = dict(change_set.parameters)
            stack.tags = dict(change_set.tags)
            change_set.execution = "EXECUTE_COMPLETE"

        stack.on_success = adopt
        return {}

    def _rollback_steps(
        self, stack: Stack, name: str, rtype: str, succeeds: bool
    ) -> list[tuple[str, str, str, str]]:
        me = (stack.name, "AWS::CloudFormation::Stack")
        steps = [
            (
                *me,
                "UPDATE_ROLLBACK_IN_PROGRESS",
                f"The following resource(s) failed to update: [{name}].",
            )
        ]
        if succeeds:
            steps += [
                (name, rtype, "UPDATE_COMPLETE", ""),
                (*me, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", ""),
                (*me, "UPDATE_ROLLBACK_COMPLETE", ""),
            ]
        else:
            steps += [
                (name, rtype, "UPDATE_FAILED", f"{name} could not be rolled back"),
                (
                    *me,
                    "UPDATE_ROLLBACK_FAILED",
                    f"The following resource(s) failed to update: [{name}].",
                ),
            ]
        return steps

    def _continue_update_rollback(
        self,
        StackName: str,
        RoleARN: str | None = None,
        ClientRequestToken: str | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        stack = self._live(StackName)
        if stack.status != "UPDATE_ROLLBACK_FAILED":
            raise FakeError(
                "ValidationError",
                f"Stack:{stack.stack_id} is in {stack.status} state and can not continue "
                "its rollback",
            )
        self._role(stack, RoleARN)
        failed = next(
            (e for e in reversed(stack.events) if e["ResourceStatus"] == "UPDATE_FAILED"),
            {"LogicalResourceId": stack.name, "ResourceType": "AWS::CloudFormation::Stack"},
        )
        steps = self._rollback_steps(
            stack, failed["LogicalResourceId"], failed["ResourceType"], self._outcome() == "success"
        )
        self._start(stack, steps, ClientRequestToken)
        return {}

    def _delete_stack(
        self,
        StackName: str,
        RoleARN: str | None = None,
        ClientRequestToken: str | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        stack = self._find(StackName)
        if stack is None or stack.status == "DELETE_COMPLETE":
            return {}  # deleting a stack that does not exist succeeds
        self._role(stack, RoleARN)
        me = (stack.name, "AWS::CloudFormation::Stack")
        self._start(
            stack,
            [(*me, "DELETE_IN_PROGRESS", "User Initiated"), (*me, "DELETE_COMPLETE", "")],
            ClientRequestToken,
        )
        return {}

    # ------------------------------------------------------------------ test helpers

    def stack(self, name: str) -> Stack:
        found = self._find(name)
        assert found is not None, name
        return found

    def calls_of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == operation]

    def put_stack(self, name: str, status: str, template: str = "{}", **fields: Any) -> Stack:
        """A stack left in ``status`` by an earlier run (or by hand)."""
        stack = Stack(
            self._arn("stack", name), name, status, self._now(), template=template, **fields
        )
        self.stacks[stack.stack_id] = stack
        self._event(stack, name, "AWS::CloudFormation::Stack", status, "left by an earlier run")
        if status == "UPDATE_ROLLBACK_FAILED":
            self._event(
                stack,
                "Endpoint",
                "AWS::SageMaker::Endpoint",
                "UPDATE_FAILED",
                "Endpoint could not be rolled back",
            )
            self._event(
                stack,
                name,
                "AWS::CloudFormation::Stack",
                status,
                "The following resource(s) failed to update: [Endpoint].",
            )
        return stack


def _change(action: str, name: str, rtype: str, scope: list[str]) -> dict[str, Any]:
    change: dict[str, Any] = {
        "Type": "Resource",
        "ResourceChange": {
            "Action": action,
            "LogicalResourceId": name,
            "ResourceType": rtype,
            "Scope": scope,
        },
    }
    if action == "Modify":
        change["ResourceChange"]["Replacement"] = "False"
    return change


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
