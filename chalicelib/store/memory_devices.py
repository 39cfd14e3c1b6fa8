"""Devices in memory: the twin of :class:`chalicelib.store.devices.DynamoDevices`,
with the region index's twin (:class:`chalicelib.store.memory_region.RegionIndex`)."""

from __future__ import annotations

import copy
import threading
import zlib
from collections.abc import Iterable, Iterator

from chalicelib.presence import LocationState
from chalicelib.store.memory_base import Tally
from chalicelib.store.memory_region import RegionIndex
from chalicelib.ports import ConcurrentUpdate, Device, EndpointClaim, EndpointHandover, RegionQuery
from chalicelib.store.devices import profile_bytes


class MemoryDevices:
    """``region_shards``: partitions per coarse cell of the region index;
    ``region_queries_made``/``region_items_read`` count its reads as
    DynamoDB would (one Query per partition and range; items)."""

    def __init__(self, tally: Tally | None = None, region_shards: int = 4) -> None:
        self.tally = tally or Tally()
        self._lock = threading.RLock()
        self.devices: dict[str, Device] = {}
        self.region_shards = region_shards
        self._region = RegionIndex(region_shards)
        self.region_queries_made = 0
        self.region_items_read = 0
        #: Endpoint claims by endpoint ARN (the claim items' twin).
        self.claims: dict[str, EndpointClaim] = {}

    def get_device(self, device_id: str, consistent: bool = False) -> Device | None:
        d = self.devices.get(device_id)
        return copy.deepcopy(d) if d else None

    def get_devices(self, device_ids: Iterable[str]) -> dict[str, Device]:
        self.tally.read()
        return {d: copy.deepcopy(self.devices[d]) for d in device_ids if d in self.devices}

    def save_profile(
        self, device: Device, *, create: bool | None = None, handover: EndpointHandover | None = None
    ) -> bool:
        with self._lock:
            cur = self.devices.get(device.device_id)
            if create is True and cur is not None:
                raise ConcurrentUpdate(device.device_id)
            if create is False and (cur is None or cur.secret_hash != device.secret_hash):
                raise ConcurrentUpdate(device.device_id)
            if handover is not None:
                self._check_handover(device, handover)
                self._apply_handover(device, handover)
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

    def _check_handover(self, device: Device, handover: EndpointHandover) -> None:
        """Every condition of the DynamoDB transaction, before any change."""
        arn, seen = device.endpoint_arn, handover.seen
        held = self.claims.get(arn) if arn is not None else None
        if arn is not None and seen is not None and seen.owner == device.device_id:
            if held is None or held.owner != device.device_id:
                raise ConcurrentUpdate(device.device_id)
        elif arn is not None:
            if held != seen:
                raise ConcurrentUpdate(device.device_id)
            if handover.displace and seen is not None and seen.owner != device.device_id:
                prev = self.devices.get(seen.owner)
                if prev is None or prev.endpoint_arn != arn:
                    raise ConcurrentUpdate(device.device_id)
        release = handover.release
        if release is not None and release.endpoint_arn != arn and self.claims.get(release.endpoint_arn) != release:
            raise ConcurrentUpdate(device.device_id)

    def _apply_handover(self, device: Device, handover: EndpointHandover) -> None:
        arn, seen = device.endpoint_arn, handover.seen
        if arn is not None and not (seen is not None and seen.owner == device.device_id):
            version = seen.version + 1 if seen is not None else 1
            self.claims[arn] = EndpointClaim(arn, device.device_id, version)
            if handover.displace and seen is not None and seen.owner != device.device_id:
                prev = self.devices[seen.owner]
                prev.endpoint_arn, prev.push_enabled = None, False
                self._region.set(prev.device_id, prev)
        if handover.release is not None and handover.release.endpoint_arn != arn:
            del self.claims[handover.release.endpoint_arn]

    def profile_bytes(self, device: Device) -> int:
        return profile_bytes(device)

    def get_endpoint_claim(self, endpoint_arn: str) -> EndpointClaim | None:
        with self._lock:
            return self.claims.get(endpoint_arn)

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
            self.tally.write()

    def clear_outbox(self, device_id: str, keys: Iterable[str]) -> None:
        with self._lock:
            cur = self.devices.get(device_id)
            if cur is not None:
                for k in keys:
                    cur.outbox.pop(k, None)
                self.tally.write()

    def delete_device(
        self, device_id: str, *, secret_hash: str | None = None, release: EndpointClaim | None = None
    ) -> bool:
        with self._lock:
            if secret_hash is not None:
                cur = self.devices.get(device_id)
                if cur is None or cur.secret_hash != secret_hash:
                    raise ConcurrentUpdate(device_id)
            if release is not None:
                if self.claims.get(release.endpoint_arn) != release:
                    raise ConcurrentUpdate(device_id)
                del self.claims[release.endpoint_arn]
            self._region.set(device_id, None)
            return self.devices.pop(device_id, None) is not None

    def set_push_state(self, device_id: str, endpoint_arn: str | None, push_enabled: bool) -> bool:
        with self._lock:
            cur = self.devices.get(device_id)
            if cur is None:
                return False
            cur.endpoint_arn, cur.push_enabled = endpoint_arn, bool(push_enabled)
            self._region.set(device_id, cur)
            return True

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
                self.tally.write()
            return min(len(due), limit), len(due) <= limit

    def devices_in_ranges(self, queries: list[RegionQuery]) -> Iterator[Device]:
        """The index's own light copies (as a GSI returns its projection):
        read them, do not change them."""
        with self._lock:
            found, items = self._region.find(queries)
            self.region_queries_made += sum(len(q.ranges) for q in queries)
            self.region_items_read += items
        yield from found
