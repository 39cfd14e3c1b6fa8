"""The push routes over HTTP (chalice.test.Client over moto): campaigns,
preview, stats, the delivery log, open/conversion events, audience
estimates, and the SNS endpoint that device registration manages.

Bad input gets the exact 4xx naming the field and writes nothing;
one happy-path flow walks ping → delivery → events → stats → erase; a small
hypothesis fuzz checks no body makes the campaign, event and estimate
routes answer 5xx."""

from __future__ import annotations

import contextlib
import json
import time
from urllib.parse import urlencode

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ADMIN_KEY, APP_KEY, moto_app_client

MOTO_ACCOUNT = "123456789012"
MOTO_REGION = "us-east-1"

SHOP = (38.44, -122.7)  # lat, lng of the circle's centre
FAR = (38.40, -122.7)  # ~4.4 km south: outside the 100 m circle and its exit buffer

CIRCLE = {
    "type": "Feature",
    "geometry": {"type": "Point", "coordinates": [SHOP[1], SHOP[0]]},
    "properties": {"radius_m": 100, "name": "Shop", "tags": ["shop"]},
}
DEVICE = {
    "platform": "android",
    "push_token": "tok-d1",
    "attributes": {"first_name": "Ana", "loyalty_tier": "gold"},
    "consent": {"push": True, "location": True},
}
CAMPAIGN = {
    "name": "Welcome in",
    "trigger": {"type": "geofence_enter", "fence_ids": ["shop"]},
    "message": {
        "title": "Hi {{ first_name | default: 'there' }}",
        "body": "Take {{ coupon.percent_off }}% off at {{ fence.name }}: {{ coupon.code }}",
        "deep_link": "shop://deals",
    },
    "coupon": {"percent_off": 10, "prefix": "SHOP", "valid_hours": 72},
}


# ---------------------------------------------------------------- helpers
def body(resp):
    return json.loads(resp.body) if resp.body else None


def headers(role: str, secret: str | None = None) -> dict:
    """``admin`` | ``app`` | ``none`` | ``badkey``. App calls carry the
    device's secret when registration handed one out (see the README's "Security model")."""
    h = {"Content-Type": "application/json"}
    if role == "admin":
        h["X-Api-Key"] = ADMIN_KEY
    elif role == "app":
        h["X-Api-Key"] = APP_KEY
        if secret:
            h["X-Device-Secret"] = secret
    elif role == "badkey":
        h["X-Api-Key"] = "not-a-key"
    return h


def call(api, method, path, role="admin", payload=None, raw=None, secret=None):
    data = raw if raw is not None else (json.dumps(payload) if payload is not None else None)
    return getattr(api.http, method)(path, headers=headers(role, secret), body=data)


def snapshot() -> dict:
    """Every item of every table, read from moto's memory rather than by
    Scan (the bad-input table takes two per row): the proof nothing was written."""
    from moto.dynamodb.models import dynamodb_backends

    tables = dynamodb_backends[MOTO_ACCOUNT][MOTO_REGION].tables
    return {name: [json.dumps(i.to_json(), sort_keys=True, default=repr) for i in t.all_items()] for name, t in tables.items()}


def endpoints() -> dict:
    from moto.sns.models import sns_backends

    return sns_backends[MOTO_ACCOUNT][MOTO_REGION].platform_endpoints


class World:
    """One device inside the shop fence with one sent delivery of campaign c1."""

    def __init__(self, api):
        self.api = api
        r = call(api, "put", "/v1/devices/d1", "app", DEVICE)
        assert r.status_code == 200, r.body
        self.secret = body(r).get("device_secret")
        assert call(api, "put", "/v1/geofences/shop", payload=CIRCLE).status_code == 200
        assert call(api, "put", "/v1/campaigns/c1", payload=CAMPAIGN).status_code == 200
        self.t0 = time.time() - 600
        self.ping(FAR, 0)
        res = self.ping(SHOP, 1)
        assert len(res["deliveries"]) == 1, res
        self.delivery_id = res["deliveries"][0]

    def ping(self, where, step: int) -> dict:
        lat, lng = where
        p = {"device_id": "d1", "lat": lat, "lng": lng, "accuracy_m": 5, "timestamp": self.t0 + 10 * step}
        r = call(self.api, "post", "/v1/pings", "app", p, secret=self.secret)
        assert r.status_code == 200, r.body
        return body(r)["results"][0]

    def campaigns(self):
        return body(call(self.api, "get", "/v1/campaigns"))

    def deliveries(self):
        return body(call(self.api, "get", "/v1/deliveries?device_id=d1"))


@contextlib.contextmanager
def moto_client():
    """What conftest's ``api`` fixture builds, for a class-scoped world:
    building it takes ~0.5 s, and the bad-input rows may share one because
    each proves it wrote nothing."""
    with moto_app_client({
        "HEXCAST_ADMIN_KEY": ADMIN_KEY,
        "HEXCAST_APP_KEY": APP_KEY,
        "HEXCAST_COUPON_SECRET": "test-coupon-secret",
        "HEXCAST_CAMPAIGN_CACHE_S": "0",
    }) as client:
        yield client


@pytest.fixture(scope="class")
def shared_world():
    """One World per test class (torn down before any function-scoped
    ``api`` test starts its own moto, so the two never nest)."""
    with moto_client() as client:
        yield World(client)


@pytest.fixture
def world(api) -> World:
    return World(api)


# ---------------------------------------------------------------- bad input table
def camp(**changes) -> str:
    """CAMPAIGN with top-level ``changes`` (None deletes the key)."""
    out = dict(CAMPAIGN)
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return json.dumps(out)


def event(**fields) -> str:
    return json.dumps({"device_id": "d1", **fields})


