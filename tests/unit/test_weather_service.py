"""NWS alerts through the service layer with fakes: lifecycle, area, the
devices already inside, exactly-once per lineage, fan-out through a queue.
Targets are compared with a brute-force shapely check over device points."""

from __future__ import annotations

import copy
import csv
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import shapely

from chalicelib.services.fence_cache import VersionCache
from chalicelib.services.deps import Deps
from tests.fake_push import FakePushGateway
from chalicelib.services.devices import register_device
from chalicelib.services.pings import handle_pings
from chalicelib.services import campaigns as campaign_service
from chalicelib.services import alert_planning, engagement, fanout
from chalicelib.services.delivery import CampaignCache
from chalicelib.settings import Settings
from chalicelib.store import memory_stores
from chalicelib.store.memory_weather import MemoryWeather
from chalicelib.services import weather
from chalicelib.weather.alerts import Alert, classify, parse_alerts
from chalicelib.weather.area import AreaResolver, CountyIndex
from chalicelib.weather.fanout import InlineQueue
from tests.alert_flow import post_and_plan

FIX = Path(__file__).resolve().parent.parent / "fixtures"
NWS = FIX / "nws"
SAMPLES = json.loads((NWS / "nws_alert_samples_resolved.json").read_text())["samples"]


def sample(label: str, n: int = 0) -> dict:
    return copy.deepcopy([s for s in SAMPLES if s["label"] == label][n])


def anchor(s: dict) -> float:
    return datetime.fromisoformat(s["anchor_utc"]).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_deps(now: float, chunk: int = 100, queue: bool = False) -> Deps:
    settings = Settings(stage="test", coupon_secret="s3cret", campaign_cache_s=0, region_shards=3, fanout_chunk=chunk)
    clock = Clock(now)
    return Deps.over(memory_stores(clock=clock, region_shards=settings.region_shards), settings, clock=clock,
                     cache=VersionCache(), push=FakePushGateway(),
                     campaign_cache=CampaignCache(0), resolver=AreaResolver(CountyIndex.load(), None),
                     queue=InlineQueue() if queue else None)


STORM_CAMPAIGN = {
    "name": "Storm delay notice",
    "trigger": {"type": "weather_alert"},
    "message": {
        "title": "Deliveries may be late",
        "body": "Hi {{ first_name | default: 'there' }}, a {{ alert.event | downcase }} may delay your order. "
                "Take {{ coupon.percent_off }}% off: {{ coupon.code }}",
    },
    "coupon": {"percent_off": 10, "prefix": "STORM", "valid_hours": 72},
}


def place(deps: Deps, points: dict[str, tuple[float, float]], *, consent=None, age_s: float = 60.0) -> None:
    """Register each device and post one ping at (lat, lng)."""
    for device_id, (lat, lng) in points.items():
        register_device(deps, device_id, {
            "platform": "android", "push_token": f"tok-{device_id}", "attributes": {"first_name": device_id},
            "consent": consent or {"push": True, "location": True}})
        handle_pings(deps, {"device_id": device_id, "lat": lat, "lng": lng, "timestamp": deps.clock() - age_s})


def brute_force(area, points: dict[str, tuple[float, float]]) -> set[str]:
    return {d for d, (lat, lng) in points.items() if shapely.covers(area, shapely.Point(lng, lat))}


def sent_to(deps: Deps) -> list[str]:
    out = []
    for arn, _platform, msg, _mid in deps.push.published:
        d = deps.deliveries.get_deliveries([msg.delivery_id])[msg.delivery_id]
        out.append(d.device_id)
    return out


def grid(lat0, lng0, lat1, lng1, n) -> dict[str, tuple[float, float]]:
    pts = {}
    for i in range(n):
        for j in range(n):
            pts[f"g{i}-{j}"] = (lat0 + (lat1 - lat0) * (i + 0.5) / n, lng0 + (lng1 - lng0) * (j + 0.5) / n)
    return pts


