"""Every port (Protocol) the services depend on, in one place, and the
records they exchange.

The use cases import their ports from here and never an adapter: DynamoDB
(one repository per aggregate: fences, devices, campaigns, deliveries,
weather), SNS, SQS, the weather.gov zone API and the county set are reached
through these Protocols, and the composition root
(:mod:`chalicelib.container`) picks the implementations. Each repository has
a DynamoDB adapter and an in-memory twin (:mod:`chalicelib.store`); the same
contract tests run against both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.clock import Clock, Sleep, system_clock, system_sleep
from chalicelib.geo.cover import Cover
from chalicelib.geo.shape import FenceShape
from chalicelib.presence import LocationState
from chalicelib.push.model import CampaignRecord, Delivery, Endpoint, PushMessage
from chalicelib.weather.region import RegionQuery

if TYPE_CHECKING:
    from chalicelib.weather.alerts import Alert
    from chalicelib.weather.area import Area


# ---------------------------------------------------------------- store
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


class ConcurrentUpdate(Exception):
    """A conditional write lost a race; re-read and retry."""


@dataclass(frozen=True)
class EndpointClaim:
    """Which device record holds an SNS endpoint. SNS gives one endpoint per
    push token and platform application, so two device records registered
    with one token (an app reinstalled, a shared tablet) would share it; the
    claim names the one device that uses it. ``version`` moves on at every
    change (the conditional writes compare it)."""

    endpoint_arn: str
    owner: str
    version: int


@dataclass(frozen=True)
class EndpointHandover:
    """The claims a registration changes in the same atomic write as the
    profile: ``seen`` is the claim on the device's new ``endpoint_arn`` as
    read (None: unclaimed), written only while it is unchanged (a claim the
    device holds already is only checked: still its own); ``displace``:
    the claim's previous owner still uses that endpoint and loses it
    (``endpoint_arn`` removed, ``push_enabled`` false); ``release``: the
    device's own claim on the endpoint it used before, removed."""

    seen: EndpointClaim | None = None
    displace: bool = False
    release: EndpointClaim | None = None


class FenceRepo(Protocol):
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

    def lookup_cells(self, cells: Iterable[int]) -> dict[int, dict[str, IndexEntry]]:
        """The index rows of these cells (every cell queried at once: one
        round trip); cells without rows are absent."""

    def index_epoch(self) -> int:
        """A number every completed fence put or delete increases (read
        consistently): index rows read after reading epoch ``n`` stay valid
        while the epoch is still ``n``."""


class DeviceRepo(Protocol):
    region_shards: int

    def get_device(self, device_id: str, consistent: bool = False) -> Device | None: ...

    def get_devices(self, device_ids: Iterable[str]) -> dict[str, Device]:
        """Many devices in one batched read (one round trip); unknown ids
        are absent. A ping batch issues it together with
        :meth:`FenceRepo.lookup_cells`."""

    def save_profile(
        self, device: Device, *, create: bool | None = None, handover: EndpointHandover | None = None
    ) -> bool:
        """Create or update the profile (not the location state); True if new.

        ``create=True``: only create (with ``device.secret_hash``); raises
        :class:`ConcurrentUpdate`, writing nothing, when the id exists — of
        two concurrent first registrations exactly one wins.
        ``create=False``: only update a device whose stored secret hash is
        ``device.secret_hash`` (None: it has none); raises
        :class:`ConcurrentUpdate`, writing nothing, otherwise (deleted or
        re-created meanwhile). The stored hash is never changed.
        ``create=None``: create or update (fixtures, benchmarks); a stored
        secret hash is kept, a new item gets ``device.secret_hash``.
        ``handover``: the endpoint claims changed with the profile, all or
        nothing (:class:`EndpointHandover`); :class:`ConcurrentUpdate` when
        a claim changed since it was read. The device then holds the claim
        on ``device.endpoint_arn``."""

    def profile_bytes(self, device: Device) -> int:
        """The size of the profile as stored (DynamoDB's count: UTF-8 bytes
        of every attribute name and value), location state not included."""

    def get_endpoint_claim(self, endpoint_arn: str) -> EndpointClaim | None:
        """The claim on an endpoint (strongly consistent), or None."""

    def save_state(
        self, device_id: str, expected_version: int, state: LocationState | None, written_at: float, outbox: dict[str, dict] | None = None
    ) -> None:
        """Conditional write of the location state; raises ConcurrentUpdate.
        ``outbox`` entries are added in the same write (existing ones stay)."""

    def clear_outbox(self, device_id: str, keys: Iterable[str]) -> None:
        """Remove these outbox entries (their pushes are decided); idempotent."""

    def delete_device(
        self, device_id: str, *, secret_hash: str | None = None, release: EndpointClaim | None = None
    ) -> bool:
        """Delete the device item; False when there was none. With
        ``secret_hash``, only while that is the stored hash: raises
        :class:`ConcurrentUpdate`, deleting nothing, otherwise. ``release``:
        the device's claim on its endpoint, removed in the same atomic write
        while unchanged (:class:`ConcurrentUpdate` otherwise)."""

    def set_push_state(self, device_id: str, endpoint_arn: str | None, push_enabled: bool) -> bool:
        """Set the SNS endpoint ARN (``None`` removes it) and whether pushes
        can be delivered; False when the device does not exist."""

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


class CampaignRepo(Protocol):
    def put_campaign(self, campaign_id: str, definition: dict, now_iso: str) -> CampaignRecord:
        """Create or replace; version = previous + 1; created_at kept."""

    def get_campaign(self, campaign_id: str) -> CampaignRecord | None: ...

    def delete_campaign(self, campaign_id: str) -> bool: ...

    def list_campaigns(self) -> list[CampaignRecord]:
        """Every campaign (few: hundreds at most), any order."""


