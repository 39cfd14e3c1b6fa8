"""Use cases against the in-memory fakes: geofences, lookup, devices, pings."""

from __future__ import annotations

import dataclasses

import json
from pathlib import Path

import pytest

from chalicelib.services.deps import Deps
from chalicelib.errors import Forbidden, InvalidInput, NotFound
from chalicelib.services.devices import delete_device, get_device, register_device
from chalicelib.services.geofences import (
    delete_geofence,
    get_geofence,
    import_geofences,
    list_geofences,
    lookup,
    put_geofence,
)
from chalicelib.services.pings import handle_pings

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
T0 = 1_790_000_000.0


def circle(lng, lat, r, **props):
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lng, lat]}, "properties": {"radius_m": r, **props}}


def box(x0, y0, x1, y1, **props):
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": props}


def register(deps, device_id="d1", location=True):
    return register_device(
        deps, device_id, {"platform": "ios", "push_token": "tok-" + device_id, "consent": {"push": True, "location": location}}
    )


def ping(deps, lat, lng, ts, device_id="d1", acc=5.0):
    body = handle_pings(deps, {"device_id": device_id, "lat": lat, "lng": lng, "timestamp": T0 + ts, "accuracy_m": acc})
    return body["results"][0]


def kinds(result):
    return [(e["type"], e["fence_id"]) for e in result["events"]]


# ------------------------------------------------------------------ geofences
def test_put_get_replace_delete(mem_deps):
    r = put_geofence(mem_deps, "store-1", circle(-122.7, 38.44, 100, name="Store", tags=["shop"]))
    assert r["version"] == 1 and r["kind"] == "circle" and r["cells"] > 0
    got = get_geofence(mem_deps, "store-1")
    assert got["properties"]["name"] == "Store" and got["geometry"]["type"] == "Point"
    r2 = put_geofence(mem_deps, "store-1", circle(-122.6, 38.44, 100, name="Moved"))
    assert r2["version"] == 2
    assert lookup(mem_deps, 38.44, -122.7) == {"fences": []}
    assert lookup(mem_deps, 38.44, -122.6)["fences"][0]["name"] == "Moved"
    delete_geofence(mem_deps, "store-1")
    assert mem_deps.fences.cells == {}  # no index row left
    with pytest.raises(NotFound):
        get_geofence(mem_deps, "store-1")
    with pytest.raises(NotFound):
        delete_geofence(mem_deps, "store-1")


def test_path_id_and_body_id_must_agree(mem_deps):
    f = dict(circle(-122.7, 38.44, 100), id="other")
    with pytest.raises(InvalidInput) as exc:
        put_geofence(mem_deps, "store-1", f)
    assert exc.value.field == "id"


def test_import_accepts_and_rejects_each_feature_on_its_own(mem_deps):
    good = dict(box(-122.72, 38.43, -122.70, 38.45), id="a")
    bad = {"type": "Feature", "id": "b", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}, "properties": {}}
    noid = box(0, 0, 1, 1)
    dup = dict(box(-122.72, 38.43, -122.70, 38.45), id="a")
    r = import_geofences(mem_deps, {"type": "FeatureCollection", "features": [good, bad, noid, dup]})
    assert r["imported"] == 1
    assert [(x["index"], x["id"], x["error"]["field"]) for x in r["rejected"]] == [
        (1, "b", "features[1].geometry"),
        (2, None, "features[2].id"),
        (3, "a", "features[3].id"),
    ]
    assert set(mem_deps.fences.fences) == {"a"}


def test_list_by_tag_is_paginated(mem_deps):
    for i in range(5):
        put_geofence(mem_deps, f"f{i}", circle(-122.7 + i * 0.01, 38.44, 50, tags=["even" if i % 2 == 0 else "odd"]))
    page = list_geofences(mem_deps, "even", 2, None)
    assert [f["id"] for f in page["features"]] == ["f0", "f2"] and page["next_token"] == "f2"
    page2 = list_geofences(mem_deps, "even", 2, page["next_token"])
    assert [f["id"] for f in page2["features"]] == ["f4"] and page2["next_token"] is None


