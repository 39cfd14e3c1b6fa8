"""Weather use cases: NWS alerts in (webhook or poller) → lifecycle → area →
the devices already inside → the delivery pipeline, plus conditions and the
scheduled feed poll.

Per alert:

* invalid features are reported, the others still processed;
* an id seen before (in this body or earlier) is ``duplicate``;
* not ``Actual``, ended, or not yet effective → ``ignored`` with the reason
  (a not-yet-effective alert is not recorded, so it is acted on once it is);
* ``Cancel`` / VTEC ``CAN``/``EXP``/``UPG`` / ``AllClear`` → ``cancelled``:
  no push, and the lineage ends (a later update of it is ignored);
* otherwise the area is resolved (polygon, SAME counties, zones) — or the
  alert is ``unresolved_area`` — and the devices inside it, for every
  matching ``weather_alert`` campaign, are decided: at once when they fit in
  one chunk, else through the SQS fan-out. The trigger key is the lineage
  (the earliest alert of its ``references`` chain), so an update reaches
  devices newly inside a grown area and never re-notifies the others.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib import metrics, retention
from chalicelib.errors import InvalidInput
from chalicelib.push.campaigns import Campaign
from chalicelib.services import fanout
from chalicelib.services.delivery import matching
from chalicelib.weather.alerts import Alert, classify, lineage_root, parse_alerts
from chalicelib.weather.conditions import conditions_cell, parse_observations, store_observations, template_vars
from chalicelib.weather.poller import ERROR, PollResult, poll
from chalicelib.weather.targets import plan_targets

if TYPE_CHECKING:
    from chalicelib.services.deps import Deps

log = logging.getLogger("hexcast.weather")

#: Alert and lineage records are kept this long after the alert ends.
RECORD_RETENTION_S = 30 * 86400
DEFAULT_MAX_LOCATION_AGE_H = 24.0
POLL_SLICE = 500  # the national feed holds ~500 alerts; post_alerts takes ≤ 1,000 at once


def _fence_ids_for(deps: Deps, fence_ids: tuple[str, ...], fence_tags: tuple[str, ...]) -> set[str] | None:
    if not fence_ids and not fence_tags:
        return None
    out = set(fence_ids)
    for tag in fence_tags:
        token = None
        while True:
            recs, token = deps.fences.list_fences(tag, 1000, token)
            out.update(r.fence_id for r in recs)
            if token is None:
                break
    return out


def _lineage(deps: Deps, alert: Alert, known: dict[str, dict]) -> str:
    """The lineage of an alert: the lineage of any referenced alert we have
    recorded, else the earliest reference, else the alert itself."""
    for ref in alert.references:
        rec = known.get(ref.id)
        if rec and rec.get("lineage"):
            return rec["lineage"]
    return lineage_root(alert)


def post_alerts(deps: Deps, body: Any) -> dict:
    items = parse_alerts(body)
    now = deps.clock()
    alerts = [a for a in items if isinstance(a, Alert)]
    ids = {a.id for a in alerts} | {r.id for a in alerts for r in a.references}
    known = deps.weather.get_alert_records(sorted(ids)) if ids else {}
    results: list[dict] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        if isinstance(item, InvalidInput):
            results.append({"index": index, "id": None, "status": "ignored", "reason": "invalid", "error": item.to_json()["error"],
                            "devices_targeted": 0, "deliveries": 0})
            continue
        out = {"index": index, "id": item.id}
        if item.id in seen or item.id in known:
            out.update(status="duplicate", devices_targeted=0, deliveries=0)
        else:
            seen.add(item.id)
            out.update(_process(deps, item, known, now))
        results.append(out)
    return {"alerts": results}


def _record(deps: Deps, alert: Alert, lineage: str, status: str, now: float, **extra: Any) -> None:
    end = alert.end_time() or now
    deps.weather.put_alert_record(
        alert.id,
        {"lineage": lineage, "status": status, "fingerprint": alert.fingerprint, "processed_at": now, **extra},
        max(end, now) + RECORD_RETENTION_S,
    )


def _process(deps: Deps, alert: Alert, known: dict[str, dict], now: float) -> dict:
    verdict = classify(alert, now)
    lineage = _lineage(deps, alert, known)
    keep_until = max(alert.end_time() or now, now) + RECORD_RETENTION_S
    if verdict.action == "ignore":
        return {"status": "ignored", "reason": verdict.reason, "devices_targeted": 0, "deliveries": 0}
    if verdict.action == "end_lineage":
        deps.weather.end_lineage(lineage, verdict.reason or verdict.action, now, keep_until)
        _record(deps, alert, lineage, "cancelled", now)
        log.info("alert lineage ended", extra={"alert_id": alert.id, "lineage": lineage, "reason": verdict.reason})
        return {"status": "cancelled", "reason": verdict.reason, "lineage": lineage, "devices_targeted": 0, "deliveries": 0}
    state = deps.weather.get_lineages([lineage]).get(lineage)
    if state and state.get("ended"):
        _record(deps, alert, lineage, "ignored", now)
        return {"status": "ignored", "reason": "lineage_ended", "lineage": lineage, "devices_targeted": 0, "deliveries": 0}

    area = deps.resolver.resolve(alert) if deps.resolver is not None else None
    if area is None:
        _record(deps, alert, lineage, "unresolved_area", now)
        log.warning("alert area unresolved", extra={"alert_id": alert.id, "same": list(alert.same)[:20]})
        return {"status": "unresolved_area", "reason": "no polygon, no known SAME county, no zone geometry",
                "lineage": lineage, "devices_targeted": 0, "deliveries": 0}

    trigger = fanout.weather_trigger(alert.id, lineage, alert.template_vars(), alert.end_time(), now)
    campaigns = matching(deps, trigger)
    # One plan per distinct audience (location age, fence filter).
    groups: dict[tuple[float, tuple[str, ...], tuple[str, ...]], list[Campaign]] = defaultdict(list)
    for c in campaigns:
        a = c.audience
        age = a.max_location_age_hours if a.max_location_age_hours is not None else DEFAULT_MAX_LOCATION_AGE_H
        groups[(age, tuple(sorted(a.fence_ids)), tuple(sorted(a.fence_tags)))].append(c)
    targeted: set[str] = set()
    deliveries = 0
    queued = 0
    for (age_h, fence_ids, fence_tags), group in sorted(groups.items(), key=lambda kv: kv[0]):
        plan = plan_targets(
            deps.devices, area.geometry, now=now, shards=deps.settings.region_shards,
            max_age_s=retention.max_location_age_s(age_h * 3600.0, retention.location_ttl_s(deps.settings)),
            inside_fences=_fence_ids_for(deps, fence_ids, fence_tags),
        )
        targeted.update(plan.device_ids)
        cids = sorted(c.campaign_id for c in group)
        bodies = fanout.make_messages(alert.id, lineage, cids, plan.device_ids, alert.template_vars(), alert.end_time(),
                                      deps.settings.fanout_chunk, queued_at=now)
        if len(bodies) == 1 or deps.queue is None:
            for b in bodies:  # people already inside are reached at once
                deliveries += len(fanout.send_chunk(deps, b))
        elif bodies:
            queued += deps.queue.send(deps.settings.fanout_queue, bodies)
    deps.weather.touch_lineage(lineage, alert.id, now, keep_until)
    # The alert.* variables stay with the record: the sweep rebuilds the
    # trigger of a decision a dead fan-out invocation left pending from them.
    _record(deps, alert, lineage, "processed", now, devices_targeted=len(targeted), vars=alert.template_vars(),
            ends_at=alert.end_time())
    log.info("alert processed", extra={"alert_id": alert.id, "lineage": lineage, "area": area.source,
                                       "campaigns": len(campaigns), "devices": len(targeted), "queued_chunks": queued})
    out = {"status": "processed", "lineage": lineage, "area_source": area.source, "campaigns": len(campaigns),
           "devices_targeted": len(targeted), "deliveries": deliveries}
    if queued:
        out["queued_chunks"] = queued
    if area.unresolved:
        out["unresolved_codes"] = list(area.unresolved)
    return out


# ---------------------------------------------------------------- conditions and the poller
class ConditionsReader(Protocol):
    def get_conditions(self, cells: list[int], now: float) -> dict[int, dict]: ...


def conditions_at(store: ConditionsReader, points: list[tuple[float, float]], now: float) -> list[dict | None]:
    """The current conditions at each (lat, lng) point (its resolution-5
    cell), in input order, read in one store call: the ``weather`` template
    dict, or None where nothing unexpired was observed."""
    cells = [conditions_cell(lat, lng) for lat, lng in points]
    found = store.get_conditions(sorted(set(cells)), now) if cells else {}
    return [template_vars(found[c]) if c in found else None for c in cells]


def post_conditions(deps: Deps, body: Any) -> dict:
    now = deps.clock()
    return store_observations(deps.weather, parse_observations(body, now=now), now)


class FeedFailures:
    """Consecutive failed polls per feed URL, as this warm process saw them
    (a cold start counts from zero again; ``feed_failures`` still counts
    every failure)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def failed(self, url: str) -> int:
        with self._lock:
            self._counts[url] = self._counts.get(url, 0) + 1
            return self._counts[url]

    def succeeded(self, url: str) -> None:
        with self._lock:
            self._counts.pop(url, None)


