"""The device region index, one contract for the in-memory twin and the
DynamoDB repository (moto): kept current by location writes, emptied by consent
withdrawal, and ``plan_targets`` over it equals a brute-force geometry test
over every device."""

from __future__ import annotations

import math

import h3.api.basic_int as h3i
import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.geo.cells import FINEST, latlng_to_cell
from chalicelib.geo.cover import Cover
from chalicelib.presence import LocationState, Visit
from chalicelib.store.memory_devices import MemoryDevices
from chalicelib.ports import Device, RegionQuery
from chalicelib.weather.region import cell_range, plan_queries, region_keys, shard_of
from chalicelib.weather.targets import SKIP_REASONS, plan_targets
from tests.strategies import small_polygons

SHARDS = 4  # Settings.region_shards' default: what the DynamoDB store uses here
NOW = 1_790_000_000.0


class Harness:
    """A store and every device written to it (across hypothesis examples,
    which share the function-scoped store)."""

    def __init__(self, store) -> None:
        self.store = store
        self.devices: dict[str, tuple[dict, bool, LocationState | None]] = {}
        self.n = 0

    def add(self, lat, lng, *, consent=None, push_enabled=True, ts=NOW, inside=(), device_id=None) -> str:
        self.n += 1
        did = device_id or f"dev-{self.n:06d}"
        consent = {"push": True, "location": True} if consent is None else consent
        self.devices.save_profile(Device(did, "android", f"tok-{did}", consent=consent, push_enabled=push_enabled))
        state = None
        if consent.get("location"):
            state = LocationState(lat, lng, ts, latlng_to_cell(lat, lng, FINEST), 10.0, {f: Visit(ts) for f in inside})
            self.devices.save_state(did, 0, state, NOW)  # a new profile's state version is 0
        self.devices[did] = (consent, push_enabled, state)
        return did

    def move(self, did: str, state: LocationState | None) -> None:
        cur = self.devices.get_device(did, consistent=True)
        self.devices.save_state(did, cur.state_version, state, NOW)
        consent, push, _ = self.devices.get(did, (cur.consent, cur.push_enabled, None))
        self.devices[did] = (consent, push, state)


@pytest.fixture
def store_clock():
    """Devices never read the clock: one offset is enough here (the
    hypothesis run on moto is the slowest store test)."""
    from tests.conftest import FakeClock

    return FakeClock(NOW)


@pytest.fixture
def store(stores):
    """The device repository of each twin (see ``stores`` in conftest)."""
    assert stores.devices.region_shards == SHARDS
    return stores.devices


@pytest.fixture
def harness(store):
    return Harness(store)


def query_for(cell: int, shards: int = SHARDS) -> list[RegionQuery]:
    """Every shard of the range of ``cell``'s resolution-9 descendants."""
    plan = plan_queries(Cover(np.array([cell], np.uint64), np.array([False])), shards)
    return plan.queries


def found(store, queries) -> dict[str, Device]:
    out = {}
    for d in store.devices_in_ranges(queries):
        assert d.device_id not in out, "a device came back twice"
        out[d.device_id] = d
    return out


# ------------------------------------------------------------ the index
def test_a_location_write_indexes_the_device(harness):
    did = harness.add(38.44, -122.71)
    cell = latlng_to_cell(38.44, -122.71, FINEST)
    got = found(harness.store, query_for(h3i.cell_to_parent(cell, 5)))
    assert list(got) == [did]
    d = got[did]
    assert d.consent == {"push": True, "location": True} and d.push_enabled is True
    assert d.state.cell == cell and d.state.lat == 38.44 and d.state.ts == NOW
    assert d.state_version == harness.devices.get_device(did).state_version


def test_a_device_that_moves_leaves_its_old_range(harness):
    did = harness.add(38.44, -122.71)
    old = h3i.cell_to_parent(latlng_to_cell(38.44, -122.71, FINEST), 7)
    new_cell = latlng_to_cell(40.71, -74.0, FINEST)
    harness.move(did, LocationState(40.71, -74.0, NOW + 60, new_cell, 10.0, {}))
    assert found(harness.store, query_for(old)) == {}
    got = found(harness.store, query_for(h3i.cell_to_parent(new_cell, 3)))
    assert list(got) == [did] and got[did].state.lat == 40.71


def test_only_the_devices_shard_holds_it(harness):
    did = harness.add(38.44, -122.71)
    cell = latlng_to_cell(38.44, -122.71, FINEST)
    rc, _ = region_keys(did, cell, SHARDS)
    lo, hi = cell_range(cell)
    others = [RegionQuery(rc.split("#")[0] + f"#{s}", ((lo, hi),)) for s in range(SHARDS) if s != shard_of(did, SHARDS)]
    assert found(harness.store, others) == {}
    assert list(found(harness.store, [RegionQuery(rc, ((lo, hi),))])) == [did]


