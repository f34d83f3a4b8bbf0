"""A SageMaker endpoint stand-in that serves the REAL model over HTTP on 127.0.0.1.

``InvokeEndpoint`` (``POST /endpoints/{EndpointName}/invocations``, botocore's sagemaker-runtime
model) is answered with the predictions of the XGBoost model model-build's steps trained, as the
XGBoost container's algorithm mode returns them: ``text/csv`` in, one probability per row out.
Point botocore at it with ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`` (botocore's service-specific
endpoint variable). An endpoint that is not served is answered as the service answers it:
HTTP 400, ``ValidationError``, "Endpoint … not found."; a model error as HTTP 424
``ModelError``. Needs the ``steps`` extra (numpy, xgboost).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_INVOKE = re.compile(r"^/endpoints/(?P<name>[^/]+)/invocations$")
# what a served endpoint may do to its predictions (the demo breaks one on purpose)
Transform = Callable[[list[float]], list[float]]


@dataclass
class ServedEndpoint:
    name: str
    transform: Transform | None = None
    fail: bool = False
    invocations: int = 0


@dataclass
class ModelServer:
    """Serves ``model_file`` (an XGBoost model) for the endpoints :meth:`serve` names."""

    model_file: Path
    account_id: str = "123456789012"
    endpoints: dict[str, ServedEndpoint] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        import xgboost

        self._booster = xgboost.Booster()
        self._booster.load_model(bytearray(Path(self.model_file).read_bytes()))
        self._lock = threading.Lock()

    def serve(self, name: str, *, transform: Transform | None = None) -> ServedEndpoint:
        """Answer for endpoint ``name`` from now on (a deploy created it)."""
        with self._lock:
            served = self.endpoints[name] = ServedEndpoint(name, transform)
            return served

    def predict(self, body: bytes) -> list[float]:
        import numpy as np
        import xgboost

        rows = [[float(x) for x in line.split(",")] for line in body.decode().splitlines() if line]
        return [float(score) for score in self._booster.predict(xgboost.DMatrix(np.array(rows)))]

    # -- the HTTP server -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the model server is not running: use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> ModelServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def answer(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        match = _INVOKE.match(path)
        if match is None:
            return _error(404, "UnknownOperationException", f"no operation at {path}")
        with self._lock:
            served = self.endpoints.get(match["name"])
            if served is not None:
                served.invocations += 1
        if served is None:
            message = f"Endpoint {match['name']} of account {self.account_id} not found."
            return _error(400, "ValidationError", message)
        if served.fail:
            return _error(424, "ModelError", "Received server error (500) from primary")
        try:
            scores = self.predict(body)
        except ValueError as exc:
            return _error(424, "ModelError", f"Received client error (400): {exc}")
        if served.transform is not None:
            scores = served.transform(scores)
        text = "\n".join(f"{score:.6f}" for score in scores).encode()
        return (
            200,
            {"Content-Type": "text/csv", "x-Amzn-Invoked-Production-Variant": "AllTraffic"},
            text,
        )


def _error(status: int, kind: str, message: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"__type": kind, "message": message}).encode()
    return status, {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": kind}, body


def _handler(server: ModelServer) -> Any:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, headers, body = server.answer(self.path.split("?")[0], self.rfile.read(length))
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """No access log: the demo prints its own timeline."""

    return Handler
