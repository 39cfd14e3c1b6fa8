"""Weather conditions: parsing observations, storing the newest per H3
resolution-5 cell with an expiry, and reading the ``weather`` variables."""

from __future__ import annotations

import copy

import h3.api.basic_int as h3i
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.errors import InvalidInput
from chalicelib.store.memory_weather import MemoryWeather
from chalicelib.timeutil import iso
from chalicelib.weather.conditions import (
    CONDITIONS,
    MAX_OBSERVATIONS,
    Observation,
    parse_observations,
    store_observations,
    weather_at,
    weather_at_many,
)

NOW = 1_790_000_000.0  # 2026-09-21T14:13:20Z
SANTA_ROSA = (38.4404, -122.7141)
PORTLAND = (45.5152, -122.6784)


def ob(**over):
    base = {"lat": SANTA_ROSA[0], "lng": SANTA_ROSA[1], "observed_at": "2026-09-21T14:00:00Z",
            "temperature_c": 14.5, "condition": "rain", "precipitation_mm_h": 2.5, "wind_kph": 18}
    base.update(over)
    return {k: v for k, v in base.items() if v is not ...}


def parse(*observations):
    return parse_observations({"observations": list(observations)}, now=NOW)


# ---------------------------------------------------------------- parsing
def test_parses_rfc3339_and_epoch_and_normalises_the_condition():
    a, b = parse(ob(), ob(observed_at=NOW - 60, condition=" Snow ", precipitation_mm_h=None, wind_kph=...))
    assert a == Observation(SANTA_ROSA[0], SANTA_ROSA[1], NOW - 800, 14.5, "rain", 2.5, 18.0)
    assert b == Observation(SANTA_ROSA[0], SANTA_ROSA[1], NOW - 60, 14.5, "snow", None, None)


def test_the_allowed_conditions_are_lowercase_words():
    assert {"clear", "cloudy", "fog", "rain", "snow", "sleet", "hail", "storm", "wind", "smoke"} <= CONDITIONS
    assert all(c == c.lower() and c.isalpha() for c in CONDITIONS)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"lat": 90.5}, "lat"),
        ({"lat": "38.4"}, "lat"),
        ({"lng": -180.01}, "lng"),
        ({"lng": float("nan")}, "lng"),
        ({"lat": True}, "lat"),
        ({"lat": ...}, "lat"),
        ({"temperature_c": 71}, "temperature_c"),
        ({"temperature_c": float("-inf")}, "temperature_c"),
        ({"temperature_c": None}, "temperature_c"),
        ({"condition": "sunny"}, "condition"),
        ({"condition": ["rain"]}, "condition"),
        ({"condition": ...}, "condition"),
        ({"precipitation_mm_h": -0.1}, "precipitation_mm_h"),
        ({"precipitation_mm_h": 501}, "precipitation_mm_h"),
        ({"wind_kph": float("inf")}, "wind_kph"),
        ({"wind_kph": "calm"}, "wind_kph"),
        ({"observed_at": "yesterday"}, "observed_at"),
        ({"observed_at": "2026-09-21T14:00:00"}, "observed_at"),  # no time zone
        ({"observed_at": NOW + 301}, "observed_at"),
        ({"observed_at": "2026-09-21T14:18:21Z"}, "observed_at"),  # 301 s ahead
        ({"humidity": 40}, "humidity"),
    ],
)
def test_each_error_names_the_observation_and_field(change, field):
    with pytest.raises(InvalidInput) as err:
        parse(ob(), ob(), ob(**change))
    assert err.value.field == f"observations[2].{field}"


def test_small_clock_skew_and_physical_extremes_are_accepted():
    [o] = parse(ob(observed_at=NOW + 299, temperature_c=-89.2, wind_kph=408, precipitation_mm_h=0, lat=-90, lng=180))
    assert o.observed_at == NOW + 299 and o.temperature_c == -89.2


@pytest.mark.parametrize(
    "body, field",
    [
        ([], None),
        ({}, "observations"),
        ({"observations": []}, "observations"),
        ({"observations": {"lat": 1}}, "observations"),
        ({"observations": ["rain"]}, "observations[0]"),
    ],
)
def test_body_errors(body, field):
    with pytest.raises(InvalidInput) as err:
        parse_observations(body, now=NOW)
    assert err.value.field == field