# ------------------------------------------------------------------ polygon alert
def test_polygon_alert_reaches_exactly_the_devices_inside():
    s = sample("flash_flood_warning_polygon_update")
    deps = make_deps(anchor(s))
    campaign_service.put_campaign(deps, "storm", dict(STORM_CAMPAIGN, trigger={"type": "weather_alert", "events": ["Flash Flood Warning"]}))
    pts = grid(47.42, -122.28, 47.47, -122.20, 12)
    place(deps, pts)
    out = post_and_plan(deps, s["feature"])[0]
    area = shapely.geometry.shape(s["feature"]["geometry"])
    expected = brute_force(area, pts)
    assert expected and len(expected) < len(pts)
    assert out["status"] == "processed" and out["devices_targeted"] == len(expected)
    assert sorted(sent_to(deps)) == sorted(expected)
    d = deps.push.published[0][2]
    assert "a flash flood warning may delay your order" in d.body and "STORM-" in d.body

    # The same alert again (a poll, a retried webhook): duplicate, nothing sent.
    again = post_and_plan(deps, {"type": "FeatureCollection", "features": [s["feature"], s["feature"]]})
    assert [a["status"] for a in again] == ["duplicate", "duplicate"]
    assert len(deps.push.published) == len(expected)


def test_update_with_a_grown_area_reaches_only_the_newcomers():
    s = sample("flash_flood_warning_polygon_update")
    now = anchor(s)
    deps = make_deps(now)
    campaign_service.put_campaign(deps, "storm", STORM_CAMPAIGN)
    pts = grid(40.0, -100.0, 41.0, -99.0, 10)
    place(deps, pts)
    first = copy.deepcopy(s["feature"])
    first["properties"].update(id="urn:oid:test.first", references=[], messageType="Alert")
    first["geometry"] = {"type": "Polygon", "coordinates": [[[-100, 40], [-99.5, 40], [-99.5, 40.5], [-100, 40.5], [-100, 40]]]}
    grown = copy.deepcopy(first)
    grown["properties"].update(id="urn:oid:test.second", messageType="Update",
                               references=[{"identifier": "urn:oid:test.first", "sent": first["properties"]["sent"]}])
    grown["geometry"] = {"type": "Polygon", "coordinates": [[[-100, 40], [-99, 40], [-99, 41], [-100, 41], [-100, 40]]]}
    a = post_and_plan(deps, first)[0]
    n_first = len(deps.push.published)
    b = post_and_plan(deps, grown)[0]
    assert a["lineage"] == b["lineage"] == "urn:oid:test.first"
    assert n_first == a["devices_targeted"] == 25
    assert b["devices_targeted"] == 100
    assert len(deps.push.published) == 100  # 75 newcomers; nobody twice
    assert len(set(sent_to(deps))) == 100
    st = engagement.stats(deps, "storm")
    assert st["sent"] == 100 and st["suppressed"].get("duplicate") == 25


def test_cancellation_never_pushes_and_ends_the_lineage():
    s = sample("cancelled_vtec_can_allclear_still_in_active")
    deps = make_deps(anchor(s))
    campaign_service.put_campaign(deps, "storm", STORM_CAMPAIGN)
    out = post_and_plan(deps, s["feature"])[0]
    assert out["status"] == "cancelled" and deps.push.published == []
    # A later update in that lineage: no push either.
    upd = copy.deepcopy(s["feature"])
    upd["properties"].update(id="urn:oid:test.after-cancel", messageType="Update", response="Prepare",
                             references=[{"identifier": s["feature"]["properties"]["id"], "sent": s["feature"]["properties"]["sent"]}],
                             parameters={})
    res = post_and_plan(deps, upd)[0]
    assert (res["status"], res["reason"]) == ("ignored", "lineage_ended")
    assert deps.push.published == []


