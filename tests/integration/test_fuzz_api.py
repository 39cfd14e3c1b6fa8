"""Hostile input, generated: no route answers 5xx, whatever the body.

A small, fast version (a few hundred requests); the security issue scales it
up. Bodies are random JSON values and mutations of valid bodies (wrong
types, huge numbers, unicode, deep nesting, unknown fields)."""

from __future__ import annotations

import json
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ADMIN_KEY

H = {"X-Api-Key": ADMIN_KEY, "Content-Type": "application/json"}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=5), st.dictionaries(st.text(max_size=8), kids, max_size=5)), max_leaves=30)

VALID = {
    "fence": {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[-122.7, 38.4], [-122.6, 38.4], [-122.6, 38.5], [-122.7, 38.4]]]}, "properties": {"name": "x", "tags": ["a"], "dwell_minutes": 5}},
    "circle": {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-122.7, 38.44]}, "properties": {"radius_m": 100}},
    "device": {"platform": "ios", "push_token": "t", "attributes": {"a": 1}, "consent": {"push": True, "location": True}},
    # A minute ago, whatever today is: a fixed date would be a future ping (400) until that
    # day and an accepted one after it, so the fuzz would exercise another path by the date.
    "ping": {"device_id": "d1", "lat": 38.44, "lng": -122.7, "accuracy_m": 5,
             "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))},
}


def mutate(obj, path, value):
    if not path:
        return value
    if isinstance(obj, dict) and obj:
        keys = sorted(obj)
        k = keys[path[0] % len(keys)]
        return {**obj, k: mutate(obj[k], path[1:], value)}
    if isinstance(obj, list) and obj:
        i = path[0] % len(obj)
        return obj[:i] + [mutate(obj[i], path[1:], value)] + obj[i + 1 :]
    return value


routes = st.sampled_from(
    [
        ("put", "/v1/geofences/f1", "fence"),
        ("put", "/v1/geofences/f1", "circle"),
        ("post", "/v1/geofences/import", None),
        ("put", "/v1/devices/d1", "device"),
        ("post", "/v1/pings", "ping"),
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(route=routes, junk=values, path=st.lists(st.integers(min_value=0, max_value=50), max_size=5), raw=st.booleans())
def test_no_5xx_for_any_body(api, route, junk, path, raw):
    method, url, template = route
    if template is None:
        body = {"type": "FeatureCollection", "features": [mutate(VALID["fence"], path, junk)]}
    else:
        body = junk if raw else mutate(VALID[template], path, junk)
    r = getattr(api.http, method)(url, headers=H, body=json.dumps(body))
    assert r.status_code < 500, (url, body, r.body)
    if r.status_code >= 400:
        err = json.loads(r.body)["error"]
        assert err["code"] and err["message"]


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(query=st.dictionaries(st.sampled_from(["lat", "lng", "limit", "tag", "next_token", "repair"]), st.text(max_size=12), max_size=4))
def test_no_5xx_for_any_query(api, query):
    from urllib.parse import urlencode

    for path in ("/v1/geofences/lookup", "/v1/geofences"):
        r = api.http.get(f"{path}?{urlencode(query)}", headers=H)
        assert r.status_code < 500, (path, query, r.body)
