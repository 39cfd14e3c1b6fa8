"""Hostile input for every route: what to send, and
how to judge each answer.

* :func:`requests` — a hypothesis strategy of bad requests for every route:
  malformed JSON (truncated, BOMs, UTF-16/32, invalid UTF-8, trailing
  garbage, comments), wrong types at every field, huge numbers (``1e308``,
  ``10**400`` as JSON integers), ``NaN``/``Infinity`` literals, out-of-range
  coordinates, invalid and enormous polygons, deep nesting, oversized bodies
  and batches, unicode in ids (emoji, RTL, NUL, lone surrogates as JSON
  escapes), unknown fields, bad query parameters, wrong methods, missing or
  invalid keys and headers. Valid bodies are mutated one node at a time, so
  many requests get far into the code before they fail — and some succeed.
* :func:`catalogue` — a fixed list that exercises every documented limit at
  its edge (README "Limits and behaviour") with the exact status expected,
  and a sweep of wrong types over every field of every valid body.
* :class:`Harness` — sends a request through ``chalice.test.Client`` over
  moto and checks: status < 500; every 4xx carries the documented error body
  ``{"error": {"code", "message", "field"}}``; and a rejected request wrote
  nothing (all DynamoDB items and SNS endpoints, read from moto's memory,
  equal before and after). It counts everything for the report.

App-key requests may be answered 401/403 (device secrets): those are valid
rejections. Most requests use the admin key so that they reach validation.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import sys
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote, urlencode

import h3
from hypothesis import strategies as st

from tests.conftest import ADMIN_KEY, APP_KEY

MAX_BODY = 5 * 1024 * 1024  # README "Limits and behaviour"
MAX_NESTING = 64
SHOP = (38.44, -122.7)  # lat, lng
FAR = (38.40, -122.7)
METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH", "HEAD")  # OPTIONS: the test client cannot (CORS preflight)


# ---------------------------------------------------------------- routes
@dataclass(frozen=True)
class Route:
    """One route: its method, its path (``{id}`` for the path parameter, of
    kind ``id_kind``), who may call it, its valid bodies and query names."""

    method: str
    path: str
    roles: tuple[str, ...] = ("admin",)
    bodies: tuple[str, ...] = ()
    query: tuple[str, ...] = ()
    id_kind: str | None = None

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/health", roles=()),
    Route("GET", "/v1/openapi.json", roles=()),
    Route("GET", "/v1/geofences/lookup", query=("lat", "lng")),
    Route("POST", "/v1/geofences/import", bodies=("collection",), query=("repair",)),
    Route("GET", "/v1/geofences", query=("tag", "limit", "next_token")),
    Route("PUT", "/v1/geofences/{id}", bodies=("polygon", "circle", "h3", "multipolygon"), query=("repair",), id_kind="fence"),
    Route("GET", "/v1/geofences/{id}", id_kind="fence"),
    Route("DELETE", "/v1/geofences/{id}", id_kind="fence"),
    Route("PUT", "/v1/devices/{id}", roles=("admin", "app"), bodies=("device", "device_min"), id_kind="device"),
    Route("GET", "/v1/devices/{id}", id_kind="device"),
    Route("DELETE", "/v1/devices/{id}", roles=("admin", "app"), id_kind="device"),
    Route("POST", "/v1/pings", roles=("admin", "app"), bodies=("ping", "ping_batch")),
    Route("GET", "/v1/campaigns", query=("limit", "next_token")),
    Route("PUT", "/v1/campaigns/{id}", bodies=("campaign", "campaign_weather", "campaign_min"), id_kind="campaign"),
    Route("GET", "/v1/campaigns/{id}", id_kind="campaign"),
    Route("DELETE", "/v1/campaigns/{id}", id_kind="campaign"),
    Route("POST", "/v1/campaigns/{id}/preview", bodies=("preview", "preview_weather"), id_kind="campaign"),
    Route("GET", "/v1/campaigns/{id}/stats", id_kind="campaign"),
    Route("GET", "/v1/deliveries", query=("campaign_id", "device_id", "status", "limit", "next_token")),
    Route("POST", "/v1/events", roles=("admin", "app"), bodies=("open", "conversion")),
    Route("POST", "/v1/audience/estimate", bodies=("estimate_geometry", "estimate_fence")),
    Route("POST", "/v1/weather/alerts", bodies=("alert", "alert_collection")),
    Route("POST", "/v1/weather/conditions", bodies=("conditions",)),
)
#: path pattern → the methods routed there (anything else is a 405 in the error body)
ALLOWED: dict[str, set[str]] = defaultdict(set)
for _r in ROUTES:
    ALLOWED[_r.path].add(_r.method)

SEED_IDS = {"fence": ("shop", "zone", "cells"), "device": ("d1", "d2"), "campaign": ("c1", "cw")}
#: valid ids a generated request may create, replace or delete (few, so tables stay small)
SCRATCH_IDS = {"fence": ("hx-1", "hx.2", "HX:3_z"), "device": ("hx-d1", "hx.d2", "HX:d3_z"), "campaign": ("hx-c1", "hx.c2")}
ID_128 = "a" + "b" * 127
#: id → what it tests; all but the first are outside the id format
HOSTILE_IDS: dict[str, str] = {
    ID_128: "id 128 chars (longest valid)",
    "a" + "b" * 128: "id 129 chars",
    "x" * 10_000: "id 10,000 chars",
    "😀": "id emoji",
    "d1😀": "id emoji suffix",
    "\u202ed1": "id RTL override",
    "\u05d3\u05d1": "id Hebrew (RTL)",
    "\u0645\u062b\u0627\u0644": "id Arabic (RTL)",
    "a\x00b": "id NUL",
    "d1\x00": "id NUL suffix",
    "\ufeffd1": "id BOM",
    "d1\u200b": "id zero-width space",
    "ｄ１": "id fullwidth",
    "-a": "id leading dash",
    "_a": "id leading underscore",
    ".": "id dot",
    "..": "id dot-dot",
    " a": "id leading space",
    "a b": "id space",
    "a\tb": "id tab",
    "a\nb": "id newline",
    "a%2Fb": "id encoded slash",
    "%00": "id encoded NUL",
    "%ED%A0%80": "id encoded lone surrogate (CESU-8)",
    "%F0%9F%98%80": "id encoded emoji",
    "a'; DROP TABLE x;--": "id SQL",
    "{{7*7}}": "id template",
    "${jndi:ldap:x}": "id jndi",
    "<script>": "id html",
}
#: in JSON bodies, where a lone surrogate can be written as an escape
BODY_IDS = [*HOSTILE_IDS, "\ud800", "a\udfff", "\ud83d", "", " ", 0, -1, 10**400, 1e308, True, None, [], {}, ["d1"], {"id": "d1"}]
HOSTILE_STRINGS = [
    "", " ", "\x00", "\ud800", "\udfff", "a\ud800b", "😀" * 50, "\u202e", "\ufeff", "\u0000\u0001\u001f", "\\", '"', "'", "\r\n",
    "x" * 1025, "x" * 4097, "x" * 70_000, "{{", "{% if %}", "{{ 1 | nosuchfilter }}", "{% include 'x' %}", "null", "true", "NaN",
    "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "1970-01-01T00:00:00Z", "2026-13-45T25:61:61Z",
    "2026-01-01", "2026-01-01T00:00:00", "dl_", "dl_" + "x" * 61, "ios", "android", "push_opened", "conversion", "rain", "Actual",
    "Cancel", "shop", "d1", "c1", "T#x", "META", "D#2026-01-01", "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/x/y",
]
#: raw JSON number text, spliced in where a value goes (10**400 as an integer, 1e309 → inf in Python)
HOSTILE_NUMBERS = [
    "1e308", "-1e308", "1.7976931348623157e308", "1e309", "-1e309", "1e-400", "4.9e-324", "1e-200", "-1e-131", "1e126", "-0", "-0.0", "0e0",
    "1" + "0" * 41, "0.12345678901234567890123456789012345678901",
    "1" + "0" * 400, "-1" + "0" * 400, "1" + "0" * 5000, "123456789012345678901234567890", "9223372036854775808",
    "-9223372036854775809", "NaN", "Infinity", "-Infinity", "0.1e1", "1E2", "91", "-181", "180.0000001", "-90.0000001",
]


# ---------------------------------------------------------------- JSON text
@dataclass(frozen=True)
class Raw:
    """A JSON value written as this exact text (``NaN``, ``1e309``, 10**400)."""

    text: str


def _prep(obj: Any, raws: list[str]) -> Any:
    if isinstance(obj, Raw):
        raws.append(obj.text)
        return f"\x00raw{len(raws) - 1}\x00"
    if isinstance(obj, dict):
        return {k: _prep(v, raws) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_prep(v, raws) for v in obj]
    return obj


def dump(obj: Any, *, ensure_ascii: bool = True) -> bytes:
    """JSON bytes of ``obj`` (``Raw`` spliced in verbatim). With
    ``ensure_ascii=False`` a lone surrogate becomes invalid UTF-8 bytes."""
    raws: list[str] = []
    text = json.dumps(_prep(obj, raws), ensure_ascii=ensure_ascii)
    for i, raw in enumerate(raws):
        text = text.replace(f'"\\u0000raw{i}\\u0000"', raw, 1)
    return text.encode("utf-8", "surrogatepass")


def nested(depth: int, leaf: Any = 1, kind: str = "list") -> Any:
    """``depth`` levels of lists (or objects) around ``leaf``."""
    out = leaf
    for _ in range(depth - 1):
        out = [out] if kind == "list" else {"a": out}
    return out


def deep_text(depth: int) -> bytes:
    """Nesting too deep to build as Python objects cheaply: the text."""
    return b"[" * depth + b"1" + b"]" * depth


# ---------------------------------------------------------------- geometry
def square(lat: float, lng: float, d: float) -> list:
    return [[lng - d, lat - d], [lng + d, lat - d], [lng + d, lat + d], [lng - d, lat + d], [lng - d, lat - d]]


def ring(lat: float, lng: float, r_deg: float, n: int, *, close: bool = True) -> list:
    """An ``n``-position ring (closed: the last repeats the first) around (lat, lng)."""
    k = n - 1 if close else n
    pts = [[round(lng + r_deg * math.cos(2 * math.pi * i / k), 7), round(lat + r_deg * math.sin(2 * math.pi * i / k), 7)] for i in range(k)]
    return pts + [pts[0]] if close else pts


def polygon(coords: list) -> dict:
    return {"type": "Polygon", "coordinates": coords}


#: kind → builder(lat, lng, scale) → a GeoJSON geometry (invalid or enormous, except the cut and 9,999-vertex ones)
GEOMETRIES: dict[str, Callable[[float, float, float], dict]] = {
    "bowtie": lambda la, ln, s: polygon([[[ln, la], [ln + s, la + s], [ln + s, la], [ln, la + s], [ln, la]]]),
    "spike": lambda la, ln, s: polygon([[[ln, la], [ln + s, la], [ln + s, la + s], [ln + s / 2, la - s], [ln, la + s], [ln, la]]]),
    "ring_3_positions": lambda la, ln, s: polygon([[[ln, la], [ln + s, la], [ln, la]]]),
    "ring_not_closed": lambda la, ln, s: polygon([ring(la, ln, s, 8, close=False)]),
    "ring_empty": lambda la, ln, s: polygon([[]]),
    "no_rings": lambda la, ln, s: polygon([]),
    "hole_outside_shell": lambda la, ln, s: polygon([square(la, ln, s), square(la + 3 * s, ln + 3 * s, s / 2)]),
    "hole_crossing_shell": lambda la, ln, s: polygon([square(la, ln, s), square(la + s, ln + s, s / 2)]),
    "hole_equals_shell": lambda la, ln, s: polygon([square(la, ln, s), square(la, ln, s)]),
    "antimeridian_wide": lambda la, ln, s: polygon([[[-179.5, -10], [179.5, -10], [179.5, 10], [-179.5, 10], [-179.5, -10]]]),
    "antimeridian_cut": lambda la, ln, s: {"type": "MultiPolygon", "coordinates": [[square(51.8, 179.5, 0.4)], [square(51.8, -179.5, 0.4)]]},
    "huge_area": lambda la, ln, s: polygon([[[-90, -80], [90, -80], [90, 80], [-90, 80], [-90, -80]]]),
    "pole": lambda la, ln, s: polygon([[[-10, 89], [10, 89], [10, 90], [-10, 90], [-10, 89]]]),
    "zero_area": lambda la, ln, s: polygon([[[ln, la], [ln + s, la], [ln + 2 * s, la], [ln, la]]]),
    "duplicate_points": lambda la, ln, s: polygon([[[ln, la], [ln, la], [ln + s, la], [ln + s, la + s], [ln + s, la + s], [ln, la]]]),
    "tiny": lambda la, ln, s: polygon([square(la, ln, 1e-9)]),
    "lng_181": lambda la, ln, s: polygon([[[180.5, la], [181, la], [181, la + s], [180.5, la]]]),
    "lat_91": lambda la, ln, s: polygon([[[ln, 90.5], [ln + s, 91], [ln, 91], [ln, 90.5]]]),
    "coord_1e308": lambda la, ln, s: polygon([[[1e308, la], [ln, la], [ln, la + s], [1e308, la]]]),
    "coord_10e400": lambda la, ln, s: polygon([[[Raw("1" + "0" * 400), la], [ln, la], [ln, la + s], [Raw("1" + "0" * 400), la]]]),
    "coord_nan": lambda la, ln, s: polygon([[[Raw("NaN"), la], [ln, la], [ln, la + s], [Raw("NaN"), la]]]),
    "coord_inf_1e309": lambda la, ln, s: polygon([[[Raw("1e309"), la], [ln, la], [ln, la + s], [Raw("1e309"), la]]]),
    "position_3d": lambda la, ln, s: polygon([[[ln, la, 10], [ln + s, la, 10], [ln, la + s, 10], [ln, la, 10]]]),
    "position_1d": lambda la, ln, s: polygon([[[ln], [ln + s], [ln], [ln]]]),
    "position_strings": lambda la, ln, s: polygon([[[str(ln), str(la)], [ln + s, la], [ln, la + s], [str(ln), str(la)]]]),
    "position_bool": lambda la, ln, s: polygon([[[True, False], [ln + s, la], [ln, la + s], [True, False]]]),
    "nesting_too_shallow": lambda la, ln, s: polygon(square(la, ln, s)),
    "nesting_too_deep": lambda la, ln, s: polygon([[square(la, ln, s)]]),
    "coordinates_missing": lambda la, ln, s: {"type": "Polygon"},
    "coordinates_string": lambda la, ln, s: {"type": "Polygon", "coordinates": "0,0 1,1"},
    "type_linestring": lambda la, ln, s: {"type": "LineString", "coordinates": square(la, ln, s)},
    "type_collection": lambda la, ln, s: {"type": "GeometryCollection", "geometries": [polygon([square(la, ln, s)])]},
    "type_lowercase": lambda la, ln, s: {"type": "polygon", "coordinates": [square(la, ln, s)]},
    "type_missing": lambda la, ln, s: {"coordinates": [square(la, ln, s)]},
    "multipolygon_empty": lambda la, ln, s: {"type": "MultiPolygon", "coordinates": []},
    "multipolygon_overlap": lambda la, ln, s: {"type": "MultiPolygon", "coordinates": [[square(la, ln, s)], [square(la + s / 2, ln + s / 2, s)]]},
    "multipolygon_as_polygon": lambda la, ln, s: {"type": "MultiPolygon", "coordinates": [square(la, ln, s)]},
    "vertices_9999": lambda la, ln, s: polygon([ring(la, ln, s, 9_999)]),
    "vertices_10001": lambda la, ln, s: polygon([ring(la, ln, s, 10_001)]),
    "vertices_20000": lambda la, ln, s: polygon([ring(la, ln, s, 20_000)]),
    "vertices_20000_open": lambda la, ln, s: polygon([ring(la, ln, s, 20_000, close=False)]),
    "holes_1000": lambda la, ln, s: polygon([square(la, ln, s)] + [square(la + s * (i % 30 - 15) / 20, ln + s * (i // 30 - 15) / 20, s / 100) for i in range(1000)]),
}
#: geometry kind → the limit it sits on (the others are invalid shapes)
GEOMETRY_LIMITS = {
    "vertices_9999": "fence 9,999 vertices (≤ 10,000)",
    "vertices_10001": "fence 10,001 vertices (> 10,000)",
    "vertices_20000": "fence 20,000-vertex ring",
    "vertices_20000_open": "fence 20,000-vertex ring, not closed",
    "huge_area": "fence area > 3,000,000 km²",
    "antimeridian_wide": "ring spanning > 180° of longitude",
}


def h3_cells(n: int, res: int = 9) -> list[str]:
    """``n`` distinct resolution-``res`` cells around the shop."""
    origin = h3.latlng_to_cell(SHOP[0], SHOP[1], res)
    k = 0
    cells: list[str] = []
    while len(cells) < n:
        k += 1
        cells = list(h3.grid_disk(origin, k))
    return sorted(cells)[:n]


# ---------------------------------------------------------------- geometry budget
def _holes(n: int, la: float = SHOP[0], ln: float = SHOP[1], s: float = 0.01) -> dict:
    """A square with ``n`` 20 m square holes on a grid."""
    side = math.ceil(math.sqrt(n))
    step = 1.6 * s / side
    return polygon([square(la, ln, s)] + [square(la + step * (i % side - side / 2), ln + step * (i // side - side / 2), 0.0001) for i in range(n)])


def _parts(n: int, la: float = SHOP[0], ln: float = SHOP[1]) -> dict:
    """``n`` 10 m triangles 2 km apart (4 positions each)."""
    side = math.ceil(math.sqrt(n))
    return {"type": "MultiPolygon", "coordinates": [[[[ln + (i // side) * 0.02 + dx, la + (i % side) * 0.02 + dy] for dx, dy in
                                                      ((0, 0), (1e-4, 0), (0, 1e-4), (0, 0))]] for i in range(n)]}


def _scattered_cells(n: int) -> list[str]:
    """``n`` resolution-9 cells, none adjacent (centre children of resolution-7 cells)."""
    origin = h3.latlng_to_cell(SHOP[0], SHOP[1], 7)
    k = 1
    while 3 * k * k + 3 * k + 1 < n:
        k += 1
    return sorted(h3.cell_to_center_child(p, 9) for p in sorted(h3.grid_disk(origin, k))[:n])


def budget_edges() -> list[tuple[str, Any, tuple[int, ...], str]]:
    """(route, body, expected statuses, label): the geometry budget (README
    "Limits and behaviour") at its edges, and the shapes that once took
    minutes to index."""
    def fence(geometry: Any, props: dict | None = None) -> dict:
        return {"type": "Feature", "geometry": geometry, "properties": props or {}}

    circles = [{"type": "Feature", "id": f"hx-c{i}", "geometry": {"type": "Point", "coordinates": [-120.0 + (i % 50) * 0.5, 30.0 + (i // 50) * 1.5]},
                "properties": {"radius_m": 100_000}} for i in range(500)]
    put, imp, est = "PUT /v1/geofences/{id}", "POST /v1/geofences/import", "POST /v1/audience/estimate"
    return [
        (put, fence(_holes(250)), (200,), "fence 250 holes (≤ 250)"),
        (put, fence(_holes(251)), (400,), "fence 251 holes (> 250)"),
        (put, fence(_holes(900)), (400,), "fence 900 holes"),
        (put, fence(_parts(500)), (200,), "fence 500 parts (≤ 500)"),
        (put, fence(_parts(2500)), (400,), "fence 2,500 parts"),
        (put, fence(None, {"h3_cells": _scattered_cells(5000)}), (400,), "fence 5,000 scattered H3 cells (stored bytes)"),
        (imp, {"type": "FeatureCollection", "features": circles}, (400,), "import 500 circles of 100 km (import work)"),
        (imp, {"type": "FeatureCollection", "features": circles[:25]}, (400,), "import 25 circles of 100 km (import work)"),
        (imp, {"type": "FeatureCollection", "features": circles[:20]}, (200,), "import 20 circles of 100 km"),
        (est, {"geometry": _holes(900)}, (400,), "estimate area of 900 holes"),
        (est, {"geometry": polygon([[[-122.75, 38.39], [-122.65, 38.39], [-1.0, 38.49], [-122.75, 38.49], [-122.75, 38.39]]])}, (400,),
         "estimate a 10,000 km sliver (region queries)"),
    ]


# ---------------------------------------------------------------- valid bodies
def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def huge_alert(world: "World", now: float, ring: list) -> dict:
    """A fresh alert (a new id each time) over ``ring``."""
    world.alerts += 1
    feature = alert_feature(f"urn:oid:2.49.0.1.840.0.hx.{world.alerts}", now)
    feature["geometry"] = {"type": "Polygon", "coordinates": [ring]}
    return feature


def alert_feature(alert_id: str, now: float, *, status: str = "Actual", lat: float = SHOP[0], lng: float = SHOP[1]) -> dict:
    """An NWS alert Feature shaped like api.weather.gov's, active now, whose polygon holds the shop."""
    return {
        "id": f"https://api.weather.gov/alerts/{alert_id}",
        "type": "Feature",
        "geometry": polygon([square(lat, lng, 0.2)]),
        "properties": {
            "@id": f"https://api.weather.gov/alerts/{alert_id}",
            "id": alert_id,
            "areaDesc": "Sonoma",
            "geocode": {"SAME": ["006097"], "UGC": ["CAZ506"]},
            "affectedZones": ["https://api.weather.gov/zones/forecast/CAZ506"],
            "references": [],
            "sent": _iso(now - 600),
            "effective": _iso(now - 600),
            "onset": _iso(now - 600),
            "expires": _iso(now + 7200),
            "ends": _iso(now + 14400),
            "status": status,
            "messageType": "Alert",
            "category": "Met",
            "severity": "Severe",
            "certainty": "Likely",
            "urgency": "Expected",
            "event": "Winter Storm Warning",
            "senderName": "NWS Eureka CA",
            "headline": "Winter Storm Warning issued",
            "response": "Prepare",
            "parameters": {"VTEC": ["/O.NEW.KEKA.WS.W.0001.260101T0000Z-260102T0000Z/"]},
        },
    }


