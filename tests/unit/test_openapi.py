"""The OpenAPI document (chalicelib/data/openapi.json): a valid OpenAPI 3.1
document, exactly what tools.openapi_doc builds from the code, one operation
per Chalice route and no other, and the README's route table says the same.
The request schemas also agree with the parsers on sample bodies."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator

from chalicelib.api.openapi import DOC_PATH, document
from tools import openapi_doc

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return json.loads(DOC_PATH.read_text(encoding="utf-8"))


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m.upper(), path): op for path, item in doc["paths"].items() for m, op in item.items() if m in METHODS}


def schema_validator(doc: dict[str, Any], name: str) -> Draft202012Validator:
    root = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": f"#/components/schemas/{name}",
            "components": doc["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_document_is_valid_openapi_3_1(doc):
    assert doc["openapi"].startswith("3.1.")
    errors = [e.message for e in OpenAPIV31SpecValidator(doc).iter_errors()]
    assert errors == []


def test_every_component_schema_is_a_valid_2020_12_schema(doc):
    for name, schema in doc["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
        schema_validator(doc, name)  # and every $ref in it resolves when used
    refs = set(re.findall(r'"#/components/(?:schemas|responses)/([A-Za-z0-9]+)"', json.dumps(doc)))
    known = set(doc["components"]["schemas"]) | set(doc["components"]["responses"])
    assert refs <= known, refs - known


def test_committed_file_is_what_the_code_builds():
    assert DOC_PATH.read_text(encoding="utf-8") == openapi_doc.render(), "stale: run python -m tools.openapi_doc"
    assert openapi_doc.main(["--check"]) == 0


def test_served_document_is_the_file(doc):
    assert document() == doc


def test_every_route_is_documented_and_every_operation_is_a_route(doc):
    from app import app

    routes = {(method.upper(), path) for path, entries in app.routes.items() for method in entries}
    documented = set(operations(doc))
    assert routes - documented == set(), "routes missing from the document"
    assert documented - routes == set(), "documented operations that are no route"


def test_operation_ids_are_unique_and_every_op_answers_json_errors(doc):
    ops = operations(doc)
    ids = [op["operationId"] for op in ops.values()]
    assert len(ids) == len(set(ids))
    for (method, path), op in ops.items():
        codes = set(op["responses"])
        assert any(c.startswith("2") for c in codes), (method, path)
        if op["security"]:
            assert {"401", "403"} <= codes, (method, path)
        if "requestBody" in op:
            assert {"400", "413", "415"} <= codes, (method, path)
        if "{" in path and method in ("GET", "DELETE"):
            assert "404" in codes, (method, path)
        for code, resp in op["responses"].items():
            if code.startswith(("4", "5")) and code != "429":
                assert resp == {"$ref": f"#/components/responses/{resp['$ref'].rsplit('/', 1)[-1]}"}
                target = doc["components"]["responses"][resp["$ref"].rsplit("/", 1)[-1]]
                assert target["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_both_auth_headers_are_security_schemes(doc):
    from chalicelib.auth import DEVICE_SECRET_HEADER

    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {**schemes["ApiKey"], "type": "apiKey", "in": "header", "name": "X-Api-Key"}
    assert schemes["DeviceSecret"]["name"] == DEVICE_SECRET_HEADER


# ---------------------------------------------------------------- the README's route table
def readme_routes() -> dict[tuple[str, str], str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## API routes", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"^\| `(GET|PUT|POST|DELETE)` \| `([^`]+)` \| ([^|]+) \|", line)
        if m:
            assert (m[1], m[2]) not in rows, f"README lists {m[1]} {m[2]} twice"
            rows[(m[1], m[2])] = m[3].strip()
    return rows


def key_of(op: dict[str, Any]) -> str:
    """What the README's key column says for an operation's security."""
    roles = [r for req in op["security"] for r in req.get("ApiKey", [])]
    if not roles:
        return "none"
    if roles == ["admin"]:
        return "admin"
    always = all("DeviceSecret" in req for req in op["security"] if req.get("ApiKey") == ["app"])
    return "admin, or app + device secret" if always else "admin, or app (+ device secret once registered)"


def test_readme_route_table_matches_the_document(doc):
    readme = readme_routes()
    ops = operations(doc)
    assert set(readme) == set(ops)
    assert {k: v for k, v in readme.items()} == {k: key_of(op) for k, op in ops.items()}


# ---------------------------------------------------------------- schemas against the parsers
def _now() -> float:
    return 1_790_000_000.0


VALID_CAMPAIGN = {
    "name": "Storm delay notice", "enabled": True,
    "trigger": {"type": "geofence_enter", "fence_tags": ["delivery-zone"], "weather": {"condition_in": ["snow"]}},
    "audience": {"max_location_age_hours": 12},
    "message": {"title": "Deliveries may be late", "body": "Hi {{ first_name | default: 'there' }}", "deep_link": "shop://orders"},
    "variants": [{"name": "gold", "when": {"attribute": "loyalty_tier", "equals": "gold"}, "message": {"title": "T", "body": "B"}}],
    "experiment": {"arms": [{"name": "A", "weight": 50}, {"name": "B", "weight": 50, "message": {"title": "t", "body": "b"}}],
                   "control_percent": 10},
    "coupon": {"percent_off": 10, "prefix": "STORM", "valid_hours": 72},
    "limits": {"per_device_per_day": 2, "min_minutes_between": 60},
    "quiet_hours": {"start": "21:00", "end": "08:00", "mode": "hold", "timezone": "America/Chicago"},
    "schedule": {"start_at": "2026-12-01T00:00:00Z", "end_at": "2027-03-01T00:00:00Z"},
    "ttl_seconds": 21600,
}


def _parsers() -> dict[str, Any]:
    from chalicelib.geo.geojson import parse_feature
    from chalicelib.push.campaigns import parse_campaign
    from chalicelib.services.devices import parse_device
    from chalicelib.services.pings import parse_pings
    from chalicelib.weather.conditions import parse_observations

    return {
        "CampaignInput": lambda b: parse_campaign("c1", b),
        "DeviceRegistration": lambda b: parse_device("d1", b),
        "PingsInput": lambda b: parse_pings(b, _now()),
        "ConditionsInput": lambda b: parse_observations(b, _now()),
        "GeofenceInput": lambda b: parse_feature(b, "f1"),
    }


SAMPLES: list[tuple[str, Any]] = [
    ("CampaignInput", VALID_CAMPAIGN),
    ("CampaignInput", {"name": "W", "trigger": {"type": "weather_alert", "events": ["Winter Storm Warning"], "min_severity": "Moderate"},
                       "message": {"title": "t", "body": "b"}, "audience": {"fence_tags": ["store"]}, "experiment": None}),
    ("DeviceRegistration", {"platform": "ios", "push_token": "tok", "user_id": "u1", "attributes": {"tier": "gold", "n": 3, "ok": True, "x": None},
                            "consent": {"push": True, "location": False}}),
    ("PingsInput", {"device_id": "d1", "lat": 40.7, "lng": -73.9, "accuracy_m": 15, "speed_mps": 1.5, "timestamp": "2026-09-21T12:00:00Z"}),
    ("PingsInput", {"pings": [{"device_id": "d1", "lat": 1, "lng": 2, "timestamp": 1_789_999_000}]}),
    ("ConditionsInput", {"observations": [{"lat": 38.4, "lng": -122.7, "observed_at": "2026-09-21T12:00:00Z", "temperature_c": 14.5,
                                           "condition": "rain", "precipitation_mm_h": 2.5, "wind_kph": None}]}),
    ("GeofenceInput", {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-73.98, 40.74]},
                       "properties": {"name": "S", "radius_m": 300, "tags": ["store"], "dwell_minutes": 5, "metadata": {"k": "v"}, "GEO_ID": "x"}}),
    ("GeofenceInput", {"type": "Feature", "id": "f1", "geometry": None, "properties": {"h3_cells": ["8928308280fffff"]}}),
    ("GeofenceInput", {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}, "properties": None}),
]


@pytest.mark.parametrize("name, body", SAMPLES)
def test_sample_bodies_pass_both_the_schema_and_the_parser(doc, name, body):
    schema_validator(doc, name).validate(body)
    _parsers()[name](copy.deepcopy(body))


UNKNOWN_FIELD = [
    ("CampaignInput", lambda b: b["limits"].update(per_day=1)),
    ("CampaignInput", lambda b: b.update(colour="red")),
    ("CampaignInput", lambda b: b["trigger"].update(events=["x"])),
    ("CampaignInput", lambda b: b["experiment"]["arms"][0].update(name="Control")),
    ("CampaignInput", lambda b: b["variants"][0]["when"].update({"in": ["x"]})),
    ("CampaignInput", lambda b: b["coupon"].update(prefix="TOO-LONG-PREFIX")),
    ("CampaignInput", lambda b: b.update(ttl_seconds=28 * 86400 + 1)),
    ("CampaignInput", lambda b: b["quiet_hours"].update(start="24:00")),
]


@pytest.mark.parametrize("name, mutate", UNKNOWN_FIELD)
def test_bodies_the_parser_rejects_fail_the_schema(doc, name, mutate):
    from chalicelib.errors import InvalidInput

    body = copy.deepcopy(VALID_CAMPAIGN)
    mutate(body)
    assert not schema_validator(doc, name).is_valid(body)
    with pytest.raises(InvalidInput):
        _parsers()[name](body)


@pytest.mark.parametrize(
    "name, body",
    [
        ("PingsInput", {"device_id": "d1", "lat": 91, "lng": 0}),
        ("PingsInput", {"pings": []}),
        ("PingsInput", {"pings": [{"device_id": "d1", "lat": 0, "lng": 0}] * 101}),
        ("DeviceRegistration", {"platform": "windows", "push_token": "t"}),
        ("DeviceRegistration", {"platform": "ios", "push_token": "t", "attributes": {f"a{i}": 1 for i in range(65)}}),
        ("ConditionsInput", {"observations": [{"lat": 0, "lng": 0, "observed_at": 1, "temperature_c": 99, "condition": "rain"}]}),
        ("ConditionsInput", {"observations": [{"lat": 0, "lng": 0, "observed_at": 1, "temperature_c": 9, "condition": "lava"}]}),
        ("GeofenceInput", {"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]}, "properties": {}}),
        ("GeofenceInput", {"type": "Feature", "geometry": None, "properties": {"name": "x"}}),
        ("GeofenceInput", {"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]}, "properties": {"radius_m": 5}}),
        ("GeofenceInput", {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}}),
        ("GeofenceInput", {"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]},
                           "properties": {"radius_m": 50, "tags": ["x"] * 51}}),
    ],
)
def test_invalid_bodies_fail_both_the_schema_and_the_parser(doc, name, body):
    from chalicelib.errors import InvalidInput

    assert not schema_validator(doc, name).is_valid(body)
    with pytest.raises(InvalidInput):
        _parsers()[name](copy.deepcopy(body))


# ---------------------------------------------------------------- examples: the document's and the README's
def test_every_example_in_the_document_validates_and_parses(doc):
    examples = 0
    for (method, path), op in operations(doc).items():
        media = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        if "example" in media:
            examples += 1
            schema_validator(doc, media["schema"]["$ref"].rsplit("/", 1)[-1]).validate(media["example"])
    assert examples >= 8
    parsers = _parsers()
    by_op = {"putGeofence": "GeofenceInput", "putDevice": "DeviceRegistration", "postPings": "PingsInput",
             "putCampaign": "CampaignInput", "postWeatherConditions": "ConditionsInput"}
    for op_id, name in by_op.items():
        parsers[name](copy.deepcopy(openapi_doc.EXAMPLES[op_id]))


def _commands(text: str) -> list[str]:
    """The curl commands, each on one line with its multi-line quoted -d body."""
    out: list[str] = []
    lines = iter(text.splitlines())
    for line in lines:
        if not line.startswith("curl "):
            continue
        while line.count("'") % 2:
            line += "\n" + next(lines)
        out.append(line)
    return out


def readme_curls() -> list[tuple[str, str, str, str | None, bool, Any]]:
    """(method, path, query, key, secret, body) of each curl in the README's walkthrough."""
    text = (ROOT / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in _commands(text):
        if not line.startswith("curl ") or "$B/" not in line:
            continue
        method = m[1] if (m := re.search(r"-X (\w+)", line)) else "GET"
        url = re.search(r'\$B(/v1/[^\s"]*)', line)
        assert url, line
        path, _, query = url[1].partition("?")
        key = "admin" if "$ADMIN" in line else "app" if "$APP" in line else None
        body = json.loads(m[1]) if (m := re.search(r"-d '(.*?)'\s*$", line, re.S)) else None
        out.append((method, path, query, key, "$SECRET" in line, body))
    return out


def _template_of(doc: dict[str, Any], method: str, path: str) -> tuple[str, dict[str, Any]]:
    ops = operations(doc)
    if (method, path) in ops:  # a literal path (lookup) before a template ({fence_id})
        return path, ops[(method, path)]
    for (m, template), op in ops.items():
        if m == method and re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", template), path):
            return template, op
    raise AssertionError(f"the README calls {method} {path}, which the document does not have")


def test_readme_walkthrough_calls_are_the_documents_operations(doc):
    from urllib.parse import parse_qsl

    calls = readme_curls()
    assert len(calls) >= 10
    for method, path, query, key, secret, body in calls:
        template, op = _template_of(doc, method, path)
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        assert {k for k, _ in parse_qsl(query)} <= declared, (method, template)
        reqs = op["security"]
        if key is None:
            assert reqs == [], (method, template)
        else:
            ok = [r for r in reqs if key in r.get("ApiKey", [])]
            assert ok and (secret or any("DeviceSecret" not in r for r in ok)), (method, template, key)
        if "requestBody" in op:
            assert body is not None, (method, template)
            schema_validator(doc, op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]).validate(body)
        else:
            assert body is None, (method, template)