def test_consent_withdrawal_and_erasure_leave_the_index(harness):
    a = harness.add(38.44, -122.71)
    b = harness.add(38.4401, -122.7101)
    c = harness.add(38.4402, -122.7102)
    q = query_for(h3i.cell_to_parent(latlng_to_cell(38.44, -122.71, FINEST), 5))
    assert set(found(harness.store, q)) == {a, b, c}
    harness.devices.save_profile(Device(a, "android", "tok", consent={"push": True, "location": False}))
    harness.devices.delete_device(b)
    harness.move(c, None)
    assert found(harness.store, q) == {}
    # consent given again: back in the index at the next location write
    harness.devices.save_profile(Device(a, "android", "tok", consent={"push": True, "location": True}))
    assert found(harness.store, q) == {}
    harness.move(a, LocationState(38.44, -122.71, NOW + 5, latlng_to_cell(38.44, -122.71, FINEST)))
    assert set(found(harness.store, q)) == {a}


def test_a_profile_update_keeps_the_device_indexed(harness):
    a = harness.add(38.44, -122.71)
    harness.devices.save_profile(Device(a, "ios", "tok2", consent={"push": True, "location": True}, push_enabled=False))
    got = found(harness.store, query_for(h3i.cell_to_parent(latlng_to_cell(38.44, -122.71, FINEST), 3)))
    assert list(got) == [a] and got[a].push_enabled is False


def test_overlapping_queries_return_each_device_once_and_are_counted(harness):
    ids = {harness.add(38.44 + i * 1e-3, -122.71) for i in range(5)}
    cell3 = h3i.cell_to_parent(latlng_to_cell(38.44, -122.71, FINEST), 3)
    q0, n0 = harness.store.region_queries_made, harness.store.region_items_read
    got = found(harness.store, query_for(cell3) + query_for(cell3))
    assert set(got) == ids
    assert harness.store.region_queries_made - q0 == 2 * SHARDS
    assert harness.store.region_items_read - n0 == 2 * len(ids)
    assert found(harness.store, []) == {}


def test_many_devices_many_partitions(harness):
    rng = np.random.default_rng(7)
    lats, lngs = rng.uniform(37.0, 40.0, 120), rng.uniform(-123.0, -119.0, 120)
    ids = [harness.add(a, b) for a, b in zip(lats, lngs)]
    # the logical parents (a point's resolution-3 cell is not always its
    # resolution-9 cell's ancestor)
    coarse = np.array(sorted({h3i.cell_to_parent(latlng_to_cell(a, b, FINEST), 3) for a, b in zip(lats, lngs)}), np.uint64)
    plan = plan_queries(Cover(coarse, np.ones(len(coarse), bool)), SHARDS)
    assert sorted(found(harness.store, plan.queries)) == sorted(ids)
    assert len({shard_of(i, SHARDS) for i in ids}) == SHARDS


# ------------------------------------------------------------ plan_targets
def brute_force(h: Harness, area, *, max_age_s, inside_fences) -> list[str]:
    out = []
    oldest = NOW - max_age_s if max_age_s is not None else -math.inf
    for did, (consent, push, state) in h.devices.items():
        if state is None or not (consent.get("push") and consent.get("location") and push):
            continue
        if state.ts < oldest:
            continue
        if inside_fences is not None and not inside_fences & set(state.inside):
            continue
        if shapely.intersects(area, shapely.Point(state.lng, state.lat)):
            out.append(did)
    return sorted(out)


def _on_boundary(poly, k: int, rng: np.random.Generator) -> list[tuple[float, float]]:
    """Vertices and points along the edges (lat, lng)."""
    ring = np.asarray(poly.exterior.coords)
    pts = [(float(y), float(x)) for x, y in ring[:k]]
    for i in range(k):
        j = i % (len(ring) - 1)
        t = float(rng.uniform())
        x, y = ring[j] + t * (ring[j + 1] - ring[j])
        pts.append((float(y), float(x)))
    return pts


def test_plan_targets_equals_brute_force(harness):
    """300 random devices around a random polygon (some exactly on its
    boundary; random consent, push flag, age and fences), every shard used:
    the index path picks exactly what a geometry test of every device picks.
    The store keeps the devices of earlier examples: they count too."""
    examples = 40 if isinstance(harness.store, MemoryDevices) else 5  # moto is slow (~5 s an example)

    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(poly=small_polygons(max_size_deg=0.4), seed=st.integers(0, 2**32 - 1),
           max_age_h=st.sampled_from([None, 24.0]), fences=st.sampled_from([None, {"f1"}, {"f1", "f2"}]),
           boundary=st.sampled_from([(96, 7), (1000, 7), (2000, 9)]))
    def check(poly, seed, max_age_h, fences, boundary):
        check_against_brute_force(harness, poly, seed, max_age_h, fences, *boundary)

    check()
    assert len({shard_of(d, SHARDS) for d in harness.devices}) == SHARDS


