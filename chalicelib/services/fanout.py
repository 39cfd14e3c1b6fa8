"""The weather fan-out's use cases: an alert's target devices cut into
chunk messages, and the sender that runs the delivery pipeline for each
device of a chunk (the queue itself is an adapter:
:mod:`chalicelib.weather.fanout`).

A message is ``{"v": 1, "alert_id", "lineage", "campaign_ids", "device_ids",
"alert", "ends_at", "queued_at"}`` (``queued_at``: when the alert was
processed, for the fan-out lag metric). The sender is idempotent — every
decision is claimed once per (campaign, device, lineage) — so a redelivered
message, a retried Lambda or a replayed chunk never sends twice. Chalice has
no partial-batch response, so the handler takes one message per invocation:
a poison message fails alone and reaches the dead-letter queue after its
retries.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from chalicelib import metrics
from chalicelib.errors import Unavailable
from chalicelib.push.model import Trigger
from chalicelib.services.delivery import decide

if TYPE_CHECKING:
    from chalicelib.services.deps import Deps

log = logging.getLogger("hexcast.weather")

MESSAGE_VERSION = 1


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


def send_chunk(deps: Deps, body: str) -> list[str]:
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
    state = deps.weather.get_lineages([msg["lineage"]]).get(msg["lineage"])
    if state and state.get("ended"):  # cancelled after the plan: nothing more of it is sent
        log.info("fan-out chunk of an ended lineage dropped", extra={"alert_id": msg["alert_id"],
                                                                     "devices": len(msg["device_ids"])})
        return []
    trigger = weather_trigger(msg["alert_id"], msg["lineage"], msg.get("alert") or {}, msg.get("ends_at"), now)
    campaigns = [c for c in (deps.campaign_cache.get(deps.campaigns, cid, now) for cid in msg["campaign_ids"]) if c is not None]
    campaigns = [c for c in campaigns if c.in_schedule(now)]
    devices = deps.devices.get_devices(msg["device_ids"])
    ids: list[str] = []
    throttled = 0
    for device_id in msg["device_ids"]:
        device = devices.get(device_id)
        if device is None:
            continue  # erased since the plan
        for c in campaigns:
            try:
                ids.append(decide(deps, c, device, trigger).delivery_id)
            except Unavailable:
                throttled += 1
    if throttled:
        raise Unavailable(f"{throttled} decisions of this fan-out chunk were throttled; it will be redelivered")
    metrics.fanout_lag(msg.get("queued_at"), deps.clock())
    log.info("fan-out chunk", extra={"alert_id": msg["alert_id"], "devices": len(msg["device_ids"]), "decisions": len(ids)})
    return ids
