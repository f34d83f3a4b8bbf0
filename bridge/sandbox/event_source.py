"""Lambda's SQS event source mapping, for moto queues (moto does not invoke Lambda): the demo
and the tests feed the real handler through it.

Polls like the real poller (AWS Lambda developer guide, "Using Lambda with Amazon SQS"):
receives up to ``batch_size`` messages with their attributes, invokes the function with the
documented event shape (``Records[]`` with ``messageId``, ``receiptHandle``, ``body``,
``attributes.ApproximateReceiveCount``, ``eventSource: aws:sqs``, ``eventSourceARN``,
``awsRegion``), deletes the batch when the function returns, and leaves it in the queue when it
raises. The visibility timeout is SQS's own; ``expire_visibility`` stands in for waiting it out
(it sets the batch's visibility to 0 instead of sleeping). The redrive to the dead-letter queue
after ``maxReceiveCount`` receives is moto's SQS, configured from the template.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EventSourceMapping:
    sqs: Any
    queue_url: str
    function: Callable[[dict[str, Any]], Any]
    batch_size: int = 1
    expire_visibility: bool = True
    invocations: int = 0
    errors: list[BaseException] = field(default_factory=list)

    def _arn(self) -> str:
        return self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]

    def poll_once(self) -> bool:
        """One receive and invocation; ``False`` when the queue had nothing visible."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return False
        arn = self._arn()
        region = arn.split(":")[3]
        event = {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "messageAttributes": m.get("MessageAttributes", {}),
                    "md5OfBody": hashlib.md5(m["Body"].encode()).hexdigest(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": region,
                }
                for m in messages
            ]
        }
        self.invocations += 1
        try:
            self.function(event)
        except Exception as exc:  # the function failed: the batch stays in the queue
            self.errors.append(exc)
            if self.expire_visibility:
                for m in messages:
                    self.sqs.change_message_visibility(
                        QueueUrl=self.queue_url,
                        ReceiptHandle=m["ReceiptHandle"],
                        VisibilityTimeout=0,
                    )
            return True
        for m in messages:
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return True

    def drain(self, max_polls: int = 10_000) -> int:
        """Poll until the queue is empty; the number of invocations made."""
        start = self.invocations
        for _ in range(max_polls):
            if not self.poll_once():
                return self.invocations - start
        raise AssertionError(f"queue not empty after {max_polls} polls")
