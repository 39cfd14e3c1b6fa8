"""Campaigns: parse and validate a definition (SPEC §3 "Campaigns") into a
:class:`Campaign` that answers the pipeline's questions. Pure (no I/O).

Every rejection is an :class:`~chalicelib.errors.InvalidInput` naming the
exact field (``variants[1].when.attribute``, ``experiment.arms[0].weight``).
Liquid templates are compiled here, once, when the campaign is saved.

Canonical form (:meth:`Campaign.definition`, what GET returns): every
top-level key is present (``null`` when an optional section is unset;
``audience`` and ``limits`` are objects, ``variants`` a list); inside a
section, unset optional fields are omitted. ``null`` is accepted wherever a
field is optional. The canonical form parses back to an equal Campaign.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
from dataclasses import dataclass
from dataclasses import field as _field
from typing import Any, Mapping

from chalicelib.errors import InvalidInput
from chalicelib.push.coupons import Coupon, CouponSpec, make_coupon
from chalicelib.push.model import GEOFENCE_TRIGGERS, TRIGGER_TYPES, Trigger
from chalicelib.push.quiet import hhmm, parse_hhmm, quiet_release_at, validate_timezone
from chalicelib.push.render import (
    CompiledTemplate,
    MessageSpec,
    Rendered,
    RenderError,
    compile_template,
    render_message,
    template_context,
)
from chalicelib.timeutil import iso, parse_timestamp

__all__ = [
    "CAMPAIGN_ID_RE",
    "SEVERITIES",
    "Arm",
    "AudienceSpec",
    "Campaign",
    "Coupon",
    "CouponSpec",
    "Experiment",
    "Limits",
    "MessageSpec",
    "QuietHours",
    "RenderError",
    "Rendered",
    "Schedule",
    "TriggerSpec",
    "Variant",
    "When",
    "parse_campaign",
    "validate_campaign_id",
]

from chalicelib.validation import CAMPAIGN_ID_RE  # noqa: E402 (fullmatch-safe: anchored with \A...\Z)
#: NWS/CAP severities, least to most severe.
SEVERITIES = ("Unknown", "Minor", "Moderate", "Severe", "Extreme")
_SEVERITY_INDEX = {s.casefold(): i for i, s in enumerate(SEVERITIES)}

MAX_NAME = 200
MAX_TITLE_TEMPLATE = 1_000
MAX_BODY_TEMPLATE = 4_000
MAX_DEEP_LINK_TEMPLATE = 2_000
MAX_FENCE_REFS = 100  # fence ids, and fence tags, per list
MAX_TAG_LEN = 64
MAX_EVENTS = 100
MAX_EVENT_LEN = 200
MAX_CONDITIONS = 50
MAX_CONDITION_LEN = 64
MAX_VARIANTS = 20
MAX_ARMS = 10
MAX_LABEL = 64  # variant and arm names, attribute names
MAX_IN_VALUES = 100
MAX_ATTRIBUTE_VALUE = 1024
MAX_TTL_SECONDS = 28 * 86400  # 2,419,200: the APNs/FCM maximum
MAX_VALID_HOURS = 8760.0
MAX_LOCATION_AGE_HOURS = 8760.0
MAX_PER_DAY = 1000
MAX_MINUTES_BETWEEN = 525_600.0  # a year
CONTROL = "control"

TOP_LEVEL_FIELDS = (
    "name",
    "enabled",
    "trigger",
    "audience",
    "message",
    "variants",
    "experiment",
    "coupon",
    "limits",
    "quiet_hours",
    "ttl_seconds",
    "schedule",
)


# ---------------------------------------------------------------- value checks
def _at(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key


def _object(value: Any, where: str, allowed: tuple[str, ...]) -> dict:
    """A JSON object with only ``allowed`` keys."""
    if not isinstance(value, dict):
        raise InvalidInput("must be a JSON object", where or None)
    for key in value:
        if key not in allowed:
            raise InvalidInput(f"unknown field '{key}'", _at(where, str(key)))
    return value


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) < 1e300
    return isinstance(value, float) and math.isfinite(value)


def _number(value: Any, where: str) -> int | float:
    """A finite JSON number (not a bool); integral values come back as int."""
    if not _is_number(value):
        raise InvalidInput("must be a finite number", where)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _integer(value: Any, where: str) -> int:
    if not _is_number(value) or (isinstance(value, float) and not value.is_integer()):
        raise InvalidInput("must be an integer", where)
    return int(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput("must be true or false", where)
    return value


def _text(value: Any, where: str, max_len: int, what: str = "a string") -> str:
    """A non-blank string of at most ``max_len`` characters, stripped."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"must be {what} (not empty)", where)
    text = value.strip()
    if len(text) > max_len:
        raise InvalidInput(f"must be at most {max_len} characters", where)
    return text


