"""Device use cases: register, get, delete, and the device-secret check
every device-scoped call makes (:func:`authorize_device`)."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from chalicelib import auth, retention
from chalicelib.errors import Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge, Unavailable
from chalicelib.geo.cells import cell_str
from chalicelib.push.model import PushError
from chalicelib.ports import ConcurrentUpdate, Device, EndpointClaim, EndpointHandover
from chalicelib.timeutil import iso
from chalicelib.validation import (
    DEVICE_ID_RE,
    bounded_string,
    is_device_id,
    is_finite_number,
    known_fields,
    validate_device_id,
)

if TYPE_CHECKING:
    from chalicelib.services.deps import Deps

log = logging.getLogger("hexcast.services")

PLATFORMS = ("ios", "ios_sandbox", "android")
MAX_ATTRIBUTES = 64
#: The attributes as stored: compact JSON, UTF-8 bytes. 64 ASCII attributes
#: at the longest name and value fit; as many in 4-byte characters do not.
MAX_ATTRIBUTES_BYTES = 96 * 1024
#: The whole profile as stored (DynamoDB's count: UTF-8 names and values),
#: leaving most of DynamoDB's 400 KB item to the location state and outbox.
MAX_PROFILE_BYTES = 128 * 1024
#: Room kept in :data:`MAX_PROFILE_BYTES` for what a registration adds after
#: the check: the SNS endpoint ARN and the secret hash.
_LATER_BYTES = 1024
REGISTER_ATTEMPTS = 3

__all__ = [
    "DEVICE_ID_RE",
    "MAX_ATTRIBUTES",
    "MAX_ATTRIBUTES_BYTES",
    "MAX_PROFILE_BYTES",
    "PLATFORMS",
    "authorize_device",
    "authorized_device",
    "unknown_device",
    "delete_device",
    "device_or_404",
    "get_device",
    "parse_device",
    "register_device",
    "validate_device_id",
]


# ---------------------------------------------------------------- parsing
def _attributes(body: dict[str, Any]) -> dict[str, Any]:
    attrs = body.get("attributes")
    if attrs is None:  # absent or null; false, 0, "" and [] are not objects
        attrs = {}
    if not isinstance(attrs, dict) or len(attrs) > MAX_ATTRIBUTES:
        raise InvalidInput(f"attributes must be an object of at most {MAX_ATTRIBUTES} entries", "attributes")
    for k, v in attrs.items():
        if not k or len(k) > 64:
            raise InvalidInput("attribute names are 1-64 characters", f"attributes.{k}")
        ok = v is None or isinstance(v, (str, bool)) or is_finite_number(v)
        if not ok or (isinstance(v, str) and len(v) > 1024):
            raise InvalidInput("attribute values are strings (≤ 1024), numbers, booleans or null", f"attributes.{k}")
    return dict(attrs)


def check_profile_size(deps: Deps, device: Device) -> None:
    """413 when the profile would not fit its budget as stored (UTF-8
    bytes, as DynamoDB counts them): the attributes' JSON within
    :data:`MAX_ATTRIBUTES_BYTES`, the whole profile within
    :data:`MAX_PROFILE_BYTES`. Checked before anything is written."""
    attrs = json.dumps(device.attributes, separators=(",", ":"), ensure_ascii=False)
    size = len(attrs.encode("utf-8", "surrogatepass"))
    if size > MAX_ATTRIBUTES_BYTES:
        raise PayloadTooLarge(
            f"attributes take {size} bytes as stored (UTF-8 JSON); at most {MAX_ATTRIBUTES_BYTES}", "attributes"
        )
    size = deps.devices.profile_bytes(device) + _LATER_BYTES
    if size > MAX_PROFILE_BYTES:
        raise PayloadTooLarge(f"the device profile takes {size} bytes as stored; at most {MAX_PROFILE_BYTES}", "body")


def _consent(body: dict[str, Any]) -> dict[str, bool]:
    consent = body.get("consent")
    if consent is None:  # absent or null; false, 0, "" and [] are not objects
        consent = {}
    if not isinstance(consent, dict):
        raise InvalidInput("consent must be an object {push, location}", "consent")
    known_fields(consent, ("push", "location"), "consent")
    clean: dict[str, bool] = {}
    for k in ("push", "location"):
        v = consent.get(k, False)
        if not isinstance(v, bool):
            raise InvalidInput(f"consent.{k} must be true or false", f"consent.{k}")
        clean[k] = v
    return clean


#: A registration's fields; any other is a 400 (``attributes`` are free-form).
DEVICE_FIELDS = ("platform", "push_token", "user_id", "attributes", "consent")


def parse_device(device_id: str, body: Any) -> Device:
    """A registration body → the device profile (no endpoint, no secret yet)."""
    if not isinstance(body, dict):
        raise InvalidInput("expected a JSON object", "body")
    known_fields(body, DEVICE_FIELDS)  # attributes are free-form: the app's own
    platform = body.get("platform")
    if platform not in PLATFORMS:
        raise InvalidInput(f"platform must be one of {', '.join(PLATFORMS)}", "platform")
    token = body.get("push_token")
    if not bounded_string(token, 1, 4096) or not token.strip():
        raise InvalidInput("push_token must be a non-empty string", "push_token")
    user_id = body.get("user_id")
    if user_id is not None and not bounded_string(user_id, 1, 256):
        raise InvalidInput("user_id must be a string of 1-256 characters", "user_id")
    attrs = _attributes(body)
    return Device(device_id, platform, token, user_id, attrs, _consent(body))


# ---------------------------------------------------------------- authorisation
def authorize_device(device: Device, role: str, secret: str | None) -> None:
    """An admin key may touch any device; any other key only a device whose
    stored secret hash matches ``secret`` (the ``X-Device-Secret`` header).
    403 naming the header otherwise — a device without a stored secret
    (registered before secrets existed) is the admin's alone."""
    if role == auth.ADMIN:
        return
    header = auth.DEVICE_SECRET_HEADER
    if not secret:
        raise Forbidden(f"this device's calls need {header} (the device_secret its registration returned)", header)
    if not auth.secret_matches(secret, device.secret_hash):
        raise Forbidden(f"{header} does not match this device", header)


