"""The delivery pipeline end to end over the in-memory fakes: pings into a
fence → one decision per (campaign, device, trigger) → SNS (fake) → stats."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from chalicelib.services.fence_cache import VersionCache
from chalicelib.services.deps import Deps
from tests.fake_push import FakePushGateway
from chalicelib.push.model import FenceContext, PushError, Trigger
from chalicelib.services.devices import delete_device, register_device
from chalicelib.services.geofences import put_geofence
from chalicelib.services.pings import handle_pings
from chalicelib.services import campaigns as campaign_service
from chalicelib.services import delivery, engagement
from chalicelib.services.delivery import CampaignCache
from chalicelib.settings import Settings
from chalicelib.store import memory_stores
from chalicelib.errors import InvalidGeometry
from chalicelib.geo.geojson import parse_feature
from chalicelib.weather.targets import plan_area

# 2026-07-15 12:00 UTC: 08:00 in New York, 21:00 in Tokyo.
T0 = datetime(2026, 7, 15, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp()
STORE = (-122.7, 38.44)  # lng, lat of the fence centre
OUTSIDE = (38.46, -122.7)  # lat, lng ~2 km north
INSIDE = (38.44, -122.7)


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def deps():
    settings = Settings(stage="test", coupon_secret="test-coupon-secret", campaign_cache_s=0)
    clock = Clock(T0)
    return Deps.over(memory_stores(clock=clock), settings, clock=clock, cache=VersionCache(), push=FakePushGateway(),
                     campaign_cache=CampaignCache(0))


def campaign(**over):
    body = {
        "name": "Store visit",
        "trigger": {"type": "geofence_enter", "fence_ids": ["store-1"]},
        "message": {
            "title": "Welcome to {{ fence.name }}",
            "body": "Hi {{ first_name | default: 'there' }}, take {{ coupon.percent_off }}% off: {{ coupon.code }}",
            "deep_link": "shop://store/{{ fence.id }}",
        },
        "coupon": {"percent_off": 10, "prefix": "VISIT", "valid_hours": 72},
    }
    body.update(over)
    return body


def setup(deps, *, attrs=None, consent=None, device_id="d1", platform="ios", **campaign_over):
    put_geofence(
        deps, "store-1", {"type": "Feature", "geometry": {"type": "Point", "coordinates": list(STORE)},
                          "properties": {"radius_m": 200, "name": "Main St store", "tags": ["shop"], "metadata": {"city": "Santa Rosa"}}}
    )
    register(deps, device_id, attrs=attrs, consent=consent, platform=platform)
    campaign_service.put_campaign(deps, "c1", campaign(**campaign_over))


def register(deps, device_id, *, attrs=None, consent=None, platform="ios"):
    return register_device(
        deps, device_id,
        {"platform": platform, "push_token": f"tok-{device_id}", "attributes": attrs if attrs is not None else {"first_name": "Ana"},
         "consent": consent or {"push": True, "location": True}},
    )


def ping(deps, where, dt, device_id="d1"):
    lat, lng = where
    deps.clock.now = max(deps.clock.now, T0 + dt)
    body = handle_pings(deps, {"device_id": device_id, "lat": lat, "lng": lng, "timestamp": T0 + dt, "accuracy_m": 5})
    return body["results"][0]


def visit(deps, start=0.0, device_id="d1"):
    """Outside, then inside: one enter. → the inside ping's result."""
    ping(deps, OUTSIDE, start, device_id)
    return ping(deps, INSIDE, start + 60, device_id)


def record(deps, did):
    return deps.deliveries.get_deliveries([did])[did]


