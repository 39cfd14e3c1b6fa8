"""The delivery pipeline: one decision per (campaign, device, trigger key).

For each trigger (a geofence event; later a weather alert) and each enabled,
in-schedule campaign it matches, :func:`decide` walks the steps below and
leaves exactly one delivery record, whose id is derived from the key:

1. consent — push always, location for location triggers; a device whose
   endpoint SNS disabled is ``suppressed: endpoint_disabled``;
2. experiment — deterministic arm; the control group is recorded
   (``suppressed: control``), never sent;
3. exactly-once claim — a conditional create of the record. A retried ping,
   a redelivered message or a Lambda retry finds it and stops here (the
   record counts the duplicate);
4. quiet hours in ``drop`` mode — ``suppressed: quiet_hours``;
5. render — Liquid; an error suppresses this one delivery
   (``render_error``), never the batch;
6. frequency caps — per device per day and a minimum gap, reserved with a
   conditional write (a dropped or broken push does not use up the cap);
7. quiet hours in ``hold`` mode — ``held`` until the window ends, with the
   trigger (not the text), then rendered again and sent by
   :func:`chalicelib.services.delivery_sweep.release_held` (scheduled);
8. publish through SNS — ``sent`` with the SNS message id, or ``failed`` with
   the reason (``endpoint_disabled`` also turns the device's push off).

Steps 1-2 record a final status directly with the claim. After the claim the
record goes ``pending`` → ``publishing`` → final with conditional updates, so
two workers can never both publish it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from chalicelib import metrics
from chalicelib.errors import Unavailable
from chalicelib.push.coupons import Coupon, make_coupon
from chalicelib.push.model import (
    FAILED,
    HELD,
    PENDING,
    PUBLISHING,
    SENT,
    SUPPRESSED,
    Delivery,
    EndpointDisabled,
    PushError,
    PushMessage,
    RenderError,
    Trigger,
    delivery_id_for,
)
from chalicelib.push.quiet import quiet_release_at
from chalicelib.push.lifecycle import open_since
from chalicelib.retry import RetryPolicy
from chalicelib.services.caches import CampaignCache  # noqa: F401 (re-exported: tests and the container build it from here)

if TYPE_CHECKING:
    from chalicelib.push.render import Rendered
    from chalicelib.push.campaigns import Campaign  # compiled by the campaign cache: Liquid loads only with a campaign
    from chalicelib.services.deps import Deps
    from chalicelib.ports import DeliveryRepo, Device

log = logging.getLogger("hexcast.push")

#: A record is ``pending`` or ``publishing`` only while an invocation works
#: on it, and an invocation ends within its function's timeout (30 s in
#: ``.chalice/config.json``; Lambda allows 15 min at most). A record left
#: open longer than this was left by an invocation that died: a retry of its
#: trigger (:func:`decide`) or the sweep (``delivery_sweep.sweep_open``) takes it over.
#: Keep it above the longest function timeout.
STALE_OPEN_S = 10 * 60.0
#: Attempts of the store write that records what SNS did (see _settle).
SETTLE_ATTEMPTS = 5
#: ... and the time they may take (the record stays ``publishing`` for the sweep after).
SETTLE_BUDGET_S = 5.0
#: ``failed: interrupted`` — the invocation died while publishing (SNS may
#: have delivered it; it is never published again), or a re-drive could not
#: rebuild its trigger.
INTERRUPTED = "interrupted"


# ---------------------------------------------------------------- campaigns
def matching(deps: Deps, trigger: Trigger) -> list[Campaign]:
    now = deps.clock()
    return [c for c in deps.campaign_cache.candidates(deps.campaigns, trigger, now) if c.in_schedule(now) and c.matches(trigger)]


# ---------------------------------------------------------------- decisions
@dataclass(frozen=True)
class Outcome:
    delivery_id: str
    status: str
    reason: str | None = None
    duplicate: bool = False


def coupon_for(deps: Deps, campaign: Campaign, device_id: str, issued_at: float) -> Coupon | None:
    if campaign.coupon is None:
        return None
    return make_coupon(deps.settings.coupon_secret, campaign.campaign_id, campaign.coupon, device_id, issued_at)


def _ttl(campaign: Campaign, trigger: Trigger | None, now: float) -> int | None:
    ttl = campaign.ttl_seconds
    if trigger is not None and trigger.ends_at is not None:
        left = int(trigger.ends_at - now)
        ttl = left if ttl is None else min(ttl, left)
    return ttl


def message_content(msg: Rendered, coupon: Coupon | None) -> dict[str, Any]:
    """The record's fields of a rendered push."""
    return {
        "title": msg.title,
        "body": msg.body,
        "deep_link": msg.deep_link,
        "coupon_code": coupon.code if coupon else None,
        "coupon_expires_at": coupon.expires_at if coupon else None,
    }


