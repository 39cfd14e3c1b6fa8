"""The OpenAPI document's schemas for campaigns, deliveries, events,
audience estimates and weather (see :mod:`tools.openapi_schemas` for the
conventions). Built from ``chalicelib.push.campaigns``' limits, so a new
limit there changes the document (and ``tests/unit/test_openapi.py`` says
the committed file is stale)."""

from __future__ import annotations

from chalicelib.push import campaigns as cp
from chalicelib.push.campaign_model import SEVERITIES
from chalicelib.push.model import GEOFENCE_TRIGGERS
from chalicelib.services import engagement
from chalicelib.weather import alerts, conditions
from tools.openapi_schemas import (
    BOOL,
    DATE_TIME,
    ID_PATTERN,
    INT_COUNT,
    STRING,
    Schema,
    arr,
    null_or,
    number,
    obj,
    ref,
    text,
    timestamp,
)

_ID: Schema = {"type": "string", "pattern": ID_PATTERN}
_TAG = text(cp.MAX_TAG_LEN)
_SCALAR: Schema = {"anyOf": [{"type": "string", "maxLength": cp.MAX_ATTRIBUTE_VALUE}, {"type": "number"}, {"type": "boolean"}]}


def _template(max_len: int, *, required: bool) -> Schema:
    out: Schema = {"type": "string", "maxLength": max_len, "description": "A Liquid template (compiled when the campaign is saved)."}
    if required:
        out.update(minLength=1, pattern=r"\S")
    return out


def _trigger() -> dict[str, Schema]:
    fence_ids = arr({"type": ["string", "integer"], "pattern": ID_PATTERN}, maxItems=cp.MAX_FENCE_REFS)
    fence_tags = arr(_TAG, maxItems=cp.MAX_FENCE_REFS)
    geofence = obj(
        {
            "type": {"enum": list(GEOFENCE_TRIGGERS)},
            "fence_ids": null_or(fence_ids),
            "fence_tags": null_or(fence_tags),
            "weather": null_or(obj(
                {"condition_in": arr(text(cp.MAX_CONDITION_LEN), minItems=1, maxItems=cp.MAX_CONDITIONS,
                                     description="Matched lower-cased against the observed condition at the device.")},
                ("condition_in",),
            )),
        },
        ("type",),
        description="At least one of fence_ids / fence_tags must be a non-empty list. geofence_dwell fires once per "
        "visit when the device is still inside at a ping at least the fence's own properties.dwell_minutes after "
        "it entered (a fence without dwell_minutes never dwells): the campaign has no dwell time of its own.",
        anyOf=[
            {"required": ["fence_ids"], "properties": {"fence_ids": {"type": "array", "minItems": 1}}},
            {"required": ["fence_tags"], "properties": {"fence_tags": {"type": "array", "minItems": 1}}},
        ],
    )
    weather = obj(
        {
            "type": {"const": "weather_alert"},
            "events": null_or(arr(text(cp.MAX_EVENT_LEN), minItems=1, maxItems=cp.MAX_EVENTS,
                                  description="NWS event names, case-insensitive (absent: any event).")),
            "min_severity": null_or({"enum": list(SEVERITIES), "description": "Case-insensitive on input."}),
        },
        ("type",),
    )
    return {"GeofenceTrigger": geofence, "WeatherAlertTrigger": weather,
            "Trigger": {"oneOf": [ref("GeofenceTrigger"), ref("WeatherAlertTrigger")]}}


