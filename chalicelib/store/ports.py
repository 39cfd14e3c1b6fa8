"""Ports (Protocols) the services depend on, and the records they exchange."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Protocol

from chalicelib.geo.cover import Cover
from chalicelib.geo.shape import FenceShape
from chalicelib.presence import LocationState
from chalicelib.push.model import CampaignStore, DeliveryStore


@dataclass(frozen=True)
class FenceRecord:
    """A fence's current definition (the ``META`` item)."""

    fence_id: str
    version: int
    kind: str
    name: str
    tags: tuple[str, ...]
    enabled: bool
    area_km2: float
    cells: int
    feature: dict
    created_at: str
    updated_at: str

    def summary(self) -> dict:
        return {"id": self.fence_id, "name": self.name, "tags": list(self.tags)}


@dataclass(frozen=True)
class FenceVersion:
    """One immutable version of a fence: what pings need for the exact test.
    Cached in the warm Lambda keyed by ``(fence_id, version)``."""

    fence_id: str
    version: int
    name: str
    tags: tuple[str, ...]
    dwell_minutes: float | None
    shape: FenceShape


@dataclass(frozen=True)
class IndexEntry:
    version: int
    inside: bool


@dataclass
class Device:
    device_id: str
    platform: str
    push_token: str
    user_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    consent: dict[str, bool] = field(default_factory=dict)
    push_enabled: bool = True
    created_at: str = ""
    updated_at: str = ""
    state: LocationState | None = None
    state_version: int = 0  # for conditional location writes
    written_at: float = 0.0  # when the location state was last written
    endpoint_arn: str | None = None  # the SNS platform endpoint, once created
    #: Events stored with the location state whose pushes are not decided
    #: yet (the outbox): key → {"type", "fence_id", "at", "visit_ts"}.
    outbox: dict[str, dict] = field(default_factory=dict)
    #: ``sha256:<hex>`` of the device secret handed out at registration
    #: (never the secret itself); written only when the device is created.
    secret_hash: str | None = field(default=None, repr=False)

    @property
    def location_consent(self) -> bool:
        return bool(self.consent.get("location"))


@dataclass(frozen=True)
class RegionQuery:
    """One partition of the device region index and the key ranges to read
    in it: inclusive ranges of resolution-9 cells (ints), sorted and
    disjoint. ``partition`` is an ``rc`` key (see
    :mod:`chalicelib.weather.region`); each range is one ``Query``."""

    partition: str
    ranges: tuple[tuple[int, int], ...]


class ConcurrentUpdate(Exception):
    """A conditional write lost a race; re-read and retry."""


class GeofenceStore(Protocol):
    def get_fence(self, fence_id: str) -> FenceRecord | None: ...

    def get_fences(self, fence_ids: Iterable[str]) -> dict[str, FenceRecord]: ...

    def put_fence(self, record: FenceRecord, version: FenceVersion, cover: Cover) -> FenceRecord:
        """Store a new version (previous + 1, whatever ``record.version``
        says) as current and replace the fence's index rows by ``cover``.
        Returns the stored record. Raises :class:`ConcurrentUpdate` when
        another writer stored that version first."""

    def delete_fence(self, fence_id: str) -> bool: ...

    def list_fences(self, tag: str | None, limit: int, next_token: str | None) -> tuple[list[FenceRecord], str | None]: ...

    def get_versions(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], FenceVersion]: ...


class DeviceStore(Protocol):
    def get_device(self, device_id: str, consistent: bool = False) -> Device | None: ...

    def save_profile(self, device: Device, *, create: bool | None = None) -> bool:
        """Create or update the profile (not the location state); True if new.

        ``create=True``: only create (with ``device.secret_hash``); raises
        :class:`ConcurrentUpdate`, writing nothing, when the id exists — of
        two concurrent first registrations exactly one wins.
        ``create=False``: only update a device whose stored secret hash is
        ``device.secret_hash`` (None: it has none); raises
        :class:`ConcurrentUpdate`, writing nothing, otherwise (deleted or
        re-created meanwhile). The stored hash is never changed.
        ``create=None``: create or update (fixtures, benchmarks); a stored
        secret hash is kept, a new item gets ``device.secret_hash``."""

    def save_state(
        self, device_id: str, expected_version: int, state: LocationState | None, written_at: float, outbox: dict[str, dict] | None = None
    ) -> None:
        """Conditional write of the location state; raises ConcurrentUpdate.
        ``outbox`` entries are added in the same write (existing ones stay)."""

    def clear_outbox(self, device_id: str, keys: Iterable[str]) -> None:
        """Remove these outbox entries (their pushes are decided); idempotent."""

    def delete_device(self, device_id: str, *, secret_hash: str | None = None) -> bool:
        """Delete the device item; False when there was none. With
        ``secret_hash``, only while that is the stored hash: raises
        :class:`ConcurrentUpdate`, deleting nothing, otherwise."""

    def set_push_state(self, device_id: str, endpoint_arn: str | None, push_enabled: bool) -> bool:
        """Set the SNS endpoint ARN (``None`` removes it) and whether pushes
        can be delivered; False when the device does not exist."""

    def scan_locations(self, segments: int = 4) -> Iterator[Device]:
        """Every device with a location state (a parallel scan: the
        audience estimate's source until a region index exists)."""

    def expire_locations(
        self, written_before: float, *, segment: int = 0, segments: int = 1, limit: int = 20_000
    ) -> tuple[int, bool]:
        """The location TTL sweep (:mod:`chalicelib.retention`): in scan
        segment ``segment`` of ``segments``, remove the location state and
        region-index keys of every device whose state was written before
        ``written_before`` (the profile stays; the state version moves on),
        at most ``limit`` of them; a state written meanwhile is never
        touched. → (removed, whether the segment was swept to its end)."""

    def devices_in_ranges(self, queries: list[RegionQuery]) -> Iterator[Device]:
        """Every device whose region keys fall in one of the queries' ranges,
        once each, in no particular order. Light Devices: only
        ``device_id``, ``consent``, ``push_enabled``, ``state`` and
        ``state_version`` are set. The index may lag writes slightly
        (a GSI is eventually consistent)."""


class Store(GeofenceStore, DeviceStore, CampaignStore, DeliveryStore, Protocol):
    def read_for_pings(
        self, device_ids: Iterable[str], cells: Iterable[int]
    ) -> tuple[dict[str, Device], dict[int, dict[str, IndexEntry]]]:
        """Devices and index rows in one batched read (one round trip)."""

    def lookup_cells(self, cells: Iterable[int]) -> dict[int, dict[str, IndexEntry]]: ...


def newest_entries(rows: Mapping[int, Mapping[str, IndexEntry]], cells: Iterable[int]) -> dict[str, IndexEntry]:
    """Merge a ping's ladder rows: per fence the entry of the highest version.

    During a re-put a ping may see the new version's row at one level and a
    not-yet-removed old row at another; the newest wins, so a ping never sees
    both versions (and never neither: the new rows are written before the old
    ones are removed).
    """
    out: dict[str, IndexEntry] = {}
    for c in cells:
        for fid, e in rows.get(c, {}).items():
            cur = out.get(fid)
            if cur is None or e.version > cur.version:
                out[fid] = e
    return out
