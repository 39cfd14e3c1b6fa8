"""The vectorised matcher equals brute force: every fence's exact test on
every point (``shapely.intersects_xy`` for polygons, haversine for circles),
including points exactly on vertices and edges, whatever the input order."""

from __future__ import annotations

import doctest
import json
import math
from pathlib import Path

import h3.api.basic_int as h3i
import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.geo import matcher as matcher_module
from chalicelib.geo.cells import cell_polygons, latlng_to_cell, to_parents
from chalicelib.geo.cover import Cover, cover_geometry
from chalicelib.geo.geojson import circle_polygon, parse_feature
from chalicelib.geo.matcher import FenceIndex
from chalicelib.geo.shape import FenceShape
from chalicelib.geo.sphere import haversine_m

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ helpers
def oracle(fences, lats, lngs) -> set[tuple[int, int]]:
    """Brute force: each fence's own exact test on every point."""
    out = set()
    for f, (_, shape, _) in enumerate(fences):
        if shape.kind == "circle":
            hit = haversine_m(lats, lngs, shape.center[0], shape.center[1]) <= shape.radius_m
        elif shape.kind == "polygon":
            hit = shapely.intersects_xy(shape.geometry, lngs, lats)
        else:
            hit = np.array([shape.covers(a, b) for a, b in zip(lats, lngs)], dtype=bool)
        out |= {(int(p), f) for p in np.flatnonzero(hit)}
    return out


def matched(index, lats, lngs) -> set[tuple[int, int]]:
    points, fences = index.match(np.asarray(lats, float), np.asarray(lngs, float))
    pairs = list(zip(points.tolist(), fences.tolist()))
    assert len(pairs) == len(set(pairs)), "a (point, fence) pair was returned twice"
    assert pairs == sorted(pairs), "pairs are not sorted by point, then fence"
    return set(pairs)


def polygon_fence(fid: str, geom) -> tuple[str, FenceShape, Cover]:
    return fid, FenceShape("polygon", geom), cover_geometry(geom)


def circle_fence(fid: str, lat: float, lng: float, radius_m: float) -> tuple[str, FenceShape, Cover]:
    ring = circle_polygon(lat, lng, radius_m)
    return fid, FenceShape("circle", ring, center=(lat, lng), radius_m=radius_m), cover_geometry(ring)


# --------------------------------------------------------------- strategies
@st.composite
def fence_sets(draw):
    """1-5 fences near one another: star polygons, boxes on a 1e-4° grid
    (so points on their edges are exactly representable) and circles."""
    lat0 = draw(st.floats(min_value=-60.0, max_value=60.0))
    lng0 = draw(st.floats(min_value=-170.0, max_value=170.0))
    coslat = max(math.cos(math.radians(lat0)), 0.2)
    fences = []
    for i in range(draw(st.integers(min_value=1, max_value=5))):
        lat = lat0 + draw(st.floats(min_value=-0.01, max_value=0.01))
        lng = lng0 + draw(st.floats(min_value=-0.01, max_value=0.01)) / coslat
        kind = draw(st.sampled_from(["star", "box", "circle"]))
        if kind == "circle":
            fences.append(circle_fence(f"c{i}", lat, lng, draw(st.floats(min_value=10.0, max_value=1500.0))))
            continue
        size = draw(st.floats(min_value=0.0005, max_value=0.02))
        if kind == "box":
            q = lambda v: round(v, 4)  # noqa: E731
            w = max(size / coslat, 1e-4)
            geom = shapely.box(q(lng), q(lat), q(lng + w) + 1e-4, q(lat + size) + 1e-4)
        else:
            n = draw(st.integers(min_value=3, max_value=10))
            radii = draw(st.lists(st.floats(min_value=0.3, max_value=1.0), min_size=n, max_size=n))
            pts = [
                (lng + size * r * math.cos(2 * math.pi * k / n) / coslat, lat + size * r * math.sin(2 * math.pi * k / n))
                for k, r in enumerate(radii)
            ]
            geom = shapely.Polygon(pts)
            if not geom.is_valid:
                geom = shapely.convex_hull(geom)
        fences.append(polygon_fence(f"p{i}", shapely.orient_polygons(geom)))
    return fences


