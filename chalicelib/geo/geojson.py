"""Parse and validate a geofence Feature (RFC 7946) into a :class:`FenceDefinition`.

Every geometry rule of the README lives here, and every rejection raises
:class:`~chalicelib.errors.InvalidGeometry` / :class:`~chalicelib.errors.InvalidInput`
naming the field (``features[3].geometry.coordinates[0][5]``) so a marketer
can find the problem in a 3,000-feature file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

import h3.api.basic_int as h3i
import numpy as np
import shapely
from shapely.geometry import mapping

from chalicelib.errors import InvalidGeometry, InvalidInput
from chalicelib.geo.budget import FENCE_BUDGET, GeometryBudget, check_fence, check_h3_cells, check_rings
from chalicelib.geo.cells import cell_polygons, cell_str
from chalicelib.geo.sphere import destination_latlng, geometry_area_km2
# Identifier and number rules live in one module; re-exported here for the
# parsers below and their older importers.
from chalicelib.validation import FENCE_ID_RE, MIN_NONZERO_MAGNITUDE, is_finite_number, validate_fence_id  # noqa: F401

MAX_VERTICES = FENCE_BUDGET.max_vertices
MAX_AREA_KM2 = 3_000_000.0
MIN_RADIUS_M, MAX_RADIUS_M = 10.0, 100_000.0
MAX_H3_CELLS = 10_000
MAX_TAGS = 50
MAX_TAG_LEN = 64
MAX_METADATA_KEYS = 32
MAX_METADATA_VALUE_LEN = 1024
MAX_NAME_LEN = 256
MAX_DWELL_MINUTES = 7 * 24 * 60
CIRCLE_SEGMENTS = 64

KINDS = ("polygon", "circle", "h3")


@dataclass(frozen=True)
class FenceDefinition:
    """A validated fence, ready to be covered and stored."""

    fence_id: str
    kind: str  # polygon | circle | h3
    geometry: Any  # shapely (Multi)Polygon, lng/lat; for circles the covering polygon
    name: str
    tags: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    dwell_minutes: float | None = None
    enabled: bool = True
    center: tuple[float, float] | None = None  # (lat, lng) for circles
    radius_m: float | None = None
    h3_cells: tuple[int, ...] = ()
    area_km2: float = 0.0
    repaired: bool = False
    work: float = 0.0  # estimated indexing work (chalicelib.geo.budget)

    def feature(self) -> dict:
        """The Feature as stored (winding normalised, repairs applied)."""
        props: dict[str, Any] = {
            "name": self.name,
            "tags": list(self.tags),
            "metadata": dict(self.metadata),
            "enabled": self.enabled,
        }
        if self.dwell_minutes is not None:
            props["dwell_minutes"] = self.dwell_minutes
        if self.kind == "circle" and self.center is not None:
            lat, lng = self.center
            geometry = {"type": "Point", "coordinates": [lng, lat]}
            props["radius_m"] = self.radius_m
        elif self.kind == "h3":
            geometry = None
            props["h3_cells"] = [cell_str(c) for c in self.h3_cells]
        else:
            geometry = mapping(self.geometry)
            geometry = _lists(geometry)
        return {"type": "Feature", "id": self.fence_id, "geometry": geometry, "properties": props}


def _lists(obj):
    if isinstance(obj, (list, tuple)):
        return [_lists(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _lists(v) for k, v in obj.items()}
    return obj


_is_number = is_finite_number


def parse_position(pos: Any, where: str) -> tuple[float, float]:
    """A GeoJSON position ``[lng, lat(, alt)]`` → ``(lng, lat)``, validated."""
    if not isinstance(pos, (list, tuple)) or not 2 <= len(pos) <= 3:
        raise InvalidGeometry("a position is [longitude, latitude]", where)
    lng, lat = pos[0], pos[1]
    if not all(is_finite_number(v) for v in pos):  # the altitude too, though it is ignored
        raise InvalidGeometry("coordinates must be finite numbers", where)
    if not -180.0 <= lng <= 180.0:
        raise InvalidGeometry(f"longitude {lng} is outside [-180, 180]", where)
    if not -90.0 <= lat <= 90.0:
        raise InvalidGeometry(f"latitude {lat} is outside [-90, 90]", where)
    return float(lng), float(lat)


def _parse_ring(ring: Any, where: str) -> np.ndarray:
    if not isinstance(ring, list):
        raise InvalidGeometry("a linear ring is a list of positions", where)
    if len(ring) < 4:
        raise InvalidGeometry(f"a linear ring needs at least 4 positions, got {len(ring)}", where)
    pts = np.array([parse_position(p, f"{where}[{i}]") for i, p in enumerate(ring)], dtype=float)
    if not np.array_equal(pts[0], pts[-1]):
        raise InvalidGeometry("a linear ring must be closed (last position equal to the first)", where)
    span = pts[:, 0].max() - pts[:, 0].min()
    if span > 180.0:
        raise InvalidGeometry(
            f"ring spans {span:.1f}° of longitude; a polygon crossing the antimeridian must be cut "
            "at ±180 into a MultiPolygon (RFC 7946 §3.1.9)",
            where,
        )
    return pts


def _parse_polygon(coords: Any, where: str) -> tuple[shapely.Polygon, int]:
    if not isinstance(coords, list) or not coords:
        raise InvalidGeometry("a Polygon is a non-empty list of linear rings", where)
    rings = [_parse_ring(r, f"{where}[{i}]") for i, r in enumerate(coords)]
    return shapely.Polygon(rings[0], rings[1:]), sum(len(r) for r in rings)


def _problem_location(geom) -> str:
    reason = shapely.is_valid_reason(geom)
    m = re.search(r"\[([-\d.eE+]+)\s+([-\d.eE+]+)\]", reason or "")
    if m:
        lng, lat = float(m.group(1)), float(m.group(2))
        kind = reason.split("[")[0].strip().lower()
        return f"{kind} near lng {lng:.5f}, lat {lat:.5f}"
    return (reason or "invalid geometry").lower()


def _repair(geom, where: str):
    fixed = shapely.make_valid(geom)
    polys = [g for g in shapely.get_parts(fixed) if g.geom_type in ("Polygon", "MultiPolygon") and not g.is_empty]
    if not polys:
        raise InvalidGeometry("the repaired geometry has no area (not polygonal); fix the rings", where)
    flat = [p for g in polys for p in shapely.get_parts(g)]
    out = flat[0] if len(flat) == 1 else shapely.MultiPolygon(flat)
    if not out.is_valid:
        out = shapely.union_all(flat)
    return out


def check_bbox(obj: dict, where: str) -> None:
    """A GeoJSON object's ``bbox`` is ignored, but when present it must be
    what RFC 7946 says it is: an array of numbers (else a 400 naming it)."""
    if "bbox" in obj:
        bbox = obj["bbox"]
        if not isinstance(bbox, list) or not all(is_finite_number(v) for v in bbox):
            raise InvalidInput("bbox must be an array of numbers", f"{where}.bbox" if where else "bbox")


def parse_polygonal(geometry: dict, where: str, *, repair: bool) -> tuple[Any, bool]:
    """A GeoJSON Polygon/MultiPolygon → valid shapely geometry (CCW shells)."""
    check_bbox(geometry, where)
    gtype = geometry.get("type")
    coords = geometry.get("coordinates")
    where_c = f"{where}.coordinates"
    if gtype == "Polygon":
        check_rings(1, len(coords) - 1 if isinstance(coords, list) and coords else 0, where)
        geom, nverts = _parse_polygon(coords, where_c)
    else:
        if not isinstance(coords, list) or not coords:
            raise InvalidGeometry("a MultiPolygon is a non-empty list of polygons", where_c)
        check_rings(len(coords), sum(len(p) - 1 for p in coords if isinstance(p, list) and p), where)
        parts = [_parse_polygon(p, f"{where_c}[{i}]") for i, p in enumerate(coords)]
        geom = shapely.MultiPolygon([p for p, _ in parts])
        nverts = sum(n for _, n in parts)
    if nverts > MAX_VERTICES:
        raise InvalidGeometry(f"{nverts} vertices; a fence may have at most {MAX_VERTICES}", where)
    repaired = False
    if not geom.is_valid:
        if not repair:
            raise InvalidGeometry(
                f"invalid polygon: {_problem_location(geom)}; pass ?repair=true to repair it", where
            )
        geom = _repair(geom, where)
        repaired = True
    if geom.is_empty or geom.area == 0:
        raise InvalidGeometry("the polygon has no area", where)
    return shapely.orient_polygons(geom), repaired


def circle_polygon(lat: float, lng: float, radius_m: float, where: str = "geometry"):
    """A polygon that contains the geodesic circle (vertices pushed out so the
    chords lie outside the circle), cut at the antimeridian if it crosses."""
    r_out = radius_m / math.cos(math.pi / CIRCLE_SEGMENTS)
    bearings = np.linspace(0.0, 360.0, CIRCLE_SEGMENTS, endpoint=False)
    lats, lngs = destination_latlng(lat, lng, bearings, r_out)
    if np.abs(lats).max() >= 89.999 or abs(lat) + radius_m / 111_000.0 >= 89.9:
        raise InvalidGeometry("a circle may not reach a pole", where)
    ring = np.column_stack([lngs[::-1], lats[::-1]])  # counter-clockwise
    poly = shapely.Polygon(ring)
    if lngs.min() < -180.0 or lngs.max() > 180.0:
        shift = 360.0 if lngs.min() < -180.0 else -360.0
        inside = shapely.clip_by_rect(poly, -180.0, -90.0, 180.0, 90.0)
        moved = shapely.transform(poly, lambda xy: xy + np.array([shift, 0.0]))
        other = shapely.clip_by_rect(moved, -180.0, -90.0, 180.0, 90.0)
        parts = [g for g in (inside, other) if not g.is_empty]
        poly = shapely.MultiPolygon([p for g in parts for p in shapely.get_parts(g)])
    return shapely.orient_polygons(poly)


def _parse_props(props: Any, where: str) -> dict[str, Any]:
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise InvalidInput("properties must be an object", where)
    out: dict[str, Any] = {}
    name = props.get("name", props.get("NAME"))
    if name is not None:
        if not isinstance(name, str) or len(name) > MAX_NAME_LEN:
            raise InvalidInput(f"name must be a string of at most {MAX_NAME_LEN} characters", f"{where}.name")
        out["name"] = name
    tags = props.get("tags", [])
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        raise InvalidInput(f"tags must be a list of at most {MAX_TAGS} strings", f"{where}.tags")
    clean_tags: list[str] = []
    for i, t in enumerate(tags):
        if not isinstance(t, str) or not t.strip() or len(t) > MAX_TAG_LEN:
            raise InvalidInput(f"a tag is a non-empty string of at most {MAX_TAG_LEN} characters", f"{where}.tags[{i}]")
        if t not in clean_tags:
            clean_tags.append(t)
    out["tags"] = tuple(clean_tags)
    metadata = props.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_KEYS:
        raise InvalidInput(f"metadata must be an object of at most {MAX_METADATA_KEYS} string values", f"{where}.metadata")
    for k, v in metadata.items():
        if not isinstance(v, str) or len(v) > MAX_METADATA_VALUE_LEN or not k or len(k) > 128:
            raise InvalidInput(
                f"metadata values are strings of at most {MAX_METADATA_VALUE_LEN} characters", f"{where}.metadata.{k}"
            )
    out["metadata"] = dict(metadata)
    dwell = props.get("dwell_minutes")
    if dwell is not None:
        if not is_finite_number(dwell) or not 0 <= dwell <= MAX_DWELL_MINUTES:
            raise InvalidInput(f"dwell_minutes must be a number from 0 to {MAX_DWELL_MINUTES}", f"{where}.dwell_minutes")
        out["dwell_minutes"] = float(dwell) if not float(dwell).is_integer() else int(dwell)
    enabled = props.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidInput("enabled must be true or false", f"{where}.enabled")
    out["enabled"] = enabled
    return out


def _h3_region(cells_in: Any, where: str) -> tuple[tuple[int, ...], Any]:
    if not isinstance(cells_in, list) or not cells_in:
        raise InvalidInput("h3_cells must be a non-empty list of H3 cell ids", where)
    if len(cells_in) > MAX_H3_CELLS:
        raise InvalidInput(f"at most {MAX_H3_CELLS} H3 cells per fence", where)
    cells: list[int] = []
    for i, c in enumerate(cells_in):
        try:
            value = int(c, 16) if isinstance(c, str) else None
        except ValueError:
            value = None
        if value is None or not h3i.is_valid_cell(value):
            raise InvalidInput("not a valid H3 cell id", f"{where}[{i}]")
        cells.append(value)
    cells = sorted(set(cells))
    check_h3_cells(cells, where)
    polys = cell_polygons(cells)
    return tuple(cells), shapely.orient_polygons(shapely.union_all(polys))


def parse_feature(
    feature: Any, fence_id: str, *, where: str = "", repair: bool = False, budget: GeometryBudget | None = FENCE_BUDGET
) -> FenceDefinition:
    """Validate one GeoJSON Feature as a fence, within ``budget`` (``None``:
    no complexity check, for a fence already stored).

    ``where`` prefixes field names (``features[3]``) in error messages.
    """
    pre = f"{where}." if where else ""
    if not isinstance(feature, dict):
        raise InvalidInput("expected a GeoJSON Feature object", where or "body")
    if feature.get("type") != "Feature":
        raise InvalidInput('expected "type": "Feature"', f"{pre}type")
    if "geometry" not in feature:
        raise InvalidGeometry("a Feature needs a geometry member (null for an H3 region)", f"{pre}geometry")
    check_bbox(feature, where)
    props = feature.get("properties")
    parsed = _parse_props(props, f"{pre}properties")
    props = props or {}
    geometry = feature["geometry"]
    gwhere = f"{pre}geometry"
    center: tuple[float, float] | None = None
    radius: float | None = None
    h3_cells: tuple[int, ...] = ()
    repaired = False
    if geometry is None:
        if "h3_cells" not in props:
            raise InvalidGeometry("geometry is null: give properties.h3_cells for an H3 region", gwhere)
        kind = "h3"
        h3_cells, geom = _h3_region(props["h3_cells"], f"{pre}properties.h3_cells")
    elif not isinstance(geometry, dict):
        raise InvalidGeometry("geometry must be a GeoJSON geometry object or null", gwhere)
    elif geometry.get("type") in ("Polygon", "MultiPolygon"):
        kind = "polygon"
        geom, repaired = parse_polygonal(geometry, gwhere, repair=repair)
    elif geometry.get("type") == "Point":
        kind = "circle"
        check_bbox(geometry, gwhere)
        lng, lat = parse_position(geometry.get("coordinates"), f"{gwhere}.coordinates")
        radius = props.get("radius_m")
        if not is_finite_number(radius) or not MIN_RADIUS_M <= radius <= MAX_RADIUS_M:
            raise InvalidInput(
                f"a Point fence needs properties.radius_m from {MIN_RADIUS_M:g} to {MAX_RADIUS_M:g} metres",
                f"{pre}properties.radius_m",
            )
        center, radius = (lat, lng), float(radius)
        geom = circle_polygon(lat, lng, radius, gwhere)
    else:
        raise InvalidGeometry(
            f"unsupported geometry type {geometry.get('type')!r}: use Polygon, MultiPolygon, Point (with radius_m) or null (with h3_cells)",
            f"{gwhere}.type",
        )
    if kind == "circle" and radius is not None:
        area = math.pi * radius**2 / 1e6
    else:
        area = geometry_area_km2(geom)
    if area > MAX_AREA_KM2:
        raise InvalidGeometry(f"area {area:,.0f} km² exceeds the limit of {MAX_AREA_KM2:,.0f} km²", gwhere)
    d = FenceDefinition(
        fence_id=fence_id,
        kind=kind,
        geometry=geom,
        name=parsed.get("name", fence_id),
        tags=parsed["tags"],
        metadata=parsed["metadata"],
        dwell_minutes=parsed.get("dwell_minutes"),
        enabled=parsed["enabled"],
        center=center,
        radius_m=radius,
        h3_cells=h3_cells,
        area_km2=round(area, 6),
        repaired=repaired,
    )
    if budget is None:
        return d
    return replace(d, work=check_fence(d, where, budget).work)
