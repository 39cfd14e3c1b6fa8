"""The composition root: the only place adapters (the stores over the AWS
clients of :mod:`chalicelib.store.clients`, the SNS gateway, the SQS queue,
the county set) are chosen and wired. Built lazily
on first use and cached while the Lambda is warm; tests install their own
:class:`Deps` with :func:`set_deps`.

:class:`~chalicelib.services.deps.Deps` (what every use case takes) is
typed with ports (:mod:`chalicelib.ports`) and in-process types, so the use
cases depend on Protocols only; this module picks the implementations.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from chalicelib.clock import Clock, Sleep, system_clock, system_sleep
from chalicelib.settings import Settings, get_settings

if TYPE_CHECKING:
    from chalicelib.ports import CountySet
    from chalicelib.services.deps import Deps

# Every Lambda function imports ``app.py``, which imports this module: what it
# needs is imported when :func:`build_deps` first runs, so no function's cold
# start pays for the ports, the use cases or their libraries at import time.


class LazyCounties:
    """The county polygons (a few MB to read and parse), loaded on the first
    SAME-code lookup: only an alert without a usable polygon pays for them,
    never a ping, a registration or a cold start."""

    def __init__(self, load: Callable[[], CountySet]) -> None:
        self._load = load
        self._index: CountySet | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._index is not None

    def _counties(self) -> CountySet:
        if self._index is None:
            with self._lock:
                if self._index is None:
                    self._index = self._load()
        return self._index

    def union(self, same_codes: Iterable[str]) -> tuple[Any | None, tuple[str, ...]]:
        return self._counties().union(same_codes)


class LazyResolver:
    """The alert-area resolver (shapely, the zone fetcher, the county set),
    imported and built on the first alert: only the weather functions do."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._resolver: Any = None
        self._lock = threading.Lock()

    def resolve(self, alert: Any) -> Any:
        if self._resolver is None:
            with self._lock:
                if self._resolver is None:
                    self._resolver = self._make()
        return self._resolver.resolve(alert)


def _area_resolver(settings: Settings) -> Any:
    from chalicelib.weather import area
    from chalicelib.weather.zones import ZoneFetcher

    counties = LazyCounties(area.CountyIndex.load)
    return area.AreaResolver(counties, ZoneFetcher(settings.weather_user_agent, settings.weather_http_timeout_s))


def build_deps(settings: Settings | None = None, clock: Clock = system_clock, sleep: Sleep = system_sleep) -> Deps:
    """The AWS wiring: DynamoDB, SNS and SQS clients (:mod:`chalicelib.store.clients`),
    one clock and one sleep for every adapter. SNS, SQS and the area
    resolver are made on first use."""
    from chalicelib.logs import ContextThreadPool
    from chalicelib.push.sns import SnsGateway
    from chalicelib.services.delivery import CampaignCache
    from chalicelib.services.deps import Deps
    from chalicelib.services.fence_cache import IndexCache, VersionCache
    from chalicelib.store import dynamo_stores
    from chalicelib.store.clients import AwsClients
    from chalicelib.weather.fanout import SqsQueue

    settings = settings or get_settings()
    aws = AwsClients()
    # Its tasks run in the submitter's context: their log lines keep the request id.
    pool = ContextThreadPool(max_workers=16, thread_name_prefix="hexcast-io")
    stores = dynamo_stores(aws.dynamodb(), settings, clock=clock, sleep=sleep)
    return Deps.over(
        stores,
        settings,
        clock=clock,
        cache=VersionCache(settings.geometry_cache_size),
        index_cache=IndexCache(settings.index_cache_cells, settings.index_cache_s),
        pool=pool,
        push=SnsGateway(aws.sns(), settings, sleep),
        campaign_cache=CampaignCache(settings.campaign_cache_s),
        resolver=LazyResolver(lambda: _area_resolver(settings)),
        queue=SqsQueue(aws.sqs(), sleep),
        sleep=sleep,
    )


_lock = threading.Lock()
_deps: Deps | None = None


def get_deps() -> Deps:
    """The process's :class:`Deps`, built on first use."""
    global _deps
    if _deps is None:
        with _lock:
            if _deps is None:
                _deps = build_deps()
    return _deps


def set_deps(deps: Deps | None) -> None:
    """Install ``deps`` (tests, the local stack); ``None`` rebuilds on next use."""
    global _deps
    _deps = deps


_weather: tuple[Deps, Deps] | None = None  # (the base, the weather functions' own)


def get_weather_deps() -> Deps:
    """The :class:`Deps` of the weather functions (alert planner, fan-out
    sender): the process's, with a thread pool of their own, so storm work
    never queues behind — or in front of — a ping's store calls. (Deployed,
    each function is a process of its own anyway; the local stack runs them
    all in one.)"""
    global _weather
    base = get_deps()
    cached = _weather
    if cached is not None and cached[0] is base:
        return cached[1]
    with _lock:
        if _weather is None or _weather[0] is not base:
            pool = None
            if base.pool is not None:
                from chalicelib.logs import ContextThreadPool

                pool = ContextThreadPool(max_workers=8, thread_name_prefix="hexcast-weather")
            _weather = (base, dataclasses.replace(base, pool=pool))
        return _weather[1]


__all__ = ["LazyCounties", "LazyResolver", "build_deps", "get_deps", "get_weather_deps", "set_deps"]
