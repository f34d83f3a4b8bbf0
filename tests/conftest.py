"""Shared fixtures. Every test runs offline: a socket guard fails any non-loopback connection."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest


class NetworkAccessError(AssertionError):
    pass


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_create_connection = socket.create_connection


def _is_loopback(address: object) -> bool:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        return host in ("localhost", "::1") or host.startswith("127.")
    return isinstance(address, (str, bytes))  # AF_UNIX


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _is_loopback(address):
        raise NetworkAccessError(f"test tried to open a network connection to {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if not _is_loopback(address):
        raise NetworkAccessError(f"test tried to open a network connection to {address!r}")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any connection that leaves the machine (loopback is allowed for moto_server)."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


@pytest.fixture(autouse=True)
def aws_test_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fake, isolated AWS settings so nothing reads the developer's real profile."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    for name in ("TF_BUILD", "AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name in list(__import__("os").environ):
        if name.startswith(("SMBRIDGE_", "SYSTEM_", "BUILD_")):
            monkeypatch.delenv(name, raising=False)


# Requests the real services would refuse fail the test, even where moto accepts them.
STRICT_SERVICES = frozenset(
    {"sagemaker", "cloudformation", "sts", "events", "sqs", "dynamodb", "secretsmanager", "ssm"}
)


@pytest.fixture(autouse=True)
def aws_requests_fit_botocores_model():
    from tests.support.strict_botocore import install

    undo = install(STRICT_SERVICES)
    yield
    undo()


@pytest.fixture(autouse=True)
def fresh_trigger_log_keys() -> None:
    """The trigger's Logger is one per process (as in Lambda): keys a test appended, also
    thread-local ones, must not show in the next test's log lines."""
    import sys

    handler = sys.modules.get("bridge.trigger.handler")
    if handler is None:
        return
    for name in ("thread_safe_clear_keys", "clear_state"):
        clear = getattr(handler.logger, name, None)
        if clear is not None:
            clear()
