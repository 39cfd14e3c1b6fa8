"""The pieces of the ping pipeline, one at a time (the use case end to end
is tests/unit/test_services.py)."""

from __future__ import annotations

import math

import pytest

from chalicelib import auth
from chalicelib.errors import Forbidden, InvalidInput, NotFound, Unavailable
from chalicelib.presence import Event, Ping
from chalicelib.services.devices import register_device
from chalicelib.services.geofences import Match, put_geofence
from chalicelib.services.outbox import outbox_entries, outbox_key
from chalicelib.services.pings import (
    FenceLiveness,
    IndexRead,
    PendingWrite,
    PingCells,
    parse_pings,
    ping_result,
    read_stepper,
    refusal,
    step_devices,
    write_device,
)
from chalicelib.ports import ConcurrentUpdate, Device
from chalicelib.timeutil import iso

T0 = 1_790_000_000.0
SHOP = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-122.70, 38.44]}, "properties": {"radius_m": 100}}


def ping(i, lat=38.44, lng=-122.70, ts=T0, acc=5.0, device_id="d1"):
    return Ping(device_id, lat, lng, ts, acc, None, i)


@pytest.fixture
def world(mem_deps):
    mem_deps.clock.now = T0 + 100
    put_geofence(mem_deps, "shop", SHOP)
    register_device(mem_deps, "d1", {"platform": "ios", "push_token": "t", "consent": {"push": True, "location": True}})
    return mem_deps


def stepper_for(deps, pings):
    cells = PingCells.of(pings, deps.settings.max_accuracy_m)
    devices = deps.devices.get_devices(sorted({p.device_id for p in pings}))
    rows = deps.fences.lookup_cells(cells.all_cells)
    return read_stepper(deps, pings, cells, devices, IndexRead(rows)), devices


# ---------------------------------------------------------------- parsing
def test_parse_names_the_field_without_a_leading_dot():
    with pytest.raises(InvalidInput) as e:
        parse_pings({"device_id": "d1", "lat": 91, "lng": 0}, T0)
    assert e.value.field == "lat"
    with pytest.raises(InvalidInput) as e:
        parse_pings({"pings": [{"device_id": "d1", "lat": 0, "lng": 0}, {"device_id": "d1\n", "lat": 0, "lng": 0}]}, T0)
    assert e.value.field == "pings[1].device_id"
    pings, single = parse_pings({"device_id": "d1", "lat": 1, "lng": 2}, T0)
    assert single and pings == [Ping("d1", 1.0, 2.0, T0, None, None, 0)]


# ---------------------------------------------------------------- small pieces
def test_ping_cells_leave_out_inaccurate_pings():
    cells = PingCells.of([ping(0), ping(1, acc=5000.0), ping(2, lat=38.5)], max_accuracy_m=1000.0)
    assert sorted(cells.cell_of) == [0, 2] and sorted(cells.anc_of) == [0, 2]
    assert cells.all_cells == sorted(set(cells.anc_of[0]) | set(cells.anc_of[2]))


def test_refusal_and_result():
    assert refusal(None) == "unknown_device"
    assert refusal(Device("d", "ios", "t", consent={"location": False})) == "no_location_consent"
    assert refusal(Device("d", "ios", "t", consent={"location": True})) is None
    r = ping_result(ping(3), True, None, [Event("enter", "shop", T0, T0)])
    assert r["events"] == [{"type": "enter", "fence_id": "shop", "at": iso(T0)}] and r["deliveries"] == []
    assert "reason" not in r and len(r["_events"]) == 1
    assert ping_result(ping(3), False, "duplicate") == {"device_id": "d1", "accepted": False, "reason": "duplicate",
                                                        "events": [], "deliveries": []}


def test_outbox_entries_are_keyed_by_occasion():
    e = Event("enter", "shop", T0, T0)
    entries = outbox_entries([ping_result(ping(0), True, None, [e]), ping_result(ping(1), True, None, [e])])
    assert list(entries) == [outbox_key({"type": "enter", "fence_id": "shop", "visit_ts": T0})]


def test_fence_liveness_reads_an_unknown_fence_once():
    calls = []

    def fetch(ids):
        calls.append(list(ids))
        return {}

    live = FenceLiveness({"known-gone": False}, fetch)
    assert not live.alive("known-gone") and calls == []
    assert not live.alive("other") and not live.alive("other")
    assert calls == [["other"]]