@st.composite
def points_around(draw, fences, n: int = 60):
    """Random points around the fences plus points exactly on their
    vertices and (for boxes) on their edges → (lats, lngs)."""
    minx, miny, maxx, maxy = shapely.total_bounds([f[1].geometry for f in fences])
    padx, pady = (maxx - minx) * 0.2 + 0.002, (maxy - miny) * 0.2 + 0.002
    xs = draw(st.lists(st.floats(min_value=minx - padx, max_value=maxx + padx), min_size=n, max_size=n))
    ys = draw(st.lists(st.floats(min_value=miny - pady, max_value=maxy + pady), min_size=n, max_size=n))
    for _, shape, _ in fences:
        if shape.kind != "polygon":
            continue
        coords = shapely.get_coordinates(shape.geometry)[:-1]
        xs += coords[:, 0].tolist()
        ys += coords[:, 1].tolist()
        x0, y0, x1, y1 = shape.geometry.bounds
        if shapely.equals(shape.geometry, shapely.box(x0, y0, x1, y1)):
            t = draw(st.floats(min_value=0.0, max_value=1.0))
            xs += [x0, x1, x0 + t * (x1 - x0), x0 + t * (x1 - x0)]
            ys += [y0 + t * (y1 - y0), y0 + t * (y1 - y0), y0, y1]
    return np.array(ys), np.array(xs)


# ------------------------------------------------------------------- tests
@SETTINGS
@given(data=st.data(), fences=fence_sets())
def test_matcher_equals_brute_force(data, fences):
    lats, lngs = data.draw(points_around(fences))
    index = FenceIndex.build(fences)
    assert matched(index, lats, lngs) == oracle(fences, lats, lngs)


@SETTINGS
@given(data=st.data(), fences=fence_sets())
def test_matching_does_not_depend_on_input_order(data, fences):
    lats, lngs = data.draw(points_around(fences, n=30))
    p_perm = np.array(data.draw(st.permutations(range(len(lats)))))
    f_perm = data.draw(st.permutations(range(len(fences))))
    base = {(p, fences[f][0]) for p, f in matched(FenceIndex.build(fences), lats, lngs)}
    shuffled = [fences[i] for i in f_perm]
    got = matched(FenceIndex.build(shuffled), lats[p_perm], lngs[p_perm])
    assert {(int(p_perm[p]), shuffled[f][0]) for p, f in got} == base


def test_point_on_a_vertex_and_on_an_edge_is_inside():
    square = shapely.box(-122.72, 38.43, -122.70, 38.45)
    index = FenceIndex.build([polygon_fence("sq", square)])
    lats = np.array([38.43, 38.44, 38.45, 38.4300001])
    lngs = np.array([-122.72, -122.70, -122.71, -122.7200001])
    assert matched(index, lats, lngs) == {(0, 0), (1, 0), (2, 0)}


def test_circle_uses_the_geodesic_radius_not_its_polygon():
    lat, lng, r = 38.44, -122.70, 300.0
    index = FenceIndex.build([circle_fence("c", lat, lng, r)])
    # Due east, 299 m and 301 m from the centre.
    m_per_deg = haversine_m(lat, lng, lat, lng + 1.0)
    lngs = lng + np.array([299.0, 301.0]) / m_per_deg
    assert matched(index, np.array([lat, lat]), lngs) == {(0, 0)}


def test_h3_region_uses_its_cells():
    cell = latlng_to_cell(38.44, -122.70, 8)
    cells = [cell, *h3i.grid_disk(cell, 1)[1:3]]
    geom = shapely.orient_polygons(shapely.union_all(cell_polygons(cells)))
    shape = FenceShape("h3", geom, h3_cells=frozenset(cells))
    fences = [("h", shape, cover_geometry(geom))]
    rng = np.random.default_rng(7)
    minx, miny, maxx, maxy = geom.bounds
    lngs = rng.uniform(minx - 0.005, maxx + 0.005, 400)
    lats = rng.uniform(miny - 0.005, maxy + 0.005, 400)
    got = matched(FenceIndex.build(fences), lats, lngs)
    assert got == oracle(fences, lats, lngs)
    assert got  # some points are in the region


