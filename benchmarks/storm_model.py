"""The internet-scale storm, as a model: 1,000,000 devices inside one
weather alert — when is the last push published, against the bound the SNS
Publish quota sets (1,000,000 / 30,000 per second ≈ 33.3 s)?

    python -m benchmarks.storm_model                    # the current design + what-ifs
    python -m benchmarks.storm_model --chunk 500        # one parameter changed
    python -m benchmarks.storm_model --help             # every parameter

A simulation, not AWS: no network, no account. Two parts:

* **The planner** (``plan_alerts``): the repository's own ``plan_area`` covers
  Texas (``tests/fixtures/us_states.geojson``) and makes the real region-index
  Queries; the devices the index returns are placed around the Texas cities of
  ``tests/fixtures/us_cities_top_1k.csv`` by population, so each Query's pages
  (≤ 1 MB) are counted from a realistic density. Time = the longer of the
  Query I/O (pages of a Query in sequence, Queries on the planner's pool of
  8 threads) and the CPU of parsing every item on the function's share of a
  vCPU (GIL: the threads do not add CPU); then the chunk messages are sent
  with ``SendMessageBatch``, 10 a call, one call after another (as
  ``SqsQueue.send`` does).
* **The fan-out** (``send_fanout``): a discrete-event simulation, one lane
  of events per device in flight. A chunk is taken by an SQS event-source
  slot once the mapping has scaled that far (5 at once, then +300 per
  minute, up to 1,000 or the function's concurrency); a new instance pays a
  cold start. Per chunk: the lineage ``BatchGetItem``, then the devices'
  (concurrent batches of 100). Per device, in order, the calls ``decide``
  makes: the claim (conditional ``PutItem``), with frequency caps a
  consistent ``GetItem`` + conditional ``PutItem``, the ``publishing``
  ``UpdateItem``, SNS ``Publish``, the ``sent`` ``UpdateItem``. DynamoDB and
  SNS are token buckets (GCRA): a call waits for capacity — optimistic: the
  code gets a throttling error after botocore's retries and the chunk is
  redelivered after the visibility timeout (the run counts the calls that
  waited longer than the retries would, i.e. what would be redelivered).
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import json
import math
import time
from dataclasses import dataclass

import numpy as np

SQS_BATCH = 10  # SendMessageBatch's limit (chalicelib.weather.fanout.SQS_BATCH)
BATCH_GET_MAX = 100  # BatchGetItem's limit (chalicelib.store.table)
LAMBDA_MB_PER_VCPU = 1769  # Lambda: 1,769 MB = one vCPU's worth of CPU
SDK_RETRY_BUDGET_S = 3.0  # botocore standard mode, 3 attempts: back-offs ≤ 1 s + 2 s

#: Where each default comes from (printed with --sources).
SOURCES = {
    "Lambda/SQS scaling": "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html — standard queue: "
                          "'starts processing five batches at a time', then 'up to 300 more instances per minute', "
                          "at most 1,000 batches at once (MaximumConcurrency 2-1,000)",
    "SQS mapping provisioned mode": "https://docs.aws.amazon.com/lambda/latest/api/API_ProvisionedPollerConfig.html, "
                                    "https://docs.amazonaws.cn/en_us/lambda/latest/dg/services-sqs-scaling.html — "
                                    "MinimumPollers (2-200) / MaximumPollers; '3 times faster scaling and up to 16 "
                                    "times higher processing capacity'. The what-ifs assume it keeps the mapping at "
                                    "full concurrency from the start (how many invocations a poller drives is not "
                                    "stated in what was found)",
    "Lambda scaling rate": "https://docs.aws.amazon.com/lambda/latest/dg/scaling-behavior.html — 1,000 execution "
                           "environments per 10 s per function (not binding next to the SQS mapping's 300/min)",
    "Lambda concurrency": "AWS default account concurrency 1,000 per Region (shared by every function unless "
                          "reserved); .chalice/config.json reserves none for send_fanout",
    "SNS Publish quota": "https://docs.aws.amazon.com/general/latest/gr/sns.html — Publish, us-east-1: 30,000 messages/s "
                         "per account (soft; the figure of the brief, the page's quota table not shown in the excerpt)",
    "DynamoDB on-demand": "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/on-demand-capacity-mode.html, "
                          "https://repost.aws/knowledge-center/on-demand-table-throttling-dynamodb — a new on-demand "
                          "table: 4,000 write / 12,000 read units at once; up to 2x the previous peak at once; 40,000 per "
                          "table by default (quota); 1,000 WCU / 3,000 RCU per partition",
    "code": "chalicelib/services/{fanout,delivery,alert_planning}.py, chalicelib/store/{deliveries,devices,table}.py, "
            "chalicelib/container.py (pools: 8 threads for the weather path), .chalice/config.json "
            "(plan_alerts 300 s, send_fanout 60 s, prod 1,024 MB), chalicelib/settings.py (fanout_chunk 100)",
}


@dataclass(frozen=True)
class Params:
    """Every figure the model uses; the CLI flag is the field name with dashes."""

    devices: int = 1_000_000  # pushes to publish: targets inside the alert
    chunk: int = 100  # HEXCAST_FANOUT_CHUNK (settings.fanout_chunk)
    caps: bool = False  # campaign has frequency caps: +1 consistent GetItem, +1 PutItem a device
    # SNS
    sns_quota: float = 30_000.0  # Publish/s, account, us-east-1
    sns_burst_s: float = 0.05  # bucket depth, in seconds of quota (not published by AWS: kept small)
    sns_median_s: float = 0.020  # Publish latency, lognormal (assumed)
    sns_p99_s: float = 0.080
    # DynamoDB
    ddb_median_s: float = 0.006  # one item call, lognormal (assumed: "single-digit ms")
    ddb_p99_s: float = 0.020
    deliveries_wcu: float = 4_000.0  # deliveries table's instant capacity, write units/s (a new on-demand table)
    devices_rcu: float = 12_000.0  # devices table's instant capacity, read units/s (a new on-demand table)
    ddb_burst_s: float = 0.05
    # Lambda
    concurrency: int = 1_000  # account concurrency free for send_fanout (default quota; nothing else running)
    reserved: int = 0  # reserved concurrency of send_fanout (0: none, as in .chalice/config.json)
    esm_initial: int = 5  # SQS mapping: batches at once when messages appear
    esm_ramp_per_min: float = 300.0  # SQS mapping: + concurrent invocations a minute
    esm_max: int = 1_000  # SQS mapping: at most (MaximumConcurrency)
    cold_start_s: float = 0.6  # init + runtime start (assumed; `import app` alone is 0.14 s, BENCHMARKS.md (d))
    lanes: int = 1  # devices in flight per invocation (send_chunk decides one after another: 1)
    cpu_per_device_s: float = 42e-6  # decide() with fakes, one core (BENCHMARKS.md (e))
    memory_mb: int = 1_024  # prod lambda_memory_size, both functions (CPU share = memory / 1,769 MB)
    sqs_call_s: float = 0.015  # SendMessageBatch latency (assumed)
    sqs_pickup_s: float = 0.020  # message visible → invocation starts on a busy mapping (assumed)
    # planner
    shards: int = 4  # settings.region_shards
    planner_threads: int = 8  # the weather path's pool (chalicelib.container)
    planner_timeout_s: float = 300.0  # plan_alerts: its lambda_timeout in .chalice/config.json
    index_pass: float = 0.636  # share of index items that are targets: consent .95 × .92, enabled .97, fresh .75 (bench f)
    item_bytes: int = 200  # a by_region item (keys + st, consent, push_enabled, sv), DynamoDB's size rule
    parse_us: float = 72.0  # botocore parse + _region_device per item, one core (measured, see BENCHMARKS.md)
    retained_bytes: int = 2_470  # Python memory per parsed item (measured with tracemalloc)
    select_us: float = 4.5  # plan_targets + chunking per target, one core (BENCHMARKS.md (f))
    page_base_s: float = 0.010  # a Query page: latency + transfer at net_mb_s (assumed)
    net_mb_s: float = 60.0
    plan_sample: int = 200_000  # device points placed to count items per Query (scaled up)
    seed: int = 7

    @property
    def vcpu(self) -> float:
        """CPU one Python thread gets: the memory's share, at most one vCPU (the GIL)."""
        return min(self.memory_mb / LAMBDA_MB_PER_VCPU, 1.0)

    @property
    def concurrency_limit(self) -> int:
        cap = min(self.concurrency, self.reserved) if self.reserved else self.concurrency
        return max(1, min(cap, self.esm_max))

    @property
    def quota_bound_s(self) -> float:
        return self.devices / self.sns_quota

    def writes_per_device(self) -> float:
        """Deliveries-table write units of one sent push (reads at 1/3: on-demand's linear combination)."""
        return 3.0 + (1.0 + 1.0 / 3.0 if self.caps else 0.0)