def _sections() -> dict[str, Schema]:
    message = obj(
        {
            "title": _template(cp.MAX_TITLE_TEMPLATE, required=True),
            "body": _template(cp.MAX_BODY_TEMPLATE, required=True),
            "deep_link": null_or(_template(cp.MAX_DEEP_LINK_TEMPLATE, required=False)),
        },
        ("title", "body"),
    )
    label = text(cp.MAX_LABEL)
    when = obj(
        {"attribute": {"type": "string", "minLength": 1, "maxLength": cp.MAX_LABEL}, "equals": _SCALAR,
         "in": arr(_SCALAR, minItems=1, maxItems=cp.MAX_IN_VALUES), "exists": BOOL},
        ("attribute",),
        description="Exactly one of equals, in or exists.",
        oneOf=[{"required": ["equals"]}, {"required": ["in"]}, {"required": ["exists"]}],
    )
    arm = obj(
        {"name": {**label, "not": {"pattern": "^\\s*[Cc][Oo][Nn][Tt][Rr][Oo][Ll]\\s*$"}},
         "weight": {"type": "number", "exclusiveMinimum": 0}, "message": null_or(ref("Message"))},
        ("name", "weight"),
    )
    return {
        "Message": message,
        "Variant": obj({"name": label, "when": when, "message": ref("Message")}, ("name", "when", "message"),
                       description="Variant names are unique in a campaign; the first whose `when` matches wins."),
        "Arm": arm,
        "Experiment": obj(
            {"arms": arr(ref("Arm"), minItems=1, maxItems=cp.MAX_ARMS, description="Arm names are unique; 'control' is reserved."),
             "control_percent": null_or({"type": "number", "minimum": 0, "exclusiveMaximum": 100, "default": 0})},
            ("arms",),
        ),
        "CouponSpec": obj(
            {"percent_off": number(0, 100, exclusive_lo=True),
             "prefix": {"type": "string", "pattern": "^[A-Za-z0-9]{1,12}$", "description": "Upper-cased when stored."},
             "valid_hours": number(0, cp.MAX_VALID_HOURS, exclusive_lo=True)},
            ("percent_off", "prefix", "valid_hours"),
        ),
        "Limits": obj({"per_device_per_day": null_or({"type": "integer", "minimum": 1, "maximum": cp.MAX_PER_DAY}),
                       "min_minutes_between": null_or(number(0, cp.MAX_MINUTES_BETWEEN))}),
        "QuietHours": obj(
            {"start": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"},
             "end": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$", "description": "Differs from start; the window may cross midnight."},
             "mode": null_or({"enum": ["hold", "drop"], "default": "hold"}),
             "timezone": null_or({"type": "string", "default": "UTC", "description": "IANA zone, used when the device has no `timezone` attribute."})},
            ("start", "end"),
        ),
        "Schedule": obj({"start_at": null_or(timestamp()), "end_at": null_or({**timestamp(), "description": "After start_at."})}),
        "Audience": obj(
            {"fence_ids": null_or(arr({"type": ["string", "integer"], "pattern": ID_PATTERN}, maxItems=cp.MAX_FENCE_REFS)),
             "fence_tags": null_or(arr(_TAG, maxItems=cp.MAX_FENCE_REFS)),
             "max_location_age_hours": null_or(number(0, cp.MAX_LOCATION_AGE_HOURS, exclusive_lo=True, description="Default 24."))},
        ),
    }