CAMPAIGN = {
    "name": "Welcome in",
    "enabled": True,
    "trigger": {"type": "geofence_enter", "fence_ids": ["shop"], "fence_tags": ["zone"], "weather": {"condition_in": ["rain", "clear"]}},
    "audience": {"fence_tags": ["shop"], "max_location_age_hours": 24},
    "message": {"title": "Hi {{ first_name | default: 'there' }}", "body": "Take {{ coupon.percent_off }}% off at {{ fence.name }}: {{ coupon.code }}",
                "deep_link": "shop://deals"},
    "variants": [{"name": "gold", "when": {"attribute": "loyalty_tier", "equals": "gold"}, "message": {"title": "Gold {{ first_name }}", "body": "b"}}],
    "experiment": {"arms": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50}], "control_percent": 10},
    "coupon": {"percent_off": 10, "prefix": "SHOP", "valid_hours": 72},
    "limits": {"per_device_per_day": 2, "min_minutes_between": 60},
    "quiet_hours": {"start": "21:00", "end": "08:00", "mode": "hold", "timezone": "America/Los_Angeles"},
    "ttl_seconds": 21600,
}
WEATHER_CAMPAIGN = {
    "name": "Storm delay",
    "trigger": {"type": "weather_alert", "events": ["Winter Storm Warning"], "min_severity": "Moderate"},
    "message": {"title": "Storm", "body": "A {{ alert.event | downcase }} near {{ first_name | default: 'you' }}"},
}


