"""Use cases. Each takes primitives (parsed JSON) plus :class:`Deps` and
returns plain data; HTTP is the api layer's business."""

from __future__ import annotations

import os as _os

#: Until this module moves into the ``chalicelib/services/`` package (as
#: ``services/{geofences,devices,pings,outbox}.py``): lets the package's
#: modules (campaigns, engagement, delivery, weather, fanout) import as
#: ``chalicelib.services.<name>`` while this module still is ``chalicelib.services``.
__path__ = [_os.path.join(_os.path.dirname(__file__), "services")]

import hashlib
import logging
import math
import re
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from chalicelib import auth
from chalicelib import metrics, retention
from chalicelib.cache import VersionCache
from chalicelib.errors import Conflict, Forbidden, HexcastError, InvalidInput, NotFound, Unavailable
from chalicelib.geo.cells import FINEST, LADDER, cell_str, latlng_to_cell, to_parents
from chalicelib.geo.cover import cover_geometry
from chalicelib.geo.geojson import FENCE_ID_RE, FenceDefinition, is_finite_number, parse_feature, validate_fence_id
from chalicelib.geo.shape import FenceShape
from chalicelib.push.model import FenceContext, PushError, Trigger
from chalicelib.services.delivery import CampaignCache, deliver
from chalicelib.presence import FenceInfo, LocationState, Ping, exit_buffer_m, step
from chalicelib.settings import Settings
from chalicelib.store.ports import ConcurrentUpdate, Device, FenceRecord, FenceVersion, newest_entries
from chalicelib.timeutil import iso, parse_timestamp
from chalicelib.weather.conditions import weather_at_many

log = logging.getLogger("hexcast.services")

MAX_PINGS_PER_BATCH = 100
MAX_IMPORT_FEATURES = 500  # stays well inside API Gateway's 29 s
MAX_FUTURE_SKEW_S = 300.0
STATE_WRITE_RETRIES = 5


@dataclass
class Deps:
    """The composition root's product: ports and configuration."""

    store: Any
    settings: Settings
    clock: Callable[[], float] = time.time
    cache: VersionCache = field(default_factory=VersionCache)
    pool: ThreadPoolExecutor | None = None
    #: The push gateway (Amazon SNS, or a fake in tests).
    push: Any = None
    campaigns: CampaignCache = field(default_factory=CampaignCache)
    #: Weather: the alert-area resolver and the fan-out queue (None: inline).
    resolver: Any = None
    queue: Any = None
    #: Backoff between retries of a store write (tests pass a recorder).
    sleep: Callable[[float], None] = time.sleep

    def parallel(self, fns: list[Callable[[], Any]]) -> list[Any]:
        """Run independent store calls concurrently (one sequential round trip)."""
        if len(fns) <= 1 or self.pool is None:
            return [f() for f in fns]
        return [f.result() for f in [self.pool.submit(fn) for fn in fns]]


def _now_iso(deps: Deps) -> str:
    return iso(deps.clock())


# ---------------------------------------------------------------- geofences
def _cover(d: FenceDefinition):
    cover = cover_geometry(d.geometry)
    if d.kind == "h3":
        # A resolution-9 cell of the region is exactly the set of pings whose
        # cell it is: no exact test needed there.
        exact = np.array([c in d.h3_cells for c in cover.cells.tolist()], dtype=bool)
        cover = type(cover)(cover.cells, cover.inside | exact)
    return cover


def _store_definition(deps: Deps, d: FenceDefinition) -> dict:
    cover = _cover(d)
    now = _now_iso(deps)
    n_cells = len(cover) if d.enabled else 0
    record = FenceRecord(
        fence_id=d.fence_id,
        version=0,  # assigned by the store: previous + 1
        kind=d.kind,
        name=d.name,
        tags=d.tags,
        enabled=d.enabled,
        area_km2=d.area_km2,
        cells=n_cells,
        feature=d.feature(),
        created_at=now,
        updated_at=now,
    )
    fv = FenceVersion(d.fence_id, 0, d.name, d.tags, d.dwell_minutes, FenceShape.from_definition(d))
    try:
        stored = deps.store.put_fence(record, fv, cover)
    except ConcurrentUpdate:
        raise Conflict("the fence was changed concurrently; retry", "fence_id") from None
    log.info("fence stored", extra={"fence_id": d.fence_id, "version": stored.version, "cells": n_cells})
    out = {"id": d.fence_id, "version": stored.version, "kind": d.kind, "area_km2": d.area_km2, "cells": n_cells}
    if d.repaired:
        out["repaired"] = True
    return out