def _sigma(median: float, p99: float) -> float:
    return math.log(p99 / median) / 2.3263  # z of the 99th percentile


class Latency:
    """Lognormal draws, pre-sampled in blocks."""

    def __init__(self, rng: np.random.Generator, median: float, p99: float, block: int = 1 << 12) -> None:
        self.rng, self.mu, self.sigma, self.block = rng, math.log(median), _sigma(median, p99), block
        self.mean = median * math.exp(self.sigma ** 2 / 2)
        self._buf: list[float] = []

    def __call__(self) -> float:
        if not self._buf:
            self._buf = self.rng.lognormal(self.mu, self.sigma, self.block).tolist()
        return self._buf.pop()


class Bucket:
    """A token bucket as GCRA: a request at ``t`` for ``n`` units is granted at
    the earliest time the rate allows (requests come in time order)."""

    def __init__(self, rate: float, burst_s: float) -> None:
        self.per = 1.0 / rate
        self.tau = max(burst_s, self.per)
        self.tat = -math.inf
        self.waits = 0.0  # total seconds callers waited
        self.long_waits = 0  # calls that waited longer than botocore's retries
        self.units = 0.0

    def take(self, t: float, n: float = 1.0) -> float:
        grant = max(t, self.tat - self.tau)
        self.tat = max(grant, self.tat) + n * self.per
        self.units += n
        if grant > t:
            self.waits += grant - t
            self.long_waits += grant - t > SDK_RETRY_BUDGET_S
        return grant


