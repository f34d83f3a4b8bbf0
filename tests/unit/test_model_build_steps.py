"""model-build/steps: preprocess → train → evaluate run for real, locally, as SageMaker runs them.

Each script runs in its own process with SageMaker's conventions (``SM_CHANNEL_*``,
``SM_MODEL_DIR``, the pipeline's hyperparameters as ``--name value``, the model as
``model.tar.gz`` for evaluation), pointed at temporary folders.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_BUILD = REPO_ROOT / "model-build"
STEPS = MODEL_BUILD / "steps"
DATA_CSV = MODEL_BUILD / "data" / "breast_cancer.csv"


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_model_build_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, str(STEPS / script), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def _hyperparameter_args() -> list[str]:
    """The pipeline's hyperparameters as the SDK's training driver passes them."""
    # pipeline.py imports the SageMaker SDK only inside get_pipeline(): loading it is cheap.
    hyperparameters = _load(MODEL_BUILD / "pipeline.py").HYPERPARAMETERS
    return [part for name, value in hyperparameters.items() for part in (f"--{name}", str(value))]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """preprocess → train → evaluate, once for the module."""
    work = tmp_path_factory.mktemp("steps")
    _run("preprocess.py", "--input-dir", str(DATA_CSV.parent), "--output-dir", str(work))
    _run(
        "train.py",
        *_hyperparameter_args(),
        env={
            "SM_CHANNEL_TRAIN": str(work / "train"),
            "SM_CHANNEL_VALIDATION": str(work / "validation"),
            "SM_MODEL_DIR": str(work / "model"),
        },
    )
    # The evaluation job receives the training job's output: model.tar.gz.
    packaged = work / "packaged-model"
    packaged.mkdir()
    with tarfile.open(packaged / "model.tar.gz", "w:gz") as archive:
        archive.add(work / "model" / "xgboost-model", arcname="xgboost-model")
    _run(
        "evaluate.py",
        "--model-dir",
        str(packaged),
        "--test-dir",
        str(work / "test"),
        "--output-dir",
        str(work / "evaluation"),
    )
    return work


def _rows(path: Path) -> list[list[float]]:
    with path.open(newline="") as handle:
        return [[float(value) for value in row] for row in csv.reader(handle)]


@pytest.mark.slow
def test_preprocess_writes_stratified_headerless_splits(run_dir: Path) -> None:
    splits = {
        name: _rows(run_dir / name / f"{name}.csv") for name in ("train", "validation", "test")
    }
    assert sum(len(rows) for rows in splits.values()) == 569
    assert {len(row) for rows in splits.values() for row in rows} == {31}  # label + 30 features
    overall = 212 / 569  # malignant share of the data set
    for name, rows in splits.items():
        labels = [row[0] for row in rows]
        assert set(labels) == {0.0, 1.0}, name
        assert abs(sum(labels) / len(labels) - overall) < 0.02, name
    assert 0.65 < len(splits["train"]) / 569 < 0.75


@pytest.mark.slow
def test_preprocess_is_reproducible(run_dir: Path, tmp_path: Path) -> None:
    _run("preprocess.py", "--input-dir", str(DATA_CSV), "--output-dir", str(tmp_path))
    for name in ("train", "validation", "test"):
        assert (tmp_path / name / f"{name}.csv").read_bytes() == (
            run_dir / name / f"{name}.csv"
        ).read_bytes()


@pytest.mark.slow
def test_train_leaves_only_a_portable_xgboost_model(run_dir: Path) -> None:
    import xgboost as xgb

    model_dir = run_dir / "model"
    assert sorted(path.name for path in model_dir.iterdir()) == ["xgboost-model"]
    raw = (model_dir / "xgboost-model").read_bytes()
    document = json.loads(raw)  # JSON: the format XGBoost 1.7 (the serving image) reads
    base_score = document["learner"]["learner_model_param"]["base_score"]
    assert not base_score.startswith("["), "XGBoost 1.7 cannot parse a vector base_score"
    float(base_score)

    booster = xgb.Booster()
    booster.load_model(bytearray(raw))
    test = np.array(_rows(run_dir / "test" / "test.csv"))
    predictions = booster.predict(xgb.DMatrix(test[:, 1:]))
    assert predictions.shape == (len(test),)
    assert ((predictions >= 0) & (predictions <= 1)).all()


@pytest.mark.slow
def test_evaluate_reports_a_plausible_auc(run_dir: Path) -> None:
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    report = json.loads((run_dir / "evaluation" / "evaluation.json").read_text())
    metrics = report["binary_classification_metrics"]
    auc = metrics["auc"]["value"]  # the pipeline's JsonGet path
    assert 0.9 < auc <= 1.0
    assert metrics["accuracy"]["value"] > 0.85
    assert report["test_rows"] == len(_rows(run_dir / "test" / "test.csv"))

    booster = xgb.Booster()
    booster.load_model(bytearray((run_dir / "model" / "xgboost-model").read_bytes()))
    test = np.array(_rows(run_dir / "test" / "test.csv"))
    expected = roc_auc_score(test[:, 0], booster.predict(xgb.DMatrix(test[:, 1:])))
    assert auc == pytest.approx(expected, abs=1e-9)


def test_roc_auc_matches_scikit_learn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    evaluate = _load(STEPS / "evaluate.py")
    rng = np.random.RandomState(0)
    labels = rng.randint(0, 2, size=300)
    scores = np.round(rng.rand(300) + labels * 0.3, 1)  # coarse: many ties
    assert evaluate.roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_pipeline_hyperparameters_are_accepted_by_train_py() -> None:
    train = _load(STEPS / "train.py")
    args = train.parse_args([*_hyperparameter_args(), "--train", "t", "--model-dir", "m"])
    for name, value in _load(MODEL_BUILD / "pipeline.py").HYPERPARAMETERS.items():
        assert getattr(args, name) == value


@pytest.mark.slow
def test_committed_data_set_is_what_make_dataset_writes(tmp_path: Path) -> None:
    make_dataset = _load(MODEL_BUILD / "data" / "make_dataset.py")
    regenerated = make_dataset.make_dataset(tmp_path / "breast_cancer.csv")
    assert (
        hashlib.sha256(regenerated.read_bytes()).hexdigest()
        == hashlib.sha256(DATA_CSV.read_bytes()).hexdigest()
    ), "data/breast_cancer.csv differs from make_dataset.py's output; regenerate it"
