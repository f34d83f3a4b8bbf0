"""What the trigger remembers per model package, beside the idempotency records.

* ``epoch``: when the package last left ``Approved`` (a Rejected or Pending event). Duplicates of
  one approval share it; a re-approval after a rejection gets a new one, hence a new idempotency
  key and a new run. An ``Approved`` event older than the epoch is stale and ignored.
* ``posted``: the epoch for which a ``POST …/runs`` was already attempted. When set, the run may
  exist although its idempotency record never completed (a crash in between), so the starter
  looks for it before posting.

Items share the idempotency table (``id = "approval-state#<arn>"``, TTL on ``expiration``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from botocore.exceptions import ClientError

STATE_TTL_SECONDS = 180 * 24 * 3600


class Ledger(Protocol):
    def epoch(self, arn: str) -> float: ...

    def record_not_approved(self, arn: str, modified_at: float) -> None: ...

    def mark_post_attempt(self, arn: str, epoch: float) -> bool: ...


class DynamoDBLedger:
    def __init__(
        self, client: Any, table_name: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = client
        self._table = table_name
        self._clock = clock

    def _key(self, arn: str) -> dict[str, Any]:
        return {"id": {"S": f"approval-state#{arn}"}}

    def _ttl(self) -> dict[str, str]:
        return {"N": str(int(self._clock()) + STATE_TTL_SECONDS)}

    def epoch(self, arn: str) -> float:
        item = self._client.get_item(
            TableName=self._table, Key=self._key(arn), ConsistentRead=True
        ).get("Item", {})
        return float(item.get("epoch", {}).get("N", "0"))

    def record_not_approved(self, arn: str, modified_at: float) -> None:
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._key(arn),
                UpdateExpression="SET epoch = :t, expiration = :ttl",
                ConditionExpression="attribute_not_exists(epoch) OR epoch < :t",
                ExpressionAttributeValues={":t": {"N": repr(modified_at)}, ":ttl": self._ttl()},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise  # a newer change is already recorded otherwise

    def mark_post_attempt(self, arn: str, epoch: float) -> bool:
        response = self._client.update_item(
            TableName=self._table,
            Key=self._key(arn),
            UpdateExpression="SET posted = :e, expiration = :ttl",
            ExpressionAttributeValues={":e": {"N": repr(epoch)}, ":ttl": self._ttl()},
            ReturnValues="ALL_OLD",
        )
        previous = response.get("Attributes", {}).get("posted", {}).get("N")
        return previous is not None and float(previous) == epoch


class MemoryLedger:
    """For ``smbridge trigger simulate`` without a table, and for tests."""

    def __init__(self) -> None:
        self.epochs: dict[str, float] = {}
        self.posted: dict[str, float] = {}

    def epoch(self, arn: str) -> float:
        return self.epochs.get(arn, 0.0)

    def record_not_approved(self, arn: str, modified_at: float) -> None:
        self.epochs[arn] = max(self.epochs.get(arn, 0.0), modified_at)

    def mark_post_attempt(self, arn: str, epoch: float) -> bool:
        previous = self.posted.get(arn)
        self.posted[arn] = epoch
        return previous == epoch
