"""Preprocess: split the breast-cancer CSV into train / validation / test sets.

SageMaker processing conventions (defaults): the raw CSV arrives in ``/opt/ml/processing/input``
and the splits go to ``/opt/ml/processing/{train,validation,test}/<name>.csv``, headerless with
the label first (the layout XGBoost expects). Locally::

    python preprocess.py --input-dir model-build/data --output-dir /tmp/work

Needs only numpy and pandas (runs in the SageMaker XGBoost 1.7-1 image, Python 3.8+).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

LABEL = "malignant"
SPLITS = ("train", "validation", "test")
BASE_DIR = "/opt/ml/processing"

logger = logging.getLogger("preprocess")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Split the data set into train/validation/test.")
    parser.add_argument(
        "--input-dir",
        default=os.environ.get("SM_INPUT_DIR", f"{BASE_DIR}/input"),
        help="folder holding the raw CSV (or the path of the CSV itself)",
    )
    parser.add_argument(
        "--output-dir",
        default=os.environ.get("SM_OUTPUT_DIR", BASE_DIR),
        help="parent folder of the train/, validation/ and test/ outputs",
    )
    parser.add_argument("--validation-fraction", type=float, default=0.15)
    parser.add_argument("--test-fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


def find_csv(input_path: Path) -> Path:
    """Return the CSV to read: ``input_path`` itself or the only ``*.csv`` below it."""
    if input_path.is_file():
        return input_path
    candidates = sorted(input_path.rglob("*.csv"))
    if len(candidates) != 1:
        raise SystemExit(f"expected exactly one CSV under {input_path}, found {len(candidates)}")
    return candidates[0]


def stratified_split(
    labels: np.ndarray, validation_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Row indices per split, stratified on the label, reproducible for a given seed."""
    rng = np.random.RandomState(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for value in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == value))
        n_test = round(len(rows) * test_fraction)
        n_validation = round(len(rows) * validation_fraction)
        parts["test"].append(rows[:n_test])
        parts["validation"].append(rows[n_test : n_test + n_validation])
        parts["train"].append(rows[n_test + n_validation :])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


def preprocess(
    input_path: Path,
    output_dir: Path,
    validation_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 42,
) -> dict[str, int]:
    """Write the three splits below ``output_dir``; return the row count of each."""
    frame = pd.read_csv(find_csv(input_path))
    if LABEL not in frame.columns:
        raise SystemExit(f"column {LABEL!r} missing from the input CSV")
    frame = frame.dropna()
    # Label first, headerless: what XGBoost's CSV convention (and train.py) expects.
    frame = frame[[LABEL] + [column for column in frame.columns if column != LABEL]]
    indices = stratified_split(frame[LABEL].to_numpy(), validation_fraction, test_fraction, seed)
    counts = {}
    for name in SPLITS:
        target = output_dir / name
        target.mkdir(parents=True, exist_ok=True)
        frame.iloc[indices[name]].to_csv(target / f"{name}.csv", header=False, index=False)
        counts[name] = len(indices[name])
    logger.info("rows per split: %s", counts)
    return counts


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    args = parse_args(argv)
    preprocess(
        Path(args.input_dir),
        Path(args.output_dir),
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
    )


if __name__ == "__main__":
    main()