def valid_body(kind: str, world: "World", now: float) -> Any:
    """A fresh valid body of ``kind`` (see ``Route.bodies``)."""
    lat, lng = SHOP
    d1 = "d1"
    if kind == "polygon":
        return {"type": "Feature", "geometry": polygon([square(lat, lng, 0.01)]),
                "properties": {"name": "Zone", "tags": ["zone"], "metadata": {"store": "42"}, "dwell_minutes": 5, "enabled": True}}
    if kind == "circle":
        return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lng, lat]}, "properties": {"name": "Shop", "radius_m": 100, "tags": ["shop"]}}
    if kind == "h3":
        return {"type": "Feature", "geometry": None, "properties": {"name": "Cells", "h3_cells": h3_cells(7)}}
    if kind == "multipolygon":
        return {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [
            [square(lat, lng, 0.02), square(lat, lng, 0.005)], [square(lat + 0.1, lng + 0.1, 0.01)]]}, "properties": {"name": "Two"}}
    if kind == "collection":
        return {"type": "FeatureCollection", "features": [
            {**valid_body("polygon", world, now), "id": "hx-1"},
            {**valid_body("circle", world, now), "properties": {"id": "hx.2", "radius_m": 50}},
            {**valid_body("h3", world, now), "id": "HX:3_z"},
        ]}
    if kind == "device":
        return {"platform": "android", "push_token": "tok-hostile", "user_id": "u1",
                "attributes": {"first_name": "Ana", "loyalty_tier": "gold", "language": "es", "timezone": "America/Chicago", "n": 3},
                "consent": {"push": True, "location": True}}
    if kind == "device_min":
        return {"platform": "ios", "push_token": "t"}
    if kind == "ping":
        return {"device_id": d1, "lat": lat, "lng": lng, "accuracy_m": 5, "speed_mps": 1.5, "timestamp": _iso(now - 30)}
    if kind == "ping_batch":
        return {"pings": [{"device_id": d, "lat": la, "lng": ln, "accuracy_m": 10, "timestamp": now - 60 + i}
                          for i, (d, (la, ln)) in enumerate([("d1", FAR), ("d1", SHOP), ("d2", SHOP), ("hx-d1", FAR)])]}
    if kind == "campaign":
        return json.loads(json.dumps(CAMPAIGN))
    if kind == "campaign_weather":
        return json.loads(json.dumps(WEATHER_CAMPAIGN))
    if kind == "campaign_min":
        return {"name": "n", "trigger": {"type": "geofence_exit", "fence_tags": ["shop"]}, "message": {"title": "t", "body": "b"}}
    if kind == "preview":
        return {"device_id": d1, "fence_id": "shop", "weather": {"condition": "rain", "temperature_c": 3}}
    if kind == "preview_weather":
        return {"device_id": d1, "alert": {"event": "Winter Storm Warning", "severity": "Severe"}}
    if kind == "open":
        return {"device_id": d1, "type": "push_opened", "delivery_id": world.delivery_id, "at": _iso(now - 5)}
    if kind == "conversion":
        return {"device_id": d1, "type": "conversion", "coupon_code": "SHOP-X", "value": 9.5, "at": now - 5}
    if kind == "estimate_geometry":
        return {"geometry": polygon([square(lat, lng, 0.05)]), "max_location_age_hours": 24}
    if kind == "estimate_fence":
        return {"fence_id": "zone"}
    if kind == "alert":
        world.alerts += 1
        return alert_feature(f"urn:oid:2.49.0.1.840.0.hx.{world.alerts}", now)
    if kind == "alert_collection":
        world.alerts += 2
        return {"type": "FeatureCollection", "features": [alert_feature(f"urn:oid:2.49.0.1.840.0.hx.{world.alerts - 1}", now),
                                                          alert_feature(f"urn:oid:2.49.0.1.840.0.hx.{world.alerts}", now, status="Test")]}
    if kind == "conditions":
        return {"observations": [{"lat": lat, "lng": lng, "observed_at": _iso(now - 60), "temperature_c": 4.5, "condition": "Rain",
                                  "precipitation_mm_h": 2.5, "wind_kph": 20}]}
    raise KeyError(kind)


def batch_body(kind: str, n: int, world: "World", now: float) -> Any:
    """A batch of ``n`` items at a documented limit (``n`` = limit or limit + 1)."""
    if kind == "pings":
        return {"pings": [{"device_id": "d1", "lat": FAR[0], "lng": FAR[1], "accuracy_m": 20, "timestamp": now - 3600 + i} for i in range(n)]}
    if kind == "features":  # features the import rejects one by one: cheap, and nothing stored
        return {"type": "FeatureCollection", "features": [{"type": "Feature", "id": f"hx-bad{i}", "geometry": GEOMETRIES["bowtie"](*SHOP, 0.01),
                                                           "properties": {}} for i in range(n)]}
    if kind == "observations":
        return {"observations": [{"lat": SHOP[0] + i * 1e-4, "lng": SHOP[1], "observed_at": now - 60, "temperature_c": 5, "condition": "clear"}
                                 for i in range(n)]}
    if kind == "alerts":  # "Test" alerts are ignored: nothing stored
        return {"type": "FeatureCollection", "features": [alert_feature(f"hx-test-{i}", now, status="Test") for i in range(n)]}
    raise KeyError(kind)


BATCH_LIMITS = {  # route path → (batch kind, the limit)
    "/v1/pings": ("pings", 100),
    "/v1/geofences/import": ("features", 500),
    "/v1/weather/conditions": ("observations", 1000),
    "/v1/weather/alerts": ("alerts", 1000),
}


# ---------------------------------------------------------------- tree edits
DROP = object()


def node_paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every node of ``obj`` (root excluded) as a path of keys/indices."""
    out: list[tuple] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append(prefix + (k,))
            out.extend(node_paths(v, prefix + (k,)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:6]):  # the first few items of long lists are enough
            out.append(prefix + (i,))
            out.extend(node_paths(v, prefix + (i,)))
    return out


def replace_at(obj: Any, path: tuple, value: Any) -> Any:
    """A copy of ``obj`` with the node at ``path`` replaced by ``value``
    (removed when ``DROP``)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        if value is DROP and not rest:
            return {k: v for k, v in obj.items() if k != head}
        return {**obj, head: replace_at(obj[head], rest, value)}
    if value is DROP and not rest:
        return obj[:head] + obj[head + 1:]
    return obj[:head] + [replace_at(obj[head], rest, value)] + obj[head + 1:]


def path_label(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "body"


# ---------------------------------------------------------------- requests
@dataclass
class Req:
    route: Route
    method: str
    path: str
    headers: dict
    body: bytes = b""
    kind: str = "valid"
    role: str = "admin"
    #: catalogue: the statuses the README promises (app keys may also get 401/403)
    expect: tuple[int, ...] | None = None
    #: the documented limit this request sits on, for the report
    limit: str | None = None
    #: the body field a sweep request changed (``campaign.message.title``)
    field: str | None = None

    def describe(self, max_body: int = 600) -> str:
        body = self.body[:max_body].decode("utf-8", "backslashreplace")
        more = f" … ({len(self.body):,} bytes)" if len(self.body) > max_body else ""
        return f"{self.method} {self.path!r} headers={self.headers!r} body={body!r}{more}"


@dataclass
class World:
    """What the seed created, and what the run learnt (secrets, page tokens)."""

    delivery_id: str = "dl_unknown"
    secrets: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    alerts: int = 0
    #: the stage's keys (the test suite's by default; a local stack's own when run there)
    admin_key: str = ADMIN_KEY
    app_key: str = APP_KEY


def headers_for(role: str, world: World, device_id: Any = None, content_type: str | None = "application/json") -> dict:
    """``admin`` | ``app`` (with the device's secret when known) and the hostile variants."""
    h: dict[str, str] = {}
    if content_type is not None:
        h["Content-Type"] = content_type
    if role == "admin":
        h["X-Api-Key"] = world.admin_key
    elif role == "app":
        h["X-Api-Key"] = world.app_key
        secret = world.secrets.get(device_id) if isinstance(device_id, str) else None
        if secret:
            h["X-Device-Secret"] = secret
    elif role == "app_bad_secret":
        h.update({"X-Api-Key": world.app_key, "X-Device-Secret": "not-the-secret"})
    elif role == "app_huge_secret":
        h.update({"X-Api-Key": world.app_key, "X-Device-Secret": "s" * 100_000})
    elif role == "app_on_admin":
        h["X-Api-Key"] = world.app_key
    elif role == "empty_key":
        h["X-Api-Key"] = ""
    elif role == "wrong_key":
        h["X-Api-Key"] = "not-a-key"
    elif role == "key_padded":
        h["X-Api-Key"] = f" {world.admin_key} "
    elif role == "key_prefix":
        h["X-Api-Key"] = world.admin_key[:-1]
    elif role == "key_huge":
        h["X-Api-Key"] = "k" * 100_000
    elif role == "key_unicode":
        h["X-Api-Key"] = "ключ😀\u202e"
    elif role == "key_nul":
        h["X-Api-Key"] = world.admin_key + "\x00"
    elif role == "key_lowercase_header":
        h["x-api-key"] = world.admin_key
    elif role == "key_wrong_header":
        h["Authorization"] = f"Bearer {world.admin_key}"
    elif role != "none":
        raise KeyError(role)
    return h


BAD_ROLES = ("none", "empty_key", "wrong_key", "key_padded", "key_prefix", "key_huge", "key_unicode", "key_nul",
             "key_wrong_header", "app_bad_secret", "app_huge_secret", "app_on_admin")
CONTENT_TYPES = (None, "text/plain", "application/json; charset=utf-8", "application/json; charset=utf-16", "APPLICATION/JSON",
                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/octet-stream", "", "json")


def must_encode(id_: str) -> bool:
    """Characters an HTTP request line cannot carry raw (the test client's
    ``urlsplit`` would silently drop tabs and newlines, or split the path)."""
    return any(c in id_ for c in "\t\n\r/?#")


def _path(route: Route, id_: str, encode: bool = False) -> str:
    return route.path.replace("{id}", quote(id_, safe="") if encode else id_)


def _role(route: Route) -> str:
    return "admin" if "admin" in route.roles else "none" if not route.roles else route.roles[0]


def make(route: Route, world: World, *, id_: str | None = None, body: bytes = b"", kind: str, role: str | None = None,
         query: str = "", method: str | None = None, content_type: str | None = "application/json", device_id: Any = "d1",
         encode_id: bool = False, expect: tuple[int, ...] | None = None, limit: str | None = None) -> Req:
    role = role or _role(route)
    path = _path(route, id_ if id_ is not None else (SEED_IDS[route.id_kind][0] if route.id_kind else ""), encode_id)
    if query:
        path += "?" + query
    if route.id_kind == "device" and isinstance(id_, str):
        device_id = id_
    return Req(route, method or route.method, path, headers_for(role, world, device_id, content_type), body, kind, role, expect, limit)


# hypothesis pieces
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),  # NaN/Infinity become JSON literals
    st.text(max_size=12), st.sampled_from(HOSTILE_STRINGS),
    st.sampled_from(HOSTILE_NUMBERS).map(Raw),
)
junk = st.one_of(
    scalars,
    st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=6), kids, max_size=4)), max_leaves=12),
    st.integers(min_value=MAX_NESTING - 2, max_value=200).map(nested),
    st.integers(min_value=MAX_NESTING - 2, max_value=120).map(lambda d: nested(d, kind="dict")),
    st.sampled_from(BODY_IDS),
)
#: values a valid body might hold, so that mutations are often accepted and reach the store
plausible = st.sampled_from([
    None, True, False, 0, 1, -1, 2.5, 10, 50, 100, 1000, 86400, "", "gold", "A", "21:00", "08:00", "hold", "drop", "America/Chicago",
    "shop", "zone", "d1", "d2", "hx-d1", "c1", "ios", "android", "ios_sandbox", "geofence_exit", "geofence_dwell", "weather_alert",
    "Severe", "Minor", "{{ first_name | upcase }}", "{{ coupon.code }}", "{{ weather.condition }}", "Größe 😀", [], ["shop"], ["zone"], {},
    {"condition_in": ["rain"]}, [SHOP[1], SHOP[0]], [FAR[1], FAR[0]], SHOP[0], SHOP[1], FAR[0], 38.5, -122.5, 90, -90, 180, -180,
])
EXTRA_KEYS = ["x", "", "__proto__", "constructor", "😀", "\u0000", "\ud800", "k" * 10_000, "id", "type", "pings", "features", "device_id"]