def test_readme_full_campaign_format_is_a_valid_campaign_input(doc):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("The full format", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    body = json.loads(block.replace('"body": "..."', '"body": "x"'))
    schema_validator(doc, "CampaignInput").validate(body)
    _parsers()["CampaignInput"](body)


def test_fuzz_configuration_names_the_documents_operations(doc):
    """`make fuzz`'s schemathesis settings (tools/fuzz.toml) name operation
    ids that exist, and its command fuzzes this document with them."""
    import argparse
    import tomllib

    from tools import fuzz

    config = tomllib.loads(fuzz.CONFIG.read_text(encoding="utf-8"))
    ids = {op["operationId"] for op in operations(doc).values()}
    for block in config.get("operations", []):
        assert set(block["include-operation-id"]) <= ids
    args = argparse.Namespace(checks=None, max_examples=3, seed=1, report_dir=Path("out"), include_operation_id=["health"])
    cmd = fuzz.command("http://127.0.0.1:1", "k", args)
    assert cmd[cmd.index("--config-file") + 1] == str(fuzz.CONFIG) and "--checks" not in cmd
    assert "http://127.0.0.1:1/v1/openapi.json" in cmd and cmd[-1] == "health"
    enabled = {name for name, value in config["checks"].items() if isinstance(value, dict) and value["enabled"]}
    assert config["checks"]["enabled"] is False and enabled == {
        "not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance",
        "negative_data_rejection"}


def test_links_name_real_operations_and_values_their_sources_answer(doc):
    """Every OpenAPI link targets an operation that exists, every
    ``$response.body#/a/0/b`` names a member the source's success schema has,
    and schemathesis builds its state machine from them (it refuses a link
    it cannot resolve)."""
    import schemathesis

    ops = {op["operationId"]: op for (_, _), op in operations(doc).items()}
    schemas = doc["components"]["schemas"]

    def member(schema: dict[str, Any], pointer: str) -> bool:
        for part in pointer.strip("/").split("/"):
            while "$ref" in schema:
                schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
            schema = schema["items"] if part.isdigit() else schema.get("properties", {}).get(part)
            if schema is None:
                return False
        return True

    found = 0
    for source, op in ops.items():
        for answer in op["responses"].values():
            for name, link in answer.get("links", {}).items():
                found += 1
                assert link["operationId"] in ops, (source, name)
                values = [*link.get("parameters", {}).values(), *(link.get("requestBody") or {}).values()]
                for value in values:
                    if isinstance(value, str) and value.startswith("$response.body#"):
                        ok_schema = answer["content"]["application/json"]["schema"]
                        assert member(ok_schema, value.split("#", 1)[1]), (source, name, value)
    assert found >= 15 and set(openapi_doc.LINKS) <= set(ops)
    schemathesis.openapi.from_dict(doc).as_state_machine()
