"""Use cases of what happens after a campaign is stored: per-campaign
stats, the delivery log, open and conversion events, audience estimates, and
the scheduled rounds that release held pushes and sweep records left open.
Each takes parsed JSON plus ``Deps`` and returns plain data."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

from chalicelib import metrics, retention
from chalicelib.errors import InvalidGeometry, InvalidInput, NotFound
from chalicelib.geo.budget import ALERT_BUDGET, check_area
from chalicelib.geo.geojson import parse_feature
from chalicelib.geo.shape import FenceShape
from chalicelib.push.model import FAILED, HELD, SENT, SUPPRESSED, Delivery
from chalicelib.services.devices import authorized_device
from chalicelib.services.geofences import fence_or_404
from chalicelib.services import delivery_sweep
from chalicelib.timeutil import iso, parse_timestamp
from chalicelib.validation import CAMPAIGN_ID_RE, is_finite_number, known_fields, validate_device_id
from chalicelib.weather.region import RegionPlan
from chalicelib.weather.targets import PLAN_FINEST, PLAN_MAX_BOUNDARY, plan_targets, plan_within

if TYPE_CHECKING:
    from chalicelib.services.deps import Deps

log = logging.getLogger("hexcast.push")

EVENT_TYPES = ("push_opened", "conversion")
#: An event's fields; any other is a 400 (``"amount"`` for ``"value"``
#: would otherwise count a conversion with no value).
EVENT_FIELDS = ("device_id", "type", "delivery_id", "coupon_code", "value", "at")
#: An estimate's area is planned like an alert's (``plan_targets``' cover).
ESTIMATE_BUDGET = replace(ALERT_BUDGET, max_boundary=PLAN_MAX_BOUNDARY, finest=PLAN_FINEST)
#: An estimate answers while the client waits: its area may take at most
#: this many region-index Queries (Texas 368, a county ≤ ~450; Alaska 1,468 does
#: not fit). The boundary is covered coarser until it fits: an estimate reads
#: a few more devices near the edge and tests each exactly.
MAX_ESTIMATE_QUERIES = 600
ESTIMATE_BOUNDARY_LADDER = (PLAN_MAX_BOUNDARY, 100, 30)
STATUSES = ("sent", "suppressed", "failed", "held", "pending", "publishing")


# ---------------------------------------------------------------- stats
def _rates(block: dict) -> dict:
    sent = block["sent"]
    block["open_rate"] = round(block["opened"] / sent, 4) if sent else 0.0
    block["conversion_rate"] = round(block["converted"] / sent, 4) if sent else 0.0
    return block


def _empty() -> dict:
    return {"decisions": 0, "sent": 0, "failed": 0, "held": 0, "pending": 0, "suppressed": Counter(), "failed_reasons": Counter(),
            "opened": 0, "converted": 0, "conversion_value": 0.0}


def _add(block: dict, d: Delivery) -> None:
    block["decisions"] += 1
    if d.status == SENT:
        block["sent"] += 1
    elif d.status == FAILED:
        block["failed"] += 1
        block["failed_reasons"][d.reason or "unknown"] += 1
    elif d.status == SUPPRESSED:
        block["suppressed"][d.reason or "unknown"] += 1
    elif d.status == HELD:
        block["held"] += 1
    else:
        block["pending"] += 1
    if d.dups:
        block["suppressed"]["duplicate"] += d.dups
    if d.opened_at is not None:
        block["opened"] += 1
    if d.converted_at is not None:
        block["converted"] += 1
        block["conversion_value"] += d.conversion_value or 0.0


def _finish(block: dict) -> dict:
    block["suppressed"] = dict(sorted(block["suppressed"].items()))
    block["failed_reasons"] = dict(sorted(block["failed_reasons"].items()))
    block["conversion_value"] = round(block["conversion_value"], 2)
    return _rates(block)


def stats(deps: Deps, campaign_id: str) -> dict:
    """Counted from the delivery records themselves, so they are exact."""
    # here, not at the top: the campaign definitions (Liquid, babel) stay out
    # of the release_held function's cold start, which imports this module
    from chalicelib.services.campaigns import campaign_or_404

    campaign_or_404(deps, campaign_id)
    total = _empty()
    arms: dict[str, dict] = {}
    for d in deps.deliveries.campaign_deliveries(campaign_id):
        _add(total, d)
        if d.arm is not None:
            _add(arms.setdefault(d.arm, _empty()), d)
    out = _finish(total)
    out["by_arm"] = {name: _finish(b) for name, b in sorted(arms.items())}
    return {"campaign_id": campaign_id, **out}


# ---------------------------------------------------------------- deliveries
def list_deliveries(deps: Deps, params: dict[str, str], limit: int) -> dict:
    campaign_id = params.get("campaign_id")
    device_id = params.get("device_id")
    status = params.get("status")
    if campaign_id is not None and not CAMPAIGN_ID_RE.fullmatch(campaign_id):
        raise InvalidInput("campaign_id is not a valid campaign id", "campaign_id")
    if device_id is not None:
        validate_device_id(device_id)
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", "status")
    items, token = deps.deliveries.list_deliveries(
        campaign_id=campaign_id, device_id=device_id, status=status, limit=limit, next_token=params.get("next_token")
    )
    return {"deliveries": [d.to_json() for d in items], "next_token": token}


# ---------------------------------------------------------------- events
def post_event(deps: Deps, body: Any, *, role: str = "admin", secret: str | None = None) -> dict:
    """An open or a conversion, attributed to a delivery of the device: the
    one named, else (conversions) the one whose coupon was redeemed, else the
    device's latest sent push — within the conversion window. An app key
    needs the device's secret (:func:`authorize_device`)."""
    if not isinstance(body, dict):
        raise InvalidInput("expected a JSON object", "body")
    known_fields(body, EVENT_FIELDS)
    device_id = validate_device_id(body.get("device_id"))
    etype = body.get("type")
    if etype not in EVENT_TYPES:
        raise InvalidInput(f"type must be one of {', '.join(EVENT_TYPES)}", "type")
    did = body.get("delivery_id")
    if did is not None and (not isinstance(did, str) or not did.startswith("dl_") or len(did) > 64):
        raise InvalidInput("delivery_id is not a valid delivery id", "delivery_id")
    code = body.get("coupon_code")
    if code is not None and (not isinstance(code, str) or not 1 <= len(code) <= 64):
        raise InvalidInput("coupon_code must be a string of 1-64 characters", "coupon_code")
    value = body.get("value")
    top = deps.settings.max_conversion_value
    if value is not None and (not is_finite_number(value) or not 0 <= value <= top):
        raise InvalidInput(f"value must be a number from 0 to {top:,.15g} (HEXCAST_MAX_CONVERSION_VALUE)", "value")
    now = deps.clock()
    at = now if body.get("at") is None else parse_timestamp(body["at"], field="at")
    if at > now + 300:
        raise InvalidInput("at is in the future", "at")
    if etype == "push_opened" and did is None:
        raise InvalidInput("push_opened needs the delivery_id the push carried", "delivery_id")
    authorized_device(deps, device_id, role, secret)  # an app key: 403 for unknown ids too
    metrics.event(etype)

    window = deps.settings.conversion_window_hours * 3600.0
    target = None
    if did is not None:
        target = deps.deliveries.get_deliveries([did]).get(did)
        if target is None or target.device_id != device_id:
            raise NotFound(f"no delivery {did!r} for this device", "delivery_id")
    else:
        candidates = [d for d in deps.deliveries.device_deliveries(device_id, at - window) if d.status == SENT]
        if code is not None:
            candidates = [d for d in candidates if (d.coupon_code or "").upper() == code.upper()]
        target = next((d for d in candidates if d.sent_at is not None and d.sent_at <= at), None)

    out: dict[str, Any] = {"accepted": True, "type": etype, "attributed_to": None}
    if target is None:
        out["reason"] = "no_matching_delivery"
        return out
    if target.status != SENT or target.sent_at is None:
        out["reason"] = "delivery_not_sent"
        return out
    if not target.sent_at <= at <= target.sent_at + window:
        out["reason"] = "outside_conversion_window"
        return out
    if etype == "push_opened":
        first = deps.deliveries.update_delivery(target.delivery_id, {"opened_at": at}, absent="opened_at")
    else:
        if code is not None and target.coupon_code and target.coupon_code.upper() != code.upper():
            out["reason"] = "coupon_mismatch"
            return out
        if target.coupon_expires_at is not None and code is not None and at > target.coupon_expires_at:
            out["reason"] = "coupon_expired"
            return out
        changes = {"converted_at": at, "conversion_value": float(value) if value is not None else None}
        first = deps.deliveries.update_delivery(target.delivery_id, changes, absent="converted_at")
    out["attributed_to"] = target.delivery_id
    if not first:
        out["duplicate"] = True
    return out


