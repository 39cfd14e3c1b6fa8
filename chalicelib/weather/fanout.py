"""The weather fan-out: chunks of target devices travel through an SQS queue
to a sender that runs the delivery pipeline for each device.

A message is ``{"v": 1, "alert_id", "lineage", "campaign_ids", "device_ids",
"alert", "ends_at", "queued_at"}`` (``queued_at``: when the alert was
processed, for the fan-out lag metric). The sender is idempotent — every decision is claimed
once per (campaign, device, lineage) — so a redelivered message, a retried
Lambda or a replayed chunk never sends twice. Chalice has no partial-batch
response, so the handler takes one message per invocation: a poison message
fails alone and reaches the dead-letter queue after its retries.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Iterable

from chalicelib import metrics
from chalicelib.errors import Unavailable
from chalicelib.push import pipeline
from chalicelib.push.model import Trigger
from chalicelib.settings import fanout_queue_name

log = logging.getLogger("hexcast.weather")

MESSAGE_VERSION = 1
SQS_BATCH = 10  # SendMessageBatch's limit


queue_name_from_env = fanout_queue_name


#: Read once at import, like the ``@on_sqs_message`` decorator that consumes
#: it: the sender and the consumer always agree on the queue.
QUEUE_NAME = queue_name_from_env()


def weather_trigger(alert_id: str, lineage: str, alert_vars: dict, ends_at: float | None, at: float) -> Trigger:
    """The occasion of a weather alert: its lineage, so an update never
    re-notifies a device the lineage already reached."""
    return Trigger("weather_alert", f"alert:{lineage}", alert_id, at, alert=alert_vars, needs_location=True, ends_at=ends_at)


def make_messages(alert_id: str, lineage: str, campaign_ids: list[str], device_ids: list[str], alert_vars: dict,
                  ends_at: float | None, chunk: int, queued_at: float | None = None) -> list[str]:
    out = []
    for i in range(0, len(device_ids), chunk):
        out.append(json.dumps({
            "v": MESSAGE_VERSION,
            "alert_id": alert_id,
            "lineage": lineage,
            "campaign_ids": campaign_ids,
            "device_ids": device_ids[i:i + chunk],
            "alert": alert_vars,
            "ends_at": ends_at,
            "queued_at": queued_at,
        }, separators=(",", ":")))
    return out


class SqsQueue:
    """``SendMessageBatch`` in tens, failed entries retried with backoff."""

    def __init__(self, client, sleep: Callable[[float], None] = time.sleep) -> None:
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
    """For tests and benchmarks: keeps the messages; :meth:`drain` hands each
    to the sender as the pump would (redeliveries can be simulated by
    draining the same message twice)."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def send(self, name: str, bodies: Iterable[str]) -> int:
        bodies = list(bodies)
        self.messages.extend(bodies)
        return len(bodies)

    def drain(self, deps) -> list[str]:
        ids: list[str] = []
        while self.messages:
            ids += send_chunk(deps, self.messages.pop(0))
        return ids


def send_chunk(deps, body: str) -> list[str]:
    """The sender: one fan-out message → a decision per (campaign, device).
    Raises on a malformed message (it goes to the dead-letter queue after
    its retries) and on store errors (retried); never sends twice. A
    decision the store throttles does not stop the others: the chunk is
    finished, then :class:`Unavailable` makes SQS redeliver the message,
    whose decided devices are then cheap duplicates."""
    msg = json.loads(body)
    if not isinstance(msg, dict) or msg.get("v") != MESSAGE_VERSION:
        raise ValueError("not a hexcast fan-out message")
    now = deps.clock()
    trigger = weather_trigger(msg["alert_id"], msg["lineage"], msg.get("alert") or {}, msg.get("ends_at"), now)
    campaigns = [c for c in (deps.campaigns.get(deps.store, cid, now) for cid in msg["campaign_ids"]) if c is not None]
    campaigns = [c for c in campaigns if c.in_schedule(now)]
    devices, _ = deps.store.read_for_pings(msg["device_ids"], [])
    ids: list[str] = []
    throttled = 0
    for device_id in msg["device_ids"]:
        device = devices.get(device_id)
        if device is None:
            continue  # erased since the plan
        for c in campaigns:
            try:
                ids.append(pipeline.decide(deps, c, device, trigger).delivery_id)
            except Unavailable:
                throttled += 1
    if throttled:
        raise Unavailable(f"{throttled} decisions of this fan-out chunk were throttled; it will be redelivered")
    metrics.fanout_lag(msg.get("queued_at"), deps.clock())
    log.info("fan-out chunk", extra={"alert_id": msg["alert_id"], "devices": len(msg["device_ids"]), "decisions": len(ids)})
    return ids


def sqs_records(event: Any) -> list[str]:
    """Message bodies of a Chalice ``SQSEvent`` or a raw Lambda event."""
    if hasattr(event, "__iter__") and not isinstance(event, dict):
        return [r.body for r in event]
    return [r["body"] for r in event.get("Records", [])]