# ------------------------------------------------------------------ the happy path
def test_enter_sends_one_personalized_push(deps):
    setup(deps)
    r = visit(deps)
    assert [e["type"] for e in r["events"]] == ["enter"]
    assert len(r["deliveries"]) == 1
    d = record(deps, r["deliveries"][0])
    assert d.status == "sent" and d.sns_message_id
    assert d.title == "Welcome to Main St store"
    assert d.body.startswith("Hi Ana, take 10% off: VISIT-") and d.coupon_code in d.body
    assert d.deep_link == "shop://store/store-1"
    (arn, platform, msg, mid), = deps.push.published
    assert platform == "ios" and msg.delivery_id == d.delivery_id and mid == d.sns_message_id
    assert d.to_json()["trigger"] == {"type": "geofence_enter", "fence_id": "store-1"}
    assert "lat" not in str(d.to_json())


def test_replayed_ping_and_retried_trigger_never_send_twice(deps):
    setup(deps)
    r = visit(deps)
    again = ping(deps, INSIDE, 60)  # the same ping retried
    assert again["accepted"] is False and again["deliveries"] == []
    device = deps.devices.get_device("d1")
    fence = FenceContext("store-1", "Main St store", ("shop",))
    trig = Trigger.geofence("enter", fence, T0 + 60, T0 + 60)
    c = deps.campaign_cache.get(deps.campaigns, "c1", T0)
    out = delivery.decide(deps, c, device, trig)  # a Lambda retry of the same occasion
    assert out.duplicate and out.delivery_id == r["deliveries"][0]
    assert len(deps.push.published) == 1
    assert record(deps, out.delivery_id).dups == 1
    assert engagement.stats(deps, "c1")["suppressed"]["duplicate"] == 1


def test_crash_after_publish_is_not_sent_again(deps, monkeypatch):
    setup(deps)
    real = deps.deliveries.update_delivery
    calls = {"n": 0}

    def flaky(did, changes, **kw):
        if changes.get("status") == "sent" and calls["n"] == 0:
            calls["n"] += 1
            raise RuntimeError("Lambda timed out")
        return real(did, changes, **kw)

    monkeypatch.setattr(deps.deliveries, "update_delivery", flaky)
    ping(deps, OUTSIDE, 0)
    with pytest.raises(RuntimeError):
        ping(deps, INSIDE, 60)
    device = deps.devices.get_device("d1")
    fence = FenceContext("store-1", "Main St store", ("shop",))
    out = delivery.decide(deps, deps.campaign_cache.get(deps.campaigns, "c1", T0), device, Trigger.geofence("enter", fence, T0 + 60, T0 + 60))
    assert out.duplicate
    assert len(deps.push.published) == 1


def test_a_new_visit_is_a_new_occasion(deps):
    setup(deps)
    first = visit(deps)["deliveries"]
    second = visit(deps, start=7200)["deliveries"]
    assert first != second and len(deps.push.published) == 2


def test_exit_and_dwell_triggers(deps):
    setup(deps, trigger={"type": "geofence_exit", "fence_tags": ["shop"]})
    campaign_service.put_campaign(deps, "c-dwell", campaign(trigger={"type": "geofence_dwell", "fence_ids": ["store-1"]}))
    put_geofence(
        deps, "store-1", {"type": "Feature", "geometry": {"type": "Point", "coordinates": list(STORE)},
                          "properties": {"radius_m": 200, "name": "Main St store", "tags": ["shop"], "dwell_minutes": 5}}
    )
    assert visit(deps)["deliveries"] == []  # enter: no enter campaign
    r = ping(deps, INSIDE, 60 + 360)
    assert [e["type"] for e in r["events"]] == ["dwell"] and len(r["deliveries"]) == 1
    r = ping(deps, OUTSIDE, 60 + 720)
    assert [e["type"] for e in r["events"]] == ["exit"] and len(r["deliveries"]) == 1
    assert record(deps, r["deliveries"][0]).trigger_type == "geofence_exit"


def test_campaigns_for_other_fences_or_disabled_do_not_fire(deps):
    setup(deps, trigger={"type": "geofence_enter", "fence_ids": ["elsewhere"]})
    campaign_service.put_campaign(deps, "off", campaign(enabled=False))
    assert visit(deps)["deliveries"] == []
    assert deps.push.published == []


