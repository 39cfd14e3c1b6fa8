from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.services import devices
from chalicelib.api.common import ADMIN, APP, device_secret, handled, json_body, json_response, require
from chalicelib.container import get_deps

bp = Blueprint(__name__)


@bp.route("/v1/devices/{device_id}", methods=["PUT"])
@handled
def put_device(device_id):
    req = bp.current_request
    role = require(req, ADMIN, APP)
    answer = devices.register_device(get_deps(), device_id, json_body(req), role=role, secret=device_secret(req))
    return json_response(answer)


@bp.route("/v1/devices/{device_id}", methods=["GET"])
@handled
def get_device(device_id):
    require(bp.current_request, ADMIN)
    return json_response(devices.get_device(get_deps(), device_id))


@bp.route("/v1/devices/{device_id}", methods=["DELETE"])
@handled
def delete_device(device_id):
    req = bp.current_request
    role = require(req, ADMIN, APP)
    devices.delete_device(get_deps(), device_id, role=role, secret=device_secret(req))
    return Response(body="", status_code=204)