FEED_FAILURES = FeedFailures()


def poll_feed(deps: Deps, failures: FeedFailures = FEED_FAILURES) -> PollResult:
    """The scheduled poller: the feed's new or changed alerts go through
    :func:`post_alerts` (ids already processed answer ``duplicate``).

    A poll that fails is retried next tick, so the poller never raises; to
    keep a feed that fails forever from going unnoticed, every failure is
    logged at ERROR with the consecutive count and counted in the
    ``feed_failures`` / ``feed_consecutive_failures`` metrics."""

    def handle(collection: dict) -> None:
        features = collection.get("features") or []
        counts: dict[str, int] = defaultdict(int)
        for start in range(0, len(features), POLL_SLICE):
            out = post_alerts(deps, {"type": "FeatureCollection", "features": features[start:start + POLL_SLICE]})
            for r in out["alerts"]:
                counts[r["status"]] += 1
        log.info("feed polled", extra={"statuses": dict(counts)})

    url = deps.settings.weather_feed_url
    result = poll(deps.weather, deps.settings, handle, now=deps.clock())
    if result.status != ERROR:
        failures.succeeded(url)
        return result
    n = failures.failed(url)
    metrics.feed_failure(n)
    log.error("weather feed failing", extra={"url": url, "consecutive_failures": n, "http_status": result.http_status,
                                             "reason": result.reason})
    return result