# ------------------------------------------------------------------ suppression reasons
@pytest.mark.parametrize(
    "consent, reason",
    [({"push": False, "location": True}, "no_consent"), ({"push": True, "location": False}, "no_consent")],
)
def test_consent_is_checked(deps, consent, reason):
    setup(deps)
    device = deps.devices.get_device("d1")
    device.consent = consent
    trig = Trigger.geofence("enter", FenceContext("store-1", "S"), T0, T0)
    out = delivery.decide(deps, deps.campaign_cache.get(deps.campaigns, "c1", T0), device, trig)
    assert (out.status, out.reason) == ("suppressed", reason)
    assert deps.push.published == []


def test_endpoint_disabled_fails_then_suppresses(deps):
    setup(deps)
    arn = deps.devices.get_device("d1").endpoint_arn
    deps.push.disable(arn)
    d = record(deps, visit(deps)["deliveries"][0])
    assert (d.status, d.reason) == ("failed", "endpoint_disabled")
    assert deps.devices.get_device("d1").push_enabled is False
    d2 = record(deps, visit(deps, start=7200)["deliveries"][0])
    assert (d2.status, d2.reason) == ("suppressed", "endpoint_disabled")
    # Re-registering re-enables the endpoint (AWS's lifecycle) and push.
    assert register(deps, "d1")["push_enabled"] is True
    assert record(deps, visit(deps, start=14400)["deliveries"][0]).status == "sent"


def test_other_publish_errors_fail_with_the_reason(deps):
    setup(deps)
    deps.push.fail_next(1, PushError("invalid_parameter"))
    d = record(deps, visit(deps)["deliveries"][0])
    assert (d.status, d.reason) == ("failed", "invalid_parameter")


def test_render_error_suppresses_only_that_delivery(deps):
    setup(deps, message={"title": "Hi", "body": "{{ 10 | divided_by: ratio }}"})
    register(deps, "d2", attrs={"ratio": 2})
    r1 = visit(deps)
    r2 = visit(deps, device_id="d2")
    assert (record(deps, r1["deliveries"][0]).reason) == "render_error"
    d2 = record(deps, r2["deliveries"][0])
    assert d2.status == "sent" and d2.body == "5"


def test_frequency_caps(deps):
    setup(deps, limits={"per_device_per_day": 2})
    statuses = [record(deps, visit(deps, start=h * 3600)["deliveries"][0]).status for h in range(3)]
    assert statuses == ["sent", "sent", "suppressed"]
    assert record(deps, visit(deps, start=25 * 3600)["deliveries"][0]).status == "sent"  # a rolling day later


def test_min_minutes_between(deps):
    setup(deps, limits={"min_minutes_between": 60})
    a = record(deps, visit(deps)["deliveries"][0])
    b = record(deps, visit(deps, start=1800)["deliveries"][0])
    c = record(deps, visit(deps, start=3 * 3600)["deliveries"][0])
    assert (a.status, b.status, b.reason, c.status) == ("sent", "suppressed", "frequency_cap", "sent")


def test_control_group_is_recorded_not_sent(deps):
    setup(deps, experiment={"arms": [{"name": "A", "weight": 1}], "control_percent": 50})
    c = deps.campaign_cache.get(deps.campaigns, "c1", T0)
    ids = [f"dev-{i}" for i in range(40)]
    control = next(i for i in ids if c.assign_arm(i) == "control")
    treated = next(i for i in ids if c.assign_arm(i) == "A")
    for i in (control, treated):
        register(deps, i)
        visit(deps, device_id=i)
    st = engagement.stats(deps, "c1")
    assert st["sent"] == 1 and st["suppressed"]["control"] == 1
    assert set(st["by_arm"]) == {"A", "control"} and st["by_arm"]["A"]["sent"] == 1
    assert len(deps.push.published) == 1


