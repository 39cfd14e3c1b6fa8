"""The end-to-end log scan (tests/logscan.py) must be able to fail: planted
lines with each kind of leak are found; the app's own redacted lines and
ordinary numbers are not."""

from __future__ import annotations

import json
import logging

import pytest

from tests.logscan import LogCapture, Sensitive, scan

LAT, LNG = 32.7767, -96.797


@pytest.fixture
def sensitive() -> Sensitive:
    s = Sensitive()
    s.collect_request(
        "http://127.0.0.1:1/v1/pings",
        {"X-Api-Key": "app-key-0123456789", "X-Device-Secret": "dsec-abcdefghijkl"},
        json.dumps({"device_id": "e2e-ana", "lat": LAT, "lng": LNG, "timestamp": 1790000000.5}).encode(),
    )
    s.collect_request("http://127.0.0.1:1/v1/devices/e2e-ana", {"X-Api-Key": "app-key-0123456789"},
                      json.dumps({"platform": "ios", "push_token": "token-e2e-ana-abc", "consent": {}}).encode())
    s.collect_response(json.dumps({"device_id": "e2e-bo", "device_secret": "returned-secret-XYZ123"}).encode())
    s.add_secret("coupon secret", "coupon-secret-value-42")
    return s


def kinds(lines, sensitive) -> list[str]:
    return [f.kind for f in scan(lines, sensitive)]


def test_collects_pairs_tokens_keys_and_secrets(sensitive):
    assert sensitive.pairs == {(LAT, LNG)}
    assert sensitive.secrets == {
        "app-key-0123456789": "API key",
        "dsec-abcdefghijkl": "device secret",
        "token-e2e-ana-abc": "push token",
        "returned-secret-XYZ123": "device secret",
        "coupon-secret-value-42": "coupon secret",
    }


def test_query_string_coordinates_are_collected():
    s = Sensitive()
    s.collect_request("http://h/v1/geofences/lookup?lat=40.7128&lng=-74.006", {}, None)
    assert s.pairs == {(40.7128, -74.006)}


@pytest.mark.parametrize("line", [
    f"device e2e-ana at {LAT}, {LNG}",
    f'{{"message": "ping", "lng": {LNG}, "lat": {LAT}}}',  # the other order, JSON keys
    f"[{LNG},{LAT}]",  # GeoJSON order
])
def test_a_planted_posted_location_fails_the_scan(sensitive, line):
    assert "coordinate pair" in kinds([line], sensitive)


@pytest.mark.parametrize("line,kind", [
    ("registered with token-e2e-ana-abc", "push token"),
    ("X-Api-Key: app-key-0123456789", "API key"),
    ("secret dsec-abcdefghijkl", "device secret"),
    ('{"device_secret": "returned-secret-XYZ123"}', "device secret"),
    ("hmac coupon-secret-value-42", "coupon secret"),
    ("near 47.4312, -122.2544", "coordinate-like pair"),
    ("lat=47.43", "keyed coordinate"),
    ("endpoint for tok-someone-else", "push-token-shaped value"),
    ("demo-ana-token-1", "push-token-shaped value"),
])
def test_each_kind_of_leak_is_found(sensitive, line, kind):
    found = scan(["a clean line", line], sensitive)
    assert kind in [f.kind for f in found]
    assert all(f.line_no == 2 for f in found)
    assert "0123456789" not in " ".join(str(f) for f in found)  # the report masks values


@pytest.mark.parametrize("line", [
    '{"level":"INFO","logger":"hexcast.push","message":"delivery","request_id":"c6af","delivery_id":"dl_x","status":"sent"}',
    '{"message":"ping","lat":"[redacted]","lng":"[redacted]","h3_cell":"8926c9a1a2fffff"}',
    f'{{"ts": 1790000000.123456, "area_km2": 0.282743, "latency_s": {LAT}}}',  # one coordinate alone is no pair
    '127.0.0.1 "GET /v1/geofences/lookup?lat=…&lng=… HTTP/1.1" 200 -',
    '{"_aws":{"Timestamp":1795449070593},"fanout_lag_s":[0.266, 1.25]}',
    "device e2e-ana-token has next_token abc",
])
def test_ordinary_lines_are_clean(sensitive, line):
    assert scan([line], sensitive) == []


def test_capture_writes_app_lines_as_shipped_and_others_in_full(sensitive):
    capture = LogCapture().install()
    try:
        logging.getLogger("hexcast.test").warning("ping", extra={"lat": LAT, "lng": LNG, "push_token": "token-e2e-ana-abc"})
        logging.getLogger("elsewhere.test").warning("ping", extra={"lat": LAT, "lng": LNG})
    finally:
        capture.uninstall()
    app_line, other_line = [line for line in capture.lines if '"ping"' in line]
    assert json.loads(app_line)["lat"] == "[redacted]" and scan([app_line], sensitive) == []
    assert "coordinate pair" in kinds([other_line], sensitive)
