"""What every use case takes: the ports and the configuration, typed.

Built by the composition root (:mod:`chalicelib.container`) for AWS, and by
tests and benchmarks over in-memory fakes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TypeVar

from chalicelib.cache import VersionCache
from chalicelib.clock import Clock, Sleep, system_clock, system_sleep
from chalicelib.ports import AreaResolver, FanoutQueue, PushGateway
from chalicelib.services.delivery import CampaignCache
from chalicelib.settings import Settings
from chalicelib.store.ports import Store

T = TypeVar("T")


@dataclass
class Deps:
    """The ports and the configuration every use case takes."""

    #: The composite store of today (one repository per aggregate later).
    store: Store
    settings: Settings
    clock: Clock = system_clock
    #: Fence geometry by (fence id, version), kept while the Lambda is warm.
    cache: VersionCache = field(default_factory=VersionCache)
    #: Runs independent store calls concurrently (``None``: one after another).
    pool: Executor | None = None
    #: The push gateway (Amazon SNS, or a fake in tests); ``None``: no pushes.
    push: PushGateway | None = None
    campaigns: CampaignCache = field(default_factory=CampaignCache)
    #: Weather: the alert-area resolver and the fan-out queue (None: inline).
    resolver: AreaResolver | None = None
    queue: FanoutQueue | None = None
    #: Backoff between retries of a store write (tests pass a recorder).
    sleep: Sleep = system_sleep

    def parallel(self, fns: Sequence[Callable[[], T]]) -> list[T]:
        """Run independent store calls concurrently (one sequential round trip)."""
        if len(fns) <= 1 or self.pool is None:
            return [f() for f in fns]
        return [f.result() for f in [self.pool.submit(fn) for fn in fns]]