def test_ended_and_non_actual_alerts_are_ignored():
    s = sample("flash_flood_warning_polygon_update")
    deps = make_deps(anchor(s) + 30 * 86400)  # long after it ended
    campaign_service.put_campaign(deps, "storm", STORM_CAMPAIGN)
    assert post_and_plan(deps, s["feature"])[0]["reason"] == "ended"
    test = copy.deepcopy(s["feature"])
    test["properties"].update(status="Test", id="urn:oid:test.exercise")
    deps.clock.now = anchor(s)
    assert post_and_plan(deps, test)[0]["reason"] == "not_actual"


# ------------------------------------------------------------------ SAME counties
def test_same_alert_resolves_counties_and_reaches_sonoma():
    s = sample("coastal_flood_advisory_sonoma_same")
    deps = make_deps(anchor(s))
    campaign_service.put_campaign(deps, "storm", STORM_CAMPAIGN)
    pts = {"santa-rosa": (38.4404, -122.7141), "reno": (39.5296, -119.8138), "petaluma": (38.2324, -122.6367)}
    place(deps, pts)
    alert = parse_alerts(s["feature"])[0]
    if classify(alert, deps.clock()).action != "push":
        pytest.skip(f"sample not actionable at its anchor: {classify(alert, deps.clock())}")
    out = post_and_plan(deps, s["feature"])[0]
    assert out["status"] == "processed" and out["area_source"] == "same"
    area = deps.resolver.resolve(alert).geometry
    assert set(sent_to(deps)) == brute_force(area, pts) >= {"santa-rosa", "petaluma"}


def test_unresolvable_area_is_reported_not_silent():
    s = sample("hydrologic_outlook_american_samoa")
    deps = make_deps(anchor(s))
    campaign_service.put_campaign(deps, "storm", STORM_CAMPAIGN)
    out = post_and_plan(deps, s["feature"])[0]
    assert out["status"] in ("unresolved_area", "ignored")
    if out["status"] == "unresolved_area":
        assert out["reason"]


# ------------------------------------------------------------------ audience filters
def test_consent_and_location_age_filters():
    s = sample("flash_flood_warning_polygon_update")
    deps = make_deps(anchor(s))
    campaign_service.put_campaign(deps, "storm", STORM_CAMPAIGN)
    inside = (47.445, -122.24)
    place(deps, {"fresh": inside})
    place(deps, {"stale": inside}, age_s=30 * 3600)
    place(deps, {"no-push": inside}, consent={"push": False, "location": True})
    out = post_and_plan(deps, s["feature"])[0]
    assert out["devices_targeted"] == 1
    assert sent_to(deps) == ["fresh"]


def test_campaign_event_and_severity_filters():
    s = sample("flash_flood_warning_polygon_update")
    deps = make_deps(anchor(s))
    campaign_service.put_campaign(deps, "winter", dict(STORM_CAMPAIGN, trigger={"type": "weather_alert", "events": ["Winter Storm Warning"]}))
    campaign_service.put_campaign(deps, "extreme", dict(STORM_CAMPAIGN, trigger={"type": "weather_alert", "min_severity": "Extreme"}))
    place(deps, {"inside": (47.445, -122.24)})
    out = post_and_plan(deps, s["feature"])[0]
    assert out["campaigns"] == 0 and deps.push.published == []


