"""SNS mobile-push payloads: the Message JSON and the TTL attributes per platform."""

from __future__ import annotations

import json

import pytest

from chalicelib.push.model import PushMessage
from chalicelib.push.payloads import build_message, ttl_attributes

MSG = PushMessage(
    delivery_id="dl_abc",
    title="Storm ahead",
    body="Roads icy after 6 pm",
    deep_link="hexcast://offers/42",
    ttl_seconds=3600,
    data={"coupon_code": "SNOW-7Q2X", "campaign_id": "c1"},
)


def _decode(platform: str, message: PushMessage = MSG) -> tuple[dict, dict]:
    outer = json.loads(build_message(platform, message))
    inner_key = next(k for k in outer if k != "default")
    assert isinstance(outer[inner_key], str), "the service payload must be a JSON *string*"
    return outer, json.loads(outer[inner_key])


@pytest.mark.parametrize(("platform", "key"), [("ios", "APNS"), ("ios_sandbox", "APNS_SANDBOX"), ("android", "GCM")])
def test_message_has_default_and_only_the_devices_service_key(platform, key):
    outer = json.loads(build_message(platform, MSG))

    assert set(outer) == {"default", key}
    assert outer["default"] == MSG.body


@pytest.mark.parametrize("platform", ["ios", "ios_sandbox"])
def test_apns_payload_has_alert_sound_and_custom_keys(platform):
    _, apns = _decode(platform)

    assert apns == {
        "aps": {"alert": {"title": "Storm ahead", "body": "Roads icy after 6 pm"}, "sound": "default"},
        "delivery_id": "dl_abc",
        "deep_link": "hexcast://offers/42",
        "coupon_code": "SNOW-7Q2X",
        "campaign_id": "c1",
    }


def test_apns_payload_without_deep_link_has_no_deep_link_key():
    _, apns = _decode("ios", PushMessage("dl_1", "t", "b"))

    assert "deep_link" not in apns
    assert apns["delivery_id"] == "dl_1"


def test_fcm_v1_payload_shape_and_android_ttl():
    _, gcm = _decode("android")

    message = gcm["fcmV1Message"]["message"]
    assert message["notification"] == {"title": "Storm ahead", "body": "Roads icy after 6 pm"}
    assert message["data"] == {
        "delivery_id": "dl_abc",
        "deep_link": "hexcast://offers/42",
        "coupon_code": "SNOW-7Q2X",
        "campaign_id": "c1",
    }
    assert message["android"] == {"ttl": "3600s"}


def test_fcm_data_values_are_all_strings():
    odd = PushMessage("dl_1", "t", "b", data={"n": 3, "ok": True, "price": 1.5, "tags": ["a"], "gone": None})  # type: ignore[dict-item]

    data = _decode("android", odd)[1]["fcmV1Message"]["message"]["data"]

    assert data == {"n": "3", "ok": "true", "price": "1.5", "tags": '["a"]', "delivery_id": "dl_1"}
    assert all(isinstance(v, str) for v in data.values())


def test_fcm_payload_without_ttl_has_no_android_block():
    _, gcm = _decode("android", PushMessage("dl_1", "t", "b"))

    assert "android" not in gcm["fcmV1Message"]["message"]


def test_custom_data_cannot_override_delivery_id_or_aps():
    sneaky = PushMessage("dl_real", "t", "b", data={"delivery_id": "dl_fake", "aps": "x"})

    _, apns = _decode("ios", sneaky)
    _, gcm = _decode("android", sneaky)

    assert apns["delivery_id"] == "dl_real" and isinstance(apns["aps"], dict)
    assert gcm["fcmV1Message"]["message"]["data"]["delivery_id"] == "dl_real"


@pytest.mark.parametrize("platform", ["ios", "ios_sandbox", "android"])
def test_unicode_text_survives_both_json_layers(platform):
    text = "Tormenta ❄️ — 暴风雪 🌨 «ñ»"
    msg = PushMessage("dl_u", text, text, data={"nombre": "Ana María"})

    raw = build_message(platform, msg)
    outer, inner = _decode(platform, msg)

    assert outer["default"] == text
    alert = inner["aps"]["alert"] if "aps" in inner else inner["fcmV1Message"]["message"]["notification"]
    assert alert == {"title": text, "body": text}
    assert "🌨" in raw  # sent as UTF-8, not \\ud83c escapes (APNs/FCM count bytes)


@pytest.mark.parametrize(
    ("platform", "name"),
    [
        ("ios", "AWS.SNS.MOBILE.APNS.TTL"),
        ("ios_sandbox", "AWS.SNS.MOBILE.APNS_SANDBOX.TTL"),
        ("android", "AWS.SNS.MOBILE.FCM.TTL"),
    ],
)
def test_ttl_attribute_name_per_platform(platform, name):
    assert ttl_attributes(platform, 900) == {name: {"DataType": "String", "StringValue": "900"}}


def test_no_ttl_no_attribute_and_zero_is_kept():
    assert ttl_attributes("ios", None) == {}
    assert ttl_attributes("android", 0) == {"AWS.SNS.MOBILE.FCM.TTL": {"DataType": "String", "StringValue": "0"}}


@pytest.mark.parametrize("bad", [-1, 1.5])
def test_negative_or_fractional_ttl_is_rejected(bad):
    with pytest.raises(ValueError):
        ttl_attributes("ios", bad)


def test_unknown_platform_is_rejected():
    with pytest.raises(ValueError, match="unknown platform"):
        build_message("windows", MSG)
    with pytest.raises(ValueError, match="unknown platform"):
        ttl_attributes("windows", 10)
