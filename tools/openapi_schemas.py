"""The JSON Schemas (2020-12) of the OpenAPI document's ``components``:
every request body the server parses and every answer it gives, built from
the parsers' own limits and vocabularies so the two cannot drift apart.

Request objects are closed (``additionalProperties: false``) except where
the format belongs to someone else: a GeoJSON Feature's ``properties`` (a
county file carries ``GEO_ID``, ``STATE``…; unknown ones are ignored and not
stored) and the NWS alert Features, taken exactly as api.weather.gov sends
them. ``null`` is accepted wherever the parser treats it as "absent".

Used by :mod:`tools.openapi_doc` (not deployed).
"""

from __future__ import annotations

from typing import Any

from chalicelib.geo import geojson
from chalicelib.services import devices, pings
from chalicelib.services.geofences import MAX_IMPORT_FEATURES
from chalicelib.timeutil import parse_timestamp

Schema = dict[str, Any]

#: Fence, device and campaign ids (``chalicelib.validation``), in ECMA-262 form.
ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
#: The latest epoch second :func:`chalicelib.timeutil.parse_timestamp` takes (exclusive).
_EPOCH_END = 32503680000
# A non-blank string (what ``validation.json_text`` demands before stripping).
_NOT_BLANK = r"\S"


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(props: dict[str, Schema], required: tuple[str, ...] = (), *, closed: bool = True, **extra: Any) -> Schema:
    """An object schema; closed (no other member) unless ``closed=False``."""
    out: Schema = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    out.update(extra)
    return out