def _list(value: Any, where: str, max_items: int, *, allow_empty: bool = False) -> list:
    if not isinstance(value, list):
        raise InvalidInput("must be a list", where)
    if not value and not allow_empty:
        raise InvalidInput("must not be empty", where)
    if len(value) > max_items:
        raise InvalidInput(f"must have at most {max_items} entries", where)
    return value


def _dedupe(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def validate_campaign_id(value: Any, field: str = "campaign_id") -> str:
    """A campaign id: 1-128 of letters, digits, ``.``, ``_``, ``:``, ``-``, starting with a letter or digit."""
    if not isinstance(value, str) or not CAMPAIGN_ID_RE.match(value):
        raise InvalidInput(
            "campaign id must be 1-128 characters of letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
            field,
        )
    return value


def _fence_ids(value: Any, where: str, *, allow_empty: bool) -> tuple[str, ...]:
    items = _list(value, where, MAX_FENCE_REFS, allow_empty=allow_empty)
    out = []
    for i, item in enumerate(items):
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)  # GeoJSON feature ids may be numbers
        if not isinstance(item, str) or not CAMPAIGN_ID_RE.match(item):
            raise InvalidInput("a fence id is 1-128 characters of letters, digits, '.', '_', ':' or '-'", _at(where, i))
        out.append(item)
    return _dedupe(out)


def _fence_tags(value: Any, where: str, *, allow_empty: bool) -> tuple[str, ...]:
    items = _list(value, where, MAX_FENCE_REFS, allow_empty=allow_empty)
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item.strip() or len(item) > MAX_TAG_LEN:
            raise InvalidInput(f"a tag is a non-empty string of at most {MAX_TAG_LEN} characters", _at(where, i))
    return _dedupe(items)  # tags match fences' tags exactly, as stored


# ---------------------------------------------------------------- records
@dataclass(frozen=True)
class TriggerSpec:
    """What occasion starts the campaign. Geofence triggers name fences by id
    and/or tag, optionally gated on the weather at the device; weather alerts
    filter by event name (case-insensitive) and minimum severity."""

    type: str
    fence_ids: tuple[str, ...] = ()
    fence_tags: tuple[str, ...] = ()
    weather_condition_in: tuple[str, ...] | None = None
    events: tuple[str, ...] | None = None
    min_severity: str | None = None
    _fence_id_set: frozenset = _field(init=False, compare=False, repr=False)
    _fence_tag_set: frozenset = _field(init=False, compare=False, repr=False)
    _condition_set: frozenset | None = _field(init=False, compare=False, repr=False)
    _event_set: frozenset | None = _field(init=False, compare=False, repr=False)
    _min_index: int = _field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        conditions = self.weather_condition_in
        events = self.events
        setattr_ = object.__setattr__
        setattr_(self, "_fence_id_set", frozenset(self.fence_ids))
        setattr_(self, "_fence_tag_set", frozenset(self.fence_tags))
        setattr_(self, "_condition_set", None if conditions is None else frozenset(c.lower() for c in conditions))
        setattr_(self, "_event_set", None if events is None else frozenset(e.casefold() for e in events))
        setattr_(self, "_min_index", 0 if self.min_severity is None else SEVERITIES.index(self.min_severity))

    def matches(self, trigger: Trigger) -> bool:
        """Whether this occasion starts the campaign (see :meth:`Campaign.matches`)."""
        if trigger.type != self.type:
            return False
        if self.type in GEOFENCE_TRIGGERS:
            fence = trigger.fence
            if fence is None:
                return False
            if fence.fence_id not in self._fence_id_set and self._fence_tag_set.isdisjoint(fence.tags):
                return False
            if self._condition_set is not None:
                weather = trigger.weather
                condition = weather.get("condition") if isinstance(weather, dict) else None
                if not isinstance(condition, str) or condition.strip().lower() not in self._condition_set:
                    return False
            return True
        alert = trigger.alert if isinstance(trigger.alert, dict) else {}
        if self._event_set is not None:
            event = alert.get("event")
            if not isinstance(event, str) or event.strip().casefold() not in self._event_set:
                return False
        if self.min_severity is not None:
            severity = alert.get("severity")
            index = _SEVERITY_INDEX.get(severity.casefold(), 0) if isinstance(severity, str) else 0
            if index < self._min_index:
                return False
        return True

    def to_json(self) -> dict:
        out: dict[str, Any] = {"type": self.type}
        if self.type in GEOFENCE_TRIGGERS:
            if self.fence_ids:
                out["fence_ids"] = list(self.fence_ids)
            if self.fence_tags:
                out["fence_tags"] = list(self.fence_tags)
            if self.weather_condition_in is not None:
                out["weather"] = {"condition_in": list(self.weather_condition_in)}
        else:
            if self.events is not None:
                out["events"] = list(self.events)
            if self.min_severity is not None:
                out["min_severity"] = self.min_severity
        return out