# ---------------------------------------------------------------- stepping
def test_stepper_runs_a_device_oldest_first(world):
    pings = [ping(0, ts=T0 + 20), ping(1, ts=T0 + 10), ping(2, ts=T0 + 30, acc=5000.0)]
    stepper, devices = stepper_for(world, pings)
    run = stepper.run(devices["d1"], pings)
    assert run.changed and run.state.ts == T0 + 20
    assert run.results[1]["events"][0]["type"] == "enter" and run.results[0]["events"] == []
    assert run.results[2]["reason"] == "inaccurate"
    assert devices["d1"].state is None  # the stored device is not touched


def test_distance_of_a_fence_far_away_or_gone(world):
    far = ping(0, lat=38.60)
    stepper, _ = stepper_for(world, [far])
    stepper.seen.discard("shop")
    assert stepper.distance(far, Match({}, {}), "shop") == math.inf  # exists, no row near the ping
    assert stepper.distance(far, Match({}, {}), "deleted") is None


def test_step_devices_single_and_batch_refusals(world):
    stepper, devices = stepper_for(world, [ping(0, device_id="ghost")])
    with pytest.raises(NotFound):
        step_devices(stepper, [ping(0, device_id="ghost")], devices, single=True, now=T0, refresh_s=300)
    results, writes = step_devices(stepper, [ping(0, device_id="ghost")], devices, single=False, now=T0, refresh_s=300)
    assert results[0]["reason"] == "unknown_device" and writes == []
    register_device(world, "quiet", {"platform": "ios", "push_token": "t", "consent": {"location": False}})
    stepper, devices = stepper_for(world, [ping(0, device_id="quiet")])
    with pytest.raises(Forbidden):
        step_devices(stepper, [ping(0, device_id="quiet")], devices, single=True, now=T0, refresh_s=300)


def test_step_devices_writes_only_what_changed_or_is_due(world):
    stepper, devices = stepper_for(world, [ping(0)])
    results, writes = step_devices(stepper, [ping(0)], devices, single=True, now=T0, refresh_s=300)
    assert [w.device.device_id for w in writes] == ["d1"] and results[0]["accepted"]


# ---------------------------------------------------------------- writing
def test_write_replays_on_the_state_another_request_stored(world):
    p = ping(0, ts=T0 + 10)
    stepper, devices = stepper_for(world, [p])
    run = stepper.run(devices["d1"], [p])
    # Another request moves the device first (outside the shop, later).
    other = ping(9, lat=38.60, ts=T0 + 5)
    o_stepper, o_devices = stepper_for(world, [other])
    world.devices.save_state("d1", 0, o_stepper.run(o_devices["d1"], [other]).state, T0, None)
    done = write_device(world, stepper, PendingWrite(devices["d1"], [p], run), T0 + 20, role=auth.ADMIN, secret=None)
    assert done.results[0]["accepted"] and done.results[0]["events"][0]["type"] == "enter"
    assert next(iter(done.outbox.values()))["type"] == "enter"
    stored = world.devices.get_device("d1", consistent=True)
    assert stored.state_version == 2 and stored.state.ts == T0 + 10


def test_write_of_a_device_deleted_meanwhile_refuses_its_pings(world):
    p = ping(0)
    stepper, devices = stepper_for(world, [p])
    run = stepper.run(devices["d1"], [p])
    world.devices.delete_device("d1")
    done = write_device(world, stepper, PendingWrite(devices["d1"], [p], run), T0, role=auth.ADMIN, secret=None)
    assert done.results == {0: ping_result(p, False, "unknown_device")} and done.outbox == {}


def test_write_gives_up_after_too_many_races(world, monkeypatch):
    p = ping(0)
    stepper, devices = stepper_for(world, [p])
    run = stepper.run(devices["d1"], [p])

    def always_raced(*a, **k):
        raise ConcurrentUpdate("d1")

    monkeypatch.setattr(world.devices, "save_state", always_raced)
    with pytest.raises(Unavailable):
        write_device(world, stepper, PendingWrite(devices["d1"], [p], run), T0, role=auth.ADMIN, secret=None)