# ------------------------------------------------------------------ quiet hours
def test_quiet_hours_by_device_time_zone(deps):
    # 12:00 UTC = 21:00 in Tokyo (quiet) and 08:00 in New York (just awake).
    setup(deps, attrs={"first_name": "Ana", "timezone": "Asia/Tokyo"},
          quiet_hours={"start": "21:00", "end": "08:00", "mode": "hold"})
    register(deps, "ny", attrs={"first_name": "Bo", "timezone": "America/New_York"})
    tokyo = record(deps, visit(deps, start=-60)["deliveries"][0])
    ny = record(deps, visit(deps, start=-60, device_id="ny")["deliveries"][0])
    assert (tokyo.status, tokyo.reason) == ("held", "quiet_hours")
    assert tokyo.release_at == datetime(2026, 7, 16, 8, 0, tzinfo=ZoneInfo("Asia/Tokyo")).timestamp()
    assert ny.status == "sent"
    assert len(deps.push.published) == 1

    # The scheduled release: nothing before the window ends, then exactly once.
    deps.clock.now = tokyo.release_at - 1
    assert engagement.release_held(deps) == {}
    deps.clock.now = tokyo.release_at + 30
    assert engagement.release_held(deps) == {"sent": 1}
    assert engagement.release_held(deps) == {}
    released = record(deps, tokyo.delivery_id)
    assert tokyo.title is None and tokyo.held_context is not None  # held: the trigger, not the text
    assert released.status == "sent" and released.title == "Welcome to Main St store"
    assert released.held_context is None and released.release_at is None
    assert len(deps.push.published) == 2


def test_quiet_hours_drop(deps):
    setup(deps, attrs={"timezone": "Asia/Tokyo"}, quiet_hours={"start": "21:00", "end": "08:00", "mode": "drop"},
          limits={"per_device_per_day": 1})
    d = record(deps, visit(deps, start=-60)["deliveries"][0])
    assert (d.status, d.reason) == ("suppressed", "quiet_hours")
    deps.clock.now = T0 + 12 * 3600  # 09:00 next day in Tokyo: the drop did not use the cap
    assert record(deps, visit(deps, start=12 * 3600)["deliveries"][0]).status == "sent"


def test_held_push_of_a_deleted_campaign_is_not_sent(deps):
    setup(deps, attrs={"timezone": "Asia/Tokyo"}, quiet_hours={"start": "21:00", "end": "08:00", "mode": "hold"})
    d = record(deps, visit(deps, start=-60)["deliveries"][0])
    campaign_service.delete_campaign(deps, "c1")
    deps.clock.now = d.release_at + 1
    assert engagement.release_held(deps) == {"campaign_disabled": 1}
    assert deps.push.published == []


# ------------------------------------------------------------------ rendering
def test_whitespace_default_and_variants(deps):
    setup(deps, variants=[{"name": "gold", "when": {"attribute": "loyalty_tier", "equals": "gold"},
                           "message": {"title": "Gold welcome", "body": "Dear {{ first_name | default: 'member' }}"}}])
    register(deps, "blank", attrs={"first_name": "   "})
    register(deps, "gold", attrs={"first_name": "Cy", "loyalty_tier": "gold"})
    register(deps, "none", attrs={})
    bodies = {i: record(deps, visit(deps, device_id=i)["deliveries"][0]) for i in ("blank", "gold", "none")}
    assert bodies["blank"].body.startswith("Hi there,")
    assert bodies["none"].body.startswith("Hi there,") and bodies["none"].title == "Welcome to Main St store"
    assert (bodies["gold"].title, bodies["gold"].body) == ("Gold welcome", "Dear Cy")


def test_coupon_is_stable_and_per_device(deps):
    setup(deps)
    register(deps, "d2")
    a1 = record(deps, visit(deps)["deliveries"][0]).coupon_code
    a2 = record(deps, visit(deps, start=7200)["deliveries"][0]).coupon_code
    b = record(deps, visit(deps, device_id="d2")["deliveries"][0]).coupon_code
    assert a1 == a2 != b and a1.startswith("VISIT-")


def test_preview_renders_without_sending(deps):
    setup(deps)
    out = campaign_service.preview(deps, "c1", {"device_id": "d1"})
    assert out["title"] == "Welcome to Main St store" and out["coupon"]["code"].startswith("VISIT-")
    assert deps.push.published == [] and deps.deliveries.list_deliveries()[0] == []


