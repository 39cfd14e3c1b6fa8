"""The OpenAPI document against the running app (chalice.test.Client over
moto): a README-like walkthrough driven only through the document's
operations (tests/openapi_client.py checks every request and every answer
against it), the error answers, and each operation's key as the app
enforces it."""

from __future__ import annotations

import json
import time

import h3
import pytest

from chalicelib.api.openapi import document
from tests.conftest import run_queues
from tests.hostile import alert_feature
from tests.openapi_client import DocClient

STORE = (40.7484, -73.9857)  # lat, lng
FAR = (40.70, -74.05)

CIRCLE = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [STORE[1], STORE[0]]},
          "properties": {"name": "Store 42", "radius_m": 300, "tags": ["store"], "dwell_minutes": 10,
                         "metadata": {"floor": "1"}}}


def square(lat: float, lng: float, d: float) -> list[list[float]]:
    return [[lng - d, lat - d], [lng + d, lat - d], [lng + d, lat + d], [lng - d, lat + d], [lng - d, lat - d]]


ZONE = {"type": "Feature", "id": "zone-1", "geometry": {"type": "Polygon", "coordinates": [square(*STORE, 0.01)]},
        "properties": {"name": "Midtown", "tags": ["zone"], "GEO_ID": "ignored"}}
HEX = {"type": "Feature", "geometry": None,
       "properties": {"name": "Hex", "h3_cells": [h3.latlng_to_cell(*STORE, 8)], "tags": ["hex"], "enabled": True}}
BOWTIE = {"type": "Feature", "id": "bowtie",
          "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}, "properties": {}}

DEVICE = {"platform": "android", "push_token": "tok-123", "attributes": {"first_name": "Ana", "language": "es"},
          "consent": {"push": True, "location": True}}
WELCOME = {
    "name": "Store welcome",
    "trigger": {"type": "geofence_enter", "fence_tags": ["store"]},
    "message": {"title": "Welcome to {{ fence.name }}",
                "body": "Hi {{ first_name | default: \"there\" }}, {{ coupon.percent_off }}% off today: {{ coupon.code }}"},
    "coupon": {"percent_off": 10, "prefix": "HELLO", "valid_hours": 24},
}
FULL = {
    "name": "Storm delay notice", "enabled": True,
    "trigger": {"type": "geofence_enter", "fence_tags": ["zone"], "weather": {"condition_in": ["snow"]}},
    "audience": {"fence_tags": ["zone"], "max_location_age_hours": 12},
    "message": {"title": "Deliveries may be late", "body": "Hi {{ first_name | default: 'there' }}", "deep_link": "shop://orders"},
    "variants": [{"name": "es", "when": {"attribute": "language", "in": ["es", "pt"]}, "message": {"title": "Hola", "body": "¡Hola!"}}],
    "experiment": {"arms": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50, "message": {"title": "B", "body": "b"}}],
                   "control_percent": 10},
    "coupon": {"percent_off": 15, "prefix": "storm", "valid_hours": 72},
    "limits": {"per_device_per_day": 2, "min_minutes_between": 60},
    "quiet_hours": {"start": "21:00", "end": "08:00", "mode": "drop", "timezone": "America/Chicago"},
    "schedule": {"start_at": "2026-01-01T00:00:00Z", "end_at": "2099-01-01T00:00:00Z"},
    "ttl_seconds": 21600,
}
STORM = {
    "name": "Storm", "trigger": {"type": "weather_alert", "events": ["Winter Storm Warning"], "min_severity": "Moderate"},
    "message": {"title": "{{ alert.event }}", "body": "Stay safe, {{ first_name | default: 'friend' }}"},
}


@pytest.fixture
def client(api) -> DocClient:
    return DocClient(api.http, document())