def _campaign() -> dict[str, Schema]:
    fields: dict[str, Schema] = {
        "name": text(cp.MAX_NAME),
        "enabled": null_or({"type": "boolean", "default": True}),
        "trigger": ref("Trigger"),
        "audience": null_or(ref("Audience")),
        "message": ref("Message"),
        "variants": null_or(arr(ref("Variant"), maxItems=cp.MAX_VARIANTS)),
        "experiment": null_or(ref("Experiment")),
        "coupon": null_or(ref("CouponSpec")),
        "limits": null_or(ref("Limits")),
        "quiet_hours": null_or(ref("QuietHours")),
        "ttl_seconds": null_or({"type": "integer", "minimum": 1, "maximum": cp.MAX_TTL_SECONDS}),
        "schedule": null_or(ref("Schedule")),
    }
    assert set(fields) == set(cp.TOP_LEVEL_FIELDS), "the campaign schema lists the parser's fields"
    request = obj({**fields, "campaign_id": {**_ID, "description": "Optional; must equal the path's id."}}, ("name", "trigger", "message"))
    stored = obj(
        {"id": STRING, **fields, "version": {"type": "integer", "minimum": 1}, "created_at": DATE_TIME, "updated_at": DATE_TIME},
        ("id", *cp.TOP_LEVEL_FIELDS, "version", "created_at", "updated_at"),
        description="The canonical form: every top-level key present (null when unset).",
    )
    warning = obj(
        {"field": STRING, "message": STRING, "line": {"type": "integer", "minimum": 1}, "variable": STRING},
        ("field", "message", "line", "variable"),
        description="A variable a template reads that nothing defines (it renders empty): never an error.",
    )
    warnings = arr(ref("TemplateWarning"))
    saved = obj(
        {**stored["properties"], "warnings": {**warnings, "description": "At save: variables that are no built-in "
                                              "(device attributes without a default), keys documented variables do not "
                                              "have, and variables the campaign never sets."}},
        (*stored["required"], "warnings"),
        description="The stored campaign (canonical form) and the warnings of its templates.",
    )
    return {
        "CampaignInput": request,
        "Campaign": stored,
        "SavedCampaign": saved,
        "TemplateWarning": warning,
        "CampaignPage": obj({"campaigns": arr(ref("Campaign")), "next_token": {"type": ["string", "null"]}}, ("campaigns", "next_token")),
        "PreviewRequest": obj(
            {"device_id": _ID,
             "fence_id": null_or({**_ID, "description": "Geofence triggers: the fence to render with (default: the trigger's first)."}),
             "alert": null_or(obj({}, closed=False, description="weather_alert triggers: alert.* variables (event, severity, headline, area_desc…).")),
             "weather": null_or(obj({}, closed=False, description="weather.* variables (condition, temperature_c…)."))},
            ("device_id",),
        ),
        "Preview": obj(
            {"campaign_id": STRING, "device_id": STRING, "arm": {"type": ["string", "null"]}, "rendered": BOOL,
             "error": STRING, "title": STRING, "body": STRING, "deep_link": {"type": ["string", "null"]},
             "variant": {"type": ["string", "null"]},
             "warnings": {**arr(ref("TemplateWarning")), "description": "Variables the rendered message reads that are "
                          "undefined for this device (they render empty)."},
             "coupon": obj({"code": STRING, "percent_off": {"type": "number"}, "expires_at": DATE_TIME}, ("code", "percent_off", "expires_at")),
             "note": STRING},
            ("campaign_id", "device_id", "arm", "rendered", "warnings"),
            description="rendered: true carries title, body, deep_link, variant; rendered: false carries error.",
        ),
    }


