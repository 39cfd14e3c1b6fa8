"""Location pings in (admin or the device's app key)."""

from __future__ import annotations

from chalice import Blueprint

from chalicelib.api.common import ADMIN, APP, Call, route

bp = Blueprint(__name__)


@route(bp, "/v1/pings", methods=["POST"], roles=(ADMIN, APP))
def post_pings(call: Call) -> dict:
    from chalicelib.services import pings  # on first use: `import app` stays light (README, cold start)

    return pings.handle_pings(call.deps, call.body(), role=call.role, secret=call.secret)
