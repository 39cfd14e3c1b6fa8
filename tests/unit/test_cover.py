"""The H3 cover: the prefilter never loses a match the exact test finds, and
an *inside* cell never holds a point outside the fence."""

from __future__ import annotations

import json
from pathlib import Path

import h3.api.basic_int as h3i
import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.geo.cells import FINEST, LADDER, cell_polygons, ladder_ancestors, latlng_to_cell, to_parents
from chalicelib.geo.cover import EXIT_BUFFER_M, cover_geometry
from chalicelib.geo.geojson import parse_feature
from chalicelib.geo.shape import FenceShape
from chalicelib.geo.sphere import haversine_m
from tests.strategies import points_near, small_polygons

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def flags_at(cover, lat, lng):
    lookup = cover.as_dict()
    return [lookup[a] for a in ladder_ancestors(latlng_to_cell(lat, lng)) if a in lookup]


def check_cover(geom, cover, pts, shape=None):
    shape = shape or FenceShape("polygon", geom)
    for lat, lng in pts:
        flags = flags_at(cover, lat, lng)
        assert len(flags) <= 1, "cover cells overlap"
        if shape.covers(lat, lng):
            assert flags, f"point ({lat}, {lng}) inside the fence has no index cell"
        elif flags:
            assert flags[0] is False, f"point ({lat}, {lng}) outside the fence sits in an inside cell"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), poly=small_polygons())
def test_prefilter_never_loses_a_match(data, poly):
    cover = cover_geometry(poly)
    check_cover(poly, cover, data.draw(points_near(poly)))


@settings(max_examples=25, deadline=None)
@given(poly=small_polygons(max_size_deg=0.05))
def test_every_accepted_polygon_is_covered_by_its_cells(poly):
    cover = cover_geometry(poly, buffer_m=0)
    cells_union = shapely.union_all(cell_polygons(cover.cells))
    # Cells stand for their resolution-9 descendants: compare with those.
    assert cells_union.buffer(1e-4).covers(poly)


def test_points_within_the_exit_buffer_find_the_fence():
    poly = shapely.box(-122.72, 38.43, -122.70, 38.45)
    cover = cover_geometry(poly)
    # 150 m east of the east edge: not inside, but must hit a boundary row.
    lng = -122.70 + 150 / (111_195 * np.cos(np.radians(38.44)))
    assert flags_at(cover, 38.44, lng) == [False]
    far = -122.70 + 2 * EXIT_BUFFER_M / (111_195 * np.cos(np.radians(38.44))) + 0.01
    assert flags_at(cover, 38.44, far) == []


def test_small_fences_reach_resolution_9_and_big_ones_stay_coarse():
    small = parse_feature({"type": "Feature", "geometry": {"type": "Point", "coordinates": [-122.7, 38.44]}, "properties": {"radius_m": 50}}, "c")
    cov = cover_geometry(small.geometry)
    assert {h3i.get_resolution(int(c)) for c in cov.cells} == {9}
    states = {f["id"]: f for f in json.loads((FIXTURES / "us_states.geojson").read_text())["features"]}
    tx = parse_feature(states["TX"], "TX")
    cov = cover_geometry(tx.geometry)
    assert len(cov) < 3000 and min(h3i.get_resolution(int(c)) for c in cov.cells) == 3


@pytest.mark.parametrize("fips", ["06097", "51003", "02016", "36061"])
def test_real_counties(fips):
    counties = {f["id"]: f for f in json.loads((FIXTURES / "us_counties.geojson").read_text())["features"]}
    d = parse_feature(counties[fips], fips)
    cover = cover_geometry(d.geometry)
    rng = np.random.default_rng(7)
    pts = []
    for part in shapely.get_parts(d.geometry):
        minx, miny, maxx, maxy = part.bounds
        pts += list(zip(rng.uniform(miny - 0.05, maxy + 0.05, 300), rng.uniform(minx - 0.05, maxx + 0.05, 300)))
    pts += [(float(y), float(x)) for x, y in shapely.get_coordinates(d.geometry)[::50]]  # on the boundary
    check_cover(d.geometry, cover, pts)


