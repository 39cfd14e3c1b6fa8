"""Ids are matched whole: a trailing newline (``%0A`` in a path) is no
valid fence, device or campaign id — 400 where an id is being created,
404 where one is looked up, and nothing is written."""

from __future__ import annotations

import json
from urllib.parse import unquote

import pytest

from tests.conftest import ADMIN_KEY
from tests.integration.test_api import CIRCLE, DEVICE, snapshot

ADMIN = {"X-Api-Key": ADMIN_KEY, "Content-Type": "application/json"}
CAMPAIGN = {"name": "Hi", "trigger": {"type": "geofence_enter", "fence_ids": ["shop"]},
            "message": {"title": "Hi", "body": "Welcome"}}


@pytest.fixture
def api(api, monkeypatch):
    """The test client, with path parameters URL-decoded as API Gateway
    hands them to the Lambda (chalice's local gateway passes them raw)."""
    converter = api.http._local_gateway.event_converter
    create = converter.create_lambda_event

    def decoded(*args, **kwargs):
        event = create(*args, **kwargs)
        if event.get("pathParameters"):
            event["pathParameters"] = {k: unquote(v) for k, v in event["pathParameters"].items()}
        return event

    monkeypatch.setattr(converter, "create_lambda_event", decoded)
    return api


def call(api, method, path, payload=None):
    return getattr(api.http, method)(path, headers=ADMIN, body=json.dumps(payload) if payload is not None else None)


@pytest.mark.parametrize("suffix", ["%0A", "%0D%0A", "%0a"])
@pytest.mark.parametrize("method, path, payload, status", [
    ("put", "/v1/geofences/shop{}", CIRCLE, 400),
    ("get", "/v1/geofences/shop{}", None, 404),
    ("delete", "/v1/geofences/shop{}", None, 404),
    ("put", "/v1/devices/d1{}", DEVICE, 400),
    ("get", "/v1/devices/d1{}", None, 404),
    ("delete", "/v1/devices/d1{}", None, 404),
    ("put", "/v1/campaigns/c1{}", CAMPAIGN, 400),
    ("get", "/v1/campaigns/c1{}", None, 404),
    ("delete", "/v1/campaigns/c1{}", None, 404),
])
def test_a_trailing_newline_is_no_id(api, suffix, method, path, payload, status):
    before = snapshot()
    r = call(api, method, path.format(suffix), payload)
    assert r.status_code == status, r.body
    assert json.loads(r.body)["error"]["field"] in ("fence_id", "device_id", "campaign_id")
    assert snapshot() == before


def test_the_valid_ids_still_work_and_their_newline_twins_do_not_alias_them(api):
    assert call(api, "put", "/v1/geofences/shop", CIRCLE).status_code == 200
    assert call(api, "put", "/v1/devices/d1", DEVICE).status_code == 200
    assert call(api, "put", "/v1/campaigns/c1", CAMPAIGN).status_code == 200
    for path in ("/v1/geofences/shop%0A", "/v1/devices/d1%0A", "/v1/campaigns/c1%0A"):
        assert call(api, "get", path).status_code == 404
    for path in ("/v1/geofences/shop", "/v1/devices/d1", "/v1/campaigns/c1"):
        assert call(api, "get", path).status_code == 200


def test_a_ping_or_a_page_token_with_a_trailing_newline_is_400(api):
    r = call(api, "post", "/v1/pings", {"device_id": "d1\n", "lat": 38.44, "lng": -122.7})
    assert r.status_code == 400 and json.loads(r.body)["error"]["field"] == "device_id"
    r = call(api, "post", "/v1/pings", {"pings": [{"device_id": "d1\n", "lat": 38.44, "lng": -122.7}]})
    assert r.status_code == 400 and json.loads(r.body)["error"]["field"] == "pings[0].device_id"
    r = call(api, "get", "/v1/geofences?next_token=shop%0A")
    assert r.status_code == 400 and json.loads(r.body)["error"]["field"] == "next_token"
