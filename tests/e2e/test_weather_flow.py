"""Weather end to end on the local stack: a real NWS alert (rebased to now)
posted over HTTP reaches the devices already inside its area — inline for a
small audience, through the SQS fan-out queue and the pumped sender for a
larger one — exactly once, also when posted again."""

from __future__ import annotations

import json
import os
import time

import pytest
import requests

from tools.demo_storm import CAMPAIGN, DEVICES, rebased_alert
from tools.localstack import _reset_app_caches


def call(stack, method, path, body=None, key=None, params=None, secret=None):
    headers = {"X-Api-Key": key or stack.admin_key}
    if secret:
        headers["X-Device-Secret"] = secret
    resp = requests.request(method, f"{stack.base_url}{path}", json=body, params=params, headers=headers, timeout=60)
    return resp.status_code, (resp.json() if resp.content else None)


@pytest.fixture
def small_chunks(stack):
    """Fan-out chunks of 2 devices, so that this storm goes through SQS."""
    old = os.environ.get("HEXCAST_FANOUT_CHUNK")
    os.environ["HEXCAST_FANOUT_CHUNK"] = "2"
    _reset_app_caches()
    yield
    if old is None:
        os.environ.pop("HEXCAST_FANOUT_CHUNK", None)
    else:
        os.environ["HEXCAST_FANOUT_CHUNK"] = old
    _reset_app_caches()


def test_winter_storm_reaches_the_people_inside_through_the_queue(stack, small_chunks):
    assert call(stack, "PUT", "/v1/campaigns/e2e-storm", CAMPAIGN)[0] == 200
    now = time.time()
    for i, (device_id, _place, lat, lng, attrs, consent) in enumerate(DEVICES):
        device_id = f"e2e-{device_id}"
        body = {"platform": "android" if i % 2 else "ios", "push_token": f"tok-{device_id}", "attributes": attrs,
                "consent": consent or {"push": True, "location": True}}
        status, reg = call(stack, "PUT", f"/v1/devices/{device_id}", body, key=stack.app_key)
        assert status == 200, reg
        if consent is None:
            status, _ = call(stack, "POST", "/v1/pings", {"device_id": device_id, "lat": lat, "lng": lng, "timestamp": now - 300},
                             key=stack.app_key, secret=reg["device_secret"])
            assert status == 200

    feature = rebased_alert(now)
    status, out = call(stack, "POST", "/v1/weather/alerts", feature)
    assert status == 202
    (res,) = out["alerts"]
    assert res["status"] == "accepted"  # taken; the planner (an SQS consumer) does the rest
    assert stack.pump.wait_until_drained(timeout=60)
    status, res = call(stack, "GET", f"/v1/weather/alerts/{res['id']}")
    assert status == 200 and res["status"] == "processed" and res["area_source"] == "same", res
    # Juneau (3 devices) and Hoonah are inside; Sitka, Skagway, Anchorage are not;
    # Eve gave no location consent.
    assert res["devices_targeted"] == 4
    assert res["queued_chunks"] == 2

    status, log = call(stack, "GET", "/v1/deliveries", params={"campaign_id": "e2e-storm"})
    sent = {d["device_id"]: d for d in log["deliveries"]}
    assert set(sent) == {"e2e-ak-ana", "e2e-ak-ben", "e2e-ak-cho", "e2e-ak-dev"}
    assert all(d["status"] == "sent" and d["trigger"]["type"] == "weather_alert" for d in sent.values())
    assert sent["e2e-ak-ben"]["title"] == "Ben, your order may be late"  # the gold variant
    assert sent["e2e-ak-cho"]["body"].startswith("Hi there, a winter storm warning may delay your order")
    received = {m["message_id"]: json.loads(m["message"]) for m in stack.sns_messages()}
    assert all(d["sns_message_id"] in received for d in sent.values())

    # The feed repeats the alert, and SQS may redeliver: nothing more is sent.
    status, again = call(stack, "POST", "/v1/weather/alerts", feature)
    assert again["alerts"][0]["status"] == "duplicate"
    assert stack.pump.wait_until_drained(timeout=60)
    status, log2 = call(stack, "GET", "/v1/deliveries", params={"campaign_id": "e2e-storm"})
    assert len(log2["deliveries"]) == 4

    status, stats = call(stack, "GET", "/v1/campaigns/e2e-storm/stats")
    assert stats["sent"] == 4


def test_conditions_are_accepted_and_validated(stack):
    status, out = call(stack, "POST", "/v1/weather/conditions", {"observations": [
        {"lat": 58.3, "lng": -134.42, "observed_at": time.time() - 60, "temperature_c": -3, "condition": "snow"}]})
    assert status == 202 and out["stored"] == 1
    status, err = call(stack, "POST", "/v1/weather/conditions", {"observations": [{"lat": 95, "lng": 0}]})
    assert status == 400 and err["error"]["field"].startswith("observations[0]")