def test_walkthrough_through_the_documents_operations(client, api):
    c = client
    now = time.time()
    # meta
    c.call("health", role=None, expect=200)
    assert c.call("openapi", role=None, expect=200).body == document()

    # geofences
    assert c.call("putGeofence", fence_id="store-42", body=CIRCLE, expect=200).body["kind"] == "circle"
    c.call("putGeofence", fence_id="zone-1", body=ZONE, expect=200)
    c.call("putGeofence", fence_id="hex-1", body=HEX, repair=False, expect=200)
    out = c.call("importGeofences", body={"type": "FeatureCollection", "features": [dict(ZONE, id="zone-2"), BOWTIE]}, expect=200).body
    assert out["imported"] == 1 and out["rejected"][0]["error"]["code"] == "invalid_geometry"
    assert c.call("importGeofences", body={"type": "FeatureCollection", "features": [BOWTIE]}, repair=True, expect=200).body["imported"] == 1
    assert c.call("putGeofence", fence_id="bowtie", body=BOWTIE, repair=True, expect=200).body["repaired"] is True
    fence = c.call("getGeofence", fence_id="store-42", expect=200).body
    assert fence["properties"]["version"] == 1 and fence["properties"]["dwell_minutes"] == 10
    c.call("getGeofence", fence_id="hex-1", expect=200)
    page = c.call("listGeofences", limit=1, expect=200).body
    assert page["next_token"] is not None
    c.call("listGeofences", limit=2, next_token=page["next_token"], expect=200)
    assert [f["id"] for f in c.call("listGeofences", tag="store", expect=200).body["features"]] == ["store-42"]
    found = c.call("lookupGeofences", lat=STORE[0], lng=STORE[1], expect=200).body["fences"]
    assert {f["id"] for f in found} >= {"store-42", "zone-1", "hex-1"}

    # devices
    reg = c.call("putDevice", role="app", device_id="dev-1", body=DEVICE, expect=200).body
    secret = reg["device_secret"]
    assert "device_secret" not in c.call("putDevice", role="app", secret=secret, device_id="dev-1", body=DEVICE, expect=200).body
    c.call("putDevice", device_id="dev-2", expect=200,
           body={"platform": "ios", "push_token": "tok-2", "user_id": "u-2", "attributes": {"tier": "gold", "visits": 3, "vip": True},
                 "consent": {"push": True, "location": True}})
    c.call("putDevice", device_id="dev-3", body={"platform": "ios_sandbox", "push_token": "tok-3"}, expect=200)
    assert c.call("getDevice", device_id="dev-3", expect=200).body["last_location"] is None

    # campaigns
    c.call("putCampaign", campaign_id="store-welcome", body=WELCOME, expect=200)
    full = c.call("putCampaign", campaign_id="storm-delay", body=FULL, expect=200).body
    assert full["coupon"]["prefix"] == "STORM"
    stored = c.call("putCampaign", campaign_id="storm", body=STORM, expect=200).body
    assert stored["experiment"] is None and stored["trigger"]["min_severity"] == "Moderate"

    # pings: one (app key and secret), then a batch (admin key)
    r = c.call("postPings", role="app", secret=secret, body={"device_id": "dev-1", "lat": STORE[0], "lng": STORE[1], "accuracy_m": 15},
               expect=200).body["results"][0]
    assert r["accepted"] and "enter" in {e["type"] for e in r["events"]} and r["deliveries"]
    delivery_id = r["deliveries"][0]
    batch = {"pings": [
        {"device_id": "dev-2", "lat": FAR[0], "lng": FAR[1], "timestamp": now - 120, "speed_mps": 1.2},
        {"device_id": "dev-2", "lat": STORE[0], "lng": STORE[1], "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))},
        {"device_id": "dev-1", "lat": STORE[0], "lng": STORE[1], "accuracy_m": 5000},
        {"device_id": "nobody", "lat": 0, "lng": 0},
    ]}
    results = c.call("postPings", body=batch, expect=200).body["results"]
    assert [x.get("reason") for x in results] == [None, None, "inaccurate", "unknown_device"]
    dev = c.call("getDevice", device_id="dev-1", expect=200).body
    assert "store-42" in dev["fences"] and dev["last_location"]["h3_cell"]

    # campaigns: read, preview, stats, deliveries, events
    first = c.call("listCampaigns", limit=1, expect=200).body
    c.call("listCampaigns", next_token=first["next_token"], limit=10, expect=200)
    c.call("getCampaign", campaign_id="storm-delay", expect=200)
    prev = c.call("previewCampaign", campaign_id="store-welcome", body={"device_id": "dev-1", "fence_id": "store-42"}, expect=200).body
    assert prev["rendered"] and prev["coupon"]["code"].startswith("HELLO-")
    c.call("previewCampaign", campaign_id="storm-delay", body={"device_id": "dev-2", "weather": {"condition": "snow"}}, expect=200)
    c.call("previewCampaign", campaign_id="storm", body={"device_id": "dev-2", "alert": {"event": "Winter Storm Warning"}}, expect=200)
    c.call("campaignStats", campaign_id="store-welcome", expect=200)
    log = c.call("listDeliveries", campaign_id="store-welcome", expect=200).body["deliveries"]
    assert log and log[0]["status"] == "sent"
    c.call("listDeliveries", device_id="dev-1", status="sent", expect=200)
    some = c.call("listDeliveries", limit=1, expect=200).body
    assert some["next_token"], "two store-welcome deliveries by now: a second page"
    assert c.call("listDeliveries", limit=1, next_token=some["next_token"], expect=200).body["deliveries"]
    ev = c.call("postEvent", role="app", secret=secret, expect=202,
                body={"device_id": "dev-1", "type": "push_opened", "delivery_id": delivery_id}).body
    assert ev["attributed_to"] == delivery_id
    code = next(d["coupon_code"] for d in log if d["delivery_id"] == delivery_id)
    ev = c.call("postEvent", expect=202, body={"device_id": "dev-1", "type": "conversion", "coupon_code": code, "value": 42.5}).body
    assert ev["attributed_to"] == delivery_id, (ev, log)
    ev = c.call("postEvent", expect=202, body={"device_id": "dev-3", "type": "conversion", "at": now - 10}).body
    assert ev["attributed_to"] is None and ev["reason"] == "no_matching_delivery"
    again = c.call("postEvent", role="app", secret=secret, expect=202,
                   body={"device_id": "dev-1", "type": "push_opened", "delivery_id": delivery_id}).body
    assert again["duplicate"] is True
    stats = c.call("campaignStats", campaign_id="store-welcome", expect=200).body
    assert stats["opened"] == 1 and stats["conversion_value"] == 42.5
    assert c.call("getDevice", device_id="dev-2", expect=200).body["user_id"] == "u-2"
    ctl = dict(WELCOME, experiment={"arms": [{"name": "A", "weight": 1}], "control_percent": 99.99})
    c.call("putCampaign", campaign_id="mostly-control", body=ctl, expect=200)
    prev = c.call("previewCampaign", campaign_id="mostly-control", body={"device_id": "dev-1"}, expect=200).body
    assert prev["arm"] == "control" and prev["note"]

    # audience
    assert c.call("estimateAudience", body={"fence_id": "store-42"}, expect=200).body["reachable"] >= 1
    c.call("estimateAudience", body={"geometry": {"type": "Polygon", "coordinates": [square(*STORE, 0.05)]},
                                     "max_location_age_hours": 2}, expect=200)

    # weather
    obs = {"lat": STORE[0], "lng": STORE[1], "observed_at": now - 60, "temperature_c": -2.5, "condition": "snow", "wind_kph": 30}
    assert c.call("postWeatherConditions", body={"observations": [obs]}, expect=202).body == {"stored": 1, "cells": 1}
    alert = alert_feature("urn:oid:2.49.0.1.840.0.openapi.1", now, lat=STORE[0], lng=STORE[1])
    out = c.call("postWeatherAlerts", body={"type": "FeatureCollection", "features": [alert]}, expect=202).body["alerts"][0]
    assert out["status"] == "accepted", out
    assert run_queues(api) >= 2  # the planner, then the fan-out sender
    rec = c.call("getWeatherAlert", alert_id=alert["properties"]["id"], expect=200).body
    assert rec["status"] == "processed" and rec["devices_targeted"] >= 1, rec
    c.call("getWeatherAlert", alert_id="urn:oid:never.seen", expect=404)
    assert c.call("postWeatherAlerts", body=alert, expect=202).body["alerts"][0]["status"] == "duplicate"
    cancel = alert_feature("urn:oid:2.49.0.1.840.0.openapi.2", now, lat=STORE[0], lng=STORE[1])
    cancel["properties"].update(messageType="Cancel", references=[{"identifier": alert["properties"]["id"], "sent": alert["properties"]["sent"]}])
    out = c.call("postWeatherAlerts", body={"type": "FeatureCollection", "features": [cancel]}, expect=202).body["alerts"][0]
    assert (out["status"], out["lineage"]) == ("cancelled", alert["properties"]["id"]), out
    # a feature the document does not describe (no properties.sent) is reported, not refused
    bad = alert_feature("urn:oid:2.49.0.1.840.0.openapi.3", now)
    del bad["properties"]["sent"]
    out = c.call("postWeatherAlerts", body={"type": "FeatureCollection", "features": [bad]}, invalid=True, expect=202).body
    assert out["alerts"][0]["reason"] == "invalid" and out["alerts"][0]["error"]["field"] == "features[0].properties.sent"

    # deletes
    c.call("deleteDevice", role="app", secret=secret, device_id="dev-1", expect=204)
    c.call("deleteDevice", device_id="dev-2", expect=204)
    c.call("deleteGeofence", fence_id="hex-1", expect=204)
    c.call("deleteCampaign", campaign_id="storm", expect=204)
    c.call("getCampaign", campaign_id="storm", expect=404)

    statuses = {r["status"] for r in c.call("listDeliveries", limit=1000, expect=200).body["deliveries"]}
    assert "sent" in statuses
    ok = {op for op, status in c.seen if 200 <= status < 300}
    assert ok == set(c.ops), f"operations the walkthrough never got a 2xx from: {set(c.ops) - ok}"


def test_error_answers_match_the_document(client):
    c = client
    c.call("putGeofence", fence_id="store-42", body=CIRCLE, expect=200)
    secret = c.call("putDevice", role="app", device_id="dev-1", body=DEVICE, expect=200).body["device_secret"]
    # 401 and 403: no key, another role, no device secret, a wrong one
    assert c.call("getDevice", role=None, device_id="dev-1", invalid=True, expect=401).body["error"]["field"] == "X-Api-Key"
    assert c.call("getDevice", role="app", secret=secret, device_id="dev-1", invalid=True, expect=403).body["error"]["field"] == "X-Api-Key"
    assert c.call("postPings", role="app", body={"device_id": "dev-1", "lat": 1, "lng": 1}, invalid=True,
                  expect=403).body["error"]["field"] == "X-Device-Secret"
    assert c.call("postPings", role="app", secret="wrong", body={"device_id": "dev-1", "lat": 1, "lng": 1},
                  expect=403).body["error"]["field"] == "X-Device-Secret"
    assert c.call("putDevice", role="app", secret="wrong", device_id="dev-1", body=DEVICE, expect=403).body["error"]["field"] == "X-Device-Secret"
    # 404
    assert c.call("getGeofence", fence_id="nope", expect=404).body["error"]["field"] == "fence_id"
    c.call("deleteCampaign", campaign_id="nope", expect=404)
    c.call("postPings", body={"device_id": "ghost", "lat": 1, "lng": 1}, expect=404)
    c.call("previewCampaign", campaign_id="nope", body={"device_id": "dev-1"}, expect=404)
    # 400: bodies and parameters the document forbids are the ones the server refuses
    assert c.call("postPings", role="app", secret=secret, body={"device_id": "dev-1", "lat": 91, "lng": 0}, invalid=True,
                  expect=400).body["error"]["field"] == "lat"
    assert c.call("postPings", body={"pings": [{"device_id": "dev-1", "lat": 1, "lng": 1}, {"device_id": "dev-1", "lat": 1}]},
                  invalid=True, expect=400).body["error"]["field"] == "pings[1].lng"
    assert c.call("putCampaign", campaign_id="c1", body=dict(WELCOME, colour="red"), invalid=True, expect=400).body["error"]["field"] == "colour"
    assert c.call("putDevice", device_id="dev-9", body={"platform": "windows", "push_token": "t"}, invalid=True,
                  expect=400).body["error"]["field"] == "platform"
    assert c.call("listGeofences", limit=0, invalid=True, expect=400).body["error"]["field"] == "limit"
    assert c.call("lookupGeofences", lat=95, lng=0, invalid=True, expect=400).body["error"]["field"] == "lat"
    assert c.call("listDeliveries", status="lost", invalid=True, expect=400).body["error"]["field"] == "status"
    assert c.call("postWeatherConditions", body={"observations": []}, invalid=True, expect=400).body["error"]["field"] == "observations"
    assert c.call("putGeofence", fence_id="f", body={"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]}},
                  invalid=True, expect=400).body["error"]["field"] == "properties.radius_m"
    # 413
    big = b'{"observations": [' + b" " * (5 * 1024 * 1024) + b"]}"
    assert c.call("postWeatherConditions", raw=big, expect=413).body["error"]["code"] == "payload_too_large"


def test_each_operations_key_is_enforced_as_documented(client):
    """No key → 401 on every keyed operation; the app key → 403 (role) exactly
    where the document lists no app alternative."""
    c = client
    for op_id, (method, path, op) in c.ops.items():
        url = path.replace("{fence_id}", "x").replace("{device_id}", "x").replace("{campaign_id}", "x")
        call = getattr(c.http, method)
        resp = call(url, headers={})
        if not op["security"]:
            assert resp.status_code == 200, op_id
            continue
        assert resp.status_code == 401 and json.loads(resp.body)["error"]["field"] == "X-Api-Key", op_id
        resp = call(url, headers={"X-Api-Key": c.keys["app"], "Content-Type": "application/json"})
        role_refused = resp.status_code == 403 and "role" in json.loads(resp.body)["error"]["message"]
        takes_app = any("app" in req.get("ApiKey", []) for req in op["security"])
        assert role_refused is not takes_app, (op_id, resp.status_code, resp.body)
        assert str(resp.status_code) in op["responses"], (op_id, resp.status_code)


def test_unsupported_media_type_answers_the_error_body(client):
    obs = {"lat": 1, "lng": 1, "observed_at": time.time() - 60, "temperature_c": 10, "condition": "clear"}
    answer = client.call("postWeatherConditions", body={"observations": [obs]}, content_type="text/plain", expect=415)
    assert answer.body["error"]["code"] == "unsupported_media_type"
