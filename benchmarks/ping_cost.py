"""(b) DynamoDB cost of pings, and (c)'s in-process baseline: the real
``DynamoStore`` and ``services.pings.handle_pings`` on moto (``mock_aws``), with
every DynamoDB call metered (:mod:`benchmarks.meter`).

Scenarios:

* GPX replay — the Santa Rosa marathon trace (9,890 points, one device) in
  batches of 100 consecutive points; fences: all counties + circles on the
  route.
* A synthetic city — 10,000 devices around one city, each pinging every
  5 minutes (± 15 s), mixed into batches of 100 in arrival order. Each
  5-minute step a device stays put with probability 0.8 (only GPS noise,
  σ = accuracy / 2, accuracy log-normal around 15 m) or travels (distance
  log-normal around 1 km, or home). Fences: all counties + the city's share
  of the realistic fences of (a). Batches until every device has pinged
  once (cold state and cache) are a warm-up, not counted. A what-if runs
  the same model for 1,000 devices over 2 hours with a 30-minute last-seen
  refresh.

moto runs in process with ``tools.moto_speedups`` (Query reads one
partition; same results) and 10 ms of simulated latency per counted call,
so calls issued together overlap and sequential waves can be counted.

Baseline, from the same pings and the same item sizes: a naive design that
reads the device (GetItem), reads one item per ladder cell (GetItem of an
item holding that cell's fences), and writes the device on every ping.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from benchmarks import data
from benchmarks.meter import Meter, MotoCpu, item_size, read_units, waves, write_units
from benchmarks.report import Figure

#: AWS list prices, us-east-1 (on-demand DynamoDB; Lambda x86).
PRICES = {
    "dynamodb_write_per_million_wru": 0.625,
    "dynamodb_read_per_million_rru": 0.125,
    "lambda_per_million_requests": 0.20,
    "lambda_per_gb_second": 0.0000166667,
    "lambda_memory_gb": 0.5,
}
BATCH = 100
POOL_WIDTH = 16  # threads of DynamoStore's pool: calls in flight at once
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class SimClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    deps: object
    meter: Meter
    moto_cpu: MotoCpu
    clock: SimClock
    peek: object
    settings: object


@contextmanager
def moto_env():
    """moto in-process with hexcast's tables, a metered client and Deps
    built as ``chalicelib.container.build_deps`` does."""
    import boto3
    from botocore.config import Config
    from moto import mock_aws

    from chalicelib.cache import VersionCache
    from chalicelib.services.deps import Deps
    from chalicelib.settings import Settings
    from chalicelib.store.dynamo import DynamoStore
    from chalicelib.store.schema import create_tables
    from tools.moto_speedups import apply as speed_up_moto

    speed_up_moto()  # moto's Query sorts the whole table per call otherwise (same results)

    saved = {k: os.environ.get(k) for k in [*FAKE_AWS, "AWS_ENDPOINT_URL", "AWS_PROFILE"]}
    os.environ.update(FAKE_AWS)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.pop("AWS_PROFILE", None)
    try:
        with mock_aws():
            settings = Settings(stage="bench")
            config = Config(retries={"max_attempts": 8, "mode": "adaptive"}, max_pool_connections=32)
            client = boto3.client("dynamodb", config=config)
            peek = boto3.client("dynamodb")
            create_tables(peek, settings)
            meter = Meter(client, peek, classify=_device_write_cause(settings.devices_table)).install()
            clock = SimClock(1_472_389_000.0)
            pool = ThreadPoolExecutor(max_workers=POOL_WIDTH, thread_name_prefix="hexcast-io")
            deps = Deps(
                store=DynamoStore(client, settings),
                settings=settings,
                clock=clock,
                cache=VersionCache(settings.geometry_cache_size),
                pool=pool,
            )
            cpu = MotoCpu(meter)
            with cpu.patched():
                yield Env(deps, meter, cpu, clock, peek, settings)
            pool.shutdown()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def import_features(env: Env, features: list[dict], chunk: int = 500) -> float:
    """``services.geofences.import_geofences`` in chunks; returns seconds."""
    from chalicelib.services.geofences import import_geofences

    t0 = time.perf_counter()
    for i in range(0, len(features), chunk):
        out = import_geofences(env.deps, {"type": "FeatureCollection", "features": features[i : i + chunk]})
        if out["rejected"]:
            raise RuntimeError(f"import rejected {out['rejected'][:3]}")
    return time.perf_counter() - t0


def register(env: Env, device_ids) -> None:
    from chalicelib.services.devices import register_device

    body = {"platform": "android", "push_token": "bench-token", "consent": {"push": True, "location": True}}
    list(env.deps.pool.map(lambda d: register_device(env.deps, d, body), device_ids))


# ------------------------------------------------------------ replay
@dataclass
class Replay:
    pings: int = 0
    batches: int = 0
    rru: float = 0.0
    wru: float = 0.0
    waves: list[int] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    widest: list[int] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    events: int = 0
    ladder_cells: list[list[int]] = field(default_factory=list)
    write_causes: Counter = field(default_factory=Counter)
    #: batch reads of the geofences table beyond the first wave:
    #: G = fence versions (cache misses), META = do left fences still exist
    second_reads: Counter = field(default_factory=Counter)
    #: per batch, distinct cells queried at each ladder level
    distinct: list[list[int]] = field(default_factory=list)
    device_ids: set = field(default_factory=set)


def replay(env: Env, batches: list[list[dict]], *, count: bool = True, out: Replay | None = None) -> Replay:
    from chalicelib.services.pings import handle_pings
    from chalicelib.geo.cells import ladder_ancestors, latlng_to_cell

    out = out or Replay()
    t_start = time.perf_counter()
    for k, batch in enumerate(batches):
        if k and k % 250 == 0:
            print(f"    ... {k:,}/{len(batches):,} batches, {time.perf_counter() - t_start:.0f} s", file=sys.stderr, flush=True)
        env.clock.now = max(p["timestamp"] for p in batch) + 1.0
        env.meter.counting = count
        env.meter.take()
        moto0, hook0 = env.moto_cpu.seconds, env.meter.hook_cpu
        cpu0 = time.process_time()
        body = handle_pings(env.deps, {"pings": batch})
        cpu = time.process_time() - cpu0 - (env.moto_cpu.seconds - moto0) - (env.meter.hook_cpu - hook0)
        env.meter.counting = False
        calls = env.meter.take()
        if not all(r["accepted"] for r in body["results"]):
            bad = [r for r in body["results"] if not r["accepted"]][:3]
            raise RuntimeError(f"pings were not accepted: {bad}")
        if not count:
            continue
        out.pings += len(batch)
        out.batches += 1
        out.rru += sum(c.rru for c in calls)
        out.wru += sum(c.wru for c in calls)
        out.waves.append(waves(calls))
        out.calls.append(len(calls))
        out.widest.append(_widest_wave(calls))
        out.cpu_s.append(cpu)
        out.events += sum(len(r["events"]) for r in body["results"])
        out.write_causes.update(c.detail for c in calls if c.op == "UpdateItem")
        out.second_reads.update({c.detail for c in calls if c.op == "BatchGetItem" and c.detail})
        ladders = [ladder_ancestors(latlng_to_cell(p["lat"], p["lng"])) for p in batch]
        out.ladder_cells += ladders
        out.distinct.append([len({lad[k] for lad in ladders}) for k in range(len(ladders[0]))])
        out.device_ids.update(p["device_id"] for p in batch)
    return out


def _device_write_cause(devices_table: str):
    """Why a device item was written: ``visits`` (the fences it is in or a
    visit's dwell changed), ``cell`` (only the location cell), ``refresh``
    (only the last-seen time)."""

    def classify(table, old, new) -> str:
        if table != devices_table:
            return ""
        so = json.loads(old["st"]["S"]) if old and "st" in old else None
        sn = json.loads(new["st"]["S"]) if new and "st" in new else None
        if so is None or sn is None or so.get("in") != sn.get("in"):
            return "visits"
        return "cell" if so.get("cell") != sn.get("cell") else "refresh"

    return classify


def _widest_wave(calls) -> int:
    spans = sorted(calls, key=lambda c: c.start)
    widest, current, end = 0, 0, -math.inf
    for c in spans:
        if c.start > end:
            current = 0
        current += 1
        end = max(end, c.end) if current > 1 else c.end
        widest = max(widest, current)
    return widest


# ------------------------------------------------------------ costing
def naive_cell_sizes(env: Env) -> dict[int, int]:
    """Size of a one-item-per-cell row holding all the cell's fences
    (``{cell, fences: {fid: {v, i}}}``), from the real index rows."""
    from chalicelib.geo.cells import str_cell

    rows: dict[str, dict] = defaultdict(dict)
    kwargs = {"TableName": env.settings.cells_table}
    while True:
        resp = env.peek.scan(**kwargs)
        for it in resp["Items"]:
            rows[it["cell"]["S"]][it["fid"]["S"]] = {"M": {"v": it["v"], "i": it["i"]}}
        if "LastEvaluatedKey" not in resp:
            break
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
    return {str_cell(c): item_size({"cell": {"S": c}, "fences": {"M": f}}) for c, f in rows.items()}


def naive_units(env: Env, r: Replay, cell_sizes: dict[int, int]) -> tuple[float, float]:
    """(read units, write units) of the naive design for the same pings."""
    dev_size = {}
    for d in r.device_ids:
        item = env.peek.get_item(TableName=env.settings.devices_table, Key={"device_id": {"S": d}})["Item"]
        dev_size[d] = item_size(item)
    mean_dev = statistics.mean(dev_size.values())
    rru = wru = 0.0
    for cells in r.ladder_cells:
        rru += read_units(mean_dev, False) + sum(read_units(cell_sizes.get(c, 0), False) for c in cells)
        wru += write_units(mean_dev)
    return rru, wru


def lambda_cost_per_ping(cpu_s_per_batch: float, batch: int = BATCH) -> float:
    per_invocation = PRICES["lambda_per_million_requests"] / 1e6 + cpu_s_per_batch * PRICES["lambda_memory_gb"] * PRICES["lambda_per_gb_second"]
    return per_invocation / batch


def dynamo_cost_per_ping(rru: float, wru: float) -> float:
    return rru * PRICES["dynamodb_read_per_million_rru"] / 1e6 + wru * PRICES["dynamodb_write_per_million_wru"] / 1e6


# ------------------------------------------------------------ scenarios
def gpx_batches(device_id: str) -> tuple[list[list[dict]], list[dict]]:
    lats, lngs, ts = data.gpx_points()
    pings = [
        {"device_id": device_id, "lat": float(a), "lng": float(b), "timestamp": float(t), "accuracy_m": 10.0}
        for a, b, t in zip(lats, lngs, ts)
    ]
    n = len(lats)
    fences = []
    for k, frac in enumerate((0.05, 0.25, 0.45, 0.65, 0.85)):
        i = int(frac * (n - 1))
        props = {"name": f"route {k}", "tags": ["route"], "radius_m": 150.0, "dwell_minutes": 2}
        fences.append(
            {"type": "Feature", "id": f"route-{k}", "geometry": {"type": "Point", "coordinates": [float(lngs[i]), float(lats[i])]}, "properties": props}
        )
    return [pings[i : i + BATCH] for i in range(0, n, BATCH)], fences


def city_batches(city: data.City, n_devices: int, hours: float, seed: int = 5, prefix: str = "") -> list[list[dict]]:
    rng = np.random.default_rng(seed)
    home_lat, home_lng = data.near_cities(rng, n_devices, (city,))
    lat, lng = home_lat.copy(), home_lng.copy()
    phase = rng.uniform(0, 300, n_devices)
    t0 = 1_790_000_000.0
    ids = [f"{prefix}city-{i:05d}" for i in range(n_devices)]
    pings = []
    for k in range(int(hours * 12)):
        if k:
            moving = rng.random(n_devices) < 0.2
            home = rng.random(n_devices) < 0.3
            dist = np.minimum(rng.lognormal(math.log(1000.0), 1.0, n_devices), 15_000.0)
            bearing = rng.uniform(0, 2 * math.pi, n_devices)
            nlat, nlng = data.offset(lat, lng, dist * np.sin(bearing), dist * np.cos(bearing))
            nlat = np.where(home, home_lat, nlat)
            nlng = np.where(home, home_lng, nlng)
            lat, lng = np.where(moving, nlat, lat), np.where(moving, nlng, lng)
        acc = np.clip(rng.lognormal(math.log(15.0), 0.6, n_devices), 3.0, 150.0)
        rlat, rlng = data.offset(lat, lng, rng.normal(0, 1, n_devices) * acc / 2, rng.normal(0, 1, n_devices) * acc / 2)
        ts = t0 + phase + 300.0 * k + rng.uniform(-15, 15, n_devices)
        pings += [
            {"device_id": ids[i], "lat": float(rlat[i]), "lng": float(rlng[i]), "timestamp": round(float(ts[i]), 3), "accuracy_m": round(float(acc[i]), 1)}
            for i in range(n_devices)
        ]
    pings.sort(key=lambda p: p["timestamp"])
    return [pings[i : i + BATCH] for i in range(0, len(pings), BATCH)]


def _warm_up_batches(batches: list[list[dict]]) -> int:
    everyone = {p["device_id"] for b in batches for p in b}
    seen: set[str] = set()
    for i, b in enumerate(batches):
        seen.update(p["device_id"] for p in b)
        if seen == everyone:
            return i + 1
    return len(batches)


@dataclass
class Outcome:
    figures: list[Figure]
    import_moto_s: float
    import_n: int
    details: dict


def run(quick: bool, city_name: str = "Chicago") -> Outcome:
    from chalicelib.geo.cells import LADDER
    from chalicelib.settings import Settings

    counties = list(data.county_features())
    if quick:  # California and Illinois only
        counties = [f for f in counties if str(f["id"])[:2] in ("06", "17")]
    city = data.city(city_name)
    share = city.population / sum(c.population for c in data.cities())
    n_city_fences = int(round(96_779 * share * (0.25 if quick else 1.0)))
    city_fences = data.local_fence_features(np.random.default_rng(3), n_city_fences, (city,), prefix="city-f")
    gpx, route_fences = gpx_batches("runner-1")
    n_devices, hours = (1_000, 0.75) if quick else (10_000, 1.0)
    city_pings = city_batches(city, n_devices, hours)

    figures: list[Figure] = []
    details: dict = {"prices": PRICES, "city": city_name, "devices": n_devices, "hours": hours}
    with moto_env() as env:
        t_counties = import_features(env, counties)
        import_features(env, route_fences + city_fences)
        register(env, ["runner-1"] + sorted({p["device_id"] for b in city_pings for p in b}))
        cell_sizes = naive_cell_sizes(env)

        results = {}
        results["GPX replay"] = replay(env, gpx)
        # the city: batches until every device has pinged once are the warm-up
        n_warm = _warm_up_batches(city_pings)
        replay(env, city_pings[:n_warm], count=False)
        results["city"] = replay(env, city_pings[n_warm:])
        # What-if: a 30-minute last-seen refresh (a setting), on fresh
        # devices walking for 2 hours (1,000 of them: the same model).
        env.deps.settings = Settings(stage="bench", last_seen_refresh_s=1800)
        env.deps.cache.clear()
        what_if = city_batches(city, *((300, 1.0) if quick else (1_000, 2.0)), seed=6, prefix="w")
        register(env, sorted({p["device_id"] for b in what_if for p in b}))
        n_warm = _warm_up_batches(what_if)
        replay(env, what_if[:n_warm], count=False)
        results["city, 30-min refresh"] = replay(env, what_if[n_warm:])

        for name, r in results.items():
            cpu = statistics.mean(r.cpu_s)
            rru, wru = r.rru / r.pings, r.wru / r.pings
            nrru, nwru = (u / r.pings for u in naive_units(env, r, cell_sizes))
            lam = lambda_cost_per_ping(cpu)
            ours = (dynamo_cost_per_ping(rru, wru) + lam) * 1e6
            naive = (dynamo_cost_per_ping(nrru, nwru) + lam) * 1e6
            depth = statistics.mean(math.ceil(w / POOL_WIDTH) for w in r.widest)
            causes = ", ".join(f"{k} {v / r.pings:.3f}" for k, v in sorted(r.write_causes.items()))
            distinct = np.mean(np.array(r.distinct), axis=0)
            levels = ", ".join(f"r{res} {d:.0f}" for res, d in zip(LADDER, distinct))
            second = ", ".join(f"{k} in {v / r.batches:.0%}" for k, v in sorted(r.second_reads.items()))
            note = (
                f"{r.pings:,} pings in {r.batches:,} batches, {r.events:,} events; device writes per ping by cause: {causes}; "
                f"per batch: {statistics.mean(r.calls):.0f} calls, distinct ladder cells {levels}, "
                f"second-wave reads ({second or 'none'}), "
                f"widest wave {statistics.mean(r.widest):.0f} calls (≈{depth:.1f} pool rounds of {POOL_WIDTH}), "
                f"Lambda CPU {cpu * 1000:.0f} ms (median {statistics.median(r.cpu_s) * 1000:.0f} ms); "
                f"Lambda ${lam * 1e6:.4f}/M pings of the total"
            )
            s = "b"
            is_what_if = "refresh" in name  # a setting changed: no target
            figures += [
                Figure(s, f"{name}: round trips / batch (max {max(r.waves)}, ≤ 2 in {sum(w <= 2 for w in r.waves) / len(r.waves):.0%})", statistics.mean(r.waves), "naive: 2 per ping", 2.0 * BATCH, target_max=None if is_what_if else 2.0),
                Figure(s, f"{name}: read units / ping", rru, "naive", nrru),
                Figure(s, f"{name}: write units / ping", wru, "naive", nwru),
                Figure(s, f"{name}: $ per million pings", ours, "naive", naive, unit="$", target_max=None if is_what_if else 0.25, note=note),
            ]
            details[name] = {
                "pings": r.pings,
                "batches": r.batches,
                "rru_per_ping": rru,
                "wru_per_ping": wru,
                "naive_rru_per_ping": nrru,
                "naive_wru_per_ping": nwru,
                "waves_mean": statistics.mean(r.waves),
                "waves_max": max(r.waves),
                "calls_per_batch": statistics.mean(r.calls),
                "cpu_ms_per_batch": cpu * 1000,
                "usd_per_million": ours,
                "device_writes_per_ping_by_cause": {k: v / r.pings for k, v in r.write_causes.items()},
                "widest_wave_calls": statistics.mean(r.widest),
                "distinct_cells_per_batch_by_level": dict(zip(map(str, LADDER), distinct.tolist())),
                "batches_with_second_wave_read": {k: v / r.batches for k, v in r.second_reads.items()},
                "naive_usd_per_million": naive,
            }
    return Outcome(figures, t_counties, len(counties), details)
