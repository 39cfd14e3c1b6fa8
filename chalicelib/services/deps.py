"""What every use case takes: the ports and the configuration, typed.

Built by the composition root (:mod:`chalicelib.container`) for AWS, and by
tests and benchmarks over in-memory fakes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from chalicelib.services.fence_cache import IndexCache, VersionCache
from chalicelib.clock import Clock, Sleep, system_clock, system_sleep
from chalicelib.ports import AreaResolver, FanoutQueue, PushGateway
from chalicelib.services.caches import CampaignCache, PlanCache
from chalicelib.settings import Settings
from chalicelib.store import Stores
from chalicelib.ports import CampaignRepo, DeliveryRepo, DeviceRepo, FenceRepo, WeatherRepo

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")


@dataclass
class Deps:
    """The ports and the configuration every use case takes."""

    #: One repository per aggregate (DynamoDB, or the in-memory twins).
    fences: FenceRepo
    devices: DeviceRepo
    campaigns: CampaignRepo
    deliveries: DeliveryRepo
    weather: WeatherRepo
    settings: Settings
    clock: Clock = system_clock
    #: Fence geometry by (fence id, version), kept while the Lambda is warm.
    cache: VersionCache = field(default_factory=VersionCache)
    #: Index rows per cell under the index epoch, kept while warm (``None``:
    #: every ping batch queries every ladder cell).
    index_cache: IndexCache | None = field(default_factory=IndexCache)
    #: Runs independent store calls concurrently (``None``: one after another).
    pool: Executor | None = None
    #: The push gateway (Amazon SNS, or a fake in tests); ``None``: no pushes.
    push: PushGateway | None = None
    #: The compiled campaigns, re-read at most every ``campaign_cache_s``.
    campaign_cache: CampaignCache = field(default_factory=CampaignCache)
    #: Weather: the alert-area resolver and the fan-out queue (None: inline).
    resolver: AreaResolver | None = None
    queue: FanoutQueue | None = None
    #: Alert areas and their region plans, kept while warm.
    plans: PlanCache = field(default_factory=PlanCache)
    #: Backoff between retries of a store write (tests pass a recorder).
    sleep: Sleep = system_sleep

    @classmethod
    def over(cls, stores: Stores, settings: Settings, **kwargs: Any) -> Deps:
        """Deps over a bundle of repositories (the other fields by keyword)."""
        return cls(fences=stores.fences, devices=stores.devices, campaigns=stores.campaigns,
                   deliveries=stores.deliveries, weather=stores.weather, settings=settings, **kwargs)

    @property
    def stores(self) -> Stores:
        """The repositories as one bundle (tests wrap them, e.g. with faults)."""
        return Stores(self.fences, self.devices, self.campaigns, self.deliveries, self.weather)

    def both(self, first: Callable[[], A], second: Callable[[], B]) -> tuple[A, B]:
        """Two independent store calls at once (one sequential round trip)."""
        if self.pool is None:
            return first(), second()
        a, b = self.pool.submit(first), self.pool.submit(second)
        return a.result(), b.result()

    def parallel(self, fns: Sequence[Callable[[], T]]) -> list[T]:
        """Run independent store calls concurrently (one sequential round trip)."""
        if len(fns) <= 1 or self.pool is None:
            return [f() for f in fns]
        return [f.result() for f in [self.pool.submit(fn) for fn in fns]]
