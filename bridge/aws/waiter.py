"""Wait for a pipeline execution: one line per step status change, timeout.

The polling itself (adaptive interval, deadline, each change reported once) is the shared
:class:`bridge.core.polling.Poller`: one DescribePipelineExecution (plus
ListPipelineExecutionSteps) per look.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from bridge.aws.pipelines import ExecutionState, describe_execution
from bridge.core.polling import DEFAULT_POLL_POLICY, Change, Poller, PollPolicy, PollTimedOut

__all__ = ["DEFAULT_POLL_POLICY", "PollPolicy", "WaitTimedOut", "wait_for_execution"]

Progress = Callable[[str], None]


class WaitTimedOut(Exception):
    """Internal: the deadline passed; the caller stops the execution and reports."""

    def __init__(self, state: ExecutionState) -> None:
        super().__init__(state.status)
        self.state = state


def execution_changes(state: ExecutionState) -> Iterator[Change]:
    """Each step's status, then the execution's, with the line that reports it."""
    for step in state.steps:
        reason = f": {step.failure_reason}" if step.failure_reason else ""
        yield Change(("step", step.name), step.status, f"step {step.name}: {step.status}{reason}")
    yield Change("execution", state.status, f"execution: {state.status}")


def wait_for_execution(
    sagemaker: Any,
    execution_arn: str,
    *,
    progress: Progress,
    timeout_seconds: float | None = None,
    policy: PollPolicy = DEFAULT_POLL_POLICY,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ExecutionState:
    """Poll until the execution is Succeeded, Failed or Stopped and return its last state.

    Raises :class:`WaitTimedOut` after ``timeout_seconds`` (the execution keeps running: the
    caller decides to stop it). Signals raised during ``sleep`` propagate unchanged.
    """
    poller = Poller(policy, timeout_seconds=timeout_seconds, monotonic=monotonic, sleep=sleep)
    try:
        return poller.until(
            lambda: describe_execution(sagemaker, execution_arn),
            done=lambda state: state.terminal,
            changes=execution_changes,
            on_change=lambda change: progress(str(change.detail)),
        )
    except PollTimedOut as exc:
        assert isinstance(exc.last, ExecutionState)
        raise WaitTimedOut(exc.last) from None