MODES_BODY = ("valid", "mutate", "mutate", "mutate", "mutate", "drop", "extra", "raw_value", "malformed", "malformed", "numbers",
              "deep", "oversize", "batch", "geometry", "id", "body_id", "query", "auth", "method", "content_type")
MODES_NO_BODY = ("valid", "id", "id", "query", "query", "auth", "method", "content_type", "junk_body", "deep", "oversize")
GEOMETRY_ROUTES = {"/v1/geofences/{id}", "/v1/geofences/import", "/v1/audience/estimate", "/v1/weather/alerts"}


def _malformed(text: bytes, choice: int, cut: int, blob: bytes) -> tuple[bytes, str]:
    """A valid body's bytes made invalid in one of many ways."""
    s = text.decode("utf-8", "surrogatepass")
    variants: list[tuple[Callable[[], bytes], str]] = [
        (lambda: text[: cut % max(len(text), 1)], "truncated"),
        (lambda: b"\xef\xbb\xbf" + text, "UTF-8 BOM"),
        (lambda: s.encode("utf-16"), "UTF-16 with BOM"),
        (lambda: s.encode("utf-16-le"), "UTF-16-LE"),
        (lambda: s.encode("utf-32"), "UTF-32"),
        (lambda: s.replace('"', "'").encode(), "single quotes"),
        (lambda: text + b"garbage", "trailing garbage"),
        (lambda: text + b"}", "trailing brace"),
        (lambda: text + text, "two documents"),
        (lambda: text + b"\x00", "trailing NUL"),
        (lambda: b"// comment\n" + text, "comment"),
        (lambda: text[:cut % max(len(text), 1)] + b"\xff\xfe\xc0\xaf" + text[cut % max(len(text), 1):], "invalid UTF-8"),
        (lambda: text[:cut % max(len(text), 1)] + b"\xed\xa0\x80" + text[cut % max(len(text), 1):], "UTF-8-encoded surrogate"),
        (lambda: text.replace(b'":', b'":\x01', 1), "control character"),
        (lambda: (s[:-1] + ',"\x00":1}').encode() if s.endswith("}") else text + b",", "raw NUL in key"),
        (lambda: s.replace(": ", ": NaN, \"_\": ", 1).encode(), "NaN literal"),
        (lambda: s.replace(": ", ": -Infinity, \"_\": ", 1).encode(), "-Infinity literal"),
        (lambda: s.replace(", ", ",, ", 1).encode(), "double comma"),
        (lambda: s.replace("}", ",}", 1).encode(), "trailing comma"),
        (lambda: b"", "empty"),
        (lambda: b"   \n\t ", "whitespace"),
        (lambda: b"null", "null"),
        (lambda: b"\x00" * 16, "NULs"),
        (lambda: blob, "random bytes"),
        (lambda: s.encode("latin-1", "replace"), "latin-1"),
        (lambda: s.replace("{", "[", 1).encode(), "bracket mismatch"),
        (lambda: ("{" + s[1:].replace('"', '"\\u0000', 1)).encode() if s.startswith("{") else text, "escaped NUL"),
    ]
    make_bytes, label = variants[choice % len(variants)]
    return make_bytes(), label


def _query_value(draw) -> str:
    return draw(st.one_of(
        st.text(max_size=12),
        st.sampled_from(["", "0", "-1", "1001", "1000", "1", "1e3", "1e400", "nan", "inf", "-inf", "-0", "0x10", " 5", "5 ", "٥", "1_000",
                         "true", "True", "yes", "2", "91", "-181", "90.0000001", "38.44", "-122.7", "null", "[]", "{}", "%00", "\x00",
                         "😀", "\u202e", "a" * 5000, "T#shop", "shop", "d1", "c1", "sent", "SENT", "held", "eyJpIjoiYyJ9",
                         base64.urlsafe_b64encode(b"\x00" * 6 + b'{"i": "c", "k": "1"}').decode()]),
    ))


