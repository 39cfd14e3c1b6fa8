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

Cells are classified by distances, never by buffers: a cell is kept when
it lies within ``buffer + margin`` of the fence (``dwithin``) and inside
when the fence contains it and its boundary is farther than the margin —
exact, where a buffer is an approximation. GEOS's buffer of a whole
MultiPolygon, of a polygon whose holes grow into each other, or of a
spiky ring merges the offset pieces pairwise: 900 holes took minutes, and
a 10,000-vertex zigzag ring 400 s; prepared distance tests take
milliseconds.
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
    shapely.prepare(geom)
    edge = shapely.boundary(geom)
    shapely.prepare(edge)
    idx = np.unique(tree.query(geom, predicate="dwithin", distance=buf + m))
    cands = coarse[idx]
    polys = coarse_polys[idx]

    while True:
        m = margin_deg(res, lat_hi)
        keep = shapely.dwithin(geom, polys, buf + m)
        inside = keep & shapely.contains(geom, polys) & ~shapely.dwithin(edge, polys, m)
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