@dataclass(frozen=True)
class AudienceSpec:
    """Who may receive it beyond the trigger: fences (by id/tag) the device is
    in, and how fresh its last location must be (None: the pipeline default)."""

    fence_ids: tuple[str, ...] = ()
    fence_tags: tuple[str, ...] = ()
    max_location_age_hours: float | None = None

    def to_json(self) -> dict:
        out: dict[str, Any] = {}
        if self.fence_ids:
            out["fence_ids"] = list(self.fence_ids)
        if self.fence_tags:
            out["fence_tags"] = list(self.fence_tags)
        if self.max_location_age_hours is not None:
            out["max_location_age_hours"] = self.max_location_age_hours
        return out


def _same(a: Any, b: Any) -> bool:
    """JSON equality without Python's ``True == 1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


@dataclass(frozen=True)
class When:
    """A variant's condition on one device attribute: exactly one of
    ``equals`` (a scalar), ``in`` (a list of scalars) or ``exists`` (bool).
    A missing (or null) attribute never matches ``equals``/``in``."""

    attribute: str
    op: str  # "equals" | "in" | "exists"
    value: Any  # scalar | tuple of scalars | bool

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        actual = attributes.get(self.attribute)
        if self.op == "exists":
            return (actual is not None) is self.value
        if actual is None:
            return False
        if self.op == "equals":
            return _same(actual, self.value)
        return any(_same(actual, v) for v in self.value)

    def to_json(self) -> dict:
        value = list(self.value) if self.op == "in" else self.value
        return {"attribute": self.attribute, self.op: value}


@dataclass(frozen=True)
class Variant:
    """A message for devices whose attribute matches ``when``."""

    name: str
    when: When
    message: MessageSpec

    def to_json(self) -> dict:
        return {"name": self.name, "when": self.when.to_json(), "message": self.message.to_json()}


@dataclass(frozen=True)
class Arm:
    """An experiment arm: a weight and, optionally, its own base message."""

    name: str
    weight: float
    message: MessageSpec | None = None

    def to_json(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "weight": self.weight}
        if self.message is not None:
            out["message"] = self.message.to_json()
        return out


@dataclass(frozen=True)
class Experiment:
    """Arms split by weight after a control group of ``control_percent`` % (recorded, not sent)."""

    arms: tuple[Arm, ...]
    control_percent: float = 0
    _bounds: tuple[float, ...] = _field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        control = self.control_percent / 100.0
        total = float(sum(a.weight for a in self.arms))
        bounds, acc = [], 0.0
        for arm in self.arms:
            acc += arm.weight
            bounds.append(control + (1.0 - control) * acc / total)
        object.__setattr__(self, "_bounds", tuple(bounds))

    def assign(self, campaign_id: str, device_id: str) -> str:
        """``"control"`` or an arm name; deterministic per (campaign, device)."""
        digest = hashlib.sha256(f"{campaign_id}\x1f{device_id}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2.0**64
        if u < self.control_percent / 100.0:
            return CONTROL
        index = bisect.bisect_right(self._bounds, u)
        return self.arms[min(index, len(self.arms) - 1)].name

    def arm(self, name: str | None) -> Arm | None:
        for arm in self.arms:
            if arm.name == name:
                return arm
        return None

    def to_json(self) -> dict:
        return {"arms": [a.to_json() for a in self.arms], "control_percent": self.control_percent}


@dataclass(frozen=True)
class Limits:
    """Frequency caps per device (None: no cap)."""

    per_device_per_day: int | None = None
    min_minutes_between: float | None = None

    def to_json(self) -> dict:
        out: dict[str, Any] = {}
        if self.per_device_per_day is not None:
            out["per_device_per_day"] = self.per_device_per_day
        if self.min_minutes_between is not None:
            out["min_minutes_between"] = self.min_minutes_between
        return out


@dataclass(frozen=True)
class QuietHours:
    """A daily quiet window ``[start, end)`` in the device's zone (``timezone``
    when the device has none); ``hold`` delays to the end, ``drop`` suppresses."""

    start: str
    end: str
    mode: str = "hold"
    timezone: str = "UTC"

    @property
    def start_min(self) -> int:
        return int(self.start[:2]) * 60 + int(self.start[3:])

    @property
    def end_min(self) -> int:
        return int(self.end[:2]) * 60 + int(self.end[3:])

    def release_at(self, device_tz: str | None, now: float) -> float | None:
        """None outside the window; else when it ends (see :func:`quiet_release_at`)."""
        return quiet_release_at(self.start_min, self.end_min, device_tz, now, self.timezone)

    def to_json(self) -> dict:
        return {"start": self.start, "end": self.end, "mode": self.mode, "timezone": self.timezone}


@dataclass(frozen=True)
class Schedule:
    """When the campaign runs: ``[start_at, end_at)``, either end open (None)."""

    start_at: float | None = None
    end_at: float | None = None

    def contains(self, now: float) -> bool:
        return (self.start_at is None or now >= self.start_at) and (self.end_at is None or now < self.end_at)

    def to_json(self) -> dict:
        out = {}
        if self.start_at is not None:
            out["start_at"] = iso(self.start_at)
        if self.end_at is not None:
            out["end_at"] = iso(self.end_at)
        return out


@dataclass(frozen=True)
class Campaign:
    """A validated campaign with compiled templates."""

    campaign_id: str
    name: str
    enabled: bool
    trigger: TriggerSpec
    audience: AudienceSpec
    message: MessageSpec
    variants: tuple[Variant, ...] = ()
    experiment: Experiment | None = None
    coupon: CouponSpec | None = None
    limits: Limits = Limits()
    quiet_hours: QuietHours | None = None
    ttl_seconds: int | None = None
    schedule: Schedule | None = None
    _liquid: dict = _field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_liquid", {"id": self.campaign_id, "name": self.name})

    def definition(self) -> dict:
        """The canonical JSON definition (what GET returns; parses back to an equal Campaign)."""
        return {
            "name": self.name,
            "enabled": self.enabled,
            "trigger": self.trigger.to_json(),
            "audience": self.audience.to_json(),
            "message": self.message.to_json(),
            "variants": [v.to_json() for v in self.variants],
            "experiment": None if self.experiment is None else self.experiment.to_json(),
            "coupon": None if self.coupon is None else self.coupon.to_json(),
            "limits": self.limits.to_json(),
            "quiet_hours": None if self.quiet_hours is None else self.quiet_hours.to_json(),
            "ttl_seconds": self.ttl_seconds,
            "schedule": None if self.schedule is None else self.schedule.to_json(),
        }

    def in_schedule(self, now: float) -> bool:
        """Enabled, and ``now`` within the schedule (if any)."""
        return self.enabled and (self.schedule is None or self.schedule.contains(now))

    def matches(self, trigger: Trigger) -> bool:
        """Whether ``trigger`` starts this campaign.

        Geofence triggers: same type, and the fence's id is listed or one of
        its tags is; with a weather condition, ``trigger.weather["condition"]``
        must be one of it (no weather: no match). Weather alerts: same type,
        the event listed (case-insensitive) unless any event goes, and the
        severity at least ``min_severity`` (an unknown severity is "Unknown").
        """
        return self.trigger.matches(trigger)

    def needs_location(self) -> bool:
        """Location triggers need location consent (every trigger type today)."""
        return self.trigger.type in GEOFENCE_TRIGGERS or self.trigger.type == "weather_alert"

    def assign_arm(self, device_id: str) -> str | None:
        """None without an experiment; else ``"control"`` or an arm name,
        deterministic per (campaign, device)."""
        if self.experiment is None:
            return None
        return self.experiment.assign(self.campaign_id, device_id)

    def coupon_for(self, secret: str, device_id: str, issued_at: float) -> Coupon | None:
        """The device's coupon, or None when the campaign has none."""
        if self.coupon is None:
            return None
        return make_coupon(secret, self.campaign_id, self.coupon, device_id, issued_at)

    def choose_message(self, attributes: Mapping[str, Any], arm: str | None) -> tuple[MessageSpec, MessageSpec, str | None]:
        """``(message, base, variant name)``: the arm's message (if it has one)
        or the campaign's is the base; the first variant whose ``when``
        matches replaces it."""
        base = self.message
        if arm is not None and self.experiment is not None:
            chosen_arm = self.experiment.arm(arm)
            if chosen_arm is not None and chosen_arm.message is not None:
                base = chosen_arm.message
        for variant in self.variants:
            if variant.when.matches(attributes):
                return variant.message, base, variant.name
        return base, base, None

    def render(
        self,
        attributes: Mapping[str, Any] | None,
        trigger: Trigger | None,
        *,
        coupon: Coupon | None,
        now: float,
        arm: str | None,
    ) -> Rendered:
        """The push text for one device. Raises RenderError, never anything else.

        A message without a deep link inherits its base's (arm's, then the
        campaign's); a link that renders empty is None.
        """
        try:
            attributes = attributes if attributes is not None else {}
            message, base, variant = self.choose_message(attributes, arm)
            fallback = base.deep_link if base.deep_link is not None else self.message.deep_link
            context = template_context(
                attributes,
                trigger,
                coupon=coupon,
                now=now,
                arm=arm,
                campaign=self._liquid,
                fallback_tz=None if self.quiet_hours is None else self.quiet_hours.timezone,
            )
            return render_message(message, context, variant, fallback)
        except RenderError:
            raise
        except Exception as err:  # noqa: BLE001 - a bad profile must not crash the pipeline
            raise RenderError(f"render failed: {type(err).__name__}: {err}") from None


