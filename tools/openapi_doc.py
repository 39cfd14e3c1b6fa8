"""The OpenAPI 3.1 document of the HTTP API, built from the code: every
route (method, path, key, status), its parameters, request body and answers,
with the schemas of :mod:`tools.openapi_schemas` and
:mod:`tools.openapi_campaigns`.

The result is committed as ``chalicelib/data/openapi.json`` (served at
``GET /v1/openapi.json``, so the Lambda never builds it):

    python -m tools.openapi_doc           # rewrite the file
    python -m tools.openapi_doc --check   # exit 1 when the file is stale

``tests/unit/test_openapi.py`` fails when the file differs from what this
module builds, when a route is missing from it (or it names one that does
not exist), and when the README's route table disagrees with it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.api.common import MAX_BODY_BYTES, MAX_NESTING
from chalicelib.auth import ADMIN, APP, DEVICE_SECRET_HEADER
from chalicelib.services.engagement import STATUSES
from tools.openapi_campaigns import campaign_schemas
from tools.openapi_schemas import ID_PATTERN, Schema, base_schemas, ref

DOC_PATH = Path(__file__).resolve().parent.parent / "chalicelib" / "data" / "openapi.json"

#: Device-secret use of an app-key call: none, always, or only for a device that exists already.
NO_SECRET, SECRET, SECRET_IF_EXISTS = "none", "required", "if_exists"

_ERRORS = {
    400: ("BadRequest", "Invalid input: `field` names the offending field (invalid_input, invalid_geometry)."),
    401: ("Unauthorized", "No `X-Api-Key` header."),
    403: ("Forbidden", "Unknown key, a key of another role, or (app key) a missing or wrong `X-Device-Secret` / another device."),
    404: ("NotFound", "The id in the path or the body names nothing (a malformed id is a 404 too on reads and deletes)."),
    409: ("Conflict", "Changed concurrently by another request; retry."),
    413: ("PayloadTooLarge", f"The body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB."),
    415: ("UnsupportedMediaType", "The body is not sent as `application/json`."),
    503: ("Unavailable", "A dependency (DynamoDB, SNS) is throttling or unavailable; retry with backoff."),
}


@dataclass(frozen=True)
class Op:
    """One route as the document describes it."""

    method: str
    path: str
    op_id: str
    tag: str
    summary: str
    roles: tuple[str, ...] = (ADMIN,)
    secret: str = NO_SECRET
    body: str | None = None
    status: int = 200
    answer: str | None = None
    errors: tuple[int, ...] = ()
    query: tuple[str, ...] = ()
    description: str = ""


_FENCE, _DEVICE, _CAMPAIGN = "fence_id", "device_id", "campaign_id"
_STORE = (503,)
_BODY = (400, 413, 415)

OPS: tuple[Op, ...] = (
    Op("get", "/v1/health", "health", "meta", "Health check", roles=(), answer="Health"),
    Op("get", "/v1/openapi.json", "openapi", "meta", "The API's OpenAPI 3.1 document", roles=(), answer="OpenApiDocument"),
    # geofences
    Op("get", "/v1/geofences/lookup", "lookupGeofences", "geofences", "Fences containing a point",
       answer="LookupResult", errors=(400, *_STORE), query=("lat", "lng"),
       description="A point on a boundary is inside; circles are geodesic."),
    Op("post", "/v1/geofences/import", "importGeofences", "geofences", "Import a FeatureCollection",
       body="GeofenceImport", answer="GeofenceImportResult", errors=(*_BODY, *_STORE), query=("repair",),
       description="Each feature is stored or rejected on its own (rejected: index, id, error). At most 500 features."),
    Op("get", "/v1/geofences", "listGeofences", "geofences", "List fences (by id; optionally one tag)",
       answer="GeofencePage", errors=(400, *_STORE), query=("tag", "limit", "fence_next_token")),
    Op("put", "/v1/geofences/{fence_id}", "putGeofence", "geofences", "Create or replace a fence",
       body="GeofenceInput", answer="GeofenceStored", errors=(*_BODY, 409, *_STORE), query=("repair",),
       description="Validated, covered with H3 cells and stored as the next version."),
    Op("get", "/v1/geofences/{fence_id}", "getGeofence", "geofences", "A fence as stored",
       answer="Geofence", errors=(404, *_STORE)),
    Op("delete", "/v1/geofences/{fence_id}", "deleteGeofence", "geofences", "Delete a fence", status=204,
       errors=(404, *_STORE)),
    # devices and pings
    Op("put", "/v1/devices/{device_id}", "putDevice", "devices", "Register or update a device",
       roles=(ADMIN, APP), secret=SECRET_IF_EXISTS, body="DeviceRegistration", answer="DeviceRegistered",
       errors=(*_BODY, 409, 503),
       description="A new id answers its `device_secret` once; updating an existing device with the app key needs it "
       f"in `{DEVICE_SECRET_HEADER}`. Creates or refreshes the SNS endpoint (503 when SNS fails: retry)."),
    Op("get", "/v1/devices/{device_id}", "getDevice", "devices", "A device's profile, consent, push state and last location time",
       answer="Device", errors=(404, *_STORE)),
    Op("delete", "/v1/devices/{device_id}", "deleteDevice", "devices", "Erase a device (profile, location, SNS endpoint)",
       roles=(ADMIN, APP), secret=SECRET, status=204, errors=(404, 409, *_STORE)),
    Op("post", "/v1/pings", "postPings", "devices", "Post a location ping or a batch of pings",
       roles=(ADMIN, APP), secret=SECRET, body="PingsInput", answer="PingResults", errors=(*_BODY, 404, *_STORE),
       description="A single ping for an unknown device is a 404, for one without location consent a 403 "
       "(field consent.location); in a batch those pings answer accepted: false with the reason. A malformed ping "
       "rejects the whole request (400 naming pings[i].field) and nothing is applied."),
    # campaigns and engagement
    Op("get", "/v1/campaigns", "listCampaigns", "campaigns", "List campaigns (by id)",
       answer="CampaignPage", errors=(400, *_STORE), query=("limit", "campaign_next_token")),
    Op("put", "/v1/campaigns/{campaign_id}", "putCampaign", "campaigns", "Create or replace a campaign",
       body="CampaignInput", answer="SavedCampaign", errors=(*_BODY, *_STORE),
       description="Validated and its Liquid templates compiled. Template errors are one 400: error is the first, "
       "errors lists every one with its field and line. Variables nothing defines are warnings in the answer, never errors."),
    Op("get", "/v1/campaigns/{campaign_id}", "getCampaign", "campaigns", "A campaign (canonical form)",
       answer="Campaign", errors=(404, *_STORE)),
    Op("delete", "/v1/campaigns/{campaign_id}", "deleteCampaign", "campaigns", "Delete a campaign", status=204,
       errors=(404, *_STORE)),
    Op("post", "/v1/campaigns/{campaign_id}/preview", "previewCampaign", "campaigns",
       "Render the message one device would get (never claimed or sent)",
       body="PreviewRequest", answer="Preview", errors=(*_BODY, 404, *_STORE)),
    Op("get", "/v1/campaigns/{campaign_id}/stats", "campaignStats", "campaigns", "Counts from the delivery records",
       answer="CampaignStats", errors=(404, *_STORE)),
    Op("get", "/v1/deliveries", "listDeliveries", "campaigns", "The delivery log, newest first",
       answer="DeliveryPage", errors=(400, *_STORE), query=("campaign_id", "device_id", "status", "limit", "delivery_next_token")),
    Op("post", "/v1/events", "postEvent", "campaigns", "Report a push opened or a conversion",
       roles=(ADMIN, APP), secret=SECRET, body="EventInput", status=202, answer="EventResult", errors=(*_BODY, 404, *_STORE),
       description="Attributed to the named delivery, else (conversions) the one whose coupon_code was redeemed, "
       "else the device's latest sent push, within the conversion window (72 h)."),
    Op("post", "/v1/audience/estimate", "estimateAudience", "campaigns", "Devices reachable now inside a fence or polygon",
       body="AudienceEstimateInput", answer="AudienceEstimate", errors=(*_BODY, 404, *_STORE)),
    # weather
    Op("post", "/v1/weather/alerts", "postWeatherAlerts", "weather",
       "Alerts in: NWS (a GeoJSON Feature or FeatureCollection) or one CAP 1.2 document (XML)",
       body="AlertsInput", status=202, answer="AlertsResult", errors=(*_BODY, *_STORE),
       description="One answer per feature (or per CAP <alert>), in input order; at most 1,000 features. Accepted "
       "alerts are planned asynchronously: GET /v1/weather/alerts/{alert_id} tells what became of each. CAP 1.2 "
       "(Content-Type application/cap+xml, application/xml or text/xml): one <alert>, or an <alerts> wrapper of at "
       "most 100; DTDs, entities and external references are refused (400, field body), as is nesting deeper "
       "than 32 elements."),
    Op("get", "/v1/weather/alerts/{alert_id}", "getWeatherAlert", "weather", "What became of an alert",
       answer="AlertRecord", errors=(400, 404, *_STORE),
       description="Its record: queued, planning, then processed (with its lineage, area and counts), ignored, "
       "unresolved_area or cancelled. Kept 30 days past the alert's end."),
    Op("post", "/v1/weather/conditions", "postWeatherConditions", "weather", "Weather observations in",
       body="ConditionsInput", status=202, answer="ConditionsResult", errors=(*_BODY, *_STORE),
       description="The newest observation per H3 resolution-5 cell is kept for 3 hours."),
)

#: A request body example per operation (each validated against its schema by the tests).
EXAMPLES: dict[str, Any] = {
    "putGeofence": {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-73.9857, 40.7484]},
                    "properties": {"name": "Store 42", "radius_m": 300, "tags": ["store"], "dwell_minutes": 10}},
    "importGeofences": {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "midtown", "properties": {"name": "Midtown", "tags": ["zone"]},
         "geometry": {"type": "Polygon", "coordinates": [[[-74.0, 40.74], [-73.97, 40.74], [-73.97, 40.76], [-74.0, 40.76], [-74.0, 40.74]]]}},
        {"type": "Feature", "id": "hex-1", "geometry": None, "properties": {"h3_cells": ["882a100d25fffff"]}}]},
    "putDevice": {"platform": "android", "push_token": "tok-123", "attributes": {"first_name": "Ana", "language": "es"},
                  "consent": {"push": True, "location": True}},
    "postPings": {"pings": [{"device_id": "dev-1", "lat": 40.7484, "lng": -73.9857, "accuracy_m": 15,
                             "timestamp": "2026-01-31T08:00:00Z"},
                            {"device_id": "dev-1", "lat": 40.7486, "lng": -73.9855, "timestamp": 1769846460}]},
    "putCampaign": {"name": "Store welcome", "trigger": {"type": "geofence_enter", "fence_tags": ["store"]},
                    "message": {"title": "Welcome to {{ fence.name }}",
                                "body": "Hi {{ first_name | default: 'there' }}, {{ coupon.percent_off }}% off: {{ coupon.code }}"},
                    "coupon": {"percent_off": 10, "prefix": "HELLO", "valid_hours": 24},
                    "limits": {"per_device_per_day": 2, "min_minutes_between": 60},
                    "quiet_hours": {"start": "21:00", "end": "08:00", "mode": "hold", "timezone": "America/New_York"}},
    "previewCampaign": {"device_id": "dev-1", "fence_id": "store-42"},
    "postEvent": {"device_id": "dev-1", "type": "conversion", "coupon_code": "HELLO-7Q2KX9PD", "value": 42.5},
    "estimateAudience": {"fence_id": "store-42", "max_location_age_hours": 6},
    "postWeatherConditions": {"observations": [{"lat": 38.44, "lng": -122.71, "observed_at": "2026-01-31T08:00:00Z",
                                                "temperature_c": -1.5, "condition": "snow", "wind_kph": 25}]},
}

#: The store fence's centre (the fence and campaign the examples name): a linked ping lands inside it.
_STORE_POINT = {"lat": 40.7484, "lng": -73.9857}
_SECRET = f"header.{DEVICE_SECRET_HEADER}"


def _link(op_id: str, description: str, *, parameters: dict[str, str] | None = None, body: Any = None,
          replace_body: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op_id, "description": description}
    if parameters:
        out["parameters"] = parameters
    if body is not None:
        out["requestBody"] = body
    if replace_body:  # the link's body is the whole request body, not values merged into a generated one
        out["x-schemathesis"] = {"merge_body": False}
    return out


#: OpenAPI links (on each operation's success answer): how a client carries an
#: answer's ids into the next call — a registered device's id and secret into
#: its pings, events and erasure; a ping's deliveries into the delivery log and
#: the push_opened event; fences and campaigns by id. Schemathesis's stateful
#: phase follows them (``make fuzz``, tests/e2e/test_contract_fuzz.py).
LINKS: dict[str, dict[str, dict[str, Any]]] = {
    "putDevice": {
        "GetDevice": _link("getDevice", "The device just registered.",
                           parameters={"device_id": "$response.body#/device_id"}),
        "PingDevice": _link(
            "postPings", "A ping from the device just registered (with its secret when the id was new), "
            "inside the example fence.", parameters={_SECRET: "$response.body#/device_secret"},
            body={"device_id": "$response.body#/device_id", **_STORE_POINT}, replace_body=True),
        "ReportConversion": _link(
            "postEvent", "A conversion by the device just registered.", parameters={_SECRET: "$response.body#/device_secret"},
            body={"device_id": "$response.body#/device_id", "type": "conversion"}),
        "EraseDevice": _link("deleteDevice", "Erase the device just registered.",
                             parameters={"device_id": "$response.body#/device_id", _SECRET: "$response.body#/device_secret"}),
    },
    "postPings": {
        "RegisterDevice": _link("putDevice", "Register the first ping's device (a ping for an unknown device answers "
                                "accepted: false, reason unknown_device).",
                                parameters={"device_id": "$response.body#/results/0/device_id"}),
        "PingedDevice": _link("getDevice", "The first ping's device.",
                              parameters={"device_id": "$response.body#/results/0/device_id"}),
        "DeviceDeliveries": _link("listDeliveries", "The delivery log of the first ping's device.",
                                  parameters={"device_id": "$response.body#/results/0/device_id"}),
        "OpenDelivery": _link(
            "postEvent", "The push the first ping caused, opened.",
            body={"device_id": "$response.body#/results/0/device_id", "type": "push_opened",
                  "delivery_id": "$response.body#/results/0/deliveries/0"}, replace_body=True),
    },
    "listDeliveries": {
        "OpenDelivery": _link(
            "postEvent", "The newest delivery, opened.",
            body={"device_id": "$response.body#/deliveries/0/device_id", "type": "push_opened",
                  "delivery_id": "$response.body#/deliveries/0/delivery_id"}, replace_body=True),
        "DeliveryCampaignStats": _link("campaignStats", "The newest delivery's campaign's counts.",
                                       parameters={"campaign_id": "$response.body#/deliveries/0/campaign_id"}),
    },
    "putGeofence": {
        "GetGeofence": _link("getGeofence", "The fence just stored.", parameters={"fence_id": "$response.body#/id"}),
        "DeleteGeofence": _link("deleteGeofence", "Delete the fence just stored.", parameters={"fence_id": "$response.body#/id"}),
        "EstimateAudience": _link("estimateAudience", "Devices inside the fence just stored.",
                                  body={"fence_id": "$response.body#/id"}),
    },
    "putCampaign": {
        "GetCampaign": _link("getCampaign", "The campaign just stored.", parameters={"campaign_id": "$response.body#/id"}),
        "PreviewCampaign": _link("previewCampaign", "Preview the campaign just stored.",
                                 parameters={"campaign_id": "$response.body#/id"}),
        "CampaignStats": _link("campaignStats", "The campaign's counts.", parameters={"campaign_id": "$response.body#/id"}),
        "CampaignDeliveries": _link("listDeliveries", "The campaign's delivery log.",
                                    parameters={"campaign_id": "$response.body#/id"}),
        "DeleteCampaign": _link("deleteCampaign", "Delete the campaign just stored.",
                                parameters={"campaign_id": "$response.body#/id"}),
    },
}

_LIMIT: Schema = {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}
_REPAIR = ("Repair self-intersecting rings (shapely.make_valid, polygonal parts kept); the answer says repaired: true. "
           "Also accepted: 1/0, yes/no.")
QUERY: dict[str, tuple[str, Schema, bool, str]] = {
    # key: (name, schema, required, description)
    "lat": ("lat", {"type": "number", "minimum": -90, "maximum": 90}, True, "Latitude (WGS 84)."),
    "lng": ("lng", {"type": "number", "minimum": -180, "maximum": 180}, True, "Longitude (WGS 84)."),
    "repair": ("repair", {"type": "boolean", "default": False}, False, _REPAIR),
    "tag": ("tag", {"type": "string", "minLength": 1, "maxLength": 64}, False, "Only fences with this tag."),
    "limit": ("limit", _LIMIT, False, "Page size."),
    "fence_next_token": ("next_token", {"type": "string", "pattern": ID_PATTERN}, False, "The previous page's next_token."),
    "campaign_next_token": ("next_token", {"type": "string", "pattern": ID_PATTERN}, False, "The previous page's next_token."),
    "delivery_next_token": ("next_token", {"type": "string", "minLength": 1, "maxLength": 4096, "pattern": "^[A-Za-z0-9_-]+$"},
                            False, "The previous page's next_token (opaque)."),
    "campaign_id": ("campaign_id", {"type": "string", "pattern": ID_PATTERN}, False, "Only this campaign's deliveries."),
    "device_id": ("device_id", {"type": "string", "pattern": ID_PATTERN}, False, "Only this device's deliveries."),
    "status": ("status", {"enum": list(STATUSES)}, False, "Only deliveries in this status."),
}


def _security(op: Op) -> list[dict[str, list[str]]]:
    """Alternatives: the admin key alone; the app key (with the device secret when the route needs it)."""
    out: list[dict[str, list[str]]] = []
    for role in op.roles:
        if role == APP and op.secret == SECRET:
            out.append({"ApiKey": [APP], "DeviceSecret": []})
        elif role == APP and op.secret == SECRET_IF_EXISTS:
            out += [{"ApiKey": [APP]}, {"ApiKey": [APP], "DeviceSecret": []}]
        else:
            out.append({"ApiKey": [role]})
    return out


def _parameters(op: Op) -> list[Schema]:
    params: list[Schema] = []
    for name, example in ((_FENCE, "store-42"), (_DEVICE, "dev-1"), (_CAMPAIGN, "store-welcome")):
        if "{" + name + "}" in op.path:
            params.append({"name": name, "in": "path", "required": True, "example": example,
                           "schema": {"type": "string", "pattern": ID_PATTERN, "maxLength": 128}})
    if "{alert_id}" in op.path:
        params.append({"name": "alert_id", "in": "path", "required": True,
                       "example": "urn:oid:2.49.0.1.840.0.0b1b8c5e6b0a4f7f3c1a2d3e4f5a6b7c8d9e0f1a.001.1",
                       "schema": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\s\\x00-\\x1f\\x7f]+$"}})
    for key in op.query:
        name, schema, required, description = QUERY[key]
        params.append({"name": name, "in": "query", "required": required, "schema": schema, "description": description})
    return params


def _json(schema_name: str, example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": ref(schema_name)}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def _responses(op: Op) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "No content." if op.status == 204 else "OK."}
    if op.answer is not None:
        ok["content"] = _json(op.answer)
    if op.op_id in LINKS:
        ok["links"] = LINKS[op.op_id]
    out: dict[str, Any] = {str(op.status): ok}
    codes = set(op.errors)
    if op.roles:
        codes |= {401, 403}
    for code in sorted(codes | {429}):
        name = "TooManyRequests" if code == 429 else _ERRORS[code][0]
        out[str(code)] = {"$ref": f"#/components/responses/{name}"}
    return out


_CAP_BODY = {"schema": {"type": "string", "description": "A CAP 1.2 <alert> (namespace "
                                 "urn:oasis:names:tc:emergency:cap:1.2), or an <alerts> wrapper of several."}}
#: Routes that also take XML bodies.
_XML_BODIES: dict[str, dict[str, Any]] = {
    "postWeatherAlerts": {kind: _CAP_BODY for kind in ("application/cap+xml", "application/xml", "text/xml")},
}


def operation(op: Op) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.op_id, "tags": [op.tag], "summary": op.summary}
    if op.description:
        out["description"] = op.description
    params = _parameters(op)
    if params:
        out["parameters"] = params
    out["security"] = _security(op)
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {**_json(op.body, EXAMPLES.get(op.op_id)),
                                                            **_XML_BODIES.get(op.op_id, {})}}
    out["responses"] = _responses(op)
    return out


def _components() -> dict[str, Any]:
    schemas: dict[str, Schema] = {**base_schemas(), **campaign_schemas()}
    schemas["Health"] = {"type": "object", "properties": {"status": {"const": "ok"}, "version": {"type": "string"}},
                         "required": ["status", "version"], "additionalProperties": False}
    schemas["OpenApiDocument"] = {"type": "object", "required": ["openapi", "info", "paths"], "description": "This document."}
    responses: dict[str, Any] = {
        name: {"description": text, "content": _json("Error")} for name, text in _ERRORS.values()
    }
    responses["TooManyRequests"] = {
        "description": "Throttled by API Gateway (stage or usage-plan limits) before the app runs: its own body, not Error. Retry with backoff.",
        "content": _json("GatewayMessage"),
    }
    security = {
        "ApiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key",
                   "description": "An admin key (every route) or the app key (shipped in the app: devices, pings, events). "
                   "The role a route needs is the requirement's scope list."},
        "DeviceSecret": {"type": "apiKey", "in": "header", "name": DEVICE_SECRET_HEADER,
                         "description": "The device_secret a new device's registration answered; app-key calls for that device send it."},
    }
    return {"schemas": dict(sorted(schemas.items())), "responses": responses, "securitySchemes": security}


_INTRO = (
    "hexcast: geo- and context-aware push notifications. Every error the app answers is "
    '`{"error": {"code", "message", "field"}}` with the offending field\'s path. Bodies are JSON (UTF-8, '
    f"at most {MAX_BODY_BYTES // (1024 * 1024)} MiB, nested at most {MAX_NESTING} levels, no NaN/Infinity, no lone "
    "surrogate escapes). Ids (fences, devices, campaigns): 1-128 of A-Z a-z 0-9 . _ : - starting with a letter or digit."
)


def build() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPS:
        paths.setdefault(op.path, {})[op.method] = operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "hexcast API", "version": "1", "description": _INTRO},
        "servers": [{"url": "/", "description": "The stage's API Gateway URL (make serve: http://127.0.0.1:8000)."}],
        "tags": [{"name": t} for t in ("meta", "geofences", "devices", "campaigns", "weather")],
        "paths": paths,
        "components": _components(),
    }


def render() -> str:
    return json.dumps(build(), indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write (or check) chalicelib/data/openapi.json.")
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else ""
        if current != text:
            print(f"{DOC_PATH} is stale: run python -m tools.openapi_doc", file=sys.stderr)
            return 1
        return 0
    DOC_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {DOC_PATH} ({len(text):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
