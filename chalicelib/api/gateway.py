"""Answers given before the app runs, in the documented error body.

Deployed, API Gateway answers some requests itself: a path no route has
(``MISSING_AUTHENTICATION_TOKEN``, its 403 ``{"message": "Missing
Authentication Token"}`` by default), a body over its limit, throttling, an
integration that timed out. :data:`GATEWAY_RESPONSES` is what each of those
answers instead — the deploy templates turn it into the API's gateway
responses (``x-amazon-apigateway-gateway-responses``), and the local stack
and the test client answer a missing route with :func:`no_route` — so every
4xx/5xx a client sees is ``{"error": {"code", "message", "field"}}``.

A method a path does not have is a 405 listing the methods it has: the
app's router answers it locally (:func:`chalicelib.api.common.error_shape`),
and deployed each path gets a mock integration for its other methods
(:func:`method_not_allowed_operations`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Bodies read as JSON: JSON, GeoJSON (what api.weather.gov serves), and
#: curl's ``-d`` default (a form type, but the body a user typed is JSON);
#: no Content-Type at all too. Anything else is a 415.
JSON_MEDIA_TYPES = ("application/json", "application/geo+json", "application/x-www-form-urlencoded")
#: The methods a client may try on a path (OPTIONS is CORS's).
HTTP_METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH", "HEAD")


@dataclass(frozen=True)
class GatewayAnswer:
    """One gateway response: its status (None: API Gateway's own), code and
    message (a JSON string literal, or an API Gateway ``$context`` variable
    that expands to one)."""

    status: int | None
    code: str
    message: str

    def template(self) -> str:
        """The response body's mapping template."""
        return '{"error": {"code": "%s", "message": %s, "field": null}}' % (self.code, self.message)


_API_MESSAGE = "$context.error.messageString"  # API Gateway's own message, as a quoted JSON string
NO_ROUTE_MESSAGE = "no route matches this path; see the API reference in README.md"

GATEWAY_RESPONSES: dict[str, GatewayAnswer] = {
    # API Gateway's answer for a path no route has (and, without the mocks
    # below, a method a path lacks): a 403 about authentication by default.
    "MISSING_AUTHENTICATION_TOKEN": GatewayAnswer(404, "not_found", json.dumps(NO_ROUTE_MESSAGE)),
    "UNSUPPORTED_MEDIA_TYPE": GatewayAnswer(415, "unsupported_media_type", _API_MESSAGE),
    "REQUEST_TOO_LARGE": GatewayAnswer(413, "payload_too_large", _API_MESSAGE),
    "THROTTLED": GatewayAnswer(429, "throttled", _API_MESSAGE),
    "QUOTA_EXCEEDED": GatewayAnswer(429, "throttled", _API_MESSAGE),
    "INTEGRATION_TIMEOUT": GatewayAnswer(504, "timeout", _API_MESSAGE),
    "DEFAULT_4XX": GatewayAnswer(None, "invalid_request", _API_MESSAGE),
    "DEFAULT_5XX": GatewayAnswer(None, "unavailable", _API_MESSAGE),
}


def swagger_gateway_responses() -> dict[str, Any]:
    """``x-amazon-apigateway-gateway-responses``: part of the API's
    definition, so a change redeploys the stage (a separate
    ``AWS::ApiGateway::GatewayResponse`` would not reach a deployed stage
    until the next deployment)."""
    out: dict[str, Any] = {}
    for kind, answer in GATEWAY_RESPONSES.items():
        spec: dict[str, Any] = {
            "responseParameters": {"gatewayresponse.header.Content-Type": "'application/json'"},
            "responseTemplates": {"application/json": answer.template()},
        }
        if answer.status is not None:
            spec["statusCode"] = str(answer.status)
        out[kind] = spec
    return out


def no_route() -> tuple[int, dict]:
    """What the deployed API answers for a path no route has: (status, body)."""
    answer = GATEWAY_RESPONSES["MISSING_AUTHENTICATION_TOKEN"]
    assert answer.status is not None
    return answer.status, json.loads(answer.template())


def method_not_allowed_body(allowed: Iterable[str]) -> dict:
    allow = ", ".join(sorted(allowed))
    return {"error": {"code": "method_not_allowed", "message": f"this path allows {allow}", "field": None}}


def method_not_allowed_operations(routes: Mapping[str, Iterable[str]]) -> dict[str, dict[str, Any]]:
    """For each path, a mock operation per method it lacks answering 405
    with the documented body and an ``Allow`` header (OpenAPI ``paths``,
    merged into the API definition Chalice generates)."""
    paths: dict[str, dict[str, Any]] = {}
    for path, methods in sorted(routes.items()):
        allowed = sorted({m.upper() for m in methods})
        allow_header = ", ".join(allowed)
        body = json.dumps(method_not_allowed_body(allowed))
        ops: dict[str, Any] = {}
        for method in HTTP_METHODS:
            if method in allowed:
                continue
            ops[method.lower()] = {
                "produces": ["application/json"],
                "parameters": [{"name": name, "in": "path", "required": True, "type": "string"}
                               for name in re.findall(r"\{([^}]+)\}", path)],
                "responses": {"405": {"description": "method not allowed", "headers": {"Allow": {"type": "string"}}}},
                "x-amazon-apigateway-integration": {
                    "type": "mock",
                    # the types read as JSON (none given: API Gateway assumes
                    # application/json); any other: its 415, in the error body
                    "passthroughBehavior": "never",
                    "requestTemplates": {t: '{"statusCode": 405}' for t in JSON_MEDIA_TYPES},
                    "responses": {
                        "default": {
                            "statusCode": "405",
                            "responseParameters": {"method.response.header.Allow": f"'{allow_header}'"},
                            "responseTemplates": {"application/json": body},
                        }
                    },
                },
            }
        if ops:
            paths[path] = ops
    return paths


def local_gateway_answer(status: int) -> tuple[int, dict]:
    """What the deployed API answers where ``chalice.local``'s gateway
    (the local stack, the test client) raises before the app runs: its 403
    is a path no route has (the app uses no Chalice authorizers)."""
    if status == 403:
        return no_route()
    code = "unauthorized" if status == 401 else "unavailable"
    return status, {"error": {"code": code, "message": "the request was refused before reaching the app", "field": None}}