class DeliveryRepo(Protocol):
    def claim_delivery(self, delivery: Delivery) -> Delivery | None:
        """Conditional create. ``None`` when this call created the record;
        otherwise the existing record (its ``dups`` counter incremented)."""

    def get_deliveries(self, delivery_ids: list[str]) -> dict[str, Delivery]: ...

    def update_delivery(
        self, delivery_id: str, changes: dict[str, Any], *, expect_status: str | None = None, absent: str | None = None,
        updated_before: float | None = None,
    ) -> bool:
        """Set the given Delivery fields (``None`` removes one). Conditional on
        ``status == expect_status``, the field ``absent`` not being set and/or
        ``updated_at`` (``created_at`` when unset) ≤ ``updated_before`` (a
        lease: of two take-overs of a stale record, the one that moves
        ``updated_at`` on first wins); False when the condition failed or
        the record does not exist. A record entering ``pending`` or
        ``publishing`` from another status needs ``updated_at``."""

    def list_deliveries(
        self,
        *,
        campaign_id: str | None = None,
        device_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
        next_token: str | None = None,
    ) -> tuple[list[Delivery], str | None]:
        """Newest first (created_at, then delivery_id, descending). Without a
        campaign or device, only records created from 91 days before the
        store clock's tomorrow to tomorrow (records expire after 90 days)."""

    def campaign_deliveries(self, campaign_id: str) -> Iterator[Delivery]:
        """All records of a campaign (stats)."""

    def device_deliveries(self, device_id: str, since: float) -> list[Delivery]:
        """The device's records created at or after ``since``, newest first."""

    def due_held(self, now: float, limit: int = 100) -> list[Delivery]:
        """Held records whose ``release_at`` ≤ now, oldest release first."""

    def stale_open(self, before: float, limit: int = 100) -> list[Delivery]:
        """Records still ``pending`` or ``publishing`` whose ``updated_at``
        (``created_at`` when unset) ≤ ``before``, oldest first: what an
        invocation that died left behind (an index, never a scan)."""

    def reserve_send(
        self, campaign_id: str, device_id: str, now: float, per_day: int | None, min_gap_s: float | None
    ) -> bool:
        """Frequency caps, race-safe (conditional write): True and the send is
        counted when fewer than ``per_day`` sends in the last 24 h and none in
        the last ``min_gap_s`` seconds; False otherwise (nothing changed).
        The decision is :func:`chalicelib.push.caps.decide_cap`."""


class WeatherRepo(Protocol):
    def get_alert_records(self, alert_ids: list[str]) -> dict[str, dict]:
        """Records of the alerts already processed, by id."""

    def put_alert_record(self, alert_id: str, record: dict, expires_at: float) -> bool:
        """Create the record; False when the alert already has one."""

    def put_alert_records(self, records: list[tuple[str, dict, float]]) -> set[str]:
        """Create each ``(alert id, record, expires_at)`` whose alert has no
        record yet (the first of a repeated id wins); → the ids created."""

    def advance_alert(self, alert_id: str, record: dict, expires_at: float, *, from_status: tuple[str, ...]) -> bool:
        """Replace the record when its status is one of ``from_status``; False otherwise."""

    def forget_alert(self, alert_id: str) -> None:
        """Remove the alert's record while it is still ``queued``."""

    def get_members(self, alert_ids: list[str]) -> dict[str, str]:
        """The lineage each known alert id belongs to."""

    def add_members(self, alert_ids: list[str], lineage_id: str, expires_at: float) -> dict[str, str]:
        """File each id under ``lineage_id`` unless it has a lineage already;
        → the lineage each id has afterwards."""

    def file_members(self, members: list[tuple[str, str, float]]) -> set[str]:
        """File each ``(alert id, lineage, expires_at)`` unless the id has a
        lineage already (the first of a repeated id wins); → the ids filed now."""

    def get_lineages(self, lineage_ids: list[str]) -> dict[str, dict]: ...

    def touch_lineage(self, lineage_id: str, alert_id: str, now: float, expires_at: float) -> dict:
        """Create the lineage or add ``alert_id`` to it; → the lineage after
        the update (an ended lineage stays ended: the caller checks)."""

    def end_lineage(self, lineage_id: str, reason: str, now: float, expires_at: float) -> None:
        """Mark the lineage ended (creating it when unknown); idempotent, the
        first reason is kept."""

    def get_feed_state(self, url: str) -> dict | None: ...

    def put_feed_state(self, url: str, state: dict) -> None:
        """Replace the feed's state (fields set to None are dropped)."""

    def put_conditions(self, items: list[tuple[int, dict, float]]) -> None:
        """Store each cell's observation unless the cell holds a newer one."""

    def get_conditions(self, cells: list[int], now: float) -> dict[int, dict]:
        """The unexpired observation of each cell that has one."""


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


__all__ = [
    "AreaResolver",
    "CampaignRepo",
    "Clock",
    "ConcurrentUpdate",
    "CountySet",
    "DeliveryRepo",
    "Device",
    "DeviceRepo",
    "FanoutQueue",
    "FenceRecord",
    "FenceRepo",
    "FenceVersion",
    "IndexEntry",
    "PushGateway",
    "RegionQuery",
    "Sleep",
    "WeatherRepo",
    "ZoneFetcher",
    "newest_entries",
    "system_clock",
    "system_sleep",
]