def test_lookup_shared_border_matches_both(mem_deps):
    counties = {f["id"]: f for f in json.loads((FIXTURES / "us_counties.geojson").read_text())["features"]}
    for fips in ("06097", "06055"):
        put_geofence(mem_deps, fips, counties[fips])
    import shapely
    from shapely.geometry import shape

    border = shapely.intersection(shape(counties["06097"]["geometry"]).boundary, shape(counties["06055"]["geometry"]).boundary)
    x, y = shapely.get_coordinates(border)[0]
    assert [f["id"] for f in lookup(mem_deps, float(y), float(x))["fences"]] == ["06055", "06097"]


def test_disabled_fence_matches_nothing(mem_deps):
    put_geofence(mem_deps, "f", circle(-122.7, 38.44, 100, enabled=False))
    assert lookup(mem_deps, 38.44, -122.7) == {"fences": []}


# ------------------------------------------------------------------ devices
def test_device_register_get_delete(mem_deps):
    answer = register(mem_deps)
    secret = answer.pop("device_secret")
    assert answer == {"device_id": "d1", "push_enabled": True}
    ping(mem_deps, 38.44, -122.7, 0)
    d = get_device(mem_deps, "d1")
    assert d["last_location"]["h3_cell"] and '"lat"' not in json.dumps(d) and "38.44" not in json.dumps(d)
    assert secret not in json.dumps(d) and "secret" not in json.dumps(d)
    delete_device(mem_deps, "d1", role="app", secret=secret)
    with pytest.raises(NotFound):
        get_device(mem_deps, "d1")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"platform": "windows", "push_token": "t"}, "platform"),
        ({"platform": "ios", "push_token": ""}, "push_token"),
        ({"platform": "ios", "push_token": "t", "consent": {"location": "yes"}}, "consent.location"),
        ({"platform": "ios", "push_token": "t", "attributes": {"a": {"nested": 1}}}, "attributes.a"),
        # Falsy non-objects are not "absent" (only null is): found by the contract fuzz run.
        ({"platform": "ios", "push_token": "t", "consent": False}, "consent"),
        ({"platform": "ios", "push_token": "t", "consent": []}, "consent"),
        ({"platform": "ios", "push_token": "t", "attributes": 0}, "attributes"),
        ({"platform": "ios", "push_token": "t", "attributes": ""}, "attributes"),
        ([], "body"),
    ],
)
def test_device_validation(mem_deps, body, field):
    with pytest.raises(InvalidInput) as exc:
        register_device(mem_deps, "d1", body)
    assert exc.value.field == field
    assert mem_deps.devices.devices == {}


def test_withdrawing_location_consent_forgets_the_location(mem_deps):
    register(mem_deps)
    ping(mem_deps, 38.44, -122.7, 0)
    register(mem_deps, location=False)
    assert mem_deps.devices.devices["d1"].state is None


# ------------------------------------------------------------------ pings
@pytest.fixture
def fenced(mem_deps):
    mem_deps.clock.now = T0 + 100_000
    put_geofence(mem_deps, "shop", circle(-122.70, 38.44, 100, name="Shop", dwell_minutes=5))
    register(mem_deps)
    return mem_deps


def test_enter_dwell_exit(fenced):
    assert kinds(ping(fenced, 38.44, -122.70, 0)) == [("enter", "shop")]
    assert kinds(ping(fenced, 38.4401, -122.70, 120)) == []
    assert kinds(ping(fenced, 38.4401, -122.70, 301)) == [("dwell", "shop")]
    assert kinds(ping(fenced, 38.4401, -122.70, 600)) == []
    assert kinds(ping(fenced, 38.45, -122.70, 700)) == [("exit", "shop")]


def test_no_flapping_at_the_edge(fenced):
    ping(fenced, 38.44, -122.70, 0)
    edge = 38.44 + 105 / 111_195  # 5 m outside the 100 m circle
    for k in range(1, 20):
        lat = edge if k % 2 else 38.44 + 95 / 111_195
        assert kinds(ping(fenced, lat, -122.70, k * 10, acc=20.0)) == []


def test_exit_far_from_any_row_needs_no_geometry(fenced):
    ping(fenced, 38.44, -122.70, 0)
    r = ping(fenced, 40.0, -100.0, 60)
    assert kinds(r) == [("exit", "shop")]


