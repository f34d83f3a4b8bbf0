"""CloudFormation through change sets: create or update, print each stack event once, wait to
the end, report a rollback as a failure with its reason. Shared by deploys and infra.

States a stack can be left in, and what ``deploy_stack`` does about them first (CloudFormation
API reference and user guide):

* ``*_IN_PROGRESS`` but ``REVIEW_IN_PROGRESS`` (an operation under way: CloudFormation goes on
  with it when the deploy that started it is cancelled): followed to its end, printing its
  events, within the deploy's timeout; then whatever it ended in is dealt with as below (a
  change set would be refused meanwhile). ``REVIEW_IN_PROGRESS`` (created by a change set never
  executed) gets a CREATE change set of its own.
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

``deploy_stack`` runs in phases, one function each: :func:`find_stack` (and bring it back to a
state a change set can work on), :func:`create_change_set`, :func:`wait_for_change_set`,
:func:`execute_change_set`, :func:`follow_events`. Every wait goes through the shared
:class:`bridge.core.polling.Poller`, whose deadline covers the whole deploy.
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
from bridge.core.polling import (
    DEFAULT_POLL_POLICY,
    Change,
    ChangeLog,
    Poller,
    PollPolicy,
    PollTimedOut,
)
from bridge.core.signals import CancelRequested, cancel_on_signals
from bridge.errors import Cancelled, ServiceError, UserError, WaitTimeout

IN_PROGRESS_SUFFIX = "_IN_PROGRESS"
GOOD_END = frozenset({"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"})
# A stack whose first creation failed and rolled back: it cannot be updated, only deleted.
FAILED_FIRST_CREATE = "ROLLBACK_COMPLETE"
# Its rollback failed too: resources may be left; a person has to look.
LEFT_OVER = frozenset({"ROLLBACK_FAILED"})
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
CHANGE_SET_ENDS = frozenset({"CREATE_COMPLETE", "FAILED"})
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
    """Prints each stack event once, oldest first, from a point in time on.

    The events seen are a :class:`ChangeLog` keyed by event id, shared with the poller while
    the stack is followed, so an event is printed once whichever of them reads it."""

    def __init__(self, cfn: Any, stack: str, progress: Callable[[str], None]) -> None:
        self._cfn = cfn
        self._stack = stack  # a stack id: its events stay readable after a deletion
        self._progress = progress
        self.log = ChangeLog()
        self.failures: list[str] = []
        self.printed = 0

    def skip_existing(self) -> None:
        for change in self.fresh():
            self.log.record(change)

    def fresh(self) -> list[Change]:
        """The events not seen yet, oldest first (one DescribeStackEvents, more pages only
        while every event of a page is new)."""

        def unseen() -> list[dict[str, Any]]:
            pages = self._cfn.get_paginator("describe_stack_events").paginate(StackName=self._stack)
            events: list[dict[str, Any]] = []
            for page in pages:
                fresh = [e for e in page.get("StackEvents", []) if e["EventId"] not in self.log]
                events.extend(fresh)
                if len(fresh) < len(page.get("StackEvents", [])):
                    break  # newest first: the rest were seen before
            return events

        events = (
            aws_call(f"DescribeStackEvents {self._stack}", unseen, tolerate=_does_not_exist) or []
        )
        return [Change(event["EventId"], detail=event) for event in reversed(events)]

    def show(self, change: Change) -> None:
        event: Mapping[str, Any] = change.detail  # type: ignore[assignment]
        status = event.get("ResourceStatus", "")
        reason = event.get("ResourceStatusReason", "")
        line = f"{event.get('LogicalResourceId', '?')} ({event.get('ResourceType', '')}): "
        self._progress(line + status + (f": {reason}" if reason else ""))
        if status.endswith("_FAILED") and reason and "cancelled" not in reason.lower():
            self.failures.append(f"{event.get('LogicalResourceId')}: {reason}")
        self.printed += 1

    def poll(self) -> int:
        """Print the events not seen yet; how many."""
        shown = 0
        for change in self.fresh():
            if self.log.record(change):
                self.show(change)
                shown += 1
        return shown

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


@dataclass(frozen=True)
class Deployment:
    """What every phase of one ``deploy_stack`` call shares: the client, the stack's name, the
    service role, the run id, and the poller (clock, policy and the deploy's deadline)."""

    cfn: Any
    name: str
    progress: Callable[[str], None]
    poller: Poller
    role_arn: str | None = None
    run_id: str | None = None

    @property
    def service_role(self) -> dict[str, str]:
        return {"RoleARN": self.role_arn} if self.role_arn else {}


@dataclass(frozen=True)
class ChangeSet:
    """A change set created by :func:`create_change_set`."""

    id: str
    name: str
    stack_id: str
    updating: bool


@dataclass(frozen=True)
class _StackLook:
    """One look at a stack being followed: its new events, then the stack itself."""

    events: list[Change]
    stack: dict[str, Any] | None

    @property
    def status(self) -> str:
        # Described by id, a deleted stack answers DELETE_COMPLETE; by name it is gone.
        return self.stack["StackStatus"] if self.stack else "DELETE_COMPLETE"


# -- the phases -----------------------------------------------------------------------------


def find_stack(op: Deployment) -> dict[str, Any] | None:
    """Phase 1: the stack as a change set will find it (None: it is to be created). An
    operation under way (e.g. the update of a deploy that was cancelled) is waited for first,
    then a stack left in a failed state is recovered."""
    existing = _present(_stack(op.cfn, op.name))
    if existing is not None and _busy(existing["StackStatus"]):
        existing = _settled(op, existing)
    if existing is not None:
        existing = _recover(op, existing)
    return existing


def _present(stack: dict[str, Any] | None) -> dict[str, Any] | None:
    # A deleted stack is DELETE_COMPLETE when described by its id; by name it should not be
    # found at all, but one that was deleted a moment ago may still be: it is not there.
    return None if stack is None or stack["StackStatus"] == "DELETE_COMPLETE" else stack


def _busy(status: str) -> bool:
    return status.endswith(IN_PROGRESS_SUFFIX) and status != "REVIEW_IN_PROGRESS"


def _settled(op: Deployment, stack: dict[str, Any]) -> dict[str, Any] | None:
    """Follow the operation under way on ``stack`` to its end (printing its events from now
    on); the stack then, or None when that operation deleted it."""
    stack_id = stack.get("StackId") or op.name
    op.progress(
        f"stack {op.name} is {stack['StackStatus']} (an operation is under way, e.g. one a "
        "cancelled deploy started): waiting for it to end first"
    )
    printer = EventPrinter(op.cfn, stack_id, op.progress)
    printer.skip_existing()
    status, after = follow_events(op, stack_id, printer)
    op.progress(f"stack {op.name}: {status}")
    return _present(after)


def create_change_set(
    op: Deployment,
    existing: Mapping[str, Any] | None,
    *,
    template_body: str,
    parameters: Mapping[str, str],
    tags: Mapping[str, str],
    capabilities: tuple[str, ...],
    description: str,
) -> ChangeSet | None:
    """Phase 2: CreateChangeSet (UPDATE for an existing stack, else CREATE); None when
    CloudFormation already refuses it for having no changes."""
    updating = existing is not None and existing["StackStatus"] != "REVIEW_IN_PROGRESS"
    change_set_name = f"smbridge-{uuid.uuid4().hex[:12]}"
    # CREATE only (botocore's model): a failed first creation deletes the stack.
    on_failure = {} if updating else {"OnStackFailure": "DELETE"}
    created = aws_call(
        f"CreateChangeSet {op.name}",
        op.cfn.create_change_set,
        # an update without changes: CloudFormation (or moto) may refuse it right here
        tolerate=lambda exc: updating and any(marker in describe(exc) for marker in NO_CHANGES),
        **op.service_role,
        **on_failure,
        StackName=op.name,
        ChangeSetName=change_set_name,
        ChangeSetType="UPDATE" if updating else "CREATE",
        TemplateBody=template_body,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Tags=tag_list(tags),
        Capabilities=list(capabilities),
        Description=description[:_DESCRIPTION_MAX] or "smbridge deploy",
    )
    if created is None:
        return None
    stack_id = (existing or {}).get("StackId") or created.get("StackId") or op.name
    return ChangeSet(created["Id"], change_set_name, stack_id, updating)


def wait_for_change_set(op: Deployment, change_set: ChangeSet) -> dict[str, Any] | None:
    """Phase 3: poll DescribeChangeSet until it is ready and return it; None (the change set
    deleted) when it failed for having no changes; :class:`StackFailed` for any other failure."""
    try:
        described = op.poller.until(
            lambda: aws_call(
                "DescribeChangeSet", op.cfn.describe_change_set, ChangeSetName=change_set.id
            ),
            done=lambda found: found.get("Status", "") in CHANGE_SET_ENDS,
            changes=lambda found: [Change("status", found.get("Status", ""))],
        )
    except PollTimedOut as exc:
        status = _get(exc.last, "Status")
        raise WaitTimeout(
            f"stack {op.name}: still creating its change set ({status}) after the timeout"
        ) from None
    if described.get("Status") == "CREATE_COMPLETE":
        return described
    reason = described.get("StatusReason", "")
    if change_set.updating and any(marker in reason for marker in NO_CHANGES):
        aws_call("DeleteChangeSet", op.cfn.delete_change_set, ChangeSetName=change_set.id)
        return None
    raise StackFailed(f"change set for {op.name} failed: {reason}")


def execute_change_set(op: Deployment, change_set: ChangeSet, *, existed: bool) -> EventPrinter:
    """Phase 4: ExecuteChangeSet; the printer that follows the stack's events from here on
    (an existing stack's earlier events are marked seen before the execution)."""
    printer = EventPrinter(op.cfn, change_set.stack_id, op.progress)
    if existed:
        printer.skip_existing()
    aws_call(
        "ExecuteChangeSet",
        op.cfn.execute_change_set,
        ChangeSetName=change_set.id,
        **request_token(op.run_id, change_set.name),
    )
    return printer


def follow_events(
    op: Deployment, stack_id: str, printer: EventPrinter
) -> tuple[str, dict[str, Any] | None]:
    """Phase 5: print each new event and poll the stack until it is no longer
    ``*_IN_PROGRESS``; its last status and the stack (None once deleted)."""
    try:
        look = op.poller.until(
            lambda: _StackLook(printer.fresh(), _stack(op.cfn, stack_id)),
            done=lambda look: not look.status.endswith(IN_PROGRESS_SUFFIX),
            changes=lambda look: look.events,
            on_change=printer.show,
            log=printer.log,
        )
    except PollTimedOut as exc:
        status = exc.last.status if isinstance(exc.last, _StackLook) else "in progress"
        raise WaitTimeout(f"stack {op.name}: still {status} after the timeout") from None
    printer.poll()  # the events written as the stack settled
    return look.status, look.stack


def _recover(op: Deployment, stack: dict[str, Any]) -> dict[str, Any] | None:
    """Bring a stack left in a failed state back to one a change set can work on; the stack
    afterwards, or None when it had to be deleted."""
    status = stack["StackStatus"]
    stack_id = stack.get("StackId") or op.name
    if status in LEFT_OVER:
        raise UserError(
            f"stack {op.name} is {status} (its first creation failed and so did the "
            "rollback: resources may be left); check them, delete the stack (aws "
            f"cloudformation delete-stack --stack-name {op.name}) and rerun"
        )
    if status == "UPDATE_ROLLBACK_FAILED":
        op.progress(
            f"stack {op.name} is UPDATE_ROLLBACK_FAILED (an update's rollback could not "
            "finish): continuing the rollback first (ContinueUpdateRollback)"
        )
        printer = EventPrinter(op.cfn, stack_id, op.progress)
        printer.skip_existing()
        aws_call(
            f"ContinueUpdateRollback {op.name}",
            op.cfn.continue_update_rollback,
            StackName=stack_id,
            **op.service_role,
            **request_token(op.run_id, f"rollback-{uuid.uuid4().hex[:8]}"),
        )
        status, after = follow_events(op, stack_id, printer)
        if status != "UPDATE_ROLLBACK_COMPLETE" or after is None:
            raise StackFailed(
                f"stack {op.name}: continuing its rollback ended {status}: "
                f"{printer.reason(after)}; fix the resource named there, or skip it (aws "
                f"cloudformation continue-update-rollback --stack-name {op.name} "
                "--resources-to-skip <logical id>), then rerun"
            )
        op.progress(f"stack {op.name}: rolled back (UPDATE_ROLLBACK_COMPLETE)")
        return after
    if status == FAILED_FIRST_CREATE:
        op.progress(
            f"stack {op.name} is ROLLBACK_COMPLETE (its first creation failed; it holds "
            "no resources and cannot be updated): deleting it to create it again"
        )
        printer = EventPrinter(op.cfn, stack_id, op.progress)
        printer.skip_existing()
        aws_call(
            f"DeleteStack {op.name}",
            op.cfn.delete_stack,
            StackName=stack_id,
            **op.service_role,
            **request_token(op.run_id, f"delete-{uuid.uuid4().hex[:8]}"),
        )
        status, after = follow_events(op, stack_id, printer)
        if status != "DELETE_COMPLETE":
            raise StackFailed(
                f"stack {op.name}: deleting the failed stack ended {status}: "
                f"{printer.reason(after)}; delete it by hand and rerun"
            )
        return None
    return stack


def _get(found: object, key: str) -> str:
    return str(found.get(key, "")) if isinstance(found, Mapping) else ""


def _show_changes(progress: Callable[[str], None], changes: list[dict[str, str]]) -> None:
    for change in changes:
        replacement = " (replacement)" if change["replacement"] == "True" else ""
        scope = f" [{change['scope']}]" if change["scope"] else ""
        progress(
            f"change: {change['action']} {change['logical_id']} ({change['type']})"
            f"{replacement}{scope}"
        )


def _unchanged(op: Deployment, existing: Mapping[str, Any] | None) -> StackResult:
    assert existing is not None
    op.progress(f"stack {op.name}: no changes")
    return StackResult(op.name, existing["StackStatus"], "unchanged", _outputs(existing))


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
    policy: PollPolicy = DEFAULT_POLL_POLICY,
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
    updates every resource's tags. ``timeout_seconds`` covers every wait of the deploy
    (recovery, change set, execution); ``policy``, ``sleep`` and ``monotonic`` drive the poller.
    """
    poller = Poller(policy, timeout_seconds=timeout_seconds, monotonic=monotonic, sleep=sleep)
    op = Deployment(cfn, stack_name, progress, poller, role_arn, run_id)
    with cancel_on_signals():
        try:
            return _deploy(
                op,
                template_body=template_body,
                parameters=parameters,
                tags=tags,
                capabilities=capabilities,
                description=description,
            )
        except KeyboardInterrupt as exc:  # the agent's SIGINT/SIGTERM, or Ctrl-C
            reason = str(exc) if isinstance(exc, CancelRequested) else "interrupted"
            raise Cancelled(
                f"{reason} during the deploy of stack {stack_name}: what CloudFormation had "
                "started on it goes on (an update may still complete, or roll back); the next "
                "deploy waits for it to end, then carries on from the state it left"
            ) from None


def _deploy(
    op: Deployment,
    *,
    template_body: str,
    parameters: Mapping[str, str],
    tags: Mapping[str, str],
    capabilities: tuple[str, ...],
    description: str,
) -> StackResult:
    """The phases of :func:`deploy_stack`, in order."""
    cfn, stack_name, progress = op.cfn, op.name, op.progress
    existing = find_stack(op)
    change_set = create_change_set(
        op,
        existing,
        template_body=template_body,
        parameters=parameters,
        tags=tags,
        capabilities=capabilities,
        description=description,
    )
    if change_set is None:
        return _unchanged(op, existing)
    ready = wait_for_change_set(op, change_set)
    if ready is None:
        return _unchanged(op, existing)
    changes = _changes(_all_changes(cfn, change_set.id, ready))
    _show_changes(progress, changes)
    printer = execute_change_set(op, change_set, existed=bool(existing))
    status, stack = follow_events(op, change_set.stack_id, printer)
    if status not in GOOD_END:
        if not change_set.updating and status == "DELETE_COMPLETE":
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
    action = "updated" if change_set.updating else "created"
    assert stack is not None
    return StackResult(
        stack_name, status, action, _outputs(stack), change_set.id, changes, printer.printed
    )