DL = "__DELIVERY__"  # replaced by the world's delivery id
SQUARE = {"type": "Polygon", "coordinates": [[[-122.71, 38.43], [-122.69, 38.43], [-122.69, 38.45], [-122.71, 38.45], [-122.71, 38.43]]]}
BIG = "x" * (5 * 1024 * 1024 + 1)

ADMIN_ONLY = [
    ("get", "/v1/campaigns", None),
    ("put", "/v1/campaigns/c2", camp()),
    ("get", "/v1/campaigns/c1", None),
    ("delete", "/v1/campaigns/c1", None),
    ("post", "/v1/campaigns/c1/preview", json.dumps({"device_id": "d1"})),
    ("get", "/v1/campaigns/c1/stats", None),
    ("get", "/v1/deliveries", None),
    ("post", "/v1/audience/estimate", json.dumps({"fence_id": "shop"})),
]

AUTH = [
    *[pytest.param(m, p, "app", raw, 403, "forbidden", "X-Api-Key", "", id=f"app-key-{m}-{p}") for m, p, raw in ADMIN_ONLY],
    *[pytest.param(m, p, "none", raw, 401, "unauthorized", "X-Api-Key", "", id=f"no-key-{m}-{p}") for m, p, raw in ADMIN_ONLY],
    *[pytest.param(m, p, "badkey", raw, 403, "forbidden", "X-Api-Key", "", id=f"bad-key-{m}-{p}") for m, p, raw in ADMIN_ONLY[:2]],
    pytest.param("post", "/v1/events", "none", event(type="push_opened", delivery_id=DL), 401, "unauthorized", "X-Api-Key", "", id="events-no-key"),
    pytest.param("post", "/v1/events", "badkey", event(type="push_opened", delivery_id=DL), 403, "forbidden", "X-Api-Key", "", id="events-bad-key"),
    pytest.param("put", "/v1/devices/d9", "none", json.dumps(DEVICE), 401, "unauthorized", "X-Api-Key", "", id="device-put-no-key"),
    pytest.param("delete", "/v1/devices/d1", "none", None, 401, "unauthorized", "X-Api-Key", "", id="device-delete-no-key"),
]

MALFORMED = [
    # every route with a body × malformed / empty / NaN / wrong top-level type / too deep / too big
    *[
        pytest.param(m, p, role, raw, status, code, "body", "", id=f"{name}-{p}")
        for m, p, role in [
            ("put", "/v1/campaigns/c2", "admin"),
            ("post", "/v1/campaigns/c1/preview", "admin"),
            ("post", "/v1/events", "app"),
            ("post", "/v1/audience/estimate", "admin"),
            ("put", "/v1/devices/d1", "app"),
        ]
        for name, raw, status, code in [
            ("malformed", "{not json", 400, "invalid_input"),
            ("empty", "", 400, "invalid_input"),
            ("nan", '{"value": NaN}', 400, "invalid_input"),
            ("list", "[1, 2]", 400, "invalid_input"),
            ("string", '"hello"', 400, "invalid_input"),
            ("deep", "[" * 100 + "]" * 100, 400, "invalid_input"),
            ("too-big", BIG, 413, "payload_too_large"),
        ]
    ],
]

UNKNOWN = [
    pytest.param("get", "/v1/campaigns/nope", "admin", None, 404, "not_found", "campaign_id", "nope", id="get-unknown-campaign"),
    pytest.param("get", "/v1/campaigns/bad%20id", "admin", None, 404, "not_found", "campaign_id", "", id="get-malformed-campaign-id"),
    pytest.param("delete", "/v1/campaigns/nope", "admin", None, 404, "not_found", "campaign_id", "", id="delete-unknown-campaign"),
    pytest.param("get", "/v1/campaigns/nope/stats", "admin", None, 404, "not_found", "campaign_id", "", id="stats-unknown-campaign"),
    pytest.param("post", "/v1/campaigns/nope/preview", "admin", json.dumps({"device_id": "d1"}), 404, "not_found", "campaign_id", "", id="preview-unknown-campaign"),
    pytest.param("post", "/v1/campaigns/c1/preview", "admin", json.dumps({"device_id": "ghost"}), 404, "not_found", "device_id", "ghost", id="preview-unknown-device"),
    pytest.param("post", "/v1/campaigns/c1/preview", "admin", json.dumps({"device_id": 7}), 400, "invalid_input", "device_id", "", id="preview-device-id-number"),
    pytest.param("post", "/v1/campaigns/c1/preview", "admin", json.dumps({}), 400, "invalid_input", "device_id", "", id="preview-no-device-id"),
    pytest.param("post", "/v1/campaigns/c1/preview", "admin", json.dumps({"device_id": "d1", "fence_id": "nowhere"}), 404, "not_found", "fence_id", "", id="preview-unknown-fence"),
    pytest.param("post", "/v1/campaigns/c1/preview", "admin", json.dumps({"device_id": "d1", "fence_id": ["x"]}), 400, "invalid_input", "fence_id", "", id="preview-fence-id-list"),
    pytest.param("post", "/v1/campaigns/c1/preview", "admin", json.dumps({"device_id": "d1", "weather": "rain"}), 400, "invalid_input", "weather", "", id="preview-weather-string"),
    pytest.param("post", "/v1/events", "admin", json.dumps({"device_id": "ghost", "type": "conversion"}), 404, "not_found", "device_id", "", id="event-unknown-device"),
    pytest.param("post", "/v1/events", "app", event(type="push_opened", delivery_id="dl_doesnotexist"), 404, "not_found", "delivery_id", "", id="event-unknown-delivery"),
    pytest.param("post", "/v1/audience/estimate", "admin", json.dumps({"fence_id": "nowhere"}), 404, "not_found", "fence_id", "", id="estimate-unknown-fence"),
    pytest.param("post", "/v1/audience/estimate", "admin", json.dumps({"fence_id": 12}), 404, "not_found", "fence_id", "", id="estimate-fence-id-number"),
    pytest.param("delete", "/v1/devices/ghost", "admin", None, 404, "not_found", "device_id", "", id="delete-unknown-device"),
]

