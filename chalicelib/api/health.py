"""The unauthenticated health check."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib.api.common import Call, route
from chalicelib.settings import get_settings

bp = Blueprint(__name__)


@route(bp, "/v1/health", roles=None)
def health(call: Call) -> Any:
    return {"status": "ok", "version": get_settings().version}