# ------------------------------------------------------------------ events and stats
def test_open_and_conversion_attribution(deps):
    setup(deps)
    did = visit(deps)["deliveries"][0]
    code = record(deps, did).coupon_code
    deps.clock.now = T0 + 3600
    assert engagement.post_event(deps, {"device_id": "d1", "type": "push_opened", "delivery_id": did})["attributed_to"] == did
    assert engagement.post_event(deps, {"device_id": "d1", "type": "push_opened", "delivery_id": did}).get("duplicate") is True
    out = engagement.post_event(deps, {"device_id": "d1", "type": "conversion", "coupon_code": code.lower(), "value": 42.5})
    assert out["attributed_to"] == did
    st = engagement.stats(deps, "c1")
    assert (st["sent"], st["opened"], st["converted"], st["open_rate"], st["conversion_rate"]) == (1, 1, 1, 1.0, 1.0)
    assert st["conversion_value"] == 42.5


def test_conversion_outside_the_window_is_not_attributed(deps):
    setup(deps)
    visit(deps)
    deps.clock.now = T0 + 4 * 86400
    out = engagement.post_event(deps, {"device_id": "d1", "type": "conversion"})
    assert out["attributed_to"] is None
    assert engagement.stats(deps, "c1")["converted"] == 0


def test_events_reject_bad_input(deps):
    from chalicelib.errors import InvalidInput, NotFound

    setup(deps)
    with pytest.raises(InvalidInput) as e:
        engagement.post_event(deps, {"device_id": "d1", "type": "click"})
    assert e.value.field == "type"
    with pytest.raises(InvalidInput) as e:
        engagement.post_event(deps, {"device_id": "d1", "type": "push_opened"})
    assert e.value.field == "delivery_id"
    with pytest.raises(NotFound):
        engagement.post_event(deps, {"device_id": "d1", "type": "push_opened", "delivery_id": "dl_nope"})
    with pytest.raises(InvalidInput) as e:
        engagement.post_event(deps, {"device_id": "d1", "type": "conversion", "value": float("inf")})
    assert e.value.field == "value"


def test_audience_estimate(deps):
    setup(deps)
    register(deps, "far")
    register(deps, "noloc", consent={"push": True, "location": False})
    ping(deps, INSIDE, 0)
    ping(deps, OUTSIDE, 0, device_id="far")
    assert engagement.audience_estimate(deps, {"fence_id": "store-1"})["reachable"] == 1
    big = {"type": "Polygon", "coordinates": [[[-123, 38], [-122, 38], [-122, 39], [-123, 39], [-123, 38]]]}
    assert engagement.audience_estimate(deps, {"geometry": big})["reachable"] == 2


def test_an_estimate_is_bounded_by_its_region_queries(deps):
    """A large area is covered coarser until its Queries fit (the same
    devices, the boundary decided exactly); one that never fits is a 400
    before any Query."""
    setup(deps)
    register(deps, "far")
    ping(deps, INSIDE, 0)
    ping(deps, OUTSIDE, 0, device_id="far")
    counties_wide = {"type": "Polygon", "coordinates": [[[-123.7, 37.4], [-121.7, 37.4], [-121.7, 39.4], [-123.7, 39.4], [-123.7, 37.4]]]}
    fine = plan_area(parse_feature({"type": "Feature", "geometry": counties_wide, "properties": {}}, "a", budget=None).geometry,
                     shards=deps.settings.region_shards)
    assert fine.query_count > engagement.MAX_ESTIMATE_QUERIES  # the default cover would not fit
    before = deps.devices.region_queries_made
    assert engagement.audience_estimate(deps, {"geometry": counties_wide})["reachable"] == 2
    assert 0 < deps.devices.region_queries_made - before <= engagement.MAX_ESTIMATE_QUERIES
    sliver = {"type": "Polygon", "coordinates": [[[-122.75, 38.39], [-122.65, 38.39], [-1.0, 38.49], [-122.75, 38.49], [-122.75, 38.39]]]}
    before = deps.devices.region_queries_made
    with pytest.raises(InvalidGeometry) as e:
        engagement.audience_estimate(deps, {"geometry": sliver})
    assert e.value.field == "geometry" and "region-index queries" in e.value.message
    assert deps.devices.region_queries_made == before


