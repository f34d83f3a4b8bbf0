"""Train: an XGBoost binary classifier (malignant vs benign) on the preprocessed CSVs.

SageMaker training conventions (defaults): data channels in ``SM_CHANNEL_TRAIN`` /
``SM_CHANNEL_VALIDATION`` (headerless CSV, label first), the model goes to ``SM_MODEL_DIR``,
hyperparameters arrive as ``--name value``. Locally, with plain python::

    python train.py --train /tmp/work/train --validation /tmp/work/validation \\
        --model-dir /tmp/work/model --num_round 50

The model is written as ``<model-dir>/xgboost-model`` in XGBoost's JSON format, the only file
there: the SageMaker XGBoost 1.7-1 serving container loads every file in the model folder, and
XGBoost >= 1.0 (so both the container's 1.7 and PyPI's 3.x) reads that format.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

MODEL_FILE = "xgboost-model"
# XGBoost >= 3 writes base_score as a one-element vector ("[3.7E-1]"); 1.7 cannot parse that and
# silently falls back to 0.5, which shifts every prediction. Both read the scalar form.
_VECTOR_BASE_SCORE = re.compile(rb'"base_score":"\[([^,\]]+)\]"')

logger = logging.getLogger("train")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train the XGBoost classifier.")
    # Hyperparameters (SageMaker passes each as --name value).
    parser.add_argument("--num_round", type=int, default=200)
    parser.add_argument("--max_depth", type=int, default=4)
    parser.add_argument("--eta", type=float, default=0.1)
    parser.add_argument("--subsample", type=float, default=0.8)
    parser.add_argument("--colsample_bytree", type=float, default=0.8)
    parser.add_argument("--min_child_weight", type=float, default=1.0)
    parser.add_argument("--early_stopping_rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    # Locations: SageMaker's environment, overridable for local runs.
    parser.add_argument(
        "--train", default=os.environ.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train")
    )
    parser.add_argument("--validation", default=os.environ.get("SM_CHANNEL_VALIDATION"))
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    return parser.parse_args(argv)


def load_csv_dir(path: Path) -> xgb.DMatrix:
    """All ``*.csv`` files of a channel (or one file), headerless, label in the first column."""
    files = [path] if path.is_file() else sorted(path.glob("*.csv"))
    if not files:
        raise SystemExit(f"no CSV file in {path}")
    frame = pd.concat([pd.read_csv(file, header=None) for file in files], ignore_index=True)
    values = frame.to_numpy(dtype=np.float32)
    return xgb.DMatrix(values[:, 1:], label=values[:, 0])


def portable_model_json(booster: xgb.Booster) -> bytes:
    """The model as JSON that XGBoost 1.7 (the serving container) and 3.x load identically.

    ``save_raw("json")`` rather than ``save_model(path)``: 3.x picks the format from the file
    extension (UBJSON without one), and JSON is what 1.7 recognises under any file name.
    """
    raw = bytes(booster.save_raw(raw_format="json"))
    return _VECTOR_BASE_SCORE.sub(rb'"base_score":"\1"', raw, count=1)


def train(args: argparse.Namespace) -> Path:
    """Train, keep the best iteration, write the model file and return its path."""
    dtrain = load_csv_dir(Path(args.train))
    evals = [(dtrain, "train")]
    if args.validation:
        evals.append((load_csv_dir(Path(args.validation)), "validation"))
    params = {
        "objective": "binary:logistic",
        "eval_metric": "auc",
        "max_depth": args.max_depth,
        "eta": args.eta,
        "subsample": args.subsample,
        "colsample_bytree": args.colsample_bytree,
        "min_child_weight": args.min_child_weight,
        "tree_method": "hist",
        "seed": args.seed,
    }
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=args.num_round,
        evals=evals,
        early_stopping_rounds=args.early_stopping_rounds if args.validation else None,
        verbose_eval=False,
    )
    if args.validation:
        logger.info(
            "best iteration %d, validation-auc=%.6f", booster.best_iteration, booster.best_score
        )
        # Keep only the trees up to the best iteration: Booster.predict uses every tree.
        booster = booster[: booster.best_iteration + 1]

    model_dir = Path(args.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    model_path = model_dir / MODEL_FILE
    model_path.write_bytes(portable_model_json(booster))
    logger.info("model written to %s", model_path)
    return model_path


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    train(parse_args(argv))


if __name__ == "__main__":
    main()
