"""The weather fan-out's queue adapters: chunks of target devices travel
through an SQS queue to the sender (:mod:`chalicelib.services.fanout`), or
stay in memory (:class:`InlineQueue`) for tests and benchmarks."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from chalicelib.settings import fanout_queue_name

SQS_BATCH = 10  # SendMessageBatch's limit


#: The consumer's queue, for the ``@on_sqs_message`` decorator, which needs
#: it at import; the sender uses ``deps.settings.fanout_queue``.
QUEUE_NAME = fanout_queue_name()


class SqsQueue:
    """``SendMessageBatch`` in tens, failed entries retried with backoff."""

    def __init__(self, client: Any, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.sleep = sleep
        self._urls: dict[str, str] = {}

    def _url(self, name: str) -> str:
        if name not in self._urls:
            self._urls[name] = self.client.get_queue_url(QueueName=name)["QueueUrl"]
        return self._urls[name]

    def send(self, name: str, bodies: Iterable[str]) -> int:
        url = self._url(name)
        bodies = list(bodies)
        for start in range(0, len(bodies), SQS_BATCH):
            entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start:start + SQS_BATCH])]
            delay = 0.05
            for _ in range(8):
                failed = self.client.send_message_batch(QueueUrl=url, Entries=entries).get("Failed", [])
                if not failed:
                    break
                ids = {f["Id"] for f in failed}
                entries = [e for e in entries if e["Id"] in ids]
                self.sleep(delay)
                delay = min(delay * 2, 2.0)
            else:
                raise RuntimeError(f"SQS kept refusing {len(entries)} fan-out messages")
        return len(bodies)


class InlineQueue:
    """For tests and benchmarks: keeps the messages;
    :func:`chalicelib.services.fanout.drain` hands each to the sender as the
    SQS consumer would."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def send(self, name: str, bodies: Iterable[str]) -> int:
        bodies = list(bodies)
        self.messages.extend(bodies)
        return len(bodies)


def sqs_records(event: Any) -> list[str]:
    """Message bodies of a Chalice ``SQSEvent`` or a raw Lambda event."""
    if hasattr(event, "__iter__") and not isinstance(event, dict):
        return [r.body for r in event]
    return [r["body"] for r in event.get("Records", [])]