def consent_reason(device: Device, campaign: Campaign, trigger: Trigger) -> str | None:
    if not device.consent.get("push"):
        return "no_consent"
    if (trigger.needs_location or campaign.needs_location()) and not device.consent.get("location"):
        return "no_consent"
    if not device.endpoint_arn:
        return "no_endpoint"
    if not device.push_enabled:
        return "endpoint_disabled"
    return None


def pre_claim(campaign: Campaign, device: Device, trigger: Trigger, now: float,
              created_at: float | None = None) -> tuple[str | None, str | None, int | None]:
    """Steps 1-2 and an occasion already over: → (reason to suppress or
    None, arm, push TTL). ``created_at``: the record's, when it is re-driven
    (a TTL counts from the occasion, as for a held push)."""
    reason = consent_reason(device, campaign, trigger)
    arm = campaign.assign_arm(device.device_id) if reason is None else None
    if reason is None and arm == "control":
        reason = "control"
    ttl = _ttl(campaign, trigger, now)
    if created_at is not None and campaign.ttl_seconds is not None:
        left = int(created_at + campaign.ttl_seconds - now)
        ttl = left if ttl is None else min(ttl, left)
    if reason is None and ttl is not None and ttl <= 0:
        reason = "expired"
    return reason, arm, ttl


@metrics.counts_outcome
def decide(deps: Deps, campaign: Campaign, device: Device, trigger: Trigger) -> Outcome:
    """Run one (campaign, device, trigger) through the pipeline."""
    now = deps.clock()
    store = deps.deliveries
    did = delivery_id_for(campaign.campaign_id, device.device_id, trigger.key)
    # 1-2: consent and control are decided before the claim: the claim then
    # carries the final record.
    reason, arm, ttl = pre_claim(campaign, device, trigger, now)
    record = Delivery(
        delivery_id=did,
        campaign_id=campaign.campaign_id,
        device_id=device.device_id,
        trigger_type=trigger.type,
        trigger_ref=trigger.ref,
        trigger_key=trigger.key,
        status=PENDING if reason is None else SUPPRESSED,
        reason=reason,
        arm=arm,
        created_at=now,
        updated_at=now,
    )
    existing = store.claim_delivery(record)
    if existing is not None:
        # A claim whose invocation died or gave up before publishing (see
        # STALE_OPEN_S): this retry, with the full trigger, finishes it.
        if existing.status == PENDING and open_since(existing) <= now - STALE_OPEN_S and _take_over(store, did, now):
            log.info("delivery taken over", extra={"delivery_id": did})
            reason, arm, ttl = pre_claim(campaign, device, trigger, now, existing.created_at)
            return drive(deps, campaign, device, trigger, did, now, reason, arm, ttl)
        return Outcome(did, existing.status, existing.reason, duplicate=True)
    if reason is not None:
        return Outcome(did, SUPPRESSED, reason)
    return drive(deps, campaign, device, trigger, did, now, None, arm, ttl)


def _take_over(store: DeliveryRepo, did: str, now: float) -> bool:
    """The lease on a stale ``pending`` record: of two invocations (or
    sweeps) taking it over, the one that moves ``updated_at`` first wins."""
    return store.update_delivery(did, {"updated_at": now}, expect_status=PENDING, updated_before=now - STALE_OPEN_S)


def abandon(store: DeliveryRepo, did: str, since: float) -> None:
    """Give up a ``pending`` record this invocation owns (nothing was
    published): backdated, it is stale at once, so the caller's retry takes
    it over instead of waiting for the sweep. Best effort."""
    try:
        store.update_delivery(did, {"updated_at": since - STALE_OPEN_S}, expect_status=PENDING, updated_before=since)
    except Exception:  # noqa: BLE001 — the sweep finds it STALE_OPEN_S later
        log.warning("could not release a claim", extra={"delivery_id": did})


def finish(deps: Deps, did: str, status: str, why: str | None, **extra: Any) -> Outcome:
    """``pending`` → a status other than ``publishing``."""
    changes = {"status": status, "reason": why, "updated_at": deps.clock(), **extra}
    if not deps.deliveries.update_delivery(did, changes, expect_status=PENDING):
        return Outcome(did, PENDING, None, duplicate=True)  # another invocation moved it
    return Outcome(did, status, why)


