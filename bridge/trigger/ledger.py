"""What the trigger remembers per model package (:class:`~bridge.trigger.decision.PackageState`),
beside the idempotency records.

Every change is a read-modify-write guarded by a revision number, so concurrent invocations
for one package (SQS delivers to several at once) never lose each other's observations: a write
whose revision moved is retried on the fresh state. One backend per store, like powertools'
persistence layers: :class:`DynamoDBLedger` (items ``id = "approval-state#<arn>"`` in the
idempotency table, TTL on ``expiration``) and :class:`MemoryLedger` (local runs, tests).
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError

from bridge.errors import ServiceError
from bridge.trigger.decision import Approval, Decision, Observation, PackageState, observe

STATE_TTL_SECONDS = 400 * 24 * 3600
MAX_CONFLICTS = 20


class LedgerConflict(ServiceError):
    """The package's state kept changing under this invocation; the event is retried."""


class Ledger(ABC):
    """The operations the handler needs; backends implement ``_read`` and ``_write``."""

    @abstractmethod
    def _read(self, arn: str) -> tuple[PackageState, int]:
        """The stored state and its revision (0 and an empty state when there is none)."""

    @abstractmethod
    def _write(self, arn: str, state: PackageState, revision: int) -> bool:
        """Store ``state`` as revision ``revision + 1`` if the stored revision is still
        ``revision``; ``False`` if it moved."""

    def _update(self, arn: str, change: Callable[[PackageState], tuple[PackageState, Any]]) -> Any:
        for _ in range(MAX_CONFLICTS):
            state, revision = self._read(arn)
            new_state, result = change(state)
            if new_state == state or self._write(arn, new_state, revision):
                return result
        raise LedgerConflict(f"{arn}: state changed {MAX_CONFLICTS} times while updating it")

    def state(self, arn: str) -> PackageState:
        return self._read(arn)[0]

    def observe(self, arn: str, observation: Observation) -> Decision:
        """Record ``observation``; the approvals that still need a run."""

        def change(state: PackageState) -> tuple[PackageState, Decision]:
            decision = observe(state, observation)
            return decision.state, decision

        result: Decision = self._update(arn, change)
        return result

    def mark_posted(self, arn: str, anchor_ms: int) -> Approval:
        """Note that a ``POST …/runs`` is about to be sent; the approval as it was before."""

        def change(state: PackageState) -> tuple[PackageState, Approval]:
            approval = state.approval(anchor_ms)
            if approval is None:
                raise KeyError(anchor_ms)
            return state.with_approval(replace(approval, posted=True)), approval

        result: Approval = self._update(arn, change)
        return result

    def record_run(self, arn: str, anchor_ms: int, run_id: int, web_url: str) -> None:
        def change(state: PackageState) -> tuple[PackageState, None]:
            approval = state.approval(anchor_ms)
            if approval is None:
                raise KeyError(anchor_ms)
            return state.with_approval(replace(approval, run_id=run_id, web_url=web_url)), None

        self._update(arn, change)


class DynamoDBLedger(Ledger):
    def __init__(
        self, client: Any, table_name: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = client
        self._table = table_name
        self._clock = clock

    def _key(self, arn: str) -> dict[str, Any]:
        return {"id": {"S": f"approval-state#{arn}"}}

    def _read(self, arn: str) -> tuple[PackageState, int]:
        item = self._client.get_item(
            TableName=self._table, Key=self._key(arn), ConsistentRead=True
        ).get("Item")
        if not item or "state" not in item:
            return PackageState(), 0
        state = PackageState.from_json(json.loads(item["state"]["S"]))
        return state, int(item.get("revision", {}).get("N", "0"))

    def _write(self, arn: str, state: PackageState, revision: int) -> bool:
        try:
            self._client.put_item(
                TableName=self._table,
                Item={
                    **self._key(arn),
                    "state": {"S": json.dumps(state.to_json(), separators=(",", ":"))},
                    "revision": {"N": str(revision + 1)},
                    "expiration": {"N": str(int(self._clock()) + STATE_TTL_SECONDS)},
                },
                ConditionExpression="attribute_not_exists(revision) OR revision = :r",
                ExpressionAttributeValues={":r": {"N": str(revision)}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True


class MemoryLedger(Ledger):
    """For ``smbridge trigger simulate`` without a table, and for tests."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[PackageState, int]] = {}
        self._lock = threading.Lock()

    def _read(self, arn: str) -> tuple[PackageState, int]:
        with self._lock:
            return self.items.get(arn, (PackageState(), 0))

    def _write(self, arn: str, state: PackageState, revision: int) -> bool:
        with self._lock:
            if self.items.get(arn, (None, 0))[1] != revision:
                return False
            self.items[arn] = (state, revision + 1)
            return True
