"""Records left open by an invocation that died or gave up: the retry takes
a released claim over at once, the sweep re-drives a stale ``pending`` one
from the stored record and fails a stale ``publishing`` one as
``interrupted`` — never a second publish."""

from __future__ import annotations

import threading

import pytest

from chalicelib.errors import Unavailable
from chalicelib.services import campaigns as campaign_service
from chalicelib.services import delivery, delivery_sweep, engagement
from chalicelib.push.model import PENDING, Delivery, FenceContext, Trigger, delivery_id_for
from chalicelib.services.delivery import STALE_OPEN_S
from chalicelib.services import alert_planning, fanout, weather
from tests import faults
from tests.faults import Crash
from tests.unit.test_pipeline import INSIDE, OUTSIDE, T0, deps, ping, record, setup  # noqa: F401 — deps is a fixture


def fail_once(monkeypatch, obj, name, exc, when=lambda *a, **k: True):
    real = getattr(obj, name)
    state = {"left": 1}

    def flaky(*args, **kwargs):
        if state["left"] and when(*args, **kwargs):
            state["left"] -= 1
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, flaky)
    return state


def only_delivery(deps):
    (d,) = deps.deliveries.deliveries.values()
    return d


def test_a_throttled_decision_releases_its_claim_and_the_retry_finishes_it(deps, monkeypatch):
    setup(deps)
    fail_once(monkeypatch, deps.deliveries, "reserve_send", Unavailable("throttled"))
    ping(deps, OUTSIDE, 0)
    with pytest.raises(Unavailable):
        ping(deps, INSIDE, 60)  # 503: the app retries
    d = only_delivery(deps)
    assert d.status == PENDING and d.updated_at <= deps.clock.now - STALE_OPEN_S  # released: stale at once
    retry = ping(deps, INSIDE, 60)  # a duplicate ping; the outbox re-runs the decision
    assert retry["deliveries"] == [d.delivery_id]
    got = record(deps, d.delivery_id)
    assert got.status == "sent" and got.title == "Welcome to Main St store"
    assert len(deps.push.published) == 1 and deps.devices.get_device("d1").outbox == {}


def test_a_claim_left_pending_by_a_dead_invocation_is_redriven_by_the_sweep(deps, monkeypatch):
    setup(deps)
    fail_once(monkeypatch, deps.deliveries, "reserve_send", Crash("Lambda timed out"))
    ping(deps, OUTSIDE, 0)
    with pytest.raises(Crash):
        ping(deps, INSIDE, 60)
    retry = ping(deps, INSIDE, 60)  # finds the claim: the dead owner's, not stale yet
    did = only_delivery(deps).delivery_id
    assert retry["deliveries"] == [did] and record(deps, did).status == PENDING
    assert deps.devices.get_device("d1").outbox == {}  # decided as far as the outbox goes
    assert deps.push.published == []

    deps.clock.now = T0 + 60 + STALE_OPEN_S - 1
    assert engagement.sweep_open(deps) == {}
    deps.clock.now = T0 + 60 + STALE_OPEN_S + 1
    assert engagement.sweep_open(deps) == {"pending->sent": 1}
    d = record(deps, did)
    assert d.status == "sent" and d.title == "Welcome to Main St store" and d.deep_link == "shop://store/store-1"
    assert d.body.startswith("Hi Ana, take 10% off: VISIT-")
    assert len(deps.push.published) == 1
    assert engagement.sweep_open(deps) == {}


def test_publishing_left_by_a_dead_invocation_fails_interrupted_never_published_twice(deps, monkeypatch):
    setup(deps)
    real = deps.push.publish

    def accepted_then_died(*args):
        real(*args)
        raise Crash("Lambda timed out after SNS accepted the push")

    monkeypatch.setattr(deps.push, "publish", accepted_then_died)
    ping(deps, OUTSIDE, 0)
    with pytest.raises(Crash):
        ping(deps, INSIDE, 60)
    monkeypatch.setattr(deps.push, "publish", real)
    ping(deps, INSIDE, 60)  # the retry: claimed already
    did = only_delivery(deps).delivery_id
    assert record(deps, did).status == "publishing"
    deps.clock.now = T0 + 60 + STALE_OPEN_S + 1
    assert engagement.sweep_open(deps) == {"publishing->failed:interrupted": 1}
    d = record(deps, did)
    assert (d.status, d.reason) == ("failed", "interrupted")
    assert len(deps.push.published) == 1


def test_a_late_retry_with_the_full_trigger_takes_a_stale_claim_over(deps, monkeypatch):
    setup(deps)
    real_claim = deps.deliveries.claim_delivery
    died = {"n": 0}

    def claim_then_die(d):
        out = real_claim(d)  # stored: the Lambda dies before it hears back
        if not died["n"]:
            died["n"] += 1
            raise Crash("died after the claim")
        return out

    monkeypatch.setattr(deps.deliveries, "claim_delivery", claim_then_die)
    device = deps.devices.get_device("d1")
    trig = Trigger.geofence("enter", FenceContext("store-1", "Main St store", ("shop",)), T0, T0)
    c = deps.campaign_cache.get(deps.campaigns, "c1", T0)
    with pytest.raises(Crash):
        delivery.decide(deps, c, device, trig)
    assert delivery.decide(deps, c, device, trig).duplicate  # its owner may still be alive
    deps.clock.now = T0 + STALE_OPEN_S + 1
    out = delivery.decide(deps, c, device, trig)  # e.g. SQS redelivering after a long outage
    assert (out.status, out.duplicate) == ("sent", False)
    assert len(deps.push.published) == 1
    assert delivery.decide(deps, c, device, trig).duplicate