# ---------------------------------------------------------------- parsing
def parse_campaign(campaign_id: str, body: Any) -> Campaign:
    """Validate a campaign definition (SPEC §3) and compile its templates.

    Raises InvalidInput naming the field. ``campaign_id`` in the body is
    accepted only when it equals the path id (so a GET result can be PUT back).
    """
    campaign_id = validate_campaign_id(campaign_id)
    if not isinstance(body, dict):
        raise InvalidInput("the campaign must be a JSON object", None)
    for key in body:
        if key not in TOP_LEVEL_FIELDS:
            if key == "campaign_id" and body[key] == campaign_id:
                continue
            if key == "campaign_id":
                raise InvalidInput("campaign_id in the body must match the id in the path", "campaign_id")
            raise InvalidInput(f"unknown field '{key}'", str(key))
    for key in ("name", "trigger", "message"):
        if body.get(key) is None:
            raise InvalidInput(f"{key} is required", key)
    trigger = _parse_trigger(body["trigger"])
    experiment = _opt(body, "experiment", _parse_experiment)
    return Campaign(
        campaign_id=campaign_id,
        name=_text(body["name"], "name", MAX_NAME),
        enabled=_opt(body, "enabled", _bool, True),
        trigger=trigger,
        audience=_opt(body, "audience", _parse_audience, AudienceSpec()),
        message=_parse_message(body["message"], "message"),
        variants=_opt(body, "variants", _parse_variants, ()),
        experiment=experiment,
        coupon=_opt(body, "coupon", _parse_coupon),
        limits=_opt(body, "limits", _parse_limits, Limits()),
        quiet_hours=_opt(body, "quiet_hours", _parse_quiet_hours),
        ttl_seconds=_opt(body, "ttl_seconds", _parse_ttl),
        schedule=_opt(body, "schedule", _parse_schedule),
    )


