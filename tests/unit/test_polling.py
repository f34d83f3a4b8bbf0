"""bridge.core.polling: the one polling policy (interval, deadline, changes, cancellation).

Every test runs on an injected clock: nothing sleeps, and the assertions are about counts and
the clock's own seconds, never wall time.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest

from bridge.core.polling import (
    DEFAULT_POLL_POLICY,
    Change,
    ChangeLog,
    Poller,
    PollPolicy,
    PollTimedOut,
)
from bridge.core.signals import CancelRequested
from tests.support.fakes import FakeClock


def spy_on_poller(monkeypatch: pytest.MonkeyPatch) -> list[Poller]:
    """Record every wait that goes through the shared poller (one entry per ``until``)."""
    waits: list[Poller] = []
    original = Poller.until

    def until(self: Poller, observe: Any, **kwargs: Any) -> Any:
        waits.append(self)
        return original(self, observe, **kwargs)

    monkeypatch.setattr(Poller, "until", until)
    return waits


class Script:
    """``observe`` answering the given states in turn (the last one for ever); counts looks."""

    def __init__(self, *states: Any) -> None:
        self.states = list(states)
        self.looks = 0

    def __call__(self) -> Any:
        self.looks += 1
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]


def poller(clock: FakeClock, policy: PollPolicy = DEFAULT_POLL_POLICY, **kwargs: Any) -> Poller:
    return Poller(policy, monotonic=clock.monotonic, sleep=clock.sleep, **kwargs)


def status(state: str) -> list[Change]:
    return [Change("status", state)]


def test_the_interval_starts_short_and_grows_to_the_cap(clock):
    observe = Script(*["running"] * 10, "done")
    result = poller(clock).until(observe, done=lambda s: s == "done")
    assert result == "done"
    assert observe.looks == 11
    assert clock.sleeps == [5.0, 7.5, 11.25, 16.875, 25.3125, 37.96875, 56.953125] + [60.0] * 3


def test_a_change_brings_the_interval_back_to_the_start(clock):
    policy = PollPolicy(initial_interval=2, max_interval=8, factor=2)
    states = ["a"] * 5 + ["b"] * 3 + ["c", "done"]
    poller(clock, policy).until(Script(*states), done=lambda s: s == "done", changes=status)
    # a a a a a | b b b | c | done: every new status resets the interval to 2 s.
    assert clock.sleeps == [2, 4, 8, 8, 8, 2, 4, 8, 2]


def test_each_change_is_reported_once_in_order_the_last_look_included(clock):
    looks = [
        {"Train": "Executing"},
        {"Train": "Executing"},
        {"Train": "Succeeded", "Evaluate": "Executing"},
        {"Train": "Succeeded", "Evaluate": "Executing"},
        {"Train": "Succeeded", "Evaluate": "Succeeded"},
    ]

    def changes(state: dict[str, str]) -> Iterator[Change]:
        for name, value in state.items():
            yield Change(name, value, f"{name}: {value}")

    reported: list[str] = []
    poller(clock).until(
        Script(*looks),
        done=lambda s: all(v == "Succeeded" for v in s.values()),
        changes=changes,
        on_change=lambda c: reported.append(str(c.detail)),
    )
    assert reported == [
        "Train: Executing",
        "Train: Succeeded",
        "Evaluate: Executing",
        "Evaluate: Succeeded",
    ]


def test_a_value_that_comes_back_is_a_change_again(clock):
    reported: list[str] = []
    poller(clock).until(
        Script("InService", "Updating", "Updating", "InService", "done"),
        done=lambda s: s == "done",
        changes=status,
        on_change=lambda c: reported.append(c.value),
    )
    assert reported == ["InService", "Updating", "InService", "done"]


def test_a_shared_log_remembers_changes_across_waits_and_can_be_primed(clock):
    log = ChangeLog()
    log.record(Change("old-event"))  # seen before the wait: never reported
    reported: list[Any] = []

    def events(state: list[str]) -> list[Change]:
        return [Change(event) for event in state]

    shared = poller(clock)
    shared.until(
        Script(["old-event", "e1"], ["old-event", "e1", "e2"]),
        done=lambda s: "e2" in s,
        changes=events,
        on_change=lambda c: reported.append(c.key),
        log=log,
    )
    shared.until(
        Script(["old-event", "e1", "e2", "e3"]),
        done=lambda s: True,
        changes=events,
        on_change=lambda c: reported.append(c.key),
        log=log,
    )
    assert reported == ["e1", "e2", "e3"]
    assert "e3" in log and "never" not in log


def test_the_detail_is_not_compared():
    log = ChangeLog()
    assert log.record(Change("step", "Executing", "first words"))
    assert not log.record(Change("step", "Executing", "other words"))


def test_the_timeout_raises_with_the_last_state_and_never_sleeps_past_it(clock):
    observe = Script(*[f"look {n}" for n in range(1, 100)])
    with pytest.raises(PollTimedOut) as info:
        poller(clock, timeout_seconds=30).until(observe, done=lambda s: False)
    # 0 → 5 → 12.5 → 23.75 → 30 (the last sleep cut to what was left), then one last look.
    assert clock.sleeps == [5.0, 7.5, 11.25, 6.25]
    assert clock.now == 30
    assert observe.looks == 5
    assert info.value.last == "look 5"
    assert not isinstance(info.value, KeyboardInterrupt)


def test_a_state_done_at_the_deadline_is_returned_not_timed_out(clock):
    result = poller(clock, timeout_seconds=5).until(
        Script("running", "done"), done=lambda s: s == "done"
    )
    assert result == "done" and clock.now == 5


def test_without_a_timeout_it_waits_as_long_as_it_takes(clock):
    observe = Script(*["running"] * 500, "done")
    poller(clock).until(observe, done=lambda s: s == "done")
    assert observe.looks == 501
    assert clock.now > 8 * 3600


def test_the_deadline_counts_from_the_poller_and_covers_every_wait(clock):
    """One poller, two waits (the phases of a stack deploy): they share its deadline."""
    shared = poller(clock, timeout_seconds=20)
    shared.until(Script("a", "a", "done"), done=lambda s: s == "done")
    assert clock.now == 12.5
    with pytest.raises(PollTimedOut):
        shared.until(Script("b"), done=lambda s: False)
    assert clock.now == 20
    assert clock.sleeps == [5.0, 7.5, 5.0, 2.5]
    assert shared.looks == 3 + 3 and shared.sleeps == 4


def test_the_injected_clock_is_the_only_clock():
    """The deadline is read from ``monotonic`` and time passes only through ``sleep``."""
    now = [1_000_000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    timed = Poller(timeout_seconds=60, monotonic=lambda: now[0], sleep=sleep)
    with pytest.raises(PollTimedOut) as info:
        timed.until(Script("running"), done=lambda s: False)
    assert sum(slept) == 60 and info.value.elapsed == 60
    assert timed.elapsed() == 60


def test_a_cancel_during_a_sleep_is_not_swallowed(clock):
    def cancel(c: FakeClock) -> None:
        if len(c.sleeps) == 3:
            raise CancelRequested(signal.SIGTERM)

    clock.on_sleep.append(cancel)
    observe = Script("running")
    with pytest.raises(CancelRequested, match="SIGTERM"):
        poller(clock, timeout_seconds=3600).until(observe, done=lambda s: False)
    assert observe.looks == 3  # no look after the cancel


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, lambda: CancelRequested(signal.SIGINT)])
def test_an_interrupt_during_a_look_is_not_swallowed(clock, interrupt):
    looks = 0

    def observe() -> str:
        nonlocal looks
        looks += 1
        if looks == 2:
            raise interrupt()
        return "running"

    try:
        poller(clock).until(observe, done=lambda s: False)
    except KeyboardInterrupt:  # (not pytest.raises: pytest ends the session on a bare one)
        pass
    else:
        pytest.fail("the interrupt was swallowed")
    assert looks == 2 and len(clock.sleeps) == 1


def test_an_error_from_a_look_propagates_unchanged(clock):
    def observe() -> str:
        raise RuntimeError("service down")

    with pytest.raises(RuntimeError, match="service down"):
        poller(clock).until(observe, done=lambda s: False)
    assert clock.sleeps == []
