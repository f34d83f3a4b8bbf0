"""Evaluate: score the trained model on the test split and write ``evaluation.json``.

SageMaker processing conventions (defaults): the training job's ``model.tar.gz`` in
``/opt/ml/processing/model``, the test CSV (headerless, label first) in
``/opt/ml/processing/test``, the report in ``/opt/ml/processing/evaluation/evaluation.json``.
Locally (a folder holding ``xgboost-model`` works as well as the tarball)::

    python evaluate.py --model-dir /tmp/work/model --test-dir /tmp/work/test \\
        --output-dir /tmp/work/evaluation

The report uses SageMaker's model-quality layout, so the pipeline reads
``binary_classification_metrics.auc.value`` and attaches the file to the model package.
Needs only numpy, pandas and xgboost (runs in the SageMaker XGBoost 1.7-1 image).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

MODEL_FILE = "xgboost-model"
REPORT_FILE = "evaluation.json"
BASE_DIR = "/opt/ml/processing"

logger = logging.getLogger("evaluate")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Evaluate the model on the test split.")
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", f"{BASE_DIR}/model"))
    parser.add_argument("--test-dir", default=os.environ.get("SM_TEST_DIR", f"{BASE_DIR}/test"))
    parser.add_argument(
        "--output-dir", default=os.environ.get("SM_OUTPUT_DIR", f"{BASE_DIR}/evaluation")
    )
    parser.add_argument(
        "--threshold", type=float, default=0.5, help="for accuracy/precision/recall"
    )
    return parser.parse_args(argv)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    labels = labels.astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise SystemExit("AUC needs both classes in the test set")
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def load_booster(model_dir: Path) -> xgb.Booster:
    """Load ``xgboost-model`` from ``model_dir``, extracting ``model.tar.gz`` first if present."""
    tarball = model_dir / "model.tar.gz"
    if tarball.exists():
        extract_dir = Path(tempfile.mkdtemp(prefix="model-"))
        with tarfile.open(tarball) as archive:
            # The "data" filter exists from Python 3.12 (and late 3.8-3.11 patch releases).
            if hasattr(tarfile, "data_filter"):
                archive.extractall(extract_dir, filter="data")
            else:
                archive.extractall(extract_dir)  # our own training job's output
        model_dir = extract_dir
    booster = xgb.Booster()
    # From a buffer: XGBoost 3.x guesses the format from the file name (and warns without one).
    booster.load_model(bytearray((model_dir / MODEL_FILE).read_bytes()))
    return booster


def evaluate(model_dir: Path, test_dir: Path, output_dir: Path, threshold: float = 0.5) -> dict:
    """Write the report to ``output_dir/evaluation.json`` and return it."""
    files = [test_dir] if test_dir.is_file() else sorted(test_dir.glob("*.csv"))
    if not files:
        raise SystemExit(f"no CSV file in {test_dir}")
    frame = pd.concat([pd.read_csv(file, header=None) for file in files], ignore_index=True)
    values = frame.to_numpy(dtype=np.float32)
    labels, features = values[:, 0], values[:, 1:]

    scores = load_booster(model_dir).predict(xgb.DMatrix(features))
    predicted = scores >= threshold
    actual = labels.astype(bool)
    true_positives = int((predicted & actual).sum())
    metrics = {
        "auc": roc_auc(labels, scores),
        "accuracy": float((predicted == actual).mean()),
        "precision": true_positives / max(int(predicted.sum()), 1),
        "recall": true_positives / max(int(actual.sum()), 1),
    }
    report = {
        "binary_classification_metrics": {
            name: {"value": value, "standard_deviation": "NaN"} for name, value in metrics.items()
        },
        "test_rows": len(labels),
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    logger.info("test AUC %.4f, accuracy %.4f", metrics["auc"], metrics["accuracy"])
    return report


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = parse_args(argv)
    evaluate(Path(args.model_dir), Path(args.test_dir), Path(args.output_dir), args.threshold)


if __name__ == "__main__":
    main()