def _opt(obj: dict, key: str, parse, default: Any = None, prefix: str = "") -> Any:
    """Parse ``obj[key]`` with ``parse(value, field)``; absent or null → ``default``."""
    value = obj.get(key)
    if value is None:
        return default
    return parse(value, _at(prefix, key))


def _parse_trigger(value: Any) -> TriggerSpec:
    if not isinstance(value, dict):
        raise InvalidInput("must be a JSON object", "trigger")
    ttype = value.get("type")
    if not isinstance(ttype, str) or ttype not in TRIGGER_TYPES:
        raise InvalidInput(f"trigger type must be one of {', '.join(TRIGGER_TYPES)}", "trigger.type")
    if ttype in GEOFENCE_TRIGGERS:
        for key in ("events", "min_severity"):
            if key in value:
                raise InvalidInput(f"'{key}' is for weather_alert triggers, not {ttype}", f"trigger.{key}")
        _object(value, "trigger", ("type", "fence_ids", "fence_tags", "weather"))
        fence_ids = _opt(value, "fence_ids", lambda v, f: _fence_ids(v, f, allow_empty=True), (), "trigger")
        fence_tags = _opt(value, "fence_tags", lambda v, f: _fence_tags(v, f, allow_empty=True), (), "trigger")
        if not fence_ids and not fence_tags:
            where = "trigger.fence_ids" if "fence_ids" in value or "fence_tags" not in value else "trigger.fence_tags"
            raise InvalidInput(f"a {ttype} trigger needs fence_ids and/or fence_tags (non-empty lists)", where)
        conditions = _opt(value, "weather", _parse_weather_condition, None, "trigger")
        return TriggerSpec(ttype, fence_ids, fence_tags, weather_condition_in=conditions)
    if "weather" in value:
        raise InvalidInput("only geofence triggers take a weather condition", "trigger.weather")
    for key in ("fence_ids", "fence_tags"):
        if key in value:
            raise InvalidInput(f"a weather_alert trigger has no fences; use audience.{key}", f"trigger.{key}")
    _object(value, "trigger", ("type", "events", "min_severity"))
    events = _opt(value, "events", _parse_events, None, "trigger")
    min_severity = _opt(value, "min_severity", _parse_severity, None, "trigger")
    return TriggerSpec(ttype, events=events, min_severity=min_severity)


