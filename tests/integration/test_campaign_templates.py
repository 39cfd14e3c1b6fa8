"""Template authoring over HTTP (chalice.test.Client over moto): a campaign
whose templates have several errors is one 400 listing every one with its
field and line, writing nothing; a mistyped variable is a warning in the
PUT's 2xx answer and in the preview."""

from __future__ import annotations

import json

from tests.conftest import ADMIN_KEY

HEADERS = {"Content-Type": "application/json", "X-Api-Key": ADMIN_KEY}
CAMPAIGN = {
    "name": "Welcome in",
    "trigger": {"type": "geofence_enter", "fence_ids": ["shop"]},
    "message": {"title": "Hi {{ first_name | default: 'there' }}", "body": "Take 10% off at {{ fence.name }}"},
}


def put(api, path, payload):
    resp = api.http.put(path, headers=HEADERS, body=json.dumps(payload))
    return resp.status_code, json.loads(resp.body)


def test_campaign_with_two_template_errors_is_one_400_listing_both(api):
    bad = {**CAMPAIGN, "message": {"title": "Hi {{ first_name | }}", "body": "Line one\n{% bogus %}\n{{ x | nofilter }}"}}
    status, out = put(api, "/v1/campaigns/c1", bad)
    assert status == 400
    assert out["error"]["code"] == "invalid_input" and out["error"]["field"] == "message.title"
    assert out["error"]["message"].startswith("template error on line 1:")
    assert [(e["field"], e["line"]) for e in out["errors"]] == [("message.title", 1), ("message.body", 2), ("message.body", 3)]
    assert all(set(e) == {"code", "message", "field", "line"} for e in out["errors"])
    assert api.http.get("/v1/campaigns/c1", headers=HEADERS).status_code == 404  # nothing written


def test_campaign_warnings_on_save_and_in_preview(api):
    fence = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-122.7, 38.44]},
             "properties": {"radius_m": 100, "name": "Shop"}}
    assert api.http.put("/v1/geofences/shop", headers=HEADERS, body=json.dumps(fence)).status_code in (200, 201)
    device = {"platform": "android", "push_token": "tok-d1", "attributes": {"first_name": "Ana"},
              "consent": {"push": True, "location": True}}
    assert api.http.put("/v1/devices/d1", headers=HEADERS, body=json.dumps(device)).status_code in (200, 201)

    typo = {**CAMPAIGN, "message": {"title": "Hi", "body": "Hello\nHi {{ firstname }}!"}}
    status, out = put(api, "/v1/campaigns/c1", typo)
    assert status in (200, 201) and out["version"] == 1
    assert [(w["field"], w["variable"], w["line"]) for w in out["warnings"]] == [("message.body", "firstname", 2)]

    resp = api.http.post("/v1/campaigns/c1/preview", headers=HEADERS, body=json.dumps({"device_id": "d1"}))
    preview = json.loads(resp.body)
    assert resp.status_code == 200 and preview["body"] == "Hello\nHi !"
    [w] = preview["warnings"]
    assert (w["field"], w["variable"], w["line"]) == ("message.body", "firstname", 2)
    assert "did you mean 'first_name'" in w["message"]

    status, clean = put(api, "/v1/campaigns/c1", CAMPAIGN)
    assert status in (200, 201) and clean["warnings"] == [] and clean["version"] == 2