# ------------------------------------------------------------------ the planner
@dataclass
class PlanResult:
    queries: int
    pages: int
    longest_query_pages: int
    items: int
    io_s: float
    cpu_s: float
    enqueue_s: float
    messages: int
    memory_mb: float

    @property
    def query_s(self) -> float:
        return max(self.io_s, self.cpu_s)  # lower bound: I/O and CPU overlap perfectly

    @property
    def total_s(self) -> float:
        return self.query_s + self.enqueue_s


def state(name: str = "Texas"):
    """A state from the states fixture (shapely, lng/lat)."""
    import shapely.geometry

    from benchmarks.data import REPO

    states = json.loads((REPO / "tests" / "fixtures" / "us_states.geojson").read_text())["features"]
    return shapely.geometry.shape(next(f for f in states if f["properties"]["name"] == name)["geometry"])


def items_per_query(p: Params, area) -> list[int]:
    """Items each region Query of the real plan returns when the area holds
    ``devices / index_pass`` devices around its cities (by population)."""
    import shapely

    from benchmarks import data
    from chalicelib.geo.cells import latlngs_to_cells
    from chalicelib.weather.targets import plan_area

    plan = plan_area(area, shards=p.shards)
    rng = np.random.default_rng(p.seed)
    pool = tuple(c for c in data.cities() if shapely.contains_xy(area, c.lng, c.lat))
    lats, lngs = data.near_cities(rng, p.plan_sample * 2, pool)
    inside = shapely.contains_xy(area, lngs, lats)
    lats, lngs = lats[inside][: p.plan_sample], lngs[inside][: p.plan_sample]
    cells = np.sort(latlngs_to_cells(lats, lngs))
    scale = p.devices / p.index_pass / len(cells)
    out = []
    for q in plan.queries:  # one per (partition, shard): the shard takes 1/shards of its devices
        for lo, hi in q.ranges:
            n = int(np.searchsorted(cells, np.uint64(hi), "right") - np.searchsorted(cells, np.uint64(lo), "left"))
            out.append(round(n * scale / p.shards))
    return out


