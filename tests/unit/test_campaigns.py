"""Campaign definitions: validation (every rule names its field), the canonical
round trip, trigger matching, message choice and experiment assignment."""

from __future__ import annotations

import copy
import hashlib
import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.errors import InvalidInput
from chalicelib.push.campaigns import (
    CAMPAIGN_ID_RE,
    SEVERITIES,
    Campaign,
    RenderError,
    parse_campaign,
    validate_campaign_id,
)
from chalicelib.push.model import FenceContext, Trigger

T0 = 1_790_000_000.0  # 2026-09-21T...Z

README_EXAMPLE = {
    "name": "Storm delay notice",
    "enabled": True,
    "trigger": {"type": "weather_alert", "events": ["Winter Storm Warning"], "min_severity": "Moderate"},
    "audience": {"fence_tags": ["delivery-zone"], "max_location_age_hours": 24},
    "message": {
        "title": "Deliveries may be late",
        "body": "Hi {{ first_name | default: 'there' }}, a {{ alert.event | downcase }} may delay your order. "
        "Take {{ coupon.percent_off }}% off your next one: {{ coupon.code }}",
        "deep_link": "shop://orders",
    },
    "variants": [
        {
            "name": "gold",
            "when": {"attribute": "loyalty_tier", "equals": "gold"},
            "message": {"title": "...", "body": "..."},
        }
    ],
    "experiment": {"arms": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50}], "control_percent": 10},
    "coupon": {"percent_off": 10, "prefix": "STORM", "valid_hours": 72},
    "limits": {"per_device_per_day": 2, "min_minutes_between": 60},
    "quiet_hours": {"start": "21:00", "end": "08:00", "mode": "hold"},
    "ttl_seconds": 21600,
}


def geofence_body(**overrides) -> dict:
    body = {
        "name": "Welcome",
        "trigger": {"type": "geofence_enter", "fence_ids": ["store-1"]},
        "message": {"title": "Hi {{ first_name | default: 'there' }}", "body": "Welcome to {{ fence.name }}"},
    }
    body.update(overrides)
    return body


def fence_trigger(event="enter", fence_id="store-1", tags=(), weather=None) -> Trigger:
    t = Trigger.geofence(event, FenceContext(fence_id, "Store One", tuple(tags)), T0 - 60, T0)
    if weather is not None:
        t = Trigger(t.type, t.key, t.ref, t.at, fence=t.fence, weather=weather)
    return t


def alert_trigger(event="Winter Storm Warning", severity="Severe") -> Trigger:
    return Trigger("weather_alert", "alert:a1", "a1", T0, alert={"event": event, "severity": severity})


def invalid(body, campaign_id="c1") -> InvalidInput:
    with pytest.raises(InvalidInput) as exc:
        parse_campaign(campaign_id, body)
    return exc.value


# ------------------------------------------------------------------ the README example
def test_spec_example_parses_and_round_trips():
    c = parse_campaign("storm-1", copy.deepcopy(README_EXAMPLE))
    assert c.trigger.type == "weather_alert" and c.trigger.min_severity == "Moderate"
    assert c.trigger.events == ("Winter Storm Warning",)
    assert c.audience.fence_tags == ("delivery-zone",) and c.audience.max_location_age_hours == 24
    assert c.experiment.control_percent == 10 and [a.name for a in c.experiment.arms] == ["A", "B"]
    assert c.coupon.prefix == "STORM" and c.coupon.percent_off == 10 and c.coupon.valid_hours == 72
    assert c.limits.per_device_per_day == 2 and c.limits.min_minutes_between == 60
    assert (c.quiet_hours.start_min, c.quiet_hours.end_min, c.quiet_hours.mode, c.quiet_hours.timezone) == (
        21 * 60,
        8 * 60,
        "hold",
        "UTC",
    )
    assert c.ttl_seconds == 21600 and c.schedule is None and c.enabled
    definition = c.definition()
    again = parse_campaign("storm-1", json.loads(json.dumps(definition)))
    assert again == c
    assert again.definition() == definition


def test_definition_is_canonical_with_every_top_level_key():
    d = parse_campaign("c1", geofence_body()).definition()
    assert list(d) == [
        "name", "enabled", "trigger", "audience", "message", "variants", "experiment",
        "coupon", "limits", "quiet_hours", "ttl_seconds", "schedule",
    ]  # fmt: skip
    assert d["enabled"] is True and d["audience"] == {} and d["limits"] == {} and d["variants"] == []
    assert d["experiment"] is None and d["coupon"] is None and d["schedule"] is None


