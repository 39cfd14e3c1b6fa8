"""One geometry complexity budget for fences, imports, area estimates and
alert areas: what a shape may cost before any expensive work starts.

A shape is checked on cheap numbers only — vertices, holes, parts, the
stored bytes of its definition, and an *estimate* of its H3 cover (index
rows, candidate cells tested, work) computed from area, perimeter, parts
and the cover's own resolution rule — never by running the cover. Work is
counted in units of about a millisecond of one core of the reference
machine (cover plus index writes), so a fence within :data:`FENCE_BUDGET`
indexes in about two seconds at most, and an import within
:data:`MAX_IMPORT_WORK` in a few seconds, far inside API Gateway's 29 s.

Two forms: :func:`check_area` returns a reason (or ``None``) for any
shapely (Multi)Polygon, e.g. a weather alert area; :func:`check_fence`
raises :class:`~chalicelib.errors.InvalidGeometry` naming the limit and
the field for a parsed fence.
"""

from __future__ import annotations

import functools
import json
import math
import zlib
from dataclasses import dataclass
from typing import Any, Sequence

import h3.api.basic_int as h3i
import numpy as np
import shapely

from chalicelib.errors import InvalidGeometry, InvalidInput
from chalicelib.geo.cells import FINEST, LADDER, coarse_cells, margin_deg
from chalicelib.geo.cover import DEFAULT_MAX_BOUNDARY, EXIT_BUFFER_M
from chalicelib.geo.sphere import M_PER_DEG_LAT, geometry_area_km2, haversine_m, metres_to_degrees

#: A DynamoDB item holds at most 400 KB; a fence's two items (its version's
#: shape, its META with the Feature and the cover) keep their blobs under
#: this, leaving room for names, tags and attribute names.
MAX_STORED_BYTES = 300_000
#: Work per index row written (a 25-row batch write costs ~10-15 ms).
ROW_WORK = 0.5
#: Fixed work per fence (parse, prepare, the META flip and the version item).
FENCE_WORK = 4.0
#: Work per candidate cell (its polygon built, distance-tested to the fence).
CANDIDATE_WORK = 0.02
#: Work per vertex and ladder level (parsing, validity, prepared distances).
VERTEX_WORK = 0.01
#: Work per hole and ladder level. Priced as when the cover buffered each
#: hole (it now uses distances and is cheaper): the estimate errs high.
HOLE_WORK = 0.25
#: Work per part and ladder level (as for holes).
PART_WORK = 0.1
#: The estimate splits on while this share of its boundary band would stay
#: within ``max_boundary``: near the cover's threshold it takes the costlier path.
SPLIT_SHARE = 0.75
#: An import's total estimated work: an answer within about two seconds on
#: the local stack (40 circles of 100 km, priced ~4,460, took 3.1 s there on
#: an idle machine; 20 fit here). Larger files go in several requests
#: (``tools.fences`` sends 50 features at a time and splits at the feature
#: an answer names).
MAX_IMPORT_WORK = 2_500.0


@dataclass(frozen=True)
class GeometryBudget:
    """Limits on one shape, and the cover it is priced with."""

    max_vertices: int = 10_000
    max_holes: int = 250
    max_parts: int = 500
    max_rows: int = 2_000  # estimated cover cells (a fence: index rows)
    max_work: float = 2_000.0  # estimated work units (≈ ms)
    buffer_m: float = EXIT_BUFFER_M
    max_boundary: int = DEFAULT_MAX_BOUNDARY
    finest: int = FINEST
    row_work: float = ROW_WORK  # 0 when the cover is not written


#: A fence: rows are written, boundary cells cover the exit buffer.
FENCE_BUDGET = GeometryBudget()
#: An area planned against the device region index (an alert area, an
#: audience estimate): no buffer, a finer boundary, nothing written.
ALERT_BUDGET = GeometryBudget(buffer_m=0.0, max_boundary=1000, finest=7, max_rows=20_000, row_work=0.0)


@dataclass(frozen=True)
class CoverEstimate:
    """What the cover of a shape is expected to cost."""

    rows: int  # cells in the cover
    candidates: int  # cells tested on the way
    resolution: int  # where the boundary stops
    work: float  # units of ≈ 1 ms


@functools.lru_cache(maxsize=None)
def _cell_km(res: int) -> tuple[float, float]:
    """(average hexagon area km², average edge km) at ``res``."""
    return h3i.average_hexagon_area(res, unit="km^2"), h3i.average_hexagon_edge_length(res, unit="km")


def _polygons(geom: Any) -> list:
    return [p for p in shapely.get_parts(geom) if p.geom_type == "Polygon" and not p.is_empty]


