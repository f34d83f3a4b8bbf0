"""The delivery benchmark, small: duplicates, reordering, faults and crashes give exactly N runs."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_trigger_delivery.py"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_n_approvals_make_exactly_n_runs(seed):
    spec = importlib.util.spec_from_file_location("bench_trigger_delivery", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    events = bench.approvals(24)
    result = bench.run_bridge(events, random.Random(seed))
    assert result["runs"] == 24
    assert result["approvals_with_one_run"] == 24
    assert result["approvals_lost"] == 0
    assert result["invocations"] > 24  # duplicates were delivered
    assert result["crashes"] + result["failed_invocations"] > 0  # and faults did happen
    baseline = bench.run_baseline(events, random.Random(seed))
    assert baseline["runs"] > 24  # the same deliveries without dedupe: the check can fail
