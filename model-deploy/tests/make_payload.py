"""Regenerate payload.csv and expect.json: the first 20 rows of the held-out test split that
model-build's preprocess step writes (features only, in the order the model was trained on),
with their labels for the accuracy check.

    python model-deploy/tests/make_payload.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ROWS = 20


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        subprocess.run(
            [sys.executable, str(REPO / "model-build/steps/preprocess.py"),
             "--input-dir", str(REPO / "model-build/data"), "--output-dir", work],
            check=True,
        )  # fmt: skip
        lines = (Path(work) / "test" / "test.csv").read_text().splitlines()[:ROWS]
    labels = [int(float(line.split(",", 1)[0])) for line in lines]
    features = [line.split(",", 1)[1] for line in lines]
    (HERE / "payload.csv").write_text(
        "# held-out rows of model-build/data/breast_cancer.csv (test split), features only\n"
        + "\n".join(features)
        + "\n"
    )
    expect = {
        "content_type": "text/csv",
        "accept": "text/csv",
        "values_per_row": 1,
        "min_value": 0.0,
        "max_value": 1.0,
        "labels": labels,
        "threshold": 0.5,
        "min_accuracy": 0.85,
        "latency_p95_ms": 1000,
    }
    (HERE / "expect.json").write_text(json.dumps(expect, indent=2) + "\n")


if __name__ == "__main__":
    main()
