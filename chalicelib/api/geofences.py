"""Geofences: CRUD, bulk import and the point lookup (admin key)."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib.api.common import Call, route

bp = Blueprint(__name__)


@route(bp, "/v1/geofences/lookup")
def lookup(call: Call) -> Any:
    from chalicelib.services import geofences

    lat = call.number("lat", -90.0, 90.0)
    lng = call.number("lng", -180.0, 180.0)
    return geofences.lookup(call.deps, lat, lng)


@route(bp, "/v1/geofences/import", methods=["POST"])
def import_fences(call: Call) -> Any:
    from chalicelib.services import geofences

    repair = call.flag("repair")
    return geofences.import_geofences(call.deps, call.body(), repair=repair)


@route(bp, "/v1/geofences")
def list_fences(call: Call) -> Any:
    from chalicelib.services import geofences

    q = call.query
    return geofences.list_geofences(call.deps, q.get("tag"), call.limit(), q.get("next_token"))


@route(bp, "/v1/geofences/{fence_id}", methods=["PUT"])
def put_fence(call: Call, fence_id: str) -> Any:
    from chalicelib.services import geofences

    repair = call.flag("repair")
    return geofences.put_geofence(call.deps, fence_id, call.body(), repair=repair)


@route(bp, "/v1/geofences/{fence_id}")
def get_fence(call: Call, fence_id: str) -> Any:
    from chalicelib.services import geofences

    return geofences.get_geofence(call.deps, fence_id)


@route(bp, "/v1/geofences/{fence_id}", methods=["DELETE"])
def delete_fence(call: Call, fence_id: str) -> None:
    from chalicelib.services import geofences

    geofences.delete_geofence(call.deps, fence_id)
