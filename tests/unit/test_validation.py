"""The one validation module: ids (fullmatch), finite numbers, the surrogate scan."""

from __future__ import annotations

import doctest

import pytest

from chalicelib import validation
from chalicelib.errors import InvalidInput
from chalicelib.validation import (
    CAMPAIGN_ID_RE,
    DEVICE_ID_RE,
    FENCE_ID_RE,
    float_param,
    is_campaign_id,
    is_device_id,
    is_fence_id,
    is_finite_number,
    lone_surrogate_path,
    number_field,
    validate_campaign_id,
    validate_device_id,
    validate_fence_id,
)

CHECKS = [is_fence_id, is_device_id, is_campaign_id]


def test_doctests():
    assert doctest.testmod(validation).failed == 0


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("good", ["a", "shop", "Store-1", "0", "a.b_c:d-e", "x" * 128])
def test_ids_accepted(check, good):
    assert check(good)


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("bad", ["", "shop\n", "shop\r\n", "\nshop", "sh op", "-shop", ".x", "x" * 129, "shöp", "a/b", None, 7, b"shop"])
def test_ids_rejected(check, bad):
    assert not check(bad)


@pytest.mark.parametrize("pattern", [FENCE_ID_RE, DEVICE_ID_RE, CAMPAIGN_ID_RE])
def test_the_patterns_themselves_refuse_a_trailing_newline_even_with_match(pattern):
    # Older call sites may still use .match: the pattern is anchored with \Z.
    assert pattern.match("shop\n") is None and pattern.search("shop\n") is None
    assert pattern.match("shop") is not None


def test_validators_keep_their_messages_and_fields():
    with pytest.raises(InvalidInput) as e:
        validate_fence_id("shop\n", "features[2].id")
    assert e.value.field == "features[2].id" and e.value.message.startswith("fence id must be 1-128 characters")
    with pytest.raises(InvalidInput) as e:
        validate_fence_id(True)
    assert e.value.message == "fence id must be a string" and e.value.field == "fence_id"
    assert validate_fence_id(42) == "42"  # GeoJSON feature ids may be numbers
    with pytest.raises(InvalidInput) as e:
        validate_device_id("d1\n")
    assert e.value.field == "device_id" and e.value.message.startswith("device_id must be 1-128 characters")
    with pytest.raises(InvalidInput) as e:
        validate_campaign_id("c1\n")
    assert e.value.field == "campaign_id" and e.value.message.startswith("campaign id must be 1-128 characters")


@pytest.mark.parametrize("v, ok", [
    (0, True), (1.5, True), (-3, True), (1e-130, True), (0.0, True), (10**299, True),
    (True, False), (False, False), (10**400, False), (float("nan"), False), (float("inf"), False),
    (5e-324, False), (-1e-200, False), ("1", False), (None, False), ([1], False),
])
def test_is_finite_number(v, ok):
    assert is_finite_number(v) is ok


def test_number_field_messages_name_the_field():
    assert number_field({"lat": 1}, "lat", "pings[0]", -90, 90) == 1.0
    assert number_field({}, "accuracy_m", "pings[0]", 0, 1e7, required=False) is None
    cases = [({}, "lat is required"), ({"lat": "1"}, "lat must be a finite number"),
             ({"lat": True}, "lat must be a finite number"), ({"lat": 91}, "lat must be from -90 to 90")]
    for obj, message in cases:
        with pytest.raises(InvalidInput) as e:
            number_field(obj, "lat", "pings[3]", -90.0, 90.0)
        assert e.value.message == message and e.value.field == "pings[3].lat"


def test_float_param_from_a_query_string():
    assert float_param({"lat": "38.5"}, "lat", -90, 90) == 38.5
    cases = [({}, "lat is required"), ({"lat": "x"}, "lat must be a number"),
             ({"lat": "nan"}, "lat must be a number from -90 to 90"), ({"lat": "inf"}, "lat must be a number from -90 to 90"),
             ({"lat": "90.1"}, "lat must be a number from -90 to 90")]
    for params, message in cases:
        with pytest.raises(InvalidInput) as e:
            float_param(params, "lat", -90.0, 90.0)
        assert e.value.message == message and e.value.field == "lat"


@pytest.mark.parametrize("value, where", [
    ("fine", None),
    ({"a": ["ok", {"b": "ok"}], "ü": "é"}, None),
    ("\ud800", "body"),
    ({"name": "\udc00x"}, "name"),
    ({"message": {"title": "ok", "body": "a\ud83d"}}, "message.body"),
    ({"tags": ["ok", "\ud800"]}, "tags[1]"),
    ({"meta": {"\ud800": "v"}}, "meta"),
    ({"\ud800": "v"}, "body"),
    ([["\ud800"]], "[0][0]"),
])
def test_lone_surrogate_path(value, where):
    assert lone_surrogate_path(value) == where


def test_bounded_string():
    from chalicelib.validation import bounded_string

    assert bounded_string("a", 1, 3) and bounded_string("abc", 1, 3)
    assert not bounded_string("", 1, 3) and not bounded_string("abcd", 1, 3) and not bounded_string(3, 1, 3)
