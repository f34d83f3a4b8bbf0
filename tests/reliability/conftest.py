"""Fixtures for the reliability tests: in-process moto made as atomic as the services are when
several threads call it at once, the trigger's logs per thread, and the stand-in's contract
check without re-checking the specs' schema on every request.

moto's backends take no lock: two threads may both pass a DynamoDB condition before either
writes, or both receive one SQS message. The services do not allow either:
- DynamoDB evaluates a condition expression and applies the write as one atomic operation
  (DynamoDB developer guide, "Condition expressions" / "Conditional writes": a conditional
  write succeeds only if the item's attributes meet the condition at the time of the write);
- SQS hides a received message from every other consumer until its visibility timeout expires
  (SQS developer guide, "Amazon SQS visibility timeout").
So each backend operation the tests use runs under one lock per service; moto's own code is not
changed.
"""

from __future__ import annotations

import functools
import json
import threading
import types
from collections.abc import Iterator
from typing import Any

import pytest

DYNAMODB_OPERATIONS = ("get_item", "put_item", "update_item", "delete_item", "transact_write_items")
SQS_OPERATIONS = (
    "send_message",
    "send_message_batch",
    "receive_message",
    "delete_message",
    "delete_message_batch",
    "change_message_visibility",
    "change_message_visibility_batch",
    "get_queue_attributes",
)


def _locked(method: Any, lock: threading.RLock) -> Any:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    return call


@pytest.fixture
def atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.sqs.models import SQSBackend

    for backend, names in ((DynamoDBBackend, DYNAMODB_OPERATIONS), (SQSBackend, SQS_OPERATIONS)):
        lock = threading.RLock()
        for name in names:
            monkeypatch.setattr(backend, name, _locked(getattr(backend, name), lock))


@pytest.fixture
def trigger_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The trigger's logger for threads that stand for separate Lambda environments.

    Lambda runs one invocation per process, so the handler appends its per-event keys to the
    module's one Logger; threads sharing it would write each other's keys into their lines
    (and race on the key dict while a line is formatted). Here its keys are per thread
    (powertools' thread-safe keys, context variables). And only warnings (retries) and errors
    are written: an INFO line per event costs seconds and shows nothing the counts do not."""
    from bridge.trigger.handler import logger

    monkeypatch.setattr(logger, "append_keys", logger.thread_safe_append_keys)
    monkeypatch.setattr(logger, "remove_keys", logger.thread_safe_remove_keys)
    level = logger.log_level
    logger.setLevel("WARNING")
    try:
        yield
    finally:
        logger.setLevel(level)


@pytest.fixture
def contract_schemas_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in holds every request body against the OpenAPI specs with
    ``jsonschema.validate`` (bridge/sandbox/ado_contract.py), which first checks the schema
    itself (every definition of the spec: about 0.1 s) on every call. Here each schema is
    checked once; the body is still validated in full, with the same validator and the same
    error (``best_match``), as ``jsonschema.validate`` does."""
    import jsonschema
    from jsonschema.exceptions import best_match
    from jsonschema.validators import validator_for

    import bridge.sandbox.ado_contract as contract

    checked: set[tuple[int, str]] = set()
    lock = threading.Lock()

    def validate(instance: Any, schema: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        cls = validator_for(schema)
        rest = {k: v for k, v in schema.items() if k != "definitions"}
        key = (id(schema.get("definitions")), json.dumps(rest, sort_keys=True, default=str))
        with lock:
            if key not in checked:
                cls.check_schema(schema)
                checked.add(key)
        error = best_match(cls(schema, *args, **kwargs).iter_errors(instance))
        if error is not None:
            raise error

    shim = types.SimpleNamespace(
        validate=validate,
        ValidationError=jsonschema.ValidationError,
        FormatChecker=jsonschema.FormatChecker,
    )
    monkeypatch.setattr(contract, "jsonschema", shim)
