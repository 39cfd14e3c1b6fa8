"""Every Protocol the services depend on, in one place.

The use cases import their ports from here and never an adapter: SNS, SQS,
the weather.gov zone API and the county set are reached through these
Protocols, and the composition root (:mod:`chalicelib.container`) picks the
implementations. The record types the ports exchange stay with their domain
(:mod:`chalicelib.push.model`, :mod:`chalicelib.weather.area`).

The store's Protocols and records (:mod:`chalicelib.store.ports`) are
re-exported here too. They are resolved on first attribute access rather
than imported at the top: ``store.ports`` imports ``push.model``, which takes
:class:`PushGateway` from this module, so an eager import would be a cycle.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.clock import Clock, Sleep, system_clock, system_sleep

if TYPE_CHECKING:
    from chalicelib.push.model import Endpoint, PushMessage
    from chalicelib.store.ports import (
        CampaignStore,
        ConcurrentUpdate,
        DeliveryStore,
        Device,
        DeviceStore,
        FenceRecord,
        FenceVersion,
        GeofenceStore,
        IndexEntry,
        RegionQuery,
        Store,
    )
    from chalicelib.weather.alerts import Alert
    from chalicelib.weather.area import Area


# ---------------------------------------------------------------- push
class PushGateway(Protocol):
    """Amazon SNS mobile push (or a fake)."""

    def ensure_endpoint(self, device_id: str, platform: str, token: str, endpoint_arn: str | None) -> Endpoint:
        """AWS's endpoint lifecycle: create once (``endpoint_arn`` None);
        otherwise read the endpoint's attributes, update a changed token and
        re-enable; recreate when it is gone. Never creates blindly."""
        ...

    def delete_endpoint(self, endpoint_arn: str) -> None:
        """Idempotent: a missing endpoint is fine."""
        ...

    def publish(self, endpoint_arn: str, platform: str, message: PushMessage) -> str:
        """→ the SNS message id. Throttling is retried with backoff inside;
        raises :class:`EndpointDisabled` or :class:`PushError` (with a reason)."""
        ...


# ---------------------------------------------------------------- weather
class FanoutQueue(Protocol):
    """Where the weather planner puts chunks of devices to send to (SQS, or
    an in-process list in tests)."""

    def send(self, name: str, bodies: Iterable[str]) -> int:
        """Enqueue every body on queue ``name``; → how many were sent."""
        ...


class ZoneFetcher(Protocol):
    """An NWS zone's polygon by its URL (cached; ``None`` when unusable)."""

    def geometry(self, url: str) -> Any | None: ...


class CountySet(Protocol):
    """County polygons by SAME code."""

    def union(self, same_codes: Iterable[str]) -> tuple[Any | None, tuple[str, ...]]:
        """→ (the union of the counties' polygons or None, the codes without one)."""
        ...


class AreaResolver(Protocol):
    """An alert → the area it covers (polygon, counties or zones), or None."""

    def resolve(self, alert: Alert) -> Area | None: ...


_STORE_NAMES = frozenset({
    "CampaignStore", "ConcurrentUpdate", "DeliveryStore", "Device", "DeviceStore", "FenceRecord", "FenceVersion",
    "GeofenceStore", "IndexEntry", "RegionQuery", "Store",
})


def __getattr__(name: str) -> Any:
    if name in _STORE_NAMES:
        return getattr(importlib.import_module("chalicelib.store.ports"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AreaResolver", "CampaignStore", "Clock", "ConcurrentUpdate", "CountySet", "DeliveryStore", "Device", "DeviceStore",
    "FanoutQueue", "FenceRecord", "FenceVersion", "GeofenceStore", "IndexEntry", "PushGateway", "RegionQuery", "Sleep",
    "Store", "ZoneFetcher", "system_clock", "system_sleep",
]
