"""Device registration (admin or the device's app key), lookup and erasure."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint

from chalicelib.api.common import ADMIN, APP, Call, route

bp = Blueprint(__name__)


@route(bp, "/v1/devices/{device_id}", methods=["PUT"], roles=(ADMIN, APP))
def put_device(call: Call, device_id: str) -> Any:
    from chalicelib.services import devices

    return devices.register_device(call.deps, device_id, call.body(), role=call.role, secret=call.secret)


@route(bp, "/v1/devices/{device_id}")
def get_device(call: Call, device_id: str) -> Any:
    from chalicelib.services import devices

    return devices.get_device(call.deps, device_id)


@route(bp, "/v1/devices/{device_id}", methods=["DELETE"], roles=(ADMIN, APP))
def delete_device(call: Call, device_id: str) -> None:
    from chalicelib.services import devices

    devices.delete_device(call.deps, device_id, role=call.role, secret=call.secret)
