"""(f) Storm planning: "who is inside this ~200,000 km² alert right now",
through the device region index (:mod:`chalicelib.weather.targets`).

* In memory — 1,000,000 devices (200,000 with ``--quick``) spread over the
  US around the 1,000 largest cities in proportion to population
  (``tests/fixtures/us_cities_top_1k.csv``), in an ``InMemoryStore``:
  ``plan_targets`` + chunking the ids into fan-out messages of 100, beside
  a brute-force pass over every device (consent/age filters in Python, one
  vectorised prepared ``intersects_xy`` over all remaining points). The two
  target lists are asserted equal. Target: ≥ 100,000 targeted devices per
  CPU-second (≤ 10 µs each), at full size.
* DynamoDB — the same storm against the ``by_region`` GSI on moto with
  20,000 devices (4,000 with ``--quick``; moto's GSI ``Query`` walks the
  whole table): Queries, items and read units (:mod:`benchmarks.meter`)
  beside the baseline's parallel ``Scan`` (``scan_locations``), items per
  device of the population, and both extrapolated to 1,000,000 devices:
  the Queries do not depend on the device count, items and the Scan grow
  in proportion. The two target lists are asserted equal.

Devices: push consent 95%, location consent 92%, push enabled 97%, last
location within 24 h for 75% (else 1-30 days old). The storm: an ellipse of
~200,000 km² (600 × 425 km, tilted 25°) over Kansas and Oklahoma, targets
within 24 h.
"""

from __future__ import annotations

import gc
import math
import statistics
import time

import numpy as np
import shapely

from benchmarks import data
from benchmarks.report import Figure

NOW = 1_790_000_000.0
MAX_AGE_S = 24 * 3600.0
SHARDS = 4
CHUNK = 100
#: What the by_region index holds of a device: keys + the projection.
PROJECTED = {"device_id", "rc", "rf", "st", "consent", "push_enabled", "sv"}


def storm_polygon(lat0: float = 36.6, lng0: float = -98.2, a_km: float = 300.0, b_km: float = 212.0, tilt_deg: float = 25.0):
    """A tilted ellipse (lng/lat), 128 vertices."""
    t = np.linspace(0, 2 * math.pi, 128, endpoint=False)
    x, y = a_km * np.cos(t), b_km * np.sin(t)
    c, s = math.cos(math.radians(tilt_deg)), math.sin(math.radians(tilt_deg))
    xr, yr = x * c - y * s, x * s + y * c
    lats, lngs = data.offset(np.full(len(t), lat0), np.full(len(t), lng0), xr * 1000.0, yr * 1000.0)
    return shapely.Polygon(np.column_stack([lngs, lats]))


def population(n: int, seed: int):
    """Device ids, positions, resolution-9 cells, consent, push flags and
    location times (arrays)."""
    from chalicelib.geo.cells import latlngs_to_cells

    rng = np.random.default_rng(seed)
    lats, lngs = data.near_cities(rng, n)
    cells = latlngs_to_cells(lats, lngs)
    push = rng.uniform(size=n) < 0.95
    loc = rng.uniform(size=n) < 0.92
    enabled = rng.uniform(size=n) < 0.97
    fresh = rng.uniform(size=n) < 0.75
    age = np.where(fresh, rng.uniform(0, 24 * 3600.0, n), rng.uniform(1, 30, n) * 86400.0)
    ids = [f"dev-{i:07d}" for i in range(n)]
    return ids, lats, lngs, cells, push, loc, enabled, NOW - age


def chunked(ids: list[str]) -> list[list[str]]:
    return [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]


def brute_force(devices, area) -> list[str]:
    """Every device: filters, then one vectorised exact test."""
    oldest = NOW - MAX_AGE_S
    ids, lats, lngs = [], [], []
    for d in devices:
        st = d.state
        if st is None or st.ts < oldest or not d.push_enabled:
            continue
        if not (d.consent.get("push") and d.consent.get("location")):
            continue
        ids.append(d.device_id)
        lats.append(st.lat)
        lngs.append(st.lng)
    shapely.prepare(area)
    keep = shapely.intersects_xy(area, np.asarray(lngs), np.asarray(lats))
    return sorted(i for i, k in zip(ids, keep.tolist()) if k)


def _timed(fn, repeat: int):
    wall, cpu, out = [], [], None
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), out


