"""Location pings in (admin or the device's app key)."""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib import services
from chalicelib.api.common import ADMIN, APP, Call, json_response, route

bp = Blueprint(__name__)


@route(bp, "/v1/pings", methods=["POST"], roles=(ADMIN, APP))
def post_pings(call: Call) -> Response:
    # The status depends on the outcome (all accepted, some rejected, ...).
    status, body = services.handle_pings(call.deps, call.body(), role=call.role, secret=call.secret)
    return json_response(body, status)