def authorized_device(deps: Deps, device_id: Any, role: str, secret: str | None) -> Device:
    """The device a caller may touch. An admin key: the device, or 404. Any
    other key: the device when ``secret`` matches its stored hash, else 403
    — for an unknown id too, with the same answer as for another device's
    id, so an app key cannot probe which device ids exist."""
    if role == auth.ADMIN:
        return device_or_404(deps, device_id)
    device = deps.devices.get_device(device_id) if is_device_id(device_id) else None
    authorize_device(device or unknown_device(str(device_id)), role, secret)
    assert device is not None  # an unknown device has no secret hash: nothing matches it
    return device


def unknown_device(device_id: str) -> Device:
    """A stand-in for a device id that is not stored: no secret hash, so
    :func:`authorize_device` answers an app key exactly as for a device
    that is not its own."""
    return Device(device_id, "", "")


def device_or_404(deps: Deps, device_id: Any) -> Device:
    """The stored device, or 404 naming ``device_id`` when the id is malformed or unknown."""
    device = deps.devices.get_device(device_id) if is_device_id(device_id) else None
    if device is None:
        raise NotFound(f"no device {device_id!r}", "device_id")
    return device


# ---------------------------------------------------------------- registration
def _attach_endpoint(deps: Deps, device: Device) -> None:
    """The device's SNS endpoint, created or refreshed when it consents to
    push. After every check, before the profile write: a registration that
    fails here (503, retried by the app) has handed out no secret."""
    device.push_enabled = False
    if not device.consent["push"] or deps.push is None:
        return
    try:
        endpoint = deps.push.ensure_endpoint(device.device_id, device.platform, device.push_token, device.endpoint_arn)
    except PushError as exc:
        log.warning("push endpoint not registered", extra={"device_id": device.device_id, "reason": exc.reason})
        raise Unavailable(f"push registration failed ({exc.reason}); retry", "push_token") from None
    device.endpoint_arn = endpoint.arn
    device.push_enabled = endpoint.enabled


def _handover(deps: Deps, device: Device, old: Device | None) -> EndpointHandover | None:
    """The endpoint claims this registration changes (see
    :class:`~chalicelib.ports.EndpointHandover`): the device takes the claim
    on its endpoint — a device record registered earlier with the same push
    token loses the endpoint, so it no longer pushes to this phone — and
    gives up its claim on an endpoint it no longer uses."""
    arn = device.endpoint_arn
    before = old.endpoint_arn if old is not None else None
    release: EndpointClaim | None = None
    if before is not None and before != arn:
        claim = deps.devices.get_endpoint_claim(before)
        release = claim if claim is not None and claim.owner == device.device_id else None
    if arn is None:
        return EndpointHandover(release=release) if release is not None else None
    seen = deps.devices.get_endpoint_claim(arn)
    displace = False
    if seen is not None and seen.owner != device.device_id:
        holder = deps.devices.get_device(seen.owner, consistent=True)
        displace = holder is not None and holder.endpoint_arn == arn
    return EndpointHandover(seen=seen, displace=displace, release=release)


def _abandon_endpoint(deps: Deps, device: Device, old: Device | None) -> None:
    """The profile write failed: an endpoint this attempt created (or took
    over) is deleted unless a device record holds it — no orphan endpoint
    per failed registration. Best effort: a failure here is logged."""
    arn = device.endpoint_arn
    if arn is None or deps.push is None or (old is not None and old.endpoint_arn == arn):
        return
    try:
        if deps.devices.get_endpoint_claim(arn) is None:
            deps.push.delete_endpoint(arn)
    except Exception as exc:  # noqa: BLE001 — the write's own error is the one to report
        log.warning("unused push endpoint not deleted", extra={"device_id": device.device_id,
                                                               "reason": type(exc).__name__})


