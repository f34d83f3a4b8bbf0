"""The trigger's decision: which approvals of a package need a run, from what it observed.

What it encodes (SageMaker developer guide, "Events that SageMaker sends to EventBridge"):
SageMaker emits ``SageMaker Model Package State Change`` for every change of a package, not only
approvals, and may send one change more than once; EventBridge delivers at least once and does
not order deliveries. So for any timeline of changes, delivered in any order with any
duplicates, every approval (a stretch of Approved between other statuses) gets exactly one run.
"""

from __future__ import annotations

import itertools
import random

import pytest

from bridge.trigger.decision import (
    MAX_OBSERVATIONS,
    Approval,
    Observation,
    PackageState,
    observe,
)

A, R, P = "Approved", "Rejected", "PendingManualApproval"


def deliver(timeline: list[Observation]) -> tuple[PackageState, list[Approval]]:
    """Deliver ``timeline`` in its list order; each pending approval gets its run at once
    (as the handler does); returns the final state and the runs started, in order."""
    state = PackageState()
    started: list[Approval] = []
    for observation in timeline:
        decision = observe(state, observation)
        state = decision.state
        for approval in decision.pending:
            started.append(approval)
            run = Approval(approval.anchor_ms, approval.event_id, run_id=len(started))
            state = state.with_approval(run)
    return state, started


def approvals_in(timeline: list[Observation]) -> int:
    """The oracle: stretches of Approved in time order."""
    count, previous = 0, None
    for obs in sorted(set((o.at_ms, o.status) for o in timeline), key=lambda o: (o[0], o[1] == A)):
        if obs[1] == A and previous != A:
            count += 1
        previous = obs[1]
    return count


def timeline(*statuses: str) -> list[Observation]:
    return [Observation(1000 * (i + 1), s, f"e{i + 1}") for i, s in enumerate(statuses)]


def test_approve_reject_reapprove_in_order_is_two_runs():
    _, started = deliver(timeline(P, A, R, A))
    assert [a.event_id for a in started] == ["e2", "e4"]


def test_the_issue_case_a_late_rejection_reveals_the_reapproval():
    """approve t1, re-approve t3, then the rejection t2 late: both approvals get a run."""
    t1, t2, t3 = timeline(A, R, A)
    _, started = deliver([t1, t3, t2])
    assert [a.event_id for a in started] == ["e1", "e3"]


def test_a_late_earlier_event_does_not_make_a_second_run():
    """Pending t0 delivered after the approval t1: still one approval."""
    t0, t1 = timeline(P, A)
    _, started = deliver([t1, t0])
    assert len(started) == 1


def test_changes_while_approved_are_one_approval():
    """Approve, then a description / ModelLifeCycle change (same event type, still Approved)."""
    _, started = deliver(timeline(P, A, A, A))
    assert [a.event_id for a in started] == ["e2"]


def test_duplicates_of_one_change_with_other_event_ids_are_one_observation():
    first = Observation(5000, A, "evt-a")
    again = Observation(5000, A, "evt-b")
    state, started = deliver([first, again, first])
    assert len(state.observations) == 1
    assert [a.event_id for a in started] == ["evt-a"]


def test_a_reapproval_sharing_the_rejections_millisecond_is_new():
    _, started = deliver([Observation(1, A, "a"), Observation(2, R, "r"), Observation(2, A, "b")])
    assert [a.event_id for a in started] == ["a", "b"]


@pytest.mark.parametrize(
    "statuses",
    [(A, R, A), (P, A, R, A, P, A), (A, A, R, R, A, A), (P, R, P), (A, P, A, R, A)],
)
def test_every_order_of_every_timeline_gives_one_run_per_approval(statuses):
    events = timeline(*statuses)
    expected = approvals_in(events)
    for order in itertools.permutations(events):
        state, started = deliver(list(order))
        assert len(started) == expected, [o.event_id for o in order]
        assert len(state.approvals) == expected
        assert all(a.run_id is not None for a in state.approvals)


def test_random_timelines_with_duplicates_and_shuffles():
    rng = random.Random(11)
    for _ in range(300):
        statuses = [rng.choice([A, A, R, P]) for _ in range(rng.randint(1, 9))]
        events = timeline(*statuses)
        delivered = events + [rng.choice(events) for _ in range(rng.randint(0, 6))]
        rng.shuffle(delivered)
        _, started = deliver(delivered)
        assert len(started) == approvals_in(events), (statuses, delivered)


def test_a_pending_approval_stays_pending_until_its_run_is_recorded():
    """A crash after the decision: the next delivery of anything about the package says the
    approval still needs its run."""
    state = observe(PackageState(), Observation(1, A, "a")).state
    decision = observe(state, Observation(1, A, "a-again"))
    assert [a.event_id for a in decision.pending] == ["a"]
    decision = observe(state, Observation(2, R, "r"))
    assert [a.event_id for a in decision.pending] == ["a"]


def test_state_round_trips_through_json():
    state, _ = deliver(timeline(P, A, R, A))
    assert PackageState.from_json(state.to_json()) == state


def test_history_is_bounded_but_runs_are_kept():
    state, started = deliver(timeline(*([A, R] * MAX_OBSERVATIONS)))
    assert len(state.observations) == MAX_OBSERVATIONS
    assert len(started) == MAX_OBSERVATIONS
    assert len(state.approvals) == MAX_OBSERVATIONS
