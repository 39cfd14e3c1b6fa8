"""The warm cache of index rows (``IndexCache``) and the ping path through
it: rows are trusted only under the index epoch read before they were
queried, and the ping path answers exactly as without the cache."""

from __future__ import annotations

import dataclasses
import random

import pytest

from chalicelib.ports import IndexEntry
from chalicelib.services.fence_cache import IndexCache, VersionCache
from chalicelib.services.deps import Deps
from chalicelib.services.devices import register_device
from chalicelib.services.geofences import delete_geofence, put_geofence
from chalicelib.services.pings import handle_pings
from chalicelib.store import memory_stores
from tests.conftest import FakeClock

T0 = 1_790_000_000.0
E = IndexEntry(1, True)


def test_rows_are_kept_only_under_the_epoch_read_before_them():
    cache = IndexCache()
    label, cached, missing = cache.split([1, 2], now=0.0)
    assert (label, cached, missing) == (None, {}, [1, 2])
    # Cold: the epoch was read alongside the queries, so nothing is kept.
    assert cache.settle(label, 7, missing, {1: {"f": E}}, now=0.0) is False
    assert cache.split([1, 2], now=0.0) == (7, {}, [1, 2])
    assert cache.settle(7, 7, [1, 2], {1: {"f": E}}, now=0.0) is True
    label, cached, missing = cache.split([1, 2, 3], now=1.0)
    assert label == 7 and dict(cached[1]) == {"f": E} and dict(cached[2]) == {} and missing == [3]
    assert cache.known_alive(["f", "g"]) == {"f": True}
    # A fence changed meanwhile: the rows handed out are not valid and the cache starts over.
    assert cache.settle(7, 8, [3], {3: {"g": E}}, now=2.0) is False
    assert cache.split([1, 2, 3], now=2.0) == (8, {}, [1, 2, 3])
    assert cache.known_alive(["f"]) == {}


def test_old_entries_and_the_least_recently_used_cells_go():
    cache = IndexCache(max_cells=2, max_age_s=60.0)
    cache.settle(None, 1, [], {}, now=0.0)
    cache.settle(1, 1, [1, 2, 3], {}, now=0.0)
    assert cache.split([1, 2, 3], now=1.0)[2] == [1]  # 1 was evicted
    assert cache.split([2], now=61.0) == (None, {}, [2])  # too old: not trusted


def test_fence_existence_is_remembered_per_epoch():
    cache = IndexCache()
    cache.settle(None, 3, [], {}, now=0.0)
    cache.remember_alive(3, {"gone": False})
    cache.remember_alive(2, {"stale": True})  # read under another epoch: not kept
    assert cache.known_alive(["gone", "stale"]) == {"gone": False}


def test_a_zero_sized_cache_keeps_nothing():
    cache = IndexCache(max_cells=0)
    cache.settle(None, 1, [], {}, now=0.0)
    cache.settle(1, 1, [5], {5: {"f": E}}, now=0.0)
    assert cache.split([5], now=0.0)[2] == [5]


# ---------------------------------------------------------------- the ping path
def _deps(settings, index_cache: IndexCache | None, **changes) -> Deps:
    clock = FakeClock(T0 + 100_000)
    return Deps.over(memory_stores(clock=clock, region_shards=4), dataclasses.replace(settings, **changes),
                     clock=clock, cache=VersionCache(), index_cache=index_cache)


def _circle(lng, lat, r, **props):
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lng, lat]}, "properties": {"radius_m": r, **props}}


def test_a_fence_put_or_deleted_while_the_cache_is_warm_is_seen_at_the_next_ping(settings):
    deps = _deps(settings, IndexCache())
    register_device(deps, "d1", {"platform": "ios", "push_token": "t", "consent": {"location": True}})

    def ping(ts, lat=38.44):
        out = handle_pings(deps, {"device_id": "d1", "lat": lat, "lng": -122.70, "timestamp": T0 + ts, "accuracy_m": 5.0})
        return [(e["type"], e["fence_id"]) for e in out["results"][0]["events"]]

    assert ping(0) == [] and ping(10) == []  # the cache holds the ping's cells (no rows)
    put_geofence(deps, "shop", _circle(-122.70, 38.44, 100))
    assert ping(20) == [("enter", "shop")]
    assert ping(30, lat=38.46) == [("exit", "shop")]  # far away: the fence is known to exist
    assert ping(40) == [("enter", "shop")]
    delete_geofence(deps, "shop")
    assert ping(50, lat=38.46) == []  # deleted: the visit ends quietly
    assert deps.devices.get_device("d1", consistent=True).state.inside == {}


FENCES = [
    ("a", _circle(-122.70, 38.44, 150, dwell_minutes=2)),
    ("b", _circle(-122.69, 38.45, 400)),
    ("c", {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[-122.72, 38.43], [-122.68, 38.43], [-122.68, 38.47], [-122.72, 38.47], [-122.72, 38.43]]]}, "properties": {}}),
]


@pytest.mark.parametrize("seed", range(6))
def test_the_cached_path_answers_exactly_as_today(settings, seed):
    """Differential: the same pings (and the same fence changes between
    batches) through today's path — every ladder cell queried, the device
    written on every cell change and every 5 minutes — and through the warm
    cache with the new write policy: identical results, ping by ping."""
    rng = random.Random(seed)
    old = _deps(settings, None, last_seen_refresh_s=300, location_write_res=9)
    # (no age limit: the epoch alone keeps the cache right)
    new = _deps(settings, IndexCache(max_cells=rng.choice([3, 50, 100_000]), max_age_s=1e12))
    devices = [f"d{k}" for k in range(6)]
    for deps in (old, new):
        for fid, f in FENCES[:2]:
            put_geofence(deps, fid, f)
        for d in devices:
            register_device(deps, d, {"platform": "ios", "push_token": "t", "consent": {"location": True}})
    pos = {d: (38.44 + rng.uniform(-0.02, 0.02), -122.70 + rng.uniform(-0.02, 0.02)) for d in devices}
    ts, events = T0, 0
    for batch in range(25):
        if rng.random() < 0.2:  # a fence put, re-put (another shape) or deleted between batches
            fid, f = rng.choice(FENCES)
            if rng.random() < 0.3:
                f = _circle(-122.70 + rng.uniform(-0.01, 0.01), 38.44 + rng.uniform(-0.01, 0.01), rng.choice([80, 300]))
            delete = rng.random() < 0.3
            for deps in (old, new):  # both stores get the same change
                if not delete:
                    put_geofence(deps, fid, f)
                elif deps.fences.get_fence(fid):
                    delete_geofence(deps, fid)
        pings = []
        for _ in range(rng.randint(1, 12)):
            d = rng.choice(devices)
            lat, lng = pos[d]
            if rng.random() < 0.4:
                lat, lng = lat + rng.gauss(0, 0.004), lng + rng.gauss(0, 0.004)
                pos[d] = (lat, lng)
            ts += rng.uniform(1, 90)
            pings.append({"device_id": d, "lat": lat + rng.gauss(0, 0.00005), "lng": lng, "timestamp": ts, "accuracy_m": rng.choice([5.0, 20.0, 80.0])})
        for deps in (old, new):
            deps.clock.now = ts + 1
        got = handle_pings(new, {"pings": pings})
        assert got == handle_pings(old, {"pings": pings}), f"batch {batch}"
        events += sum(len(r["events"]) for r in got["results"])
    assert events > 0 and new.index_cache is not None and new.index_cache.hits > 0 and new.index_cache.resets > 1
