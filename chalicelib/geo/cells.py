"""H3 cells as integers: ladder parents in numpy, and cells as shapely polygons.

The index works on the *logical* H3 hierarchy: a cover cell at resolution r
stands for every point whose resolution-9 cell has it as ancestor. Those
points lie within a small fringe around the cell's hexagon (children do not
tile their parent exactly), so classification uses :func:`margin_deg`.
"""

from __future__ import annotations

import functools
import math
import threading

import h3.api.basic_int as h3i
import numpy as np
import shapely

from chalicelib.geo.sphere import EARTH_RADIUS_M, metres_to_degrees

#: Resolutions at which index rows are stored. A ping reads the ancestors of
#: its resolution-9 cell at exactly these resolutions.
LADDER: tuple[int, ...] = (3, 5, 7, 9)
FINEST = LADDER[-1]

_RES_SHIFT = np.uint64(52)
_RES_MASK = np.uint64(0xF) << _RES_SHIFT


def to_parents(cells: np.ndarray, res: int) -> np.ndarray:
    """Vectorised ``cell_to_parent`` for uint64 cells of resolution ≥ ``res``.

    >>> c = h3i.latlng_to_cell(38.44, -122.71, 9)
    >>> int(to_parents(np.array([c], dtype=np.uint64), 5)[0]) == h3i.cell_to_parent(c, 5)
    True
    """
    cells = np.asarray(cells, dtype=np.uint64)
    digits = np.uint64((1 << (3 * (15 - res))) - 1)
    return ((cells & ~_RES_MASK) | (np.uint64(res) << _RES_SHIFT)) | digits


def ladder_ancestors(cell: int) -> list[int]:
    """The resolution-9 cell ``cell`` and its ancestors at every ladder level."""
    arr = np.array([cell], dtype=np.uint64)
    return [int(to_parents(arr, r)[0]) for r in LADDER]


def parent_cell(cell: int, res: int) -> int:
    """The ancestor of ``cell`` at ``res`` (the cell itself when it is no finer).

    >>> c = h3i.latlng_to_cell(38.44, -122.71, 9)
    >>> parent_cell(c, 7) == h3i.cell_to_parent(c, 7), parent_cell(c, 11) == c
    (True, True)
    """
    return int(cell) if h3i.get_resolution(int(cell)) <= res else h3i.cell_to_parent(int(cell), res)


def latlng_to_cell(lat: float, lng: float, res: int = FINEST) -> int:
    return h3i.latlng_to_cell(lat, lng, res)


def latlngs_to_cells(lats, lngs, res: int = FINEST) -> np.ndarray:
    """Cells of many points (a loop over the C call; ~1 µs a point)."""
    f = h3i.latlng_to_cell
    return np.fromiter((f(a, b, res) for a, b in zip(lats, lngs)), dtype=np.uint64, count=len(lats))


def cell_str(cell: int) -> str:
    return format(int(cell), "x")


def str_cell(text: str) -> int:
    return int(text, 16)


@functools.lru_cache(maxsize=None)
def _edge_km(res: int) -> float:
    return h3i.average_hexagon_edge_length(res, unit="km")


def margin_deg(res: int, max_abs_lat: float) -> float:
    """How far (in degrees, conservatively) the area a cover cell stands for
    may reach beyond its hexagon drawn with straight lat/lng edges.

    Two parts: the fringe of descendants down to resolution 9 (a geometric
    series bounded by 0.3 of the parent edge; we allow 0.75 of it, and H3
    edges vary up to ~2x around the average), and the gap between a
    great-circle edge and a straight line in lat/lng.
    """
    edge_km = _edge_km(res)
    fringe_km = 0.75 * edge_km if res < FINEST else 0.0
    phi = math.radians(min(abs(max_abs_lat), 85.0))
    sagitta_km = (2 * edge_km) ** 2 * math.tan(phi) / (8 * EARTH_RADIUS_M / 1000.0)
    return metres_to_degrees((fringe_km + sagitta_km) * 1000.0 + 2.0, max_abs_lat)


_WORLD_W = shapely.box(-180.0, -90.0, 180.0, 90.0)


def _pole_of(cell: int, res: int) -> int:
    if h3i.latlng_to_cell(90.0, 0.0, res) == cell:
        return 1
    if h3i.latlng_to_cell(-90.0, 0.0, res) == cell:
        return -1
    return 0


def cell_polygons(cells) -> np.ndarray:
    """Shapely polygons (lng/lat) of H3 cells, straight edges between vertices.

    Cells crossing the antimeridian come back as a MultiPolygon cut at ±180;
    a cell holding a pole becomes the latitude band from its lowest vertex to
    the pole (all longitudes), which contains it.
    """
    cells = [int(c) for c in cells]
    out = np.empty(len(cells), dtype=object)
    simple_coords: list[np.ndarray] = []
    simple_idx: list[int] = []
    for i, c in enumerate(cells):
        b = np.asarray(h3i.cell_to_boundary(c), dtype=float)[:, ::-1]  # → (lng, lat)
        lng = b[:, 0]
        if lng.max() - lng.min() > 180.0:
            res = h3i.get_resolution(c)
            pole = _pole_of(c, res)
            if pole:
                lat0 = b[:, 1].min() if pole > 0 else b[:, 1].max()
                out[i] = shapely.box(-180.0, lat0, 180.0, 90.0) if pole > 0 else shapely.box(-180.0, -90.0, 180.0, lat0)
                continue
            shifted = b.copy()
            shifted[:, 0] = np.where(lng < 0, lng + 360.0, lng)
            poly = shapely.Polygon(shifted)
            east = shapely.clip_by_rect(poly, 0.0, -90.0, 180.0, 90.0)
            west = _translate(shapely.clip_by_rect(poly, 180.0, -90.0, 360.0, 90.0), -360.0)
            out[i] = shapely.union(east, west)
            continue
        simple_coords.append(b)
        simple_idx.append(i)
    if simple_coords:
        lens = np.array([len(c) for c in simple_coords])
        coords = np.concatenate(simple_coords)
        ring_index = np.repeat(np.arange(len(simple_coords)), lens)
        rings = shapely.linearrings(coords, indices=ring_index)
        out[np.array(simple_idx)] = shapely.polygons(rings)
    return out


def _translate(geom, dx: float):
    return shapely.transform(geom, lambda xy: xy + np.array([dx, 0.0]))


_coarse_lock = threading.Lock()


def coarse_cells() -> tuple[np.ndarray, np.ndarray, shapely.STRtree]:
    """All cells at the coarsest ladder resolution with their polygons and an
    STRtree over them (built once per process, ~0.3 s, even when many
    threads ask at once)."""
    with _coarse_lock:
        return _coarse_cells()


@functools.lru_cache(maxsize=1)
def _coarse_cells() -> tuple[np.ndarray, np.ndarray, shapely.STRtree]:
    res = LADDER[0]
    cells = np.array(
        sorted(c for base in h3i.get_res0_cells() for c in h3i.cell_to_children(base, res)),
        dtype=np.uint64,
    )
    polys = cell_polygons(cells)
    return cells, polys, shapely.STRtree(polys)
