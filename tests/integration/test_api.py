"""The HTTP API through chalice.test.Client over moto: auth, the error body,
bad input per route → the exact 4xx and nothing written."""

from __future__ import annotations

import json

import boto3
import pytest

from chalicelib.settings import get_settings
from tests.conftest import ADMIN_KEY, APP_KEY

ADMIN = {"X-Api-Key": ADMIN_KEY, "Content-Type": "application/json"}
APPH = {"X-Api-Key": APP_KEY, "Content-Type": "application/json"}

CIRCLE = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-122.7, 38.44]}, "properties": {"radius_m": 100, "name": "Shop", "tags": ["shop"]}}
DEVICE = {"platform": "android", "push_token": "tok", "attributes": {"first_name": "Ana"}, "consent": {"push": True, "location": True}}


def snapshot():
    s = get_settings()
    ddb = boto3.client("dynamodb")
    return {t: sorted(repr(sorted(i.items())) for i in ddb.scan(TableName=t)["Items"]) for t in (s.geofences_table, s.cells_table, s.devices_table)}


def body(resp):
    return json.loads(resp.body) if resp.body else None


def call(api, method, path, headers=ADMIN, payload=None, raw=None):
    data = raw if raw is not None else (json.dumps(payload) if payload is not None else None)
    return getattr(api.http, method)(path, headers=headers, body=data)


def test_health_needs_no_key(api):
    r = api.http.get("/v1/health")
    assert r.status_code == 200 and body(r)["status"] == "ok"


@pytest.mark.parametrize(
    "headers, status, code",
    [({}, 401, "unauthorized"), ({"X-Api-Key": "nope"}, 403, "forbidden"), ({"X-Api-Key": APP_KEY}, 403, "forbidden")],
)
def test_auth_on_admin_routes(api, headers, status, code):
    r = api.http.put("/v1/geofences/shop", headers=headers, body=json.dumps(CIRCLE))
    assert r.status_code == status
    assert body(r)["error"]["code"] == code and body(r)["error"]["field"] == "X-Api-Key"


def test_app_key_may_register_and_ping(api):
    assert call(api, "put", "/v1/geofences/shop", payload=CIRCLE).status_code == 200
    r = call(api, "put", "/v1/devices/d1", APPH, DEVICE)
    assert r.status_code == 200 and body(r)["push_enabled"] is True
    mine = dict(APPH, **{"X-Device-Secret": body(r)["device_secret"]})
    r = call(api, "post", "/v1/pings", mine, {"device_id": "d1", "lat": 38.44, "lng": -122.7})
    assert r.status_code == 200
    assert body(r)["results"][0]["events"][0]["type"] == "enter"
    assert call(api, "get", "/v1/devices/d1", mine).status_code == 403
    dev = body(call(api, "get", "/v1/devices/d1"))
    assert dev["fences"] == ["shop"] and dev["last_location"]["h3_cell"]
    assert call(api, "delete", "/v1/devices/d1", mine).status_code == 204
    assert call(api, "get", "/v1/devices/d1").status_code == 404


def test_geofence_crud_and_lookup(api):
    r = call(api, "put", "/v1/geofences/shop", payload=CIRCLE)
    assert r.status_code == 200
    assert set(body(r)) >= {"id", "version", "kind", "area_km2", "cells"} and body(r)["kind"] == "circle"
    assert body(call(api, "get", "/v1/geofences/lookup?lat=38.44&lng=-122.7")) == {"fences": [{"id": "shop", "name": "Shop", "tags": ["shop"]}]}
    assert body(call(api, "get", "/v1/geofences/shop"))["properties"]["radius_m"] == 100
    page = body(call(api, "get", "/v1/geofences?tag=shop"))
    assert [f["id"] for f in page["features"]] == ["shop"] and page["next_token"] is None
    assert call(api, "delete", "/v1/geofences/shop").status_code == 204
    assert body(call(api, "get", "/v1/geofences/lookup?lat=38.44&lng=-122.7")) == {"fences": []}
    s = get_settings()
    assert boto3.client("dynamodb").scan(TableName=s.cells_table)["Count"] == 0


def test_repair_query_flag(api):
    bowtie = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}, "properties": {}}
    r = call(api, "put", "/v1/geofences/bow", payload=bowtie)
    assert r.status_code == 400 and "self-intersection" in body(r)["error"]["message"]
    r = api.http.put("/v1/geofences/bow?repair=true", headers=ADMIN, body=json.dumps(bowtie))
    assert r.status_code == 200 and body(r)["repaired"] is True


