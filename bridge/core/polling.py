"""The one polling policy: pipeline waits, stack deploys and transform jobs all wait through it.

A :class:`Poller` looks (``observe``) until a state is ``done``. Between looks it sleeps
``policy.initial_interval`` seconds after a change and grows the interval by ``policy.factor``
up to ``policy.max_interval`` while nothing changes; it never sleeps past its deadline, and
once the deadline has passed it raises :class:`PollTimedOut` with the last state seen. One
poller can serve several waits (the phases of a stack deploy): they share its deadline.

Changes are :class:`Change` values named by a key (a step, an event id, a status). The poller
keeps a :class:`ChangeLog` and hands ``on_change`` each change whose key is new or whose value
differs from the one last reported: every change exactly once, in the order ``changes`` lists
them, the last look's included.

Clock and sleep are injected (tests advance a fake clock and count sleeps). Nothing here catches
an exception: a ``KeyboardInterrupt`` (:class:`bridge.core.signals.CancelRequested`) raised by
``sleep`` or ``observe`` reaches the caller unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class PollPolicy:
    """How long to sleep between looks: ``initial_interval`` after a change, then ``factor``
    times longer each quiet look, at most ``max_interval`` seconds."""

    initial_interval: float = 5.0
    max_interval: float = 60.0
    factor: float = 1.5

    def next_interval(self, current: float, changed: bool) -> float:
        if changed:
            return self.initial_interval
        return min(self.max_interval, current * self.factor)


DEFAULT_POLL_POLICY = PollPolicy()


@dataclass(frozen=True)
class Change:
    """One observed change: ``key`` names what changed, ``value`` is what it is now (compared
    with the value last reported for the key); ``detail`` is for the reporter, never compared."""

    key: Hashable
    value: Hashable = None
    detail: object = field(default=None, compare=False)


class ChangeLog:
    """The last value reported for each key."""

    def __init__(self) -> None:
        self._last: dict[Hashable, Hashable] = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._last

    def record(self, change: Change) -> bool:
        """Note ``change``; True when it is news (a new key, or a different value)."""
        if change.key in self._last and self._last[change.key] == change.value:
            return False
        self._last[change.key] = change.value
        return True


class PollTimedOut(Exception):
    """The deadline passed before the state was done; ``last`` is the last state seen. Callers
    turn it into their own outcome (stop the execution, a :class:`~bridge.errors.WaitTimeout`)."""

    def __init__(self, last: object, elapsed: float) -> None:
        super().__init__(f"still not done after {elapsed:g}s")
        self.last = last
        self.elapsed = elapsed


def _no_changes(_state: object) -> Iterable[Change]:
    return ()


def _ignore(_change: Change) -> None:
    return None


class Poller:
    """A polling policy with a deadline and a clock; the deadline counts from its creation.

    ``timeout_seconds`` None: no deadline. ``monotonic`` and ``sleep`` default to the real ones.
    """

    def __init__(
        self,
        policy: PollPolicy = DEFAULT_POLL_POLICY,
        *,
        timeout_seconds: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.policy = policy
        self.timeout_seconds = timeout_seconds
        self._monotonic = monotonic
        self._sleep = sleep
        self.started = monotonic()
        self.looks = 0
        self.sleeps = 0

    def elapsed(self) -> float:
        return self._monotonic() - self.started

    def until(
        self,
        observe: Callable[[], T],
        *,
        done: Callable[[T], bool],
        changes: Callable[[T], Iterable[Change]] = _no_changes,
        on_change: Callable[[Change], None] = _ignore,
        log: ChangeLog | None = None,
    ) -> T:
        """Look until ``done(state)`` and return that state; raises :class:`PollTimedOut`.

        Each look: ``observe()``, then every change of ``changes(state)`` not in ``log`` yet
        goes to ``on_change`` (a fresh log unless one is given: pass one to remember changes
        across waits, or to mark some as already seen), then ``done``, then the deadline.
        """
        log = ChangeLog() if log is None else log
        interval: float | None = None
        while True:
            state = observe()
            self.looks += 1
            changed = False
            for change in changes(state):
                if log.record(change):
                    changed = True
                    on_change(change)
            if done(state):
                return state
            elapsed = self.elapsed()
            if self.timeout_seconds is not None and elapsed >= self.timeout_seconds:
                raise PollTimedOut(state, elapsed)
            if interval is None:
                interval = self.policy.initial_interval
            else:
                interval = self.policy.next_interval(interval, changed)
            pause = interval
            if self.timeout_seconds is not None:
                pause = max(0.0, min(pause, self.timeout_seconds - elapsed))
            self.sleeps += 1
            self._sleep(pause)
