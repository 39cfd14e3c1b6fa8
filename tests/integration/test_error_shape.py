"""One error body for every 4xx/5xx, through chalice.test.Client over moto:
content types (JSON and GeoJSON read alike, no Content-Type and curl's form
default read as JSON, anything else a 415), paths no route has (404) and
methods a path lacks (405); unknown fields rejected alike in every strict
body; conversion values bounded; oversized shapes rejected before parsing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from chalicelib.api.body_scan import MAX_ENTRIES
from tests import hostile
from tests.conftest import ADMIN_KEY, APP_KEY

NWS = Path(__file__).resolve().parents[1] / "fixtures" / "nws"


def err(r) -> dict:
    """The documented error body of ``r`` (fails on any other shape)."""
    body = json.loads(r.body)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    assert r.headers.get("Content-Type", r.headers.get("content-type")) == "application/json"
    return body["error"]


def post(api, path, payload, content_type="application/json", key=ADMIN_KEY, method="POST", extra=None):
    headers = {"X-Api-Key": key, **(extra or {})}
    if content_type is not None:
        headers["Content-Type"] = content_type
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return api.http.request(method, path, headers=headers, body=raw)


@pytest.fixture
def no_zone_fetch(monkeypatch):
    from chalicelib.weather.zones import ZoneFetcher

    monkeypatch.setattr(ZoneFetcher, "_fetch", lambda self, url: (None, True))


# ---------------------------------------------------------------- content types
@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-8", "application/geo+json", "Application/GEO+JSON; charset=UTF-8",
    None, "application/x-www-form-urlencoded", "",
])
def test_json_bodies_are_read_whatever_json_type_or_none(api, no_zone_fetch, content_type):
    alert = hostile.alert_feature(f"urn:oid:2.49.0.1.840.0.ct.{abs(hash(content_type))}", time.time())
    r = post(api, "/v1/weather/alerts", alert, content_type)
    assert r.status_code == 202, r.body
    assert json.loads(r.body)["alerts"][0]["status"] != "ignored"


def test_a_feed_recorded_from_api_weather_gov_is_accepted_as_geojson(api, no_zone_fetch):
    raw = (NWS / "pynws__alerts_active_zone.json").read_bytes()
    r = post(api, "/v1/weather/alerts", raw, "application/geo+json")
    assert r.status_code == 202, r.body
    assert len(json.loads(r.body)["alerts"]) == len(json.loads(raw)["features"])


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data; boundary=x", "application/jsonx"])
@pytest.mark.parametrize("path, method", [("/v1/weather/alerts", "POST"), ("/v1/pings", "POST"), ("/v1/devices/d1", "PUT")])
def test_other_content_types_are_415_in_the_error_body(api, content_type, path, method):
    r = post(api, path, {"a": 1}, content_type, method=method)
    if path == "/v1/weather/alerts" and content_type == "application/xml":
        # The alerts route also takes CAP XML: JSON sent as XML is malformed XML.
        assert r.status_code == 400 and err(r)["field"] == "body"
        return
    assert r.status_code == 415
    e = err(r)
    assert e["code"] == "unsupported_media_type" and e["field"] == "Content-Type"


def test_a_bodiless_route_ignores_the_content_type(api):
    r = api.http.get("/v1/geofences", headers={"X-Api-Key": ADMIN_KEY, "Content-Type": "text/plain"})
    assert r.status_code == 200


# ---------------------------------------------------------------- routes and methods
@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/nope"), ("POST", "/v2/pings"), ("GET", "/"), ("DELETE", "/v1/geofences/a/b"), ("GET", "/v1/devices/d1/extra"),
])
def test_a_path_no_route_has_is_404_in_the_error_body(api, method, path):
    r = api.http.request(method, path, headers={"X-Api-Key": ADMIN_KEY}, body=b"")
    assert r.status_code == 404
    assert err(r)["code"] == "not_found"


@pytest.mark.parametrize("method, path, allowed", [
    ("DELETE", "/v1/pings", "POST"), ("PATCH", "/v1/geofences/shop", "DELETE, GET, PUT"), ("POST", "/v1/health", "GET"),
])
def test_a_method_a_path_lacks_is_405_listing_the_allowed(api, method, path, allowed):
    r = api.http.request(method, path, headers={"X-Api-Key": ADMIN_KEY}, body=b"")
    assert r.status_code == 405
    e = err(r)
    assert e["code"] == "method_not_allowed" and e["message"].endswith(allowed)


# ---------------------------------------------------------------- unknown fields
DEVICE = {"platform": "android", "push_token": "tok", "consent": {"push": True, "location": True}}


def _device(api) -> str:
    r = post(api, "/v1/devices/d1", DEVICE, key=APP_KEY, method="PUT")
    assert r.status_code == 200, r.body
    return json.loads(r.body)["device_secret"]


def _ping(i: int, **extra) -> dict:
    return {"device_id": "d1", "lat": 38.44, "lng": -122.7, "timestamp": time.time() - 100 + i, **extra}


@pytest.mark.parametrize("path, method, payload, field", [
    ("/v1/pings", "POST", {"pings": [_ping(0), _ping(1), _ping(2), {**_ping(3), "ts": 5}]}, "pings[3].ts"),
    ("/v1/pings", "POST", {"device_id": "d1", "lat": 38.44, "lng": -122.7, "ts": 5}, "ts"),
    ("/v1/pings", "POST", {"pings": [_ping(0)], "extra": 1}, "extra"),
    ("/v1/events", "POST", {"device_id": "d1", "type": "conversion", "amount": 12}, "amount"),
    ("/v1/devices/d2", "PUT", {**DEVICE, "locale": "es"}, "locale"),
    ("/v1/devices/d2", "PUT", {**DEVICE, "consent": {"push": True, "location": True, "email": True}}, "consent.email"),
    ("/v1/audience/estimate", "POST", {"fence_id": "zone", "max_age": 1}, "max_age"),
    ("/v1/weather/conditions", "POST", {"observations": [], "source": "x"}, "source"),
    ("/v1/weather/conditions", "POST", {"observations": [{"lat": 1, "lng": 1, "observed_at": "2026-01-01T00:00:00Z",
                                                           "temperature_c": 1, "condition": "rain", "humidity": 3}]},
     "observations[0].humidity"),
    ("/v1/campaigns/c1/preview", "POST", {"device_id": "d1", "fence": "shop"}, "fence"),
])
def test_unknown_fields_are_400_naming_the_field(api, path, method, payload, field):
    _device(api)
    if "preview" in path:
        camp = {"name": "n", "trigger": {"type": "geofence_enter", "fence_tags": ["shop"]}, "message": {"title": "t", "body": "b"}}
        assert post(api, "/v1/campaigns/c1", camp, method="PUT").status_code == 200
    before = api.http.get("/v1/devices/d1", headers={"X-Api-Key": ADMIN_KEY}).body
    r = post(api, path, payload, method=method)
    assert r.status_code == 400, r.body
    e = err(r)
    assert e["field"] == field and "unknown field" in e["message"]
    assert api.http.get("/v1/devices/d1", headers={"X-Api-Key": ADMIN_KEY}).body == before


def test_free_form_maps_stay_free(api):
    """Device attributes and fence metadata are the app's own: any keys."""
    r = post(api, "/v1/devices/d3", {**DEVICE, "attributes": {"anything_at_all": 1, "x-y": "z"}}, method="PUT")
    assert r.status_code == 200, r.body
    fence = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-122.7, 38.44]},
             "properties": {"radius_m": 100, "metadata": {"whatever": "v"}, "GEO_ID": "0500000US06097"}, "bbox": [0, 0, 1, 1]}
    assert post(api, "/v1/geofences/f1", fence, method="PUT").status_code == 200


