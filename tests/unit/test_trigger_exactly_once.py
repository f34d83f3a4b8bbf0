"""The delivery benchmark, small: every state change of each package (rejections, re-approvals,
edits while approved), duplicated and shuffled, with faults and crashes, gives exactly one run
per approval and loses none."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_trigger_delivery.py"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_every_approval_gets_exactly_one_run(seed):
    spec = importlib.util.spec_from_file_location("bench_trigger_delivery", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    packages = bench.timelines(30, random.Random(seed))
    statuses = [e["detail"]["ModelApprovalStatus"] for events in packages for e in events]
    assert "Rejected" in statuses or statuses.count("PendingManualApproval") > len(packages)
    result = bench.run_bridge(packages, random.Random(seed))
    assert result["approvals"] == 30
    assert result["runs"] == 30
    assert result["approvals_with_one_run"] == 30
    assert result["approvals_lost"] == 0
    assert result["invocations"] > result["events"]  # duplicates were delivered
    assert result["crashes"] + result["failed_invocations"] > 0  # and faults did happen
    baseline = bench.run_baseline(packages, random.Random(seed))
    assert baseline["runs"] > 30  # the same deliveries without dedupe: the check can fail