def _query(draw, route: Route, world: World) -> tuple[str, str]:
    """A hostile query string for ``route`` (its own names, repeated, unknown, raw)."""
    style = draw(st.sampled_from(["dict", "dict", "repeat", "raw", "token"]))
    names = list(route.query) + ["x", "limit", "LIMIT", "", "😀", "next_token", "a[b]", "__proto__"]
    if style == "raw":
        raw = draw(st.sampled_from(["=", "&&&", "limit", "limit=%ZZ", "lat=1&lat=2&lng=3", "%", "a=b=c", "?", "#frag", "limit=1;2",
                                    "tag=%ED%A0%80", "tag=%00", "next_token=" + "%41" * 3000, "lat=%2B1e1&lng=-0", "repair=TRUE&repair=0"]))
        return raw, "query raw"
    if style == "token" and route.query and "next_token" in route.query:
        # tokens the run has seen (this route's, else another list's): drawn by
        # index, so that what hypothesis draws never depends on the run's state
        tokens = world.tokens.get(route.path, []) + [t for ts in world.tokens.values() for t in ts][:4] + ["eyJpIjoiYyIsImsiOiIxIn0"]
        tok = tokens[draw(st.integers(0, 63)) % len(tokens)]
        how = draw(st.sampled_from(["as is", "flip", "truncate", "pad", "double"]))
        tok = {"as is": tok, "flip": tok[:-1] + ("A" if tok[-1:] != "A" else "B"), "truncate": tok[: len(tok) // 2],
               "pad": tok + "==", "double": tok + tok}[how]
        params = {"next_token": tok}
        if draw(st.booleans()) and "campaign_id" in route.query:
            params["campaign_id"] = draw(st.sampled_from(["c1", "cw", "hx-c1"]))
        return urlencode(params), f"query token {how}"
    keys = draw(st.lists(st.sampled_from(names), min_size=1, max_size=4))
    pairs = [(k, _query_value(draw)) for k in keys]
    if style == "repeat" and pairs:
        pairs.append((pairs[0][0], _query_value(draw)))
    return urlencode(pairs, quote_via=quote), f"query {style}"


@st.composite
def requests(draw, world: World, routes: tuple[Route, ...] = ROUTES) -> Req:
    """One hostile request for one of ``routes``."""
    route = draw(st.sampled_from(routes))
    now = time.time()
    modes = MODES_BODY if route.bodies else MODES_NO_BODY
    mode = draw(st.sampled_from(modes))
    if route.path not in GEOMETRY_ROUTES and mode == "geometry":
        mode = "mutate"
    if route.path not in BATCH_LIMITS and mode == "batch":
        mode = "extra"
    role = _role(route)
    if "app" in route.roles and draw(st.integers(0, 4)) == 0:
        role = "app"
    id_ = None
    if route.id_kind:
        pool = SEED_IDS[route.id_kind] + SCRATCH_IDS[route.id_kind]
        if route.method == "DELETE":
            pool = SCRATCH_IDS[route.id_kind] + ("nope",)  # seeds stay put (a rejected delete is the interesting one)
        id_ = draw(st.sampled_from(pool))
    query = ""
    if route.query and draw(st.integers(0, 3)) == 0:  # a valid query now and then
        query = {"lat": f"lat={SHOP[0]}&lng={SHOP[1]}", "repair": "repair=true", "tag": "tag=shop&limit=2", "limit": "limit=1",
                 "campaign_id": "campaign_id=c1&limit=1"}[route.query[0]]

    body_kind = draw(st.sampled_from(route.bodies)) if route.bodies else None
    base = valid_body(body_kind, world, now) if body_kind else None
    device_id = base.get("device_id", "d1") if isinstance(base, dict) else "d1"

    def req(body: bytes = b"", kind: str = mode, **kw) -> Req:
        kw.setdefault("role", role)
        kw.setdefault("id_", id_)
        kw.setdefault("query", query)
        kw.setdefault("device_id", device_id)
        return make(route, world, body=body, kind=kind, **kw)

    if mode == "valid":
        return req(dump(base) if base is not None else b"")
    if mode in ("mutate", "drop", "numbers"):
        paths = node_paths(base)
        path = draw(st.sampled_from(paths)) if paths else ()
        if mode == "drop":
            value = DROP
        elif mode == "numbers":
            value = Raw(draw(st.sampled_from(HOSTILE_NUMBERS)))
        else:
            value = draw(st.one_of(junk, plausible))
        ascii_ = draw(st.integers(0, 5)) > 0
        return req(dump(replace_at(base, path, value), ensure_ascii=ascii_), kind=f"{mode}")
    if mode == "extra":
        paths = [()] + [p for p in node_paths(base) if isinstance(_get(base, p), dict)]
        path = draw(st.sampled_from(paths))
        key = draw(st.sampled_from(EXTRA_KEYS))
        target = _get(base, path)
        return req(dump(replace_at(base, path, {**target, key: draw(st.one_of(junk, plausible))})), kind="unknown field")
    if mode == "raw_value":
        return req(dump(draw(junk)), kind="raw value")
    if mode == "malformed":
        body, label = _malformed(dump(base), draw(st.integers(0, 1000)), draw(st.integers(0, 10_000)), draw(st.binary(max_size=64)))
        return req(body, kind=f"malformed: {label}")
    if mode == "deep":
        depth = draw(st.sampled_from([MAX_NESTING, MAX_NESTING + 1, 100, 1000, 100_000]))
        where = draw(st.sampled_from(["root", "field"])) if base is not None else "root"
        if where == "root" or depth > 1000:
            body = deep_text(depth)
        else:
            path = draw(st.sampled_from(node_paths(base)))
            body = dump(replace_at(base, path, Raw(deep_text(depth).decode())))
        limit = f"nesting {depth} levels" if depth <= MAX_NESTING + 1 and route.bodies else None
        return req(body, kind=f"deep {where}", limit=limit)
    if mode == "oversize":
        over = draw(st.sampled_from([1, 1, 1000, 1024 * 1024]))
        text = dump(base) if base is not None else b"{}"
        exact = draw(st.integers(0, 3)) == 0
        size = MAX_BODY if exact else MAX_BODY + over
        body = text + b" " * (size - len(text))  # trailing whitespace: still valid JSON at the limit
        if not route.bodies:  # a body the route never reads
            return req(body, kind="oversize body on a bodiless route")
        return req(body, kind="oversize", limit="body exactly 5 MiB" if exact else "body over 5 MiB → 413",
                   expect=None if exact else (413,))
    if mode == "batch":
        bkind, n = BATCH_LIMITS[route.path]
        m = draw(st.sampled_from([n + 1, n + 1, n + 1 + draw(st.integers(0, 50))] + ([n] if bkind in ("pings", "observations") else [])))
        body = dump(batch_body(bkind, m, world, now))
        label = f"{bkind} {m}" if m <= n + 1 else f"{bkind} > {n + 1}"
        return req(body, kind="batch", limit=label, expect=(400,) if m > n else None)
    if mode == "geometry":
        gkind = draw(st.sampled_from(sorted(GEOMETRIES)))
        lat = draw(st.sampled_from([SHOP[0], 0.0, 89.9, -89.9, 51.8]))
        lng = draw(st.sampled_from([SHOP[1], 0.0, 179.95, -179.95]))
        scale = draw(st.sampled_from([0.01, 0.5, 5.0, 1e-7]))
        geom = GEOMETRIES[gkind](lat, lng, scale)
        props: dict = {"name": "g"}
        if draw(st.integers(0, 5)) == 0:  # a circle or an H3 region instead
            if draw(st.booleans()):
                geom = {"type": "Point", "coordinates": draw(st.sampled_from([[lng, lat], [0, 90], [180, 0], [Raw("NaN"), 0], [1, 2, 3], []]))}
                props["radius_m"] = draw(st.sampled_from([9.99, 10, 100_000, 100_001, 0, -1, Raw("1e309"), Raw("1" + "0" * 400), "100", None]))
            else:
                geom = None
                n = draw(st.sampled_from([0, 1, 10_000, 10_001]))
                props["h3_cells"] = draw(st.sampled_from([
                    h3_cells(min(n, 2_000)) if n <= 10_000 else ["892830828dbffff"] * n, ["nope"], [123], ["8928308280fffff", "8f2830828052d25"],
                    ["0"], [""], "892830828dbffff", [None], ["ffffffffffffffff"], [Raw("1" + "0" * 400)]]))
        repair = draw(st.booleans())
        q = "repair=true" if repair and "repair" in route.query else query
        limit = GEOMETRY_LIMITS.get(gkind) if route.path == "/v1/geofences/{id}" else None
        if route.path == "/v1/geofences/{id}":
            body = {"type": "Feature", "geometry": geom, "properties": props}
        elif route.path == "/v1/geofences/import":
            body = {"type": "FeatureCollection", "features": [{"type": "Feature", "id": "hx-1", "geometry": geom, "properties": props},
                                                            base["features"][1]]}
        elif route.path == "/v1/audience/estimate":
            body = {"geometry": geom}
        else:  # an alert's polygon
            if base.get("type") == "Feature":
                base["geometry"] = geom
            else:
                base["features"][0]["geometry"] = geom
            body = base
        expect = (400,) if limit and gkind != "vertices_9999" and geom is not None and geom.get("type") != "Point" and not repair else None
        return req(dump(body), kind=f"geometry {gkind}", query=q, limit=limit, expect=expect)
    if mode == "id":
        hid = draw(st.sampled_from(list(HOSTILE_IDS)))
        if route.id_kind is None:  # no id in the path: an id-like segment after it
            path = route.path.rstrip("/") + "/" + quote(hid, safe="")
            return Req(route, route.method, path, headers_for(role, world), dump(base) if base is not None else b"", "path id", role)
        encode = draw(st.booleans()) or must_encode(hid)
        return req(dump(base) if base is not None else b"", kind="path id", id_=hid, encode_id=encode, limit=HOSTILE_IDS[hid])
    if mode == "body_id":
        keys = [p for p in node_paths(base) if p and p[-1] in ("device_id", "fence_id", "id", "delivery_id", "campaign_id")]
        bid = draw(st.sampled_from(BODY_IDS))
        if not keys:  # no id field in this body: add one
            base = {**base, "device_id": None}
            keys = [("device_id",)]
        path = draw(st.sampled_from(keys))
        label = "body id: " + (HOSTILE_IDS.get(bid, repr(bid)[:30]) if isinstance(bid, str) else type(bid).__name__)
        return req(dump(replace_at(base, path, bid), ensure_ascii=draw(st.integers(0, 3)) > 0), kind=label, device_id=bid)
    if mode == "query":
        q, label = _query(draw, route, world)
        return req(dump(base) if base is not None else b"", kind=label, query=q)
    if mode == "auth":
        bad = draw(st.sampled_from(BAD_ROLES))
        if bad == "app_on_admin" and "app" in route.roles:
            bad = "wrong_key"
        # a wrong device secret is only refused once secrets exist; a padded key may be trimmed by the gateway
        lenient = bad == "key_padded" or (bad.startswith("app_") and "app" in route.roles)
        expect = None if not route.roles or lenient else (401, 403)
        return req(dump(base) if base is not None else b"", kind=f"auth {bad}", role=bad, expect=expect)
    if mode == "method":
        wrong = [m for m in METHODS if m not in ALLOWED[route.path]]
        m = draw(st.sampled_from(wrong))
        return req(dump(base) if base is not None else b"", kind=f"method {m}", method=m)
    if mode == "content_type":
        ct = draw(st.sampled_from(CONTENT_TYPES))
        return req(dump(base) if base is not None else b"", kind=f"content-type {ct!r}", content_type=ct)
    if mode == "junk_body":  # a body where none is expected
        return req(draw(st.one_of(st.binary(max_size=64), st.just(b"{"), st.just(dump(nested(200))))), kind="body on a bodiless route")
    raise AssertionError(mode)


def _get(obj: Any, path: tuple) -> Any:
    for p in path:
        obj = obj[p]
    return obj


# ---------------------------------------------------------------- the catalogue
WRONG_TYPES = [None, True, "x", 0, -1, 1e308, Raw("1" + "0" * 400), Raw("1e309"), Raw("NaN"), [], {}, "\ud800", "😀\u202e", nested(70)]


#: numbers JSON allows and a float may hold, but DynamoDB may not (|x| < 1e-130, > 9.99e125, > 38 digits), and worse
HUGE = ["1" + "0" * 400, "4.9e-324", "1e-200", "1" + "0" * 41, "1e308", "-1" + "0" * 400, "-1e308", "1e309", "1e126", "-1e-131",
        "NaN", "Infinity", "-0", "1.2345678901234567e-129"]


# ---------------------------------------------------------------- render budget and payload size
#: A loop of filters over a large range: 40+ s per render before the render budget.
BUDGET_LOOP = "{% for i in (1..1000) %}{% assign n = (1..20000) | sort | reverse | sort | size %}{% endfor %}"
#: The same work with sizes only the render sees.
BUDGET_HIDDEN = "{% assign m = 1000 %}{% for i in (1..m) %}{% assign n = (1..m) | sort | reverse | sort | size %}{% endfor %}x"


def budget_requests(world: World, by_path: dict[str, Route]) -> list[Req]:
    """Campaign templates at the render budget's edges and texts at the push
    payload's (README "Limits and behaviour"): refused at save with a 400
    naming the field, or accepted and, at preview, reported not rendered."""
    put, preview = by_path["PUT /v1/campaigns/{id}"], by_path["POST /v1/campaigns/{id}/preview"]
    rid = SCRATCH_IDS["campaign"][0]

    def with_message(**message: str) -> bytes:
        return dump({**CAMPAIGN, "variants": [], "message": {"title": "t", "body": "b", **message}})

    loops = "{% for i in (1..1000) %}x{% endfor %}"
    cases: list[tuple[bytes, tuple[int, ...], str]] = [
        (with_message(body=BUDGET_LOOP), (400,), "template: range (1..20000) in a loop"),
        (with_message(body="{{ (1..1001) | size }}"), (400,), "template: range of 1,001 items"),
        (with_message(body="{{ (1..1000) | size }}"), (200,), "template: range of 1,000 items"),
        (with_message(body=loops * 11), (400,), "template: 11 loops of 1,000 passes (11,000 steps)"),
        (with_message(body=loops * 10), (200,), "template: 10 loops of 1,000 passes (10,000 steps)"),
        (with_message(body="{% for i in (1..100) %}{% for j in (1..100) %}x{% endfor %}{% endfor %}"), (400,),
         "template: nested loops of 10,000 passes"),
        (with_message(title="{% tablerow i in (1..1000) %}{{ i }}{{ i }}{{ i }}{{ i }}{% endtablerow %}"), (400,),
         "template: tablerow over the budget (title)"),
        (with_message(deep_link="app://" + "東" * 700), (400,), "deep link 2,106 bytes (> 2,048)"),
        (with_message(deep_link="app://" + "a" * 1994), (200,), "deep link 2,000 bytes"),
        (with_message(title="東京😀" * 333, body="👨‍👩‍👧‍👦 مَرْحَبًا \"" * 190), (200,), "title and body at their caps in multi-byte text"),
    ]
    out = [make(put, world, id_=rid, body=b, kind="limit", expect=exp, limit=label) for b, exp, label in cases]
    # accepted, and stopped at render: the preview says so (200, rendered: false), nothing is sent
    out.append(make(put, world, id_=rid, body=with_message(body=BUDGET_HIDDEN), kind="limit", expect=(200,),
                    limit="template: over the budget at render only"))
    out.append(make(preview, world, id_=rid, body=dump({"device_id": "d1"}), kind="limit", expect=(200,),
                    limit="preview: over the budget at render → rendered: false"))
    return out


def catalogue(world: World, *, full: bool) -> list[Req]:
    """Every documented limit at its edge, every route's auth, every wrong
    method, and wrong types swept over every field of every valid body
    (``full``: all of ``WRONG_TYPES`` at each field; else two, rotating)."""
    now = time.time()
    out: list[Req] = []
    by_path = {r.name: r for r in ROUTES}

    for route in ROUTES:
        kinds = route.bodies or (None,)
        base = valid_body(kinds[0], world, now) if kinds[0] else None
        text = dump(base) if base is not None else b""
        # writes go to a scratch id, so the seeds stay as they are
        rid = SCRATCH_IDS[route.id_kind][0] if route.id_kind and route.method == "PUT" else None

        def mk(**kw) -> Req:
            return make(route, world, id_=rid, **kw)

        # auth: missing → 401, wrong → 403, app key on an admin route → 403
        if route.roles:
            out.append(mk(body=text, kind="auth none", role="none", expect=(401,), limit="missing X-Api-Key → 401"))
            out.append(mk(body=text, kind="auth wrong_key", role="wrong_key", expect=(403,), limit="wrong X-Api-Key → 403"))
            if "app" not in route.roles:
                out.append(mk(body=text, kind="auth app_on_admin", role="app_on_admin", expect=(403,),
                                limit="app key on an admin route → 403"))
        # wrong methods: 405 in the error body
        for m in METHODS:
            if m not in ALLOWED[route.path]:
                out.append(mk(body=text, kind=f"method {m}", method=m, expect=(405,), limit="wrong method → 405"))
        if route.bodies:
            out.append(mk(body=text + b" " * (MAX_BODY + 1 - len(text)), kind="oversize", expect=(413,),
                            limit="body over 5 MiB → 413"))
            out.append(mk(body=text + b" " * (MAX_BODY - len(text)), kind="oversize", limit="body exactly 5 MiB"))
            for depth, exp in ((MAX_NESTING, None), (MAX_NESTING + 1, (400,)), (100, (400,)), (100_000, (400,))):
                out.append(mk(body=deep_text(depth), kind="deep root", expect=exp, limit=f"nesting {depth} levels"))
            for raw, label in ((b"", "empty"), (b'{"a": NaN}', "NaN literal"), (b'{"a": Infinity}', "Infinity literal"),
                               (b"\xef\xbb\xbf" + text, "UTF-8 BOM"), (text + b"x", "trailing garbage"), (text[:-1], "truncated"),
                               (text.decode().encode("utf-16"), "UTF-16"), (b'{"a": "\\ud800"}', "lone surrogate escape")):
                out.append(mk(body=raw, kind=f"malformed: {label}", expect=(400,)))
        if route.path in BATCH_LIMITS:
            bkind, n = BATCH_LIMITS[route.path]
            for m in ((n, n + 1) if bkind in ("pings", "observations") else (n + 1,)):
                exp = (400,) if m > n else ((200,) if bkind == "pings" else (202,))
                out.append(mk(body=dump(batch_body(bkind, m, world, now)), kind="batch", expect=exp, limit=f"{bkind} {m}"))

    # ids at the edge of the format, on every route with an id in its path
    # (fast: each id on a few routes, in turn; full: every id on every route)
    ids = list(HOSTILE_IDS.items())
    for n, route in enumerate(r for r in ROUTES if r.id_kind):
        body = dump(valid_body(route.bodies[0], world, now)) if route.bodies else b""
        writes = route.method == "PUT"
        for hid, label in (ids if full else [ids[0]] + ids[1 + n % 4::4]):
            if hid == ID_128:
                exp = (200,) if writes else (404,)
            elif writes:
                exp = (400,)
            else:
                exp = (404,)
            out.append(make(route, world, id_=hid, body=body, kind="path id", expect=exp, limit=label, encode_id=must_encode(hid)))
        if writes:  # the 128-character id just made: remove it again
            out.append(make(by_path[f"DELETE {route.path}"], world, id_=ID_128, kind="cleanup", expect=(204,)))

    # size limits inside bodies (README "Limits and behaviour")
    put_fence, put_device, put_campaign = by_path["PUT /v1/geofences/{id}"], by_path["PUT /v1/devices/{id}"], by_path["PUT /v1/campaigns/{id}"]
    post_alerts = by_path["POST /v1/weather/alerts"]
    poly = valid_body("polygon", world, now)

    def fence(props: dict | None = None, geometry: Any = "keep") -> bytes:
        return dump({**poly, "properties": {**poly["properties"], **(props or {})}, **({} if geometry == "keep" else {"geometry": geometry})})

    edges: list[tuple[Route, bytes, tuple[int, ...], str]] = [
        (put_fence, fence({"tags": [f"t{i}" for i in range(50)]}), (200,), "fence 50 tags"),
        (put_fence, fence({"tags": [f"t{i}" for i in range(51)]}), (400,), "fence 51 tags"),
        (put_fence, fence({"metadata": {f"k{i}": "v" for i in range(32)}}), (200,), "fence 32 metadata keys"),
        (put_fence, fence({"metadata": {f"k{i}": "v" for i in range(33)}}), (400,), "fence 33 metadata keys"),
        (put_fence, fence(geometry=GEOMETRIES["vertices_9999"](*SHOP, 0.01)), (200,), "fence 9,999 vertices (≤ 10,000)"),
        (put_fence, fence(geometry=GEOMETRIES["vertices_10001"](*SHOP, 0.01)), (400,), "fence 10,001 vertices (> 10,000)"),
        (put_fence, fence(geometry=GEOMETRIES["vertices_20000"](*SHOP, 0.01)), (400,), "fence 20,000-vertex ring"),
        (put_fence, fence(geometry=GEOMETRIES["vertices_20000_open"](*SHOP, 0.01)), (400,), "fence 20,000-vertex ring, not closed"),
        (put_fence, fence(geometry=GEOMETRIES["huge_area"](*SHOP, 0.01)), (400,), "fence area > 3,000,000 km²"),
        (put_fence, fence(geometry=GEOMETRIES["antimeridian_wide"](*SHOP, 0.01)), (400,), "ring spanning > 180° of longitude"),
        (put_fence, fence(geometry=GEOMETRIES["antimeridian_cut"](*SHOP, 0.01)), (200,), "antimeridian, cut at ±180"),
        (put_fence, fence(geometry=GEOMETRIES["bowtie"](*SHOP, 0.01)), (400,), "self-intersecting ring"),
        (put_fence, fence(geometry=GEOMETRIES["hole_outside_shell"](*SHOP, 0.01)), (400,), "hole outside its shell"),
        (put_fence, fence(geometry=GEOMETRIES["ring_not_closed"](*SHOP, 0.01)), (400,), "ring not closed"),
        (put_fence, dump({"type": "Feature", "geometry": None, "properties": {"h3_cells": h3_cells(10_000)}}), (200,), "fence 10,000 H3 cells"),
        (put_fence, dump({"type": "Feature", "geometry": None, "properties": {"h3_cells": h3_cells(10_001)}}), (400,), "fence 10,001 H3 cells"),
        (put_fence, dump({"type": "Feature", "geometry": {"type": "Point", "coordinates": [SHOP[1], SHOP[0]]}, "properties": {"radius_m": 9.99}}),
         (400,), "circle radius 9.99 m (< 10)"),
        (put_fence, dump({"type": "Feature", "geometry": {"type": "Point", "coordinates": [SHOP[1], SHOP[0]]}, "properties": {"radius_m": 100_001}}),
         (400,), "circle radius 100,001 m (> 100,000)"),
        (put_device, dump({**valid_body("device", world, now), "attributes": {f"a{i}": i for i in range(64)}}), (200,), "device 64 attributes"),
        (put_device, dump({**valid_body("device", world, now), "attributes": {f"a{i}": i for i in range(65)}}), (400,), "device 65 attributes"),
        (put_device, dump({**valid_body("device", world, now), "push_token": "t" * 4097}), (400,), "push token 4,097 chars"),
        (put_campaign, dump({**CAMPAIGN, "variants": [CAMPAIGN["variants"][0] | {"name": f"v{i}"} for i in range(21)]}), (400,), "campaign 21 variants"),
        (put_campaign, dump({**CAMPAIGN, "experiment": {"arms": [{"name": f"a{i}", "weight": 1} for i in range(11)]}}), (400,), "campaign 11 arms"),
        (put_campaign, dump({**CAMPAIGN, "message": {"title": "t" * 1001, "body": "b"}}), (400,), "title template 1,001 chars"),
        (put_campaign, dump({**CAMPAIGN, "message": {"title": "t", "body": "b" * 4001}}), (400,), "body template 4,001 chars"),
        (put_campaign, dump({**CAMPAIGN, "ttl_seconds": 28 * 86400 + 1}), (400,), "ttl_seconds > 28 days"),
        # Alerts are taken in seconds whatever their area; the planner reports
        # an area over budget as ignored: area_too_large.
        (post_alerts, dump(huge_alert(world, now, [[-180, -85], [180, -85], [180, 85], [-180, 85], [-180, -85]])),
         (202,), "alert over the whole globe"),
        (post_alerts, dump(huge_alert(world, now, [[-170, 15], [-50, 15], [-50, 75], [-170, 75], [-170, 15]])),
         (202,), "alert over North America"),
        (post_alerts, dump(huge_alert(world, now, [[-122.3 + i * 1e-6, 38.4 + (i % 2) * 1e-4] for i in range(30_000)]
                                      + [[-122.2, 38.5], [-122.3, 38.4]])), (202,), "alert polygon of 30,000 vertices"),
    ]
    for route, body, exp, label in edges:
        rid = SCRATCH_IDS[route.id_kind][0] if route.id_kind else None
        out.append(make(route, world, id_=rid, body=body, kind="limit", expect=exp, limit=label))
    out.extend(budget_requests(world, by_path))
    for name, body, exp, label in budget_edges():
        route = by_path[name]
        rid = SCRATCH_IDS[route.id_kind][0] if route.id_kind else None
        out.append(make(route, world, id_=rid, body=dump(body), kind="limit", expect=exp, limit=label))
    lookup = by_path["GET /v1/geofences/lookup"]
    for q, exp, label in (("lat=90&lng=180", (200,), "lookup lat 90, lng 180"), ("lat=90.0000001&lng=0", (400,), "lookup lat > 90"),
                          ("lat=0&lng=-180.0000001", (400,), "lookup lng < -180"), ("lat=nan&lng=0", (400,), "lookup lat NaN"),
                          ("lat=1e400&lng=0", (400,), "lookup lat 1e400"), ("lng=0", (400,), "lookup lat missing")):
        out.append(make(lookup, world, query=q, kind="query", expect=exp, limit=label))
    for name in ("GET /v1/geofences", "GET /v1/campaigns", "GET /v1/deliveries"):
        for q, exp in (("limit=1000", (200,)), ("limit=1001", (400,)), ("limit=0", (400,))):
            out.append(make(by_path[name], world, query=q, kind="query", expect=exp, limit=f"list {q}"))
    out += device_budget_cases(world, by_path, now)

    # wrong types at every field of every valid body, and each field left out
    # (fast: one of these per field, in turn; full: all of them at every field)
    values = WRONG_TYPES + [DROP]
    k = 0
    for route in ROUTES:
        rid = SCRATCH_IDS[route.id_kind][0] if route.id_kind and route.method == "PUT" else None
        for bkind in route.bodies:
            base = valid_body(bkind, world, now)
            for path in node_paths(base):
                for v in (values if full else [values[k % len(values)]]):
                    kind = f"field left out: {bkind}" if v is DROP else f"wrong type: {bkind}"
                    req = make(route, world, id_=rid, body=dump(replace_at(base, path, v)), kind=kind)
                    req.field = f"{bkind}.{path_label(path)}"
                    out.append(req)
                k += 1
            # huge and non-finite numbers at every numeric field (fast: 10**400 only)
            for path in node_paths(base):
                leaf = _get(base, path)
                if isinstance(leaf, bool) or not isinstance(leaf, (int, float)):
                    continue
                for text in (HUGE if full else [HUGE[k % 4]]):
                    k += 1
                    req = make(route, world, id_=rid, body=dump(replace_at(base, path, Raw(text))), kind=f"huge number: {bkind}")
                    req.field = f"{bkind}.{path_label(path)}"
                    out.append(req)
    out.extend(error_shape_cases(world, now))
    out.extend(cap_xml_cases(world, now))
    return out


# ---------------------------------------------------------------- the error contract
#: Paths no route has: 404 in the error body (as the deployed API's gateway responses answer).
UNKNOWN_PATHS = (("GET", "/v1/nope"), ("POST", "/v2/pings"), ("DELETE", "/v1/geofences/a/b"), ("GET", "/"),
                 ("PUT", "/v1/devices/d1/extra"))


def error_shape_cases(world: World, now: float) -> list[Req]:
    """The error contract at its edges: JSON, GeoJSON, no Content-Type and
    curl's form default read alike, any other type a 415; unknown paths a
    404; an unknown field a 400 in every strict body (pings, events,
    devices, previews, estimates, conditions); conversion values bounded;
    a 4.8 MB body holding one 2.4-million-element array refused from its bytes."""
    by_path = {r.name: r for r in ROUTES}
    out: list[Req] = []
    for route in ROUTES:
        if not route.bodies:
            continue
        text = dump(valid_body(route.bodies[0], world, now))
        rid = SCRATCH_IDS[route.id_kind][0] if route.id_kind and route.method == "PUT" else None
        for ct in ("text/plain", "application/xml", "application/jsonx"):
            if route.name == "POST /v1/weather/alerts" and ct == "application/xml":
                continue  # the alerts route reads XML as CAP: cap_xml_cases
            out.append(make(route, world, id_=rid, body=text, content_type=ct, kind="content-type not JSON", expect=(415,),
                            limit="Content-Type not JSON → 415"))
    alerts, pings, events = by_path["POST /v1/weather/alerts"], by_path["POST /v1/pings"], by_path["POST /v1/events"]
    for ct in ("application/geo+json", None, "application/x-www-form-urlencoded"):
        out.append(make(alerts, world, body=dump(valid_body("alert", world, now)), content_type=ct, kind="content-type JSON alike",
                        expect=(202,), limit=f"alert as {ct or 'no Content-Type'} → 202"))
    out.append(make(pings, world, body=dump(valid_body("ping", world, now)), content_type=None, kind="content-type JSON alike",
                    expect=(200,), limit="ping with no Content-Type → 200"))
    for method, path in UNKNOWN_PATHS:
        req = make(by_path["GET /v1/health"], world, kind="unknown path", method=method, expect=(404,), limit="unknown path → 404")
        req.path = path
        out.append(req)
    ping = valid_body("ping", world, now)
    unknown: list[tuple[str, Any, str]] = [
        ("POST /v1/pings", {"pings": [dict(ping), dict(ping), {**ping, "ts": 5}]}, "ping field 'ts'"),
        ("POST /v1/pings", {**ping, "heading": 90}, "ping field 'heading'"),
        ("POST /v1/events", {**valid_body("conversion", world, now), "amount": 12}, "event field 'amount'"),
        ("PUT /v1/devices/{id}", {**valid_body("device", world, now), "locale": "es"}, "device field 'locale'"),
        ("PUT /v1/devices/{id}", {**valid_body("device", world, now), "consent": {"push": True, "email": True}}, "device consent.email"),
        ("POST /v1/audience/estimate", {"fence_id": "zone", "radius": 5}, "estimate field 'radius'"),
        ("POST /v1/campaigns/{id}/preview", {**valid_body("preview", world, now), "fence": "x"}, "preview field 'fence'"),
        ("POST /v1/weather/conditions", {**valid_body("conditions", world, now), "source": "x"}, "conditions field 'source'"),
    ]
    for name, body, label in unknown:
        route = by_path[name]
        rid = SCRATCH_IDS[route.id_kind][0] if route.id_kind and route.method == "PUT" else None
        out.append(make(route, world, id_=rid, body=dump(body), kind="unknown field", expect=(400,), limit=f"unknown {label} → 400"))
    for value, exp in ((1_000_000, (202,)), (1_000_000.5, (400,)), (1e9, (400,)), (-1, (400,))):
        body = {**valid_body("conversion", world, now), "value": value}
        out.append(make(events, world, body=dump(body), kind="conversion value", expect=exp, limit=f"conversion value {value:,}"))
    huge = b'{"pings": [' + b",".join([b"0"] * 2_400_000) + b"]}"
    out.append(make(pings, world, body=huge, kind="huge array", expect=(400,), limit="2.4M-element array (4.8 MB) → 400"))
    return out


# ---------------------------------------------------------------- device budgets, page tokens
def forged_page_token(last_ck: str, index: str = "d") -> str:
    """A listing token with a valid checksum (its key is in the public
    source) around any sort key: the server must check every value."""
    import hashlib

    from chalicelib.store.schema import _TOKEN_MAC

    body = json.dumps({"i": index, "k": last_ck}, separators=(",", ":")).encode()
    mac = hashlib.blake2b(body, key=_TOKEN_MAC, digest_size=6).digest()
    return base64.urlsafe_b64encode(mac + body).decode().rstrip("=")


def device_budget_cases(world: World, by_path: dict[str, Route], now: float) -> list[Req]:
    """Stored-byte budgets of a device profile, forged page tokens and
    hostile listing values, and device ids an app key must not be able to
    tell apart (README "Limits and behaviour")."""
    out: list[Req] = []
    put_device, delete_device = by_path["PUT /v1/devices/{id}"], by_path["DELETE /v1/devices/{id}"]
    device = valid_body("device", world, now)
    for char, label in (("a", "ASCII"), ("é", "2-byte"), ("中", "3-byte"), ("😀", "4-byte")):
        attrs = {f"{char}{i:02d}" + char * 61: char * 1024 for i in range(64)}
        exp = (200,) if char == "a" else (413,)
        out.append(make(put_device, world, id_=SCRATCH_IDS["device"][1], body=dump({**device, "attributes": attrs}, ensure_ascii=False),
                        kind="limit", expect=exp, limit=f"device 64 attributes of 64 + 1,024 {label} characters"))
    out.append(make(put_device, world, id_=SCRATCH_IDS["device"][1], kind="cleanup", body=b"", method="DELETE", expect=(204,)))
    deliveries = by_path["GET /v1/deliveries"]
    tokens = {
        "checksum ok, 400-digit time": forged_page_token("9" * 400 + ".000000#dl_x"),
        "checksum ok, 11-digit time": forged_page_token("99999999999.000000#dl_x"),
        "checksum ok, other listing": forged_page_token("1790000000.000000#dl_x", "c"),
        "checksum ok, not a sort key": forged_page_token("x"),
        "garbage": "%%%", "huge": "A" * 10_000, "empty-looking": "=",
    }
    for label, token in tokens.items():
        out.append(make(deliveries, world, query=urlencode({"next_token": token}), kind="query", expect=(400,),
                        limit=f"next_token: {label}"))
    for q, label in (("campaign_id=" + "c" * 129, "campaign_id 129 chars"), ("device_id=%F0%9F%98%80", "device_id emoji"),
                     ("status=" + "s" * 10_000, "status 10,000 chars"), ("limit=" + "9" * 5000, "limit 5,000 digits"),
                     ("limit=1e3", "limit 1e3"), ("limit=-0", "limit -0")):
        out.append(make(deliveries, world, query=q, kind="query", expect=(400,), limit=f"deliveries {label}"))
    # an app key cannot tell an unknown device id from another device's: 403 alike
    for device_id in ("hx-ghost", "d2"):
        out.append(make(delete_device, world, id_=device_id, role="app_bad_secret", kind="probe", expect=(403,),
                        limit=f"app key, DELETE {'unknown' if device_id == 'hx-ghost' else 'foreign'} device → 403"))
    return out


# ---------------------------------------------------------------- judging
def _account_region() -> tuple[str, str]:
    from moto.core import DEFAULT_ACCOUNT_ID

    return DEFAULT_ACCOUNT_ID, os.environ.get("AWS_DEFAULT_REGION", "us-east-1")


def snapshot() -> dict:
    """Every DynamoDB item of every table and every SNS endpoint's
    attributes, read from moto's memory (no API calls; ``table.items``
    directly, as ``all_items()`` sorts)."""
    from moto.dynamodb.models import dynamodb_backends
    from moto.sns.models import sns_backends

    account, region = _account_region()
    out: dict[str, Any] = {}
    for name, table in dynamodb_backends[account][region].tables.items():
        items = {}
        for part in table.items.values():
            for item in (part.values() if table.range_key_attr else (part,)):
                key = (item.hash_key.value if item.hash_key else None, item.range_key.value if item.range_key else None)
                items[key] = item.to_json()["Attributes"]
        out[name] = items
    out["sns:endpoints"] = {arn: dict(ep.attributes) for arn, ep in sns_backends[account][region].platform_endpoints.items()}
    return out


def diff(before: dict, after: dict) -> str:
    """What changed, briefly (tables, keys added / removed / changed)."""
    parts = []
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name, {}), after.get(name, {})
        if a == b:
            continue
        added = [k for k in a if k not in b]
        removed = [k for k in b if k not in a]
        changed = [k for k in a if k in b and a[k] != b[k]]
        parts.append(f"{name}: +{len(added)} -{len(removed)} ~{len(changed)} e.g. {(added + removed + changed)[:3]}")
    return "; ".join(parts)