def test_fence_created_while_inside_enters_at_next_ping(mem_deps):
    register(mem_deps)
    assert kinds(ping(mem_deps, 38.44, -122.70, 0)) == []
    put_geofence(mem_deps, "new", circle(-122.70, 38.44, 100))
    assert kinds(ping(mem_deps, 38.44, -122.70, 10)) == [("enter", "new")]


def test_deleted_fence_ends_visit_quietly(fenced):
    ping(fenced, 38.44, -122.70, 0)
    delete_geofence(fenced, "shop")
    assert kinds(ping(fenced, 38.44, -122.70, 10)) == []
    assert fenced.devices.devices["d1"].state.inside == {}


def test_duplicate_and_out_of_order(fenced):
    ping(fenced, 38.44, -122.70, 100)
    dup = ping(fenced, 38.44, -122.70, 100)
    old = ping(fenced, 38.50, -122.70, 50)
    assert (dup["accepted"], dup["reason"], dup["events"]) == (False, "duplicate", [])
    assert (old["accepted"], old["reason"], old["events"]) == (False, "out_of_order", [])


def test_inaccurate_ping(fenced):
    r = ping(fenced, 38.44, -122.70, 0, acc=5000.0)
    assert (r["accepted"], r["reason"], r["events"]) == (False, "inaccurate", [])
    assert fenced.devices.devices["d1"].state is None


def test_single_ping_unknown_device_and_no_consent(fenced):
    with pytest.raises(NotFound):
        ping(fenced, 38.44, -122.70, 0, device_id="ghost")
    register(fenced, "d2", location=False)
    with pytest.raises(Forbidden):
        ping(fenced, 38.44, -122.70, 0, device_id="d2")
    assert fenced.devices.devices["d2"].state is None


def test_batch_in_timestamp_order_results_in_input_order(fenced):
    register(fenced, "d2", location=False)
    body = {
        "pings": [
            {"device_id": "d1", "lat": 38.45, "lng": -122.70, "timestamp": T0 + 20},  # exit (last)
            {"device_id": "ghost", "lat": 38.44, "lng": -122.70, "timestamp": T0},
            {"device_id": "d1", "lat": 38.44, "lng": -122.70, "timestamp": T0 + 10},  # enter (first)
            {"device_id": "d2", "lat": 38.44, "lng": -122.70, "timestamp": T0},
        ]
    }
    out = handle_pings(fenced, body)
    res = out["results"]
    assert [r["device_id"] for r in res] == ["d1", "ghost", "d1", "d2"]
    assert kinds(res[0]) == [("exit", "shop")] and kinds(res[2]) == [("enter", "shop")]
    assert (res[1]["reason"], res[3]["reason"]) == ("unknown_device", "no_location_consent")


def test_app_key_batches_touch_one_device(fenced):
    register(fenced, "d2")
    body = {"pings": [{"device_id": "d1", "lat": 1, "lng": 1}, {"device_id": "d2", "lat": 1, "lng": 1}]}
    with pytest.raises(Forbidden):
        handle_pings(fenced, body, role="app")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"device_id": "d1", "lat": 91, "lng": 0}, "lat"),
        ({"device_id": "d1", "lat": 0, "lng": -181}, "lng"),
        ({"device_id": "d1", "lat": "1", "lng": 0}, "lat"),
        ({"device_id": "d1", "lat": True, "lng": 0}, "lat"),
        ({"device_id": "d1", "lng": 0}, "lat"),
        ({"device_id": "", "lat": 0, "lng": 0}, "device_id"),
        ({"device_id": "d1", "lat": 0, "lng": 0, "timestamp": "yesterday"}, "timestamp"),
        ({"device_id": "d1", "lat": 0, "lng": 0, "timestamp": 4_000_000_000}, "timestamp"),
        ({"device_id": "d1", "lat": 0, "lng": 0, "accuracy_m": -1}, "accuracy_m"),
        ({"pings": [{"device_id": "d1", "lat": 0, "lng": 0}, {"device_id": "d1", "lat": 0}]}, "pings[1].lng"),
        ({"pings": [{"device_id": "d1", "lat": 0, "lng": 0}] * 101}, "pings"),
        ({"pings": []}, "pings"),
        ({"pings": [7]}, "pings[0]"),
    ],
)
def test_bad_pings_name_the_field_and_write_nothing(fenced, body, field):
    before = fenced.fences.tally.writes
    with pytest.raises(InvalidInput) as exc:
        handle_pings(fenced, body)
    assert exc.value.field == field
    assert fenced.fences.tally.writes == before