# ---------------------------------------------------------------- audience
def audience_estimate(deps: Deps, body: Any) -> dict:
    """Devices reachable now (push and location consent, push on) whose last
    known location is inside the fence or geometry."""
    if not isinstance(body, dict) or ("fence_id" in body) == ("geometry" in body):
        raise InvalidInput('give exactly one of "fence_id" or "geometry"', "body")
    known_fields(body, ("fence_id", "geometry", "max_location_age_hours"))
    max_age_h = body.get("max_location_age_hours")
    if max_age_h is not None and (not is_finite_number(max_age_h) or not 0 < max_age_h <= 24 * 366):
        raise InvalidInput("max_location_age_hours must be a number from 0 to 8784", "max_location_age_hours")
    if "fence_id" in body:
        rec = fence_or_404(deps, body["fence_id"])
        d = parse_feature(rec.feature, rec.fence_id, budget=None)  # stored: already within its budget
    else:
        geometry = body["geometry"]
        if not isinstance(geometry, dict) or geometry.get("type") not in ("Polygon", "MultiPolygon"):
            # a circle or an H3 region needs properties this body has no room for
            raise InvalidGeometry(
                "geometry must be a GeoJSON Polygon or MultiPolygon (for a circle or an H3 region, "
                "store it as a geofence and pass its fence_id)",
                "geometry.type" if isinstance(geometry, dict) else "geometry",
            )
        feature = {"type": "Feature", "geometry": geometry, "properties": {"name": "audience"}}
        try:
            d = parse_feature(feature, "audience", budget=None)
        except InvalidInput as exc:
            exc.field = exc.field if (exc.field or "").startswith("geometry") else "geometry"
            raise
        # priced as the plan below covers it (no buffer, a finer boundary)
        reason = check_area(d.geometry, ESTIMATE_BUDGET)
        if reason is not None:
            raise InvalidGeometry(f"too complex to plan: {reason}; simplify or split the area", "geometry")
    now = deps.clock()
    # The device region index (as for storms): the area's H3 cover becomes a
    # few key-range Queries; consent, push and location age are checked there.
    # Never a location older than the TTL, whatever was asked.
    max_age_s = retention.max_location_age_s(max_age_h * 3600.0 if max_age_h is not None else None,
                                             retention.location_ttl_s(deps.settings))
    shards = deps.settings.region_shards
    region = estimate_plan(d.geometry, shards, "fence_id" if "fence_id" in body else "geometry")
    plan = plan_targets(deps.devices, d.geometry, now=now, max_age_s=max_age_s, shards=shards, plan=region)
    ids = plan.device_ids
    if d.kind != "polygon" and ids:
        # Circles (geodesic) and H3 regions: the polygon above covers them;
        # the fence's own exact test decides.
        shape = FenceShape.from_definition(d)
        states = {i: dev.state for i, dev in deps.devices.get_devices(ids).items()}
        ids = [i for i in ids if (st := states.get(i)) is not None and shape.covers(st.lat, st.lng)]
    reachable = len(ids)
    return {"reachable": reachable, "as_of": iso(now)}


