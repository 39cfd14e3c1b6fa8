"""Campaigns: parse and validate a definition (the README's "Campaigns" format) into a
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

import re
from typing import Any

from chalicelib.errors import InvalidInput
from chalicelib.push.campaign_model import (
    CONTROL,
    SEVERITIES,
    _SEVERITY_INDEX,
    Arm,
    AudienceSpec,
    Campaign,
    Experiment,
    Limits,
    QuietHours,
    Schedule,
    TriggerSpec,
    Variant,
    When,
)
from chalicelib.push.coupons import Coupon, CouponSpec
from chalicelib.push.model import GEOFENCE_TRIGGERS, TRIGGER_TYPES
from chalicelib.push.quiet import hhmm, parse_hhmm, validate_timezone
from chalicelib.push.render import (
    CompiledTemplate,
    MessageSpec,
    Rendered,
    RenderError,
    check_deep_link_size,
    compile_template,
)
from chalicelib.push.template_check import BROKEN, keep_going, template_errors
from chalicelib.timeutil import iso, parse_timestamp
from chalicelib.validation import (
    CAMPAIGN_ID_RE,
    dedupe,
    field_at,
    is_finite_number,
    json_bool,
    json_integer,
    json_list,
    json_number,
    json_object,
    json_text,
    validate_campaign_id,
)

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


def _fence_ids(value: Any, where: str, *, allow_empty: bool) -> tuple[str, ...]:
    items = json_list(value, where, MAX_FENCE_REFS, allow_empty=allow_empty)
    out = []
    for i, item in enumerate(items):
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)  # GeoJSON feature ids may be numbers
        if not isinstance(item, str) or not CAMPAIGN_ID_RE.fullmatch(item):
            raise InvalidInput("a fence id is 1-128 characters of letters, digits, '.', '_', ':' or '-'", field_at(where, i))
        out.append(item)
    return dedupe(out)


def _fence_tags(value: Any, where: str, *, allow_empty: bool) -> tuple[str, ...]:
    items = json_list(value, where, MAX_FENCE_REFS, allow_empty=allow_empty)
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item.strip() or len(item) > MAX_TAG_LEN:
            raise InvalidInput(f"a tag is a non-empty string of at most {MAX_TAG_LEN} characters", field_at(where, i))
    return dedupe(items)  # tags match fences' tags exactly, as stored


# ---------------------------------------------------------------- parsing
def parse_campaign(campaign_id: str, body: Any) -> Campaign:
    """Validate a campaign definition (the README's "Campaigns") and compile its templates.

    Raises InvalidInput naming the field. ``campaign_id`` in the body is
    accepted only when it equals the path id (so a GET result can be PUT back).
    Template errors do not stop validation: every one of every template is
    in the error's ``errors`` (with the error that stopped validation, if
    another did), each with its field and line.
    """
    with template_errors(TOP_LEVEL_FIELDS):
        return _parse_campaign(campaign_id, body)


def _parse_campaign(campaign_id: str, body: Any) -> Campaign:
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
        name=json_text(body["name"], "name", MAX_NAME),
        enabled=_opt(body, "enabled", json_bool, True),
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
    return parse(value, field_at(prefix, key))


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
        json_object(value, "trigger", ("type", "fence_ids", "fence_tags", "weather"))
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
    json_object(value, "trigger", ("type", "events", "min_severity"))
    events = _opt(value, "events", _parse_events, None, "trigger")
    min_severity = _opt(value, "min_severity", _parse_severity, None, "trigger")
    return TriggerSpec(ttype, events=events, min_severity=min_severity)


def _parse_weather_condition(value: Any, where: str) -> tuple[str, ...]:
    obj = json_object(value, where, ("condition_in",))
    if obj.get("condition_in") is None:
        raise InvalidInput('a weather condition is {"condition_in": ["rain", ...]}', field_at(where, "condition_in"))
    where = field_at(where, "condition_in")
    items = json_list(obj["condition_in"], where, MAX_CONDITIONS)
    out = [json_text(item, field_at(where, i), MAX_CONDITION_LEN).lower() for i, item in enumerate(items)]
    return dedupe(out)


def _parse_events(value: Any, where: str) -> tuple[str, ...]:
    items = json_list(value, where, MAX_EVENTS)
    out: dict[str, str] = {}
    for i, item in enumerate(items):
        text = json_text(item, field_at(where, i), MAX_EVENT_LEN, "an event name such as 'Winter Storm Warning'")
        out.setdefault(text.casefold(), text)
    return tuple(out.values())


def _parse_severity(value: Any, where: str) -> str:
    index = _SEVERITY_INDEX.get(value.strip().casefold()) if isinstance(value, str) else None
    if index is None:
        raise InvalidInput(f"must be one of {', '.join(SEVERITIES)}", where)
    return SEVERITIES[index]


def _parse_audience(value: Any, where: str) -> AudienceSpec:
    obj = json_object(value, where, ("fence_ids", "fence_tags", "max_location_age_hours"))
    return AudienceSpec(
        fence_ids=_opt(obj, "fence_ids", lambda v, f: _fence_ids(v, f, allow_empty=True), (), where),
        fence_tags=_opt(obj, "fence_tags", lambda v, f: _fence_tags(v, f, allow_empty=True), (), where),
        max_location_age_hours=_opt(obj, "max_location_age_hours", _parse_location_age, None, where),
    )


def _parse_location_age(value: Any, where: str) -> float:
    hours = json_number(value, where)
    if not 0 < hours <= MAX_LOCATION_AGE_HOURS:
        raise InvalidInput(f"must be more than 0 and at most {MAX_LOCATION_AGE_HOURS:g} hours", where)
    return hours


def _template(obj: dict, key: str, where: str, max_len: int, *, required: bool) -> CompiledTemplate | None:
    at = field_at(where, key)
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
    try:
        return compile_template(value, at)
    except InvalidInput as exc:
        keep_going(exc)  # or raise
        return CompiledTemplate(value, at, BROKEN)  # validation goes on; parse_campaign raises


def _required_template(obj: dict, key: str, where: str, max_len: int) -> CompiledTemplate:
    template = _template(obj, key, where, max_len, required=True)
    assert template is not None  # _template raised otherwise
    return template


def _parse_message(value: Any, where: str) -> MessageSpec:
    obj = json_object(value, where, ("title", "body", "deep_link"))
    title = _required_template(obj, "title", where, MAX_TITLE_TEMPLATE)
    body = _required_template(obj, "body", where, MAX_BODY_TEMPLATE)
    deep_link = _template(obj, "deep_link", where, MAX_DEEP_LINK_TEMPLATE, required=False)
    if deep_link is not None:
        check_deep_link_size(deep_link)
    return MessageSpec(title=title, body=body, deep_link=deep_link)


def _label(value: Any, where: str) -> str:
    return json_text(value, where, MAX_LABEL, "a name")


def _parse_variants(value: Any, where: str) -> tuple[Variant, ...]:
    items = json_list(value, where, MAX_VARIANTS, allow_empty=True)
    variants: list[Variant] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        at = field_at(where, i)
        obj = json_object(item, at, ("name", "when", "message"))
        for key in ("name", "when", "message"):
            if obj.get(key) is None:
                raise InvalidInput(f"{key} is required", field_at(at, key))
        name = _label(obj["name"], field_at(at, "name"))
        if name in seen:
            raise InvalidInput(f"duplicate variant name '{name}'", field_at(at, "name"))
        seen.add(name)
        variants.append(Variant(name, _parse_when(obj["when"], field_at(at, "when")), _parse_message(obj["message"], field_at(at, "message"))))
    return tuple(variants)


def _scalar(value: Any, where: str) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if len(value) > MAX_ATTRIBUTE_VALUE:
            raise InvalidInput(f"must be at most {MAX_ATTRIBUTE_VALUE} characters", where)
        return value
    if is_finite_number(value):
        return json_number(value, where)
    raise InvalidInput("must be a string, number or boolean", where)


def _parse_when(value: Any, where: str) -> When:
    obj = json_object(value, where, ("attribute", "equals", "in", "exists"))
    if obj.get("attribute") is None:
        raise InvalidInput("attribute is required", field_at(where, "attribute"))
    attribute = obj["attribute"]
    if not isinstance(attribute, str) or not attribute or len(attribute) > MAX_LABEL:
        raise InvalidInput(f"must be an attribute name of 1-{MAX_LABEL} characters", field_at(where, "attribute"))
    ops = [op for op in ("equals", "in", "exists") if op in obj]
    if len(ops) != 1:
        raise InvalidInput("give exactly one of equals, in or exists", where)
    op = ops[0]
    at = field_at(where, op)
    if op == "equals":
        return When(attribute, op, _scalar(obj[op], at))
    if op == "exists":
        return When(attribute, op, json_bool(obj[op], at))
    items = json_list(obj[op], at, MAX_IN_VALUES)
    return When(attribute, op, tuple(_scalar(v, field_at(at, i)) for i, v in enumerate(items)))


def _parse_experiment(value: Any, where: str) -> Experiment:
    obj = json_object(value, where, ("arms", "control_percent"))
    at = field_at(where, "arms")
    if obj.get("arms") is None:
        raise InvalidInput("arms is required", at)
    items = json_list(obj["arms"], at, MAX_ARMS)
    arms: list[Arm] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        arm_at = field_at(at, i)
        arm = json_object(item, arm_at, ("name", "weight", "message"))
        if arm.get("name") is None:
            raise InvalidInput("name is required", field_at(arm_at, "name"))
        name = _label(arm["name"], field_at(arm_at, "name"))
        if name.lower() == CONTROL:
            raise InvalidInput("'control' is the control group's name; choose another arm name", field_at(arm_at, "name"))
        if name in seen:
            raise InvalidInput(f"duplicate arm name '{name}'", field_at(arm_at, "name"))
        seen.add(name)
        weight_at = field_at(arm_at, "weight")
        if arm.get("weight") is None:
            raise InvalidInput("weight is required", weight_at)
        if not is_finite_number(arm["weight"]) or arm["weight"] <= 0:
            raise InvalidInput("must be a number greater than 0", weight_at)
        weight = json_number(arm["weight"], weight_at)
        message = _opt(arm, "message", _parse_message, None, arm_at)
        arms.append(Arm(name, weight, message))
    control = _opt(obj, "control_percent", json_number, 0, where)
    if not 0 <= control < 100:
        raise InvalidInput("must be at least 0 and less than 100", field_at(where, "control_percent"))
    return Experiment(tuple(arms), control)


_PREFIX_RE = re.compile(r"^[A-Za-z0-9]{1,12}$")


def _parse_coupon(value: Any, where: str) -> CouponSpec:
    obj = json_object(value, where, ("percent_off", "prefix", "valid_hours"))
    for key in ("percent_off", "prefix", "valid_hours"):
        if obj.get(key) is None:
            raise InvalidInput(f"{key} is required", field_at(where, key))
    percent = json_number(obj["percent_off"], field_at(where, "percent_off"))
    if not 0 < percent <= 100:
        raise InvalidInput("must be more than 0 and at most 100", field_at(where, "percent_off"))
    prefix = obj["prefix"]
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise InvalidInput("must be 1-12 letters or digits (A-Z, 0-9)", field_at(where, "prefix"))
    hours = json_number(obj["valid_hours"], field_at(where, "valid_hours"))
    if not 0 < hours <= MAX_VALID_HOURS:
        raise InvalidInput(f"must be more than 0 and at most {MAX_VALID_HOURS:g} hours", field_at(where, "valid_hours"))
    return CouponSpec(percent, prefix.upper(), hours)


def _parse_limits(value: Any, where: str) -> Limits:
    obj = json_object(value, where, ("per_device_per_day", "min_minutes_between"))
    per_day = None
    if obj.get("per_device_per_day") is not None:
        at = field_at(where, "per_device_per_day")
        per_day = json_integer(obj["per_device_per_day"], at)
        if not 1 <= per_day <= MAX_PER_DAY:
            raise InvalidInput(f"must be between 1 and {MAX_PER_DAY}", at)
    gap = None
    if obj.get("min_minutes_between") is not None:
        at = field_at(where, "min_minutes_between")
        gap = json_number(obj["min_minutes_between"], at)
        if not 0 <= gap <= MAX_MINUTES_BETWEEN:
            raise InvalidInput(f"must be between 0 and {MAX_MINUTES_BETWEEN:g} minutes", at)
    return Limits(per_day, gap)


def _parse_quiet_hours(value: Any, where: str) -> QuietHours:
    obj = json_object(value, where, ("start", "end", "mode", "timezone"))
    for key in ("start", "end"):
        if obj.get(key) is None:
            raise InvalidInput(f"{key} is required", field_at(where, key))
    start = parse_hhmm(obj["start"], field_at(where, "start"))
    end = parse_hhmm(obj["end"], field_at(where, "end"))
    if start == end:
        raise InvalidInput("end must differ from start", field_at(where, "end"))
    mode = obj.get("mode")
    if mode is None:
        mode = "hold"
    elif mode not in ("hold", "drop"):
        raise InvalidInput('must be "hold" or "drop"', field_at(where, "mode"))
    tz = obj.get("timezone")
    tz = "UTC" if tz is None else validate_timezone(tz, field_at(where, "timezone"))
    return QuietHours(hhmm(start), hhmm(end), mode, tz)


def _parse_ttl(value: Any, where: str) -> int:
    ttl = json_integer(value, where)
    if not 0 < ttl <= MAX_TTL_SECONDS:
        raise InvalidInput(f"must be between 1 and {MAX_TTL_SECONDS:,} seconds (28 days)", where)
    return ttl


def _parse_schedule(value: Any, where: str) -> Schedule | None:
    obj = json_object(value, where, ("start_at", "end_at"))
    start = _opt(obj, "start_at", _timestamp, None, where)
    end = _opt(obj, "end_at", _timestamp, None, where)
    if start is not None and end is not None and not start < end:
        raise InvalidInput("end_at must be after start_at", field_at(where, "end_at"))
    if start is None and end is None:
        return None
    return Schedule(start, end)


def _timestamp(value: Any, where: str) -> float:
    """RFC 3339 or epoch → epoch, at the millisecond precision the definition shows."""
    ts = parse_timestamp(value, field=where)
    return parse_timestamp(iso(ts), field=where)