def put_geofence(deps: Deps, fence_id: str, body: Any, *, repair: bool = False) -> dict:
    fence_id = validate_fence_id(fence_id, "fence_id")
    if isinstance(body, dict) and "id" in body and body["id"] is not None and str(body["id"]) != fence_id:
        raise InvalidInput("the Feature's id differs from the id in the path", "id")
    d = parse_feature(body, fence_id, repair=repair)
    return _store_definition(deps, d)


def _feature_id(feature: Any, where: str) -> str:
    if not isinstance(feature, dict):
        raise InvalidInput("expected a GeoJSON Feature object", where)
    fid = feature.get("id")
    if fid is None and isinstance(feature.get("properties"), dict):
        fid = feature["properties"].get("id")
    if fid is None:
        raise InvalidInput("a feature needs an id (Feature.id or properties.id)", f"{where}.id")
    return validate_fence_id(fid, f"{where}.id")


def import_geofences(deps: Deps, body: Any, *, repair: bool = False) -> dict:
    """Each feature is accepted or rejected on its own."""
    if not isinstance(body, dict) or body.get("type") != "FeatureCollection":
        raise InvalidInput('expected a GeoJSON FeatureCollection ("type": "FeatureCollection")', "type")
    features = body.get("features")
    if not isinstance(features, list):
        raise InvalidInput("features must be a list", "features")
    if len(features) > MAX_IMPORT_FEATURES:
        raise InvalidInput(f"at most {MAX_IMPORT_FEATURES} features per import; split the file", "features")
    seen: set[str] = set()
    parsed: list[tuple[int, str | None, FenceDefinition | HexcastError]] = []
    for i, feature in enumerate(features):
        where = f"features[{i}]"
        fid = None
        try:
            fid = _feature_id(feature, where)
            if fid in seen:
                raise InvalidInput(f"duplicate id {fid!r} in this collection", f"{where}.id")
            seen.add(fid)
            parsed.append((i, fid, parse_feature(feature, fid, where=where, repair=repair)))
        except HexcastError as exc:
            parsed.append((i, fid, exc))

    def store_one(item):
        i, fid, d = item
        if isinstance(d, HexcastError):
            return d
        try:
            _store_definition(deps, d)
            return None
        except HexcastError as exc:
            return exc

    # Covers are CPU, stores are I/O: a few fences in flight at once.
    outcomes = list(deps.pool.map(store_one, parsed)) if deps.pool else [store_one(p) for p in parsed]
    imported = sum(1 for o in outcomes if o is None)
    rejected = [
        {"index": i, "id": fid, "error": o.to_json()["error"]}
        for (i, fid, _), o in zip(parsed, outcomes)
        if o is not None
    ]
    return {"imported": imported, "rejected": rejected}


def get_geofence(deps: Deps, fence_id: str) -> dict:
    rec = _fence_or_404(deps, fence_id)
    feature = dict(rec.feature)
    feature["properties"] = dict(feature["properties"], version=rec.version, area_km2=rec.area_km2, cells=rec.cells)
    return feature


def _get_or_404(what: str, field_name: str, pattern: re.Pattern, getter: Callable[[str], Any], key: Any) -> Any:
    """``getter(key)``, or 404 naming the field when the id is malformed or unknown."""
    found = getter(key) if isinstance(key, str) and pattern.match(key) else None
    if found is None:
        raise NotFound(f"no {what} {key!r}", field_name)
    return found


def _fence_or_404(deps: Deps, fence_id: str) -> FenceRecord:
    return _get_or_404("geofence", "fence_id", FENCE_ID_RE, deps.store.get_fence, fence_id)


def delete_geofence(deps: Deps, fence_id: str) -> None:
    _fence_or_404(deps, fence_id)
    if not deps.store.delete_fence(fence_id):
        raise NotFound(f"no geofence {fence_id!r}", "fence_id")