# ------------------------------------------------------------ in memory
def run_memory(quick: bool, storm) -> list[Figure]:
    from chalicelib.presence import LocationState
    from chalicelib.store.memory import InMemoryStore
    from chalicelib.ports import Device
    from chalicelib.weather.targets import plan_targets

    n = 200_000 if quick else 1_000_000
    repeat = 3 if quick else 5
    ids, lats, lngs, cells, push, loc, enabled, ts = population(n, seed=20261123)
    store = InMemoryStore(region_shards=SHARDS)
    t0 = time.perf_counter()
    for i, did in enumerate(ids):
        consent = {"push": bool(push[i]), "location": bool(loc[i])}
        store.save_profile(Device(did, "android", "bench-token", consent=consent, push_enabled=bool(enabled[i])))
        if loc[i]:
            state = LocationState(float(lats[i]), float(lngs[i]), float(ts[i]), int(cells[i]), 15.0, {})
            store.save_state(did, 0, state, float(ts[i]))
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    list(store.devices_in_ranges([]))  # the lazy index build after the writes
    t_index = time.perf_counter() - t0
    # A million stored devices are ~10M long-lived objects: keep the cyclic
    # GC from rescanning them during the timings (a Lambda holds none).
    gc.collect()
    gc.freeze()

    def ours():
        plan = plan_targets(store, storm, now=NOW, max_age_s=MAX_AGE_S, shards=SHARDS)
        return plan, chunked(plan.device_ids)

    def baseline():
        return chunked(brute_force(store.devices.values(), storm))

    try:
        wall, cpu, (plan, chunks) = _timed(ours, repeat)
        b_wall, b_cpu, b_chunks = _timed(baseline, repeat)
    finally:
        gc.unfreeze()
    if chunks != b_chunks:
        raise AssertionError(f"index path and brute force disagree: {len(plan.device_ids)} vs {sum(map(len, b_chunks))} targets")
    targets = len(plan.device_ids)
    per_dev = cpu / max(targets, 1) * 1e6
    b_per_dev = b_cpu / max(targets, 1) * 1e6
    skipped = ", ".join(f"{k} {v:,}" for k, v in plan.skipped.items())
    note = (
        f"{n:,} devices, {targets:,} targets in {len(chunks):,} chunks of {CHUNK}; index read {plan.items_read:,} devices "
        f"({plan.items_read / n:.2%} of all) in {plan.queries:,} range reads, {plan.exact_tests:,} exact tests; skipped: {skipped}. "
        f"Ours {wall * 1000:.0f} ms wall / {cpu * 1000:.0f} ms CPU = {targets / max(cpu, 1e-9):,.0f} targets and "
        f"{n / max(cpu, 1e-9):,.0f} devices of the population per CPU-second (median of {repeat}); brute force {b_wall * 1000:.0f} ms. "
        f"Setup, not timed: loading {t_load:.1f} s, lazy index build {t_index * 1000:.0f} ms"
    )
    return [
        Figure("f", f"storm plan over {n:,} devices, in memory", wall, "brute-force shapely pass", b_wall, unit="s"),
        Figure("f", "CPU per targeted device (select + chunk)", per_dev, "brute force", b_per_dev, unit="µs",
               target_max=None if quick else 10.0, note=note),
    ]


# ------------------------------------------------------------ DynamoDB (moto)
def device_item(did: str, consent: dict, enabled: bool, state, created: str) -> dict:
    """The devices-table item ``save_profile`` + one ``save_state`` leave
    (checked against the real calls in :func:`run_dynamo`)."""
    import json

    from chalicelib.weather.region import region_keys

    item = {
        "device_id": {"S": did},
        "platform": {"S": "android"},
        "push_token": {"S": "bench-token"},
        "attrs": {"S": "{}"},
        "consent": {"M": {k: {"BOOL": v} for k, v in consent.items()}},
        "push_enabled": {"BOOL": enabled},
        "updated_at": {"S": created},
        "created_at": {"S": created},
        "sv": {"N": "1"},
    }
    if state is not None:
        rc, rf = region_keys(did, state.cell, SHARDS)
        item.update({
            "st": {"S": json.dumps(state.to_json(), separators=(",", ":"))},
            "wa": {"N": str(round(state.ts, 3))},
            "rc": {"S": rc},
            "rf": {"S": rf},
        })
    return item


def _norm(item: dict) -> dict:
    out = dict(item)
    if "wa" in out:
        out["wa"] = {"N": str(float(out["wa"]["N"]))}
    return out


