"""Storage: one repository per aggregate, on DynamoDB or in memory.

:func:`dynamo_stores` and :func:`memory_stores` build the whole bundle
(:class:`Stores`); the ports the repositories implement are in
:mod:`chalicelib.ports`. The implementations are imported when a
factory runs, so importing this package (or its ports) pulls in neither
boto nor the weather region helpers.
"""

from __future__ import annotations

import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib.retry import Clock, RetryPolicy, Sleep
from chalicelib.ports import (
    CampaignRepo,
    DeliveryRepo,
    DeviceRepo,
    FenceRepo,
    WeatherRepo,
)

if TYPE_CHECKING:
    from chalicelib.store.memory_base import Tally


@dataclass
class Stores:
    fences: FenceRepo
    devices: DeviceRepo
    campaigns: CampaignRepo
    deliveries: DeliveryRepo
    weather: WeatherRepo


#: Threads of the default pool (batch chunks, per-cell queries, index shards).
POOL_WORKERS = 16


def dynamo_stores(
    client: Any,
    settings: Any,
    *,
    clock: Clock,
    sleep: Sleep = time.sleep,
    pool: Executor | None = None,
    retry: RetryPolicy | None = None,
) -> Stores:
    """The DynamoDB repositories over one botocore ``client`` (built by the
    composition root with low botocore retries, see
    :mod:`chalicelib.retry`). ``clock``: the wall clock (epoch seconds);
    ``sleep``: how retries wait; ``pool``: runs concurrent requests (a
    16-thread pool when None); ``retry``: unprocessed batch items and lost
    cap races (5 s budget, full jitter, at most 10 attempts, when None)."""
    from concurrent.futures import ThreadPoolExecutor

    from chalicelib.store.campaigns import DynamoCampaigns
    from chalicelib.store.deliveries import DynamoDeliveries
    from chalicelib.store.devices import DynamoDevices
    from chalicelib.store.fences import DynamoFences
    from chalicelib.store.table import Table
    from chalicelib.store.weather import DynamoWeather

    pool = pool or ThreadPoolExecutor(max_workers=POOL_WORKERS, thread_name_prefix="hexcast-ddb")
    retry = retry or RetryPolicy(budget_s=5.0, base_s=0.02, cap_s=1.0, clock=time.monotonic, sleep=sleep,
                                 max_attempts=10)
    cap_retry = RetryPolicy(budget_s=retry.budget_s, base_s=0.005, cap_s=0.05, clock=retry.clock, sleep=retry.sleep,
                            max_attempts=8)

    def table(name: str) -> Table:
        return Table(client, name, pool, retry)

    return Stores(
        fences=DynamoFences(table(settings.geofences_table), table(settings.cells_table)),
        devices=DynamoDevices(table(settings.devices_table), int(getattr(settings, "region_shards", 4))),
        campaigns=DynamoCampaigns(table(settings.campaigns_table)),
        deliveries=DynamoDeliveries(table(settings.deliveries_table), clock=clock, cap_retry=cap_retry),
        weather=DynamoWeather(table(settings.alerts_table)),
    )


def memory_stores(*, clock: Clock, region_shards: int = 4, tally: Tally | None = None) -> Stores:
    """The in-memory twins (one :class:`~chalicelib.store.memory_base.Tally`
    of round trips shared by all). ``clock``: the wall clock, as for
    :func:`dynamo_stores`."""
    from chalicelib.store.memory_base import Tally
    from chalicelib.store.memory_campaigns import MemoryCampaigns
    from chalicelib.store.memory_deliveries import MemoryDeliveries
    from chalicelib.store.memory_devices import MemoryDevices
    from chalicelib.store.memory_fences import MemoryFences
    from chalicelib.store.memory_weather import MemoryWeather

    tally = tally or Tally()
    return Stores(
        fences=MemoryFences(tally),
        devices=MemoryDevices(tally, region_shards),
        campaigns=MemoryCampaigns(),
        deliveries=MemoryDeliveries(clock=clock, tally=tally),
        weather=MemoryWeather(tally),
    )
