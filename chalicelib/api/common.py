"""Request parsing, authentication and error mapping shared by the blueprints."""

from __future__ import annotations

import functools
import json
import logging
from typing import TYPE_CHECKING, Any, Callable, Sequence

from chalice import Blueprint, Response
from chalice.app import Request

from chalicelib.auth import ADMIN, APP, DEVICE_SECRET_HEADER, role_for_key  # noqa: F401 (roles re-exported for the blueprints)
from chalicelib.container import get_deps
from chalicelib.api.gateway import JSON_MEDIA_TYPES, method_not_allowed_body
from chalicelib.api.body_limits import MAX_NESTING, may_exceed  # noqa: F401 (MAX_NESTING re-exported)
from chalicelib.errors import Forbidden, HexcastError, InvalidInput, PayloadTooLarge, Unauthorized, UnsupportedMediaType
from chalicelib.settings import get_settings
from chalicelib.validation import float_param as parse_float
from chalicelib.validation import lone_surrogate_path

if TYPE_CHECKING:
    from chalicelib.services.deps import Deps

log = logging.getLogger("hexcast.api")

MAX_BODY_BYTES = 5 * 1024 * 1024  # under Lambda's 6 MB event limit, escaping included


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def media_type(request) -> str | None:
    """The request's Content-Type without parameters, lower case; None when absent or blank."""
    value = (request.headers or {}).get("content-type") or ""
    kind = value.split(";", 1)[0].strip().lower()
    return kind or None


def json_body(request) -> Any:
    """The request body as JSON: 415 for a Content-Type other than JSON,
    413 over the size limit, 400 for malformed JSON, NaN/Infinity, arrays
    and objects nested too deep or too wide (checked on the bytes before
    parsing: :mod:`chalicelib.api.body_scan`) and lone surrogates."""
    kind = media_type(request)
    if kind is not None and kind not in JSON_MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {kind[:100]!r} is not supported; send JSON (application/json or application/geo+json)",
            "Content-Type",
        )
    raw = request.raw_body or b""
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB", "body")
    if not raw.strip():
        raise InvalidInput("request body is empty; expected JSON", "body")
    if may_exceed(raw):
        from chalicelib.api.body_scan import check_shape  # numpy: only for a body that might be too deep or wide

        check_shape(raw)
    try:
        text = raw.decode("utf-8")
        data = json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        msg = str(exc).split("\n")[0][:200]
        raise InvalidInput(f"malformed JSON: {msg}", "body") from None
    if "\\ud" in text or "\\uD" in text:
        where = lone_surrogate_path(data)
        if where is not None:
            raise InvalidInput("text is not valid Unicode (a lone surrogate escape)", where)
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
    """Map domain errors to the documented error body; anything else is a logged 500
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


# --------------------------------------------------------------------------
# The one route decorator
# --------------------------------------------------------------------------


class Call:
    """One HTTP call as a route body sees it: the caller's role, the
    dependencies, and the request's pieces, each parsed only when asked for
    (so the order of checks — and so which error a bad request gets — is
    the order in which the route body asks)."""

    def __init__(self, request: Request, role: str | None) -> None:
        self.request = request
        self._role = role

    @property
    def role(self) -> str:
        """The caller's role (``ADMIN`` / ``APP``), checked against the
        route's roles before the body runs. A public route has none."""
        if self._role is None:
            raise RuntimeError("a public route has no caller role")
        return self._role

    @property
    def deps(self) -> Deps:
        """The process's dependencies (built on first use)."""
        return get_deps()

    @functools.cached_property
    def query(self) -> dict[str, str]:
        """The query string's parameters (empty when there are none)."""
        return query_params(self.request)

    def body(self) -> Any:
        """The request body as JSON (see :func:`json_body` for the 400/413s)."""
        return json_body(self.request)

    @property
    def secret(self) -> str | None:
        """The ``X-Device-Secret`` header, or None."""
        return device_secret(self.request)

    def limit(self) -> int:
        """The ``limit`` query parameter: 1–1000, default 100."""
        return parse_limit(self.query)

    def flag(self, name: str) -> bool:
        """A boolean query parameter (default false)."""
        return parse_bool(self.query, name)

    def number(self, name: str, lo: float, hi: float) -> float:
        """A required finite number query parameter within ``[lo, hi]``."""
        return parse_float(self.query, name, lo, hi)


#: A route body: the call, then the URL's path parameters by name. It returns
#: the JSON body, None (204, empty body) or a ready Response (its own status).
RouteBody = Callable[..., Any]


def route(
    bp: Blueprint,
    path: str,
    *,
    methods: Sequence[str] = ("GET",),
    roles: Sequence[str] | None = (ADMIN,),
    status: int = 200,
) -> Callable[[RouteBody], RouteBody]:
    """Register ``fn(call, **path_params)`` as the view of ``methods path``.

    Around the body: the API key must belong to one of ``roles`` (401 without
    a key, 403 for an unknown key or another role; ``roles=None``: a public
    route), every :class:`~chalicelib.errors.HexcastError` becomes its error
    body and anything else a logged 500 (:func:`handled`), and the returned
    body is sent as JSON with ``status`` — or ``204`` with an empty body
    when the body returns None."""
    allowed = tuple(roles) if roles is not None else None

    def decorate(fn: RouteBody) -> RouteBody:
        @functools.wraps(fn)
        def view(**path_params: str) -> Response:
            request = bp.current_request
            role = require(request, *allowed) if allowed is not None else None
            result = fn(Call(request, role), **path_params)
            if result is None:
                return Response(body="", status_code=204)
            if isinstance(result, Response):
                return result
            return json_response(result, status)

        # Every Content-Type reaches the view: the body's format is checked
        # when the body is read (json_body), so a 415 has the error body
        # too and a bodiless GET never cares.
        bp.route(path, methods=list(methods), content_types=["*/*"])(handled(view))
        return fn

    return decorate


# --------------------------------------------------------------------------
# Answers Chalice gives before (or around) a view
# --------------------------------------------------------------------------

#: Chalice's own error codes → ours (its 405 for a method the path lacks,
#: its 415 and binary-response 400, its 500 for an error outside a view).
_CHALICE_CODES = {
    "MethodNotAllowedError": "method_not_allowed",
    "UnsupportedMediaType": "unsupported_media_type",
    "BadRequest": "invalid_input",
    "BadRequestError": "invalid_input",
    "InternalServerError": "internal",
}


def documented_error(response: Response) -> Response:
    """``response`` with Chalice's ``{"Code", "Message"}`` error body
    replaced by ``{"error": {"code", "message", "field"}}`` (headers such
    as ``Allow`` kept); any other response as it is."""
    body = response.body
    if response.status_code < 400 or not isinstance(body, dict) or set(body) != {"Code", "Message"}:
        return response
    code = _CHALICE_CODES.get(str(body["Code"]), "internal" if response.status_code >= 500 else "invalid_input")
    message = "internal error" if response.status_code >= 500 else str(body["Message"])[:300]
    out = {"error": {"code": code, "message": message, "field": None}}
    if code == "method_not_allowed":
        allow = str({k.lower(): v for k, v in response.headers.items()}.get("allow", ""))
        out = method_not_allowed_body(m.strip() for m in allow.split(",") if m.strip())
    headers = {**response.headers, "Content-Type": "application/json"}
    return Response(body=out, status_code=response.status_code, headers=headers)


def error_shape(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """HTTP middleware (``app.register_middleware(error_shape, "http")``):
    every error the framework answers has the documented body."""
    return documented_error(get_response(event))