def test_campaign_id_in_body_must_match_the_path():
    assert parse_campaign("c1", geofence_body(campaign_id="c1")).campaign_id == "c1"
    assert invalid(geofence_body(campaign_id="c2")).field == "campaign_id"


# ------------------------------------------------------------------ validation
def test_campaign_id_rules():
    assert validate_campaign_id("storm-1.a:b_c") == "storm-1.a:b_c"
    assert CAMPAIGN_ID_RE.match("a" * 128) and not CAMPAIGN_ID_RE.match("a" * 129)
    for bad in ("", "-x", "a b", "a/b", 5, None, "a" * 129):
        with pytest.raises(InvalidInput) as exc:
            validate_campaign_id(bad)
        assert exc.value.field == "campaign_id"
    with pytest.raises(InvalidInput) as exc:
        validate_campaign_id("bad id", "path.campaign_id")
    assert exc.value.field == "path.campaign_id"
    assert invalid(geofence_body(), campaign_id="no spaces").field == "campaign_id"


@pytest.mark.parametrize("body", [None, [], "x", 3])
def test_body_must_be_an_object(body):
    err = invalid(body)
    assert "JSON object" in err.message


def test_unknown_top_level_key_is_named():
    err = invalid(geofence_body(foo=1))
    assert err.field == "foo" and err.message == "unknown field 'foo'"


def _set(body: dict, path: str, value) -> dict:
    """Set ``a.b[1].c`` in a deep copy; value ``DELETE`` removes the key."""
    body = copy.deepcopy(body)
    parts = path.replace("]", "").replace("[", ".").split(".")
    target = body
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]
    last = parts[-1]
    if value is DELETE:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return body


DELETE = object()

FULL = copy.deepcopy(README_EXAMPLE)
FULL["variants"] = [
    {"name": "gold", "when": {"attribute": "loyalty_tier", "equals": "gold"}, "message": {"title": "G", "body": "g"}},
    {"name": "es", "when": {"attribute": "language", "in": ["es", "es-MX"]}, "message": {"title": "E", "body": "e"}},
]
GEO = geofence_body()