def test_overlapping_sweeps_publish_a_stale_claim_once(deps):
    setup(deps)
    ping(deps, OUTSIDE, 0)
    ping(deps, INSIDE, 60)  # sent normally: the device is inside
    did = delivery_id_for("c1", "d1", "fence:store-1:enter:9.000")
    deps.deliveries.claim_delivery(Delivery(did, "c1", "d1", "geofence_enter", "store-1", "fence:store-1:enter:9.000",
                                       PENDING, T0, updated_at=T0))
    deps.clock.now = T0 + STALE_OPEN_S + 120
    barrier = threading.Barrier(4)
    outs = []

    def run():
        barrier.wait()
        outs.append(delivery_sweep.sweep_open(deps))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(o.get("pending->sent", 0) for o in outs) == 1
    assert [m.delivery_id for _, _, m, _ in deps.push.published].count(did) == 1
    # The original owner, back from the dead, loses its conditional step.
    assert deps.deliveries.update_delivery(did, {"status": "publishing"}, expect_status=PENDING) is False


def test_a_trigger_that_cannot_be_rebuilt_fails_interrupted(deps):
    setup(deps)
    did = delivery_id_for("c1", "d1", "fence:store-1:teleport:1.000")
    deps.deliveries.claim_delivery(Delivery(did, "c1", "d1", "geofence_enter", "store-1", "fence:store-1:teleport:1.000",
                                       PENDING, T0, updated_at=T0))
    deps.clock.now = T0 + STALE_OPEN_S + 1
    assert engagement.sweep_open(deps) == {"pending->failed:interrupted": 1}
    assert deps.push.published == []


def test_a_stale_claim_of_a_deleted_campaign_or_device_is_suppressed(deps):
    setup(deps)
    for key in ("fence:store-1:enter:1.000", "fence:store-1:enter:2.000"):
        deps.deliveries.claim_delivery(Delivery(delivery_id_for("c1", "d1", key), "c1", "d1", "geofence_enter", "store-1",
                                           key, PENDING, T0, updated_at=T0))
    deps.deliveries.claim_delivery(Delivery(delivery_id_for("c1", "gone", "k"), "c1", "gone", "geofence_enter", "store-1",
                                       "fence:store-1:enter:3.000", PENDING, T0, updated_at=T0))
    deps.clock.now = T0 + STALE_OPEN_S + 1
    assert engagement.sweep_open(deps) == {"pending->sent": 2, "pending->suppressed:unknown_device": 1}
    campaign_service.delete_campaign(deps, "c1")
    deps.deliveries.claim_delivery(Delivery("dl_x", "c1", "d1", "geofence_enter", "store-1", "fence:store-1:enter:4.000",
                                       PENDING, T0, updated_at=T0))
    assert engagement.sweep_open(deps) == {"pending->suppressed:campaign_disabled": 1}


def test_a_weather_decision_is_redriven_from_the_alert_record():
    world = faults.make_world(3, faults.Rates.none())
    faults._storm_setup(world, 20, 3)
    deps, store = world.deps, world.stores.deliveries
    real = store.reserve_send
    left = {"n": 1}

    def die_once(*a):
        if left["n"]:
            left["n"] -= 1
            raise Crash("the fan-out Lambda died")
        return real(*a)

    store.reserve_send = die_once  # storm-recent has a frequency cap
    assert weather.post_alerts(deps, faults.storm_alert())["alerts"][0]["status"] == "accepted"
    (plan,) = deps.queue.messages
    deps.queue.messages.clear()
    assert alert_planning.plan_alert(deps, plan)["status"] == "processed"
    chunks = list(deps.queue.messages)
    with pytest.raises(Crash):
        fanout.send_chunk(deps, chunks[0])
    for body in chunks:  # SQS delivers them all (again)
        fanout.send_chunk(deps, body)
    (stuck,) = [d for d in store.deliveries.values() if d.status == PENDING]
    world.clock.now += STALE_OPEN_S + 1
    assert delivery_sweep.sweep_open(deps) == {"pending->sent": 1}
    d = store.deliveries[stuck.delivery_id]
    assert d.status == "sent" and d.body == "Severe Thunderstorm Warning issued (Somewhere, OK)"
    published = [m.delivery_id for _, _, m, _ in world.push.published]
    assert published.count(d.delivery_id) == 1 and len(published) == len(set(published))


def test_a_throttled_write_of_the_outcome_is_retried_not_lost(deps, monkeypatch):
    setup(deps)
    naps = []
    deps.sleep = naps.append
    real = deps.deliveries.update_delivery
    left = {"n": 2}

    def throttled(did, changes, **kw):
        if changes.get("status") == "sent" and left["n"]:
            left["n"] -= 1
            raise Unavailable("throttled")
        return real(did, changes, **kw)

    monkeypatch.setattr(deps.deliveries, "update_delivery", throttled)
    ping(deps, OUTSIDE, 0)
    r = ping(deps, INSIDE, 60)
    assert record(deps, r["deliveries"][0]).status == "sent"
    # two waits, full jitter under a doubling ceiling (chalicelib.retry)
    assert len(naps) == 2 and 0 <= naps[0] <= 0.05 and 0 <= naps[1] <= 0.1