def list_geofences(deps: Deps, tag: str | None, limit: int, next_token: str | None) -> dict:
    if tag is not None and (not tag or len(tag) > 64):
        raise InvalidInput("tag must be 1-64 characters", "tag")
    if next_token is not None and not FENCE_ID_RE.match(next_token):
        raise InvalidInput("next_token is not valid", "next_token")
    records, token = deps.store.list_fences(tag, limit, next_token)
    return {"type": "FeatureCollection", "features": [r.feature for r in records], "next_token": token}


# ---------------------------------------------------------------- matching
def _ladder(cells9: np.ndarray) -> np.ndarray:
    """(n, len(LADDER)) ancestors of resolution-9 cells."""
    return np.column_stack([to_parents(cells9, r) for r in LADDER]) if len(cells9) else np.zeros((0, len(LADDER)), np.uint64)


@dataclass
class _Match:
    covering: dict[str, FenceVersion]
    near: dict[str, FenceVersion]  # rows here but the exact test said no


def _match(lat: float, lng: float, entries: dict, versions: dict) -> _Match:
    covering: dict[str, FenceVersion] = {}
    near: dict[str, FenceVersion] = {}
    for fid, e in entries.items():
        fv = versions.get((fid, e.version))
        if fv is None:  # deleted meanwhile
            continue
        if e.inside or fv.shape.covers(lat, lng):
            covering[fid] = fv
        else:
            near[fid] = fv
    return _Match(covering, near)


def lookup(deps: Deps, lat: float, lng: float) -> dict:
    cell = latlng_to_cell(lat, lng, FINEST)
    anc = [int(c) for c in _ladder(np.array([cell], np.uint64))[0]]
    rows = deps.store.lookup_cells(anc)
    entries = newest_entries(rows, anc)
    versions = deps.cache.get_many(deps.store, [(f, e.version) for f, e in entries.items()])
    m = _match(lat, lng, entries, versions)
    fences = sorted(m.covering.values(), key=lambda v: v.fence_id)
    return {"fences": [{"id": v.fence_id, "name": v.name, "tags": list(v.tags)} for v in fences]}


# ---------------------------------------------------------------- devices
PLATFORMS = ("ios", "ios_sandbox", "android")
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
MAX_ATTRIBUTES = 64


def validate_device_id(value: Any, field_name: str = "device_id") -> str:
    if not isinstance(value, str) or not DEVICE_ID_RE.match(value):
        raise InvalidInput(
            "device_id must be 1-128 characters of letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
            field_name,
        )
    return value


def _parse_device(device_id: str, body: Any) -> Device:
    if not isinstance(body, dict):
        raise InvalidInput("expected a JSON object", "body")
    platform = body.get("platform")
    if platform not in PLATFORMS:
        raise InvalidInput(f"platform must be one of {', '.join(PLATFORMS)}", "platform")
    token = body.get("push_token")
    if not isinstance(token, str) or not 1 <= len(token) <= 4096 or not token.strip():
        raise InvalidInput("push_token must be a non-empty string", "push_token")
    user_id = body.get("user_id")
    if user_id is not None and (not isinstance(user_id, str) or not 1 <= len(user_id) <= 256):
        raise InvalidInput("user_id must be a string of 1-256 characters", "user_id")
    attrs = body.get("attributes", {}) or {}
    if not isinstance(attrs, dict) or len(attrs) > MAX_ATTRIBUTES:
        raise InvalidInput(f"attributes must be an object of at most {MAX_ATTRIBUTES} entries", "attributes")
    for k, v in attrs.items():
        if not k or len(k) > 64:
            raise InvalidInput("attribute names are 1-64 characters", f"attributes.{k}")
        ok = v is None or isinstance(v, (str, bool)) or is_finite_number(v)
        if not ok or (isinstance(v, str) and len(v) > 1024):
            raise InvalidInput("attribute values are strings (≤ 1024), numbers, booleans or null", f"attributes.{k}")
    consent = body.get("consent", {}) or {}
    if not isinstance(consent, dict):
        raise InvalidInput("consent must be an object {push, location}", "consent")
    clean_consent = {}
    for k in ("push", "location"):
        v = consent.get(k, False)
        if not isinstance(v, bool):
            raise InvalidInput(f"consent.{k} must be true or false", f"consent.{k}")
        clean_consent[k] = v
    return Device(device_id, platform, token, user_id, dict(attrs), clean_consent)