def _parse_weather_condition(value: Any, where: str) -> tuple[str, ...]:
    obj = _object(value, where, ("condition_in",))
    if obj.get("condition_in") is None:
        raise InvalidInput('a weather condition is {"condition_in": ["rain", ...]}', _at(where, "condition_in"))
    where = _at(where, "condition_in")
    items = _list(obj["condition_in"], where, MAX_CONDITIONS)
    out = [_text(item, _at(where, i), MAX_CONDITION_LEN).lower() for i, item in enumerate(items)]
    return _dedupe(out)


def _parse_events(value: Any, where: str) -> tuple[str, ...]:
    items = _list(value, where, MAX_EVENTS)
    out: dict[str, str] = {}
    for i, item in enumerate(items):
        text = _text(item, _at(where, i), MAX_EVENT_LEN, "an event name such as 'Winter Storm Warning'")
        out.setdefault(text.casefold(), text)
    return tuple(out.values())


def _parse_severity(value: Any, where: str) -> str:
    index = _SEVERITY_INDEX.get(value.strip().casefold()) if isinstance(value, str) else None
    if index is None:
        raise InvalidInput(f"must be one of {', '.join(SEVERITIES)}", where)
    return SEVERITIES[index]


def _parse_audience(value: Any, where: str) -> AudienceSpec:
    obj = _object(value, where, ("fence_ids", "fence_tags", "max_location_age_hours"))
    return AudienceSpec(
        fence_ids=_opt(obj, "fence_ids", lambda v, f: _fence_ids(v, f, allow_empty=True), (), where),
        fence_tags=_opt(obj, "fence_tags", lambda v, f: _fence_tags(v, f, allow_empty=True), (), where),
        max_location_age_hours=_opt(obj, "max_location_age_hours", _parse_location_age, None, where),
    )


def _parse_location_age(value: Any, where: str) -> float:
    hours = _number(value, where)
    if not 0 < hours <= MAX_LOCATION_AGE_HOURS:
        raise InvalidInput(f"must be more than 0 and at most {MAX_LOCATION_AGE_HOURS:g} hours", where)
    return hours


