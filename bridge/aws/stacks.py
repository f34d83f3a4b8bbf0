"""CloudFormation through change sets: create or update, print each stack event once, wait to
the end, report a rollback as a failure with its reason. Shared by deploys and infra."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from bridge.aws.errors import aws_call, describe, error_code
from bridge.errors import ServiceError, UserError, WaitTimeout

IN_PROGRESS_SUFFIX = "_IN_PROGRESS"
GOOD_END = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"})
# A stack that failed its first creation cannot be updated: it has to be deleted first.
DEAD_ON_ARRIVAL = frozenset({"ROLLBACK_COMPLETE", "ROLLBACK_FAILED"})
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")


class StackFailed(ServiceError):
    """The stack ended in a failed or rolled-back state."""


@dataclass
class StackResult:
    stack_name: str
    status: str
    action: str  # created | updated | unchanged
    outputs: dict[str, str] = field(default_factory=dict)
    change_set_id: str = ""
    changes: list[dict[str, str]] = field(default_factory=list)
    events_seen: int = 0


def _stack(cfn: Any, name: str) -> dict[str, Any] | None:
    response = aws_call(
        f"DescribeStacks {name}",
        cfn.describe_stacks,
        tolerate=_does_not_exist,
        StackName=name,
    )
    return response["Stacks"][0] if response else None


def _does_not_exist(exc: ClientError) -> bool:
    return error_code(exc) == "ValidationError" and "does not exist" in describe(exc)


def _outputs(stack: Mapping[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}


def _changes(change_set: Mapping[str, Any]) -> list[dict[str, str]]:
    changes = []
    for change in change_set.get("Changes", []):
        resource = change.get("ResourceChange", {})
        changes.append(
            {
                "action": resource.get("Action", ""),
                "logical_id": resource.get("LogicalResourceId", ""),
                "type": resource.get("ResourceType", ""),
                "replacement": str(resource.get("Replacement", "")),
            }
        )
    return changes


class EventPrinter:
    """Prints each stack event once, oldest first, from a point in time on."""

    def __init__(self, cfn: Any, stack_name: str, progress: Callable[[str], None]) -> None:
        self._cfn = cfn
        self._stack = stack_name
        self._progress = progress
        self._seen: set[str] = set()
        self.failures: list[str] = []

    def skip_existing(self) -> None:
        for event in self._events():
            self._seen.add(event["EventId"])

    def _events(self) -> list[dict[str, Any]]:
        def unseen() -> list[dict[str, Any]]:
            pages = self._cfn.get_paginator("describe_stack_events").paginate(StackName=self._stack)
            events: list[dict[str, Any]] = []
            for page in pages:
                fresh = [e for e in page.get("StackEvents", []) if e["EventId"] not in self._seen]
                events.extend(fresh)
                if len(fresh) < len(page.get("StackEvents", [])):
                    break  # newest first: the rest were seen before
            return events

        return (
            aws_call(f"DescribeStackEvents {self._stack}", unseen, tolerate=_does_not_exist) or []
        )

    def poll(self) -> int:
        fresh = self._events()
        for event in reversed(fresh):  # the API lists newest first
            self._seen.add(event["EventId"])
            status = event.get("ResourceStatus", "")
            reason = event.get("ResourceStatusReason", "")
            line = f"{event.get('LogicalResourceId', '?')} ({event.get('ResourceType', '')}): "
            self._progress(line + status + (f": {reason}" if reason else ""))
            if status.endswith("_FAILED") and reason and "cancelled" not in reason.lower():
                self.failures.append(f"{event.get('LogicalResourceId')}: {reason}")
        return len(fresh)


def deploy_stack(
    cfn: Any,
    *,
    stack_name: str,
    template_body: str,
    parameters: Mapping[str, str],
    tags: Mapping[str, str],
    progress: Callable[[str], None],
    capabilities: tuple[str, ...] = (),
    role_arn: str | None = None,
    timeout_seconds: float = 3 * 3600,
    poll_seconds: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> StackResult:
    """Create or update ``stack_name`` through a change set and wait for the end.

    ``role_arn``: a CloudFormation service role (infra/deploy-role.yaml's optional one), so the
    caller itself needs no rights on the stack's resources.
    """
    existing = _stack(cfn, stack_name)
    if existing and existing["StackStatus"] in DEAD_ON_ARRIVAL:
        raise UserError(
            f"stack {stack_name} is {existing['StackStatus']} (its first creation failed); "
            f"delete it (aws cloudformation delete-stack --stack-name {stack_name}) and rerun"
        )
    busy = existing is not None and existing["StackStatus"].endswith(IN_PROGRESS_SUFFIX)
    if busy and existing["StackStatus"] != "REVIEW_IN_PROGRESS":
        raise ServiceError(
            f"stack {stack_name} is busy ({existing['StackStatus']}); wait for it and rerun"
        )
    change_type = (
        "UPDATE" if existing and existing["StackStatus"] != "REVIEW_IN_PROGRESS" else "CREATE"
    )
    change_set_name = f"smbridge-{uuid.uuid4().hex[:12]}"
    service_role = {"RoleARN": role_arn} if role_arn else {}
    created = aws_call(
        f"CreateChangeSet {stack_name}",
        cfn.create_change_set,
        # an update without changes: CloudFormation (or moto) may refuse it right here
        tolerate=lambda exc: (
            existing is not None and any(marker in describe(exc) for marker in NO_CHANGES)
        ),
        **service_role,
        StackName=stack_name,
        ChangeSetName=change_set_name,
        ChangeSetType=change_type,
        TemplateBody=template_body,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        Capabilities=list(capabilities),
        Description="smbridge deploy",
    )
    if created is None:
        assert existing is not None
        progress(f"stack {stack_name}: no changes")
        return StackResult(stack_name, existing["StackStatus"], "unchanged", _outputs(existing))
    change_set_id = created["Id"]
    started = monotonic()
    while True:
        change_set = aws_call(
            "DescribeChangeSet", cfn.describe_change_set, ChangeSetName=change_set_id
        )
        status = change_set.get("Status", "")
        if status == "CREATE_COMPLETE":
            break
        if status == "FAILED":
            reason = change_set.get("StatusReason", "")
            if any(marker in reason for marker in NO_CHANGES):
                aws_call("DeleteChangeSet", cfn.delete_change_set, ChangeSetName=change_set_id)
                progress(f"stack {stack_name}: no changes")
                assert existing is not None
                return StackResult(
                    stack_name, existing["StackStatus"], "unchanged", _outputs(existing)
                )
            raise StackFailed(f"change set for {stack_name} failed: {reason}")
        if monotonic() - started > timeout_seconds:
            raise WaitTimeout(f"change set for {stack_name} still {status} after the timeout")
        sleep(poll_seconds)
    changes = _changes(change_set)
    for change in changes:
        replacement = " (replacement)" if change["replacement"] == "True" else ""
        progress(
            f"change: {change['action']} {change['logical_id']} ({change['type']}){replacement}"
        )
    printer = EventPrinter(cfn, stack_name, progress)
    if existing:
        printer.skip_existing()
    aws_call("ExecuteChangeSet", cfn.execute_change_set, ChangeSetName=change_set_id)
    events = 0
    while True:
        events += printer.poll()
        stack = _stack(cfn, stack_name)
        status = stack["StackStatus"] if stack else "DELETE_COMPLETE"
        if not status.endswith(IN_PROGRESS_SUFFIX):
            events += printer.poll()
            break
        if monotonic() - started > timeout_seconds:
            raise WaitTimeout(f"stack {stack_name} still {status} after the timeout")
        sleep(poll_seconds)
    if status not in GOOD_END:
        reason = (
            printer.failures[0]
            if printer.failures
            else (stack or {}).get("StackStatusReason", "no reason given")
        )
        raise StackFailed(f"stack {stack_name} ended {status}: {reason}")
    action = "created" if change_type == "CREATE" else "updated"
    assert stack is not None
    return StackResult(stack_name, status, action, _outputs(stack), change_set_id, changes, events)
