"""Geofence use cases: put, import, get, delete, list, and the point lookup
(the matching pieces here are shared with the ping pipeline)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from chalicelib.errors import Conflict, HexcastError, InvalidInput, NotFound
from chalicelib.geo.budget import ImportBudget
from chalicelib.geo.cells import FINEST, LADDER, latlng_to_cell, to_parents
from chalicelib.geo.cover import Cover, cover_geometry
from chalicelib.geo.geojson import FenceDefinition, check_bbox, parse_feature
from chalicelib.geo.shape import FenceShape
from chalicelib.ports import (
    ConcurrentUpdate,
    FenceRecord,
    FenceVersion,
    IndexEntry,
    newest_entries,
)
from chalicelib.timeutil import iso
from chalicelib.validation import is_fence_id, validate_fence_id

if TYPE_CHECKING:
    from chalicelib.services.deps import Deps

log = logging.getLogger("hexcast.services")

MAX_IMPORT_FEATURES = 500  # and the work budget (chalicelib.geo.budget.MAX_IMPORT_WORK)

__all__ = [
    "MAX_IMPORT_FEATURES",
    "Match",
    "delete_geofence",
    "fence_or_404",
    "get_geofence",
    "import_geofences",
    "ladder",
    "list_geofences",
    "lookup",
    "match_fences",
    "parse_feature",
    "put_geofence",
]


# ---------------------------------------------------------------- writing
def _cover(d: FenceDefinition) -> Cover:
    cover = cover_geometry(d.geometry)
    if d.kind == "h3":
        # A resolution-9 cell of the region is exactly the set of pings whose
        # cell it is: no exact test needed there.
        exact = np.array([c in d.h3_cells for c in cover.cells.tolist()], dtype=bool)
        cover = type(cover)(cover.cells, cover.inside | exact)
    return cover


def store_definition(deps: Deps, d: FenceDefinition) -> dict[str, Any]:
    """Cover a parsed fence and store it as the next version."""
    cover = _cover(d)
    now = iso(deps.clock())
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
        stored = deps.fences.put_fence(record, fv, cover)
    except ConcurrentUpdate:
        raise Conflict("the fence was changed concurrently; retry", "fence_id") from None
    log.info("fence stored", extra={"fence_id": d.fence_id, "version": stored.version, "cells": n_cells})
    out: dict[str, Any] = {"id": d.fence_id, "version": stored.version, "kind": d.kind, "area_km2": d.area_km2, "cells": n_cells}
    if d.repaired:
        out["repaired"] = True
    return out


def put_geofence(deps: Deps, fence_id: str, body: Any, *, repair: bool = False) -> dict[str, Any]:
    fence_id = validate_fence_id(fence_id, "fence_id")
    if isinstance(body, dict) and "id" in body and body["id"] is not None and str(body["id"]) != fence_id:
        raise InvalidInput("the Feature's id differs from the id in the path", "id")
    d = parse_feature(body, fence_id, repair=repair)
    return store_definition(deps, d)


# ---------------------------------------------------------------- import
_Parsed = tuple[int, str | None, FenceDefinition | HexcastError]


def _feature_id(feature: Any, where: str) -> str:
    if not isinstance(feature, dict):
        raise InvalidInput("expected a GeoJSON Feature object", where)
    fid = feature.get("id")
    if fid is None and isinstance(feature.get("properties"), dict):
        fid = feature["properties"].get("id")
    if fid is None:
        raise InvalidInput("a feature needs an id (Feature.id or properties.id)", f"{where}.id")
    return validate_fence_id(fid, f"{where}.id")


def _collection_features(body: Any) -> list[Any]:
    if not isinstance(body, dict) or body.get("type") != "FeatureCollection":
        raise InvalidInput('expected a GeoJSON FeatureCollection ("type": "FeatureCollection")', "type")
    check_bbox(body, "")
    features = body.get("features")
    if not isinstance(features, list):
        raise InvalidInput("features must be a list", "features")
    if len(features) > MAX_IMPORT_FEATURES:
        raise InvalidInput(f"at most {MAX_IMPORT_FEATURES} features per import; split the file", "features")
    return features


def _parse_features(features: list[Any], repair: bool) -> list[_Parsed]:
    """Each feature parsed on its own: a definition or the error rejecting
    it; the valid ones' estimated work summed as they come (past the import
    budget: a 400 for the whole request, before any write)."""
    seen: set[str] = set()
    parsed: list[_Parsed] = []
    budget = ImportBudget()
    for i, feature in enumerate(features):
        where = f"features[{i}]"
        fid = None
        try:
            fid = _feature_id(feature, where)
            if fid in seen:
                raise InvalidInput(f"duplicate id {fid!r} in this collection", f"{where}.id")
            seen.add(fid)
            d = parse_feature(feature, fid, where=where, repair=repair)
        except HexcastError as exc:
            parsed.append((i, fid, exc))
            continue
        budget.add(i, d.work)
        parsed.append((i, fid, d))
    return parsed


def import_geofences(deps: Deps, body: Any, *, repair: bool = False) -> dict[str, Any]:
    """Each feature is accepted or rejected on its own; but when the valid
    features' estimated indexing work together exceeds the import budget,
    the whole request is a 400 naming ``features`` and nothing is written."""
    parsed = _parse_features(_collection_features(body), repair)

    def store_one(item: _Parsed) -> HexcastError | None:
        d = item[2]
        if isinstance(d, HexcastError):
            return d
        try:
            store_definition(deps, d)
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


# ---------------------------------------------------------------- reading
def fence_or_404(deps: Deps, fence_id: Any) -> FenceRecord:
    """The stored fence, or 404 naming ``fence_id`` when the id is malformed or unknown."""
    rec = deps.fences.get_fence(fence_id) if is_fence_id(fence_id) else None
    if rec is None:
        raise NotFound(f"no geofence {fence_id!r}", "fence_id")
    return rec


def get_geofence(deps: Deps, fence_id: str) -> dict[str, Any]:
    rec = fence_or_404(deps, fence_id)
    feature = dict(rec.feature)
    feature["properties"] = dict(feature["properties"], version=rec.version, area_km2=rec.area_km2, cells=rec.cells)
    return feature


def delete_geofence(deps: Deps, fence_id: str) -> None:
    fence_or_404(deps, fence_id)
    if not deps.fences.delete_fence(fence_id):
        raise NotFound(f"no geofence {fence_id!r}", "fence_id")


def list_geofences(deps: Deps, tag: str | None, limit: int, next_token: str | None) -> dict[str, Any]:
    if tag is not None and (not tag or len(tag) > 64):
        raise InvalidInput("tag must be 1-64 characters", "tag")
    if next_token is not None and not is_fence_id(next_token):
        raise InvalidInput("next_token is not valid", "next_token")
    records, token = deps.fences.list_fences(tag, limit, next_token)
    return {"type": "FeatureCollection", "features": [r.feature for r in records], "next_token": token}


# ---------------------------------------------------------------- matching
def ladder(cells9: np.ndarray) -> np.ndarray:
    """(n, len(LADDER)) ancestors of resolution-9 cells."""
    return np.column_stack([to_parents(cells9, r) for r in LADDER]) if len(cells9) else np.zeros((0, len(LADDER)), np.uint64)


@dataclass
class Match:
    """The fences of a point's ladder rows: covering it, or only near it."""

    covering: dict[str, FenceVersion]
    near: dict[str, FenceVersion]  # rows here but the exact test said no


def match_fences(
    lat: float, lng: float, entries: dict[str, IndexEntry], versions: dict[tuple[str, int], FenceVersion]
) -> Match:
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
    return Match(covering, near)


def lookup(deps: Deps, lat: float, lng: float) -> dict[str, Any]:
    cell = latlng_to_cell(lat, lng, FINEST)
    anc = [int(c) for c in ladder(np.array([cell], np.uint64))[0]]
    rows = deps.fences.lookup_cells(anc)
    entries = newest_entries(rows, anc)
    versions = deps.cache.get_many(deps.fences, [(f, e.version) for f, e in entries.items()])
    m = match_fences(lat, lng, entries, versions)
    fences = sorted(m.covering.values(), key=lambda v: v.fence_id)
    return {"fences": [{"id": v.fence_id, "name": v.name, "tags": list(v.tags)} for v in fences]}