LIQUID_ERR = {"title": "Hi", "body": "Line one\n{{ first_name | }}"}
INVALID_CAMPAIGNS = [
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(trigger={"type": "geofence_teleport", "fence_ids": ["shop"]}), 400, "invalid_input", "trigger.type", "", id="campaign-unknown-trigger"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(trigger={"type": "geofence_enter"}), 400, "invalid_input", "trigger.fence_ids", "", id="campaign-enter-without-fences"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(trigger="geofence_enter"), 400, "invalid_input", "trigger", "", id="campaign-trigger-string"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(trigger={"type": "weather_alert", "min_severity": "Apocalyptic"}), 400, "invalid_input", "trigger.min_severity", "", id="campaign-bad-severity"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(quiet_hours={"start": "25:00", "end": "08:00"}), 400, "invalid_input", "quiet_hours.start", "", id="campaign-quiet-25h"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(quiet_hours={"start": "21:00", "end": "8am"}), 400, "invalid_input", "quiet_hours.end", "", id="campaign-quiet-8am"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(quiet_hours={"start": "21:00", "end": "08:00", "mode": "snooze"}), 400, "invalid_input", "quiet_hours.mode", "", id="campaign-quiet-mode"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(quiet_hours={"start": "21:00", "end": "08:00", "timezone": "Mars/Olympus"}), 400, "invalid_input", "quiet_hours.timezone", "", id="campaign-quiet-tz"),
    *[
        pytest.param("put", "/v1/campaigns/c2", "admin", camp(experiment={"arms": [{"name": "A", "weight": 50}, {"name": "B", "weight": w}]}), 400, "invalid_input", "experiment.arms[1].weight", "", id=f"campaign-weight-{w!r}")
        for w in (0, -5, "50", None, True)
    ],
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(experiment={"arms": [{"name": "A", "weight": 1}], "control_percent": 150}), 400, "invalid_input", "experiment.control_percent", "", id="campaign-control-150"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(message=LIQUID_ERR), 400, "invalid_input", "message.body", "line 2", id="campaign-template-error-line-2"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(message={"title": "{% if %}", "body": "b"}), 400, "invalid_input", "message.title", "line 1", id="campaign-template-error-title"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(message={"title": "t", "body": "one\ntwo\n{{ x | nosuchfilter }}"}), 400, "invalid_input", "message.body", "line 3", id="campaign-template-unknown-filter"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(message={"title": "t", "body": "one\ntwo\n{% if x %}\nfour"}), 400, "invalid_input", "message.body", "line 4", id="campaign-template-unclosed-if"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(message={"title": "t", "body": "b", "deep_link": "shop://{% include 'x' %}"}), 400, "invalid_input", "message.deep_link", "line 1", id="campaign-template-include"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(variants=[{"name": "g", "when": {"attribute": "loyalty_tier", "equals": "gold"}, "message": LIQUID_ERR}]), 400, "invalid_input", "variants[0].message.body", "line 2", id="campaign-variant-template-error"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(variants=[{"name": "g", "when": {"equals": "gold"}, "message": {"title": "t", "body": "b"}}]), 400, "invalid_input", "variants[0].when.attribute", "", id="campaign-variant-no-attribute"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(surprise=1), 400, "invalid_input", "surprise", "unknown field", id="campaign-unknown-top-level-field"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(message={"title": "t", "body": "b", "sound": "ding"}), 400, "invalid_input", "message.sound", "unknown field", id="campaign-unknown-nested-field"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(name=None), 400, "invalid_input", "name", "", id="campaign-no-name"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(name=42), 400, "invalid_input", "name", "", id="campaign-name-number"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(enabled="yes"), 400, "invalid_input", "enabled", "", id="campaign-enabled-string"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(message=None), 400, "invalid_input", "message", "", id="campaign-no-message"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(ttl_seconds=-1), 400, "invalid_input", "ttl_seconds", "", id="campaign-ttl-negative"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(ttl_seconds="1h"), 400, "invalid_input", "ttl_seconds", "", id="campaign-ttl-string"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(limits={"per_device_per_day": "two"}), 400, "invalid_input", "limits.per_device_per_day", "", id="campaign-cap-string"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(coupon={"percent_off": 150, "prefix": "X", "valid_hours": 1}), 400, "invalid_input", "coupon.percent_off", "", id="campaign-coupon-150"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(audience={"max_location_age_hours": -1}), 400, "invalid_input", "audience.max_location_age_hours", "", id="campaign-audience-age"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(campaign_id="other"), 400, "invalid_input", "campaign_id", "", id="campaign-body-id-mismatch"),
    pytest.param("put", "/v1/campaigns/bad%20id", "admin", camp(), 400, "invalid_input", "campaign_id", "", id="campaign-bad-path-id"),
    # a lone UTF-16 surrogate (JSON "\ud800") cannot be encoded for SNS: rejected at save, naming the field
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(name="Storm \ud800"), 400, "invalid_input", "name", "Unicode", id="campaign-surrogate-name"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(message={"title": "Hi \udfff", "body": "b"}), 400, "invalid_input", "message.title", "Unicode", id="campaign-surrogate-title"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(variants=[{"name": "g", "when": {"attribute": "tier", "in": ["ok", "\ud83d"]}, "message": {"title": "t", "body": "b"}}]), 400, "invalid_input", "variants[0].when.in[1]", "Unicode", id="campaign-surrogate-variant"),
    pytest.param("put", "/v1/campaigns/c2", "admin", camp(message={"title": "t", "body": "b", "\udc00": 1}), 400, "invalid_input", "message", "Unicode", id="campaign-surrogate-key"),
    # a re-PUT of the existing campaign that fails must leave version 1 as it was
    pytest.param("put", "/v1/campaigns/c1", "admin", camp(trigger={"type": "nope"}), 400, "invalid_input", "trigger.type", "", id="campaign-bad-replace-keeps-old"),
]