REGISTER_ATTEMPTS = 3


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


def register_device(deps: Deps, device_id: str, body: Any, *, role: str = auth.ADMIN, secret: str | None = None) -> dict:
    """Create or update the profile and the SNS endpoint (AWS's lifecycle:
    create once, then read its attributes and update a changed token or a
    disabled endpoint; recreate it when it is gone).

    A new device gets a ``device_secret`` in the answer, once; only its
    hash is stored. Updating an existing device with an app key needs that
    secret (:func:`authorize_device`) and keeps it. The write is
    conditional — creation on the id being free, an update on the hash just
    checked — so of two concurrent first registrations exactly one gets a
    secret, and the other is decided again against what the winner stored."""
    device_id = validate_device_id(device_id)
    device = _parse_device(device_id, body)
    now = _now_iso(deps)
    device.created_at = device.updated_at = now
    tried: str | None = None  # the secret of a creation whose outcome is unknown
    for _ in range(REGISTER_ATTEMPTS):
        old = deps.store.get_device(device_id, consistent=True)
        if old is not None and tried is not None and auth.secret_matches(tried, old.secret_hash):
            # Our creation did land (an SDK retry of it then found the id taken).
            return {"device_id": device_id, "push_enabled": old.push_enabled, "device_secret": tried}
        if old is not None:
            authorize_device(old, role, secret)
        device.endpoint_arn = old.endpoint_arn if old else None
        device.push_enabled = False
        if device.consent["push"] and deps.push is not None:
            # Before the profile write: a registration that fails here
            # (503, retried by the app) has handed out no secret.
            try:
                endpoint = deps.push.ensure_endpoint(device_id, device.platform, device.push_token, device.endpoint_arn)
            except PushError as exc:
                log.warning("push endpoint not registered", extra={"device_id": device_id, "reason": exc.reason})
                raise Unavailable(f"push registration failed ({exc.reason}); retry", "push_token") from None
            device.endpoint_arn = endpoint.arn
            device.push_enabled = endpoint.enabled
        new_secret = auth.new_device_secret() if old is None else None
        device.secret_hash = auth.hash_token(new_secret) if new_secret else old.secret_hash
        try:
            deps.store.save_profile(device, create=old is None)
        except ConcurrentUpdate:
            # Another registration created the device first, or it was
            # deleted or re-created meanwhile: decide again on what is stored.
            # (An endpoint created for a lost creation stays unused.)
            log.info("device registration raced; re-reading", extra={"device_id": device_id})
            tried = new_secret
            continue
        answer = {"device_id": device_id, "push_enabled": device.push_enabled}
        if new_secret:
            answer["device_secret"] = new_secret
        return answer
    raise Conflict("the device was changed concurrently; retry", "device_id")


def _device_or_404(deps: Deps, device_id: str) -> Device:
    return _get_or_404("device", "device_id", DEVICE_ID_RE, deps.store.get_device, device_id)


def get_device(deps: Deps, device_id: str) -> dict:
    d = _device_or_404(deps, device_id)
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
    endpoint. Delivery records keep no location. An app key needs the
    device's secret (:func:`authorize_device`)."""
    device = _device_or_404(deps, device_id)
    authorize_device(device, role, secret)
    if device.endpoint_arn and deps.push is not None:
        try:
            deps.push.delete_endpoint(device.endpoint_arn)
        except PushError as exc:
            raise Unavailable(f"could not delete the push endpoint ({exc.reason}); retry", "device_id") from None
    try:
        # An app key deletes only the device its secret was checked against.
        deps.store.delete_device(device_id, secret_hash=None if role == auth.ADMIN else device.secret_hash)
    except ConcurrentUpdate:
        # Deleted (or deleted and registered again) since the read above.
        authorize_device(_device_or_404(deps, device_id), role, secret)
        raise Conflict("the device was changed concurrently; retry", "device_id") from None


# ---------------------------------------------------------------- pings
def _number(p: dict, key: str, where: str, lo: float, hi: float, required: bool = True) -> float | None:
    v = p.get(key)
    if v is None:
        if required:
            raise InvalidInput(f"{key} is required", f"{where}.{key}")
        return None
    if not is_finite_number(v):
        raise InvalidInput(f"{key} must be a finite number", f"{where}.{key}")
    if not lo <= v <= hi:
        raise InvalidInput(f"{key} must be from {lo:g} to {hi:g}", f"{where}.{key}")
    return float(v)