BAD = [
    # (method, path, headers, raw body, status, code, field)
    ("put", "/v1/geofences/shop", ADMIN, "{not json", 400, "invalid_input", "body"),
    ("put", "/v1/geofences/shop", ADMIN, "", 400, "invalid_input", "body"),
    ("put", "/v1/geofences/shop", ADMIN, '{"type": "Feature", "geometry": {"type": "Point", "coordinates": [NaN, 1]}, "properties": {"radius_m": 10}}', 400, "invalid_input", "body"),
    ("put", "/v1/geofences/shop", ADMIN, json.dumps({"type": "Feature", "geometry": {"type": "Point", "coordinates": [-122.7, 38.4]}, "properties": {"radius_m": 5}}), 400, "invalid_input", "properties.radius_m"),
    ("put", "/v1/geofences/shop", ADMIN, json.dumps({"type": "Feature", "geometry": {"type": "Point", "coordinates": [-222.7, 38.4]}, "properties": {"radius_m": 50}}), 400, "invalid_geometry", "geometry.coordinates"),
    ("put", "/v1/geofences/bad%20id", ADMIN, json.dumps(CIRCLE), 400, "invalid_input", "fence_id"),
    ("put", "/v1/geofences/shop?repair=maybe", ADMIN, json.dumps(CIRCLE), 400, "invalid_input", "repair"),
    ("put", "/v1/geofences/shop", ADMIN, "[" * 100 + "]" * 100, 400, "invalid_input", "body"),
    ("post", "/v1/geofences/import", ADMIN, json.dumps({"type": "Feature"}), 400, "invalid_input", "type"),
    ("post", "/v1/geofences/import", ADMIN, json.dumps({"type": "FeatureCollection", "features": {}}), 400, "invalid_input", "features"),
    ("get", "/v1/geofences/lookup?lat=91&lng=0", ADMIN, None, 400, "invalid_input", "lat"),
    ("get", "/v1/geofences/lookup?lat=1", ADMIN, None, 400, "invalid_input", "lng"),
    ("get", "/v1/geofences/lookup?lat=nan&lng=1", ADMIN, None, 400, "invalid_input", "lat"),
    ("get", "/v1/geofences?limit=0", ADMIN, None, 400, "invalid_input", "limit"),
    ("get", "/v1/geofences?limit=1001", ADMIN, None, 400, "invalid_input", "limit"),
    ("get", "/v1/geofences/unknown", ADMIN, None, 404, "not_found", "fence_id"),
    ("delete", "/v1/geofences/unknown", ADMIN, None, 404, "not_found", "fence_id"),
    ("put", "/v1/devices/d1", APPH, json.dumps({"platform": "bb", "push_token": "t"}), 400, "invalid_input", "platform"),
    ("put", "/v1/devices/d1", APPH, json.dumps([1]), 400, "invalid_input", "body"),
    ("get", "/v1/devices/unknown", ADMIN, None, 404, "not_found", "device_id"),
    ("delete", "/v1/devices/unknown", APPH, None, 403, "forbidden", "X-Device-Secret"),
    ("delete", "/v1/devices/unknown", ADMIN, None, 404, "not_found", "device_id"),
    ("post", "/v1/pings", APPH, json.dumps({"device_id": "d1", "lat": 0}), 400, "invalid_input", "lng"),
    ("post", "/v1/pings", APPH, json.dumps({"device_id": "d1", "lat": 1e309, "lng": 0}), 400, "invalid_input", "body"),
    ("post", "/v1/pings", ADMIN, json.dumps({"pings": [{"device_id": "d1", "lat": 0, "lng": 0}] * 101}), 400, "invalid_input", "pings"),
    ("post", "/v1/pings", ADMIN, json.dumps({"pings": [{"device_id": "d1", "lat": 0, "lng": 0}, {"device_id": "d1", "lat": 0, "lng": "x"}]}), 400, "invalid_input", "pings[1].lng"),
    ("post", "/v1/pings", APPH, json.dumps({"device_id": "ghost", "lat": 0, "lng": 0}), 403, "forbidden", "X-Device-Secret"),
    ("post", "/v1/pings", ADMIN, json.dumps({"device_id": "ghost", "lat": 0, "lng": 0}), 404, "not_found", "device_id"),
    ("post", "/v1/pings", APPH, '{"device_id": "d1", "lat": 1' + "0" * 400 + ', "lng": 0}', 400, "invalid_input", "lat"),
    ("post", "/v1/pings", APPH, '{"device_id": "d1", "lat": 1, "lng": 0, "timestamp": 1' + "0" * 400 + "}", 400, "invalid_input", "timestamp"),
    ("put", "/v1/geofences/shop", ADMIN, '{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1' + "0" * 400 + ', 1]}, "properties": {"radius_m": 10}}', 400, "invalid_geometry", "geometry.coordinates"),
    ("post", "/v1/pings", APPH, json.dumps({"pings": [{"device_id": "a1", "lat": 0, "lng": 0}, {"device_id": "a2", "lat": 0, "lng": 0}]}), 403, "forbidden", "pings"),
]


@pytest.mark.parametrize("method, path, headers, raw, status, code, field", BAD)
def test_bad_input_gets_the_exact_4xx_and_writes_nothing(api, method, path, headers, raw, status, code, field):
    call(api, "put", "/v1/geofences/keep", payload=CIRCLE)
    call(api, "put", "/v1/devices/d1", APPH, DEVICE)
    before = snapshot()
    r = getattr(api.http, method)(path, headers=headers, body=raw)
    assert r.status_code == status, r.body
    err = body(r)["error"]
    assert err["code"] == code and err["field"] == field and err["message"]
    assert snapshot() == before


def test_no_consent_ping_is_403_and_not_stored(api):
    r = call(api, "put", "/v1/devices/d2", APPH, dict(DEVICE, consent={"push": True, "location": False}))
    mine = dict(APPH, **{"X-Device-Secret": body(r)["device_secret"]})
    before = snapshot()
    r = call(api, "post", "/v1/pings", mine, {"device_id": "d2", "lat": 38.44, "lng": -122.7})
    assert r.status_code == 403 and body(r)["error"]["field"] == "consent.location"
    assert snapshot() == before


def test_oversized_body_is_413(api):
    r = api.http.post("/v1/geofences/import", headers=ADMIN, body="x" * (5 * 1024 * 1024 + 1))
    assert r.status_code == 413 and body(r)["error"]["code"] == "payload_too_large"
