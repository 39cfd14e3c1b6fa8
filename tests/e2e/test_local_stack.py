"""The local stack serves the real app over HTTP."""

from __future__ import annotations

import json
import time

import requests


def test_health_answers_ok_without_a_key(stack):
    resp = requests.get(f"{stack.base_url}/v1/health", timeout=10)

    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"


def test_protected_route_without_a_key_is_401(stack):
    resp = requests.get(f"{stack.base_url}/v1/geofences/lookup", params={"lat": 1, "lng": 1}, timeout=10)

    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "unauthorized"


def test_protected_route_with_the_admin_key_is_served(stack):
    resp = requests.get(
        f"{stack.base_url}/v1/geofences/lookup",
        params={"lat": 1, "lng": 1},
        headers={"X-Api-Key": stack.admin_key},
        timeout=10,
    )

    assert resp.status_code == 200
    assert resp.json()["fences"] == []


def _error(resp) -> dict:
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
    return body["error"]


def test_a_path_no_route_has_is_404_in_the_error_body(stack):
    resp = requests.get(f"{stack.base_url}/v1/nope", headers={"X-Api-Key": stack.admin_key}, timeout=10)

    assert resp.status_code == 404
    assert _error(resp)["code"] == "not_found"


def test_a_method_the_path_lacks_is_405_in_the_error_body(stack):
    resp = requests.delete(f"{stack.base_url}/v1/pings", headers={"X-Api-Key": stack.admin_key}, timeout=10)

    assert resp.status_code == 405
    assert _error(resp)["code"] == "method_not_allowed" and resp.headers["Allow"] == "POST"


def test_curls_form_default_is_read_as_json_and_other_types_are_415(stack):
    headers = {"X-Api-Key": stack.admin_key}
    body = json.dumps({"observations": [{"lat": 1, "lng": 1, "observed_at": time.time() - 60, "temperature_c": 1, "condition": "rain"}]})
    form = requests.post(f"{stack.base_url}/v1/weather/conditions", data=body, timeout=10,
                         headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 202, form.text
    xml = requests.post(f"{stack.base_url}/v1/weather/conditions", data=body, timeout=10, headers={**headers, "Content-Type": "text/xml"})
    assert xml.status_code == 415
    assert _error(xml)["field"] == "Content-Type"