def _engagement() -> dict[str, Schema]:
    counts = obj({}, closed=False, additionalProperties=INT_COUNT)
    block: dict[str, Schema] = {
        "decisions": INT_COUNT, "sent": INT_COUNT, "failed": INT_COUNT, "held": INT_COUNT, "pending": INT_COUNT,
        "suppressed": {**counts, "description": "By reason: no_consent, control, quiet_hours, frequency_cap, render_error, duplicate…"},
        "failed_reasons": counts, "opened": INT_COUNT, "converted": INT_COUNT,
        "conversion_value": {"type": "number"}, "open_rate": {"type": "number"}, "conversion_rate": {"type": "number"},
    }
    trigger = obj({"type": STRING, "fence_id": STRING, "alert_id": STRING}, ("type",))
    delivery = obj(
        {"delivery_id": STRING, "campaign_id": STRING, "device_id": STRING, "trigger": trigger,
         "status": {"enum": list(engagement.STATUSES)}, "reason": STRING, "arm": STRING, "title": STRING, "body": STRING,
         "deep_link": STRING, "coupon_code": STRING, "sns_message_id": STRING, "release_at": DATE_TIME, "sent_at": DATE_TIME,
         "opened_at": DATE_TIME, "converted_at": DATE_TIME, "coupon_expires_at": DATE_TIME,
         "conversion_value": {"type": "number"}, "created_at": DATE_TIME},
        ("delivery_id", "campaign_id", "device_id", "trigger", "status", "created_at"),
    )
    return {
        "StatsBlock": obj(block, tuple(block)),
        "CampaignStats": obj(
            {"campaign_id": STRING, **block, "by_arm": obj({}, closed=False, additionalProperties=ref("StatsBlock"))},
            ("campaign_id", *block, "by_arm"),
        ),
        "Delivery": delivery,
        "DeliveryPage": obj({"deliveries": arr(ref("Delivery")), "next_token": {"type": ["string", "null"]}}, ("deliveries", "next_token")),
        "EventInput": obj(
            {"device_id": _ID, "type": {"enum": list(engagement.EVENT_TYPES)},
             "delivery_id": null_or({"type": "string", "pattern": "^dl_", "maxLength": 64, "description": "Required for push_opened."}),
             "coupon_code": null_or({"type": "string", "minLength": 1, "maxLength": 64}),
             "value": null_or(number(0, 1e9, description="A conversion's value (summed in stats.conversion_value).")),
             "at": null_or({**timestamp(), "description": "When it happened (default: now); at most 300 s in the future."})},
            ("device_id", "type"),
            allOf=[{"if": {"properties": {"type": {"const": "push_opened"}}}, "then": {"required": ["delivery_id"]}}],
        ),
        "EventResult": obj(
            {"accepted": {"const": True}, "type": {"enum": list(engagement.EVENT_TYPES)}, "attributed_to": {"type": ["string", "null"]},
             "reason": {"enum": ["no_matching_delivery", "delivery_not_sent", "outside_conversion_window", "coupon_mismatch", "coupon_expired"]},
             "duplicate": {"const": True}},
            ("accepted", "type", "attributed_to"),
        ),
        "AudienceEstimateInput": obj(
            {"fence_id": _ID, "geometry": ref("PolygonalGeometry"),
             "max_location_age_hours": null_or(number(0, 24 * 366, exclusive_lo=True))},
            description="Exactly one of fence_id and geometry.",
            oneOf=[{"required": ["fence_id"]}, {"required": ["geometry"]}],
        ),
        "AudienceEstimate": obj({"reachable": INT_COUNT, "as_of": DATE_TIME}, ("reachable", "as_of")),
    }


