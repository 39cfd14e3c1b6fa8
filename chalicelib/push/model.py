"""Records and ports of the push side, shared by the pipeline, the stores and
the SNS gateway. No I/O here.

A **trigger** is one occasion that may cause a push (a geofence enter, exit
or dwell of one visit; later a weather alert lineage). A **delivery** is the
one decision per ``(campaign, device, trigger key)``: its id is derived from
that key, so a retried ping, a redelivered message or a retried Lambda finds
the same record and never sends twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from chalicelib.timeutil import iso

#: Delivery statuses. ``pending`` (claimed, not decided yet) and
#: ``publishing`` (SNS call in flight) are internal and short-lived.
PENDING, PUBLISHING, SENT, SUPPRESSED, FAILED, HELD = "pending", "publishing", "sent", "suppressed", "failed", "held"
FINAL_STATUSES = (SENT, SUPPRESSED, FAILED)

GEOFENCE_TRIGGERS = ("geofence_enter", "geofence_exit", "geofence_dwell")
TRIGGER_TYPES = GEOFENCE_TRIGGERS + ("weather_alert",)
EVENT_TRIGGER = {"enter": "geofence_enter", "exit": "geofence_exit", "dwell": "geofence_dwell"}

#: Delivery records expire (DynamoDB TTL) this long after creation.
DELIVERY_RETENTION_S = 90 * 86400


@dataclass(frozen=True)
class FenceContext:
    """What a template may say about the fence (``{{ fence.name }}``)."""

    fence_id: str
    name: str
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_liquid(self) -> dict:
        return {"id": self.fence_id, "name": self.name, "tags": list(self.tags), "metadata": dict(self.metadata)}


@dataclass(frozen=True)
class Trigger:
    """One occasion.

    ``key`` identifies it for exactly-once: ``fence:<id>:<event>:<visit enter
    ts>`` for geofence events, ``alert:<lineage id>`` for weather alerts.
    ``ref`` is the fence id or alert id shown in the delivery record.
    """

    type: str  # one of TRIGGER_TYPES
    key: str
    ref: str
    at: float  # when it happened (epoch seconds)
    fence: FenceContext | None = None
    alert: dict | None = None  # `alert.*` template variables (weather issue)
    weather: dict | None = None  # conditions at the device (weather issue)
    #: Location triggers need location consent as well as push consent.
    needs_location: bool = True
    #: A hard end (an alert's end): the push TTL never runs past it.
    ends_at: float | None = None

    @classmethod
    def geofence(cls, event_type: str, fence: FenceContext, visit_ts: float, at: float) -> "Trigger":
        """``event_type`` is enter|exit|dwell; ``visit_ts`` the visit's enter time."""
        key = f"fence:{fence.fence_id}:{event_type}:{visit_ts:.3f}"
        return cls(EVENT_TRIGGER[event_type], key, fence.fence_id, at, fence=fence)

    def snapshot(self) -> str:
        """What a held push needs to be rendered at release (JSON text; the
        type, key and ref are the record's own fields)."""
        fence = None if self.fence is None else [self.fence.fence_id, self.fence.name, list(self.fence.tags), self.fence.metadata]
        data = {"at": self.at, "fence": fence, "alert": self.alert, "weather": self.weather,
                "needs_location": self.needs_location, "ends_at": self.ends_at}
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_snapshot(cls, type_: str, key: str, ref: str, text: str) -> "Trigger":
        """The trigger :meth:`snapshot` kept (ValueError when it is not one)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a trigger snapshot")
        f = data.get("fence")
        fence = None if f is None else FenceContext(str(f[0]), str(f[1]), tuple(f[2]), dict(f[3]))
        return cls(type_, key, ref, float(data["at"]), fence=fence, alert=data.get("alert"), weather=data.get("weather"),
                   needs_location=bool(data.get("needs_location", True)), ends_at=data.get("ends_at"))

    def record_json(self) -> dict:
        """The ``trigger`` object of a delivery record."""
        ref_name = "alert_id" if self.type == "weather_alert" else "fence_id"
        return {"type": self.type, ref_name: self.ref}


#: Every pair of RFC 4648 base32 digits (lower case), by its 10-bit value.
_B32_PAIRS = tuple(a + b for a in "abcdefghijklmnopqrstuvwxyz234567" for b in "abcdefghijklmnopqrstuvwxyz234567")


def delivery_id_for(campaign_id: str, device_id: str, trigger_key: str) -> str:
    """Deterministic id of the one delivery per (campaign, device, trigger key):
    ``"dl_"`` and the first 128 bits of the key's SHA-256 in lower-case base32,
    unpadded (``base64.b32encode(h[:16]).decode().rstrip("=").lower()``,
    spelled out with a table: ``base64.b32encode`` is pure Python).

    >>> delivery_id_for("c", "d", "k") == delivery_id_for("c", "d", "k")
    True
    >>> import base64, hashlib
    >>> h = hashlib.sha256("c\x1fd\x1fk".encode()).digest()
    >>> delivery_id_for("c", "d", "k") == "dl_" + base64.b32encode(h[:16]).decode().rstrip("=").lower()
    True
    """
    h = hashlib.sha256(f"{campaign_id}\x1f{device_id}\x1f{trigger_key}".encode()).digest()
    bits = int.from_bytes(h[:16], "big") << 2  # 130 bits: 26 digits, 13 pairs
    return "dl_" + "".join([_B32_PAIRS[(bits >> shift) & 1023] for shift in range(120, -1, -10)])


@dataclass
class Delivery:
    """One delivery record."""

    delivery_id: str
    campaign_id: str
    device_id: str
    trigger_type: str
    trigger_ref: str  # fence id or alert id
    trigger_key: str
    status: str
    created_at: float
    reason: str | None = None
    arm: str | None = None
    title: str | None = None
    body: str | None = None
    deep_link: str | None = None
    coupon_code: str | None = None
    coupon_expires_at: float | None = None
    sns_message_id: str | None = None
    updated_at: float | None = None
    release_at: float | None = None  # held: when the quiet window ends
    #: held: the trigger as :meth:`Trigger.snapshot` keeps it; the push is rendered at release.
    held_context: str | None = None
    sent_at: float | None = None
    opened_at: float | None = None
    converted_at: float | None = None
    conversion_value: float | None = None
    dups: int = 0  # retried / duplicated triggers that found this record

    @property
    def expires_at(self) -> int:
        return int(self.created_at + DELIVERY_RETENTION_S)

    def to_json(self) -> dict:
        """The API shape (no location, ever)."""
        ref_name = "alert_id" if self.trigger_type == "weather_alert" else "fence_id"
        out: dict[str, Any] = {
            "delivery_id": self.delivery_id,
            "campaign_id": self.campaign_id,
            "device_id": self.device_id,
            "trigger": {"type": self.trigger_type, ref_name: self.trigger_ref},
            "status": self.status,
        }
        for k in ("reason", "arm", "title", "body", "deep_link", "coupon_code", "sns_message_id"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        for k in ("release_at", "sent_at", "opened_at", "converted_at", "coupon_expires_at"):
            v = getattr(self, k)
            if v is not None:
                out[k] = iso(v)
        if self.conversion_value is not None:
            out["conversion_value"] = self.conversion_value
        out["created_at"] = iso(self.created_at)
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Delivery":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class CampaignRecord:
    """A stored campaign: the validated definition as the API returned it."""

    campaign_id: str
    version: int
    definition: dict
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class PushMessage:
    """What the gateway publishes (already rendered)."""

    delivery_id: str
    title: str
    body: str
    deep_link: str | None = None
    ttl_seconds: int | None = None
    data: dict[str, str] = field(default_factory=dict)  # extra custom keys (e.g. coupon_code)


@dataclass(frozen=True)
class Endpoint:
    arn: str
    enabled: bool
    created: bool = False  # this call created it (first registration, or recreated)


class PushError(Exception):
    """A publish that did not succeed. ``reason`` goes into the delivery
    record (``failed: <reason>``)."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


class EndpointDisabled(PushError):
    def __init__(self, message: str = "the endpoint is disabled") -> None:
        super().__init__("endpoint_disabled", message)


class RenderError(Exception):
    """A template failed at render time, or rendered an empty title/body.

    ``field`` is the template's field (``variants[0].message.body``), ``line``
    its line when known.
    """

    def __init__(self, message: str, field: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.line = line
