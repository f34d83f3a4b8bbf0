"""Run the pipeline's steps locally, in order, on the shipped data set: preprocess → train →
evaluate → the AUC condition. The same scripts SageMaker runs, with SageMaker's conventions
pointed at a local work folder. Needs ``pip install -e '.[steps]'``.

    python model-build/run_local.py [--work-dir build/local-run] [--auc-threshold 0.9]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
# What the step scripts import (the ``steps`` extra of pyproject.toml), by import name.
STEP_MODULES = {
    "numpy": "numpy",
    "pandas": "pandas",
    "sklearn": "scikit-learn",
    "xgboost": "xgboost",
}


def missing_step_packages() -> list[str]:
    """The distributions of the ``steps`` extra this Python lacks."""
    return [
        dist for module, dist in STEP_MODULES.items() if importlib.util.find_spec(module) is None
    ]


def pipeline_module() -> ModuleType:
    """pipeline.py imports the SageMaker SDK only inside get_pipeline: its constants are cheap."""
    spec = importlib.util.spec_from_file_location("model_build_pipeline", HERE / "pipeline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def step(name: str, args: list[str], env: dict[str, str] | None = None) -> None:
    print(f"== {name}", flush=True)
    subprocess.run([sys.executable, str(HERE / "steps" / f"{name}.py"), *args],
                   check=True, env={**os.environ, **(env or {})})  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work-dir",
        default="build/local-run",
        type=Path,
        help="folder for the steps' outputs (default: build/local-run)",
    )
    parser.add_argument(
        "--auc-threshold",
        default=0.9,
        type=float,
        help="the condition step's minimum AUC (default: 0.9)",
    )
    args = parser.parse_args()
    missing = missing_step_packages()
    if missing:
        print(
            f"error: the step scripts need {', '.join(missing)}, which this Python "
            f"({sys.executable}) lacks: install the steps extra, pip install -e '.[steps]'",
            file=sys.stderr,
        )
        return 2
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    step("preprocess", ["--input-dir", str(HERE / "data"), "--output-dir", str(work)])
    hyperparameters = pipeline_module().HYPERPARAMETERS
    hyper = [item for key, value in hyperparameters.items() for item in (f"--{key}", str(value))]
    step(
        "train",
        hyper,
        {
            "SM_CHANNEL_TRAIN": str(work / "train"),
            "SM_CHANNEL_VALIDATION": str(work / "validation"),
            "SM_MODEL_DIR": str(work / "model"),
        },
    )
    step("evaluate", ["--model-dir", str(work / "model"), "--test-dir", str(work / "test"),
                      "--output-dir", str(work / "evaluation")])  # fmt: skip
    report = json.loads((work / "evaluation" / "evaluation.json").read_text())
    auc = report["binary_classification_metrics"]["auc"]["value"]
    verdict = "register the model (PendingManualApproval)" if auc >= args.auc_threshold else "fail"
    print(f"AUC {auc:.4f} vs threshold {args.auc_threshold}: {verdict}")
    print(f"outputs in {work}")
    return 0 if auc >= args.auc_threshold else 1


if __name__ == "__main__":
    sys.exit(main())
