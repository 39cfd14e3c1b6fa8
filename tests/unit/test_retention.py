"""The location TTL through the services with the in-memory fakes: an
expired location counts as absent everywhere it is read, planning never
uses one, and the sweep erases it (the profile stays)."""

from __future__ import annotations

import doctest
from dataclasses import replace

import pytest

from chalicelib import logs, retention
from chalicelib.services.devices import get_device, register_device
from chalicelib.services.geofences import put_geofence
from chalicelib.services.pings import handle_pings
from chalicelib.services import engagement
from chalicelib.store.memory_devices import MemoryDevices

DAY = 86400.0
SHOP = (38.44, -122.7)
FAR = (38.40, -122.7)
CIRCLE = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [SHOP[1], SHOP[0]]},
          "properties": {"radius_m": 100, "name": "Shop", "tags": ["shop"]}}
SQUARE = {"type": "Polygon", "coordinates": [[[-122.8, 38.3], [-122.6, 38.3], [-122.6, 38.5], [-122.8, 38.5], [-122.8, 38.3]]]}


def test_doctests():
    assert doctest.testmod(retention).failed == 0
    assert doctest.testmod(logs).failed == 0


@pytest.fixture
def deps(mem_deps):
    mem_deps.settings = replace(mem_deps.settings, location_ttl_days=30)
    put_geofence(mem_deps, "shop", CIRCLE)
    register_device(mem_deps, "d1", {"platform": "ios", "push_token": "tok-d1", "consent": {"push": True, "location": True}})
    return mem_deps


def ping(deps, where, *, age_s: float = 0.0) -> dict:
    lat, lng = where
    body = handle_pings(deps, {"device_id": "d1", "lat": lat, "lng": lng, "timestamp": deps.clock() - age_s})
    return body["results"][0]


def test_a_device_whose_location_expired_starts_fresh(deps):
    assert [e["type"] for e in ping(deps, SHOP)["events"]] == ["enter"]
    deps.clock.now += 29 * DAY
    assert ping(deps, SHOP)["events"] == []  # still inside: nothing new
    deps.clock.now += 30 * DAY + 1  # 30 days after the last write
    assert get_device(deps, "d1")["last_location"] is None and get_device(deps, "d1")["fences"] == []
    # The stale visit is gone without an exit; this ping is a new visit.
    assert [e["type"] for e in ping(deps, SHOP)["events"]] == ["enter"]
    assert get_device(deps, "d1")["last_location"] is not None


def test_the_location_counts_until_the_ttl(deps):
    ping(deps, SHOP)
    deps.clock.now += 30 * DAY - 1
    assert get_device(deps, "d1")["fences"] == ["shop"]


def test_the_ttl_follows_the_setting(deps):
    deps.settings = replace(deps.settings, location_ttl_days=2)
    ping(deps, SHOP)
    deps.clock.now += 2 * DAY
    assert get_device(deps, "d1")["last_location"] is None


def test_an_expired_location_is_not_an_audience(deps):
    ping(deps, SHOP)
    body = {"geometry": SQUARE}
    assert engagement.audience_estimate(deps, body)["reachable"] == 1
    assert engagement.audience_estimate(deps, dict(body, max_location_age_hours=1))["reachable"] == 1
    deps.clock.now += 30 * DAY + 1
    assert engagement.audience_estimate(deps, body)["reachable"] == 0  # "any age" still means within the TTL


def test_a_location_timestamped_before_the_ttl_is_never_planned(deps):
    # Written now, but taken 31 days ago (a replay): planning looks at its age.
    assert ping(deps, SHOP, age_s=31 * DAY)["accepted"]
    assert engagement.audience_estimate(deps, {"geometry": SQUARE})["reachable"] == 0


def test_the_sweep_erases_expired_locations_and_keeps_the_profile(deps):
    register_device(deps, "d2", {"platform": "ios", "push_token": "tok-d2", "consent": {"push": True, "location": True}})
    ping(deps, SHOP)
    deps.clock.now += 20 * DAY
    handle_pings(deps, {"device_id": "d2", "lat": FAR[0], "lng": FAR[1], "timestamp": deps.clock()})
    deps.clock.now += 10 * DAY + 1  # d1 expired, d2 not
    store: MemoryDevices = deps.devices
    v1 = store.devices["d1"].state_version
    assert retention.sweep_expired_locations(deps) == {"removed": 1, "complete": True, "segment": 0, "segments": 1}
    d1, d2 = store.devices["d1"], store.devices["d2"]
    assert d1.state is None and d1.state_version == v1 + 1 and d1.push_token == "tok-d1"
    assert d2.state is not None
    assert retention.sweep_expired_locations(deps)["removed"] == 0  # idempotent
    assert engagement.audience_estimate(deps, {"geometry": SQUARE})["reachable"] == 1  # d2 only
    # a later ping works on the swept device (its write is conditional on the new version)
    assert [e["type"] for e in ping(deps, SHOP)["events"]] == ["enter"]


def test_the_sweep_is_bounded_and_segmented(mem_deps):
    store: MemoryDevices = mem_deps.devices
    for i in range(50):
        register_device(mem_deps, f"d{i}", {"platform": "ios", "push_token": f"tok-{i}", "consent": {"push": True, "location": True}})
        handle_pings(mem_deps, {"device_id": f"d{i}", "lat": 40.0 + i / 1000, "lng": -74.0, "timestamp": mem_deps.clock()})
    mem_deps.clock.now += 31 * DAY
    first = retention.sweep_expired_locations(mem_deps, limit=10)
    assert first["removed"] == 10 and first["complete"] is False
    total = sum(retention.sweep_expired_locations(mem_deps, segment=s, segments=24)["removed"] for s in range(24))
    assert total == 40 and all(d.state is None for d in store.devices.values())


def test_sweep_segments_cover_every_hour_once():
    assert sorted(retention.sweep_segment(h) for h in range(24)) == list(range(24))


def test_only_the_last_accepted_location_is_kept(deps):
    places = [(38.4401, -122.7001), (38.4412, -122.7013), (38.4423, -122.7025), (38.4434, -122.7037)]
    for i, where in enumerate(places):
        deps.clock.now += deps.settings.last_seen_refresh_s  # every ping is stored
        ping(deps, where)
    d = deps.devices.get_device("d1")
    assert (d.state.lat, d.state.lng) == places[-1]
    dumped = repr(vars(deps.devices))
    for lat, lng in places[:-1]:
        assert repr(lat) not in dumped and repr(lng) not in dumped
