"""In-memory fakes of the store ports, for service tests and benchmarks.

They keep the same contract as the DynamoDB adapters (the same contract
tests run against both) and count the batched reads they serve.
"""

from __future__ import annotations

import copy
import json
import threading
import zlib
from dataclasses import replace
from typing import Any, Iterable, Iterator

import numpy as np

from chalicelib.geo.cover import Cover
from chalicelib.presence import LocationState
from chalicelib.push.model import HELD, CampaignRecord, Delivery
from chalicelib.store.weather_memory import WeatherMemoryMixin
from chalicelib.store.ports import ConcurrentUpdate, Device, FenceRecord, FenceVersion, IndexEntry, RegionQuery
from chalicelib.store.schema import (
    OPEN_STATUSES,
    check_delivery_changes,
    check_new_delivery,
    decode_page_token,
    delivery_sort_key,
    encode_page_token,
    fixed,
    list_index,
    open_key,
    open_since,
    release_key,
)
from chalicelib.weather.region import location_cell, region_keys

DAY_S = 86400.0


def _ck(d: Delivery) -> str:
    return delivery_sort_key(d.created_at, d.delivery_id)


def _copy_delivery(d: Delivery) -> Delivery:
    """A shallow copy (every field is an immutable value), a third of what
    ``copy.copy``'s reduce protocol costs."""
    new = object.__new__(Delivery)
    vars(new).update(vars(d))
    return new


def _light(d: Device) -> Device:
    """What the ``by_region`` index projects of a device (positional: a
    million-device benchmark builds them)."""
    return Device(d.device_id, "", "", None, {}, dict(d.consent), d.push_enabled, "", "", d.state, d.state_version,
                  0.0, None, {})


class _RegionIndex:
    """The ``by_region`` GSI's fake. Like the GSI it keeps its own copy of
    what it projects, written with the device: device → (rc, cell9, light
    Device); and, per partition, a sorted array of cells with the parallel
    light Devices, rebuilt lazily on the first read after a device entered,
    left or moved (a million devices: ~0.5 s). Other changes (consent, push
    flag, a new location in the same cell) update the arrays in place."""

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self.entries: dict[str, tuple[str, int, Device]] = {}
        self.dirty = False
        self.parts: dict[str, tuple[int, int]] = {}
        self.cells = np.zeros(0, np.uint64)
        self.devs = np.zeros(0, object)
        self.pos: dict[str, int] = {}

    def set(self, device_id: str, device: Device | None) -> None:
        """Index ``device`` as stored now (None or no location: not indexed)."""
        if device is None or device.state is None:
            if self.entries.pop(device_id, None) is not None:
                self.dirty = True
            return
        cell = location_cell(device.state)
        rc, _ = region_keys(device_id, cell, self.shards)
        light = _light(device)
        old = self.entries.get(device_id)
        self.entries[device_id] = (rc, cell, light)
        if old is None or old[:2] != (rc, cell):
            self.dirty = True
        elif not self.dirty:
            self.devs[self.pos[device_id]] = light

    def rebuild(self) -> None:
        n = len(self.entries)
        names: dict[str, int] = {}
        values = self.entries.values()
        code = np.fromiter((names.setdefault(rc, len(names)) for rc, _, _ in values), dtype=np.int64, count=n)
        cells = np.fromiter((c for _, c, _ in values), dtype=np.uint64, count=n)
        devs = np.fromiter((d for _, _, d in values), dtype=object, count=n)
        order = np.lexsort((cells, code))
        code, self.cells, self.devs = code[order], cells[order], devs[order]
        bounds = np.searchsorted(code, np.arange(len(names) + 1))
        self.parts = {rc: (int(bounds[k]), int(bounds[k + 1])) for rc, k in names.items()}
        self.pos = {d.device_id: i for i, d in enumerate(self.devs.tolist())}
        self.dirty = False

    def find(self, queries: list[RegionQuery]) -> tuple[list[Device], int]:
        """The index's Devices in the queries' ranges (each once), and how
        many items the range reads return (duplicates included)."""
        if self.dirty:
            self.rebuild()
        spans: list[np.ndarray] = []
        for q in queries:
            part = self.parts.get(q.partition)
            if part is None or not q.ranges:
                continue
            a, b = part
            r = np.array(q.ranges, dtype=np.uint64).reshape(-1, 2)
            start = a + np.searchsorted(self.cells[a:b], r[:, 0], side="left")
            stop = a + np.searchsorted(self.cells[a:b], r[:, 1], side="right")
            spans += [np.arange(s, e) for s, e in zip(start.tolist(), stop.tolist()) if e > s]
        if not spans:
            return [], 0
        at = np.concatenate(spans)
        return self.devs[np.unique(at)].tolist(), len(at)


