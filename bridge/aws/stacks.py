"""CloudFormation through change sets: create or update, print each stack event once, wait to
the end, report a rollback as a failure with its reason. Shared by deploys and infra.

States a stack can be left in, and what ``deploy_stack`` does about them first (CloudFormation
API reference and user guide):

* ``UPDATE_ROLLBACK_FAILED`` (a failed update could not roll back): ``ContinueUpdateRollback``,
  wait for ``UPDATE_ROLLBACK_COMPLETE``, then update; if the rollback fails again, stop and say
  which resources to fix or skip.
* ``ROLLBACK_COMPLETE`` (its first creation failed): such a stack cannot be updated and holds no
  resources, so it is deleted (``DeleteStack``) and created again. New stacks are created with
  ``OnStackFailure=DELETE`` (CreateChangeSet, CREATE only), so a failed first creation removes
  the stack itself and the next run starts afresh.
* ``ROLLBACK_FAILED``: resources may be left behind; refused, for a person to look at.

A CloudFormation service role (``role_arn``) is sent with every operation that starts work
(CreateChangeSet, ContinueUpdateRollback, DeleteStack): CloudFormation then acts with that role,
not with the caller's session, so a long update outlives the caller's (chained, one-hour)
credentials. The stack is followed by its id, which stays valid after a deletion.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from bridge.aws.errors import aws_call, describe, error_code
from bridge.aws.tags import tag_list
from bridge.errors import ServiceError, UserError, WaitTimeout

IN_PROGRESS_SUFFIX = "_IN_PROGRESS"
GOOD_END = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"})
# A stack whose first creation failed and rolled back: it cannot be updated, only deleted.
FAILED_FIRST_CREATE = "ROLLBACK_COMPLETE"
# Its rollback failed too: resources may be left; a person has to look.
LEFT_OVER = frozenset({"ROLLBACK_FAILED"})
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
# botocore's CloudFormation model: ClientRequestToken [a-zA-Z0-9][-a-zA-Z0-9]*, 1-128.
_TOKEN = re.compile(r"[a-zA-Z0-9][-a-zA-Z0-9]*")
_TOKEN_MAX = 128
_DESCRIPTION_MAX = 1024  # CreateChangeSet Description


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


def _stack(cfn: Any, name_or_id: str) -> dict[str, Any] | None:
    response = aws_call(
        f"DescribeStacks {name_or_id}",
        cfn.describe_stacks,
        tolerate=_does_not_exist,
        StackName=name_or_id,
    )
    return response["Stacks"][0] if response else None


def _does_not_exist(exc: ClientError) -> bool:
    return error_code(exc) == "ValidationError" and "does not exist" in describe(exc)


def _outputs(stack: Mapping[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}


def _changes(changes: list[Mapping[str, Any]]) -> list[dict[str, str]]:
    summary = []
    for change in changes:
        resource = change.get("ResourceChange", {})
        summary.append(
            {
                "action": resource.get("Action", ""),
                "logical_id": resource.get("LogicalResourceId", ""),
                "type": resource.get("ResourceType", ""),
                "replacement": str(resource.get("Replacement", "")),
                "scope": ",".join(resource.get("Scope", [])),
            }
        )
    return summary


def _all_changes(cfn: Any, change_set_id: str, first_page: Mapping[str, Any]) -> list[Any]:
    """Every change of a change set: DescribeChangeSet pages its Changes with NextToken."""
    changes = list(first_page.get("Changes", []))
    token = first_page.get("NextToken")
    seen: set[str] = set()
    while token and token not in seen:
        seen.add(token)
        page = aws_call(
            "DescribeChangeSet",
            cfn.describe_change_set,
            ChangeSetName=change_set_id,
            NextToken=token,
        )
        changes.extend(page.get("Changes", []))
        token = page.get("NextToken")
    return changes


class EventPrinter:
    """Prints each stack event once, oldest first, from a point in time on."""

    def __init__(self, cfn: Any, stack: str, progress: Callable[[str], None]) -> None:
        self._cfn = cfn
        self._stack = stack  # a stack id: its events stay readable after a deletion
        self._progress = progress
        self._seen: set[str] = set()
        self.failures: list[str] = []
        self.printed = 0

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
        self.printed += len(fresh)
        return len(fresh)

    def reason(self, stack: Mapping[str, Any] | None) -> str:
        if self.failures:
            return self.failures[0]
        return (stack or {}).get("StackStatusReason", "no reason given")


def request_token(run_id: str | None, kind: str) -> dict[str, str]:
    """``ClientRequestToken`` for one operation of this run (the stack's events carry it, which
    ties them to the run); none without a run id or if the id does not fit the model."""
    if not run_id:
        return {}
    token = f"{run_id}-{kind}"
    if len(token) > _TOKEN_MAX or not _TOKEN.fullmatch(token):
        return {}
    return {"ClientRequestToken": token}


class _Deployment:
    """Shared state of one ``deploy_stack`` call: clock, deadline, role, run id."""

    def __init__(
        self,
        cfn: Any,
        stack_name: str,
        progress: Callable[[str], None],
        role_arn: str | None,
        run_id: str | None,
        timeout_seconds: float,
        poll_seconds: float,
        sleep: Callable[[float], None],
        monotonic: Callable[[], float],
    ) -> None:
        self.cfn = cfn
        self.name = stack_name
        self.progress = progress
        self.service_role = {"RoleARN": role_arn} if role_arn else {}
        self.run_id = run_id
        self.timeout = timeout_seconds
        self.poll_seconds = poll_seconds
        self.sleep = sleep
        self.monotonic = monotonic
        self.started = monotonic()

    def check_deadline(self, what: str) -> None:
        if self.monotonic() - self.started > self.timeout:
            raise WaitTimeout(f"stack {self.name}: still {what} after the timeout")

    def wait(self, stack_id: str, printer: EventPrinter) -> tuple[str, dict[str, Any] | None]:
        """Poll until the stack is no longer ``*_IN_PROGRESS``; its last status and stack."""
        while True:
            printer.poll()
            stack = _stack(self.cfn, stack_id)
            # Described by id, a deleted stack answers DELETE_COMPLETE; by name it is gone.
            status = stack["StackStatus"] if stack else "DELETE_COMPLETE"
            if not status.endswith(IN_PROGRESS_SUFFIX):
                printer.poll()
                return status, stack
            self.check_deadline(status)
            self.sleep(self.poll_seconds)

    def recover(self, stack: dict[str, Any]) -> dict[str, Any] | None:
        """Bring a stack left in a failed state back to one a change set can work on; the
        stack afterwards, or None when it had to be deleted."""
        status = stack["StackStatus"]
        stack_id = stack.get("StackId") or self.name
        if status in LEFT_OVER:
            raise UserError(
                f"stack {self.name} is {status} (its first creation failed and so did the "
                "rollback: resources may be left); check them, delete the stack (aws "
                f"cloudformation delete-stack --stack-name {self.name}) and rerun"
            )
        if status == "UPDATE_ROLLBACK_FAILED":
            self.progress(
                f"stack {self.name} is UPDATE_ROLLBACK_FAILED (an update's rollback could not "
                "finish): continuing the rollback first (ContinueUpdateRollback)"
            )
            printer = EventPrinter(self.cfn, stack_id, self.progress)
            printer.skip_existing()
            aws_call(
                f"ContinueUpdateRollback {self.name}",
                self.cfn.continue_update_rollback,
                StackName=stack_id,
                **self.service_role,
                **request_token(self.run_id, f"rollback-{uuid.uuid4().hex[:8]}"),
            )
            status, after = self.wait(stack_id, printer)
            if status != "UPDATE_ROLLBACK_COMPLETE" or after is None:
                raise StackFailed(
                    f"stack {self.name}: continuing its rollback ended {status}: "
                    f"{printer.reason(after)}; fix the resource named there, or skip it (aws "
                    f"cloudformation continue-update-rollback --stack-name {self.name} "
                    "--resources-to-skip <logical id>), then rerun"
                )
            self.progress(f"stack {self.name}: rolled back (UPDATE_ROLLBACK_COMPLETE)")
            return after
        if status == FAILED_FIRST_CREATE:
            self.progress(
                f"stack {self.name} is ROLLBACK_COMPLETE (its first creation failed; it holds "
                "no resources and cannot be updated): deleting it to create it again"
            )
            printer = EventPrinter(self.cfn, stack_id, self.progress)
            printer.skip_existing()
            aws_call(
                f"DeleteStack {self.name}",
                self.cfn.delete_stack,
                StackName=stack_id,
                **self.service_role,
                **request_token(self.run_id, f"delete-{uuid.uuid4().hex[:8]}"),
            )
            status, after = self.wait(stack_id, printer)
            if status != "DELETE_COMPLETE":
                raise StackFailed(
                    f"stack {self.name}: deleting the failed stack ended {status}: "
                    f"{printer.reason(after)}; delete it by hand and rerun"
                )
            return None
        return stack


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
    run_id: str | None = None,
    description: str = "smbridge deploy",
    timeout_seconds: float = 3 * 3600,
    poll_seconds: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> StackResult:
    """Create or update ``stack_name`` through a change set and wait for the end.

    ``role_arn``: the CloudFormation service role (infra/deploy-role.yaml), so that
    CloudFormation works with its own credentials and the caller's need to last only for the
    API calls. ``run_id``: who deploys (e.g. the Azure DevOps build); it goes into the
    operations' ``ClientRequestToken`` (every stack event carries it) and is never a stack tag,
    so a redeploy of the same version by a new run is "unchanged". ``tags`` must be the same
    for every run of the same version: a change of stack tags alone makes a change set that
    updates every resource's tags.
    """
    op = _Deployment(
        cfn, stack_name, progress, role_arn, run_id, timeout_seconds, poll_seconds, sleep, monotonic
    )
    existing = _stack(cfn, stack_name)
    if existing is not None:
        existing = op.recover(existing)
    busy = existing is not None and existing["StackStatus"].endswith(IN_PROGRESS_SUFFIX)
    if busy and existing["StackStatus"] != "REVIEW_IN_PROGRESS":
        raise ServiceError(
            f"stack {stack_name} is busy ({existing['StackStatus']}); wait for it and rerun"
        )
    updating = existing is not None and existing["StackStatus"] != "REVIEW_IN_PROGRESS"
    change_type = "UPDATE" if updating else "CREATE"
    change_set_name = f"smbridge-{uuid.uuid4().hex[:12]}"
    # CREATE only (botocore's model): a failed first creation deletes the stack.
    on_failure = {} if updating else {"OnStackFailure": "DELETE"}
    created = aws_call(
        f"CreateChangeSet {stack_name}",
        cfn.create_change_set,
        # an update without changes: CloudFormation (or moto) may refuse it right here
        tolerate=lambda exc: updating and any(marker in describe(exc) for marker in NO_CHANGES),
        **op.service_role,
        **on_failure,
        StackName=stack_name,
        ChangeSetName=change_set_name,
        ChangeSetType=change_type,
        TemplateBody=template_body,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Tags=tag_list(tags),
        Capabilities=list(capabilities),
        Description=description[:_DESCRIPTION_MAX] or "smbridge deploy",
    )
    if created is None:
        assert existing is not None
        progress(f"stack {stack_name}: no changes")
        return StackResult(stack_name, existing["StackStatus"], "unchanged", _outputs(existing))
    change_set_id = created["Id"]
    stack_id = (existing or {}).get("StackId") or created.get("StackId") or stack_name
    while True:
        change_set = aws_call(
            "DescribeChangeSet", cfn.describe_change_set, ChangeSetName=change_set_id
        )
        status = change_set.get("Status", "")
        if status == "CREATE_COMPLETE":
            break
        if status == "FAILED":
            reason = change_set.get("StatusReason", "")
            if updating and any(marker in reason for marker in NO_CHANGES):
                aws_call("DeleteChangeSet", cfn.delete_change_set, ChangeSetName=change_set_id)
                progress(f"stack {stack_name}: no changes")
                assert existing is not None
                return StackResult(
                    stack_name, existing["StackStatus"], "unchanged", _outputs(existing)
                )
            raise StackFailed(f"change set for {stack_name} failed: {reason}")
        op.check_deadline(f"creating its change set ({status})")
        sleep(poll_seconds)
    changes = _changes(_all_changes(cfn, change_set_id, change_set))
    for change in changes:
        replacement = " (replacement)" if change["replacement"] == "True" else ""
        scope = f" [{change['scope']}]" if change["scope"] else ""
        progress(
            f"change: {change['action']} {change['logical_id']} ({change['type']})"
            f"{replacement}{scope}"
        )
    printer = EventPrinter(cfn, stack_id, progress)
    if existing:
        printer.skip_existing()
    aws_call(
        "ExecuteChangeSet",
        cfn.execute_change_set,
        ChangeSetName=change_set_id,
        **request_token(run_id, change_set_name),
    )
    status, stack = op.wait(stack_id, printer)
    if status not in GOOD_END:
        if not updating and status == "DELETE_COMPLETE":
            raise StackFailed(
                f"stack {stack_name}: its creation failed and CloudFormation deleted it "
                f"(OnStackFailure=DELETE; the next deploy creates it afresh): "
                f"{printer.reason(stack)}"
            )
        later = (
            "; the next deploy continues the rollback first"
            if status == "UPDATE_ROLLBACK_FAILED"
            else ""
        )
        raise StackFailed(f"stack {stack_name} ended {status}: {printer.reason(stack)}{later}")
    action = "created" if change_type == "CREATE" else "updated"
    assert stack is not None
    return StackResult(
        stack_name, status, action, _outputs(stack), change_set_id, changes, printer.printed
    )