def parse_pings(body: Any, now: float) -> tuple[list[Ping], bool]:
    """→ (pings, single). A malformed ping rejects the whole request (400
    naming ``pings[i].field``): nothing is applied."""
    if not isinstance(body, dict):
        raise InvalidInput("expected a ping object or {\"pings\": [...]}", "body")
    single = "pings" not in body
    raw = [body] if single else body["pings"]
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("pings must be a non-empty list", "pings")
    if len(raw) > MAX_PINGS_PER_BATCH:
        raise InvalidInput(f"at most {MAX_PINGS_PER_BATCH} pings per request", "pings")
    out = []
    for i, p in enumerate(raw):
        where = "" if single else f"pings[{i}]"
        fw = where or "body"
        if not isinstance(p, dict):
            raise InvalidInput("a ping is an object", fw)
        pre = where
        device_id = p.get("device_id")
        if not isinstance(device_id, str) or not DEVICE_ID_RE.match(device_id):
            raise InvalidInput("device_id must be a valid device id", f"{pre}.device_id".lstrip("."))
        lat = _number(p, "lat", pre, -90.0, 90.0)
        lng = _number(p, "lng", pre, -180.0, 180.0)
        acc = _number(p, "accuracy_m", pre, 0.0, 1e7, required=False)
        speed = _number(p, "speed_mps", pre, 0.0, 1e4, required=False)
        ts_raw = p.get("timestamp")
        ts = now if ts_raw is None else parse_timestamp(ts_raw, field=f"{pre}.timestamp".lstrip("."))
        if ts > now + MAX_FUTURE_SKEW_S:
            raise InvalidInput("timestamp is in the future", f"{pre}.timestamp".lstrip("."))
        out.append(Ping(device_id, lat, lng, ts, acc, speed, i))
    return out, single


def _fix_field(field_name: str | None) -> str | None:
    return field_name.lstrip(".") if field_name else field_name


