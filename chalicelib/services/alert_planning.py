"""The alert planner: the consumer of the alert queue. For one accepted alert:
lineage → area (within its budget) → the devices already inside → fan-out
chunks for every matching ``weather_alert`` campaign.

Bounded work per alert:

* the area is resolved once per distinct input (polygon, SAME set, zones)
  and its region plan computed once per area, kept while the function is
  warm (:class:`~chalicelib.services.caches.PlanCache`): the updates of a lineage and alerts over the
  same counties share them;
* an area over :data:`MAX_AREA_KM2`, :data:`MAX_VERTICES` or
  :data:`MAX_PARTS` is ``ignored: area_too_large`` (recorded and reported,
  never silent);
* a plan over :data:`MAX_QUERIES` region Queries is planned again with a
  coarser boundary (fewer, wider key ranges; the devices read beyond the
  edge are dropped by the exact test), and is ``area_too_large`` only when
  even the coarsest plan exceeds it.

Exactly once: the intake created the alert's record (``queued``); the
planner moves it to ``planning`` with a conditional write, so a message
delivered twice is planned once, and ends it ``processed`` (or ``ignored``,
``unresolved_area``). A plan interrupted mid-way is taken over when its lease
runs out; its decisions are claimed per (campaign, device, lineage), so a
second plan never pushes twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import shapely

from chalicelib import metrics, retention
from chalicelib.errors import Unavailable
from chalicelib.geo.sphere import geometry_area_km2
from chalicelib.services import fanout
from chalicelib.services.alert_lineage import lineage_ended, resolve_lineage
from chalicelib.services.delivery import matching
from chalicelib.weather.alert_codec import alert_from_json, alert_to_json
from chalicelib.weather.alerts import Alert, classify
from chalicelib.weather.area import Area
from chalicelib.weather.region import RegionPlan
from chalicelib.weather.targets import plan_targets, plan_within

if TYPE_CHECKING:
    from chalicelib.push.campaigns import Campaign  # compiled by the campaign cache: Liquid loads with a campaign
    from chalicelib.services.deps import Deps

log = logging.getLogger("hexcast.weather")

MESSAGE_VERSION = 1
#: Alert and lineage records are kept this long after the alert ends.
RECORD_RETENTION_S = 30 * 86400
DEFAULT_MAX_LOCATION_AGE_H = 24.0
#: How long a plan may hold an alert before another consumer takes it over
#: (above the planner function's timeout, 300 s; a plan within the budget
#: takes seconds).
PLAN_LEASE_S = 330.0

#: The area budget. The largest real NWS areas (a statewide heat advisory
#: over Texas's 254 counties, ~700,000 km²; an Alaska marine zone) fit well
#: inside; a continent or the globe does not.
MAX_AREA_KM2 = 5_000_000.0
MAX_VERTICES = 200_000
MAX_PARTS = 2_000
#: Region Queries one plan may issue (about 2,500 read units at most).
MAX_QUERIES = 5_000
#: Boundaries tried, finest first, until the plan fits :data:`MAX_QUERIES`.
#: Alerts start at 100 boundary cells, not the 1,000 of
#: :data:`~chalicelib.weather.targets.PLAN_MAX_BOUNDARY` (tuned for one
#: storm over 1,000,000 devices): a national feed plans hundreds of county
#: unions at once, and the two real weather.gov bundles need 10,242 region
#: Queries at 100 against 51,207 at 1,000 (17,472 at 300), for devices a
#: few kilometres beyond the edge read and dropped by the exact test.
BOUNDARY_LADDER = (100, 30)

#: Record statuses the planner is done with.
FINAL = ("processed", "ignored", "unresolved_area", "cancelled")


# ---------------------------------------------------------------- messages
def plan_message(alert: Alert, received_at: float) -> str:
    """The alert queue's message for an accepted alert."""
    return json.dumps({"v": MESSAGE_VERSION, "kind": "alert", "alert": alert_to_json(alert), "received_at": received_at},
                      separators=(",", ":"))


def is_plan_message(body: str) -> bool:
    return body.startswith('{"v":1,"kind":"alert"')


def keep_until(alert: Alert, now: float) -> float:
    return max(alert.end_time() or now, now) + RECORD_RETENTION_S