def arr(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def null_or(schema: Schema) -> Schema:
    """``schema`` or JSON ``null`` (the parser's "absent")."""
    if "$ref" in schema or "type" not in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    types = out["type"] if isinstance(out["type"], list) else [out["type"]]
    out["type"] = [*types, "null"]
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def text(max_len: int, **extra: Any) -> Schema:
    """A non-blank string of at most ``max_len`` characters."""
    return {"type": "string", "minLength": 1, "maxLength": max_len, "pattern": _NOT_BLANK, **extra}


def number(lo: float, hi: float, *, exclusive_lo: bool = False, **extra: Any) -> Schema:
    out: Schema = {"type": "number", "maximum": hi, **extra}
    out["exclusiveMinimum" if exclusive_lo else "minimum"] = lo
    return out


STRING: Schema = {"type": "string"}
#: What a GeoJSON object's schema says about members it does not name.
FOREIGN = "Foreign members (RFC 7946) are accepted and ignored."
BOOL: Schema = {"type": "boolean"}
DATE_TIME: Schema = {"type": "string", "format": "date-time", "description": "RFC 3339, UTC, milliseconds (2026-01-31T08:00:00.000Z)."}
INT_COUNT: Schema = {"type": "integer", "minimum": 0}


def timestamp() -> Schema:
    assert parse_timestamp(_EPOCH_END - 1, field="t") == _EPOCH_END - 1  # the bound below is the parser's
    return {
        "description": "RFC 3339 with a time zone (2026-01-31T08:00:00Z), or epoch seconds; 1970 to 3000.",
        "anyOf": [
            {"type": "string", "format": "date-time", "minLength": 10, "maxLength": 40},
            {"type": "number", "minimum": 0, "exclusiveMaximum": _EPOCH_END},
        ],
    }


# ---------------------------------------------------------------- errors
def _errors() -> dict[str, Schema]:
    detail = obj(
        {
            "code": {
                "type": "string",
                "description": "Stable, machine-readable: invalid_input, invalid_geometry, unauthorized, forbidden, "
                "not_found, conflict, payload_too_large, unsupported_media_type, unavailable.",
            },
            "message": {"type": "string", "description": "For people; may change between releases."},
            "field": {
                "type": ["string", "null"],
                "description": "The offending field's path (features[3].geometry.coordinates[0][5], pings[7].lat, "
                "X-Api-Key, X-Device-Secret), or null.",
            },
        },
        ("code", "message", "field"),
    )
    problem = obj(
        {**detail["properties"], "line": {"type": ["integer", "null"], "minimum": 1, "description": "A template's line, or null."}},
        ("code", "message", "field", "line"),
    )
    return {
        "ErrorDetail": detail,
        "ErrorProblem": problem,
        "Error": obj(
            {"error": ref("ErrorDetail"),
             "errors": arr(ref("ErrorProblem"), minItems=2, description="When a request has several problems (a campaign's "
                           "template errors): every one, with its field and, for a template, its line; error is the first.")},
            ("error",), description="The one error body of every 4xx/5xx the app answers.",
        ),
        "GatewayMessage": obj(
            {"message": STRING}, ("message",), closed=False,
            description="API Gateway's own body when it throttles (429) before the app runs.",
        ),
    }


# ---------------------------------------------------------------- geometry and fences
def _geometry() -> dict[str, Schema]:
    position = {
        "type": "array",
        "description": "[longitude, latitude] (an altitude, if any, is ignored).",
        "prefixItems": [number(-180, 180), number(-90, 90)],
        "items": {"type": "number"},
        "minItems": 2,
        "maxItems": 3,
    }
    ring = arr(ref("Position"), minItems=4, description="A closed ring: the last position equals the first.")
    polygon_coords = arr(ref("LinearRing"), minItems=1)
    bbox = arr({"type": "number"}, description="Accepted and ignored.")
    # GeoJSON objects are open: RFC 7946 allows foreign members (a file's own, such as `crs`),
    # and the parser ignores them (nothing but the members named here is read or stored).
    return {
        "Position": position,
        "LinearRing": ring,
        "Polygon": obj({"type": {"const": "Polygon"}, "coordinates": polygon_coords, "bbox": bbox}, ("type", "coordinates"),
                       closed=False, description=FOREIGN),
        "MultiPolygon": obj(
            {"type": {"const": "MultiPolygon"}, "coordinates": arr(polygon_coords, minItems=1), "bbox": bbox},
            ("type", "coordinates"), closed=False, description=FOREIGN,
        ),
        "Point": obj({"type": {"const": "Point"}, "coordinates": ref("Position"), "bbox": bbox}, ("type", "coordinates"),
                     closed=False, description=FOREIGN),
        "PolygonalGeometry": {"oneOf": [ref("Polygon"), ref("MultiPolygon")]},
    }


def _fence_props_request() -> Schema:
    g = geojson
    props = {
        "id": {"type": ["string", "integer"], "description": "The fence id in an import (when the Feature has no id)."},
        "name": null_or({"type": "string", "maxLength": g.MAX_NAME_LEN, "description": "Default: the fence id. `NAME` is read when `name` is absent."}),
        "NAME": {"type": "string", "maxLength": g.MAX_NAME_LEN},
        "tags": arr(text(g.MAX_TAG_LEN), maxItems=g.MAX_TAGS, description="Duplicates are dropped."),
        "metadata": null_or(obj(
            {}, closed=False, maxProperties=g.MAX_METADATA_KEYS,
            propertyNames={"minLength": 1, "maxLength": 128},
            additionalProperties={"type": "string", "maxLength": g.MAX_METADATA_VALUE_LEN},
            description="Free text for templates ({{ fence.metadata.key }}).",
        )),
        "dwell_minutes": null_or(number(0, g.MAX_DWELL_MINUTES, description="A device inside this long (at a later ping) gets one dwell event per visit.")),
        "enabled": {"type": "boolean", "default": True, "description": "A disabled fence matches nothing and has no index cells."},
        "radius_m": number(g.MIN_RADIUS_M, g.MAX_RADIUS_M, description="Required with a Point geometry: a geodesic circle."),
        "h3_cells": arr(
            {"type": "string", "pattern": "^[0-9A-Fa-f]{1,16}$"}, minItems=1, maxItems=g.MAX_H3_CELLS,
            description="Required with a null geometry: an H3 region (cell ids in hex, any resolution).",
        ),
    }
    return obj(props, closed=False, description="Other members (GEO_ID, STATE…) are accepted, ignored and not stored.")


def _fence_feature_request() -> Schema:
    geometry = {"oneOf": [ref("Polygon"), ref("MultiPolygon"), ref("Point"), {"type": "null"}]}
    return obj(
        {
            "type": {"const": "Feature"},
            "id": {"type": ["string", "integer", "null"], "description": "Must equal the path's fence id when given (PUT); the fence id in an import."},
            "geometry": geometry,
            "properties": null_or(ref("FencePropertiesInput")),
            "bbox": arr({"type": "number"}, description="Accepted and ignored."),
        },
        ("type", "geometry"),
        closed=False,
        description=(
            "A GeoJSON Feature (RFC 7946): a Polygon/MultiPolygon (either winding; at most "
            f"{geojson.MAX_VERTICES:,} vertices and {geojson.MAX_AREA_KM2:,.0f} km²; a ring may not span more than "
            "180° of longitude), a Point with properties.radius_m (a circle), or a null geometry with "
            f"properties.h3_cells (an H3 region). {FOREIGN}"
        ),
        allOf=[
            {"if": {"properties": {"geometry": {"type": "object", "properties": {"type": {"const": "Point"}}}}},
             "then": {"required": ["properties"], "properties": {"properties": {"type": "object", "required": ["radius_m"]}}}},
            {"if": {"properties": {"geometry": {"type": "null"}}},
             "then": {"required": ["properties"], "properties": {"properties": {"type": "object", "required": ["h3_cells"]}}}},
        ],
    )


def _fence_stored(with_stats: bool) -> Schema:
    g = geojson
    props: dict[str, Schema] = {
        "name": STRING,
        "tags": arr(STRING),
        "metadata": obj({}, closed=False, additionalProperties=STRING),
        "enabled": BOOL,
        "dwell_minutes": {"type": "number"},
        "radius_m": {"type": "number"},
        "h3_cells": arr(STRING),
    }
    required = ["name", "tags", "metadata", "enabled"]
    if with_stats:
        props.update(version={"type": "integer", "minimum": 1}, area_km2={"type": "number"}, cells=INT_COUNT)
        required += ["version", "area_km2", "cells"]
    geometry = {"oneOf": [ref("Polygon"), ref("MultiPolygon"), ref("Point"), {"type": "null"}]}
    return obj(
        {"type": {"const": "Feature"}, "id": {"type": "string", "pattern": ID_PATTERN}, "geometry": geometry,
         "properties": obj(props, tuple(required))},
        ("type", "id", "geometry", "properties"),
        description=f"The fence as stored: counter-clockwise shells, repairs applied, tags de-duplicated (kinds: {', '.join(g.KINDS)}).",
    )


def _fences() -> dict[str, Schema]:
    rejected = obj({"index": INT_COUNT, "id": {"type": ["string", "null"]}, "error": ref("ErrorDetail")}, ("index", "id", "error"))
    return {
        "FencePropertiesInput": _fence_props_request(),
        "GeofenceInput": _fence_feature_request(),
        "GeofenceImport": obj(
            {"type": {"const": "FeatureCollection"}, "features": arr(ref("GeofenceInput"), maxItems=MAX_IMPORT_FEATURES), "bbox": arr({"type": "number"}, description="Accepted and ignored.")},
            ("type", "features"), closed=False,
            description=f"{FOREIGN} Each feature needs an id (Feature.id or properties.id), unique in the collection; each is accepted or rejected on its own.",
        ),
        "GeofenceStored": obj(
            {"id": {"type": "string"}, "version": {"type": "integer", "minimum": 1}, "kind": {"enum": list(geojson.KINDS)},
             "area_km2": {"type": "number", "minimum": 0}, "cells": INT_COUNT, "repaired": {"const": True}},
            ("id", "version", "kind", "area_km2", "cells"),
        ),
        "GeofenceImportResult": obj({"imported": INT_COUNT, "rejected": arr(rejected)}, ("imported", "rejected")),
        "Geofence": _fence_stored(with_stats=True),
        "GeofenceListed": _fence_stored(with_stats=False),
        "GeofencePage": obj(
            {"type": {"const": "FeatureCollection"}, "features": arr(ref("GeofenceListed")), "next_token": {"type": ["string", "null"]}},
            ("type", "features", "next_token"),
        ),
        "LookupResult": obj(
            {"fences": arr(obj({"id": STRING, "name": STRING, "tags": arr(STRING)}, ("id", "name", "tags")))}, ("fences",),
        ),
    }


# ---------------------------------------------------------------- devices and pings
def _devices() -> dict[str, Schema]:
    attr_value = {"anyOf": [{"type": "string", "maxLength": 1024}, {"type": "number"}, {"type": "boolean"}, {"type": "null"}]}
    attributes = obj(
        {}, closed=False, maxProperties=devices.MAX_ATTRIBUTES, propertyNames={"minLength": 1, "maxLength": 64},
        additionalProperties=attr_value,
        description="Template variables ({{ first_name }}); `timezone` (IANA) places quiet hours and local_time.",
    )
    consent = obj({"push": {"type": "boolean", "default": False}, "location": {"type": "boolean", "default": False}})
    return {
        "DeviceAttributes": attributes,
        "Consent": consent,
        "DeviceRegistration": obj(
            {
                "platform": {"enum": list(devices.PLATFORMS)},
                "push_token": {"type": "string", "minLength": 1, "maxLength": 4096, "pattern": _NOT_BLANK},
                "user_id": null_or({"type": "string", "minLength": 1, "maxLength": 256}),
                "attributes": null_or(ref("DeviceAttributes")),
                "consent": null_or(ref("Consent")),
            },
            ("platform", "push_token"),
        ),
        "DeviceRegistered": obj(
            {"device_id": STRING, "push_enabled": BOOL,
             "device_secret": {"type": "string", "minLength": 43, "description": "Only when the id was new: keep it, send it as X-Device-Secret."}},
            ("device_id", "push_enabled"),
        ),
        "Device": obj(
            {
                "device_id": STRING,
                "platform": {"enum": list(devices.PLATFORMS)},
                "user_id": {"type": ["string", "null"]},
                "attributes": ref("DeviceAttributes"),
                "consent": obj({"push": BOOL, "location": BOOL}, ("push", "location")),
                "push_enabled": BOOL,
                "created_at": STRING,
                "updated_at": STRING,
                "last_location": null_or(obj({"at": DATE_TIME, "h3_cell": STRING}, ("at", "h3_cell"),
                                              description="Time and resolution-9 H3 cell only: never coordinates.")),
                "fences": arr(STRING, description="The fences the device is inside now."),
            },
            ("device_id", "platform", "user_id", "attributes", "consent", "push_enabled", "created_at", "updated_at",
             "last_location", "fences"),
        ),
    }


def _pings() -> dict[str, Schema]:
    ping = obj(
        {
            "device_id": {"type": "string", "pattern": ID_PATTERN},
            "lat": number(-90, 90),
            "lng": number(-180, 180),
            "accuracy_m": null_or(number(0, 1e7, description="Horizontal accuracy; over the stage's limit (1,000 m) the ping answers accepted: false, inaccurate.")),
            "speed_mps": null_or(number(0, 1e4)),
            "timestamp": null_or({**timestamp(), "description": "When the fix was taken (default: now); at most "
                                  f"{pings.MAX_FUTURE_SKEW_S:g} s in the future."}),
        },
        ("device_id", "lat", "lng"),
    )
    event = obj({"type": {"enum": ["enter", "exit", "dwell"]}, "fence_id": STRING, "at": DATE_TIME}, ("type", "fence_id", "at"))
    result = obj(
        {
            "device_id": STRING,
            "accepted": BOOL,
            "reason": {"enum": ["inaccurate", "duplicate", "out_of_order", "unknown_device", "no_location_consent"]},
            "events": arr(ref("PresenceEvent")),
            "deliveries": arr({"type": "string", "pattern": "^dl_"}, description="Delivery ids decided for these events."),
        },
        ("device_id", "accepted", "events", "deliveries"),
    )
    return {
        "Ping": ping,
        "PingBatch": obj({"pings": arr(ref("Ping"), minItems=1, maxItems=pings.MAX_PINGS_PER_BATCH)}, ("pings",),
                         description="Applied per device in timestamp order; an app key may post for one device only."),
        "PingsInput": {"oneOf": [ref("Ping"), ref("PingBatch")]},
        "PresenceEvent": event,
        "PingResult": result,
        "PingResults": obj({"results": arr(ref("PingResult"))}, ("results",), description="One result per ping, in request order."),
    }


def base_schemas() -> dict[str, Schema]:
    """Errors, geometry, fences, devices and pings."""
    return {**_errors(), **_geometry(), **_fences(), **_devices(), **_pings()}
