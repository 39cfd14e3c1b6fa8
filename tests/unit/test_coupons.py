"""HMAC coupon codes: stable per (campaign, device), different otherwise,
unguessable without the secret, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.push import coupons
from chalicelib.push.campaigns import parse_campaign
from chalicelib.push.coupons import CROCKFORD, CouponSpec, coupon_matches, make_coupon

SECRET = "test-coupon-secret"
COUPON = CouponSpec(percent_off=15, prefix="STORM", valid_hours=72)
T0 = 1_790_000_000.0
CODE_RE = re.compile(r"^STORM-[0-9ABCDEFGHJKMNPQRSTVWXYZ]{8}$")


def test_code_shape_and_expiry():
    c = make_coupon(SECRET, "storm-1", COUPON, "device-1", T0)
    assert CODE_RE.match(c.code)
    assert c.percent_off == 15 and c.valid_hours == 72
    assert c.expires_at == T0 + 72 * 3600


def test_code_is_the_documented_hmac():
    digest = hmac.new(SECRET.encode(), b"storm-1\x1fdevice-1", hashlib.sha256).digest()
    bits = int.from_bytes(digest[:5], "big")
    expected = "".join(CROCKFORD[(bits >> (35 - 5 * i)) & 31] for i in range(8))
    assert make_coupon(SECRET, "storm-1", COUPON, "device-1", T0).code == f"STORM-{expected}"


def test_code_is_stable_across_retries():
    first = make_coupon(SECRET, "storm-1", COUPON, "device-1", T0)
    retry = make_coupon(SECRET, "storm-1", COUPON, "device-1", T0 + 3600)
    assert retry.code == first.code
    assert retry.expires_at == T0 + 3600 + 72 * 3600  # expiry follows the issue time


def test_codes_differ_across_devices_campaigns_and_secrets():
    base = make_coupon(SECRET, "storm-1", COUPON, "device-1", T0).code
    assert make_coupon(SECRET, "storm-1", COUPON, "device-2", T0).code != base
    assert make_coupon(SECRET, "storm-2", COUPON, "device-1", T0).code != base
    assert make_coupon("another-secret", "storm-1", COUPON, "device-1", T0).code != base
    # the separator keeps ("a", "bc") and ("ab", "c") apart (ids never contain \x1f)
    assert make_coupon(SECRET, "a", COUPON, "bc", T0).code != make_coupon(SECRET, "ab", COUPON, "c", T0).code
    codes = {make_coupon(SECRET, "storm-1", COUPON, f"device-{i}", T0).code for i in range(2000)}
    assert len(codes) == 2000


def test_empty_secret_is_a_configuration_error():
    with pytest.raises(ValueError):
        make_coupon("", "storm-1", COUPON, "device-1", T0)
    with pytest.raises(ValueError):
        coupon_matches("", "storm-1", "device-1", "STORM-00000000")


def test_matching_is_case_insensitive_and_forgiving_of_lookalikes():
    code = make_coupon(SECRET, "storm-1", COUPON, "device-1", T0).code
    assert coupon_matches(SECRET, "storm-1", "device-1", code)
    assert coupon_matches(SECRET, "storm-1", "device-1", code.lower())
    assert coupon_matches(SECRET, "storm-1", "device-1", f"  {code} ")
    typed = code.replace("0", "o").replace("1", "l")
    assert coupon_matches(SECRET, "storm-1", "device-1", typed)


def test_matching_rejects_other_codes():
    code = make_coupon(SECRET, "storm-1", COUPON, "device-1", T0).code
    other = make_coupon(SECRET, "storm-1", COUPON, "device-2", T0).code
    assert not coupon_matches(SECRET, "storm-1", "device-1", other)
    assert not coupon_matches(SECRET, "storm-2", "device-1", code)
    assert not coupon_matches("wrong-secret", "storm-1", "device-1", code)
    for bad in ("", "STORM-", code[:-1], code + "X", None, 12345, "x" * 1000):
        assert not coupon_matches(SECRET, "storm-1", "device-1", bad)


def test_matching_compares_in_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(coupons.hmac, "compare_digest", spy)
    code = make_coupon(SECRET, "storm-1", COUPON, "device-1", T0).code
    assert coupon_matches(SECRET, "storm-1", "device-1", code)
    assert not coupon_matches(SECRET, "storm-1", "device-1", "STORM-ZZZZZZZZ")
    assert len(calls) == 2


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=20), st.text(max_size=40), st.text(max_size=40))
def test_any_ids_give_a_well_formed_matching_code(secret, campaign_id, device_id):
    c = make_coupon(secret, campaign_id, COUPON, device_id, T0)
    assert CODE_RE.match(c.code)
    assert coupon_matches(secret, campaign_id, device_id, c.code)


def test_campaign_coupon_for():
    body = {
        "name": "n",
        "trigger": {"type": "weather_alert"},
        "message": {"title": "t", "body": "{{ coupon.code }}"},
        "coupon": {"percent_off": 12.5, "prefix": "snow", "valid_hours": 1.5},
    }
    c = parse_campaign("c1", body)
    coupon = c.coupon_for(SECRET, "device-1", T0)
    assert coupon.code.startswith("SNOW-") and coupon.percent_off == 12.5 and coupon.expires_at == T0 + 5400
    assert coupon == make_coupon(SECRET, "c1", c.coupon, "device-1", T0)
    assert c.render({}, None, coupon=coupon, now=T0, arm=None).body == coupon.code
    body.pop("coupon")
    assert parse_campaign("c1", body).coupon_for(SECRET, "device-1", T0) is None