def test_hole_is_not_inside():
    counties = {f["id"]: f for f in json.loads((FIXTURES / "us_counties.geojson").read_text())["features"]}
    albemarle = parse_feature(counties["51003"], "51003")
    shape = FenceShape("polygon", albemarle.geometry)
    # Downtown Charlottesville (an independent city: a hole in Albemarle).
    assert not shape.covers(38.0293, -78.4767)
    cville = parse_feature(counties["51540"], "51540")
    assert FenceShape("polygon", cville.geometry).covers(38.0293, -78.4767)


def test_shared_border_point_is_in_both_counties():
    counties = {f["id"]: f for f in json.loads((FIXTURES / "us_counties.geojson").read_text())["features"]}
    a = parse_feature(counties["06097"], "06097").geometry
    b = parse_feature(counties["06055"], "06055").geometry  # Napa
    border = shapely.intersection(a.boundary, b.boundary)
    x, y = shapely.get_coordinates(border)[0]
    assert shapely.contains_xy(a, x, y) is np.False_ or not shapely.contains_xy(a, x, y)
    assert FenceShape("polygon", a).covers(y, x) and FenceShape("polygon", b).covers(y, x)


def test_antimeridian_fence_matches_on_both_sides():
    counties = {f["id"]: f for f in json.loads((FIXTURES / "us_counties.geojson").read_text())["features"]}
    d = parse_feature(counties["02016"], "02016")
    cover = cover_geometry(d.geometry)
    shape = FenceShape("polygon", d.geometry)
    east = [(float(y), float(x)) for x, y in shapely.get_coordinates(d.geometry) if x > 0][:20]
    west = [(float(y), float(x)) for x, y in shapely.get_coordinates(d.geometry) if x < 0][:20]
    assert east and west
    check_cover(d.geometry, cover, east + west, shape)


def test_polar_fence():
    poly = shapely.box(-40.0, 85.0, 40.0, 89.5)
    cover = cover_geometry(poly)
    pts = [(89.4, 0.0), (86.0, 39.9), (85.0, -40.0), (84.0, 0.0), (89.9, 170.0)]
    check_cover(poly, cover, pts)


def test_ladder_parents_match_h3():
    rng = np.random.default_rng(3)
    lats, lngs = rng.uniform(-89, 89, 500), rng.uniform(-180, 180, 500)
    cells = np.array([h3i.latlng_to_cell(a, b, FINEST) for a, b in zip(lats, lngs)], dtype=np.uint64)
    for r in LADDER:
        assert [int(p) for p in to_parents(cells, r)] == [h3i.cell_to_parent(int(c), r) for c in cells]


def test_circle_exact_test_is_geodesic():
    shape = FenceShape("circle", shapely.Point(0, 0).buffer(1), center=(38.44, -122.7), radius_m=100.0)
    lat2 = 38.44 + 99.9 / 111_195
    assert shape.covers(lat2, -122.7) and not shape.covers(38.44 + 100.5 / 111_195, -122.7)
    assert float(haversine_m(38.44, -122.7, lat2, -122.7)) < 100


def test_a_two_to_the_18_cell_region_covers_without_compact_cells(monkeypatch):
    """h3.compact_cells goes quadratic on inputs whose size has a large
    power-of-two factor (2**18 cells: ~30 s instead of 0.1 s). The guard:
    covers are built top-down at ladder resolutions, so the index never
    compacts fine cells — a region of exactly 2**18 resolution-9 cells covers
    with no compact_cells call, in a few ladder cells, and no code in
    chalicelib calls compact_cells."""
    import h3
    from shapely.geometry import shape

    center = h3.latlng_to_cell(38.44, -122.7, 9)
    cells = list(h3.grid_disk(center, 300))[: 2**18]
    assert len(cells) == 2**18
    region = shape(h3.cells_to_geo(cells))
    compacted: list[int] = []
    for api in (h3, h3i):
        real = api.compact_cells
        monkeypatch.setattr(api, "compact_cells", lambda c, real=real: compacted.append(len(c)) or real(c))
    cover = cover_geometry(region)
    assert compacted == []
    assert 0 < len(cover) < 200
    src = Path(__file__).resolve().parents[2] / "chalicelib"
    offenders = [p for p in src.rglob("*.py") if "compact_cells(" in p.read_text()]
    assert offenders == []