def test_at_most_a_thousand_observations():
    assert len(parse(*[ob()] * MAX_OBSERVATIONS)) == MAX_OBSERVATIONS
    with pytest.raises(InvalidInput) as err:
        parse(*[ob()] * (MAX_OBSERVATIONS + 1))
    assert err.value.field == "observations"


# ---------------------------------------------------------------- storing and reading
def test_newest_per_cell_wins_and_weather_at_gives_the_template_dict():
    store = MemoryWeather()
    near = (SANTA_ROSA[0] + 0.001, SANTA_ROSA[1] + 0.001)  # same resolution-5 cell
    assert h3i.latlng_to_cell(*near, 5) == h3i.latlng_to_cell(*SANTA_ROSA, 5)
    observations = parse(
        ob(observed_at=NOW - 600, condition="storm"),
        ob(lat=near[0], lng=near[1], observed_at=NOW - 60, condition="fog", precipitation_mm_h=None, wind_kph=None,
           temperature_c=9),
        ob(lat=PORTLAND[0], lng=PORTLAND[1], observed_at=NOW - 120, condition="clear"),
    )
    assert store_observations(store, observations, NOW) == {"stored": 3, "cells": 2}
    assert weather_at(store, *SANTA_ROSA, NOW) == {"condition": "fog", "temperature_c": 9.0, "precipitation_mm_h": None,
                                                   "wind_kph": None, "observed_at": "2026-09-21T14:12:20Z"}
    assert weather_at(store, *PORTLAND, NOW)["condition"] == "clear"
    assert weather_at(store, 40.7128, -74.0060, NOW) is None


def test_an_older_observation_posted_later_does_not_replace_a_newer_one():
    store = MemoryWeather()
    store_observations(store, parse(ob(observed_at=NOW - 60, condition="hail")), NOW)
    store_observations(store, parse(ob(observed_at=NOW - 900, condition="clear")), NOW)
    assert weather_at(store, *SANTA_ROSA, NOW)["condition"] == "hail"
    store_observations(store, parse(ob(observed_at=NOW, condition="clear")), NOW)
    assert weather_at(store, *SANTA_ROSA, NOW)["condition"] == "clear"


def test_conditions_expire_ttl_after_they_were_observed():
    store = MemoryWeather()
    store_observations(store, parse(ob(observed_at=NOW - 600)), NOW, ttl_s=3600)
    assert weather_at(store, *SANTA_ROSA, NOW - 600 + 3599) is not None
    assert weather_at(store, *SANTA_ROSA, NOW - 600 + 3600) is None


def test_observations_already_expired_are_not_stored():
    store = MemoryWeather()
    out = store_observations(store, parse(ob(observed_at=NOW - 4 * 3600), ob(lat=PORTLAND[0], lng=PORTLAND[1])), NOW)
    assert out == {"stored": 1, "cells": 1}
    assert weather_at(store, *SANTA_ROSA, NOW) is None


def test_weather_at_many_reads_once_in_input_order():
    store = MemoryWeather()
    store_observations(store, parse(ob(condition="snow")), NOW)

    class Counting:
        reads = 0

        def get_conditions(self, cells, now):
            Counting.reads += 1
            return store.get_conditions(cells, now)

    got = weather_at_many(Counting(), [PORTLAND, SANTA_ROSA, PORTLAND], NOW)
    assert [g and g["condition"] for g in got] == [None, "snow", None]
    assert Counting.reads == 1
    assert weather_at_many(Counting(), [], NOW) == []


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3 * 3600 - 1), min_size=1, max_size=12), st.randoms())
def test_the_stored_observation_is_the_newest_whatever_the_order(ages, rnd):
    conditions = sorted(CONDITIONS)
    raw = [ob(observed_at=NOW - a, condition=conditions[i % len(conditions)]) for i, a in enumerate(ages)]
    newest = min(ages)
    expected = {raw[i]["condition"] for i, a in enumerate(ages) if a == newest}
    order = copy.copy(raw)
    rnd.shuffle(order)
    store = MemoryWeather()
    half = len(order) // 2  # two requests: order across and within them must not matter
    store_observations(store, parse(*order[:half]) if half else [], NOW)
    store_observations(store, parse(*order[half:]), NOW)
    got = weather_at(store, *SANTA_ROSA, NOW)
    assert got["condition"] in expected
    assert got["observed_at"] == iso(NOW - newest)
