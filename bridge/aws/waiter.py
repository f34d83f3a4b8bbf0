"""Wait for a pipeline execution: adaptive polling, one line per step status change, timeout.

Polling starts at one DescribePipelineExecution (plus ListPipelineExecutionSteps) per
``initial_interval`` seconds and backs off by ``factor`` up to ``max_interval`` while nothing
changes; any change brings the interval back to the start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge.aws.pipelines import ExecutionState, describe_execution

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PollPolicy:
    initial_interval: float = 5.0
    max_interval: float = 60.0
    factor: float = 1.5

    def next_interval(self, current: float, changed: bool) -> float:
        if changed:
            return self.initial_interval
        return min(self.max_interval, current * self.factor)


DEFAULT_POLL_POLICY = PollPolicy()


class WaitTimedOut(Exception):
    """Internal: the deadline passed; the caller stops the execution and reports."""

    def __init__(self, state: ExecutionState) -> None:
        super().__init__(state.status)
        self.state = state


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
    started = monotonic()
    seen_status: str | None = None
    seen_steps: dict[str, str] = {}
    interval = policy.initial_interval
    while True:
        state = describe_execution(sagemaker, execution_arn)
        changed = False
        for step in state.steps:
            if seen_steps.get(step.name) != step.status:
                seen_steps[step.name] = step.status
                changed = True
                reason = f": {step.failure_reason}" if step.failure_reason else ""
                progress(f"step {step.name}: {step.status}{reason}")
        if state.status != seen_status:
            seen_status = state.status
            changed = True
            progress(f"execution: {state.status}")
        if state.terminal:
            return state
        elapsed = monotonic() - started
        if timeout_seconds is not None and elapsed >= timeout_seconds:
            raise WaitTimedOut(state)
        interval = policy.next_interval(interval, changed)
        if timeout_seconds is not None:
            interval = max(0.0, min(interval, timeout_seconds - elapsed))
        sleep(interval)
