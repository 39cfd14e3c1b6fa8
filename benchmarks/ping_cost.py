"""(b) DynamoDB cost of pings, and (c)'s in-process baseline: the real
DynamoDB repositories (``chalicelib.store.dynamo_stores``) and
``services.pings.handle_pings`` on moto (``mock_aws``), with
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
    "api_gateway_rest_per_million": 3.50,
    "api_gateway_http_per_million": 1.00,
}
#: vCPU share of a 512 MB Lambda (1,769 MB = 1 vCPU): billed time ≈ CPU / this.
LAMBDA_VCPU = 512 / 1769
CALL_LATENCY_S = 0.010  # modelled latency of one DynamoDB call
BATCH = 100
POOL_WIDTH = 16  # threads of the repositories' pool (chalicelib.store.POOL_WORKERS): calls in flight at once
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

    from chalicelib.services.fence_cache import VersionCache
    from chalicelib.services.deps import Deps
    from chalicelib.settings import Settings
    from chalicelib.store import dynamo_stores
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
            # The repositories run their batch chunks on their own pool (as
            # build_deps leaves them); the ping's two reads go out together on
            # deps.pool (deps.both): one round trip.
            deps = Deps.over(
                dynamo_stores(client, settings, clock=clock),
                settings,
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
    #: per batch, ⌈calls / pool width⌉ summed over its sequential waves
    rounds: list[int] = field(default_factory=list)
    #: round trips of the batches not counted (cold state and cache)
    cold_waves: list[int] = field(default_factory=list)
    #: batches over 2 round trips, by whether fence versions were fetched
    over2: Counter = field(default_factory=Counter)
    #: every batch's events, per ping (the differential check)
    events_seen: list = field(default_factory=list)


def replay(env: Env, batches: list[list[dict]], *, count: bool = True, out: Replay | None = None) -> Replay:
    from chalicelib.services.pings import handle_pings
    from chalicelib.geo.cells import ladder_ancestors, latlng_to_cell

    out = out or Replay()
    t_start = time.perf_counter()
    for k, batch in enumerate(batches):
        if k and k % 250 == 0:
            print(f"    ... {k:,}/{len(batches):,} batches, {time.perf_counter() - t_start:.0f} s", file=sys.stderr, flush=True)
        env.clock.now = max(p["timestamp"] for p in batch) + 1.0
        env.meter.counting = True  # uncounted batches' calls only give their round trips
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
        out.events_seen.append([[(e["type"], e["fence_id"], e["at"]) for e in r["events"]] for r in body["results"]])
        if not count:
            out.cold_waves.append(len(_wave_sizes(calls)))
            continue
        out.rounds.append(sum(math.ceil(n / POOL_WIDTH) for n in _wave_sizes(calls)))
        if waves(calls) > 2:
            reads = {c.detail for c in calls if c.op == "BatchGetItem" and c.detail}
            out.over2.update(["with a version fetch" if "G" in reads else "without a version fetch"])
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


def _wave_sizes(calls) -> list[int]:
    """Calls per sequential wave (calls whose [start, end] overlap)."""
    sizes: list[int] = []
    end = -math.inf
    for c in sorted(calls, key=lambda c: c.start):
        if c.start > end:
            sizes.append(0)
        sizes[-1] += 1
        end = max(end, c.end) if sizes[-1] > 1 else c.end
    return sizes


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


def _app_column(rru: float, wru: float, cpu_s: float, per_req: float) -> dict[str, float]:
    """One ping per request (an app posting for its own device), modelled
    from the batch's per-ping units: each request reads the index epoch
    itself (1 RRU, strongly consistent) instead of sharing it, pays the
    Lambda request and API Gateway request alone, and waits for at least
    two sequential calls (read, write) at the call latency; CPU per ping as
    in the batch."""
    app_rru = rru - 1.0 / per_req + 1.0
    wall = cpu_s / per_req / LAMBDA_VCPU + 2 * CALL_LATENCY_S
    base = dynamo_cost_per_ping(app_rru, wru) * 1e6 + lambda_cost_per_ping(wall, 1) * 1e6
    return {
        "app_rru_per_ping": app_rru,
        "app_lambda_dynamodb": base,
        "app_rest": base + PRICES["api_gateway_rest_per_million"],
        "app_http": base + PRICES["api_gateway_http_per_million"],
    }


def _costs(env: Env, r: Replay, cell_sizes: dict[int, int]) -> dict:
    """A scenario's units, round trips and dollars: as metered (CPU-billed
    Lambda, the figures of record) and as AWS bills them (API Gateway per
    request, Lambda wall time ≈ CPU / vCPU share + I/O waits)."""
    cpu = statistics.mean(r.cpu_s)
    rru, wru = r.rru / r.pings, r.wru / r.pings
    nrru, nwru = (u / r.pings for u in naive_units(env, r, cell_sizes))
    lam = lambda_cost_per_ping(cpu)
    dyn = dynamo_cost_per_ping(rru, wru)
    rounds = statistics.mean(r.rounds)
    wall_s = cpu / LAMBDA_VCPU + rounds * CALL_LATENCY_S
    lam_wall = lambda_cost_per_ping(wall_s)
    per_req = r.pings / r.batches
    causes = ", ".join(f"{k} {v / r.pings:.3f}" for k, v in sorted(r.write_causes.items()))
    from chalicelib.geo.cells import LADDER

    distinct = np.mean(np.array(r.distinct), axis=0)
    levels = ", ".join(f"r{res} {d:.0f}" for res, d in zip(LADDER, distinct))
    second = ", ".join(f"{k} in {v / r.batches:.0%}" for k, v in sorted(r.second_reads.items()))
    dist = Counter(r.waves)
    out = {
        "pings": r.pings,
        "batches": r.batches,
        "events": r.events,
        "rru_per_ping": rru,
        "wru_per_ping": wru,
        "naive_rru_per_ping": nrru,
        "naive_wru_per_ping": nwru,
        "waves_mean": statistics.mean(r.waves),
        "waves_max": max(r.waves),
        "waves_distribution": {str(k): v / len(r.waves) for k, v in sorted(dist.items())},
        "share_le2": sum(w <= 2 for w in r.waves) / len(r.waves),
        "cold_mean": statistics.mean(r.cold_waves) if r.cold_waves else float(r.waves[0]),
        "cold_max": max(r.cold_waves) if r.cold_waves else r.waves[0],
        "pool_rounds_per_batch": rounds,
        "latency_ms": rounds * CALL_LATENCY_S * 1000,
        "calls_per_batch": statistics.mean(r.calls),
        "cpu_ms_per_batch": cpu * 1000,
        "wall_ms_per_batch": wall_s * 1000,
        "usd_per_million": (dyn + lam) * 1e6,
        "naive_usd_per_million": (dynamo_cost_per_ping(nrru, nwru) + lam) * 1e6,
        "dynamodb_usd_per_million": dyn * 1e6,
        "reads_usd_per_million": rru * PRICES["dynamodb_read_per_million_rru"],
        "writes_usd_per_million": wru * PRICES["dynamodb_write_per_million_wru"],
        "lambda_cpu_usd_per_million": lam * 1e6,
        "lambda_wall_usd_per_million": lam_wall * 1e6,
        "aws_batched_rest": (dyn + lam_wall) * 1e6 + PRICES["api_gateway_rest_per_million"] / per_req,
        "aws_batched_http": (dyn + lam_wall) * 1e6 + PRICES["api_gateway_http_per_million"] / per_req,
        **_app_column(rru, wru, cpu, per_req),
        "device_writes_per_ping_by_cause": {k: v / r.pings for k, v in r.write_causes.items()},
        "distinct_cells_per_batch_by_level": dict(zip(map(str, LADDER), distinct.tolist())),
        "batches_with_second_wave_read": {k: v / r.batches for k, v in r.second_reads.items()},
    }
    out["note"] = (
        f"{r.pings:,} pings in {r.batches:,} batches, {r.events:,} events; round trips {dict(sorted(dist.items()))}, cold {out['cold_mean']:.2f} (max {out['cold_max']}); "
        f"device writes per ping by cause: {causes or 'none'}; per batch: {out['calls_per_batch']:.0f} calls, distinct ladder cells {levels}, "
        f"second-wave reads ({second or 'none'}), batches over 2 round trips: {dict(r.over2) or 'none'}, {rounds:.1f} pool rounds of {POOL_WIDTH} (≈{out['latency_ms']:.0f} ms at {CALL_LATENCY_S * 1000:.0f} ms a call), "
        f"Lambda CPU {cpu * 1000:.0f} ms (wall ≈{wall_s * 1000:.0f} ms at {LAMBDA_VCPU:.2f} vCPU); "
        f"$/M: reads {out['reads_usd_per_million']:.3f}, writes {out['writes_usd_per_million']:.3f}, Lambda CPU {out['lambda_cpu_usd_per_million']:.3f} / wall {out['lambda_wall_usd_per_million']:.3f}; "
        f"as AWS bills a batch of {per_req:.0f}: REST ${out['aws_batched_rest']:.3f}, HTTP API ${out['aws_batched_http']:.3f}; "
        f"one ping per request (modelled): DynamoDB + Lambda ${out['app_lambda_dynamodb']:.3f}, REST ${out['app_rest']:.3f}, HTTP API ${out['app_http']:.3f}"
    )
    return out


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
        results["city"] = replay(env, city_pings[n_warm:], out=replay(env, city_pings[:n_warm], count=False))
        # Today's path (before the warm index cache and the write policy) on
        # the same pings, for fresh devices: the baseline, and the
        # differential check (identical events, ping by ping).
        new_deps = (env.deps.settings, env.deps.index_cache)
        env.deps.settings = Settings(stage="bench", last_seen_refresh_s=300, location_write_res=9)
        env.deps.index_cache = None
        env.deps.cache.clear()
        old_gpx, _ = gpx_batches("runner-old")
        old_city = city_batches(city, n_devices, hours, prefix="old-")
        register(env, ["runner-old"] + sorted({p["device_id"] for b in old_city for p in b}))
        results["GPX replay, before"] = replay(env, old_gpx)
        results["city, before"] = replay(env, old_city[n_warm:], out=replay(env, old_city[:n_warm], count=False))
        env.deps.settings, env.deps.index_cache = new_deps
        for name in ("GPX replay", "city"):
            same = results[name].events_seen == results[f"{name}, before"].events_seen
            details[f"{name}: identical events to today's path"] = same
            if not same:
                raise RuntimeError(f"{name}: the events differ from today's path")
        # What-if: moves written at resolution 7 (a setting), on fresh
        # devices walking for an hour (the same model).
        env.deps.settings = Settings(stage="bench", location_write_res=7)
        what_if = city_batches(city, *((300, 1.0) if quick else (1_000, 1.0)), seed=6, prefix="w")
        register(env, sorted({p["device_id"] for b in what_if for p in b}))
        n_warm = _warm_up_batches(what_if)
        results["city, moves written at res 7"] = replay(env, what_if[n_warm:], out=replay(env, what_if[:n_warm], count=False))

        costs = {name: _costs(env, r, cell_sizes) for name, r in results.items()}
        for name, r in results.items():
            c = costs[name]
            before = costs.get(f"{name}, before")
            print(f"  [b] {name}: {c['note']}", file=sys.stderr, flush=True)
            details[name] = {k: v for k, v in c.items() if k != "note"}
            if name.endswith(", before"):
                continue
            s = "b"
            what_if = "res 7" in name  # a setting changed: no target
            is_city = name == "city"
            base_name, base = ("today's path", before) if before else ("naive", None)
            figures += [
                Figure(s, f"{name}: round trips / batch (max {max(r.waves)}, ≤ 2 in {c['share_le2']:.0%} of warm batches; cold batches {c['cold_mean']:.2f}, max {c['cold_max']})",
                       statistics.mean(r.waves), base_name if base else "naive: 2 per ping", base["waves_mean"] if base else 2.0 * BATCH,
                       target_max=None if what_if else 2.0),
                Figure(s, f"{name}: modelled latency of a batch request, {CALL_LATENCY_S * 1000:.0f} ms per DynamoDB call, {POOL_WIDTH}-thread pool rounds",
                       c["latency_ms"], base_name if base else "—", base["latency_ms"] if base else c["latency_ms"], unit="ms"),
                Figure(s, f"{name}: read units / ping", c["rru_per_ping"], base_name if base else "naive", base["rru_per_ping"] if base else c["naive_rru_per_ping"]),
                Figure(s, f"{name}: write units / ping", c["wru_per_ping"], base_name if base else "naive", base["wru_per_ping"] if base else c["naive_wru_per_ping"]),
                Figure(s, f"{name}: $ per million pings (DynamoDB + Lambda CPU; naive ${c['naive_usd_per_million']:.3f})", c["usd_per_million"], base_name if base else "naive",
                       base["usd_per_million"] if base else c["naive_usd_per_million"], unit="$",
                       target_max=None if what_if else (0.20 if is_city else 0.25), note=c["note"]),
                Figure(s, f"{name}: $ per million pings as AWS bills a batch of 100 (REST API + Lambda wall time + DynamoDB)", c["aws_batched_rest"], base_name if base else "—",
                       base["aws_batched_rest"] if base else c["aws_batched_rest"], unit="$"),
                Figure(s, f"{name}: $ per million pings as AWS bills one ping per request (app key, REST API; modelled from the per-ping units)", c["app_rest"], base_name if base else "—",
                       base["app_rest"] if base else c["app_rest"], unit="$"),
            ]
            if is_city:
                figures.append(Figure(s, "city: share of warm batches over 2 round trips", 1.0 - c["share_le2"], base_name, 1.0 - before["share_le2"] if before else 1.0, target_max=0.01))
    return Outcome(figures, t_counties, len(counties), details)
