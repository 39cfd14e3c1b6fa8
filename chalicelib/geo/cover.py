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
from typing import Any

import h3.api.basic_int as h3i
import numpy as np
import shapely

from chalicelib.geo.cells import LADDER, FINEST, cell_polygons, coarse_cells, margin_deg
from chalicelib.geo.sphere import metres_to_degrees

#: The largest exit buffer (``clamp(accuracy_m, 10, 200)``).
EXIT_BUFFER_M = 200.0
DEFAULT_MAX_BOUNDARY = 96
#: Before growing and shrinking, each ring is simplified (on its own) by
#: this share of the level's margin, and grown / shrunk by as much more: the
#: grown shape still holds every point it must, the shrunk one no point it
#: must not. A zigzag H3 outline of 800 vertices buffered in 1.7 s; simplified,
#: in 0.04 s.
SIMPLIFY_SHARE = 0.1


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


#: Rings of at most this many positions are not simplified (nothing to gain).
SIMPLIFY_MIN_POSITIONS = 32


def _simplify(rings: np.ndarray, tol: float) -> np.ndarray:
    if tol <= 0 or not len(rings):
        return rings
    big = shapely.get_num_coordinates(rings) > SIMPLIFY_MIN_POSITIONS
    if big.any():
        rings = rings.copy()
        rings[big] = shapely.simplify(rings[big], tol)
    return rings


def _rings(geom, tol: float) -> tuple[np.ndarray, list[tuple[Any, np.ndarray]]]:
    """The parts as simple polygons: the shells of parts without holes (one
    array), and (shell, holes) of the others; every ring simplified on its
    own by ``tol`` (cheap, and each stays valid)."""
    polys = _polygons(geom)
    plain = _simplify(np.array([p for p in polys if not p.interiors], dtype=object), tol)
    holed = []
    for poly in (p for p in polys if p.interiors):
        rings = np.array([shapely.Polygon(poly.exterior)] + [shapely.Polygon(h) for h in poly.interiors], dtype=object)
        rings = _simplify(rings, tol)
        holed.append((rings[0], rings[1:]))
    return plain, holed


def _merge(pieces) -> Any:
    pieces = [p for p in pieces if not p.is_empty]
    if not pieces:
        return shapely.Polygon()
    return pieces[0] if len(pieces) == 1 else shapely.union_all(pieces)


def grow(geom, dist: float, tol: float = 0.0) -> np.ndarray:
    """Pieces whose union holds every point within ``dist`` (degrees, > 0)
    of ``geom``: each part's shell grown, less its holes shrunk (the parts
    are not merged: the pieces go into an STRtree). ``tol`` > 0 simplifies
    the rings first and grows by as much more."""
    d = dist + tol
    plain, holed = _rings(geom, tol)
    pieces = list(shapely.buffer(plain, d, quad_segs=2)) if len(plain) else []
    for shell, holes in holed:
        g = shapely.buffer(shell, d, quad_segs=2)
        left = [h for h in shapely.buffer(holes, -d, quad_segs=2) if not h.is_empty]
        pieces.append(shapely.difference(g, _merge(left)) if left else g)
    return np.array([p for p in pieces if not p.is_empty], dtype=object)


def shrink(geom, dist: float, tol: float = 0.0) -> np.ndarray:
    """Disjoint pieces holding only points of ``geom`` at least ``dist``
    (degrees, > 0) from its boundary: each shell shrunk, less its holes
    grown. ``tol`` > 0 simplifies the rings first and shrinks by as much more."""
    d = dist + tol
    plain, holed = _rings(geom, tol)
    pieces = list(shapely.buffer(plain, -d, quad_segs=2)) if len(plain) else []
    for shell, holes in holed:
        g = shapely.buffer(shell, -d, quad_segs=2)
        if not g.is_empty:
            pieces.append(shapely.difference(g, _merge(list(shapely.buffer(holes, d, quad_segs=2)))))
    return np.array([p for p in pieces if not p.is_empty], dtype=object)


def _hits(pieces: np.ndarray, polys: np.ndarray, predicate: str) -> np.ndarray:
    """Which of ``polys`` satisfy ``predicate`` against some piece
    (``within``: a connected cell within the union of disjoint pieces is
    within one of them)."""
    out = np.zeros(len(polys), bool)
    if len(pieces) and len(polys):
        idx = shapely.STRtree(pieces).query(polys, predicate=predicate)
        out[idx[0]] = True
    return out


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
    outer = grow(geom, buf + m) if (buf + m) > 0 else np.array(_polygons(geom), dtype=object)
    idx = np.unique(tree.query(outer)[1]) if len(outer) else np.zeros(0, np.intp)
    cands = coarse[idx]
    polys = coarse_polys[idx]

    while True:
        m = margin_deg(res, lat_hi)
        tol = SIMPLIFY_SHARE * m
        outer = grow(geom, buf + m, tol) if (buf + m) > 0 else np.array(_polygons(geom), dtype=object)
        inner = shrink(geom, m, tol) if m > 0 else np.array(_polygons(geom), dtype=object)
        keep = _hits(outer, polys, "intersects")
        inside = keep & _hits(inner, polys, "within")
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
