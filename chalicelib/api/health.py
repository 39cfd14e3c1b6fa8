from __future__ import annotations

from chalice import Blueprint

from chalicelib.api.common import handled, json_response
from chalicelib.settings import get_settings

bp = Blueprint(__name__)


@bp.route("/v1/health", methods=["GET"])
@handled
def health():
    return json_response({"status": "ok", "version": get_settings().version})