# (base body, path to change, new value, expected error field)
CASES = [
    (FULL, "name", DELETE, "name"),
    (FULL, "name", "", "name"),
    (FULL, "name", "   ", "name"),
    (FULL, "name", "x" * 201, "name"),
    (FULL, "name", 5, "name"),
    (FULL, "enabled", "yes", "enabled"),
    (FULL, "enabled", 1, "enabled"),
    (FULL, "trigger", DELETE, "trigger"),
    (FULL, "trigger", "weather_alert", "trigger"),
    (FULL, "trigger.type", "geofence_visit", "trigger.type"),
    (FULL, "trigger.type", DELETE, "trigger.type"),
    (FULL, "trigger.type", ["weather_alert"], "trigger.type"),
    (FULL, "trigger.events", "Winter Storm Warning", "trigger.events"),
    (FULL, "trigger.events", [], "trigger.events"),
    (FULL, "trigger.events", ["ok", ""], "trigger.events[1]"),
    (FULL, "trigger.events", ["ok", 7], "trigger.events[1]"),
    (FULL, "trigger.min_severity", "Catastrophic", "trigger.min_severity"),
    (FULL, "trigger.min_severity", 3, "trigger.min_severity"),
    (FULL, "trigger.weather", {"condition_in": ["rain"]}, "trigger.weather"),
    (FULL, "trigger.fence_ids", ["store-1"], "trigger.fence_ids"),
    (FULL, "trigger.foo", 1, "trigger.foo"),
    (GEO, "trigger.fence_ids", DELETE, "trigger.fence_ids"),
    (GEO, "trigger.fence_ids", [], "trigger.fence_ids"),
    (GEO, "trigger.fence_ids", "store-1", "trigger.fence_ids"),
    (GEO, "trigger.fence_ids", ["ok", "not ok"], "trigger.fence_ids[1]"),
    (GEO, "trigger.fence_ids", ["ok", True], "trigger.fence_ids[1]"),
    (GEO, "trigger.fence_ids", [f"f{i}" for i in range(101)], "trigger.fence_ids"),
    (GEO, "trigger.fence_tags", ["x" * 65], "trigger.fence_tags[0]"),
    (GEO, "trigger.fence_tags", [" "], "trigger.fence_tags[0]"),
    (GEO, "trigger.fence_tags", [f"t{i}" for i in range(101)], "trigger.fence_tags"),
    (GEO, "trigger.weather", {"condition_in": []}, "trigger.weather.condition_in"),
    (GEO, "trigger.weather", {"condition_in": ["rain", ""]}, "trigger.weather.condition_in[1]"),
    (GEO, "trigger.weather", {"condition": "rain"}, "trigger.weather.condition"),
    (GEO, "trigger.weather", {}, "trigger.weather.condition_in"),
    (GEO, "trigger.weather", ["rain"], "trigger.weather"),
    (GEO, "trigger.events", ["x"], "trigger.events"),
    (GEO, "trigger.min_severity", "Severe", "trigger.min_severity"),
    (FULL, "audience", [], "audience"),
    (FULL, "audience.fence_ids", ["a b"], "audience.fence_ids[0]"),
    (FULL, "audience.max_location_age_hours", 0, "audience.max_location_age_hours"),
    (FULL, "audience.max_location_age_hours", -1, "audience.max_location_age_hours"),
    (FULL, "audience.max_location_age_hours", True, "audience.max_location_age_hours"),
    (FULL, "audience.max_location_age_hours", "24", "audience.max_location_age_hours"),
    (FULL, "audience.radius", 3, "audience.radius"),
    (FULL, "message", DELETE, "message"),
    (FULL, "message", "hello", "message"),
    (FULL, "message.title", DELETE, "message.title"),
    (FULL, "message.title", "", "message.title"),
    (FULL, "message.title", 3, "message.title"),
    (FULL, "message.title", "x" * 1001, "message.title"),
    (FULL, "message.body", DELETE, "message.body"),
    (FULL, "message.body", "  ", "message.body"),
    (FULL, "message.body", "x" * 4001, "message.body"),
    (FULL, "message.deep_link", 5, "message.deep_link"),
    (FULL, "message.deep_link", "x" * 2001, "message.deep_link"),
    (FULL, "message.subtitle", "x", "message.subtitle"),
    (FULL, "variants", {"name": "gold"}, "variants"),
    (FULL, "variants", [FULL["variants"][0]] * 21, "variants"),
    (FULL, "variants[1].name", "gold", "variants[1].name"),
    (FULL, "variants[1].name", "", "variants[1].name"),
    (FULL, "variants[1].name", DELETE, "variants[1].name"),
    (FULL, "variants[1].when", DELETE, "variants[1].when"),
    (FULL, "variants[1].when.attribute", DELETE, "variants[1].when.attribute"),
    (FULL, "variants[1].when.attribute", "", "variants[1].when.attribute"),
    (FULL, "variants[1].when.attribute", 5, "variants[1].when.attribute"),
    (FULL, "variants[1].when.attribute", "x" * 65, "variants[1].when.attribute"),
    (FULL, "variants[1].when.in", [], "variants[1].when.in"),
    (FULL, "variants[1].when.in", "es", "variants[1].when.in"),
    (FULL, "variants[1].when.in", ["es", {"x": 1}], "variants[1].when.in[1]"),
    (FULL, "variants[1].when.in", DELETE, "variants[1].when"),  # none of equals/in/exists
    (FULL, "variants[1].when.equals", "es", "variants[1].when"),  # two of them
    (FULL, "variants[1].when.exists", "yes", "variants[1].when"),  # two of them, checked first
    (FULL, "variants[0].when.equals", None, "variants[0].when.equals"),
    (FULL, "variants[0].when.equals", ["gold"], "variants[0].when.equals"),
    (FULL, "variants[0].when.matches", "g.*", "variants[0].when.matches"),
    (FULL, "variants[1].message", DELETE, "variants[1].message"),
    (FULL, "variants[1].message.body", DELETE, "variants[1].message.body"),
    (FULL, "variants[1].message.title", "{{ x | }}", "variants[1].message.title"),
    (FULL, "experiment", [], "experiment"),
    (FULL, "experiment.arms", DELETE, "experiment.arms"),
    (FULL, "experiment.arms", [], "experiment.arms"),
    (FULL, "experiment.arms", [{"name": f"a{i}", "weight": 1} for i in range(11)], "experiment.arms"),
    (FULL, "experiment.arms[1].name", "A", "experiment.arms[1].name"),
    (FULL, "experiment.arms[1].name", "control", "experiment.arms[1].name"),
    (FULL, "experiment.arms[1].name", DELETE, "experiment.arms[1].name"),
    (FULL, "experiment.arms[0].weight", 0, "experiment.arms[0].weight"),
    (FULL, "experiment.arms[0].weight", -5, "experiment.arms[0].weight"),
    (FULL, "experiment.arms[0].weight", float("nan"), "experiment.arms[0].weight"),
    (FULL, "experiment.arms[0].weight", float("inf"), "experiment.arms[0].weight"),
    (FULL, "experiment.arms[0].weight", True, "experiment.arms[0].weight"),
    (FULL, "experiment.arms[0].weight", "50", "experiment.arms[0].weight"),
    (FULL, "experiment.arms[0].weight", DELETE, "experiment.arms[0].weight"),
    (FULL, "experiment.arms[0].colour", "red", "experiment.arms[0].colour"),
    (FULL, "experiment.arms[0].message", {"title": "x"}, "experiment.arms[0].message.body"),
    (FULL, "experiment.control_percent", 100, "experiment.control_percent"),
    (FULL, "experiment.control_percent", -1, "experiment.control_percent"),
    (FULL, "experiment.control_percent", True, "experiment.control_percent"),
    (FULL, "coupon", "STORM", "coupon"),
    (FULL, "coupon.percent_off", 0, "coupon.percent_off"),
    (FULL, "coupon.percent_off", 100.5, "coupon.percent_off"),
    (FULL, "coupon.percent_off", True, "coupon.percent_off"),
    (FULL, "coupon.percent_off", DELETE, "coupon.percent_off"),
    (FULL, "coupon.prefix", "", "coupon.prefix"),
    (FULL, "coupon.prefix", "STORM-1", "coupon.prefix"),
    (FULL, "coupon.prefix", "ABCDEFGHIJKLM", "coupon.prefix"),
    (FULL, "coupon.prefix", "ÉTÉ", "coupon.prefix"),
    (FULL, "coupon.valid_hours", 0, "coupon.valid_hours"),
    (FULL, "coupon.valid_hours", 8761, "coupon.valid_hours"),
    (FULL, "coupon.valid_hours", "72", "coupon.valid_hours"),
    (FULL, "limits.per_device_per_day", 0, "limits.per_device_per_day"),
    (FULL, "limits.per_device_per_day", 1.5, "limits.per_device_per_day"),
    (FULL, "limits.per_device_per_day", True, "limits.per_device_per_day"),
    (FULL, "limits.min_minutes_between", -1, "limits.min_minutes_between"),
    (FULL, "limits.min_minutes_between", False, "limits.min_minutes_between"),
    (FULL, "limits.per_hour", 1, "limits.per_hour"),
    (FULL, "quiet_hours.start", "9:00", "quiet_hours.start"),
    (FULL, "quiet_hours.start", "24:00", "quiet_hours.start"),
    (FULL, "quiet_hours.start", "21:60", "quiet_hours.start"),
    (FULL, "quiet_hours.start", 2100, "quiet_hours.start"),
    (FULL, "quiet_hours.start", DELETE, "quiet_hours.start"),
    (FULL, "quiet_hours.end", "21:00", "quiet_hours.end"),
    (FULL, "quiet_hours.end", DELETE, "quiet_hours.end"),
    (FULL, "quiet_hours.mode", "delay", "quiet_hours.mode"),
    (FULL, "quiet_hours.timezone", "Mars/Olympus_Mons", "quiet_hours.timezone"),
    (FULL, "quiet_hours.timezone", "localtime", "quiet_hours.timezone"),
    (FULL, "quiet_hours.timezone", 5, "quiet_hours.timezone"),
    (FULL, "ttl_seconds", 0, "ttl_seconds"),
    (FULL, "ttl_seconds", 2419201, "ttl_seconds"),
    (FULL, "ttl_seconds", 1.5, "ttl_seconds"),
    (FULL, "ttl_seconds", True, "ttl_seconds"),
    (FULL, "ttl_seconds", "3600", "ttl_seconds"),
    (FULL, "schedule", "tomorrow", "schedule"),
    (FULL, "schedule", {"start_at": "2026-01-02T00:00:00Z", "end_at": "2026-01-01T00:00:00Z"}, "schedule.end_at"),
    (FULL, "schedule", {"start_at": 1_790_000_000, "end_at": 1_790_000_000}, "schedule.end_at"),
    (FULL, "schedule", {"start_at": "2026-01-02"}, "schedule.start_at"),
    (FULL, "schedule", {"start_at": True}, "schedule.start_at"),
    (FULL, "schedule", {"stop_at": 1}, "schedule.stop_at"),
]


