"""The H3 cover of a fence: index cells at ladder resolutions, each flagged
*inside* (every point it stands for is in the fence: no exact test needed) or
*boundary* (an exact test decides).

The cover is computed top-down: the coarsest-ladder cells near the fence are
classified; boundary cells are split into their children two resolutions
finer, until resolution 9 or until the boundary would exceed
``max_boundary`` cells. Large fences therefore stop at coarse boundary
cells (few index rows; exact tests are cheap in memory), small ones reach
resolution 9. The result is already compact at ladder resolutions, so
``h3.compact_cells`` (quadratic on some input sizes) is never needed.

Boundary cells also cover a ``buffer_m`` ring outside the fence, so a ping
of a device inside a fence always finds the fence's row while it is within
the exit buffer.

The grown (*outer*) and shrunk (*inner*) shapes are built part by part and
hole by hole, then merged with ``union_all`` (a cascaded union): GEOS's
buffer of a whole MultiPolygon, or the negative buffer of a polygon whose
holes grow into each other, merges the pieces pairwise and took minutes
for a polygon of 900 holes or a MultiPolygon of 2,500 parts.
"""

from __future__ import annotations

from dataclasses import dataclass

import h3.api.basic_int as h3i
import numpy as np
import shapely

from chalicelib.geo.cells import LADDER, FINEST, cell_polygons, coarse_cells, margin_deg
from chalicelib.geo.sphere import metres_to_degrees

#: The largest exit buffer (``clamp(accuracy_m, 10, 200)``).
EXIT_BUFFER_M = 200.0
DEFAULT_MAX_BOUNDARY = 96


@dataclass(frozen=True)
class Cover:
    """Index cells (uint64) and, per cell, whether it is wholly inside."""

    cells: np.ndarray
    inside: np.ndarray

    def __len__(self) -> int:
        return len(self.cells)

    def as_dict(self) -> dict[int, bool]:
        return {int(c): bool(i) for c, i in zip(self.cells, self.inside)}


def _max_abs_lat(geom) -> float:
    minx, miny, maxx, maxy = geom.bounds
    return max(abs(miny), abs(maxy))


def _polygons(geom) -> list:
    return [p for p in shapely.get_parts(geom) if p.geom_type == "Polygon" and not p.is_empty]


def grow(geom, dist: float):
    """Every point within ``dist`` (degrees, > 0) of ``geom``: each part
    grown on its own (its holes shrink or vanish), then merged."""
    parts = shapely.buffer(np.array(_polygons(geom), dtype=object), dist, quad_segs=2)
    return parts[0] if len(parts) == 1 else shapely.union_all(parts)


def shrink(geom, dist: float):
    """The points of ``geom`` at least ``dist`` (degrees, > 0) from its
    boundary: each shell shrunk, less its holes grown (merged once)."""
    out = []
    for poly in _polygons(geom):
        shell = shapely.buffer(shapely.Polygon(poly.exterior), -dist, quad_segs=2)
        if shell.is_empty:
            continue
        holes = [shapely.Polygon(h) for h in poly.interiors]
        if holes:
            grown = shapely.buffer(np.array(holes, dtype=object), dist, quad_segs=2)
            shell = shapely.difference(shell, shapely.union_all(grown))
        if not shell.is_empty:
            out.append(shell)
    if not out:
        return shapely.Polygon()
    return out[0] if len(out) == 1 else shapely.union_all(out)


def cover_geometry(
    geom,
    *,
    buffer_m: float = EXIT_BUFFER_M,
    max_boundary: int = DEFAULT_MAX_BOUNDARY,
    finest: int = FINEST,
) -> Cover:
    """Cover a shapely (Multi)Polygon in lng/lat with ladder cells.

    >>> sq = shapely.box(-122.72, 38.43, -122.70, 38.45)
    >>> cov = cover_geometry(sq)
    >>> bool(cov.inside.any()) and bool((~cov.inside).any())
    True
    """
    lat_hi = min(_max_abs_lat(geom) + 0.5, 89.9)
    buf = metres_to_degrees(buffer_m, lat_hi) if buffer_m > 0 else 0.0
    out_cells: list[np.ndarray] = []
    out_inside: list[np.ndarray] = []

    coarse, coarse_polys, tree = coarse_cells()
    res = LADDER[0]
    m = margin_deg(res, lat_hi)
    outer = grow(geom, buf + m)
    idx = tree.query(outer, predicate="intersects")
    cands = coarse[np.sort(idx)]
    polys = coarse_polys[np.sort(idx)]

    while True:
        m = margin_deg(res, lat_hi)
        outer = grow(geom, buf + m) if (buf + m) > 0 else geom
        inner = shrink(geom, m) if m > 0 else geom
        shapely.prepare(outer)
        shapely.prepare(inner)
        keep = shapely.intersects(outer, polys)
        inside = keep & shapely.contains(inner, polys) if not inner.is_empty else np.zeros(len(polys), bool)
        if inside.any():
            out_cells.append(cands[inside])
            out_inside.append(np.ones(int(inside.sum()), bool))
        boundary = cands[keep & ~inside]
        nxt = next((r for r in LADDER if r > res and r <= finest), None)
        if len(boundary) == 0:
            break
        if nxt is None or len(boundary) * 7 > max_boundary:
            out_cells.append(boundary)
            out_inside.append(np.zeros(len(boundary), bool))
            break
        children = [ch for c in boundary for ch in h3i.cell_to_children(int(c), nxt)]
        cands = np.array(children, dtype=np.uint64)
        polys = cell_polygons(cands)
        res = nxt

    if not out_cells:
        return Cover(np.zeros(0, np.uint64), np.zeros(0, bool))
    return Cover(np.concatenate(out_cells).astype(np.uint64), np.concatenate(out_inside))


def cover_contains(cover: Cover, cell9: int) -> bool | None:
    """Look a resolution-9 cell up in a cover: True (inside), False
    (boundary: test exactly) or None (not covered)."""
    lookup = cover.as_dict()
    from chalicelib.geo.cells import ladder_ancestors

    for anc in ladder_ancestors(cell9):
        if anc in lookup:
            return lookup[anc]
    return None
