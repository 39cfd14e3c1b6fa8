"""The composition root: what build_deps wires, and what it does not load."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from chalicelib import container
from chalicelib.container import LazyCounties, build_deps
from chalicelib.services.deps import Deps
from chalicelib.push.sns import SnsGateway
from chalicelib.services.devices import register_device
from chalicelib.services.geofences import put_geofence
from chalicelib.services.pings import handle_pings
from chalicelib.settings import Settings, fanout_queue_name, get_settings
from chalicelib.store.dynamo import DynamoStore
from chalicelib.weather import area
from chalicelib.weather.fanout import SqsQueue

T0 = 1_790_000_000.0


class Counties:
    def union(self, same_codes):
        return None, tuple(same_codes)


@pytest.fixture
def county_loads(monkeypatch):
    loads: list[int] = []

    def load(cls, path=None):
        loads.append(1)
        return Counties()

    monkeypatch.setattr(area.CountyIndex, "load", classmethod(load))
    return loads


def test_build_deps_wires_one_clock_one_sleep_and_standard_retries(moto_aws, county_loads):
    clock, slept = (lambda: T0), []
    deps = build_deps(get_settings(), clock=clock, sleep=slept.append)
    assert isinstance(deps, Deps) and deps.clock is clock and deps.sleep == slept.append
    assert isinstance(deps.store, DynamoStore) and deps.store.clock is clock
    assert isinstance(deps.push, SnsGateway) and deps.push.sleep == slept.append
    assert isinstance(deps.queue, SqsQueue) and deps.queue.sleep == slept.append
    for client in (deps.store.client, deps.push.client, deps.queue.client):
        # botocore counts the first try too: 3 retries = 4 attempts, no adaptive rate limiter.
        assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 4}
    assert deps.settings.fanout_queue == fanout_queue_name()  # the environment of this process


def test_building_deps_and_handling_a_ping_never_loads_the_counties(moto_aws, county_loads):
    deps = build_deps(get_settings(), clock=lambda: T0)
    put_geofence(deps, "shop", {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-122.7, 38.44]},
                                "properties": {"radius_m": 100}})
    register_device(deps, "d1", {"platform": "ios", "push_token": "tok", "consent": {"push": False, "location": True}})
    out = handle_pings(deps, {"device_id": "d1", "lat": 38.44, "lng": -122.7, "timestamp": T0 - 1})
    assert out["results"][0]["accepted"] and out["results"][0]["events"][0]["type"] == "enter"
    assert county_loads == []
    # The first alert that needs its SAME counties pays for them, once.
    alert = SimpleNamespace(id="a1", geometry=None, same=("006097",), affected_zones=())
    deps.resolver.resolve(alert)
    deps.resolver.resolve(alert)
    assert county_loads == [1]


def test_lazy_counties_load_once():
    loads = []
    lazy = LazyCounties(lambda: loads.append(1) or Counties())
    assert not lazy.loaded and loads == []
    assert lazy.union(["006097"]) == (None, ("006097",))
    lazy.union(["006055"])
    assert lazy.loaded and loads == [1]


@pytest.mark.parametrize("env, name", [
    ({}, "hexcast-local-fanout"),
    ({"HEXCAST_STAGE": "prod"}, "hexcast-prod-fanout"),
    ({"HEXCAST_STAGE": "prod", "HEXCAST_FANOUT_QUEUE": "q"}, "q"),
    ({"HEXCAST_STAGE": "prod", "HEXCAST_FANOUT_QUEUE": ""}, "hexcast-prod-fanout"),
])
def test_one_function_names_the_fanout_queue_for_sender_and_consumer(env, name):
    assert fanout_queue_name(env) == Settings.from_env(env).fanout_queue == name


def test_set_deps_installs_and_resets(mem_deps):
    container.set_deps(mem_deps)
    try:
        assert container.get_deps() is mem_deps
    finally:
        container.set_deps(None)