QUERIES = [
    *[
        pytest.param("get", f"/v1/deliveries?{q}", "admin", None, 400, "invalid_input", f, "", id=f"deliveries-{q}")
        for q, f in [
            ("limit=0", "limit"),
            ("limit=5000", "limit"),
            ("limit=1001", "limit"),
            ("limit=ten", "limit"),
            ("limit=-1", "limit"),
            ("status=bogus", "status"),
            ("status=SENT", "status"),
            ("next_token=garbage", "next_token"),
            ("next_token=%21%21%21", "next_token"),
            ("campaign_id=c1&next_token=eyJpIjoiYyIsImsiOiIxIn0", "next_token"),
            ("campaign_id=bad%20id", "campaign_id"),
            ("device_id=%2Fslash", "device_id"),
        ]
    ],
    pytest.param("get", "/v1/campaigns?limit=0", "admin", None, 400, "invalid_input", "limit", "", id="campaigns-limit-0"),
    pytest.param("get", "/v1/campaigns?limit=5000", "admin", None, 400, "invalid_input", "limit", "", id="campaigns-limit-5000"),
    pytest.param("get", "/v1/campaigns?next_token=%21%21", "admin", None, 400, "invalid_input", "next_token", "", id="campaigns-bad-token"),
]

FUTURE = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400 * 3))
EVENTS = [
    pytest.param("post", "/v1/events", "app", event(type="click", delivery_id=DL), 400, "invalid_input", "type", "", id="event-bad-type"),
    pytest.param("post", "/v1/events", "app", event(type=1, delivery_id=DL), 400, "invalid_input", "type", "", id="event-type-number"),
    pytest.param("post", "/v1/events", "app", event(delivery_id=DL), 400, "invalid_input", "type", "", id="event-no-type"),
    pytest.param("post", "/v1/events", "app", json.dumps({"type": "conversion"}), 400, "invalid_input", "device_id", "", id="event-no-device"),
    pytest.param("post", "/v1/events", "app", event(device_id=["d1"], type="conversion"), 400, "invalid_input", "device_id", "", id="event-device-list"),
    pytest.param("post", "/v1/events", "app", event(type="push_opened"), 400, "invalid_input", "delivery_id", "", id="event-open-without-delivery"),
    pytest.param("post", "/v1/events", "app", event(type="push_opened", delivery_id=123), 400, "invalid_input", "delivery_id", "", id="event-delivery-id-number"),
    pytest.param("post", "/v1/events", "app", event(type="push_opened", delivery_id="nope"), 400, "invalid_input", "delivery_id", "", id="event-delivery-id-malformed"),
    pytest.param("post", "/v1/events", "app", '{"device_id": "d1", "type": "conversion", "delivery_id": "%s", "value": NaN}' % DL, 400, "invalid_input", "body", "", id="event-value-nan-literal"),
    *[
        pytest.param("post", "/v1/events", "app", event(type="conversion", delivery_id=DL, value=v), 400, "invalid_input", "value", "", id=f"event-value-{v!r}")
        for v in ("NaN", -1, -0.01, "12.5", True, [1], {"amount": 1}, 1e10)
    ],
    pytest.param("post", "/v1/events", "app", event(type="conversion", delivery_id=DL, coupon_code=5), 400, "invalid_input", "coupon_code", "", id="event-coupon-number"),
    pytest.param("post", "/v1/events", "app", event(type="conversion", delivery_id=DL, coupon_code=""), 400, "invalid_input", "coupon_code", "", id="event-coupon-empty"),
    pytest.param("post", "/v1/events", "app", event(type="push_opened", delivery_id=DL, at=FUTURE), 400, "invalid_input", "at", "future", id="event-at-future"),
    pytest.param("post", "/v1/events", "app", event(type="push_opened", delivery_id=DL, at=time.time() + 86400), 400, "invalid_input", "at", "future", id="event-at-future-epoch"),
    pytest.param("post", "/v1/events", "app", event(type="push_opened", delivery_id=DL, at="yesterday"), 400, "invalid_input", "at", "", id="event-at-garbage"),
    pytest.param("post", "/v1/events", "app", event(type="push_opened", delivery_id=DL, at=True), 400, "invalid_input", "at", "", id="event-at-bool"),
    pytest.param("post", "/v1/events", "app", event(type="push_opened", delivery_id=DL, at=-5), 400, "invalid_input", "at", "", id="event-at-negative"),
]