def _spec_error(body: Any) -> bool:
    """``{"error": {"code": str, "message": str, "field": str | null}}``
    (and, for several problems at once, ``errors``: a list of them)."""
    if not isinstance(body, dict) or not set(body) <= {"error", "errors"} or not isinstance(body.get("error"), dict):
        return False
    if "errors" in body and not (isinstance(body["errors"], list) and len(body["errors"]) > 1):
        return False
    err = body["error"]
    return (set(err) >= {"code", "message", "field"} and isinstance(err["code"], str) and bool(err["code"])
            and isinstance(err["message"], str) and bool(err["message"]) and (err["field"] is None or isinstance(err["field"], str)))


#: DynamoDB and SNS calls that change nothing (any other action counts as a write)
READ_ACTIONS = frozenset({
    "GetItem", "BatchGetItem", "Query", "Scan", "DescribeTable", "ListTables", "TransactGetItems", "DescribeTimeToLive",
    "DescribeContinuousBackups", "ListTagsOfResource", "DescribeEndpoints", "GetEndpointAttributes",
    "ListEndpointsByPlatformApplication", "GetPlatformApplicationAttributes", "ListPlatformApplications", "ListTopics",
    "GetTopicAttributes", "ListSubscriptions", "ListSubscriptionsByTopic", "GetSubscriptionAttributes",
})


