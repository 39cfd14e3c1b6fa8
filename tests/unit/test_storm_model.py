"""The storm model's invariants (benchmarks/storm_model.py): small storms,
synthetic Query sizes, no real time measured."""

from __future__ import annotations

import dataclasses
import math

import pytest

from benchmarks.storm_model import (
    SQS_BATCH,
    Bucket,
    Params,
    ceilings,
    chunk_visible_times,
    parse_args,
    plan_phase,
    run,
    simulate_fanout,
)

N = 5_000
#: Query sizes for the planner part (items per Query), as items_per_query returns them.
COUNTS = [5_000, 40_000, 12_000, 300, 0, 9_000]

#: Everything but SNS unlimited: the mapping at full size at once, no cold
#: start, tables and concurrency far above what the quota needs.
UNBOUND = Params(devices=N, sns_quota=500.0, deliveries_wcu=1e9, devices_rcu=1e9, concurrency=1_000, esm_initial=1_000,
                 cold_start_s=0.0, lanes=8, chunk=100)


def fanout_s(p: Params) -> float:
    o = run(p, COUNTS)
    assert o.fanout.published == p.devices
    return o.fanout_s


def test_unbounded_capacity_approaches_the_quota_bound():
    bound = UNBOUND.quota_bound_s  # 10 s
    got = fanout_s(UNBOUND)
    assert bound * 0.99 <= got <= bound * 1.03


def test_halving_the_quota_doubles_an_sns_bound_storm():
    full = fanout_s(UNBOUND)
    half = fanout_s(dataclasses.replace(UNBOUND, sns_quota=UNBOUND.sns_quota / 2))
    assert half / full == pytest.approx(2.0, rel=0.03)


@pytest.mark.parametrize("change", [
    {},
    {"deliveries_wcu": 3_000.0},
    {"concurrency": 20, "esm_initial": 5},
    {"chunk": 500, "lanes": 1},
    {"caps": True, "sns_quota": 5_000.0},
    {"sns_burst_s": 1.0},
])
def test_never_faster_than_the_quota_allows(change):
    p = dataclasses.replace(UNBOUND, **change)
    o = run(p, COUNTS)
    burst = p.sns_quota * max(p.sns_burst_s, 1 / p.sns_quota)
    first = o.fanout.first_visible_s
    assert o.fanout.last_push_s - first >= (p.devices - burst - 1) / p.sns_quota


def test_a_small_deliveries_table_binds_at_its_write_units():
    p = dataclasses.replace(UNBOUND, deliveries_wcu=1_500.0, sns_quota=1e6)
    got = fanout_s(p)
    assert got == pytest.approx(N * p.writes_per_device() / p.deliveries_wcu, rel=0.05)
    assert min(ceilings(p), key=lambda k: ceilings(p)[k]).startswith("DynamoDB deliveries")


def test_frequency_caps_cost_a_read_and_a_write_per_device():
    assert Params().writes_per_device() == 3.0
    assert Params(caps=True).writes_per_device() == pytest.approx(3.0 + 1.0 + 1 / 3)
    p = dataclasses.replace(UNBOUND, deliveries_wcu=1_500.0, sns_quota=1e6)
    assert fanout_s(dataclasses.replace(p, caps=True)) > fanout_s(p) * 1.3


def test_lanes_speed_up_a_concurrency_bound_storm():
    p = dataclasses.replace(UNBOUND, sns_quota=1e6, concurrency=10, esm_initial=10, lanes=1)
    one = fanout_s(p)
    many = fanout_s(dataclasses.replace(p, lanes=10))
    assert many < one / 5


def test_the_mapping_ramp_and_cold_starts_slow_the_start():
    fast = fanout_s(UNBOUND)
    slow = fanout_s(dataclasses.replace(UNBOUND, esm_initial=5, cold_start_s=0.6, lanes=1))
    assert slow > fast


def test_every_chunk_is_one_invocation_and_instances_stay_within_the_limit():
    p = dataclasses.replace(UNBOUND, concurrency=30, esm_initial=5, chunk=70)
    f = simulate_fanout(p, chunk_visible_times(p, 0.0))
    assert f.invocations == math.ceil(N / 70)
    assert f.cold_starts <= 30 and f.peak_concurrency <= 30
    assert f.published == N


def test_bucket_grants_at_its_rate_after_the_burst():
    b = Bucket(rate=100.0, burst_s=0.1)  # 10 at once
    grants = [b.take(0.0) for _ in range(110)]
    assert grants[:10] == [0.0] * 10
    assert grants[-1] == pytest.approx(1.0, abs=0.011)
    assert grants == sorted(grants)
    assert b.take(100.0) == 100.0  # refilled


def test_planner_pages_and_enqueue_calls():
    p = Params(devices=N, chunk=100, item_bytes=200, sqs_call_s=0.01)
    pl = plan_phase(p, COUNTS)
    page = (1 << 20) // 200
    assert pl.pages == sum(max(1, math.ceil(n / page)) for n in COUNTS)
    assert pl.items == sum(COUNTS)
    assert pl.messages == N // 100
    assert pl.enqueue_s == pytest.approx(math.ceil(pl.messages / SQS_BATCH) * 0.01)
    assert plan_phase(dataclasses.replace(p, chunk=500), COUNTS).enqueue_s == pytest.approx(pl.enqueue_s / 5)
    # CPU is paid on the function's share of a vCPU (half the memory, twice the
    # time), at most one vCPU: one Python thread at a time (the GIL).
    assert plan_phase(dataclasses.replace(p, memory_mb=512), COUNTS).cpu_s == pytest.approx(pl.cpu_s * 2)
    big = plan_phase(dataclasses.replace(p, memory_mb=4096), COUNTS).cpu_s
    assert big == plan_phase(dataclasses.replace(p, memory_mb=1769), COUNTS).cpu_s == pytest.approx(pl.cpu_s * 1024 / 1769)


def test_chunks_become_visible_ten_at_a_time():
    p = Params(devices=1_050, chunk=100, sqs_call_s=0.02)
    v = chunk_visible_times(p, 5.0)
    assert len(v) == 11
    assert list(v[:10]) == pytest.approx([5.02] * 10)
    assert v[10] == pytest.approx(5.04)


def test_cli_flags_override_parameters():
    p, ns = parse_args(["--chunk", "500", "--sns-quota", "15000", "--caps", "--reserved", "800", "--no-scenarios"])
    assert (p.chunk, p.sns_quota, p.caps, p.reserved, ns.no_scenarios) == (500, 15_000.0, True, 800, True)
    assert p.concurrency_limit == 800
    assert Params(concurrency=1_000, reserved=0).concurrency_limit == 1_000


def test_the_parse_measurement_runs_the_planners_own_decoding():
    from benchmarks.storm_model import measure_parse

    us, kept = measure_parse(n=200, repeat=1)
    assert us > 0
    assert 500 < kept < 20_000  # a parsed by_region item: a few nested dicts and strings


def test_the_real_region_plan_reads_every_device_placed_inside():
    from benchmarks.storm_model import items_per_query, state
    from chalicelib.weather.targets import plan_area

    p = Params(devices=6_360, plan_sample=5_000, shards=4)
    area = state("Connecticut")  # the model runs Texas; a smaller state keeps the test fast
    counts = items_per_query(p, area)
    assert len(counts) == plan_area(area, shards=4).query_count  # one figure per real Query
    assert sum(counts) == pytest.approx(p.devices / p.index_pass, rel=0.01)  # none missed, none twice