def drive(deps: Deps, campaign: Campaign, device: Device, trigger: Trigger, did: str, now: float, reason: str | None,
           arm: str | None, ttl: int | None) -> Outcome:
    """Steps 4-8 for a ``pending`` record this invocation owns. An error
    before the record is ``publishing`` abandons the claim (see
    :func:`abandon`) and propagates: the outbox or the SQS redelivery runs
    the decision again."""
    store = deps.deliveries
    try:
        if reason is not None:
            return finish(deps, did, SUPPRESSED, reason)

        # 4: quiet hours, drop mode.
        tz = device.attributes.get("timezone") if isinstance(device.attributes.get("timezone"), str) else None
        quiet = campaign.quiet_hours
        release_at = None
        if quiet is not None:
            release_at = quiet_release_at(quiet.start_min, quiet.end_min, tz, now, fallback_tz=quiet.timezone)
            if release_at is not None and quiet.mode == "drop":
                return finish(deps, did, SUPPRESSED, "quiet_hours")

        # 5: render (pure, per device; an error never escapes).
        coupon = coupon_for(deps, campaign, device.device_id, now)
        try:
            msg = campaign.render(device.attributes, trigger, coupon=coupon, now=now, arm=arm)
        except RenderError as exc:
            log.warning("render error", extra={"campaign_id": campaign.campaign_id, "error": str(exc)[:200]})
            return finish(deps, did, SUPPRESSED, "render_error")
        content = message_content(msg, coupon)

        # 6: frequency caps.
        limits = campaign.limits
        per_day = limits.per_device_per_day
        gap = limits.min_minutes_between * 60.0 if limits.min_minutes_between is not None else None
        if not store.reserve_send(campaign.campaign_id, device.device_id, now, per_day, gap):
            return finish(deps, did, SUPPRESSED, "frequency_cap", **content)

        # 7: quiet hours, hold mode. The text above only proved the push
        # renders: what goes out is rendered at release (local time,
        # weather and coupon as they are then), from the trigger kept here.
        if release_at is not None:
            return finish(deps, did, HELD, "quiet_hours", release_at=release_at, held_context=trigger.snapshot())

        # 8: publish. The record keeps its open-since time (updated_at).
        if not store.update_delivery(did, {"status": PUBLISHING, **content}, expect_status=PENDING):
            return Outcome(did, PENDING, None, duplicate=True)
    except Exception:
        abandon(store, did, now)
        raise
    return publish(deps, device, campaign, did, content, ttl)


def _settle(deps: Deps, write: Callable[[], Any]) -> Any:
    """A store write that records what SNS already did: a throttled
    DynamoDB is retried with backoff here (a sent push must not become an
    unknown one); after SETTLE_ATTEMPTS the error propagates and the record
    stays ``publishing`` until the sweep."""
    policy = RetryPolicy(budget_s=SETTLE_BUDGET_S, base_s=0.05, cap_s=1.0, clock=time.monotonic, sleep=deps.sleep,
                         max_attempts=SETTLE_ATTEMPTS)
    failure: Unavailable | None = None
    for _ in policy.attempts():
        try:
            return write()
        except Unavailable as exc:
            failure = exc
    assert failure is not None
    raise failure


def publish(deps: Deps, device: Device, campaign: Campaign | None, did: str, content: dict, ttl: int | None) -> Outcome:
    """The record is ``publishing`` (ours): publish and record the result."""
    store = deps.deliveries
    data = {"campaign_id": campaign.campaign_id} if campaign else {}
    if content.get("coupon_code"):
        data["coupon_code"] = content["coupon_code"]
    message = PushMessage(did, content["title"], content["body"], content.get("deep_link"), ttl, data)
    disabled = False
    status: str
    reason: str | None
    extra: dict[str, Any]
    # Only a device with push consent and an endpoint gets this far (decide()).
    assert deps.push is not None and device.endpoint_arn is not None
    try:
        message_id = deps.push.publish(device.endpoint_arn, device.platform, message)
    except EndpointDisabled:
        disabled = True
        status, reason, extra = FAILED, "endpoint_disabled", {}
    except PushError as exc:
        status, reason, extra = FAILED, exc.reason, {}
    except Exception:  # noqa: BLE001 — e.g. text SNS cannot encode: recorded, never silent
        log.exception("publish failed unexpectedly", extra={"delivery_id": did})
        status, reason, extra = FAILED, "publish_error", {}
    else:
        now = deps.clock()
        status, reason, extra = SENT, None, {"sns_message_id": message_id, "sent_at": now}
    changes = {"status": status, "reason": reason, "updated_at": deps.clock(), **extra}
    _settle(deps, lambda: store.update_delivery(did, changes, expect_status=PUBLISHING))
    if disabled:
        _settle(deps, lambda: deps.devices.set_push_state(device.device_id, device.endpoint_arn, False))
    log.info("delivery", extra={"delivery_id": did, "status": status, "reason": reason})
    return Outcome(did, status, reason)


def deliver(deps: Deps, device: Device, triggers: list[Trigger]) -> dict[str, list[str]]:
    """Every matching campaign for each trigger → ``{trigger.key: [delivery ids]}``."""
    out: dict[str, list[str]] = {}
    for trigger in triggers:
        ids = out.setdefault(trigger.key, [])
        for campaign in matching(deps, trigger):
            ids.append(decide(deps, campaign, device, trigger).delivery_id)
    return out