def _template(obj: dict, key: str, where: str, max_len: int, *, required: bool) -> CompiledTemplate | None:
    at = _at(where, key)
    value = obj.get(key)
    if value is None:
        if required:
            raise InvalidInput(f"{key} is required", at)
        return None
    if not isinstance(value, str):
        raise InvalidInput("must be a string (a Liquid template)", at)
    if required and not value.strip():
        raise InvalidInput("must not be empty", at)
    if len(value) > max_len:
        raise InvalidInput(f"a {key} template is at most {max_len:,} characters", at)
    return compile_template(value, at)


def _parse_message(value: Any, where: str) -> MessageSpec:
    obj = _object(value, where, ("title", "body", "deep_link"))
    return MessageSpec(
        title=_template(obj, "title", where, MAX_TITLE_TEMPLATE, required=True),
        body=_template(obj, "body", where, MAX_BODY_TEMPLATE, required=True),
        deep_link=_template(obj, "deep_link", where, MAX_DEEP_LINK_TEMPLATE, required=False),
    )


def _label(value: Any, where: str) -> str:
    return _text(value, where, MAX_LABEL, "a name")


def _parse_variants(value: Any, where: str) -> tuple[Variant, ...]:
    items = _list(value, where, MAX_VARIANTS, allow_empty=True)
    variants: list[Variant] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        at = _at(where, i)
        obj = _object(item, at, ("name", "when", "message"))
        for key in ("name", "when", "message"):
            if obj.get(key) is None:
                raise InvalidInput(f"{key} is required", _at(at, key))
        name = _label(obj["name"], _at(at, "name"))
        if name in seen:
            raise InvalidInput(f"duplicate variant name '{name}'", _at(at, "name"))
        seen.add(name)
        variants.append(Variant(name, _parse_when(obj["when"], _at(at, "when")), _parse_message(obj["message"], _at(at, "message"))))
    return tuple(variants)


def _scalar(value: Any, where: str) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if len(value) > MAX_ATTRIBUTE_VALUE:
            raise InvalidInput(f"must be at most {MAX_ATTRIBUTE_VALUE} characters", where)
        return value
    if _is_number(value):
        return _number(value, where)
    raise InvalidInput("must be a string, number or boolean", where)


def _parse_when(value: Any, where: str) -> When:
    obj = _object(value, where, ("attribute", "equals", "in", "exists"))
    if obj.get("attribute") is None:
        raise InvalidInput("attribute is required", _at(where, "attribute"))
    attribute = obj["attribute"]
    if not isinstance(attribute, str) or not attribute or len(attribute) > MAX_LABEL:
        raise InvalidInput(f"must be an attribute name of 1-{MAX_LABEL} characters", _at(where, "attribute"))
    ops = [op for op in ("equals", "in", "exists") if op in obj]
    if len(ops) != 1:
        raise InvalidInput("give exactly one of equals, in or exists", where)
    op = ops[0]
    at = _at(where, op)
    if op == "equals":
        return When(attribute, op, _scalar(obj[op], at))
    if op == "exists":
        return When(attribute, op, _bool(obj[op], at))
    items = _list(obj[op], at, MAX_IN_VALUES)
    return When(attribute, op, tuple(_scalar(v, _at(at, i)) for i, v in enumerate(items)))


def _parse_experiment(value: Any, where: str) -> Experiment:
    obj = _object(value, where, ("arms", "control_percent"))
    at = _at(where, "arms")
    if obj.get("arms") is None:
        raise InvalidInput("arms is required", at)
    items = _list(obj["arms"], at, MAX_ARMS)
    arms: list[Arm] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        arm_at = _at(at, i)
        arm = _object(item, arm_at, ("name", "weight", "message"))
        if arm.get("name") is None:
            raise InvalidInput("name is required", _at(arm_at, "name"))
        name = _label(arm["name"], _at(arm_at, "name"))
        if name.lower() == CONTROL:
            raise InvalidInput("'control' is the control group's name; choose another arm name", _at(arm_at, "name"))
        if name in seen:
            raise InvalidInput(f"duplicate arm name '{name}'", _at(arm_at, "name"))
        seen.add(name)
        weight_at = _at(arm_at, "weight")
        if arm.get("weight") is None:
            raise InvalidInput("weight is required", weight_at)
        if not _is_number(arm["weight"]) or arm["weight"] <= 0:
            raise InvalidInput("must be a number greater than 0", weight_at)
        weight = _number(arm["weight"], weight_at)
        message = _opt(arm, "message", _parse_message, None, arm_at)
        arms.append(Arm(name, weight, message))
    control = _opt(obj, "control_percent", _number, 0, where)
    if not 0 <= control < 100:
        raise InvalidInput("must be at least 0 and less than 100", _at(where, "control_percent"))
    return Experiment(tuple(arms), control)