# ---------------------------------------------------------------- the cache
@dataclass(frozen=True)
class Budgeted:
    """An area and its plan, or why it is too large (``reason``)."""

    area: Area | None
    plan: RegionPlan | None = None
    reason: str | None = None


def area_key(alert: Alert, shards: int) -> tuple:
    """What decides an alert's area: its polygon, SAME codes and zones."""
    digest = hashlib.sha256(json.dumps([alert.geometry, sorted(alert.same), sorted(alert.affected_zones)],
                                       sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return (digest, shards)


def over_budget(geometry: Any) -> str | None:
    """Why an area is too large to plan, or None."""
    parts = getattr(geometry, "geoms", [geometry])
    if len(parts) > MAX_PARTS:
        return f"{len(parts)} parts (at most {MAX_PARTS})"
    vertices = int(shapely.get_num_coordinates(geometry))
    if vertices > MAX_VERTICES:
        return f"{vertices} vertices (at most {MAX_VERTICES})"
    km2 = geometry_area_km2(geometry)
    if km2 > MAX_AREA_KM2:
        return f"{km2:,.0f} km² (at most {MAX_AREA_KM2:,.0f})"
    return None


def budgeted_plan(deps: Deps, alert: Alert) -> Budgeted:
    """The alert's area and region plan within the budget (cached)."""
    key = area_key(alert, deps.settings.region_shards)
    got = deps.plans.get(key)
    if got is not None:
        return got
    area = deps.resolver.resolve(alert) if deps.resolver is not None else None
    if area is None:
        return Budgeted(None)  # not cached: a zone lookup may work next time
    reason = over_budget(area.geometry)
    plan = None
    if reason is None:
        plan, fits = plan_within(area.geometry, shards=deps.settings.region_shards, ladder=BOUNDARY_LADDER,
                                 max_queries=MAX_QUERIES)
        if not fits:
            reason = f"{plan.query_count} region queries at the coarsest plan (at most {MAX_QUERIES})"
            plan = None
    out = Budgeted(area, plan, reason)
    deps.plans.put(key, out)
    return out


# ---------------------------------------------------------------- the consumer
def plan_alert(deps: Deps, body: str) -> dict:
    """Plan one alert-queue message; → the alert's outcome (its record).

    Raises ValueError on a malformed message (it reaches the dead-letter
    queue after its retries) and :class:`Unavailable` while another consumer
    holds the alert (SQS delivers it again later)."""
    msg = json.loads(body)
    if not isinstance(msg, dict) or msg.get("v") != MESSAGE_VERSION or msg.get("kind") != "alert":
        raise ValueError("not a hexcast alert message")
    alert = alert_from_json(msg["alert"])
    now = deps.clock()
    until = keep_until(alert, now)
    rec = deps.weather.get_alert_records([alert.id]).get(alert.id)
    if rec is None or rec.get("status") in FINAL:
        return rec or {"status": "unknown"}  # planned already (a redelivery), or never accepted
    if rec.get("status") == "planning" and float(rec.get("lease_until") or 0) > now:
        raise Unavailable(f"alert {alert.id} is being planned by another consumer")
    claimed = {**rec, "status": "planning", "lease_until": now + PLAN_LEASE_S}
    if not deps.weather.advance_alert(alert.id, claimed, until, from_status=("queued", "planning")):
        return deps.weather.get_alert_records([alert.id]).get(alert.id) or {"status": "unknown"}
    outcome = _plan(deps, alert, now, until)
    record = {**rec, **outcome, "planned_at": now}
    record.pop("lease_until", None)
    deps.weather.advance_alert(alert.id, record, until, from_status=("planning",))
    metrics.alert_planned(str(record["status"]), rec.get("received_at"), deps.clock())
    return record


def _plan(deps: Deps, alert: Alert, now: float, until: float) -> dict:
    verdict = classify(alert, now)
    if verdict.action == "ignore":  # ended (or expired) while it waited
        return {"status": "ignored", "reason": verdict.reason}
    lineage = resolve_lineage(deps, alert, until)
    ended = lineage_ended(deps, lineage)
    if ended:
        return {"status": "ignored", "reason": "lineage_ended", "lineage": lineage}
    budgeted = budgeted_plan(deps, alert)
    area = budgeted.area
    if area is None:
        log.warning("alert area unresolved", extra={"alert_id": alert.id, "same": list(alert.same)[:20]})
        return {"status": "unresolved_area", "reason": "no polygon, no known SAME county, no zone geometry",
                "lineage": lineage}
    if budgeted.reason is not None or budgeted.plan is None:
        log.warning("alert area too large", extra={"alert_id": alert.id, "why": budgeted.reason})
        return {"status": "ignored", "reason": "area_too_large", "detail": budgeted.reason, "lineage": lineage,
                "area_source": area.source}
    trigger = fanout.weather_trigger(alert.id, lineage, alert.template_vars(), alert.end_time(), now)
    campaigns = matching(deps, trigger)
    targeted, deliveries, queued = _fan_out(deps, alert, lineage, campaigns, budgeted.plan, area, now)
    deps.weather.touch_lineage(lineage, alert.id, now, until)
    log.info("alert planned", extra={"alert_id": alert.id, "lineage": lineage, "area": area.source,
                                     "campaigns": len(campaigns), "devices": targeted, "queued_chunks": queued})
    # The alert.* variables stay with the record: the sweep rebuilds the
    # trigger of a decision a dead fan-out invocation left pending from them.
    out: dict[str, Any] = {"status": "processed", "lineage": lineage, "area_source": area.source,
                           "campaigns": len(campaigns), "devices_targeted": targeted, "deliveries": deliveries,
                           "queued_chunks": queued, "vars": alert.template_vars(), "ends_at": alert.end_time()}
    if area.unresolved:
        out["unresolved_codes"] = list(area.unresolved)
    return out


def _fan_out(deps: Deps, alert: Alert, lineage: str, campaigns: list[Campaign], plan: RegionPlan, area: Area,
             now: float) -> tuple[int, int, int]:
    """Chunks for every audience → the queue (the first at once when there
    is no queue); → (devices targeted, deliveries decided here, chunks queued)."""
    groups: dict[tuple[float, tuple[str, ...], tuple[str, ...]], list[Campaign]] = defaultdict(list)
    for c in campaigns:  # one plan per distinct audience (location age, fence filter)
        a = c.audience
        age = a.max_location_age_hours if a.max_location_age_hours is not None else DEFAULT_MAX_LOCATION_AGE_H
        groups[(age, tuple(sorted(a.fence_ids)), tuple(sorted(a.fence_tags)))].append(c)
    targeted: set[str] = set()
    deliveries = queued = 0
    for (age_h, fence_ids, fence_tags), group in sorted(groups.items(), key=lambda kv: kv[0]):
        found = plan_targets(
            deps.devices, area.geometry, now=now, shards=deps.settings.region_shards,
            max_age_s=retention.max_location_age_s(age_h * 3600.0, retention.location_ttl_s(deps.settings)),
            inside_fences=_fence_ids_for(deps, fence_ids, fence_tags), plan=plan,
        )
        targeted.update(found.device_ids)
        bodies = fanout.make_messages(alert.id, lineage, sorted(c.campaign_id for c in group), found.device_ids,
                                      alert.template_vars(), alert.end_time(), deps.settings.fanout_chunk, queued_at=now)
        if deps.queue is None:
            for b in bodies:
                deliveries += len(fanout.send_chunk(deps, b))
        elif bodies:
            queued += deps.queue.send(deps.settings.fanout_queue, bodies)
    return len(targeted), deliveries, queued


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


# ---------------------------------------------------------------- in process
class HeldMessages(Protocol):
    """A queue that keeps what was sent (:class:`~chalicelib.weather.fanout.InlineQueue`)."""

    messages: list[str]


def drain(deps: Deps, queue: HeldMessages) -> list[str]:
    """Hand each message an :class:`~chalicelib.weather.fanout.InlineQueue`
    holds to its consumer, as SQS would: alert messages to the planner,
    chunks to the sender (tests and benchmarks; draining the same message
    twice simulates a redelivery). → the delivery ids the chunks decided."""
    ids: list[str] = []
    while queue.messages:
        body = queue.messages.pop(0)
        if is_plan_message(body):
            plan_alert(deps, body)
        else:
            ids += fanout.send_chunk(deps, body)
    return ids
