from __future__ import annotations

from chalice import Blueprint

from chalicelib.services import pings
from chalicelib.api.common import ADMIN, APP, device_secret, handled, json_body, json_response, require
from chalicelib.container import get_deps

bp = Blueprint(__name__)


@bp.route("/v1/pings", methods=["POST"])
@handled
def post_pings():
    req = bp.current_request
    role = require(req, ADMIN, APP)
    return json_response(pings.handle_pings(get_deps(), json_body(req), role=role, secret=device_secret(req)))
