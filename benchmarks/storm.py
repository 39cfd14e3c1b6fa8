"""(f) Storm planning: "who is inside this ~200,000 km² alert right now",
through the device region index (:mod:`chalicelib.weather.targets`).

* In memory — 1,000,000 devices (200,000 with ``--quick``) spread over the
  US around the 1,000 largest cities in proportion to population
  (``tests/fixtures/us_cities_top_1k.csv``), in the in-memory device
  repository (``memory_stores(...).devices``):
  ``plan_targets`` + chunking the ids into fan-out messages of 100, beside
  two brute forces over every device: the one a competitor would write
  (:func:`numpy_brute_force`: the devices as columns of numpy arrays, the
  consent/age filters as boolean masks, the area's bounding box, then one
  prepared ``intersects_xy``), and a Python loop over the repository's
  stored devices (:func:`brute_force`) with the same exact test. The three
  target lists are asserted equal. Target: ≥ 100,000 targeted devices per
  CPU-second (≤ 10 µs each), at full size. Median of 5 runs (3 with
  ``--quick``) with min–max.
* DynamoDB — the same storm against the ``by_region`` GSI on moto with
  20,000 devices (4,000 with ``--quick``; moto's GSI ``Query`` walks the
  whole table): Queries, items and read units (:mod:`benchmarks.meter`)
  beside the baseline's parallel ``Scan`` (:func:`scan_located`), items per
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

from dataclasses import dataclass

import numpy as np
import shapely

from benchmarks import data
from benchmarks.report import Figure, interleaved

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


@dataclass
class Columns:
    """The devices as a competitor's in-memory table holds them: one numpy
    array per attribute (location fields NaN / -inf where there is none)."""

    ids: np.ndarray  # str, sorted
    lat: np.ndarray
    lng: np.ndarray
    ts: np.ndarray
    ok: np.ndarray  # push consent & location consent & push enabled


def columns(ids: list[str], lats, lngs, push, loc, enabled, ts) -> Columns:
    order = np.argsort(np.asarray(ids))
    located = np.asarray(loc, bool)
    return Columns(
        np.asarray(ids)[order],
        np.where(located, lats, np.nan)[order],
        np.where(located, lngs, np.nan)[order],
        np.where(located, ts, -np.inf)[order],
        (np.asarray(push, bool) & located & np.asarray(enabled, bool))[order],
    )


def numpy_brute_force(cols: Columns, area) -> list[str]:
    """Every device: masks for consent, push and age, the area's bounding
    box, then one prepared exact test of what is left (sorted ids)."""
    minx, miny, maxx, maxy = area.bounds
    lat, lng = cols.lat, cols.lng
    cand = np.flatnonzero(cols.ok & (cols.ts >= NOW - MAX_AGE_S) & (lat >= miny) & (lat <= maxy) & (lng >= minx) & (lng <= maxx))
    shapely.prepare(area)
    keep = shapely.intersects_xy(area, lng[cand], lat[cand])
    return cols.ids[cand[keep]].tolist()


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


#: What the baseline's Scan projects: the attributes a whole Device is built from.
DEVICE_ATTRS = (
    "device_id", "platform", "push_token", "user_id", "attrs", "consent", "push_enabled",
    "created_at", "updated_at", "st", "sv", "wa", "endpoint_arn",
)


def scan_located(devices, segments: int = 4):
    """The baseline without an index: a parallel ``Scan`` of the devices
    table (one segment per thread of the repository's pool) for the devices
    with a location state, projecting what a Device is built from.
    ``devices``: the DynamoDB device repository (its table's client and pool)."""
    from chalicelib.store.devices import device_from_item

    table = devices.table
    names = {f"#a{i}": a for i, a in enumerate(DEVICE_ATTRS)}
    state = f"#a{DEVICE_ATTRS.index('st')}"

    def run(segment: int) -> list[dict]:
        return list(table.items("scan", ProjectionExpression=", ".join(names), FilterExpression=f"attribute_exists({state})",
                                ExpressionAttributeNames=names, Segment=segment, TotalSegments=segments))

    futures = [table.pool.submit(run, seg) for seg in range(segments)]
    for f in futures:
        for item in f.result():
            yield device_from_item(item)


# ------------------------------------------------------------ in memory
def run_memory(quick: bool, storm) -> list[Figure]:
    from chalicelib.presence import LocationState
    from chalicelib.ports import Device
    from chalicelib.store import memory_stores
    from chalicelib.weather.targets import plan_area, plan_targets

    n = 200_000 if quick else 1_000_000
    repeat = 3 if quick else 5
    ids, lats, lngs, cells, push, loc, enabled, ts = population(n, seed=20261123)
    store = memory_stores(clock=lambda: NOW, region_shards=SHARDS).devices
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

    cols = columns(ids, lats, lngs, push, loc, enabled, ts)

    def ours():
        plan = plan_targets(store, storm, now=NOW, max_age_s=MAX_AGE_S, shards=SHARDS)
        return plan, chunked(plan.device_ids)

    def numpy_baseline():
        return chunked(numpy_brute_force(cols, storm))

    def loop_baseline():
        return chunked(brute_force(store.devices.values(), storm))  # the twin's every stored device

    def cover_only():  # the part of ours that does not depend on the devices
        return plan_area(storm, shards=SHARDS)

    try:
        got = interleaved({"ours": ours, "cover": cover_only, "numpy": numpy_baseline, "loop": loop_baseline}, repeat)
    finally:
        gc.unfreeze()
    plan, chunks = got["ours"].result
    for name in ("numpy", "loop"):
        if got[name].result != chunks:
            raise AssertionError(f"index path and {name} brute force disagree: {len(plan.device_ids)} vs "
                                 f"{sum(map(len, got[name].result))} targets")
    targets = len(plan.device_ids)
    ours_t, np_t, loop_t = got["ours"], got["numpy"], got["loop"]
    per_dev = {k: t.cpu.scaled(1e6 / max(targets, 1)) for k, t in got.items()}
    cover_t = got["cover"]
    skipped = ", ".join(f"{k} {v:,}" for k, v in plan.skipped.items())
    cpu = ours_t.cpu.median
    note = (
        f"{n:,} devices, {targets:,} targets in {len(chunks):,} chunks of {CHUNK}; index read {plan.items_read:,} devices "
        f"({plan.items_read / n:.2%} of all) in {plan.queries:,} range reads, {plan.exact_tests:,} exact tests; skipped: {skipped}. "
        f"Ours {ours_t.wall.text('s')} wall / {ours_t.cpu.text('s')} CPU = {targets / max(cpu, 1e-9):,.0f} targets and "
        f"{n / max(cpu, 1e-9):,.0f} devices of the population per CPU-second, of which covering the area and planning its ranges (independent of the device count) {cover_t.cpu.text('s')} CPU; numpy brute force {np_t.wall.text('s')} wall; "
        f"Python-loop brute force {loop_t.wall.text('s')}; the three interleaved, and identical. "
        f"Setup, not timed: loading {t_load:.1f} s, lazy index build {t_index * 1000:.0f} ms"
    )
    return [
        Figure("f", f"storm plan over {n:,} devices, in memory", ours_t.wall.median, "numpy brute force over columns", np_t.wall.median,
               unit="s", spread=ours_t.wall.spread, baseline_spread=np_t.wall.spread),
        Figure("f", f"storm plan over {n:,} devices, in memory", ours_t.wall.median, "Python loop over stored devices + shapely",
               loop_t.wall.median, unit="s", spread=ours_t.wall.spread, baseline_spread=loop_t.wall.spread),
        Figure("f", "CPU per targeted device (select + chunk)", per_dev["ours"].median, "numpy brute force", per_dev["numpy"].median,
               unit="µs", target_max=10.0, spread=per_dev["ours"].spread, baseline_spread=per_dev["numpy"].spread, note=note),
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
        store = env.deps.devices
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
        b_targets = brute_force(scan_located(store, segments=4), storm)
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
        f"call and {store.table.pool._max_workers} in flight; baseline: parallel Scan (4 segments), {scans} pages, {located:,} items, "
        f"{b_rru:.0f} read units, {t_scan:.1f} s. At 1,000,000 devices (same model): the same {queries:,} Queries and "
        f"≈{items * scale:,.0f} items ≈ {rru_1m:,.0f} read units, against a Scan of ≈{b_rru * scale:,.0f} units "
        f"(counted on the items it returns: a lower bound) in ≈{scan_pages_1m:,} pages of 1 MB ({full:.0f}-byte items). Seeding (BatchWriteItem, not timed): {t_seed:.1f} s"
    )
    return [
        Figure("f", "DynamoDB read units per storm at 1M devices (extrapolated)", rru_1m, "full Scan", b_rru * scale, note=note),
        Figure("f", f"DynamoDB ({n:,} devices): items read per device", items / n, "full Scan", located / n),
        Figure("f", "DynamoDB calls per storm at 1M devices (extrapolated)", float(queries), "full Scan pages", float(scan_pages_1m)),
    ]


def run(quick: bool) -> list[Figure]:
    from chalicelib.geo.cells import coarse_cells
    from chalicelib.geo.sphere import geometry_area_km2

    storm = storm_polygon()
    coarse_cells()  # built once per process (~0.3 s), as in a warm Lambda
    print(f"    storm: {geometry_area_km2(storm):,.0f} km²", flush=True)
    memory = run_memory(quick, storm)
    return run_dynamo(quick, storm) + memory  # the read units first: the index's real win