class InMemoryStore(WeatherMemoryMixin):
    def __init__(self, region_shards: int = 4) -> None:
        self._lock = threading.RLock()
        self.fences: dict[str, FenceRecord] = {}
        self.versions: dict[tuple[str, int], FenceVersion] = {}
        self.covers: dict[str, Cover] = {}
        self.cells: dict[int, dict[str, IndexEntry]] = {}
        self.devices: dict[str, Device] = {}
        self.campaigns: dict[str, CampaignRecord] = {}
        self.deliveries: dict[str, Delivery] = {}
        self.caps: dict[tuple[str, str], list[float]] = {}
        self.reads = 0  # batched reads served (round trips)
        self.writes = 0
        #: Partitions per coarse cell of the device region index.
        self.region_shards = region_shards
        self._region = _RegionIndex(region_shards)
        #: Region index reads served: Queries (one per partition and range)
        #: and items, as DynamoDB would count them.
        self.region_queries_made = 0
        self.region_items_read = 0

    # -- geofences --------------------------------------------------------
    def get_fence(self, fence_id: str) -> FenceRecord | None:
        return self.fences.get(fence_id)

    def get_fences(self, fence_ids: Iterable[str]) -> dict[str, FenceRecord]:
        self.reads += 1
        return {f: self.fences[f] for f in fence_ids if f in self.fences}

    def put_fence(self, record: FenceRecord, version: FenceVersion, cover: Cover) -> FenceRecord:
        with self._lock:
            old = self.fences.get(record.fence_id)
            n = (old.version if old else 0) + 1
            record = replace(record, version=n, created_at=old.created_at if old else record.created_at)
            version = replace(version, version=n)
            key = (record.fence_id, n)
            if key in self.versions:
                raise ConcurrentUpdate(record.fence_id)
            self.versions[key] = version
            new_cells = set()
            if record.enabled:
                for c, inside in zip(cover.cells.tolist(), cover.inside.tolist()):
                    self.cells.setdefault(c, {})[record.fence_id] = IndexEntry(n, inside)
                    new_cells.add(c)
            if old is not None:
                for c in self.covers[record.fence_id].cells.tolist():
                    if c not in new_cells:
                        self._remove(c, record.fence_id)
                self.versions.pop((old.fence_id, old.version), None)
            self.fences[record.fence_id] = record
            self.covers[record.fence_id] = cover if record.enabled else Cover(cover.cells[:0], cover.inside[:0])
            self.writes += 1
            return record

    def _remove(self, cell: int, fence_id: str) -> None:
        row = self.cells.get(cell)
        if row is not None:
            row.pop(fence_id, None)
            if not row:
                del self.cells[cell]

    def delete_fence(self, fence_id: str) -> bool:
        with self._lock:
            old = self.fences.pop(fence_id, None)
            if old is None:
                return False
            for c in self.covers.pop(fence_id).cells.tolist():
                self._remove(c, fence_id)
            self.versions.pop((fence_id, old.version), None)
            return True

    def list_fences(self, tag: str | None, limit: int, next_token: str | None):
        ids = sorted(f for f, r in self.fences.items() if tag is None or tag in r.tags)
        if next_token:
            ids = [i for i in ids if i > next_token]
        page = ids[:limit]
        more = len(ids) > limit
        return [self.fences[i] for i in page], (page[-1] if more and page else None)

    def get_versions(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], FenceVersion]:
        self.reads += 1
        return {k: self.versions[k] for k in keys if k in self.versions}

    def lookup_cells(self, cells: Iterable[int]) -> dict[int, dict[str, IndexEntry]]:
        self.reads += 1
        return {c: dict(self.cells[c]) for c in cells if c in self.cells}

    # -- devices ----------------------------------------------------------
    def get_device(self, device_id: str, consistent: bool = False) -> Device | None:
        d = self.devices.get(device_id)
        return copy.deepcopy(d) if d else None

    def save_profile(self, device: Device, *, create: bool | None = None) -> bool:
        with self._lock:
            cur = self.devices.get(device.device_id)
            if create is True and cur is not None:
                raise ConcurrentUpdate(device.device_id)
            if create is False and (cur is None or cur.secret_hash != device.secret_hash):
                raise ConcurrentUpdate(device.device_id)
            if cur is None:
                self.devices[device.device_id] = new = copy.deepcopy(device)
                self._region.set(new.device_id, new)
                return True
            keep_state, keep_v, keep_w = cur.state, cur.state_version, cur.written_at
            new = copy.deepcopy(device)
            new.created_at = cur.created_at
            new.outbox = cur.outbox
            new.secret_hash = cur.secret_hash if cur.secret_hash is not None else device.secret_hash
            if device.location_consent:
                new.state, new.state_version, new.written_at = keep_state, keep_v, keep_w
            else:
                new.state, new.state_version, new.written_at = None, keep_v + 1, 0.0
            self.devices[device.device_id] = new
            self._region.set(new.device_id, new)
            return False

    def save_state(self, device_id: str, expected_version: int, state: LocationState | None, written_at: float,
                   outbox: dict[str, dict] | None = None) -> None:
        with self._lock:
            cur = self.devices.get(device_id)
            if cur is None or cur.state_version != expected_version:
                raise ConcurrentUpdate(device_id)
            cur.state = state
            cur.state_version = expected_version + 1
            cur.written_at = written_at
            cur.outbox.update(copy.deepcopy(outbox or {}))
            self._region.set(device_id, cur)
            self.writes += 1

    def clear_outbox(self, device_id: str, keys: Iterable[str]) -> None:
        with self._lock:
            cur = self.devices.get(device_id)
            if cur is not None:
                for k in keys:
                    cur.outbox.pop(k, None)
                self.writes += 1

    def delete_device(self, device_id: str, *, secret_hash: str | None = None) -> bool:
        with self._lock:
            if secret_hash is not None:
                cur = self.devices.get(device_id)
                if cur is None or cur.secret_hash != secret_hash:
                    raise ConcurrentUpdate(device_id)
            self._region.set(device_id, None)
            return self.devices.pop(device_id, None) is not None

    def read_for_pings(self, device_ids: Iterable[str], cells: Iterable[int]):
        self.reads += 1
        devices = {d: copy.deepcopy(self.devices[d]) for d in device_ids if d in self.devices}
        rows = {c: dict(self.cells[c]) for c in cells if c in self.cells}
        return devices, rows

    def set_push_state(self, device_id: str, endpoint_arn: str | None, push_enabled: bool) -> bool:
        with self._lock:
            cur = self.devices.get(device_id)
            if cur is None:
                return False
            cur.endpoint_arn, cur.push_enabled = endpoint_arn, bool(push_enabled)
            self._region.set(device_id, cur)
            return True

    def scan_locations(self, segments: int = 4) -> Iterator[Device]:
        with self._lock:
            found = [copy.deepcopy(d) for d in self.devices.values() if d.state is not None]
        yield from found

    def expire_locations(
        self, written_before: float, *, segment: int = 0, segments: int = 1, limit: int = 20_000
    ) -> tuple[int, bool]:
        with self._lock:
            due = [
                d for d in self.devices.values()
                if d.state is not None and d.written_at < written_before
                and (segments <= 1 or zlib.crc32(d.device_id.encode()) % segments == segment)
            ]
            for d in due[:limit]:
                d.state, d.written_at, d.state_version = None, 0.0, d.state_version + 1
                self._region.set(d.device_id, d)
                self.writes += 1
            return min(len(due), limit), len(due) <= limit

    def devices_in_ranges(self, queries: list[RegionQuery]) -> Iterator[Device]:
        """The index's own light copies (as a GSI returns its projection):
        read them, do not change them."""
        with self._lock:
            found, items = self._region.find(queries)
            self.region_queries_made += sum(len(q.ranges) for q in queries)
            self.region_items_read += items
        yield from found

    # -- campaigns --------------------------------------------------------
    def put_campaign(self, campaign_id: str, definition: dict, now_iso: str) -> CampaignRecord:
        stored = json.loads(json.dumps(definition, separators=(",", ":")))  # what DynamoDB gives back
        with self._lock:
            old = self.campaigns.get(campaign_id)
            rec = CampaignRecord(
                campaign_id,
                (old.version if old else 0) + 1,
                stored,
                old.created_at if old else now_iso,
                now_iso,
            )
            self.campaigns[campaign_id] = rec
            return copy.deepcopy(rec)

    def get_campaign(self, campaign_id: str) -> CampaignRecord | None:
        rec = self.campaigns.get(campaign_id)
        return copy.deepcopy(rec) if rec else None

    def delete_campaign(self, campaign_id: str) -> bool:
        with self._lock:
            return self.campaigns.pop(campaign_id, None) is not None

    def list_campaigns(self) -> list[CampaignRecord]:
        with self._lock:
            return [copy.deepcopy(r) for r in self.campaigns.values()]

    # -- deliveries -------------------------------------------------------
    def claim_delivery(self, delivery: Delivery) -> Delivery | None:
        check_new_delivery(delivery)
        with self._lock:
            cur = self.deliveries.get(delivery.delivery_id)
            if cur is None:
                self.deliveries[delivery.delivery_id] = _copy_delivery(delivery)
                self.writes += 1
                return None
            cur.dups += 1
            return _copy_delivery(cur)

    def get_deliveries(self, delivery_ids: list[str]) -> dict[str, Delivery]:
        self.reads += 1
        with self._lock:
            return {i: copy.deepcopy(self.deliveries[i]) for i in delivery_ids if i in self.deliveries}

    def update_delivery(
        self, delivery_id: str, changes: dict[str, Any], *, expect_status: str | None = None, absent: str | None = None,
        updated_before: float | None = None,
    ) -> bool:
        check_delivery_changes(changes, absent, expect_status)
        with self._lock:
            cur = self.deliveries.get(delivery_id)
            if cur is None:
                return False
            if changes.get("status") == HELD and "release_at" not in changes and cur.release_at is None:
                raise ValueError("a held delivery needs release_at")
            if expect_status is not None and cur.status != expect_status:
                return False
            if absent is not None and getattr(cur, absent) is not None:
                return False
            if updated_before is not None and open_since(cur) > updated_before:
                return False
            vars(cur).update(changes)  # checked above: Delivery fields only
            self.writes += 1
            return True

    def _sorted(self, keep) -> list[tuple[str, Delivery]]:
        """(ck, record) of the matching records, newest first."""
        with self._lock:
            rows = [(_ck(d), copy.deepcopy(d)) for d in self.deliveries.values() if keep(d)]
        rows.sort(key=lambda r: r[0], reverse=True)
        return rows

    def list_deliveries(
        self,
        *,
        campaign_id: str | None = None,
        device_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
        next_token: str | None = None,
    ) -> tuple[list[Delivery], str | None]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        index = list_index(campaign_id, device_id)
        after = decode_page_token(next_token, index) if next_token else None
        rows = self._sorted(
            lambda d: (campaign_id is None or d.campaign_id == campaign_id)
            and (device_id is None or d.device_id == device_id)
            and (status is None or d.status == status)
        )
        if after is not None:
            rows = [r for r in rows if r[0] < after]
        page = rows[:limit]
        token = encode_page_token(index, page[-1][0]) if len(rows) > limit else None
        return [d for _, d in page], token

    def campaign_deliveries(self, campaign_id: str) -> Iterator[Delivery]:
        for _, d in self._sorted(lambda d: d.campaign_id == campaign_id):
            yield d

    def device_deliveries(self, device_id: str, since: float) -> list[Delivery]:
        start = fixed(since)
        return [d for ck, d in self._sorted(lambda d: d.device_id == device_id) if ck >= start]

    def due_held(self, now: float, limit: int = 100) -> list[Delivery]:
        end = fixed(now) + "#~"
        with self._lock:
            rows = [
                (release_key(d.release_at, d.delivery_id), copy.deepcopy(d))
                for d in self.deliveries.values()
                if d.status == HELD and d.release_at is not None
            ]
        rows = sorted((r for r in rows if r[0] <= end), key=lambda r: r[0])
        return [d for _, d in rows[:limit]]

    def stale_open(self, before: float, limit: int = 100) -> list[Delivery]:
        with self._lock:
            rows = [
                (open_key(open_since(d), d.delivery_id), copy.deepcopy(d))
                for d in self.deliveries.values()
                if d.status in OPEN_STATUSES and open_since(d) <= before
            ]
        rows.sort(key=lambda r: r[0])
        return [d for _, d in rows[:limit]]

    def reserve_send(
        self, campaign_id: str, device_id: str, now: float, per_day: int | None, min_gap_s: float | None
    ) -> bool:
        if per_day is None and min_gap_s is None:
            return True
        with self._lock:
            sends = self.caps.get((campaign_id, device_id), [])
            kept = [t for t in sends if t > now - max(DAY_S, min_gap_s or 0.0)]
            if per_day is not None and sum(1 for t in kept if t > now - DAY_S) >= per_day:
                return False
            if min_gap_s is not None and kept and now - max(kept) < min_gap_s:
                return False
            self.caps[(campaign_id, device_id)] = kept + [now]
            self.writes += 1
            return True