_PREFIX_RE = re.compile(r"^[A-Za-z0-9]{1,12}$")


def _parse_coupon(value: Any, where: str) -> CouponSpec:
    obj = _object(value, where, ("percent_off", "prefix", "valid_hours"))
    for key in ("percent_off", "prefix", "valid_hours"):
        if obj.get(key) is None:
            raise InvalidInput(f"{key} is required", _at(where, key))
    percent = _number(obj["percent_off"], _at(where, "percent_off"))
    if not 0 < percent <= 100:
        raise InvalidInput("must be more than 0 and at most 100", _at(where, "percent_off"))
    prefix = obj["prefix"]
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise InvalidInput("must be 1-12 letters or digits (A-Z, 0-9)", _at(where, "prefix"))
    hours = _number(obj["valid_hours"], _at(where, "valid_hours"))
    if not 0 < hours <= MAX_VALID_HOURS:
        raise InvalidInput(f"must be more than 0 and at most {MAX_VALID_HOURS:g} hours", _at(where, "valid_hours"))
    return CouponSpec(percent, prefix.upper(), hours)


def _parse_limits(value: Any, where: str) -> Limits:
    obj = _object(value, where, ("per_device_per_day", "min_minutes_between"))
    per_day = None
    if obj.get("per_device_per_day") is not None:
        at = _at(where, "per_device_per_day")
        per_day = _integer(obj["per_device_per_day"], at)
        if not 1 <= per_day <= MAX_PER_DAY:
            raise InvalidInput(f"must be between 1 and {MAX_PER_DAY}", at)
    gap = None
    if obj.get("min_minutes_between") is not None:
        at = _at(where, "min_minutes_between")
        gap = _number(obj["min_minutes_between"], at)
        if not 0 <= gap <= MAX_MINUTES_BETWEEN:
            raise InvalidInput(f"must be between 0 and {MAX_MINUTES_BETWEEN:g} minutes", at)
    return Limits(per_day, gap)


def _parse_quiet_hours(value: Any, where: str) -> QuietHours:
    obj = _object(value, where, ("start", "end", "mode", "timezone"))
    for key in ("start", "end"):
        if obj.get(key) is None:
            raise InvalidInput(f"{key} is required", _at(where, key))
    start = parse_hhmm(obj["start"], _at(where, "start"))
    end = parse_hhmm(obj["end"], _at(where, "end"))
    if start == end:
        raise InvalidInput("end must differ from start", _at(where, "end"))
    mode = obj.get("mode")
    if mode is None:
        mode = "hold"
    elif mode not in ("hold", "drop"):
        raise InvalidInput('must be "hold" or "drop"', _at(where, "mode"))
    tz = obj.get("timezone")
    tz = "UTC" if tz is None else validate_timezone(tz, _at(where, "timezone"))
    return QuietHours(hhmm(start), hhmm(end), mode, tz)


def _parse_ttl(value: Any, where: str) -> int:
    ttl = _integer(value, where)
    if not 0 < ttl <= MAX_TTL_SECONDS:
        raise InvalidInput(f"must be between 1 and {MAX_TTL_SECONDS:,} seconds (28 days)", where)
    return ttl


def _parse_schedule(value: Any, where: str) -> Schedule | None:
    obj = _object(value, where, ("start_at", "end_at"))
    start = _opt(obj, "start_at", _timestamp, None, where)
    end = _opt(obj, "end_at", _timestamp, None, where)
    if start is not None and end is not None and not start < end:
        raise InvalidInput("end_at must be after start_at", _at(where, "end_at"))
    if start is None and end is None:
        return None
    return Schedule(start, end)


def _timestamp(value: Any, where: str) -> float:
    """RFC 3339 or epoch → epoch, at the millisecond precision the definition shows."""
    ts = parse_timestamp(value, field=where)
    return parse_timestamp(iso(ts), field=where)
