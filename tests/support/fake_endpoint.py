"""A SageMaker endpoint stand-in that serves the REAL model: model-build's steps train XGBoost
on the shipped data, and InvokeEndpoint requests (through a real botocore sagemaker-runtime
client, answered at ``before-send``) get that model's predictions, as the XGBoost container's
algorithm mode returns them (``text/csv`` in, one probability per row out)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.awsrequest import AWSResponse

from tests.support.fakes import RawBody

REPO_ROOT = Path(__file__).resolve().parents[2]


def train_model(work: Path) -> Path:
    """Run preprocess and train from model-build/steps; return the model file."""
    steps = REPO_ROOT / "model-build" / "steps"
    subprocess.run(
        [sys.executable, str(steps / "preprocess.py"),
         "--input-dir", str(REPO_ROOT / "model-build" / "data"), "--output-dir", str(work)],
        check=True, capture_output=True,
    )  # fmt: skip
    env = {
        "SM_CHANNEL_TRAIN": str(work / "train"),
        "SM_CHANNEL_VALIDATION": str(work / "validation"),
        "SM_MODEL_DIR": str(work / "model"),
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run(
        [sys.executable, str(steps / "train.py"), "--num_round", "50", "--max_depth", "3"],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    return work / "model" / "xgboost-model"


@dataclass
class FakeEndpoint:
    model_file: Path
    name: str = "smbridge-demo-staging"
    status: int = 200
    transform: Any = None  # optional: change the response body (to simulate a broken model)
    requests: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        import xgboost

        self._booster = xgboost.Booster()
        self._booster.load_model(bytearray(self.model_file.read_bytes()))

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-send.sagemaker-runtime", self._handle)
        return client

    def _predict(self, body: bytes) -> str:
        import numpy as np
        import xgboost

        rows = [[float(x) for x in line.split(",")] for line in body.decode().splitlines() if line]
        scores = self._booster.predict(xgboost.DMatrix(np.array(rows)))
        return "\n".join(f"{score:.6f}" for score in scores)

    def _handle(self, request: Any, **_: Any) -> AWSResponse | None:
        if f"/endpoints/{self.name}/" not in request.url:
            return None  # another endpoint's stand-in answers (several may be attached)
        self.requests.append(request.body)
        if self.status != 200:
            body = b'{"__type": "ModelError", "message": "Received server error (500)"}'
            headers = {"x-amzn-ErrorType": "ModelError", "Content-Type": "application/json"}
            return AWSResponse(request.url, 424, headers, RawBody(body))
        text = self._predict(request.body)
        if self.transform is not None:
            text = self.transform(text)
        body = text.encode()
        headers = {"Content-Type": "text/csv", "Content-Length": str(len(body))}
        return AWSResponse(request.url, 200, headers, RawBody(body))