# ------------------------------------------------------------------ fan-out
def test_large_fanout_goes_through_the_queue_and_redelivery_sends_once():
    s = sample("flash_flood_warning_polygon_update")
    deps = make_deps(anchor(s), chunk=4, queue=True)
    campaign_service.put_campaign(deps, "storm", STORM_CAMPAIGN)
    pts = grid(47.43, -122.25, 47.455, -122.23, 6)
    place(deps, pts)
    expected = brute_force(shapely.geometry.shape(s["feature"]["geometry"]), pts)
    out = post_and_plan(deps, s["feature"])[0]
    assert out["queued_chunks"] == -(-len(expected) // 4) and deps.push.published == []
    first = list(deps.queue.messages)
    alert_planning.drain(deps, deps.queue)
    assert sorted(sent_to(deps)) == sorted(expected)
    deps.queue.messages = first  # SQS redelivers every message
    alert_planning.drain(deps, deps.queue)
    assert len(deps.push.published) == len(expected)


# ------------------------------------------------------------------ the national bundles
def resolve_relative(obj, at: datetime):
    """The bundles' replay times ("date:now -2 minutes") against their capture instant."""
    from tests.unit.test_alerts import resolve_relative as resolve

    return resolve(obj, at.timestamp())


def cities(n: int = 1000) -> dict[str, tuple[float, float]]:
    with open(FIX / "us_cities_top_1k.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))[:n]
    return {f"city-{i}": (float(r["lat"]), float(r["lon"])) for i, r in enumerate(rows)}


@pytest.mark.parametrize("bundle, at", [
    ("weathergov__alerts_active_national_2025-12-15T2155Z_northwest-bundle.json", datetime(2025, 12, 15, 21, 55, tzinfo=timezone.utc)),
    ("weathergov__alerts_active_national_2026-05-14T1635Z_guam-7day-bundle.json", datetime(2026, 5, 14, 16, 35, tzinfo=timezone.utc)),
])
def test_national_bundle_targets_equal_brute_force(bundle, at):
    body = resolve_relative(json.loads((NWS / bundle).read_text()), at)
    deps = make_deps(at.timestamp(), chunk=1000)
    campaign_service.put_campaign(deps, "storm", STORM_CAMPAIGN)
    pts = cities()
    place(deps, pts)
    results = post_and_plan(deps, body)
    assert len(results) == len(body["features"])
    alerts = parse_alerts(body)
    lineages = {}
    expected_per_lineage: dict[str, set[str]] = {}
    for alert, res in zip(alerts, results):
        if not isinstance(alert, Alert):
            continue
        if classify(alert, deps.clock()).action != "push":
            assert res["status"] in ("ignored", "cancelled", "duplicate")
            continue
        if res["status"] != "processed":
            continue
        area = deps.resolver.resolve(alert).geometry
        inside = brute_force(area, pts)
        assert res["devices_targeted"] == len(inside), alert.id
        lineages[alert.id] = res["lineage"]
        expected_per_lineage.setdefault(res["lineage"], set()).update(inside)
    # Exactly one push per (device, lineage): the union of its alerts' areas.
    sent = sorted((d.device_id, d.trigger_key) for d in push_deliveries(deps) if d.status == "sent")
    assert len(sent) == len(set(sent))
    want = sorted((dev, f"alert:{lin}") for lin, devs in expected_per_lineage.items() for dev in devs)
    assert sent == want
    # Posting the whole bundle again sends nothing more.
    n = len(deps.push.published)
    again = post_and_plan(deps, body)
    assert {a["status"] for a in again} <= {"duplicate", "ignored"}
    assert len(deps.push.published) == n


def push_deliveries(deps):
    return list(deps.deliveries.campaign_deliveries("storm"))


# ------------------------------------------------------------------ conditions
def test_conditions_at_reads_once_in_input_order() -> None:
    from chalicelib.weather.conditions import parse_observations, store_observations

    now = 1_790_000_000.0
    santa_rosa, portland = (38.4404, -122.7141), (45.5152, -122.6784)
    store = MemoryWeather()
    obs = {"lat": santa_rosa[0], "lng": santa_rosa[1], "observed_at": now - 600, "condition": "snow", "temperature_c": -1.0}
    store_observations(store, parse_observations({"observations": [obs]}, now=now), now)
    reads: list[list[int]] = []

    class Counting:
        def get_conditions(self, cells: list[int], at: float) -> dict[int, dict]:
            reads.append(cells)
            return store.get_conditions(cells, at)

    got = weather.conditions_at(Counting(), [portland, santa_rosa, portland], now)
    assert [g and g["condition"] for g in got] == [None, "snow", None]
    assert got[1]["temperature_c"] == -1 and len(reads) == 1
    assert weather.conditions_at(Counting(), [], now) == [] and len(reads) == 1