def handle_pings(deps: Deps, body: Any, *, role: str = auth.ADMIN, secret: str | None = None) -> tuple[int, dict]:
    """Apply a ping or a batch (SPEC §3 "Location pings"). An app key may
    post for one device only, and needs its secret: checked on the device
    the first round trip reads anyway (403 before anything is written)."""
    now = deps.clock()
    try:
        pings, single = parse_pings(body, now)
    except InvalidInput as exc:
        exc.field = _fix_field(exc.field)
        raise
    device_ids = sorted({p.device_id for p in pings})
    if role != auth.ADMIN and len(device_ids) > 1:
        raise Forbidden("an app key may post pings for one device only", "pings")

    s = deps.settings
    usable = [p for p in pings if p.accuracy_m is None or p.accuracy_m <= s.max_accuracy_m]
    cells9 = np.array([latlng_to_cell(p.lat, p.lng, FINEST) for p in usable], dtype=np.uint64)
    ladders = _ladder(cells9)
    cell_of = {p.index: int(c) for p, c in zip(usable, cells9)}
    anc_of = {p.index: [int(c) for c in row] for p, row in zip(usable, ladders)}
    all_cells = sorted({int(c) for c in ladders.ravel()})

    # Round trip 1: the devices and every ladder row of every ping.
    devices, rows = deps.store.read_for_pings(device_ids, all_cells)
    retention.forget_expired(devices.values(), now, retention.location_ttl_s(s))  # an expired location is no state
    if role != auth.ADMIN:
        # An unknown device stays the spec's 404 / unknown_device below.
        for d in devices.values():
            authorize_device(d, role, secret)

    # Round trip 2 (only on a cold cache or an exit far from the fence):
    # versions behind the rows, and whether fences left behind still exist.
    entries_of = {i: newest_entries(rows, anc) for i, anc in anc_of.items()}
    version_keys = {(f, e.version) for ents in entries_of.values() for f, e in ents.items()}
    gone_candidates: set[str] = set()
    for p in usable:
        d = devices.get(p.device_id)
        if d is not None and d.state is not None:
            gone_candidates |= set(d.state.inside) - set(entries_of[p.index])
    fns = [lambda: deps.cache.get_many(deps.store, version_keys)]
    if gone_candidates:
        fns.append(lambda: deps.store.get_fences(gone_candidates))
    res = deps.parallel(fns)
    versions = res[0]
    live = dict(res[1]) if gone_candidates else {}
    live.update({fid: None for fid in gone_candidates if fid not in live})
    seen_fences = {fid for ents in entries_of.values() for fid in ents}

    results: dict[int, dict] = {}
    by_device: dict[str, list[Ping]] = defaultdict(list)
    for p in pings:
        by_device[p.device_id].append(p)

    def run_device(device: Device, dpings: list[Ping]) -> tuple[LocationState | None, bool, dict[int, dict]]:
        state = device.state
        changed = False
        out: dict[int, dict] = {}
        for p in sorted(dpings, key=lambda q: (q.ts, q.index)):
            if p.index not in cell_of:
                out[p.index] = _result(p, False, "inaccurate")
                continue
            m = _match(p.lat, p.lng, entries_of[p.index], versions)
            covering = {f: FenceInfo(f, v.dwell_minutes) for f, v in m.covering.items()}

            def distance(fid: str, p=p, m=m) -> float | None:
                fv = m.near.get(fid)
                if fv is not None:
                    return fv.shape.distance_m(p.lat, p.lng, horizon_m=exit_buffer_m(p.accuracy_m) + 1.0)
                if fid in seen_fences:
                    return math.inf  # exists (rows elsewhere in this batch), none near the ping
                if fid not in live:  # rare: state changed under us (a replay after a race)
                    live[fid] = deps.store.get_fences([fid]).get(fid)
                rec = live.get(fid)
                if rec is None or not rec.enabled:
                    return None  # deleted or disabled: the visit ends quietly
                return math.inf  # no row near the ping: beyond any exit buffer

            st = step(state, p, cell_of[p.index], covering, distance, max_accuracy_m=s.max_accuracy_m)
            if st.accepted:
                changed |= st.changed
                state = st.state
            out[p.index] = _result(p, st.accepted, st.reason, st.events)
        return state, changed, out

    writes: list[tuple[Device, list[Ping], LocationState, dict[int, dict]]] = []
    for device_id, dpings in by_device.items():
        device = devices.get(device_id)
        if device is None or not device.location_consent:
            reason = "unknown_device" if device is None else "no_location_consent"
            if single:
                if device is None:
                    raise NotFound(f"no device {device_id!r}", "device_id")
                raise Forbidden("the device has not consented to location", "consent.location")
            for p in dpings:
                results[p.index] = _result(p, False, reason)
            continue
        state, changed, out = run_device(device, dpings)
        results.update(out)
        due = state is not None and state is not device.state and (now - device.written_at) >= s.last_seen_refresh_s
        if changed or due:
            writes.append((device, dpings, state, out))

    # Round trip 3 (2 on a warm cache): conditional writes, one per device.
    # The events go into the device's outbox in the same write, so a Lambda
    # that dies before deciding their pushes leaves them for the next ping.
    outboxes: dict[str, dict[str, dict]] = {}

    def write(device: Device, dpings: list[Ping], state: LocationState, out: dict[int, dict]) -> dict[int, dict]:
        redo: dict[int, dict] = {}
        for _ in range(STATE_WRITE_RETRIES):
            outbox = _outbox_entries(out) if deps.push is not None else {}
            try:
                deps.store.save_state(device.device_id, device.state_version, state, now, outbox or None)
                if outbox:
                    outboxes[device.device_id] = outbox
                return redo
            except ConcurrentUpdate:
                # Another request moved this device: replay our pings on its
                # state so neither request's transitions are lost.
                fresh = deps.store.get_device(device.device_id, consistent=True)
                retention.forget_expired([fresh], now, retention.location_ttl_s(s))
                if fresh is not None and role != auth.ADMIN:
                    authorize_device(fresh, role, secret)  # deleted and registered again meanwhile
                if fresh is None or not fresh.location_consent:
                    reason = "unknown_device" if fresh is None else "no_location_consent"
                    return {p.index: _result(p, False, reason) for p in dpings}
                state, changed, redo = run_device(fresh, dpings)
                out = redo
                device = fresh
                if not changed:
                    return redo
        raise Unavailable("too many concurrent updates of one device; retry", "device_id")

    for redo in deps.parallel([lambda w=w: write(*w) for w in writes]):
        results.update(redo)

    # The state is stored: now the pushes its events cause.
    if deps.push is not None:
        _deliver_outboxes(deps, devices, pings, results, outboxes)
    for r in results.values():
        r.pop("_events", None)
    metrics.pings(results.values())
    return 200, {"results": [results[p.index] for p in pings]}


