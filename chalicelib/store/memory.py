"""In-memory fakes of the store ports, for service tests and benchmarks.

They keep the same contract as the DynamoDB adapters (the same contract
tests run against both) and count the batched reads they serve.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import replace
from typing import Any, Iterable, Iterator

from chalicelib.geo.cover import Cover
from chalicelib.presence import LocationState
from chalicelib.push.model import HELD, CampaignRecord, Delivery
from chalicelib.store.ports import ConcurrentUpdate, Device, FenceRecord, FenceVersion, IndexEntry
from chalicelib.store.schema import (
    check_delivery_changes,
    check_new_delivery,
    decode_page_token,
    delivery_sort_key,
    encode_page_token,
    fixed,
    list_index,
    release_key,
)

DAY_S = 86400.0


def _ck(d: Delivery) -> str:
    return delivery_sort_key(d.created_at, d.delivery_id)


class InMemoryStore:
    def __init__(self) -> None:
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

    def save_profile(self, device: Device) -> bool:
        with self._lock:
            cur = self.devices.get(device.device_id)
            if cur is None:
                self.devices[device.device_id] = copy.deepcopy(device)
                return True
            keep_state, keep_v, keep_w = cur.state, cur.state_version, cur.written_at
            new = copy.deepcopy(device)
            new.created_at = cur.created_at
            new.outbox = cur.outbox
            if device.location_consent:
                new.state, new.state_version, new.written_at = keep_state, keep_v, keep_w
            else:
                new.state, new.state_version, new.written_at = None, keep_v + 1, 0.0
            self.devices[device.device_id] = new
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
            self.writes += 1

    def clear_outbox(self, device_id: str, keys: Iterable[str]) -> None:
        with self._lock:
            cur = self.devices.get(device_id)
            if cur is not None:
                for k in keys:
                    cur.outbox.pop(k, None)
                self.writes += 1

    def delete_device(self, device_id: str) -> bool:
        with self._lock:
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
            return True

    def scan_locations(self, segments: int = 4) -> Iterator[Device]:
        with self._lock:
            found = [copy.deepcopy(d) for d in self.devices.values() if d.state is not None]
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
                self.deliveries[delivery.delivery_id] = copy.deepcopy(delivery)
                self.writes += 1
                return None
            cur.dups += 1
            return copy.deepcopy(cur)

    def get_deliveries(self, delivery_ids: list[str]) -> dict[str, Delivery]:
        self.reads += 1
        with self._lock:
            return {i: copy.deepcopy(self.deliveries[i]) for i in delivery_ids if i in self.deliveries}

    def update_delivery(
        self, delivery_id: str, changes: dict[str, Any], *, expect_status: str | None = None, absent: str | None = None
    ) -> bool:
        check_delivery_changes(changes, absent)
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
            for name, value in changes.items():
                setattr(cur, name, value)
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