def test_writes_only_when_something_changed(fenced):
    ping(fenced, 38.50, -122.70, 0)
    writes = fenced.fences.tally.writes
    for k in range(1, 30):  # standing still, 29 pings within 290 s
        ping(fenced, 38.50, -122.70, k * 10)
    assert fenced.fences.tally.writes == writes
    fenced.clock.now += fenced.settings.last_seen_refresh_s  # the last-seen refresh is due
    ping(fenced, 38.50, -122.70, 400)
    assert fenced.fences.tally.writes == writes + 1


def test_a_move_without_visits_waits_for_the_refresh_unless_its_resolution_is_set(fenced):
    """Moving ~1 km outside every fence changes the resolution-9 cell: not
    written by default (the refresh files it), written at once when
    ``location_write_res`` asks for moves at that resolution."""
    ping(fenced, 38.50, -122.70, 0)
    writes = fenced.fences.tally.writes
    ping(fenced, 38.51, -122.70, 60)
    assert fenced.fences.tally.writes == writes
    fenced.settings = dataclasses.replace(fenced.settings, location_write_res=9)
    ping(fenced, 38.52, -122.70, 120)
    assert fenced.fences.tally.writes == writes + 1
    stored = fenced.devices.get_device("d1", consistent=True)
    assert stored.state.lat == 38.52


def test_concurrent_update_replays_on_fresh_state(fenced, monkeypatch):
    """Two requests for one device race: the loser re-reads and replays, so
    neither the winner's enter nor the loser's exit is lost."""
    fenced.settings = dataclasses.replace(fenced.settings, location_write_res=9)  # this request's move is written
    store = fenced.devices
    ping(fenced, 38.50, -122.70, 0)  # outside
    real_save = store.save_state
    raced = {"done": False}

    def racing_save(device_id, expected, state, written_at, outbox=None):
        if not raced["done"]:
            raced["done"] = True
            ping(fenced, 38.44, -122.70, 10)  # the other request: enter
        return real_save(device_id, expected, state, written_at, outbox)

    monkeypatch.setattr(store, "save_state", racing_save)
    r = ping(fenced, 38.46, -122.70, 20)  # this request: far outside
    assert kinds(r) == [("exit", "shop")]
    assert store.devices["d1"].state.inside == {}


def test_batch_results_do_not_depend_on_input_order(mem_deps):
    """The same pings in any order give the same result per ping."""
    import random

    mem_deps.clock.now = T0 + 100_000
    put_geofence(mem_deps, "a", circle(-122.70, 38.44, 150, dwell_minutes=1))
    put_geofence(mem_deps, "b", box(-122.705, 38.435, -122.69, 38.445))
    pings = [
        {"device_id": f"d{k % 3}", "lat": 38.44 + 0.002 * ((k * 7) % 5 - 2), "lng": -122.70 + 0.003 * ((k * 3) % 5 - 2), "timestamp": T0 + 30 * k}
        for k in range(30)
    ]

    def run(order):
        from chalicelib.store import memory_stores

        stores = memory_stores(clock=mem_deps.clock)
        stores.fences = mem_deps.fences  # the same fences, fresh devices and deliveries
        fresh = Deps.over(stores, mem_deps.settings, clock=mem_deps.clock)
        for d in ("d0", "d1", "d2"):
            register(fresh, d)
        out = handle_pings(fresh, {"pings": [pings[i] for i in order]})
        return {i: r for i, r in zip(order, out["results"])}

    base = run(list(range(30)))
    assert sum(len(r["events"]) for r in base.values()) > 5
    rng = random.Random(5)
    for _ in range(5):
        order = list(range(30))
        rng.shuffle(order)
        assert run(order) == base