def plan_phase(p: Params, counts: list[int]) -> PlanResult:
    page_items = max(1, (1 << 20) // p.item_bytes)
    pages = [max(1, math.ceil(n / page_items)) for n in counts]
    threads = [0.0] * max(1, p.planner_threads)  # list scheduling in submission order
    for n, k in zip(counts, pages):
        t = heapq.heappop(threads)
        per_page = p.page_base_s + min(n, page_items) * p.item_bytes / (p.net_mb_s * 1e6)
        heapq.heappush(threads, t + k * per_page)
    items = sum(counts)
    cpu = (items * p.parse_us + p.devices * p.select_us) * 1e-6 / p.vcpu
    messages = math.ceil(p.devices / p.chunk)
    enqueue = math.ceil(messages / SQS_BATCH) * p.sqs_call_s
    return PlanResult(len(counts), sum(pages), max(pages, default=0), items, max(threads), cpu, enqueue, messages,
                      items * p.retained_bytes / 2 ** 20)


def measure_parse(n: int = 4_000, repeat: int = 5) -> tuple[float, float]:
    """Re-measure ``parse_us`` and ``retained_bytes`` here: botocore's parser
    on one Query response of ``n`` by_region items (no network), then
    ``_region_device`` on each, as the planner does. → (CPU µs per item, best
    of ``repeat``; bytes a parsed item keeps)."""
    import gc
    import tracemalloc

    import botocore.session
    from botocore.parsers import create_parser

    from chalicelib.store.devices import _region_device

    op = botocore.session.get_session().get_service_model("dynamodb").operation_model("Query")
    parser = create_parser("json")
    st = '{"lat":29.76,"lng":-95.37,"ts":1790000000.0,"cell":"8928303588fffff","acc":null,"in":{}}'
    items = [{"device_id": {"S": f"d-{i:020d}"}, "rc": {"S": "832830fffffffff#2"}, "rf": {"S": "8928303588fffff"},
              "st": {"S": st}, "consent": {"M": {"push": {"BOOL": True}, "location": {"BOOL": True}}},
              "push_enabled": {"BOOL": True}, "sv": {"N": "3"}} for i in range(n)]
    body = json.dumps({"Items": items, "Count": n, "ScannedCount": n}).encode()
    response = {"status_code": 200, "headers": {}, "body": body}
    best = math.inf
    for _ in range(repeat):
        t = time.process_time()
        got = parser.parse(response, op.output_shape)
        devices = [_region_device(i) for i in got["Items"]]
        assert len(devices) == n
        best = min(best, time.process_time() - t)
    gc.collect()
    tracemalloc.start()
    kept = parser.parse(response, op.output_shape)
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return best / n * 1e6, size / n


# ------------------------------------------------------------------ the fan-out
@dataclass
class FanoutResult:
    first_visible_s: float
    last_push_s: float
    published: int
    peak_concurrency: int
    full_concurrency_at_s: float | None  # when the last slot took its first chunk
    sns: Bucket
    deliveries: Bucket
    devices_table: Bucket
    invocations: int
    cold_starts: int
    published_at_full: int = 0  # pushes published before full concurrency


def chunk_visible_times(p: Params, start_s: float) -> np.ndarray:
    """When each chunk message becomes visible: the planner sends them 10 a
    call, one call after another, from ``start_s``."""
    messages = math.ceil(p.devices / p.chunk)
    return start_s + (np.arange(messages) // SQS_BATCH + 1) * p.sqs_call_s


def simulate_fanout(p: Params, visible: np.ndarray) -> FanoutResult:
    rng = np.random.default_rng(p.seed)
    ddb = Latency(rng, p.ddb_median_s, p.ddb_p99_s)
    sns_lat = Latency(rng, p.sns_median_s, p.sns_p99_s)
    sns = Bucket(p.sns_quota, p.sns_burst_s)
    deliv = Bucket(p.deliveries_wcu, p.ddb_burst_s)
    devtab = Bucket(p.devices_rcu, p.ddb_burst_s)
    cpu = p.cpu_per_device_s / p.vcpu
    pre_calls = 2 + (2 if p.caps else 0)  # claim, publishing (+ cap read and write)
    pre_units = 2.0 + (1.0 + 1.0 / 3.0 if p.caps else 0.0)
    n_chunks = len(visible)
    sizes = [min(p.chunk, p.devices - i * p.chunk) for i in range(n_chunks)]
    limit = p.concurrency_limit
    t0 = float(visible[0])
    step = 60.0 / p.esm_ramp_per_min
    heap: list[tuple[float, int, int, int, int]] = []  # (time, seq, kind, slot, pending sent write)
    seq = 0
    SLOT, PRE, SNS = 0, 1, 2
    for k in range(limit):
        opens = t0 if k < p.esm_initial else t0 + (k - p.esm_initial + 1) * step
        heap.append((opens, k, SLOT, k, 0))
    seq = limit
    heapq.heapify(heap)
    cold = [True] * limit
    left = [0] * limit  # devices of the slot's chunk not started
    lanes = [0] * limit  # lanes still running
    busy = 0
    peak = 0
    full_at = None
    published = 0
    published_at_full = 0
    last = 0.0
    next_chunk = 0
    invocations = cold_starts = 0

    def push(t: float, kind: int, k: int, pend: int) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(heap, (t, seq, kind, k, pend))

    while heap:
        t, _, kind, k, pend = heapq.heappop(heap)
        if kind == SLOT:
            if next_chunk >= n_chunks:
                continue
            c = next_chunk
            next_chunk += 1
            start = max(t, float(visible[c])) + p.sqs_pickup_s
            if cold[k]:
                cold[k] = False
                cold_starts += 1
                start += p.cold_start_s
            invocations += 1
            busy += 1
            peak = max(peak, busy)
            if cold_starts == limit and full_at is None:  # the mapping has scaled all the way
                full_at = start
                published_at_full = published
            size = sizes[c]
            g = devtab.take(start, 0.5 * size)  # eventually consistent (the lineage is on the alerts table)
            reads = max(ddb() for _ in range(math.ceil(size / BATCH_GET_MAX)))
            ready = g + ddb() + reads  # get_lineages, then get_devices (batches concurrent)
            left[k] = size
            lanes[k] = min(p.lanes, size)
            for _ in range(lanes[k]):
                push(ready, PRE, k, 0)
        elif kind == PRE:
            if left[k] == 0:  # this lane is done: its last device's sent write, then the invocation may end
                end = t
                if pend:
                    end = deliv.take(t, 1.0) + ddb()
                lanes[k] -= 1
                if lanes[k] == 0:
                    busy -= 1
                    push(end, SLOT, k, 0)
                continue
            left[k] -= 1
            g = deliv.take(t, pre_units + pend)
            done = g + sum(ddb() for _ in range(pre_calls + pend)) + cpu
            push(done, SNS, k, 0)
        else:  # SNS Publish
            g = sns.take(t, 1.0)
            out = g + sns_lat()
            published += 1
            if out > last:
                last = out
            push(out, PRE, k, 1)
    return FanoutResult(t0, last, published, peak, full_at, sns, deliv, devtab, invocations, cold_starts,
                        published_at_full)


# ------------------------------------------------------------------ ceilings and verdict
def _mean(median: float, p99: float) -> float:
    return median * math.exp(_sigma(median, p99) ** 2 / 2)


def chunk_time_s(p: Params) -> float:
    """One invocation's time for a full chunk, warm, with no waiting for capacity."""
    ddb = _mean(p.ddb_median_s, p.ddb_p99_s)
    per_device = (3 + (2 if p.caps else 0)) * ddb + _mean(p.sns_median_s, p.sns_p99_s) + p.cpu_per_device_s / p.vcpu
    return p.sqs_pickup_s + 2 * ddb + per_device * math.ceil(p.chunk / max(1, min(p.lanes, p.chunk)))


def ceilings(p: Params) -> dict[str, float]:
    """Steady-state publish rates (pushes/s) each limit allows."""
    return {
        "SNS Publish quota": p.sns_quota,
        "DynamoDB deliveries table (write units)": p.deliveries_wcu / p.writes_per_device(),
        "DynamoDB devices table (read units)": p.devices_rcu / 0.5,
        "Lambda concurrency x per-device latency": p.concurrency_limit * p.chunk / chunk_time_s(p),
        "planner SendMessageBatch (serial)": SQS_BATCH * p.chunk / p.sqs_call_s,
    }


@dataclass
class Outcome:
    params: Params
    plan: PlanResult
    fanout: FanoutResult

    @property
    def fanout_s(self) -> float:
        """Planning done (first chunk sent) → last push published."""
        return self.fanout.last_push_s - self.plan.query_s

    @property
    def ratio(self) -> float:
        return self.fanout_s / self.params.quota_bound_s

    def ramp_binds_s(self) -> float:
        """How long the SQS mapping's ramp (not yet at full concurrency) is
        slower than the tightest other limit."""
        p = self.params
        c = ceilings(p)
        per_slot = c["Lambda concurrency x per-device latency"] / p.concurrency_limit
        others = min(v for k, v in c.items() if not k.startswith("Lambda"))
        slots = min(others / per_slot, p.concurrency_limit)
        return max(0.0, (slots - p.esm_initial) * 60.0 / p.esm_ramp_per_min)

    def binding(self) -> str:
        p = self.params
        c = ceilings(p)
        name = min(c, key=lambda n: c[n])
        chunks = math.ceil(p.devices / p.chunk)
        waves = math.ceil(chunks / p.concurrency_limit)
        if waves * chunk_time_s(p) > 1.1 * p.devices / c[name]:  # whole chunks per instance, not the rate, bind
            return (f"chunk waves: {chunks:,} chunks on {p.concurrency_limit:,} instances = {waves} rounds of "
                    f"~{chunk_time_s(p):.1f} s (the last one part-full)")
        if self.ramp_binds_s() > 0.25 * self.fanout_s:
            return f"{name} + SQS mapping ramp ({self.ramp_binds_s():.0f} s)"
        return name


def run(p: Params, counts: list[int] | None = None, area=None) -> Outcome:
    if counts is None:
        counts = items_per_query(p, state() if area is None else area)
    plan = plan_phase(p, counts)
    fan = simulate_fanout(p, chunk_visible_times(p, plan.query_s))
    return Outcome(p, plan, fan)


def scenarios(base: Params) -> list[tuple[str, str, Params]]:
    """(name, what it takes, params): the current design, then one change after another."""
    r = dataclasses.replace
    warm = r(base, deliveries_wcu=40_000.0, devices_rcu=40_000.0)
    ramped = r(warm, esm_initial=warm.esm_max, cold_start_s=0.0)
    nocode = r(base, deliveries_wcu=100_000.0, devices_rcu=100_000.0, concurrency=1_500, reserved=1_500, esm_max=1_500,
               esm_initial=1_500, cold_start_s=0.0)
    return [
        ("current design", "defaults: chunk 100, no reserved concurrency, new on-demand tables", base),
        ("chunk 500", "HEXCAST_FANOUT_CHUNK=500 (code supports it)", r(base, chunk=500)),
        ("tables warm at 40k", "DynamoDB warm throughput 40,000 WCU/RCU (= default table quota); deploy setting",
         warm),
        ("+ mapping pre-scaled", "SQS mapping provisioned pollers at full concurrency + provisioned concurrency "
                                 "(no cold start); deploy settings", ramped),
        ("+ 16 devices in flight", "send_chunk decides 16 devices at once on its pool: a CODE CHANGE", r(ramped, lanes=16)),
        ("+ 16 in flight, chunk 500, 100k WCU", "+ table quota raise to 100,000 and warm throughput 100,000; "
                                                "HEXCAST_FANOUT_CHUNK=500",
         r(ramped, lanes=16, chunk=500, deliveries_wcu=100_000.0, devices_rcu=100_000.0)),
        ("no code change: 100k WCU, 1,500 pre-scaled", "100k WCU/RCU as above, chunk 100, account concurrency "
                                                         "1,500 (quota raise), reserved 1,500 for send_fanout, SQS "
                                                         "mapping provisioned mode at 1,500, no cold start",
         nocode),
        ("the same with chunk 500", "HEXCAST_FANOUT_CHUNK=500: 2,000 chunks of ~23 s each on 1,500 instances",
         r(nocode, chunk=500)),
        ("16 in flight, 100k WCU, default mapping", "16 in flight, chunk 500, 100k WCU, but the SQS mapping's default "
                                                  "ramp and cold starts",
         r(base, lanes=16, chunk=500, deliveries_wcu=100_000.0, devices_rcu=100_000.0)),
    ]


# ------------------------------------------------------------------ printing
def _fmt_s(s: float) -> str:
    return f"{s:,.1f} s"


def report(o: Outcome) -> str:
    p, pl, f = o.params, o.plan, o.fanout
    lines = [
        f"Storm: {p.devices:,} pushes, one alert over Texas; chunk {p.chunk}, concurrency {p.concurrency_limit}, "
        f"SNS quota {p.sns_quota:,.0f}/s, deliveries {p.deliveries_wcu:,.0f} WCU/s, devices {p.devices_rcu:,.0f} RCU/s",
        "",
        "| phase | figure | limit that binds |",
        "|---|---|---|",
        f"| planner: region Queries | {pl.queries:,} Queries, {pl.pages:,} pages (longest Query {pl.longest_query_pages} "
        f"pages), {pl.items:,} items | I/O {_fmt_s(pl.io_s)} vs CPU {_fmt_s(pl.cpu_s)} on {p.vcpu:.2f} vCPU: "
        f"{'CPU (botocore parse)' if pl.cpu_s >= pl.io_s else 'Query I/O'} |",
        f"| planner: memory | {pl.memory_mb:,.0f} MB of parsed items | function memory {p.memory_mb:,} MB: "
        f"{'**over**' if pl.memory_mb > p.memory_mb else 'fits'} |",
        f"| planner: total vs timeout | {_fmt_s(pl.query_s)} + enqueue {_fmt_s(pl.enqueue_s)} "
        f"({pl.messages:,} messages, {math.ceil(pl.messages / SQS_BATCH):,} calls in sequence) | timeout "
        f"{_fmt_s(p.planner_timeout_s)}: {'**over**' if pl.total_s > p.planner_timeout_s else 'fits'} |",
    ]
    ramp = (f.full_concurrency_at_s - f.first_visible_s) if f.full_concurrency_at_s is not None else None
    lines.append(
        f"| Lambda scale-up | peak {f.peak_concurrency:,} concurrent; every slot in use after "
        f"{_fmt_s(ramp) if ramp is not None else 'never'}; {f.published_at_full:,} pushes before; "
        f"{f.invocations:,} invocations, {f.cold_starts:,} cold | SQS mapping: {p.esm_initial} then "
        f"+{p.esm_ramp_per_min:.0f}/min to {p.concurrency_limit} |")
    for name, b, unit in (("DynamoDB deliveries", f.deliveries, "WCU"), ("DynamoDB devices", f.devices_table, "RCU")):
        lines.append(f"| {name} | {b.units:,.0f} {unit}; callers waited {_fmt_s(b.waits)} in all; "
                     f"{b.long_waits:,} calls beyond botocore's retries (would be redelivered) | "
                     f"{1 / b.per:,.0f} {unit}/s |")
    lines.append(f"| SNS Publish | {f.published:,} published; callers waited {_fmt_s(f.sns.waits)} in all | "
                 f"{p.sns_quota:,.0f}/s |")
    need_mb = pl.items * p.retained_bytes / 2 ** 20 + 200  # + the runtime and the code
    one_vcpu = (pl.items * p.parse_us + p.devices * p.select_us) * 1e-6
    if pl.memory_mb > p.memory_mb or pl.total_s > p.planner_timeout_s:
        lines += ["", f"The planner cannot plan this storm as configured (the fan-out below assumes it did). It needs "
                      f"~{need_mb:,.0f} MB (plan_alerts lambda_memory_size; Lambda allows 10,240) and, at >= 1,769 MB "
                      f"(one vCPU), ~{one_vcpu:,.0f} s + enqueue {pl.enqueue_s:,.0f} s within its timeout "
                      f"(plan_alerts lambda_timeout; at most 900 s): both settings .chalice/config.json supports. "
                      f"Faster needs a code change: parse fewer bytes per item, or stream Query pages into chunk "
                      f"messages instead of holding every item before the first chunk is sent."]
    lines += ["", "Steady-state ceilings (pushes/s): " + "; ".join(f"{k} {v:,.0f}" for k, v in ceilings(p).items()), ""]
    lines += [
        f"Last push: {_fmt_s(f.last_push_s)} after the alert reached the planner = planning {_fmt_s(pl.query_s)} "
        f"+ fan-out {_fmt_s(o.fanout_s)}",
        f"Quota bound: {p.devices:,} / {p.sns_quota:,.0f} = {_fmt_s(p.quota_bound_s)}; fan-out / bound = "
        f"{o.ratio:.2f}x (target <= 1.2x): {'met' if o.ratio <= 1.2 else 'MISSED'}; binds: {o.binding()}",
    ]
    return "\n".join(lines)


def scenario_table(base: Params, counts: list[int]) -> tuple[str, list[tuple[str, str, Outcome]]]:
    rows = [(name, how, run(sp, counts)) for name, how, sp in scenarios(base)]
    out = ["| scenario | what it takes | planning | fan-out | fan-out / 33.3 s bound | binds |", "|---|---|---|---|---|---|"]
    for name, how, o in rows:
        out.append(f"| {name} | {how} | {_fmt_s(o.plan.query_s)} | {_fmt_s(o.fanout_s)} | {o.ratio:.2f}x"
                   f"{' (met)' if o.ratio <= 1.2 else ''} | {o.binding()} |")
    return "\n".join(out), rows


def parse_args(argv: list[str] | None = None) -> tuple[Params, argparse.Namespace]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.storm_model", description=__doc__.split("\n\n")[0])
    for f in dataclasses.fields(Params):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            ap.add_argument(flag, type=float if f.type == "float" else int, default=f.default)
    ap.add_argument("--no-scenarios", action="store_true", help="only the parameters given, no what-if table")
    ap.add_argument("--sources", action="store_true", help="print where each default comes from")
    ap.add_argument("--measure-parse", action="store_true",
                    help="measure --parse-us and --retained-bytes on this machine and use them")
    ns = ap.parse_args(argv)
    params = Params(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(Params)})
    return params, ns


def main(argv: list[str] | None = None) -> None:
    p, ns = parse_args(argv)
    if ns.measure_parse:
        us, kept = measure_parse()
        print(f"measured here: botocore parse + _region_device {us:.1f} µs a by_region item (CPU), "
              f"{kept:,.0f} bytes kept per parsed item\n")
        p = dataclasses.replace(p, parse_us=round(us, 1), retained_bytes=int(kept))
    if ns.sources:
        for k, v in SOURCES.items():
            print(f"- {k}: {v}")
        print()
    t = time.perf_counter()
    counts = items_per_query(p, state())
    print(report(run(p, counts)))
    if not ns.no_scenarios:
        print("\nWhat it would take (each row changes what it says, on top of the defaults given):\n")
        print(scenario_table(p, counts)[0])
    print(f"\n(model run {time.perf_counter() - t:.0f} s of wall time)")


if __name__ == "__main__":
    main()
