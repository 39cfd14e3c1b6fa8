"""Transitional: the one-object store of before the split, as a thin
facade over the repositories, so that call sites still written
``deps.store.<method>(…)`` keep working until the merge renames them to
``deps.<repo>.<method>(…)``. Delete this module (and the ``memory``/
``dynamo`` re-exports) once nothing imports it.

``read_for_pings`` is no longer a store method: here it is composed from
``devices.get_devices`` and ``fences.lookup_cells`` issued concurrently,
which is what the ping use case does itself after the merge.

The facades' ``clock`` defaults to ``time.time`` only so that the old
composition root (``deps.build_deps``) and tests that build
``InMemoryStore()`` keep working; the repositories themselves have no
default, and every test of the store passes its fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from chalicelib.retry import Clock
from chalicelib.store import Stores, dynamo_stores, memory_stores
from chalicelib.ports import Device, IndexEntry

#: Which repository serves each method of the old store.
ROUTES: dict[str, tuple[str, ...]] = {
    "fences": ("get_fence", "get_fences", "put_fence", "delete_fence", "list_fences", "get_versions", "lookup_cells"),
    "devices": ("get_device", "get_devices", "save_profile", "save_state", "clear_outbox", "delete_device",
                "set_push_state", "expire_locations", "devices_in_ranges"),
    "campaigns": ("put_campaign", "get_campaign", "delete_campaign", "list_campaigns"),
    "deliveries": ("claim_delivery", "get_deliveries", "update_delivery", "list_deliveries", "campaign_deliveries",
                   "device_deliveries", "due_held", "stale_open", "reserve_send"),
    "weather": ("get_alert_records", "put_alert_record", "get_lineages", "touch_lineage", "end_lineage",
                "get_feed_state", "put_feed_state", "put_conditions", "get_conditions"),
}


def _forward(repo: str, name: str) -> Callable[..., Any]:
    def method(self: CompositeStore, *args: Any, **kwargs: Any) -> Any:
        return getattr(getattr(self.stores, repo), name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


class CompositeStore:
    """``concurrent_reads``: ``read_for_pings`` issues its two reads at
    once (DynamoDB) or one after the other (in memory, fault injection)."""

    def __init__(self, stores: Stores, *, concurrent_reads: bool = True) -> None:
        self.stores = stores
        self.concurrent_reads = concurrent_reads
        self._ping_pool: ThreadPoolExecutor | None = None

    @property
    def region_shards(self) -> int:
        return self.stores.devices.region_shards

    @property
    def region_queries_made(self) -> int:
        return getattr(self.stores.devices, "region_queries_made", 0)

    @property
    def region_items_read(self) -> int:
        return getattr(self.stores.devices, "region_items_read", 0)

    def read_for_pings(
        self, device_ids: Iterable[str], cells: Iterable[int]
    ) -> tuple[dict[str, Device], dict[int, dict[str, IndexEntry]]]:
        cells = list(cells)
        if not self.concurrent_reads:
            return self.stores.devices.get_devices(device_ids), self.stores.fences.lookup_cells(cells)
        if not cells:
            return self.stores.devices.get_devices(device_ids), {}
        if self._ping_pool is None:
            self._ping_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hexcast-ping")
        rows = self._ping_pool.submit(self.stores.fences.lookup_cells, cells)
        devices = self.stores.devices.get_devices(device_ids)
        return devices, rows.result()


for _repo, _names in ROUTES.items():
    for _name in _names:
        setattr(CompositeStore, _name, _forward(_repo, _name))


class InMemoryStore(CompositeStore):
    """The in-memory bundle behind the old name; its dictionaries are
    reachable under the old attribute names (tests read them)."""

    def __init__(self, region_shards: int = 4, *, clock: Clock = time.time) -> None:
        super().__init__(memory_stores(clock=clock, region_shards=region_shards), concurrent_reads=False)
        self._tally = self.stores.fences.tally  # type: ignore[attr-defined]

    @property
    def reads(self) -> int:
        return self._tally.reads

    @property
    def writes(self) -> int:
        return self._tally.writes


def _twin_dict(repo: str, attr: str) -> property:
    """An in-memory twin's dictionary under the old store's attribute name
    (read and replaced by tests)."""

    def get(self: InMemoryStore) -> Any:
        return getattr(getattr(self.stores, repo), attr)

    def put(self: InMemoryStore, value: Any) -> None:
        setattr(getattr(self.stores, repo), attr, value)

    return property(get, put)


for _repo, _attrs in (("fences", ("fences", "versions", "covers", "cells")), ("devices", ("devices",)),
                      ("campaigns", ("campaigns",)), ("deliveries", ("deliveries", "caps"))):
    for _attr in _attrs:
        setattr(InMemoryStore, _attr, _twin_dict(_repo, _attr))


class DynamoStore(CompositeStore):
    """The DynamoDB bundle behind the old name and constructor."""

    def __init__(self, client: Any, settings: Any, pool: ThreadPoolExecutor | None = None,
                 clock: Clock = time.time) -> None:
        super().__init__(dynamo_stores(client, settings, clock=clock, pool=pool))
        self._client = client

    @property
    def client(self) -> Any:
        return self._client

    @client.setter
    def client(self, client: Any) -> None:
        """Swap the client of every table (tests wrap it)."""
        self._client = client
        s: Any = self.stores
        for table in (s.fences.geofences, s.fences.cells, s.devices.table, s.campaigns.table, s.deliveries.table,
                      s.weather.table):
            table.client = client