@pytest.mark.parametrize("base,path,value,field", CASES, ids=[f"{c[1]}={c[2]!r:.30}" for c in CASES])
def test_validation_rule_names_its_field(base, path, value, field):
    parse_campaign("c1", copy.deepcopy(base))  # the unchanged body is valid
    err = invalid(_set(base, path, value))
    assert err.field == field, err.message
    assert err.message and err.to_json()["error"]["code"] == "invalid_input"


def test_values_that_are_accepted_and_normalised():
    body = _set(FULL, "coupon.prefix", "storm9")
    body = _set(body, "trigger.min_severity", "severe")
    body = _set(body, "trigger.events", ["Winter Storm Warning", "winter storm warning", "Blizzard Warning"])
    body = _set(body, "quiet_hours", {"start": "22:30", "end": "06:15", "mode": "drop", "timezone": "Asia/Kolkata"})
    body = _set(body, "ttl_seconds", 3600.0)
    body = _set(body, "schedule", {"start_at": "2026-01-01T00:00:00+01:00", "end_at": 1_790_000_000})
    body = _set(body, "experiment.arms[0].weight", 0.5)
    c = parse_campaign("c1", body)
    assert c.coupon.prefix == "STORM9"
    assert c.trigger.min_severity == "Severe"
    assert c.trigger.events == ("Winter Storm Warning", "Blizzard Warning")
    assert c.quiet_hours.mode == "drop" and c.quiet_hours.timezone == "Asia/Kolkata"
    assert c.ttl_seconds == 3600 and isinstance(c.ttl_seconds, int)
    assert c.schedule.start_at == 1767222000.0 and c.schedule.end_at == 1_790_000_000
    assert c.experiment.arms[0].weight == 0.5
    assert parse_campaign("c1", c.definition()) == c


