"""Domain exceptions. Mapped to HTTP responses only in ``chalicelib.api``."""

from __future__ import annotations


class HexcastError(Exception):
    """Base class: an error with a stable code, an HTTP status and a field.

    ``errors``: the problems of one request, each ``{"code", "message",
    "field", "line"}`` (a campaign's template errors); when there are
    several, the body carries them all as ``errors`` beside ``error`` (the
    first, or the one that stopped validation)."""

    status = 400
    code = "invalid_input"

    def __init__(self, message: str, field: str | None = None, *, errors: list[dict] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.errors = errors

    def to_json(self) -> dict:
        out: dict = {"error": {"code": self.code, "message": self.message, "field": self.field}}
        if self.errors and len(self.errors) > 1:
            out["errors"] = self.errors
        return out


class InvalidInput(HexcastError):
    status = 400
    code = "invalid_input"


class InvalidGeometry(InvalidInput):
    code = "invalid_geometry"


class PayloadTooLarge(HexcastError):
    status = 413
    code = "payload_too_large"


class NotFound(HexcastError):
    status = 404
    code = "not_found"


class Unauthorized(HexcastError):
    status = 401
    code = "unauthorized"


class Forbidden(HexcastError):
    status = 403
    code = "forbidden"


class Conflict(HexcastError):
    status = 409
    code = "conflict"


class Unavailable(HexcastError):
    """A dependency is throttling or unavailable; the client may retry."""

    status = 503
    code = "unavailable"


class MethodNotAllowed(HexcastError):
    """The path exists, the method does not (the answer lists the ones that do)."""

    status = 405
    code = "method_not_allowed"


class UnsupportedMediaType(HexcastError):
    """A request body in a format other than JSON."""

    status = 415
    code = "unsupported_media_type"
