"""Campaign records: what a parsed campaign is and the questions the
delivery pipeline asks it (does this trigger match, which variant and arm,
what does the message say, may it go now). Pure (no I/O); built only by
:func:`chalicelib.push.campaigns.parse_campaign`, which validates."""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from dataclasses import field as _field
from typing import Any, Mapping

from chalicelib.push.coupons import Coupon, CouponSpec, make_coupon
from chalicelib.push.model import GEOFENCE_TRIGGERS, Trigger
from chalicelib.push.quiet import quiet_release_at
from chalicelib.push.render import MessageSpec, Rendered, RenderError, TemplateGlobals, render_message, template_context
from chalicelib.timeutil import iso

SEVERITIES = ("Unknown", "Minor", "Moderate", "Severe", "Extreme")
_SEVERITY_INDEX = {s.casefold(): i for i, s in enumerate(SEVERITIES)}
CONTROL = "control"

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

    def messages(self) -> list[MessageSpec]:
        """Every message: the campaign's, its variants', its arms'."""
        out = [self.message, *(v.message for v in self.variants)]
        if self.experiment is not None:
            out += [a.message for a in self.experiment.arms if a.message is not None]
        return out

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

    def context(
        self, attributes: Mapping[str, Any], trigger: Trigger | None, *, coupon: Coupon | None, now: float, arm: str | None
    ) -> TemplateGlobals:
        """The globals the templates see for one device (see :func:`template_context`)."""
        return template_context(
            attributes,
            trigger,
            coupon=coupon,
            now=now,
            arm=arm,
            campaign=self._liquid,
            fallback_tz=None if self.quiet_hours is None else self.quiet_hours.timezone,
        )

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
            context = self.context(attributes, trigger, coupon=coupon, now=now, arm=arm)
            return render_message(message, context, variant, fallback)
        except RenderError:
            raise
        except Exception as err:  # noqa: BLE001 - a bad profile must not crash the pipeline
            raise RenderError(f"render failed: {type(err).__name__}: {err}") from None