def register_device(
    deps: Deps, device_id: str, body: Any, *, role: str = auth.ADMIN, secret: str | None = None
) -> dict[str, Any]:
    """Create or update the profile and the SNS endpoint (AWS's lifecycle:
    create once, then read its attributes and update a changed token or a
    disabled endpoint; recreate it when it is gone).

    Every check comes first (the body, its size as stored, the caller's
    secret); then the endpoint; then one atomic write of the profile and the
    endpoint's claim (:func:`_handover`). When that write fails, the endpoint
    this attempt made is deleted (:func:`_abandon_endpoint`).

    A new device gets a ``device_secret`` in the answer, once; only its
    hash is stored. Updating an existing device with an app key needs that
    secret (:func:`authorize_device`) and keeps it. The write is
    conditional — creation on the id being free, an update on the hash just
    checked — so of two concurrent first registrations exactly one gets a
    secret, and the other is decided again against what the winner stored."""
    device_id = validate_device_id(device_id)
    device = parse_device(device_id, body)
    device.created_at = device.updated_at = iso(deps.clock())
    check_profile_size(deps, device)
    tried: str | None = None  # the secret of a creation whose outcome is unknown
    for _ in range(REGISTER_ATTEMPTS):
        old = deps.devices.get_device(device_id, consistent=True)
        if old is not None and tried is not None and auth.secret_matches(tried, old.secret_hash):
            # Our creation did land (an SDK retry of it then found the id taken).
            return {"device_id": device_id, "push_enabled": old.push_enabled, "device_secret": tried}
        if old is not None:
            authorize_device(old, role, secret)
        new_secret = auth.new_device_secret() if old is None else None
        device.secret_hash = auth.hash_token(new_secret) if new_secret else old.secret_hash  # type: ignore[union-attr]
        device.endpoint_arn = old.endpoint_arn if old else None
        _attach_endpoint(deps, device)
        try:
            deps.devices.save_profile(device, create=old is None, handover=_handover(deps, device, old))
        except ConcurrentUpdate:
            # Another registration created the device first, it was deleted
            # or re-created meanwhile, or the endpoint's claim moved: decide
            # again on what is stored.
            log.info("device registration raced; re-reading", extra={"device_id": device_id})
            _abandon_endpoint(deps, device, old)
            tried = new_secret
            continue
        except Exception:
            _abandon_endpoint(deps, device, old)
            raise
        answer: dict[str, Any] = {"device_id": device_id, "push_enabled": device.push_enabled}
        if new_secret:
            answer["device_secret"] = new_secret
        return answer
    raise Conflict("the device was changed concurrently; retry", "device_id")


# ---------------------------------------------------------------- reading, deleting
def get_device(deps: Deps, device_id: str) -> dict[str, Any]:
    d = device_or_404(deps, device_id)
    retention.forget_expired([d], deps.clock(), retention.location_ttl_s(deps.settings))
    location = None
    fences: list[str] = []
    if d.state is not None:
        location = {"at": iso(d.state.ts), "h3_cell": cell_str(d.state.cell)}
        fences = sorted(d.state.inside)
    return {
        "device_id": d.device_id,
        "platform": d.platform,
        "user_id": d.user_id,
        "attributes": d.attributes,
        "consent": d.consent,
        "push_enabled": d.push_enabled,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
        "last_location": location,
        "fences": fences,
    }


def delete_device(deps: Deps, device_id: str, *, role: str = auth.ADMIN, secret: str | None = None) -> None:
    """Right to be forgotten: the profile, the location state and the SNS
    endpoint — unless another device record now holds that endpoint (the
    same push token registered again under another id). An app key needs
    the device's secret (:func:`authorized_device`: 403 for an unknown id)."""
    device = authorized_device(deps, device_id, role, secret)
    arn = device.endpoint_arn
    claim = deps.devices.get_endpoint_claim(arn) if arn else None
    ours = claim is not None and claim.owner == device.device_id
    if arn and deps.push is not None and (claim is None or ours):
        try:
            deps.push.delete_endpoint(arn)
        except PushError as exc:
            raise Unavailable(f"could not delete the push endpoint ({exc.reason}); retry", "device_id") from None
    try:
        # An app key deletes only the device its secret was checked against.
        deps.devices.delete_device(device_id, secret_hash=None if role == auth.ADMIN else device.secret_hash,
                                   release=claim if ours else None)
    except ConcurrentUpdate:
        # Deleted (or deleted and registered again) since the read above.
        authorized_device(deps, device_id, role, secret)
        raise Conflict("the device was changed concurrently; retry", "device_id") from None
