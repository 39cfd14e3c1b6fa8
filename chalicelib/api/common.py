"""Request parsing, authentication and error mapping shared by the blueprints."""

from __future__ import annotations

import functools
import json
import logging
from typing import Any, Callable

from chalice import Response

from chalicelib.auth import ADMIN, APP, DEVICE_SECRET_HEADER, role_for_key  # noqa: F401 (roles re-exported for the blueprints)
from chalicelib.errors import Forbidden, HexcastError, InvalidInput, PayloadTooLarge, Unauthorized
from chalicelib.settings import get_settings
from chalicelib.validation import float_param as parse_float  # noqa: F401 (the blueprints' query parser)
from chalicelib.validation import lone_surrogate_path

log = logging.getLogger("hexcast.api")

MAX_BODY_BYTES = 5 * 1024 * 1024  # under Lambda's 6 MB event limit, escaping included
MAX_NESTING = 64


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _depth(obj: Any, limit: int) -> int:
    stack = [(obj, 1)]
    deepest = 0
    while stack:
        cur, d = stack.pop()
        deepest = max(deepest, d)
        if d > limit:
            return d
        if isinstance(cur, dict):
            stack.extend((v, d + 1) for v in cur.values())
        elif isinstance(cur, list):
            stack.extend((v, d + 1) for v in cur)
    return deepest


def json_body(request) -> Any:
    """The request body as JSON; 400 on malformed JSON, NaN/Infinity or too deep,
    413 when over the size limit."""
    raw = request.raw_body or b""
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB", "body")
    if not raw.strip():
        raise InvalidInput("request body is empty; expected JSON", "body")
    try:
        text = raw.decode("utf-8")
        data = json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        msg = str(exc).split("\n")[0][:200]
        raise InvalidInput(f"malformed JSON: {msg}", "body") from None
    if _depth(data, MAX_NESTING) > MAX_NESTING:
        raise InvalidInput(f"JSON nested deeper than {MAX_NESTING} levels", "body")
    if "\\ud" in text or "\\uD" in text:
        where = lone_surrogate_path(data)
        if where is not None:
            raise InvalidInput("text is not valid Unicode (a lone surrogate escape)", where or "body")
    return data


def query_params(request) -> dict[str, str]:
    return dict(request.query_params or {})


def role_of(request) -> str:
    """The caller's role from ``X-Api-Key``: 401 when missing, 403 when
    unknown. The key is hashed and compared with every configured hash of
    both roles in constant time (:func:`chalicelib.auth.role_for_key`)."""
    headers = request.headers or {}
    key = headers.get("x-api-key")
    if not key:
        raise Unauthorized("missing X-Api-Key header", "X-Api-Key")
    settings = get_settings()
    role = role_for_key(key, settings.admin_key_hashes, settings.app_key_hashes)
    if role is None:
        raise Forbidden("the API key is not valid", "X-Api-Key")
    return role


def require(request, *roles: str) -> str:
    """The caller's role, when it is one of ``roles``; else 401 / 403."""
    role = role_of(request)
    if role not in roles:
        raise Forbidden("this API key's role may not call this route", "X-Api-Key")
    return role


def device_secret(request) -> str | None:
    """The ``X-Device-Secret`` header (None when absent or empty): checked
    by the services against the device's stored hash for app keys."""
    value = (request.headers or {}).get(DEVICE_SECRET_HEADER.lower())
    return value or None


def error_response(exc: HexcastError) -> Response:
    return Response(body=exc.to_json(), status_code=exc.status, headers={"Content-Type": "application/json"})


def handled(fn: Callable) -> Callable:
    """Map domain errors to the spec's error body; anything else is a logged 500
    with no detail leaked."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HexcastError as exc:
            return error_response(exc)
        except Exception:  # noqa: BLE001 — the last line of defence
            log.exception("unhandled error in %s", fn.__name__)
            return Response(
                body={"error": {"code": "internal", "message": "internal error", "field": None}},
                status_code=500,
                headers={"Content-Type": "application/json"},
            )

    return wrapper


def json_response(body: Any, status: int = 200) -> Response:
    return Response(body=body, status_code=status, headers={"Content-Type": "application/json"})


def parse_limit(params: dict[str, str]) -> int:
    raw = params.get("limit", "100")
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput("limit must be an integer from 1 to 1000", "limit") from None
    if not 1 <= value <= 1000:
        raise InvalidInput("limit must be an integer from 1 to 1000", "limit")
    return value


def parse_bool(params: dict[str, str], name: str) -> bool:
    raw = params.get(name, "false").lower()
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no", ""):
        return False
    raise InvalidInput(f"{name} must be true or false", name)
