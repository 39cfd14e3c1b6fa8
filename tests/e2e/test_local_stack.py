"""The local stack serves the real app over HTTP."""

from __future__ import annotations

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