def _ring_lengths_km(polys: list) -> np.ndarray:
    """Length of every ring (shells and holes) in km on the sphere."""
    rings = shapely.get_rings(np.array(polys, dtype=object))
    xy, idx = shapely.get_coordinates(rings, return_index=True)
    if len(xy) < 2:
        return np.zeros(len(rings))
    seg = haversine_m(xy[:-1, 1], xy[:-1, 0], xy[1:, 1], xy[1:, 0]) / 1000.0
    same = idx[:-1] == idx[1:]
    return np.bincount(idx[:-1][same], weights=seg[same], minlength=len(rings))


def _coarse_candidates(polys: list, grow_deg: float) -> int:
    """An upper bound on the coarsest-level cells the cover tests: those
    meeting the parts' bounding boxes grown by ``grow_deg``."""
    _, _, tree = coarse_cells()
    b = shapely.bounds(np.array(polys, dtype=object))
    boxes = shapely.box(b[:, 0] - grow_deg, b[:, 1] - grow_deg, b[:, 2] + grow_deg, b[:, 3] + grow_deg)
    return len(np.unique(tree.query(boxes)[1]))


def estimate_cover(geom: Any, budget: GeometryBudget = FENCE_BUDGET, area_km2: float | None = None) -> CoverEstimate:
    """Estimate the cover of ``geom`` (lng/lat) level by level, as the cover
    proceeds: at each ladder resolution, cells on the boundary band (the
    fence's perimeter widened by the buffer and the cell margins, plus a
    disc per ring for small rings) and cells newly inside; the boundary is
    split while it stays within ``max_boundary``."""
    polys = _polygons(geom)
    if not polys:
        return CoverEstimate(0, 0, LADDER[0], FENCE_WORK)
    area = geometry_area_km2(geom) if area_km2 is None else area_km2
    lengths = _ring_lengths_km(polys)
    perimeter = float(lengths.sum())
    vertices = int(shapely.get_num_coordinates(geom))
    holes = sum(len(p.interiors) for p in polys)
    minx, miny, maxx, maxy = shapely.total_bounds(np.array(polys, dtype=object))
    lat_hi = min(max(abs(miny), abs(maxy)) + 0.5, 89.9)
    buf_km = budget.buffer_m / 1000.0
    km_per_deg = M_PER_DEG_LAT / 1000.0 * math.cos(math.radians(min(lat_hi, 89.0)))

    levels = [r for r in LADDER if r <= budget.finest]
    rows = candidates = 0.0
    inside_area = 0.0
    prev_boundary = 0.0
    res = levels[0]
    for n, res in enumerate(levels):
        cell_area, edge = _cell_km(res)
        m_km = margin_deg(res, lat_hi) * km_per_deg
        half = (buf_km + 2 * m_km) / 2 + edge  # half-width of the band, cells included
        band = float(np.sum(2 * half * lengths) + len(lengths) * math.pi * half * half) / cell_area
        now_inside = max(0.0, area - half * perimeter)
        inside = max(0.0, now_inside - inside_area) / cell_area
        inside_area = max(inside_area, now_inside)
        if n == 0:
            # every coarse cell met by the grown bounding boxes: a bound
            tested = float(_coarse_candidates(polys, metres_to_degrees(budget.buffer_m, lat_hi) + margin_deg(res, lat_hi)))
            high = max(1.0, tested - inside)
        else:
            tested = 49.0 * prev_boundary
            high = max(1.0, min(band, tested))
        last = n == len(levels) - 1 or min(band, high) * SPLIT_SHARE * 7 > budget.max_boundary
        candidates += tested
        rows += inside + (high if last else 0.0)
        if last:
            break
        prev_boundary = high
    n_levels = levels.index(res) + 1
    work = (
        FENCE_WORK
        + CANDIDATE_WORK * candidates
        + n_levels * (VERTEX_WORK * vertices + HOLE_WORK * holes + PART_WORK * len(polys))
        + budget.row_work * rows
    )
    return CoverEstimate(int(math.ceil(rows)), int(math.ceil(candidates)), res, work)


def check_area(geom: Any, budget: GeometryBudget = FENCE_BUDGET) -> str | None:
    """Why ``geom`` (a shapely (Multi)Polygon in lng/lat) is beyond
    ``budget`` — a sentence naming the limit — or ``None`` when it is within."""
    reason, _ = _check(geom, budget)
    return reason


def check_rings(parts: int, holes: int, where: str, budget: GeometryBudget = FENCE_BUDGET) -> None:
    """The parser's early check, on the GeoJSON's own counts (before the
    shape is built or validated): :class:`InvalidGeometry` naming ``where``."""
    if holes > budget.max_holes:
        raise InvalidGeometry(f"{holes:,} holes; a fence may have at most {budget.max_holes:,}", where)
    if parts > budget.max_parts:
        raise InvalidGeometry(f"{parts:,} parts; a fence may have at most {budget.max_parts:,}", where)


#: Stored bytes an H3 region's outline takes at least, per cell edge not
#: shared with another of its cells (a WKB position is 16 bytes; compressed,
#: 14 for scattered cells).
BYTES_PER_OUTLINE_EDGE = 12


