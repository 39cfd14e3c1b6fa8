"""The cover grown and shrunk part by part and hole by hole (and simplified
within a share of the margin) against a brute-force oracle: every
resolution-9 cell whose centre is in the shape, and every point of the
shape, finds a cover cell; an *inside* cell holds no point outside."""

from __future__ import annotations

import h3
import numpy as np
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.geo.cells import FINEST, ladder_ancestors, latlng_to_cell
from chalicelib.geo.cover import cover_geometry
from chalicelib.geo.shape import FenceShape


@st.composite
def holed_shapes(draw):
    """A box with holes (some touching each other's grown margins) and
    sometimes an island in one hole and a second part: lng/lat degrees."""
    lat = draw(st.floats(min_value=-60.0, max_value=60.0))
    lng = draw(st.floats(min_value=-170.0, max_value=170.0))
    size = draw(st.floats(min_value=0.004, max_value=0.05))
    grid = draw(st.integers(min_value=1, max_value=6))
    frac = draw(st.floats(min_value=0.1, max_value=0.45))
    cell = 2 * size / (grid + 1)
    holes = []
    for i in range(grid):
        for j in range(grid):
            if draw(st.booleans()):
                cx, cy = lng - size + cell * (i + 1), lat - size + cell * (j + 1)
                holes.append(shapely.box(cx - frac * cell, cy - frac * cell, cx + frac * cell, cy + frac * cell).exterior.coords)
    parts = [shapely.Polygon(shapely.box(lng - size, lat - size, lng + size, lat + size).exterior.coords, holes)]
    if holes and draw(st.booleans()):  # an island inside the first hole
        hx, hy = np.asarray(holes[0])[:-1].mean(axis=0)
        d = frac * cell / 3
        parts.append(shapely.box(hx - d, hy - d, hx + d, hy + d))
    if draw(st.booleans()):
        parts.append(shapely.box(lng + 1.5 * size, lat - size / 2, lng + 2 * size, lat))
    geom = parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)
    assert geom.is_valid
    return geom


def _flags(lookup, lat, lng):
    return [lookup[a] for a in ladder_ancestors(latlng_to_cell(lat, lng)) if a in lookup]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(geom=holed_shapes(), seed=st.integers(0, 2**31))
def test_cover_against_brute_force(geom, seed):
    cover = cover_geometry(geom)
    lookup = cover.as_dict()
    shape = FenceShape("polygon", geom)
    # every resolution-9 cell whose centre is in the shape (h3's own polyfill)
    for part in shapely.get_parts(geom):
        outer = [(y, x) for x, y in part.exterior.coords]
        inner = [[(y, x) for x, y in h.coords] for h in part.interiors]
        for c in h3.polygon_to_cells(h3.LatLngPoly(outer, *inner), FINEST):
            lat, lng = h3.cell_to_latlng(c)
            assert _flags(lookup, lat, lng), f"cell {c} of the shape is not covered"
    # random points in and around, and the vertices: inside → covered; outside → not in an inside cell
    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = geom.bounds
    pad = 0.3 * max(maxx - minx, maxy - miny)
    pts = list(zip(rng.uniform(miny - pad, maxy + pad, 300), rng.uniform(minx - pad, maxx + pad, 300)))
    pts += [(float(y), float(x)) for x, y in shapely.get_coordinates(geom)]
    for lat, lng in pts:
        flags = _flags(lookup, lat, lng)
        assert len(flags) <= 1, "cover cells overlap"
        if shape.covers(lat, lng):
            assert flags, f"point ({lat}, {lng}) in the shape has no cover cell"
        elif flags:
            assert flags[0] is False, f"point ({lat}, {lng}) outside the shape is in an inside cell"


def test_nine_hundred_holes_cover_like_the_union_of_their_parts():
    """The hole-by-hole shrink equals the whole-polygon negative buffer it
    replaced (away from the simplification, which only shrinks it)."""
    from chalicelib.geo.cover import shrink

    holes = [shapely.box(x / 100, y / 100, x / 100 + 0.003, y / 100 + 0.003).exterior.coords for x in range(1, 30) for y in range(1, 30)]
    poly = shapely.Polygon(shapely.box(0, 0, 0.31, 0.31).exterior.coords, holes)
    for dist in (0.0005, 0.002, 0.004):
        mine = shapely.union_all(shrink(poly, dist))
        theirs = shapely.buffer(poly, -dist, quad_segs=2)
        assert shapely.symmetric_difference(mine, theirs).area < 1e-3 * max(theirs.area, 1e-9) + 1e-10
