"""The scheduled rounds of the delivery pipeline (:mod:`chalicelib.services.delivery`):
releasing what quiet hours held back, and sweeping records a dead invocation
left ``pending`` or ``publishing``. Both are conditional on the record's
status at every step, so overlapping runs never publish one record twice."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from chalicelib import metrics
from chalicelib.errors import Unavailable
from chalicelib.push.model import (
    EVENT_TRIGGER,
    FAILED,
    GEOFENCE_TRIGGERS,
    HELD,
    PENDING,
    PUBLISHING,
    SUPPRESSED,
    Delivery,
    FenceContext,
    Trigger,
)
from chalicelib.services.delivery import (
    INTERRUPTED,
    STALE_OPEN_S,
    Outcome,
    abandon,
    consent_reason,
    coupon_for,
    drive,
    finish,
    message_content,
    pre_claim,
    publish,
)
from chalicelib.push.model import RenderError

if TYPE_CHECKING:
    from chalicelib.push.campaigns import Campaign
    from chalicelib.services.deps import Deps
    from chalicelib.ports import Device

log = logging.getLogger("hexcast.push")


def release_held(deps: Deps, limit: int = 100) -> dict[str, int]:
    """Send the held deliveries whose quiet window has ended (scheduled).

    Each is rendered now, from the trigger kept when it was held (local
    time, weather at the device and coupon as they are at release; a
    render error suppresses that one record: ``render_error``), then moved
    ``held`` → ``publishing`` (or ``suppressed``) with a conditional
    update, so overlapping runs never send one twice; the reads come
    first, so a store error leaves it ``held`` for the next run."""
    now = deps.clock()
    counts: dict[str, int] = {}
    for d in deps.deliveries.due_held(now, limit):
        campaign = deps.campaign_cache.get(deps.campaigns, d.campaign_id, now)
        device = deps.devices.get_device(d.device_id)
        reason = None
        if campaign is None or not campaign.in_schedule(now):
            reason = "campaign_disabled"
        elif device is None:
            reason = "unknown_device"
        else:
            reason = consent_reason(device, campaign, Trigger(d.trigger_type, d.trigger_key, d.trigger_ref, d.created_at))
        ttl = campaign.ttl_seconds if campaign else None
        if reason is None and ttl is not None:
            ttl = int(d.created_at + ttl - now)
            if ttl <= 0:
                reason = "expired"
        content: dict[str, Any] = {}
        if reason is None:
            assert campaign is not None and device is not None  # else a reason was set above
            content, reason = render_at_release(deps, d, campaign, device, now)
        if reason is not None:
            changes = {"status": SUPPRESSED, "reason": reason, "release_at": None, "held_context": None, "updated_at": now}
            if deps.deliveries.update_delivery(d.delivery_id, changes, expect_status=HELD):
                counts[reason] = counts.get(reason, 0) + 1
                metrics.delivery(SUPPRESSED, reason)
            continue
        changes = {"status": PUBLISHING, "release_at": None, "held_context": None, "updated_at": now, **content}
        if not deps.deliveries.update_delivery(d.delivery_id, changes, expect_status=HELD):
            continue  # another run took it
        assert device is not None  # else a reason was set above
        out = publish(deps, device, campaign, d.delivery_id, content, ttl)
        metrics.delivery(out.status, out.reason)
        key = out.status if out.reason is None else f"{out.status}:{out.reason}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def render_at_release(deps: Deps, d: Delivery, campaign: Campaign, device: Device, now: float) -> tuple[dict[str, Any], str | None]:
    """``(record fields of the push, None)``, or ``({}, "render_error")``:
    the held push rendered at ``now`` from its kept trigger, with the
    weather at the device now (else as it was kept) and a coupon issued
    now. A record held with its text already rendered (no kept trigger)
    goes out as it is."""
    if d.held_context is None:
        if not d.title or not d.body:
            return {}, "render_error"
        return {"title": d.title, "body": d.body, "deep_link": d.deep_link, "coupon_code": d.coupon_code}, None
    try:
        trigger = Trigger.from_snapshot(d.trigger_type, d.trigger_key, d.trigger_ref, d.held_context)
    except (ValueError, TypeError, KeyError, IndexError):
        log.warning("held push without a readable trigger", extra={"delivery_id": d.delivery_id})
        return {}, "render_error"
    st = device.state
    if trigger.type in GEOFENCE_TRIGGERS and st is not None:
        from chalicelib.services.weather import conditions_at  # the weather stack loads only when a held push needs it

        wx = conditions_at(deps.weather, [(st.lat, st.lng)], now)[0]
        if wx:
            trigger = replace(trigger, weather=wx)
    coupon = coupon_for(deps, campaign, device.device_id, now)
    try:
        msg = campaign.render(device.attributes, trigger, coupon=coupon, now=now, arm=d.arm)
    except RenderError as exc:
        log.warning("render error at release", extra={"campaign_id": campaign.campaign_id, "delivery_id": d.delivery_id,
                                                      "error": str(exc)[:200]})
        return {}, "render_error"
    return message_content(msg, coupon), None


# ---------------------------------------------------------------- the sweep
def rebuild_trigger(deps: Deps, d: Delivery, device: Device, now: float) -> Trigger | None:
    """The trigger of a stored record, as far as the store still knows it:
    a geofence occasion from its key (fence id, event, visit) and the fence
    as it is now, with the weather at the device now; a weather alert from
    its lineage and the ``alert.*`` variables kept in the alert's record.
    None when that is not possible (an unknown key, an alert record gone)."""
    if d.trigger_type in GEOFENCE_TRIGGERS:
        head, _, rest = d.trigger_key.partition(":")
        parts = rest.rsplit(":", 2)
        if head != "fence" or len(parts) != 3 or parts[1] not in EVENT_TRIGGER:
            return None
        fence_id, event, visit = parts
        try:
            visit_ts = float(visit)
        except ValueError:
            return None
        rec = deps.fences.get_fences([fence_id]).get(fence_id)
        props = rec.feature.get("properties", {}) if rec else {}
        fence = FenceContext(fence_id, rec.name if rec else fence_id, tuple(rec.tags) if rec else (),
                             dict(props.get("metadata") or {}))
        trigger = Trigger.geofence(event, fence, visit_ts, d.created_at)
        if trigger.key != d.trigger_key or trigger.type != d.trigger_type:
            return None
        st = device.state
        from chalicelib.services.weather import conditions_at

        wx = conditions_at(deps.weather, [(st.lat, st.lng)], now)[0] if st is not None else None
        return replace(trigger, weather=wx) if wx else trigger
    if d.trigger_type == "weather_alert" and d.trigger_key.startswith("alert:"):
        alert = deps.weather.get_alert_records([d.trigger_ref]).get(d.trigger_ref) or {}
        if not isinstance(alert.get("vars"), dict):
            return None
        ends_at = alert.get("ends_at")
        return Trigger("weather_alert", d.trigger_key, d.trigger_ref, d.created_at, alert=alert["vars"],
                       needs_location=True, ends_at=float(ends_at) if isinstance(ends_at, (int, float)) else None)
    return None


def _redrive(deps: Deps, d: Delivery, now: float) -> Outcome:
    """Steps 1-8 again for a stale ``pending`` record (leased by the
    caller): the campaign, device and trigger as they are now."""
    campaign = deps.campaign_cache.get(deps.campaigns, d.campaign_id, now)
    if campaign is None or not campaign.in_schedule(now):
        return finish(deps, d.delivery_id, SUPPRESSED, "campaign_disabled")
    device = deps.devices.get_device(d.device_id)
    if device is None:
        return finish(deps, d.delivery_id, SUPPRESSED, "unknown_device")
    trigger = rebuild_trigger(deps, d, device, now)
    if trigger is None:
        return finish(deps, d.delivery_id, FAILED, INTERRUPTED)
    reason, arm, ttl = pre_claim(campaign, device, trigger, now, d.created_at)
    return drive(deps, campaign, device, trigger, d.delivery_id, now, reason, arm, ttl)


def sweep_open(deps: Deps, *, stale_s: float = STALE_OPEN_S, limit: int = 100) -> dict[str, int]:
    """Resolve the records an invocation that died left open (scheduled
    with :func:`release_held`), found through the store's ``open`` index:

    * ``publishing`` for longer than ``stale_s``: SNS may or may not have
      accepted the push, and mobile push has no idempotency key, so it is
      never published again: ``failed: interrupted``.
    * ``pending`` for longer than ``stale_s`` (or abandoned after an error):
      nothing was published. Leased (a conditional update of
      ``updated_at``), then driven through the pipeline again from the
      stored record — campaign, device and consent as they are now, the
      trigger rebuilt by :func:`rebuild_trigger` (``failed: interrupted``
      when it cannot be), the TTL counted from the record's creation.

    → counts by ``<old status>-><outcome>``. Every step is conditional on
    the status, so overlapping sweeps and a late original invocation never
    publish one record twice."""
    now = deps.clock()
    cutoff = now - stale_s
    store = deps.deliveries
    counts: dict[str, int] = {}
    for d in store.stale_open(cutoff, limit):
        did = d.delivery_id
        leased = False
        try:
            if d.status == PUBLISHING:
                changes = {"status": FAILED, "reason": INTERRUPTED, "updated_at": now}
                if not store.update_delivery(did, changes, expect_status=PUBLISHING, updated_before=cutoff):
                    continue
                log.warning("delivery interrupted while publishing", extra={"delivery_id": did})
                out = Outcome(did, FAILED, INTERRUPTED)
            else:
                if not store.update_delivery(did, {"updated_at": now}, expect_status=PENDING, updated_before=cutoff):
                    continue  # finished or leased meanwhile
                leased = True
                try:
                    out = _redrive(deps, d, now)
                except Unavailable:
                    raise
                except Exception:  # noqa: BLE001 — not transient: recorded, never retried forever
                    log.exception("re-drive failed", extra={"delivery_id": did})
                    out = finish(deps, did, FAILED, INTERRUPTED)
        except Unavailable:  # throttled: this record waits for the next run, the others go on
            if leased:
                abandon(store, did, now)
            counts[f"{d.status}->retry"] = counts.get(f"{d.status}->retry", 0) + 1
            continue
        metrics.delivery(out.status, out.reason, out.duplicate)
        key = f"{d.status}->{out.status}" + (f":{out.reason}" if out.reason else "")
        counts[key] = counts.get(key, 0) + 1
    return counts