def test_overlapping_entries_of_one_fence_give_one_pair_and_inside_wins():
    square = shapely.box(-122.72, 38.43, -122.70, 38.45)
    cell9 = latlng_to_cell(38.44, -122.71, 9)
    parent7 = int(to_parents(np.array([cell9], np.uint64), 7)[0])
    # A hand-made cover with the cell as boundary and its ancestor inside.
    cover = Cover(np.array([cell9, parent7], np.uint64), np.array([False, True]))
    index = FenceIndex.build([("sq", FenceShape("polygon", square), cover)])
    far = shapely.Point(-122.0, 38.0)  # in neither cell
    assert matched(index, [38.44, far.y], [-122.71, far.x]) == {(0, 0)}


def load_counties(*fips: str):
    features = {f["id"]: f for f in json.loads((FIXTURES / "us_counties.geojson").read_text())["features"]}
    out = []
    for fid in fips:
        d = parse_feature(features[fid], fid)
        out.append(polygon_fence(fid, d.geometry))
    return out


def test_real_counties_shared_border_hole_and_antimeridian():
    # Sonoma, Marin, Napa (shared borders); Fairfax County VA around the
    # independent city of Fairfax (a hole); Aleutians West (cut at ±180).
    fences = load_counties("06097", "06041", "06055", "51059", "51600", "02016")
    index = FenceIndex.build(fences)
    shared = shapely.intersection(fences[0][1].geometry.boundary, fences[1][1].geometry.boundary)
    border = shapely.get_coordinates(shared)
    rng = np.random.default_rng(11)
    lats, lngs = [border[:, 1]], [border[:, 0]]
    for _, shape, _ in fences:
        minx, miny, maxx, maxy = shape.geometry.bounds
        lngs.append(rng.uniform(minx, maxx, 500))
        lats.append(rng.uniform(miny, maxy, 500))
    lats, lngs = np.concatenate(lats), np.concatenate(lngs)
    got = matched(index, lats, lngs)
    assert got == oracle(fences, lats, lngs)
    # Every shared-border vertex is in both Sonoma and Marin.
    assert {(p, 0) for p in range(len(border))} | {(p, 1) for p in range(len(border))} <= got
    # A point in the hole is in Fairfax city only.
    city = fences[4][1].geometry.representative_point()
    assert matched(index, [city.y], [city.x]) == {(0, 4)}
    # Islands on both sides of the antimeridian.
    parts = shapely.get_parts(fences[5][1].geometry)
    east = next(g for g in parts if g.bounds[0] > 0).representative_point()
    west = next(g for g in parts if g.bounds[2] < 0).representative_point()
    assert matched(index, [east.y, west.y], [east.x, west.x]) == {(0, 5), (1, 5)}


def test_empty_inputs_and_bad_coordinates():
    index = FenceIndex.build([polygon_fence("sq", shapely.box(0.0, 0.0, 0.01, 0.01))])
    p, f = index.match(np.zeros(0), np.zeros(0))
    assert p.shape == f.shape == (0,)
    p, f = FenceIndex.build([]).match(np.array([1.0]), np.array([1.0]))
    assert len(p) == len(f) == 0
    with pytest.raises(ValueError):
        index.match(np.array([np.nan]), np.array([0.0]))
    with pytest.raises(ValueError):
        index.match(np.array([91.0]), np.array([0.0]))
    with pytest.raises(ValueError):
        index.match(np.array([1.0, 2.0]), np.array([0.0]))


def test_match_ids_lists_fences_per_point():
    fences = [polygon_fence("a", shapely.box(0.0, 0.0, 0.01, 0.01)), polygon_fence("b", shapely.box(0.005, 0.0, 0.02, 0.01))]
    index = FenceIndex.build(fences)
    assert index.match_ids([0.005, 0.005, 0.5], [0.001, 0.007, 0.5]) == [["a"], ["a", "b"], []]


def test_doctests():
    result = doctest.testmod(matcher_module)
    assert result.attempted > 0 and result.failed == 0