class WriteCalls:
    """Counts DynamoDB and SNS API calls that may write, as moto serves them
    (installed on moto's response handlers; :meth:`remove` restores them)."""

    def __init__(self) -> None:
        from moto.dynamodb.responses import DynamoHandler
        from moto.sns.responses import SNSResponse

        self.count = 0
        self.actions: Counter = Counter()
        self._saved = []
        for cls in (DynamoHandler, SNSResponse):
            original = cls.__dict__.get("call_action")
            self._saved.append((cls, original))
            base = original or cls.call_action

            def call_action(handler, _base=base):
                action = handler._get_action()
                if action not in READ_ACTIONS:
                    self.count += 1
                    self.actions[action] += 1
                return _base(handler)

            cls.call_action = call_action

    def remove(self) -> None:
        for cls, original in self._saved:
            if original is None:
                del cls.call_action
            else:
                cls.call_action = original


class _Errors(logging.Handler):
    """Keeps the tracebacks the app logs (its 500 path logs one)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append("".join(traceback.format_exception(*record.exc_info))[-1500:])


@dataclass
class Tally:
    requests: int = 0
    by_route: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    route_statuses: dict = field(default_factory=lambda: defaultdict(Counter))
    kinds: Counter = field(default_factory=Counter)
    limits: dict = field(default_factory=lambda: defaultdict(Counter))
    fields: set = field(default_factory=set)
    rejected: int = 0
    snapshots_compared: int = 0
    rejected_write_calls: int = 0  # DynamoDB/SNS write calls made while handling a rejected request
    snapshots_skipped: int = 0  # after a 2xx with no write call: the tables are as they were
    rejected_writers: Counter = field(default_factory=Counter)
    bytes_sent: int = 0
    largest_body: int = 0
    server_errors: list = field(default_factory=list)
    partial_writes: list = field(default_factory=list)
    bad_error_bodies: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    seconds: float = 0.0
    seconds_app: float = 0.0
    seconds_snapshot: float = 0.0
    slowest: dict = field(default_factory=Counter)  # kind → seconds in the app
    #: the slowest single requests: (seconds, route, kind), longest first
    slowest_requests: list = field(default_factory=list)
    route_max: dict = field(default_factory=dict)  # route → the longest answer's seconds
    #: requests whose answer took longer than this are failures (None: not judged)
    slow_limit: float | None = None
    too_slow: list = field(default_factory=list)

    @property
    def failures(self) -> list:
        return self.server_errors + self.partial_writes + self.bad_error_bodies + self.unexpected + self.too_slow

    def timed(self, req: "Req", seconds: float) -> None:
        """One answer's wall time: per route, the ten slowest, over the limit."""
        route = req.route.name
        self.route_max[route] = max(self.route_max.get(route, 0.0), seconds)
        self.slowest_requests.append((seconds, route, req.kind))
        if len(self.slowest_requests) > 40:
            self.slowest_requests.sort(reverse=True)
            del self.slowest_requests[10:]
        if self.slow_limit is not None and seconds > self.slow_limit:
            self.too_slow.append(f"{seconds:.2f} s (limit {self.slow_limit:g} s) ← {req.describe(300)}")

    def top(self, n: int = 10) -> list:
        return sorted(self.slowest_requests, reverse=True)[:n]

    def to_json(self) -> dict:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 1),
            "routes": {r: {"requests": n, "statuses": dict(sorted(self.route_statuses[r].items()))} for r, n in sorted(self.by_route.items())},
            "statuses": dict(sorted(self.statuses.items())),
            "server_errors_5xx": len(self.server_errors),
            "partial_writes": len(self.partial_writes),
            "bad_error_bodies": len(self.bad_error_bodies),
            "unexpected_status": len(self.unexpected),
            "rejected_4xx": self.rejected,
            "snapshots_compared": self.snapshots_compared,
            "write_calls_by_rejected_requests": self.rejected_write_calls,
            "rejected_requests_with_write_calls": dict(self.rejected_writers),
            "snapshots_skipped_after_reads": self.snapshots_skipped,
            "limits": {k: dict(v) for k, v in sorted(self.limits.items())},
            "attacks": dict(self.categories().most_common()),
            "fields_swept": len(self.fields),
            "bytes_sent": self.bytes_sent,
            "largest_body": self.largest_body,
            "slowest_answer_seconds": round(self.top(1)[0][0], 3) if self.slowest_requests else None,
            "slowest_requests": [{"seconds": round(sec, 3), "route": r, "kind": k} for sec, r, k in self.top()],
            "slowest_by_route": {r: round(v, 3) for r, v in sorted(self.route_max.items())},
            "answers_over_limit": len(self.too_slow),
            "failures": [f for f in self.failures][:50],
        }

    def categories(self) -> Counter:
        """Requests per kind of attack (the kind's first words)."""
        out: Counter = Counter()
        for kind, n in self.kinds.items():
            out[kind.split(":")[0].split(" ")[0] if not kind.startswith(("field left", "wrong type", "path id", "body id"))
                else kind.split(":")[0]] += n
        return out

    def report(self) -> str:
        lines = [f"hostile input: {self.requests:,} requests in {self.seconds:.1f} s "
                 f"({len(self.kinds)} distinct attacks, {len(self.fields)} body fields swept, {self.bytes_sent / 1e6:,.1f} MB sent, "
                 f"largest body {self.largest_body:,} bytes)"]
        lines.append("attacks: " + ", ".join(f"{k} {v:,}" for k, v in self.categories().most_common()))
        lines.append(f"time in the app {self.seconds_app:.1f} s, in table snapshots {self.seconds_snapshot:.1f} s; slowest kinds: "
                     + ", ".join(f"{k} {v:.1f} s" for k, v in self.slowest.most_common(6)))
        if self.slowest_requests:
            sec, route, kind = self.top(1)[0]
            lines.append(f"slowest answer {sec:.2f} s ({route}, {kind})"
                         + (f"; over {self.slow_limit:g} s: {len(self.too_slow)}" if self.slow_limit is not None else "")
                         + "; next: " + ", ".join(f"{s_:.2f} s {r} ({k})" for s_, r, k in self.top(6)[1:]))
        lines.append(f"{'route':42} {'requests':>8}  {'slowest':>8}  statuses")
        for r, n in sorted(self.by_route.items()):
            st_ = " ".join(f"{s}:{c}" for s, c in sorted(self.route_statuses[r].items()))
            lines.append(f"{r:42} {n:8,}  {self.route_max.get(r, 0.0):7.2f}s  {st_}")
        lines.append("statuses: " + " ".join(f"{s}:{c:,}" for s, c in sorted(self.statuses.items())))
        writes = (f"partial writes: {len(self.partial_writes)} (of {self.rejected:,} rejected requests, each compared item by item; "
                  f"write calls they made: {self.rejected_write_calls})" if self.snapshots_compared
                  else f"partial writes: not judged in this run ({self.rejected:,} rejected requests; the in-process run compares the tables)")
        lines.append(f"5xx: {len(self.server_errors)}   {writes}   "
                     f"4xx without the documented error body: {len(self.bad_error_bodies)}   unexpected status at a limit: {len(self.unexpected)}")
        if self.rejected_writers:
            lines.append("rejected requests that made write calls (conditional writes that failed, say; their tables compared equal): "
                         + ", ".join(f"{k} ×{v}" for k, v in self.rejected_writers.most_common()))
        lines.append("limits exercised (label: status ×count):")
        for label, c in sorted(self.limits.items()):
            lines.append(f"  {label:48} " + " ".join(f"{s}×{n}" for s, n in sorted(c.items())))
        for f in self.failures[:20]:
            lines.append(f"FAIL {f}")
        return "\n".join(lines)