def check_h3_cells(cells: Sequence[int], where: str) -> None:
    """Before an H3 region's cells are merged into its outline: refuse one
    whose outline alone would exceed :data:`MAX_STORED_BYTES` (scattered
    cells share no edges: 5,000 of them make a 5,000-part outline)."""
    members = set(cells)
    shared = sum(len(members.intersection(h3i.grid_disk(c, 1))) - 1 for c in cells)
    outline = 6 * len(members) - shared
    low = BYTES_PER_OUTLINE_EDGE * outline
    if low > MAX_STORED_BYTES:
        raise InvalidGeometry(
            f"too complex to index: {len(members):,} cells with {outline:,} outline edges take more than {low:,} bytes "
            f"stored; a fence's definition may take at most {MAX_STORED_BYTES:,}; merge or split the cells",
            where,
        )


def _check(geom: Any, budget: GeometryBudget) -> tuple[str | None, CoverEstimate | None]:
    vertices = int(shapely.get_num_coordinates(geom))
    if vertices > budget.max_vertices:
        return f"{vertices:,} vertices; at most {budget.max_vertices:,}", None
    polys = _polygons(geom)
    holes = sum(len(p.interiors) for p in polys)
    if holes > budget.max_holes:
        return f"{holes:,} holes; at most {budget.max_holes:,}", None
    if len(polys) > budget.max_parts:
        return f"{len(polys):,} parts; at most {budget.max_parts:,}", None
    return _check_cover(estimate_cover(geom, budget), budget)


def _check_cover(est: CoverEstimate, budget: GeometryBudget) -> tuple[str | None, CoverEstimate]:
    if est.rows > budget.max_rows:
        return f"about {est.rows:,} index cells; at most {budget.max_rows:,}", est
    if est.work > budget.max_work:
        return f"about {est.work:,.0f} units of indexing work; at most {budget.max_work:,.0f}", est
    return None, est


def stored_bytes(d: Any, est_rows: int) -> tuple[int, int]:
    """Bytes of a fence's two stored blobs: the version's shape, and the
    META item's Feature plus its cover (≤ 9 bytes a row, uncompressed)."""
    from chalicelib.geo.shape import FenceShape

    shape = len(FenceShape.from_definition(d).to_blob())
    feature = len(zlib.compress(json.dumps(d.feature(), separators=(",", ":")).encode(), 6))
    return shape, feature + 9 * est_rows


def check_fence(d: Any, where: str = "", budget: GeometryBudget = FENCE_BUDGET) -> CoverEstimate:
    """Raise :class:`InvalidGeometry` when a parsed fence (a
    ``FenceDefinition``) is beyond ``budget``; else its cover estimate.

    Polygons are held to every limit; H3 regions (their cell count is
    limited by the parser) and circles to the cover and stored-bytes limits
    only, since a set of scattered cells is many parts by nature.
    """
    pre = f"{where}." if where else ""
    field = f"{pre}properties.h3_cells" if d.kind == "h3" else f"{pre}geometry"
    if d.kind == "polygon":
        reason, est = _check(d.geometry, budget)
    else:
        reason, est = _check_cover(estimate_cover(d.geometry, budget, d.area_km2), budget)
    if reason is None and est is not None:
        shape_b, meta_b = stored_bytes(d, est.rows)
        if max(shape_b, meta_b) > MAX_STORED_BYTES:
            reason = f"about {max(shape_b, meta_b):,} bytes stored; a fence's definition may take at most {MAX_STORED_BYTES:,}"
    if reason is not None or est is None:
        raise InvalidGeometry(f"too complex to index: {reason}; simplify or split the fence", field)
    return est


class ImportBudget:
    """An import's running total of estimated work, fed feature by feature
    as they are parsed: past ``max_work`` it raises at once (the rest is
    never parsed) — :class:`InvalidInput` naming ``where``, saying how
    many leading features fit. The import then writes nothing."""

    def __init__(self, max_work: float = MAX_IMPORT_WORK, where: str = "features") -> None:
        self.max_work = max_work
        self.where = where
        self.total = 0.0

    def add(self, index: int, work: float) -> None:
        if self.total + work > self.max_work:
            raise InvalidInput(
                f"the import's estimated indexing work exceeds the budget of {self.max_work:,.0f} units per request "
                f"at {self.where}[{index}]; the first {index} features fit: split the file",
                self.where,
            )
        self.total += work


def check_import(works: Sequence[float], *, where: str = "features", max_work: float = MAX_IMPORT_WORK) -> float:
    """The total of per-feature works (``FenceDefinition.work``) within the
    import budget, or :class:`InvalidInput` as :class:`ImportBudget` raises."""
    budget = ImportBudget(max_work, where)
    for i, w in enumerate(works):
        budget.add(i, w)
    return budget.total