def _weather() -> dict[str, Schema]:
    lo_hi = conditions.RANGES
    assert set(conditions.RANGES) | {"observed_at", "condition"} == set(conditions._ALLOWED)  # every field the parser takes
    observation = obj(
        {"lat": number(*lo_hi["lat"]), "lng": number(*lo_hi["lng"]),
         "observed_at": {**timestamp(), "description": f"At most {conditions.MAX_SKEW_S:g} s in the future; kept 3 h."},
         "temperature_c": number(*lo_hi["temperature_c"]),
         "condition": {"enum": sorted(conditions.CONDITIONS), "description": "Case-insensitive on input; stored lower-case."},
         "precipitation_mm_h": null_or(number(*lo_hi["precipitation_mm_h"])),
         "wind_kph": null_or(number(*lo_hi["wind_kph"]))},
        ("lat", "lng", "observed_at", "temperature_c", "condition"),
    )
    alert = obj(
        {"type": {"const": "Feature"}, "id": {"type": ["string", "null"]},
         "geometry": null_or({"type": "object", "required": ["type"]}),
         "properties": obj(
             {"id": {"type": "string", "maxLength": alerts.MAX_ID_LEN}, "event": {"type": "string", "maxLength": 200},
              "status": {"type": "string", "description": "Only Actual is acted on."}, "messageType": STRING,
              "sent": timestamp(), "effective": null_or(timestamp()), "onset": null_or(timestamp()),
              "expires": null_or(timestamp()), "ends": null_or(timestamp()),
              "severity": {"type": ["string", "null"]}, "urgency": {"type": ["string", "null"]}, "certainty": {"type": ["string", "null"]},
              "headline": {"type": ["string", "null"]}, "areaDesc": {"type": ["string", "null"]},
              "geocode": null_or(obj({"SAME": arr(STRING), "UGC": arr(STRING)}, closed=False)),
              "affectedZones": null_or(arr(STRING)), "references": null_or(arr(obj({"identifier": STRING, "sent": timestamp()}, closed=False))),
              "parameters": null_or(obj({"VTEC": arr(STRING)}, closed=False))},
             ("event", "status", "messageType", "sent"), closed=False,
         )},
        ("type", "properties"), closed=False,
        description="An alert as api.weather.gov returns it (other members are accepted and ignored). An invalid one "
        "is reported in its result (reason: invalid), the others still processed.",
    )
    result = obj(
        {"index": INT_COUNT, "id": {"type": ["string", "null"]},
         "status": {"enum": ["accepted", "duplicate", "ignored", "cancelled"]},
         "reason": {"type": ["string", "null"], "description": "ignored: invalid, not_actual, ended, not_yet_effective, "
                    "area_too_large, msg_type_ack, msg_type_error (CAP); cancelled: cancelled, expired, upgraded, all_clear"},
         "detail": STRING, "error": ref("ErrorDetail"), "lineage": STRING,
         "area": obj({"resolved": {"type": "boolean"},
                      "unresolved": arr(obj({"area": STRING, "reason": STRING}, ("area", "reason"))),
                      "notes": arr(STRING), "unresolved_more": INT_COUNT, "notes_more": INT_COUNT},
                     ("resolved", "unresolved", "notes"),
                     description="CAP alerts only: the <area> elements that yielded no geometry (with why) and the "
                     "repairs made; with resolved false the planner records unresolved_area.")},
        ("index", "id", "status"),
    )
    record = obj(
        {"id": STRING, "status": {"enum": ["queued", "planning", "processed", "ignored", "unresolved_area", "cancelled"]},
         "reason": {"type": ["string", "null"], "description": "ignored: ended, lineage_ended, area_too_large; "
                    "cancelled: cancelled, expired, upgraded, all_clear"},
         "detail": STRING, "lineage": STRING, "area_source": {"enum": ["polygon", "same", "zones"]},
         "campaigns": INT_COUNT, "devices_targeted": INT_COUNT, "deliveries": INT_COUNT, "queued_chunks": INT_COUNT,
         "unresolved_codes": arr(STRING), "received_at": {"type": "number"}, "planned_at": {"type": "number"},
         "ends_at": {"type": ["number", "null"]}, "vars": {"type": "object"}},
        ("id", "status"), closed=False,
    )
    return {
        "Observation": observation,
        "ConditionsInput": obj({"observations": arr(ref("Observation"), minItems=1, maxItems=conditions.MAX_OBSERVATIONS)}, ("observations",)),
        "ConditionsResult": obj({"stored": INT_COUNT, "cells": INT_COUNT}, ("stored", "cells")),
        "AlertFeature": alert,
        "AlertsInput": {"oneOf": [ref("AlertFeature"), obj(
            {"type": {"const": "FeatureCollection"}, "features": arr(ref("AlertFeature"), maxItems=alerts.MAX_FEATURES)},
            ("type", "features"), closed=False,
        )]},
        "AlertsResult": obj({"alerts": arr(ref("AlertResult"))}, ("alerts",)),
        "AlertResult": result,
        "AlertRecord": record,
    }


def campaign_schemas() -> dict[str, Schema]:
    return {**_trigger(), **_sections(), **_campaign(), **_engagement(), **_weather()}
