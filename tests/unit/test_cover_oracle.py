"""The cover (cells classified by prepared distance tests) against a
brute-force oracle on holed and multi-part shapes: every
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


def test_spiky_and_holed_shapes_against_the_oracle_points():
    """Shapes whose buffers GEOS merges pairwise (minutes each before the
    cover used distances): a 9,998-vertex zigzag ring and 900 holes."""
    import math

    n = 9_998
    a = np.linspace(0, 2 * math.pi, n, endpoint=False)
    r = np.where(np.arange(n) % 2 == 0, 0.5, 0.25)
    zigzag = shapely.Polygon(np.c_[-100 + r * np.cos(a), 40 + 0.6 * r * np.sin(a)])
    holes = [shapely.box(x / 100, y / 100, x / 100 + 0.003, y / 100 + 0.003).exterior.coords for x in range(1, 31) for y in range(1, 31)]
    holed = shapely.Polygon(shapely.box(0, 0, 0.32, 0.32).exterior.coords, holes)
    rng = np.random.default_rng(5)
    for geom in (zigzag, holed):
        lookup = cover_geometry(geom).as_dict()
        shape = FenceShape("polygon", geom)
        minx, miny, maxx, maxy = geom.bounds
        pts = list(zip(rng.uniform(miny, maxy, 2000), rng.uniform(minx, maxx, 2000)))
        pts += [(float(y), float(x)) for x, y in shapely.get_coordinates(geom)[::7]]
        for lat, lng in pts:
            flags = _flags(lookup, lat, lng)
            assert len(flags) <= 1
            if shape.covers(lat, lng):
                assert flags, (lat, lng)
            elif flags:
                assert flags[0] is False, (lat, lng)
