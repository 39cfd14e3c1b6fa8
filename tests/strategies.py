"""Hypothesis strategies for geometry."""

from __future__ import annotations

import math

import shapely
from hypothesis import strategies as st

lats = st.floats(min_value=-70.0, max_value=70.0, allow_nan=False)
lngs = st.floats(min_value=-179.0, max_value=179.0, allow_nan=False)


@st.composite
def small_polygons(draw, max_size_deg: float = 0.2):
    """A valid simple polygon: a star-shaped ring around a random centre."""
    lat = draw(st.floats(min_value=-60.0, max_value=60.0))
    lng = draw(st.floats(min_value=-170.0, max_value=170.0))
    n = draw(st.integers(min_value=3, max_value=12))
    size = draw(st.floats(min_value=0.002, max_value=max_size_deg))
    radii = draw(st.lists(st.floats(min_value=0.3, max_value=1.0), min_size=n, max_size=n))
    pts = []
    for k, r in enumerate(radii):
        a = 2 * math.pi * k / n
        pts.append((lng + size * r * math.cos(a) / max(math.cos(math.radians(lat)), 0.2), lat + size * r * math.sin(a)))
    poly = shapely.Polygon(pts)
    if not poly.is_valid:
        poly = shapely.convex_hull(poly)
    return poly


@st.composite
def points_near(draw, geom, n: int = 40):
    """Points in and around ``geom``'s bounding box, some exactly on vertices."""
    minx, miny, maxx, maxy = geom.bounds
    padx, pady = (maxx - minx) * 0.3 + 0.003, (maxy - miny) * 0.3 + 0.003
    xs = draw(st.lists(st.floats(min_value=minx - padx, max_value=maxx + padx), min_size=n, max_size=n))
    ys = draw(st.lists(st.floats(min_value=miny - pady, max_value=maxy + pady), min_size=n, max_size=n))
    coords = list(shapely.get_coordinates(geom))
    k = draw(st.integers(min_value=0, max_value=min(3, len(coords))))
    pts = list(zip(ys, xs)) + [(float(c[1]), float(c[0])) for c in coords[:k]]
    return pts