class Harness:
    """Sends requests through ``client`` and judges each one (see module docs)."""

    def __init__(self, client, world: World | None = None, *, judge_writes: bool = True) -> None:
        """``judge_writes=False``: the tables are not compared (the app's
        emulator is another process, as on the local stack); statuses,
        error bodies and answer times are still judged."""
        self.client = client
        self.world = world or World()
        self.tally = Tally()
        self._errors = _Errors()
        logging.getLogger("hexcast.api").addHandler(self._errors)  # the 500 path logs there
        self.judge_writes = judge_writes
        self.writes = WriteCalls() if judge_writes else None
        self.before: dict | None = None
        self._level: int | None = None
        self.verbose = False

    def close(self) -> None:
        if self.writes is not None:
            self.writes.remove()
        logging.getLogger("hexcast.api").removeHandler(self._errors)
        if self._level is not None:
            logging.getLogger("hexcast").setLevel(self._level)

    def quiet(self) -> None:
        """Only errors from the app's loggers while thousands of bad requests
        go by (its warnings are expected here, and printing them is slow)."""
        self._level = logging.getLogger("hexcast").level
        logging.getLogger("hexcast").setLevel(logging.ERROR)

    # -- seeding
    def call(self, method: str, path: str, payload: Any = None, role: str = "admin", device_id: str | None = None):
        body = dump(payload) if payload is not None else b""
        return self.client.http.request(method, path, headers=headers_for(role, self.world, device_id), body=body)

    def seed(self) -> None:
        """Fences, devices (one inside the shop with a sent delivery), campaigns,
        conditions and a processed alert: a partial write anywhere would show."""
        now = time.time()
        w = self.world
        for fid, kind in (("shop", "circle"), ("zone", "polygon"), ("cells", "h3")):
            r = self.call("PUT", f"/v1/geofences/{fid}", valid_body(kind, w, now))
            assert r.status_code == 200, r.body
        for did, consent in (("d1", True), ("d2", False)):
            r = self.call("PUT", f"/v1/devices/{did}", {**valid_body("device", w, now), "push_token": f"tok-{did}",
                                                        "consent": {"push": True, "location": consent}})
            assert r.status_code == 200, r.body
            self._learn("PUT", f"/v1/devices/{did}", r)
        for cid, body in (("c1", {**CAMPAIGN, "quiet_hours": None, "experiment": None, "trigger": {"type": "geofence_enter", "fence_ids": ["shop"]}}),
                          ("cw", WEATHER_CAMPAIGN)):
            r = self.call("PUT", f"/v1/campaigns/{cid}", body)
            assert r.status_code == 200, r.body
        t0 = now - 900
        for i, (lat, lng) in enumerate((FAR, SHOP)):
            r = self.call("POST", "/v1/pings", {"device_id": "d1", "lat": lat, "lng": lng, "accuracy_m": 5, "timestamp": t0 + i})
            assert r.status_code == 200, r.body
        deliveries = json.loads(r.body)["results"][0]["deliveries"]
        assert deliveries, r.body
        w.delivery_id = deliveries[0]
        for route, kind in (("/v1/weather/conditions", "conditions"), ("/v1/weather/alerts", "alert")):
            r = self.call("POST", route, valid_body(kind, w, now))
            assert r.status_code == 202, r.body
        self.quiet()
        self.before = snapshot() if self.judge_writes else None

    def _learn(self, method: str, path: str, r) -> None:
        """Secrets of registered devices; page tokens of lists."""
        try:
            body = json.loads(r.body) if r.body else None
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        if method == "PUT" and path.startswith("/v1/devices/") and body.get("device_secret"):
            self.world.secrets[body.get("device_id")] = body["device_secret"]
        tok = body.get("next_token")
        if isinstance(tok, str) and method == "GET":
            toks = self.world.tokens[path.split("?")[0]]
            if tok not in toks:
                toks.append(tok)
                del toks[:-8]

    # -- one request
    def send(self, req: Req) -> int:
        t = self.tally
        self._errors.records.clear()
        t0 = time.perf_counter()
        w0 = self.writes.count if self.writes is not None else 0
        r = self.client.http.request(req.method, req.path, headers=req.headers, body=req.body)
        wrote = self.writes is not None and self.writes.count != w0
        t1 = time.perf_counter()
        t.seconds_app += t1 - t0
        t.timed(req, t1 - t0)
        t.slowest[req.kind.split(":")[0].split(" at ")[0]] += t1 - t0
        status = r.status_code
        t.requests += 1
        t.by_route[req.route.name] += 1
        t.statuses[status] += 1
        t.route_statuses[req.route.name][status] += 1
        t.kinds[req.kind] += 1
        t.bytes_sent += len(req.body)
        t.largest_body = max(t.largest_body, len(req.body))
        if req.limit:
            t.limits[req.limit][status] += 1
        if req.field:
            t.fields.add(req.field)
        try:
            body = json.loads(r.body) if r.body else None
        except ValueError:
            body = r.body[:200]
        t2 = time.perf_counter()
        if not self.judge_writes:
            after = None
        elif status < 400 and not wrote and self.before is not None:
            after = self.before  # no write call: nothing to snapshot
            t.snapshots_skipped += 1
        else:
            after = snapshot()
        t.seconds_snapshot += time.perf_counter() - t2
        if status >= 500:
            tb = self._errors.records[-1] if self._errors.records else ""
            wrote = diff(self.before, after) if self.before is not None and after != self.before else "nothing"
            t.server_errors.append(f"{status} {body!r} (wrote {wrote}) ← {req.describe()}\n{tb}")
        elif status >= 400:
            t.rejected += 1
            t.snapshots_compared += self.judge_writes
            if wrote and self.writes is not None:
                t.rejected_write_calls += self.writes.count - w0
                t.rejected_writers[f"{req.route.name} → {status}"] += 1
            if self.before is not None and after != self.before:
                t.partial_writes.append(f"{status} wrote {diff(self.before, after)} ← {req.describe()}")
            if not _spec_error(body) and not (req.method == "HEAD" and not r.body):
                # none excepted (the router's 404/405/415 have the body too), but
                # over HTTP an answer to HEAD has no body at all
                t.bad_error_bodies.append(f"{status} {body!r} ← {req.describe()}")
        else:
            self._learn(req.method, req.path, r)
        if req.expect is not None:
            allowed = set(req.expect) | ({401, 403} if req.role.startswith("app") else set())
            if max((len(str(v)) for v in req.headers.values()), default=0) > 10_240:
                allowed.add(431)  # over HTTP: a header over the gateway's limit is refused before the app
            if status not in allowed:
                t.unexpected.append(f"{status} (expected {sorted(allowed)}) {str(body)[:300]} ← {req.describe(300)}")
        self.before = after
        if self.verbose:
            self.progress()
        return status

    def progress(self) -> None:
        t = self.tally
        if t.requests % 1000 == 0:
            rows = sum(len(v) for v in (self.before or {}).values())
            print(f"  … {t.requests:,} requests, {t.seconds_app:.0f} s in the app, {t.seconds_snapshot:.0f} s in snapshots "
                  f"({rows:,} rows), 5xx {len(t.server_errors)}, partial writes {len(t.partial_writes)}", file=sys.stderr, flush=True)

    def run(self, reqs) -> None:
        start = time.perf_counter()
        for req in reqs:
            self.send(req)
        self.tally.seconds += time.perf_counter() - start


# ---------------------------------------------------------------- CAP 1.2 XML on the alerts route
_CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"


def _cap_alert(alert_id: str, now: float, *, status: str = "Actual", area: str = "") -> bytes:
    lat, lng = SHOP
    area = area or (f"<area><areaDesc>shop</areaDesc><polygon>{lat - 0.01},{lng - 0.01} {lat - 0.01},{lng + 0.01} "
                    f"{lat + 0.01},{lng + 0.01} {lat - 0.01},{lng - 0.01}</polygon></area>")
    return (f'<?xml version="1.0" encoding="UTF-8"?><alert xmlns="{_CAP_NS}"><identifier>{alert_id}</identifier>'
            f"<sender>hostile@example.org</sender><sent>{_iso(now - 60)}</sent><status>{status}</status>"
            f"<msgType>Alert</msgType><scope>Public</scope><info><event>Storm</event><urgency>Immediate</urgency>"
            f"<severity>Severe</severity><certainty>Observed</certainty><expires>{_iso(now + 3600)}</expires>"
            f"{area}</info></alert>").encode()


def cap_xml_cases(world: World, now: float) -> list[Req]:
    """CAP 1.2 documents (README "CAP 1.2 alerts"): a valid one taken, XML
    attacks (entity bombs, external entities and DTDs) and broken XML a 400
    naming ``body``, nesting over 32 a 400, over 5 MiB a 413, degenerate
    areas answered (never a 500)."""
    alerts = {r.name: r for r in ROUTES}["POST /v1/weather/alerts"]
    tag = int(now)
    bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
            + f']><alert xmlns="{_CAP_NS}"><identifier>&lol9;</identifier></alert>').encode()
    cases: list[tuple[bytes, tuple[int, ...], str]] = [
        (_cap_alert(f"hx-cap-{tag}", now), (202,), "a CAP alert → 202"),
        (bomb, (400,), "billion laughs → 400"),
        (f'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><alert xmlns="{_CAP_NS}">&x;</alert>'.encode(), (400,),
         "external entity → 400"),
        (f'<!DOCTYPE alert SYSTEM "http://127.0.0.1:9/x.dtd"><alert xmlns="{_CAP_NS}"/>'.encode(), (400,), "external DTD → 400"),
        (b"<a>" * 33 + b"</a>" * 33, (400,), "XML nested 33 deep → 400"),
        (b"<alert", (400,), "truncated XML → 400"),
        (dump(valid_body("alert", world, now)), (400,), "JSON sent as CAP XML → 400"),
        (b"<a>" + b" " * MAX_BODY + b"</a>", (413,), "CAP body over 5 MiB → 413"),
        (_cap_alert(f"hx-cap-test-{tag}", now, status="Test"), (202,), "status Test → 202 ignored"),
        (_cap_alert(f"hx-cap-degenerate-{tag}", now, area="<area><areaDesc>x</areaDesc><polygon>1,1 1,1 1,1 1,1</polygon>"
                    "<circle>91,0 5</circle><geocode><valueName>EMMA_ID</valueName><value>XX999</value></geocode></area>"),
         (202,), "degenerate CAP area → 202 (unresolved)"),
        (_cap_alert(f"hx-cap-antimeridian-{tag}", now, area="<area><areaDesc>x</areaDesc>"
                    "<polygon>60,170 60,-170 65,-170 65,170 60,170</polygon></area>"), (202,), "antimeridian CAP polygon → 202"),
    ]
    out = []
    for ct in ("application/cap+xml", "application/xml"):
        for body, expect, limit in cases:
            req = make(alerts, world, body=body, content_type=ct, kind="CAP XML", expect=expect, limit=f"{limit} ({ct})")
            out.append(req)
    return out