def test_deleting_a_device_removes_its_endpoint(deps):
    setup(deps)
    arn = deps.devices.get_device("d1").endpoint_arn
    delete_device(deps, "d1")
    assert arn not in deps.push.endpoints


# ------------------------------------------------------------------ the outbox
def test_events_survive_a_crash_before_their_pushes_are_decided(deps, monkeypatch):
    """The events are stored with the location (the outbox): a request that
    dies before deciding their pushes leaves them to the next ping of the
    device — here the client's retry of the same ping."""
    setup(deps)
    real_claim = deps.deliveries.claim_delivery
    boom = {"left": 1}

    def flaky_claim(d):
        if boom["left"]:
            boom["left"] -= 1
            raise RuntimeError("DynamoDB went away")
        return real_claim(d)

    monkeypatch.setattr(deps.deliveries, "claim_delivery", flaky_claim)
    ping(deps, OUTSIDE, 0)
    with pytest.raises(RuntimeError):
        ping(deps, INSIDE, 60)
    assert deps.push.published == []
    assert len(deps.devices.get_device("d1").outbox) == 1  # stored with the state

    retry = ping(deps, INSIDE, 60)  # the retried request: a duplicate ping
    assert retry["accepted"] is False and len(retry["deliveries"]) == 1
    assert len(deps.push.published) == 1
    assert deps.devices.get_device("d1").outbox == {}
    assert ping(deps, INSIDE, 120)["deliveries"] == []  # nothing left over
    assert len(deps.push.published) == 1


def test_a_crash_after_publish_is_cleared_without_a_second_push(deps, monkeypatch):
    setup(deps)
    real = deps.deliveries.update_delivery
    crashed = {"done": False}

    def flaky(did, changes, **kw):
        if changes.get("status") == "sent" and not crashed["done"]:
            crashed["done"] = True
            raise RuntimeError("Lambda timed out")
        return real(did, changes, **kw)

    monkeypatch.setattr(deps.deliveries, "update_delivery", flaky)
    ping(deps, OUTSIDE, 0)
    with pytest.raises(RuntimeError):
        ping(deps, INSIDE, 60)
    retry = ping(deps, INSIDE, 60)
    assert len(retry["deliveries"]) == 1
    assert len(deps.push.published) == 1  # the outbox re-ran the decision: claimed already
    assert deps.devices.get_device("d1").outbox == {}


# ------------------------------------------------------------------ weather conditions
def test_geofence_campaign_with_a_weather_condition(deps):
    """"Entered the store while it rains": the condition at the device's
    res-5 cell decides, and ``weather.*`` is there for the template."""
    from chalicelib.services import weather

    setup(deps, trigger={"type": "geofence_enter", "fence_ids": ["store-1"], "weather": {"condition_in": ["rain"]}},
          message={"title": "Rainy day at {{ fence.name }}", "body": "It is {{ weather.temperature_c }}°C and {{ weather.condition }}"})
    assert visit(deps)["deliveries"] == []  # no observation: no match
    weather.post_conditions(deps, {"observations": [
        {"lat": INSIDE[0], "lng": INSIDE[1], "observed_at": deps.clock.now, "temperature_c": 11, "condition": "rain"}]})
    r = visit(deps, start=3600)
    d = record(deps, r["deliveries"][0])
    assert d.status == "sent" and d.body == "It is 11°C and rain"
    weather.post_conditions(deps, {"observations": [
        {"lat": INSIDE[0], "lng": INSIDE[1], "observed_at": deps.clock.now + 1, "temperature_c": 14, "condition": "clear"}]})
    assert visit(deps, start=7200)["deliveries"] == []