def check_against_brute_force(harness, poly, seed, max_age_h, fences, max_boundary, finest):
    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = poly.bounds
    padx, pady = (maxx - minx) * 0.3 + 0.01, (maxy - miny) * 0.3 + 0.01
    n = 300
    pts = list(zip(rng.uniform(miny - pady, maxy + pady, n), rng.uniform(minx - padx, maxx + padx, n)))
    pts[: 2 * 6] = _on_boundary(poly, 6, rng)
    for lat, lng in pts:
        roll = rng.uniform()
        consent = {"push": roll > 0.05, "location": roll < 0.97}
        ts = NOW - float(rng.choice([60.0, 3600.0 * 30]))
        inside = tuple(f for f in ("f1", "f2", "f3") if rng.uniform() < 0.4)
        harness.add(lat, lng, consent=consent, push_enabled=rng.uniform() > 0.05, ts=ts, inside=inside)
    max_age_s = max_age_h * 3600.0 if max_age_h is not None else None
    plan = plan_targets(harness.store, poly, now=NOW, max_age_s=max_age_s, shards=SHARDS,
                        inside_fences=fences, max_boundary=max_boundary, finest=finest)
    want = brute_force(harness, poly, max_age_s=max_age_s, inside_fences=fences)
    assert plan.device_ids == want
    assert set(plan.skipped) == set(SKIP_REASONS)
    assert plan.items_read == len(plan.device_ids) + sum(plan.skipped.values())
    assert plan.exact_tests <= plan.items_read and plan.queries > 0


def test_plan_targets_over_a_state_uses_inside_ranges(harness):
    """A big area: most devices are found through inside ranges (no exact
    test), and the on-boundary one counts as inside."""
    import json
    from pathlib import Path

    feats = json.loads((Path(__file__).resolve().parent.parent / "fixtures" / "us_states.geojson").read_text())["features"]
    kansas = shapely.geometry.shape(next(f for f in feats if f["properties"]["name"] == "Kansas")["geometry"])
    rng = np.random.default_rng(3)
    minx, miny, maxx, maxy = kansas.bounds
    for lat, lng in zip(rng.uniform(miny - 1, maxy + 1, 150), rng.uniform(minx - 1, maxx + 1, 150)):
        harness.add(float(lat), float(lng))
    x, y = np.asarray(kansas.exterior.coords if kansas.geom_type == "Polygon" else kansas.geoms[0].exterior.coords)[0]
    edge = harness.add(float(y), float(x))
    plan = plan_targets(harness.store, kansas, now=NOW, max_age_s=None, shards=SHARDS)
    assert plan.device_ids == brute_force(harness, kansas, max_age_s=None, inside_fences=None)
    assert edge in plan.device_ids
    assert plan.exact_tests < len(plan.device_ids) / 2
    assert plan.skipped["outside"] == plan.items_read - len(plan.device_ids)


def test_plan_targets_of_an_empty_area_reads_nothing(harness):
    harness.add(38.44, -122.71)
    plan = plan_targets(harness.store, shapely.box(10.0, 10.0, 10.001, 10.001), now=NOW, max_age_s=None, shards=SHARDS)
    assert plan.device_ids == [] and plan.items_read == 0


def test_a_state_with_a_coarser_cell_is_filed_under_its_location(harness):
    """States hold the resolution-9 cell of the ping; one that does not
    (older data, other writers) is filed under its lat/lng's cell."""
    did = harness.add(38.44, -122.71, consent={"push": True, "location": False})
    harness.devices.save_profile(Device(did, "android", "tok", consent={"push": True, "location": True}))
    state = LocationState(38.44, -122.71, NOW, h3i.latlng_to_cell(38.44, -122.71, 5), 10.0, {})
    harness.move(did, state)
    cell9 = latlng_to_cell(38.44, -122.71, FINEST)
    assert list(found(harness.store, query_for(h3i.cell_to_parent(cell9, 7)))) == [did]
    area = shapely.box(-122.72, 38.43, -122.70, 38.45)
    assert plan_targets(harness.store, area, now=NOW, max_age_s=None, shards=SHARDS).device_ids == [did]


def test_planning_uses_the_shards_the_store_files_devices_under(harness):
    """A caller configured with another shard count would miss devices:
    the store's own count wins."""
    ids = {harness.add(38.44 + i * 1e-3, -122.71) for i in range(12)}
    area = shapely.box(-122.72, 38.43, -122.70, 38.46)
    plan = plan_targets(harness.store, area, now=NOW, max_age_s=None, shards=SHARDS - 1)
    assert set(plan.device_ids) == ids