def test_null_means_absent_for_optional_fields():
    body = geofence_body(
        enabled=None, audience=None, variants=None, experiment=None, coupon=None,
        limits=None, quiet_hours=None, ttl_seconds=None, schedule=None,
    )  # fmt: skip
    assert parse_campaign("c1", body) == parse_campaign("c1", geofence_body())


def test_geofence_trigger_takes_ids_or_tags_or_both():
    by_tag = parse_campaign("c1", geofence_body(trigger={"type": "geofence_dwell", "fence_tags": ["mall"]}))
    assert by_tag.trigger.fence_ids == () and by_tag.trigger.fence_tags == ("mall",)
    both = parse_campaign(
        "c1", geofence_body(trigger={"type": "geofence_exit", "fence_ids": [12, "a", "a"], "fence_tags": []})
    )
    assert both.trigger.fence_ids == ("12", "a")  # numeric GeoJSON ids, duplicates dropped
    assert parse_campaign("c1", both.definition()) == both
    err = invalid(geofence_body(trigger={"type": "geofence_exit", "fence_ids": [], "fence_tags": []}))
    assert err.field == "trigger.fence_ids"


def test_template_syntax_error_is_a_400_with_field_and_line():
    body = copy.deepcopy(FULL)
    body["variants"][0]["message"]["title"] = "Hello\n{{ first_name | }}"
    err = invalid(body)
    assert err.field == "variants[0].message.title"
    assert err.message.startswith("template error on line 2:")
    body = _set(FULL, "message.body", "one\ntwo\n{% if x %}three")
    err = invalid(body)
    assert err.field == "message.body" and "line 3" in err.message and "endif" in err.message
    err = invalid(_set(FULL, "experiment.arms[1].message", {"title": "t", "body": "a\n\n{{ x | nosuch }}"}))
    assert err.field == "experiment.arms[1].message.body"
    assert err.message == "template error on line 3: unknown filter 'nosuch'"
    err = invalid(_set(FULL, "message.deep_link", "shop://{{ x"))
    assert err.field == "message.deep_link" and "line 1" in err.message


# ------------------------------------------------------------------ round trip (property)
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(
    lambda s: s.strip() == s and s
)
ids = st.from_regex(r"\A[a-z0-9][a-z0-9._:-]{0,12}\Z")
templates = st.sampled_from(["Hi", "Hi {{ first_name | default: 'you' }}", "{{ fence.name }} {{ coupon.code }}", "x"])
numbers = st.one_of(st.integers(1, 1000), st.floats(0.01, 1000, allow_nan=False).map(lambda x: round(x, 3)))
messages = st.fixed_dictionaries({"title": templates, "body": templates}, optional={"deep_link": templates})
scalars = st.one_of(st.text(max_size=10), st.integers(-5, 5), st.booleans())
whens = st.one_of(
    st.fixed_dictionaries({"attribute": ids, "equals": scalars}),
    st.fixed_dictionaries({"attribute": ids, "in": st.lists(scalars, min_size=1, max_size=4)}),
    st.fixed_dictionaries({"attribute": ids, "exists": st.booleans()}),
)
triggers = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["geofence_enter", "geofence_exit", "geofence_dwell"]), "fence_ids": st.lists(ids, min_size=1, max_size=3)},
        optional={"fence_tags": st.lists(names, max_size=3), "weather": st.fixed_dictionaries({"condition_in": st.lists(st.sampled_from(["rain", "snow", "clear"]), min_size=1)})},
    ),
    st.fixed_dictionaries(
        {"type": st.just("weather_alert")},
        optional={"events": st.lists(names, min_size=1, max_size=3), "min_severity": st.sampled_from(SEVERITIES)},
    ),
)