def run_dynamo(quick: bool, storm) -> list[Figure]:
    from benchmarks.ping_cost import moto_env
    from benchmarks.meter import item_size, waves
    from chalicelib.presence import LocationState
    from chalicelib.ports import Device
    from chalicelib.weather.targets import plan_targets

    n = 4_000 if quick else 20_000
    ids, lats, lngs, cells, push, loc, enabled, ts = population(n, seed=20261124)
    figures = []
    with moto_env() as env:
        store = env.deps.store
        table = env.settings.devices_table
        assert store.region_shards == SHARDS
        states = [
            LocationState(float(lats[i]), float(lngs[i]), float(ts[i]), int(cells[i]), 15.0, {}) if loc[i] else None
            for i in range(n)
        ]
        consents = [{"push": bool(push[i]), "location": bool(loc[i])} for i in range(n)]
        # The builder equals what the store writes (first 20 devices, real calls).
        for i in range(20):
            store.save_profile(Device(ids[i], "android", "bench-token", consent=consents[i], push_enabled=bool(enabled[i]),
                                      created_at="2026-11-23T00:00:00Z", updated_at="2026-11-23T00:00:00Z"))
            if states[i] is not None:
                store.save_state(ids[i], 0, states[i], states[i].ts)
            got = env.peek.get_item(TableName=table, Key={"device_id": {"S": ids[i]}})["Item"]
            want = device_item(ids[i], consents[i], bool(enabled[i]), states[i], "2026-11-23T00:00:00Z")
            if states[i] is None:
                want["sv"] = {"N": "1"}
            if _norm(got) != _norm(want):
                raise AssertionError(f"seed item differs from the store's: {got} vs {want}")
        t0 = time.perf_counter()
        puts = [
            {"PutRequest": {"Item": device_item(ids[i], consents[i], bool(enabled[i]), states[i], "2026-11-23T00:00:00Z")}}
            for i in range(20, n)
        ]
        for k in range(0, len(puts), 25):
            env.peek.batch_write_item(RequestItems={table: puts[k : k + 25]})
        t_seed = time.perf_counter() - t0

        env.meter.take()
        env.meter.counting = True
        q0, i0 = store.region_queries_made, store.region_items_read
        t0 = time.perf_counter()
        plan = plan_targets(store, storm, now=NOW, max_age_s=MAX_AGE_S, shards=SHARDS)
        t_ours = time.perf_counter() - t0
        calls = env.meter.take()
        t0 = time.perf_counter()
        b_targets = brute_force(store.scan_locations(segments=4), storm)
        t_scan = time.perf_counter() - t0
        b_calls = env.meter.take()
        env.meter.counting = False
    if plan.device_ids != b_targets:
        raise AssertionError(f"index path and scan disagree: {len(plan.device_ids)} vs {len(b_targets)} targets")
    located = sum(1 for st in states if st is not None)
    queries = sum(c.op == "Query" for c in calls)
    pages = store.region_queries_made - q0
    items = store.region_items_read - i0
    rru = sum(c.rru for c in calls)
    b_rru = sum(c.rru for c in b_calls)
    scans = sum(c.op == "Scan" for c in b_calls)
    # Extrapolated to 1,000,000 devices of the same model: the plan (and so
    # the Queries) does not change, items grow in proportion; a Query costs
    # 0.5 unit per 4 KB read (at least 0.5), a Scan's units grow linearly.
    scale = 1_000_000 / n
    size = statistics.mean(item_size({k: v for k, v in device_item(ids[i], consents[i], True, states[i], "x").items()
                                       if k in PROJECTED}) for i in range(n) if states[i] is not None)
    rru_1m = queries * 0.5 + items * scale * size / 4096 * 0.5
    # A Scan page holds 1 MB of whole items (its filter applies after the read).
    full = statistics.mean(item_size(device_item(ids[i], consents[i], True, states[i], "2026-11-23T00:00:00Z"))
                           for i in range(0, n, 10))
    scan_pages_1m = math.ceil(1_000_000 * full / 2**20)
    note = (
        f"{n:,} devices ({located:,} with a location), {len(plan.device_ids):,} targets; ours: {queries:,} Queries "
        f"({pages:,} pages) on by_region in {waves(calls)} wave(s), {items:,} items ({items / n:.2%} of the devices, "
        f"{size:.0f} bytes each as projected), {rru:.0f} read units, {t_ours:.1f} s with 10 ms simulated latency per "
        f"call and {store.pool._max_workers} in flight; baseline: parallel Scan (4 segments), {scans} pages, {located:,} items, "
        f"{b_rru:.0f} read units, {t_scan:.1f} s. At 1,000,000 devices (same model): the same {queries:,} Queries and "
        f"≈{items * scale:,.0f} items ≈ {rru_1m:,.0f} read units, against a Scan of ≈{b_rru * scale:,.0f} units "
        f"(counted on the items it returns: a lower bound) in ≈{scan_pages_1m:,} pages of 1 MB ({full:.0f}-byte items). Seeding (BatchWriteItem, not timed): {t_seed:.1f} s"
    )
    return [
        Figure("f", f"DynamoDB ({n:,} devices): items read per device", items / n, "full Scan", located / n),
        Figure("f", "DynamoDB calls per storm at 1M devices (extrapolated)", float(queries), "full Scan pages", float(scan_pages_1m)),
        Figure("f", "read units per storm at 1M devices (extrapolated)", rru_1m, "full Scan", b_rru * scale, note=note),
    ]


def run(quick: bool) -> list[Figure]:
    from chalicelib.geo.cells import coarse_cells
    from chalicelib.geo.sphere import geometry_area_km2

    storm = storm_polygon()
    coarse_cells()  # built once per process (~0.3 s), as in a warm Lambda
    print(f"    storm: {geometry_area_km2(storm):,.0f} km²", flush=True)
    return run_memory(quick, storm) + run_dynamo(quick, storm)
