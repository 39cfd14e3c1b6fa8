"""Push end to end over HTTP on the local stack: register (SNS endpoint in
the emulator) → campaign → ping into a fence → a delivery record and the
message the emulator's endpoint received → open and conversion → stats."""

from __future__ import annotations

import json
import time

import requests

FENCE = {
    "type": "Feature",
    "geometry": {"type": "Point", "coordinates": [-96.797, 32.7767]},
    "properties": {"radius_m": 150, "name": "Dallas Main St", "tags": ["e2e-shop"], "metadata": {"city": "Dallas"}},
}
CAMPAIGN = {
    "name": "Welcome in",
    "trigger": {"type": "geofence_enter", "fence_tags": ["e2e-shop"]},
    "message": {
        "title": "Welcome to {{ fence.name }}",
        "body": "Hi {{ first_name | default: 'there' }}, {{ coupon.percent_off }}% off today: {{ coupon.code }}",
        "deep_link": "shop://store",
    },
    "variants": [
        {"name": "gold", "when": {"attribute": "loyalty_tier", "equals": "gold"},
         "message": {"title": "A gold welcome to {{ fence.name }}", "body": "{{ first_name }}, your code: {{ coupon.code }}"}}
    ],
    "coupon": {"percent_off": 15, "prefix": "E2E", "valid_hours": 48},
    "ttl_seconds": 3600,
}


def call(stack, method, path, body=None, key=None, params=None, secret=None):
    headers = {"X-Api-Key": key or stack.admin_key}
    if secret:
        headers["X-Device-Secret"] = secret
    resp = requests.request(method, f"{stack.base_url}{path}", json=body, params=params, headers=headers, timeout=30)
    return resp.status_code, (resp.json() if resp.content else None)


def test_ping_into_a_fence_sends_a_personalized_push_and_stats_count_it(stack):
    assert call(stack, "PUT", "/v1/geofences/e2e-dallas", FENCE)[0] == 200
    status, saved = call(stack, "PUT", "/v1/campaigns/e2e-welcome", CAMPAIGN)
    assert status == 200, saved
    assert saved["version"] == 1

    secrets = {}  # what each phone keeps from its registration
    for device_id, platform, attrs in (
        ("e2e-ana", "ios", {"first_name": "Ana", "timezone": "UTC"}),
        ("e2e-bo", "android", {"first_name": "Bo", "loyalty_tier": "gold", "timezone": "UTC"}),
    ):
        body = {"platform": platform, "push_token": f"token-{device_id}", "attributes": attrs,
                "consent": {"push": True, "location": True}}
        status, reg = call(stack, "PUT", f"/v1/devices/{device_id}", body, key=stack.app_key)
        assert status == 200 and reg["push_enabled"] is True, reg
        secrets[device_id] = reg["device_secret"]

    now = time.time()
    deliveries = {}
    for device_id in ("e2e-ana", "e2e-bo"):
        secret = secrets[device_id]
        call(stack, "POST", "/v1/pings", {"device_id": device_id, "lat": 32.80, "lng": -96.797, "timestamp": now - 120},
             key=stack.app_key, secret=secret)
        status, out = call(stack, "POST", "/v1/pings",
                           {"device_id": device_id, "lat": 32.7767, "lng": -96.797, "timestamp": now - 60, "accuracy_m": 8},
                           key=stack.app_key, secret=secret)
        assert status == 200
        (result,) = out["results"]
        assert [e["type"] for e in result["events"]] == ["enter"]
        (deliveries[device_id],) = result["deliveries"]

    status, log = call(stack, "GET", "/v1/deliveries", params={"campaign_id": "e2e-welcome"})
    assert status == 200 and log["next_token"] is None
    by_device = {d["device_id"]: d for d in log["deliveries"]}
    ana, bo = by_device["e2e-ana"], by_device["e2e-bo"]
    assert ana["status"] == "sent" and ana["title"] == "Welcome to Dallas Main St"
    assert ana["body"].startswith("Hi Ana, 15% off today: E2E-")
    assert bo["title"] == "A gold welcome to Dallas Main St"

    # What the emulator's SNS endpoints received, per platform.
    received = {m["message_id"]: json.loads(m["message"]) for m in stack.sns_messages()}
    apns = json.loads(received[ana["sns_message_id"]]["APNS"])
    assert apns["aps"]["alert"] == {"title": ana["title"], "body": ana["body"]}
    assert apns["delivery_id"] == ana["delivery_id"]
    fcm = json.loads(received[bo["sns_message_id"]]["GCM"])["fcmV1Message"]["message"]
    assert fcm["notification"]["title"] == bo["title"] and fcm["data"]["delivery_id"] == bo["delivery_id"]

    # A retried ping changes nothing.
    status, out = call(stack, "POST", "/v1/pings", {"device_id": "e2e-ana", "lat": 32.7767, "lng": -96.797, "timestamp": now - 60},
                       key=stack.app_key, secret=secrets["e2e-ana"])
    assert out["results"][0]["deliveries"] == []

    # The public app key alone, or with another phone's secret, moves nobody.
    for wrong in (None, secrets["e2e-bo"]):
        status, err = call(stack, "POST", "/v1/pings", {"device_id": "e2e-ana", "lat": 32.80, "lng": -96.797}, key=stack.app_key,
                           secret=wrong)
        assert status == 403 and err["error"]["field"] == "X-Device-Secret", err

    assert call(stack, "POST", "/v1/events", {"device_id": "e2e-ana", "type": "push_opened", "delivery_id": ana["delivery_id"]},
                key=stack.app_key, secret=secrets["e2e-ana"])[0] == 202
    status, conv = call(stack, "POST", "/v1/events",
                        {"device_id": "e2e-ana", "type": "conversion", "coupon_code": ana["coupon_code"], "value": 30},
                        key=stack.app_key, secret=secrets["e2e-ana"])
    assert status == 202 and conv["attributed_to"] == ana["delivery_id"]

    status, stats = call(stack, "GET", "/v1/campaigns/e2e-welcome/stats")
    assert status == 200
    assert (stats["sent"], stats["opened"], stats["converted"]) == (2, 1, 1)
    assert stats["open_rate"] == 0.5

    status, preview = call(stack, "POST", "/v1/campaigns/e2e-welcome/preview", {"device_id": "e2e-bo"})
    assert status == 200 and preview["title"] == "A gold welcome to Dallas Main St"

    status, est = call(stack, "POST", "/v1/audience/estimate", {"fence_id": "e2e-dallas"})
    assert status == 200 and est["reachable"] == 2

    assert call(stack, "DELETE", "/v1/devices/e2e-bo", key=stack.app_key)[0] == 403
    assert call(stack, "DELETE", "/v1/devices/e2e-bo", key=stack.app_key, secret=secrets["e2e-bo"])[0] == 204
    assert call(stack, "DELETE", "/v1/campaigns/e2e-welcome")[0] == 204
    assert call(stack, "GET", "/v1/campaigns/e2e-welcome")[0] == 404


def test_campaign_template_error_names_the_line(stack):
    bad = dict(CAMPAIGN, message={"title": "ok", "body": "line one\n{{ first_name | }}"})
    status, err = call(stack, "PUT", "/v1/campaigns/e2e-bad", bad)
    assert status == 400
    assert err["error"]["field"] == "message.body" and "line 2" in err["error"]["message"]