def _outbox_key(entry: dict) -> str:
    raw = f"{entry['type']}|{entry['fence_id']}|{entry['visit_ts']:.3f}"
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def _outbox_entries(out: dict[int, dict]) -> dict[str, dict]:
    """The events of these results as outbox entries, keyed by occasion."""
    entries: dict[str, dict] = {}
    for r in out.values():
        for e in r.get("_events", ()):
            entry = {"type": e.type, "fence_id": e.fence_id, "at": e.at, "visit_ts": e.visit_ts if e.visit_ts is not None else e.at}
            entries[_outbox_key(entry)] = entry
    return entries


def _deliver_outboxes(
    deps: Deps, devices: dict[str, Device], pings: list[Ping], results: dict[int, dict], written: dict[str, dict[str, dict]]
) -> None:
    """Decide the pushes of every outbox entry — the events just stored, and
    any a previous request stored but did not get to — then clear them. The
    delivery ids go into the result of the ping that caused the event (a
    leftover's into the device's first ping). Deciding twice is harmless:
    each decision is claimed once."""
    first_ping: dict[str, int] = {}
    key_ping: dict[tuple[str, str], int] = {}
    for p in pings:
        first_ping.setdefault(p.device_id, p.index)
        for key in _outbox_entries({p.index: results[p.index]}):
            key_ping[(p.device_id, key)] = p.index
    todo: dict[str, dict[str, dict]] = {}
    for device_id, device in devices.items():
        if device.outbox and device_id in first_ping:
            todo[device_id] = dict(device.outbox)
    for device_id, entries in written.items():
        todo.setdefault(device_id, {}).update(entries)
    if not todo:
        return
    records = deps.store.get_fences({e["fence_id"] for entries in todo.values() for e in entries.values()})
    # The weather where each device is now (``weather.*``, campaign weather
    # conditions): one read for the whole request.
    where: dict[str, tuple[float, float]] = {}
    for p in sorted(pings, key=lambda q: q.ts):
        if p.device_id in todo and results[p.index].get("accepted"):
            where[p.device_id] = (p.lat, p.lng)
    for device_id in todo:
        st = devices[device_id].state
        if device_id not in where and st is not None:
            where[device_id] = (st.lat, st.lng)
    order = sorted(where)
    found = weather_at_many(deps.store, [where[d] for d in order], deps.clock()) if order else []
    weather_of = dict(zip(order, found))
    for device_id, entries in todo.items():
        device = devices[device_id]
        wx = weather_of.get(device_id)
        keyed: list[tuple[str, Trigger]] = []
        for key, e in sorted(entries.items(), key=lambda kv: (kv[1]["at"], kv[0])):
            rec = records.get(e["fence_id"])
            props = rec.feature.get("properties", {}) if rec else {}
            fence = FenceContext(
                e["fence_id"],
                rec.name if rec else e["fence_id"],
                tuple(rec.tags) if rec else (),
                dict(props.get("metadata") or {}),
            )
            t = Trigger.geofence(e["type"], fence, e["visit_ts"], e["at"])
            keyed.append((key, replace(t, weather=wx) if wx else t))
        ids = deliver(deps, device, [t for _, t in keyed])
        for key, t in keyed:
            index = key_ping.get((device_id, key), first_ping[device_id])
            for did in ids.get(t.key, []):
                if did not in results[index]["deliveries"]:
                    results[index]["deliveries"].append(did)
        deps.store.clear_outbox(device_id, list(entries))


def _result(p: Ping, accepted: bool, reason: str | None, events=()) -> dict:
    r: dict[str, Any] = {"device_id": p.device_id, "accepted": accepted}
    if reason:
        r["reason"] = reason
    r["events"] = [{"type": e.type, "fence_id": e.fence_id, "at": iso(e.at)} for e in events]
    r["deliveries"] = []
    if events:
        r["_events"] = tuple(events)
    return r