# ---------------------------------------------------------------- conversion values
@pytest.mark.parametrize("value, status", [(0, 202), (999_999.99, 202), (1_000_000, 202), (1_000_000.01, 400), (1e9, 400), (-0.01, 400)])
def test_conversion_values_are_bounded(api, value, status):
    secret = _device(api)
    r = post(api, "/v1/events", {"device_id": "d1", "type": "conversion", "value": value}, key=APP_KEY,
             extra={"X-Device-Secret": secret})
    assert r.status_code == status, r.body
    if status == 400:
        assert err(r)["field"] == "value"


# ---------------------------------------------------------------- cheap rejection
@pytest.mark.parametrize("body, field", [
    (b'{"pings": [' + b",".join([b"0"] * 2_400_000) + b"]}", "pings"),
    (b'{"pings": [' + b",".join([b"[]"] * 1_600_000) + b"]}", "pings"),
    (b'{"observations": [{"lat": 1, "x": [' + b",".join([b'"a"'] * (MAX_ENTRIES + 1)) + b"]}]}", "observations[0].x"),
])
def test_a_huge_array_is_400_naming_it(api, body, field):
    assert len(body) < 5 * 1024 * 1024
    r = post(api, "/v1/pings" if b"pings" in body else "/v1/weather/conditions", body)
    assert r.status_code == 400
    e = err(r)
    assert e["field"] == field and "entries" in e["message"]