def estimate_plan(geometry: Any, shards: int, where: str) -> RegionPlan:
    """The area's region plan within :data:`MAX_ESTIMATE_QUERIES`, or a 400
    naming ``where`` (checked before any Query)."""
    plan, fits = plan_within(geometry, shards=shards, ladder=ESTIMATE_BOUNDARY_LADDER, max_queries=MAX_ESTIMATE_QUERIES)
    if fits:
        return plan
    raise InvalidGeometry(
        f"too large to estimate at once: the area spans {plan.query_count:,} region-index queries (at most "
        f"{MAX_ESTIMATE_QUERIES:,}); estimate its parts one at a time", where)


# ---------------------------------------------------------------- held
MAX_RELEASE_ROUNDS = 50  # 5,000 per run keeps one run well inside a Lambda's time
MAX_SWEEP_ROUNDS = 10
ROUND = 100


def _rounds(step: Callable[..., dict[str, int]], max_rounds: int) -> dict[str, int]:
    """Call ``step(limit=ROUND)`` until a round comes back short (or the
    run's budget is spent); the counts summed."""
    total: dict[str, int] = {}
    for _ in range(max_rounds):
        counts = step(limit=ROUND)
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
        if sum(counts.values()) < ROUND:
            break
    return total


def release_held(deps: Deps) -> dict[str, int]:
    """Send what the quiet hours held back and is now due (scheduled)."""
    return _rounds(lambda limit: delivery_sweep.release_held(deps, limit=limit), MAX_RELEASE_ROUNDS)


def sweep_open(deps: Deps) -> dict[str, int]:
    """Resolve deliveries a dead invocation left ``pending`` or
    ``publishing`` (scheduled with :func:`release_held`; see
    :func:`chalicelib.services.delivery_sweep.sweep_open`)."""
    return _rounds(lambda limit: delivery_sweep.sweep_open(deps, limit=limit), MAX_SWEEP_ROUNDS)
