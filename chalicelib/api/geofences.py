from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.services import geofences
from chalicelib.api.common import ADMIN, handled, json_body, json_response, parse_bool, parse_float, parse_limit, query_params, require
from chalicelib.container import get_deps

bp = Blueprint(__name__)


@bp.route("/v1/geofences/lookup", methods=["GET"])
@handled
def lookup():
    req = bp.current_request
    require(req, ADMIN)
    q = query_params(req)
    lat = parse_float(q, "lat", -90.0, 90.0)
    lng = parse_float(q, "lng", -180.0, 180.0)
    return json_response(geofences.lookup(get_deps(), lat, lng))


@bp.route("/v1/geofences/import", methods=["POST"])
@handled
def import_fences():
    req = bp.current_request
    require(req, ADMIN)
    repair = parse_bool(query_params(req), "repair")
    return json_response(geofences.import_geofences(get_deps(), json_body(req), repair=repair))


@bp.route("/v1/geofences", methods=["GET"])
@handled
def list_fences():
    req = bp.current_request
    require(req, ADMIN)
    q = query_params(req)
    page = geofences.list_geofences(get_deps(), q.get("tag"), parse_limit(q), q.get("next_token"))
    return json_response(page)


@bp.route("/v1/geofences/{fence_id}", methods=["PUT"])
@handled
def put_fence(fence_id):
    req = bp.current_request
    require(req, ADMIN)
    repair = parse_bool(query_params(req), "repair")
    return json_response(geofences.put_geofence(get_deps(), fence_id, json_body(req), repair=repair))


@bp.route("/v1/geofences/{fence_id}", methods=["GET"])
@handled
def get_fence(fence_id):
    require(bp.current_request, ADMIN)
    return json_response(geofences.get_geofence(get_deps(), fence_id))


@bp.route("/v1/geofences/{fence_id}", methods=["DELETE"])
@handled
def delete_fence(fence_id):
    require(bp.current_request, ADMIN)
    geofences.delete_geofence(get_deps(), fence_id)
    return Response(body="", status_code=204)
