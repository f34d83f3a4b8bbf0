"""Which approvals of a model package need a run: a pure function of what has been observed.

SageMaker emits ``SageMaker Model Package State Change`` for every change of a package (its
approval status, its description, its ``ModelLifeCycle``), may send one change more than once,
and EventBridge delivers at least once, in no particular order (SageMaker developer guide,
"Events that SageMaker sends to EventBridge"; EventBridge user guide, "retry policy"). So the
trigger sees every state change of a package, remembers each distinct (time, status) it
observed, and reasons over the timeline, not over the order of arrival:

* an **approval** is a maximal stretch of ``Approved`` observations between two observations of
  another status (Rejected, PendingManualApproval) — approve → edit description → edit again is
  one approval; approve → reject → approve is two;
* each approval gets exactly one run, anchored at the first ``Approved`` observation the trigger
  saw for it (its event id becomes the run's ``sourceEventId``);
* learning more only ever *splits* stretches (a late rejection between two Approved
  observations), never merges them, so an anchored approval stays anchored; a stretch that a
  split leaves without an anchor is a re-approval that needs its own run.

Ties at the same millisecond order the other status first (a re-approval that shares its
rejection's timestamp is still a new approval).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

APPROVED = "Approved"
# A package changes a handful of times in its life; beyond this the oldest observations are
# forgotten (their approvals and runs are kept).
MAX_OBSERVATIONS = 256


def epoch_ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


@dataclass(frozen=True, order=True)
class Observation:
    """One state of the package at one time, as an event reported it."""

    at_ms: int
    status: str = field(compare=False)
    event_id: str = field(compare=False, default="")

    @property
    def sort_key(self) -> tuple[int, int]:
        return (self.at_ms, 1 if self.status == APPROVED else 0)


@dataclass(frozen=True)
class Approval:
    """One approval of the package and its run (``run_id`` None: not started yet)."""

    anchor_ms: int
    event_id: str
    run_id: int | None = None
    web_url: str = ""
    posted: bool = False  # a POST …/runs was attempted: look for the run before posting again


@dataclass(frozen=True)
class PackageState:
    """Everything the trigger remembers about one model package."""

    observations: tuple[Observation, ...] = ()
    approvals: tuple[Approval, ...] = ()

    def approval(self, anchor_ms: int) -> Approval | None:
        return next((a for a in self.approvals if a.anchor_ms == anchor_ms), None)

    def with_approval(self, approval: Approval) -> PackageState:
        others = tuple(a for a in self.approvals if a.anchor_ms != approval.anchor_ms)
        return replace(self, approvals=tuple(sorted((*others, approval), key=_anchor)))

    def to_json(self) -> dict[str, Any]:
        return {
            "observations": [[o.at_ms, o.status, o.event_id] for o in self.observations],
            "approvals": [
                {
                    "anchor": a.anchor_ms,
                    "event": a.event_id,
                    "run": a.run_id,
                    "url": a.web_url,
                    "posted": a.posted,
                }
                for a in self.approvals
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PackageState:
        return cls(
            observations=tuple(
                Observation(int(at), str(status), str(event_id))
                for at, status, event_id in data.get("observations", [])
            ),
            approvals=tuple(
                Approval(
                    anchor_ms=int(a["anchor"]),
                    event_id=str(a["event"]),
                    run_id=None if a.get("run") is None else int(a["run"]),
                    web_url=str(a.get("url", "")),
                    posted=bool(a.get("posted", False)),
                )
                for a in data.get("approvals", [])
            ),
        )


@dataclass(frozen=True)
class Decision:
    """What one observation means: the approvals that still need a run, and why."""

    state: PackageState
    pending: tuple[Approval, ...]
    reason: str
    approval: Approval | None = None  # the approval an Approved observation belongs to


def _anchor(approval: Approval) -> int:
    return approval.anchor_ms


class _Timeline:
    """Sorted observations, and for each position the number of stretches before it."""

    def __init__(self, observations: tuple[Observation, ...]) -> None:
        self.keys = [o.sort_key for o in observations]
        self.breaks = [0]
        for obs in observations:
            self.breaks.append(self.breaks[-1] + (obs.status != APPROVED))

    def stretch_of(self, key: tuple[int, int]) -> int:
        """The stretch ``key`` falls in: the number of non-Approved observations before it."""
        return self.breaks[bisect.bisect_left(self.keys, key)]


def observe(state: PackageState, observation: Observation) -> Decision:
    """Add ``observation`` to ``state``; anchor every approval that has none yet."""
    known = {(o.at_ms, o.status) for o in state.observations}
    duplicate = (observation.at_ms, observation.status) in known
    observations = state.observations
    if not duplicate:
        observations = tuple(sorted((*observations, observation), key=lambda o: o.sort_key))[
            -MAX_OBSERVATIONS:
        ]
    timeline = _Timeline(observations)
    # the stretches that already have their approval
    anchored = {timeline.stretch_of((a.anchor_ms, 1)) for a in state.approvals}
    approvals = list(state.approvals)
    created: list[Approval] = []
    for obs in observations:
        if obs.status != APPROVED:
            continue
        stretch = timeline.stretch_of(obs.sort_key)
        if stretch not in anchored:
            anchored.add(stretch)
            created.append(Approval(anchor_ms=obs.at_ms, event_id=obs.event_id))
    approvals.extend(created)
    new_state = PackageState(observations, tuple(sorted(approvals, key=_anchor)))
    pending = tuple(a for a in new_state.approvals if a.run_id is None)
    mine = None
    if observation.status == APPROVED:
        stretch = timeline.stretch_of(observation.sort_key)
        mine = next(
            a for a in new_state.approvals if timeline.stretch_of((a.anchor_ms, 1)) == stretch
        )
    reason = _reason(observation, duplicate, created, pending)
    return Decision(new_state, pending, reason, mine)


def _reason(
    observation: Observation,
    duplicate: bool,
    created: list[Approval],
    pending: tuple[Approval, ...],
) -> str:
    if observation.status == APPROVED:
        if any(a.anchor_ms == observation.at_ms for a in created):
            return "new approval"
        if pending:
            return "approval without its run yet"
        return "this approval already has its run" + (
            " (same change delivered again)" if duplicate else ""
        )
    if created:
        return f"status {observation.status} revealed a re-approval after it"
    if pending:
        return f"status {observation.status}; an approval still needs its run"
    return f"status {observation.status}, not Approved"
