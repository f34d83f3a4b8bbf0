"""Start-up cost of smbridge commands, as ratios against a bare interpreter in the same run.

    python benchmarks/bench_startup.py [--repeat 7]

Each command runs in a fresh process; the median wall time of ``--repeat`` runs is reported
next to the median of ``python -c pass`` (the baseline) and their ratio. Run from the repository
root with the dev venv active. Figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

COMMANDS = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "smbridge --help": [sys.executable, "-m", "bridge", "--help"],
    "smbridge pipeline status --dry-run": [
        sys.executable, "-m", "bridge", "pipeline", "status", "--dry-run",
    ],
    "smbridge pipeline start --wait --dry-run": [
        sys.executable, "-m", "bridge", "pipeline", "start", "--wait", "--dry-run",
    ],
    "import bridge.trigger.handler (Lambda cold import)": [
        sys.executable, "-c", "import bridge.trigger.handler",
    ],
    "smbridge pipeline build (SageMaker SDK, offline)": [
        sys.executable, "-m", "bridge", "pipeline", "build",
    ],
}  # fmt: skip


def time_command(argv: list[str], repeat: int) -> float:
    env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, cwd=REPO_ROOT, env=env, check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    results = {name: time_command(argv, args.repeat) for name, argv in COMMANDS.items()}
    baseline = results["python -c pass (baseline)"]
    print(f"| command | median (s, {args.repeat} runs) | ratio to baseline |")
    print("|---|---|---|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.3f} | {seconds / baseline:.1f}x |")


if __name__ == "__main__":
    main()