@st.composite
def campaign_bodies(draw):
    body = {"name": draw(names), "trigger": draw(triggers), "message": draw(messages)}
    optional = {
        "enabled": st.booleans(),
        "audience": st.fixed_dictionaries(
            {}, optional={"fence_ids": st.lists(ids, max_size=3), "fence_tags": st.lists(names, max_size=3), "max_location_age_hours": numbers}
        ),
        "variants": st.lists(
            st.fixed_dictionaries({"name": names, "when": whens, "message": messages}), max_size=3, unique_by=lambda v: v["name"]
        ),
        "experiment": st.fixed_dictionaries(
            {"arms": st.lists(st.fixed_dictionaries({"name": ids, "weight": numbers}, optional={"message": messages}), min_size=1, max_size=3, unique_by=lambda a: a["name"])},
            optional={"control_percent": st.floats(0, 99.9, allow_nan=False)},
        ),
        "coupon": st.fixed_dictionaries(
            {"percent_off": st.floats(0.5, 100), "prefix": st.from_regex(r"\A[A-Za-z0-9]{1,12}\Z"), "valid_hours": st.integers(1, 8760)}
        ),
        "limits": st.fixed_dictionaries({}, optional={"per_device_per_day": st.integers(1, 50), "min_minutes_between": numbers}),
        "quiet_hours": st.fixed_dictionaries(
            {"start": st.sampled_from(["21:00", "00:00", "23:59"]), "end": st.sampled_from(["08:00", "07:30"])},
            optional={"mode": st.sampled_from(["hold", "drop"]), "timezone": st.sampled_from(["UTC", "America/Chicago", "Australia/Lord_Howe"])},
        ),
        "ttl_seconds": st.integers(1, 2419200),
        "schedule": st.fixed_dictionaries(
            {}, optional={"start_at": st.floats(0, 1.7e9, allow_nan=False), "end_at": st.floats(1.8e9, 3e9, allow_nan=False)}
        ),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            body[key] = draw(strategy)
    return body


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(campaign_bodies())
def test_definition_round_trips_to_an_equal_campaign(body):
    try:
        c = parse_campaign("c1", body)
    except InvalidInput as err:  # the strategy allows a few invalid bodies (arm named "control"...)
        assert err.field
        return
    d = c.definition()
    again = parse_campaign("c1", json.loads(json.dumps(d)))
    assert again == c
    assert again.definition() == d
    assert hash(again) == hash(c)


# ------------------------------------------------------------------ matching
def test_geofence_matching_by_type_id_and_tag():
    c = parse_campaign("c1", geofence_body(trigger={"type": "geofence_enter", "fence_ids": ["store-1"], "fence_tags": ["mall"]}))
    assert c.matches(fence_trigger("enter", "store-1"))
    assert c.matches(fence_trigger("enter", "other", tags=("x", "mall")))
    assert not c.matches(fence_trigger("enter", "other", tags=("x",)))
    assert not c.matches(fence_trigger("exit", "store-1"))
    assert not c.matches(Trigger("geofence_enter", "k", "store-1", T0))  # no fence context
    assert not c.matches(alert_trigger())


def test_geofence_weather_condition():
    c = parse_campaign(
        "c1", geofence_body(trigger={"type": "geofence_enter", "fence_ids": ["store-1"], "weather": {"condition_in": ["Rain", "snow"]}})
    )
    assert c.matches(fence_trigger(weather={"condition": "rain", "temperature_c": 4}))
    assert c.matches(fence_trigger(weather={"condition": "Snow"}))
    assert not c.matches(fence_trigger(weather={"condition": "clear"}))
    assert not c.matches(fence_trigger(weather={"temperature_c": 4}))
    assert not c.matches(fence_trigger())  # no weather known: no match


def test_weather_alert_matching_by_event_and_severity():
    c = parse_campaign("c1", copy.deepcopy(README_EXAMPLE))  # Winter Storm Warning, >= Moderate
    assert c.matches(alert_trigger("Winter Storm Warning", "Moderate"))
    assert c.matches(alert_trigger("winter storm warning", "Extreme"))
    assert not c.matches(alert_trigger("Winter Storm Warning", "Minor"))
    assert not c.matches(alert_trigger("Winter Storm Warning", "Bogus"))  # unknown counts as Unknown
    assert not c.matches(alert_trigger("Tornado Warning", "Extreme"))
    assert not c.matches(fence_trigger())
    any_alert = parse_campaign("c2", geofence_body(trigger={"type": "weather_alert"}))
    assert any_alert.matches(alert_trigger("Anything", "Bogus"))
    assert any_alert.matches(Trigger("weather_alert", "k", "r", T0))  # no alert dict at all
    unknown_ok = parse_campaign("c3", geofence_body(trigger={"type": "weather_alert", "min_severity": "Unknown"}))
    assert unknown_ok.matches(alert_trigger("X", "Bogus"))


def test_needs_location_and_schedule():
    c = parse_campaign("c1", geofence_body(schedule={"start_at": T0, "end_at": T0 + 3600}))
    assert c.needs_location() and parse_campaign("c2", copy.deepcopy(README_EXAMPLE)).needs_location()
    assert not c.in_schedule(T0 - 1) and c.in_schedule(T0) and c.in_schedule(T0 + 3599) and not c.in_schedule(T0 + 3600)
    assert parse_campaign("c1", geofence_body()).in_schedule(0)
    assert not parse_campaign("c1", geofence_body(enabled=False)).in_schedule(T0)
    open_ended = parse_campaign("c1", geofence_body(schedule={"start_at": "2026-09-21T00:00:00Z"}))
    assert open_ended.schedule.end_at is None and open_ended.in_schedule(4e9)
    assert parse_campaign("c1", geofence_body(schedule={})).schedule is None


# ------------------------------------------------------------------ message choice
def variant_campaign(**extra) -> Campaign:
    body = geofence_body(
        variants=[
            {"name": "gold", "when": {"attribute": "tier", "equals": "gold"}, "message": {"title": "Gold", "body": "gold body"}},
            {"name": "spanish", "when": {"attribute": "language", "in": ["es", "es-MX"]}, "message": {"title": "Hola", "body": "es body"}},
            {"name": "vip", "when": {"attribute": "vip", "exists": True}, "message": {"title": "VIP", "body": "vip body"}},
            {"name": "one", "when": {"attribute": "visits", "equals": 1}, "message": {"title": "First", "body": "first visit"}},
        ],
        **extra,
    )
    return parse_campaign("c1", body)


def render(c: Campaign, attributes, arm=None):
    return c.render(attributes, fence_trigger(), coupon=None, now=T0, arm=arm)


def test_missing_attribute_gets_the_base_message():
    c = variant_campaign()
    r = render(c, {"first_name": "Ana"})
    assert (r.title, r.body, r.variant) == ("Hi Ana", "Welcome to Store One", None)
    assert render(c, {"tier": None}).variant is None  # null is missing
    assert render(c, {"tier": "silver", "language": "fr"}).variant is None


def test_first_matching_variant_wins():
    c = variant_campaign()
    assert render(c, {"tier": "gold", "language": "es", "vip": "y"}).variant == "gold"
    assert render(c, {"language": "es-MX", "vip": "y"}).title == "Hola"
    assert render(c, {"vip": False}).variant == "vip"  # exists: any non-null value
    assert render(c, {"visits": 1}).variant == "one"
    assert render(c, {"visits": 1.0}).variant == "one"
    assert render(c, {"visits": True}).variant is None  # true is not 1
    assert render(c, {"visits": "1"}).variant is None  # no string/number coercion


def test_exists_false_matches_a_missing_attribute():
    c = parse_campaign(
        "c1", geofence_body(variants=[{"name": "anon", "when": {"attribute": "first_name", "exists": False}, "message": {"title": "Hey", "body": "b"}}])
    )
    assert render(c, {}).variant == "anon"
    assert render(c, {"first_name": "Ana"}).variant is None


def test_arm_message_is_the_base_and_a_variant_still_wins():
    c = variant_campaign(
        experiment={"arms": [{"name": "A", "weight": 1}, {"name": "B", "weight": 1, "message": {"title": "B title", "body": "B body"}}]}
    )
    assert render(c, {}, arm="A").title == "Hi there"
    assert render(c, {}, arm="B").title == "B title"
    assert render(c, {}, arm="control").title == "Hi there"
    assert render(c, {"tier": "gold"}, arm="B").title == "Gold"


def test_deep_links_inherit_from_the_base():
    body = geofence_body(
        message={"title": "t", "body": "b", "deep_link": "shop://fence/{{ fence.id }}"},
        variants=[
            {"name": "v1", "when": {"attribute": "k", "equals": 1}, "message": {"title": "t", "body": "b"}},
            {"name": "v2", "when": {"attribute": "k", "equals": 2}, "message": {"title": "t", "body": "b", "deep_link": "app://v2"}},
            {"name": "v3", "when": {"attribute": "k", "equals": 3}, "message": {"title": "t", "body": "b", "deep_link": ""}},
        ],
        experiment={"arms": [{"name": "A", "weight": 1, "message": {"title": "a", "body": "a", "deep_link": "app://arm"}}]},
    )
    c = parse_campaign("c1", body)
    assert render(c, {}).deep_link == "shop://fence/store-1"
    assert render(c, {"k": 1}).deep_link == "shop://fence/store-1"
    assert render(c, {"k": 1}, arm="A").deep_link == "app://arm"
    assert render(c, {"k": 2}, arm="A").deep_link == "app://v2"
    assert render(c, {"k": 3}).deep_link is None  # an explicit empty link: none
    assert parse_campaign("c1", geofence_body()).render({}, fence_trigger(), coupon=None, now=T0, arm=None).deep_link is None


def test_render_errors_are_render_errors():
    c = parse_campaign("c1", geofence_body(message={"title": "{{ title }}", "body": "{{ 10 | divided_by: n }}"}))
    with pytest.raises(RenderError, match="title rendered empty"):
        render(c, {"title": "   ", "n": 2})
    with pytest.raises(RenderError) as exc:
        render(c, {"title": "ok", "n": 0})
    assert exc.value.field == "message.body" and exc.value.line == 1
    assert render(c, {"title": "ok", "n": 2}).body == "5"
    clock = parse_campaign("c1", geofence_body(message={"title": "at {{ local_time }}", "body": "b"}))
    with pytest.raises(RenderError):  # a nonsense clock must not escape as ValueError
        clock.render({}, fence_trigger(), coupon=None, now=float("nan"), arm=None)
    with pytest.raises(RenderError):  # nor a profile that is not a mapping
        c.render(["not", "a", "dict"], fence_trigger(), coupon=None, now=T0, arm=None)


# ------------------------------------------------------------------ experiment
def test_arm_assignment_is_deterministic_and_follows_the_weights():
    body = geofence_body(
        experiment={"arms": [{"name": "A", "weight": 50}, {"name": "B", "weight": 30}, {"name": "C", "weight": 20}], "control_percent": 10}
    )
    c = parse_campaign("exp-1", body)
    n = 20_000
    counts = Counter(c.assign_arm(f"device-{i}") for i in range(n))
    expected = {"control": 0.10, "A": 0.45, "B": 0.27, "C": 0.18}
    assert set(counts) == set(expected)
    for name, share in expected.items():
        assert abs(counts[name] / n - share) <= 0.02, (name, counts[name] / n)
    assert all(c.assign_arm(f"device-{i}") == c.assign_arm(f"device-{i}") for i in range(200))
    # another campaign shuffles devices independently
    other = parse_campaign("exp-2", body)
    assert sum(c.assign_arm(f"device-{i}") != other.assign_arm(f"device-{i}") for i in range(1000)) > 300


def _reference_arm(campaign_id, device_id, arms, control_percent):
    """The documented formula, written out independently."""
    u = int.from_bytes(hashlib.sha256(f"{campaign_id}\x1f{device_id}".encode()).digest()[:8], "big") / 2**64
    if u < control_percent / 100:
        return "control"
    x = (u - control_percent / 100) / (1 - control_percent / 100) * sum(w for _, w in arms)
    for name, w in arms:
        if x < w:
            return name
        x -= w
    return arms[-1][0]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(1, 100), min_size=1, max_size=5),
    st.one_of(st.just(0.0), st.floats(1e-130, 99, allow_nan=False)),  # numbers DynamoDB can store
    st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=20),
)
def test_arm_assignment_matches_the_documented_formula(weights, control, devices):
    arms = [(f"arm{i}", w) for i, w in enumerate(weights)]
    body = geofence_body(experiment={"arms": [{"name": n, "weight": w} for n, w in arms], "control_percent": control})
    c = parse_campaign("c1", body)
    for device in devices:
        assert c.assign_arm(device) == _reference_arm("c1", device, arms, control)


def test_no_experiment_no_arm():
    assert parse_campaign("c1", geofence_body()).assign_arm("d1") is None
    c = parse_campaign("c1", geofence_body(experiment={"arms": [{"name": "only", "weight": 1}]}))
    assert {c.assign_arm(f"d{i}") for i in range(100)} == {"only"}