ESTIMATES = [
    pytest.param("post", "/v1/audience/estimate", "admin", json.dumps({}), 400, "invalid_input", "body", "exactly one", id="estimate-neither"),
    pytest.param("post", "/v1/audience/estimate", "admin", json.dumps({"fence_id": "shop", "geometry": SQUARE}), 400, "invalid_input", "body", "exactly one", id="estimate-both"),
    pytest.param("post", "/v1/audience/estimate", "admin", json.dumps({"geometry": "square"}), 400, "invalid_geometry", "geometry", "Polygon", id="estimate-geometry-string"),
    pytest.param("post", "/v1/audience/estimate", "admin", json.dumps({"geometry": None}), 400, "invalid_geometry", "geometry", "fence_id", id="estimate-geometry-null"),
    pytest.param("post", "/v1/audience/estimate", "admin", json.dumps({"geometry": {"type": "Point", "coordinates": [SHOP[1], SHOP[0]]}}), 400, "invalid_geometry", "geometry.type", "fence_id", id="estimate-point"),
    pytest.param("post", "/v1/audience/estimate", "admin", json.dumps({"geometry": {"type": "Polygon"}}), 400, "invalid_geometry", "geometry.coordinates", "", id="estimate-no-coordinates"),
    pytest.param("post", "/v1/audience/estimate", "admin", json.dumps({"geometry": {"type": "MultiPolygon", "coordinates": []}}), 400, "invalid_geometry", "geometry.coordinates", "", id="estimate-empty-multipolygon"),
    pytest.param("post", "/v1/audience/estimate", "admin", json.dumps({"geometry": {"type": "Polygon", "coordinates": [[[-179, -60], [179, -60], [179, 60], [-179, 60], [-179, -60]]]}}), 400, "invalid_geometry", "geometry.coordinates[0]", "antimeridian", id="estimate-unsplit-antimeridian"),
    pytest.param("post", "/v1/audience/estimate", "admin", json.dumps({"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]}}), 400, "invalid_geometry", "geometry.coordinates[0]", "", id="estimate-ring-too-short"),
    pytest.param("post", "/v1/audience/estimate", "admin", json.dumps({"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}}), 400, "invalid_geometry", "geometry", "self-intersection", id="estimate-bowtie"),
    pytest.param("post", "/v1/audience/estimate", "admin", json.dumps({"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [200, 0], [0, 1], [0, 0]]]}}), 400, "invalid_geometry", "geometry.coordinates[0][1]", "", id="estimate-lng-200"),
    pytest.param("post", "/v1/audience/estimate", "admin", json.dumps({"geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}}), 400, "invalid_geometry", "geometry.type", "", id="estimate-linestring"),
    pytest.param("post", "/v1/audience/estimate", "admin", json.dumps({"fence_id": "shop", "max_location_age_hours": -1}), 400, "invalid_input", "max_location_age_hours", "", id="estimate-negative-age"),
    pytest.param("post", "/v1/audience/estimate", "admin", json.dumps({"fence_id": "shop", "max_location_age_hours": "1d"}), 400, "invalid_input", "max_location_age_hours", "", id="estimate-age-string"),
]

DEVICES = [
    pytest.param("put", "/v1/devices/d1", "app", json.dumps(dict(DEVICE, platform="blackberry")), 400, "invalid_input", "platform", "", id="device-bad-platform"),
    pytest.param("put", "/v1/devices/d1", "app", json.dumps(dict(DEVICE, push_token="")), 400, "invalid_input", "push_token", "", id="device-empty-token"),
    pytest.param("put", "/v1/devices/d1", "app", json.dumps(dict(DEVICE, consent={"push": "yes"})), 400, "invalid_input", "consent.push", "", id="device-consent-string"),
]

BAD = AUTH + MALFORMED + UNKNOWN + INVALID_CAMPAIGNS + QUERIES + EVENTS + ESTIMATES + DEVICES


class TestBadInput:
    @pytest.mark.parametrize("method, path, role, raw, status, code, field, message_part", BAD)
    def test_gets_the_exact_4xx_and_writes_nothing(self, shared_world, method, path, role, raw, status, code, field, message_part):
        world = shared_world
        api = world.api
        if raw is not None:
            raw = raw.replace(DL, world.delivery_id)
        # the API's own view of what a rejected campaign PUT or event must not touch
        view = world.campaigns if path.startswith("/v1/campaigns") else world.deliveries if path == "/v1/events" else lambda: None
        view_before, tables_before = view(), snapshot()

        r = call(api, method, path, role, raw=raw, secret=world.secret)

        assert r.status_code == status, r.body
        err = body(r)["error"]
        assert (err["code"], err["field"]) == (code, field), err
        assert err["message"] and message_part in err["message"], err
        # no partial write: the campaign list / the device's delivery records, and every table, as they were
        assert view() == view_before
        assert snapshot() == tables_before


def test_event_for_another_devices_delivery_is_404_and_changes_nothing(world):
    api = world.api
    other = dict(DEVICE, push_token="tok-d2")
    r = call(api, "put", "/v1/devices/d2", "app", other)
    assert r.status_code == 200
    before = world.deliveries()
    r = call(api, "post", "/v1/events", "app", {"device_id": "d2", "type": "push_opened", "delivery_id": world.delivery_id}, secret=body(r).get("device_secret"))
    assert r.status_code == 404 and body(r)["error"]["field"] == "delivery_id"
    assert world.deliveries() == before


# ---------------------------------------------------------------- happy path
def test_ping_to_push_to_events_to_stats_to_erasure(api):
    # register: push is enabled and moto holds the endpoint
    r = call(api, "put", "/v1/devices/d1", "app", DEVICE)
    assert r.status_code == 200, r.body
    reg = body(r)
    assert reg["device_id"] == "d1" and reg["push_enabled"] is True
    secret = reg.get("device_secret")
    arns = [arn for arn, ep in endpoints().items() if ep.attributes["Token"] == "tok-d1"]
    assert len(arns) == 1
    d1_arn = arns[0]
    assert str(endpoints()[d1_arn].attributes["Enabled"]).lower() == "true"
    # a second device with location but no push consent: recorded as suppressed
    r = call(api, "put", "/v1/devices/d2", "app", dict(DEVICE, push_token="tok-d2", consent={"push": False, "location": True}))
    assert r.status_code == 200 and body(r)["push_enabled"] is False
    secret2 = body(r).get("device_secret")
    assert not [ep for ep in endpoints().values() if ep.attributes["Token"] == "tok-d2"]

    assert call(api, "put", "/v1/geofences/shop", payload=CIRCLE).status_code == 200
    r = call(api, "put", "/v1/campaigns/c1", payload=CAMPAIGN)
    assert r.status_code == 200 and body(r)["version"] == 1
    plain = dict(CAMPAIGN, name="Second", coupon=None, message={"title": "Welcome back", "body": "Hello {{ first_name }}"})
    assert call(api, "put", "/v1/campaigns/c2", payload=plain).status_code == 200
    page = body(call(api, "get", "/v1/campaigns?limit=1"))
    assert [c["id"] for c in page["campaigns"]] == ["c1"] and page["next_token"] == "c1"
    page = body(call(api, "get", f"/v1/campaigns?limit=1&next_token={page['next_token']}"))
    assert [c["id"] for c in page["campaigns"]] == ["c2"] and page["next_token"] is None

    # outside → inside → outside → inside: two visits, each a new occasion per campaign
    t0 = time.time() - 600

    def ping(device_id, where, step, sec):
        p = {"device_id": device_id, "lat": where[0], "lng": where[1], "accuracy_m": 5, "timestamp": t0 + 10 * step}
        r = call(api, "post", "/v1/pings", "app", p, secret=sec)
        assert r.status_code == 200, r.body
        return body(r)["results"][0]

    out = ping("d1", FAR, 0, secret)
    assert out["accepted"] and out["events"] == [] and out["deliveries"] == []
    first = ping("d1", SHOP, 1, secret)
    assert [e["type"] for e in first["events"]] == ["enter"] and len(first["deliveries"]) == 2
    assert ping("d1", SHOP, 2, secret)["deliveries"] == []  # still inside: nothing new
    assert [e["type"] for e in ping("d1", FAR, 3, secret)["events"]] == ["exit"]
    second = ping("d1", SHOP, 4, secret)
    assert len(second["deliveries"]) == 2 and not set(second["deliveries"]) & set(first["deliveries"])
    ping("d2", FAR, 0, secret2)
    suppressed = ping("d2", SHOP, 1, secret2)["deliveries"]
    assert len(suppressed) == 2
    all_ids = set(first["deliveries"]) | set(second["deliveries"]) | set(suppressed)

    # the log: everything, newest first
    log = body(call(api, "get", "/v1/deliveries"))
    assert {d["delivery_id"] for d in log["deliveries"]} == all_ids and log["next_token"] is None
    stamps = [d["created_at"] for d in log["deliveries"]]
    assert stamps == sorted(stamps, reverse=True)
    for d in log["deliveries"]:
        assert not {"lat", "lng", "location"} & set(d)
    by_id = {d["delivery_id"]: d for d in log["deliveries"]}
    c1_first = next(i for i in first["deliveries"] if by_id[i]["campaign_id"] == "c1")
    sent1 = by_id[c1_first]
    assert sent1["status"] == "sent" and sent1["device_id"] == "d1"
    assert sent1["trigger"] == {"type": "geofence_enter", "fence_id": "shop"}
    assert sent1["title"] == "Hi Ana" and sent1["coupon_code"].startswith("SHOP") and sent1["sns_message_id"]
    assert sent1["coupon_code"] in sent1["body"] and "at Shop" in sent1["body"]
    assert len(endpoints()[d1_arn].messages) == 4  # two visits × two campaigns, d2 nothing

    # filters
    def walk(query: str) -> list[dict]:
        """limit=1 pages following next_token until it is null."""
        seen, token = [], None
        for _ in range(20):
            q = query + "&limit=1" + (f"&next_token={token}" if token else "")
            page = body(call(api, "get", f"/v1/deliveries?{q}"))
            assert len(page["deliveries"]) <= 1
            seen += page["deliveries"]
            token = page["next_token"]
            if token is None:
                return seen
        raise AssertionError("next_token never became null")

    for query, want in [
        ("", all_ids),
        ("campaign_id=c1", {i for i in all_ids if by_id[i]["campaign_id"] == "c1"}),
        ("device_id=d1", set(first["deliveries"]) | set(second["deliveries"])),
        ("campaign_id=c2&device_id=d1", {i for i in all_ids if by_id[i]["campaign_id"] == "c2" and by_id[i]["device_id"] == "d1"}),
        ("status=suppressed", set(suppressed)),
        ("campaign_id=c1&status=sent", {i for i in all_ids if by_id[i]["campaign_id"] == "c1" and by_id[i]["device_id"] == "d1"}),
        ("status=held", set()),
    ]:
        full = body(call(api, "get", f"/v1/deliveries?{query}"))
        assert {d["delivery_id"] for d in full["deliveries"]} == want, query
        walked = walk(query)
        assert [d["delivery_id"] for d in walked] == [d["delivery_id"] for d in full["deliveries"]], query
        assert [d["created_at"] for d in walked] == sorted((d["created_at"] for d in walked), reverse=True)
    assert all(by_id[i]["status"] == "suppressed" and by_id[i]["reason"] for i in suppressed)
    # a token is only good for the listing that made it
    token = body(call(api, "get", "/v1/deliveries?campaign_id=c1&limit=1"))["next_token"]
    r = call(api, "get", f"/v1/deliveries?device_id=d1&limit=1&next_token={token}")
    assert r.status_code == 400 and body(r)["error"]["field"] == "next_token"

    # events: open, duplicate open, conversion by coupon code
    latest_c1 = next(i for i in second["deliveries"] if by_id[i]["campaign_id"] == "c1")
    r = call(api, "post", "/v1/events", "app", {"device_id": "d1", "type": "push_opened", "delivery_id": latest_c1}, secret=secret)
    assert r.status_code == 202 and body(r)["attributed_to"] == latest_c1 and not body(r).get("duplicate")
    r = call(api, "post", "/v1/events", "app", {"device_id": "d1", "type": "push_opened", "delivery_id": latest_c1}, secret=secret)
    assert r.status_code == 202 and body(r)["duplicate"] is True
    code = by_id[latest_c1]["coupon_code"]
    r = call(api, "post", "/v1/events", "admin", {"device_id": "d1", "type": "conversion", "coupon_code": code.lower(), "value": 25.5})
    assert r.status_code == 202 and body(r)["attributed_to"] == latest_c1, r.body
    r = call(api, "post", "/v1/events", "app", {"device_id": "d1", "type": "conversion", "coupon_code": "NOT-A-CODE"}, secret=secret)
    assert r.status_code == 202 and body(r)["attributed_to"] is None and body(r)["reason"] == "no_matching_delivery"
    rec = next(d for d in body(call(api, "get", "/v1/deliveries?device_id=d1"))["deliveries"] if d["delivery_id"] == latest_c1)
    assert rec["opened_at"] and rec["converted_at"] and rec["conversion_value"] == 25.5

    # stats: exact counts from the records
    s = body(call(api, "get", "/v1/campaigns/c1/stats"))
    assert (s["sent"], s["failed"], s["opened"], s["converted"]) == (2, 0, 1, 1)
    assert s["open_rate"] == 0.5 and s["conversion_rate"] == 0.5 and s["conversion_value"] == 25.5
    assert sum(s["suppressed"].values()) == 1 and s["by_arm"] == {}
    s2 = body(call(api, "get", "/v1/campaigns/c2/stats"))
    assert (s2["sent"], s2["opened"], s2["converted"], s2["open_rate"]) == (2, 0, 0, 0.0)

    # preview: rendered, never sent
    sent_before = len(endpoints()[d1_arn].messages)
    pv = body(call(api, "post", "/v1/campaigns/c1/preview", payload={"device_id": "d1"}))
    assert pv["rendered"] is True and pv["title"] == "Hi Ana" and pv["deep_link"] == "shop://deals"
    assert pv["coupon"]["percent_off"] == 10 and pv["coupon"]["code"] in pv["body"] and "at Shop" in pv["body"]
    assert len(endpoints()[d1_arn].messages) == sent_before
    assert len(body(call(api, "get", "/v1/deliveries"))["deliveries"]) == len(all_ids)

    # audience: d1 and d2 are both inside; only d1 is reachable (d2 has no push consent)
    assert body(call(api, "post", "/v1/audience/estimate", payload={"fence_id": "shop"}))["reachable"] == 1
    far_square = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
    assert body(call(api, "post", "/v1/audience/estimate", payload={"geometry": SQUARE}))["reachable"] == 1
    assert body(call(api, "post", "/v1/audience/estimate", payload={"geometry": far_square}))["reachable"] == 0

    # campaign GET round-trips; DELETE → 404 afterwards
    got = body(call(api, "get", "/v1/campaigns/c2"))
    assert got["id"] == "c2" and got["name"] == "Second"
    assert call(api, "delete", "/v1/campaigns/c2").status_code == 204
    assert call(api, "get", "/v1/campaigns/c2").status_code == 404

    # right to be forgotten: the SNS endpoint goes with the device
    r = call(api, "delete", "/v1/devices/d1", "app", secret=secret)
    assert r.status_code == 204, r.body
    assert d1_arn not in endpoints()
    assert call(api, "get", "/v1/devices/d1").status_code == 404
    r = call(api, "post", "/v1/events", "admin", {"device_id": "d1", "type": "conversion"})
    assert r.status_code == 404 and body(r)["error"]["field"] == "device_id"


def test_reregistering_keeps_one_endpoint_and_updates_the_token(api):
    r = call(api, "put", "/v1/devices/d1", "app", DEVICE)
    secret = body(r).get("device_secret")
    (arn,) = [a for a, ep in endpoints().items() if ep.attributes["Token"] == "tok-d1"]
    r = call(api, "put", "/v1/devices/d1", "app", dict(DEVICE, push_token="tok-new"), secret=secret)
    assert r.status_code == 200 and body(r)["push_enabled"] is True
    assert list(endpoints()) == [arn]
    assert endpoints()[arn].attributes["Token"] == "tok-new"


# ---------------------------------------------------------------- lone surrogates
# JSON "\ud800" is valid JSON but no UTF-8 text: json_body rejects it with a
# 400 naming the field, before anything reaches DynamoDB or SNS.
def test_device_with_a_lone_surrogate_token_is_400(api):
    r = call(api, "put", "/v1/devices/d1", "app", dict(DEVICE, push_token="tok\ud800"))
    assert r.status_code == 400, r.body


def test_geofence_with_a_lone_surrogate_name_is_400(api):
    fence = {**CIRCLE, "properties": {**CIRCLE["properties"], "name": "Shop \ud800"}}
    r = call(api, "put", "/v1/geofences/shop", payload=fence)
    assert r.status_code == 400, r.body
    assert body(r)["error"]["field"] == "properties.name"
    r = call(api, "post", "/v1/geofences/import", payload={"type": "FeatureCollection", "features": [{**fence, "id": "shop"}]})
    assert r.status_code == 400 and body(r)["error"]["field"] == "features[0].properties.name", r.body


def test_a_lone_surrogate_in_a_profile_never_breaks_a_ping(api):
    reg = call(api, "put", "/v1/devices/d1", "app", dict(DEVICE, attributes={"first_name": "Ana\ud800"}))
    assert reg.status_code in (200, 400), reg.body
    if reg.status_code == 400:
        return  # rejected at registration: nothing to render later
    assert call(api, "put", "/v1/geofences/shop", payload=CIRCLE).status_code == 200
    assert call(api, "put", "/v1/campaigns/c1", payload=CAMPAIGN).status_code == 200
    t0 = time.time() - 600
    for i, (lat, lng) in enumerate((FAR, SHOP)):
        p = {"device_id": "d1", "lat": lat, "lng": lng, "accuracy_m": 5, "timestamp": t0 + 10 * i}
        r = call(api, "post", "/v1/pings", "app", p, secret=body(reg).get("device_secret"))
        assert r.status_code == 200, r.body
    statuses = {d["status"] for d in body(call(api, "get", "/v1/deliveries"))["deliveries"]}
    assert statuses and statuses <= {"sent", "failed", "suppressed"}, statuses


# ---------------------------------------------------------------- fuzz
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["", " ", "25:00", "{{", "{% if %}", "dl_x", "geofence_enter", "weather_alert", "push_opened", "conversion", "shop", "d1", "2026-01-01T00:00:00Z", "\ud800", "é😀"]),
)
#: values a valid body might hold, so that mutations are often accepted and reach the store
plausible = st.sampled_from(
    [None, True, False, 0, 1, 2.5, 50, 100, 86400, "", "gold", "A", "21:00", "08:00", "hold", "drop", "America/Chicago",
     "shop", "geofence_exit", "geofence_dwell", "weather_alert", "Severe", "{{ first_name | upcase }}", "{{ coupon.code }}",
     "{% if fence.name %}at {{ fence.name }}{% endif %}", "Größe 😀", [], ["shop"], {}, {"condition_in": ["rain"]}]
)
values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=5), st.dictionaries(st.text(max_size=8), kids, max_size=5)), max_leaves=25)

FULL_CAMPAIGN = {
    **CAMPAIGN,
    "enabled": True,
    "audience": {"fence_tags": ["shop"], "max_location_age_hours": 24},
    "variants": [{"name": "gold", "when": {"attribute": "loyalty_tier", "equals": "gold"}, "message": {"title": "Gold {{ first_name }}", "body": "b"}}],
    "experiment": {"arms": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50}], "control_percent": 10},
    "limits": {"per_device_per_day": 2, "min_minutes_between": 60},
    "quiet_hours": {"start": "21:00", "end": "08:00", "mode": "hold"},
    "ttl_seconds": 21600,
}
WEATHER_CAMPAIGN = {**CAMPAIGN, "trigger": {"type": "weather_alert", "events": ["Winter Storm Warning"], "min_severity": "Moderate"}, "coupon": None}
TEMPLATES = {
    "campaign": FULL_CAMPAIGN,
    "weather": WEATHER_CAMPAIGN,
    "open": {"device_id": "d1", "type": "push_opened", "delivery_id": DL},
    "conversion": {"device_id": "d1", "type": "conversion", "coupon_code": "SHOP-X", "value": 9.5, "at": "2026-01-01T00:00:00Z"},
    "estimate": {"geometry": SQUARE, "max_location_age_hours": 24},
}
ROUTES = [
    ("put", "/v1/campaigns/fz", "campaign"),
    ("put", "/v1/campaigns/fz", "weather"),
    ("post", "/v1/events", "open"),
    ("post", "/v1/events", "conversion"),
    ("post", "/v1/audience/estimate", "estimate"),
]


DROP = object()  # as a mutation's value: delete the key instead


def mutate(obj, path, value):
    """``obj`` with the node that ``path`` picks (indices modulo each level's
    size) replaced by ``value``, or removed from its parent when ``DROP``."""
    if not path:
        return value
    if isinstance(obj, (dict, list)) and obj:
        keys = sorted(obj) if isinstance(obj, dict) else list(range(len(obj)))
        k = keys[path[0] % len(keys)]
        child = obj[k]
        leaf = len(path) == 1 or not (isinstance(child, (dict, list)) and child)
        if isinstance(obj, dict):
            if value is DROP and leaf:
                return {key: v for key, v in obj.items() if key != k}
            return {**obj, k: mutate(child, path[1:], value)}
        if value is DROP and leaf:
            return obj[:k] + obj[k + 1 :]
        return obj[:k] + [mutate(child, path[1:], value)] + obj[k + 1 :]
    return value


class TestFuzz:
    """Random JSON (values, and mutations of valid bodies) never gets a 5xx."""

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        route=st.sampled_from(ROUTES),
        junk=st.one_of(values, plausible),
        path=st.lists(st.integers(min_value=0, max_value=50), max_size=4),
        mode=st.sampled_from(["mutate", "mutate", "mutate", "drop", "raw", "extra"]),
    )
    def test_no_5xx_for_any_campaign_or_event_body(self, shared_world, route, junk, path, mode):
        world = shared_world
        method, url, template = route
        base = json.loads(json.dumps(TEMPLATES[template]).replace(DL, world.delivery_id))
        if mode == "raw":
            payload = junk
        elif mode == "extra":
            payload = {**base, "x" if not path else str(path[0]): junk}
        elif mode == "drop":
            payload = mutate(base, path or [0], DROP)
        else:
            payload = mutate(base, path, junk)
        campaigns_before = world.campaigns() if url.startswith("/v1/campaigns") else None

        r = call(world.api, method, url, "app" if url == "/v1/events" else "admin", payload, secret=world.secret)

        assert r.status_code < 500, (url, payload, r.body)
        hypothesis.event(f"{template}: {r.status_code}")  # --hypothesis-show-statistics shows the mix
        if r.status_code >= 400:
            err = body(r)["error"]
            assert err["code"] and err["message"] and err["field"] is not None, (payload, err)
            if campaigns_before is not None:
                assert world.campaigns() == campaigns_before, payload
        elif url.startswith("/v1/campaigns"):
            got = body(call(world.api, "get", url))
            assert call(world.api, "put", url, "admin", {k: v for k, v in got.items() if k not in ("id", "version", "created_at", "updated_at")}).status_code == 200

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(query=st.dictionaries(st.sampled_from(["campaign_id", "device_id", "status", "limit", "next_token"]), st.text(max_size=12), max_size=4))
    def test_no_5xx_for_any_delivery_query(self, shared_world, query):
        r = call(shared_world.api, "get", f"/v1/deliveries?{urlencode(query)}")
        assert r.status_code < 500, (query, r.body)
