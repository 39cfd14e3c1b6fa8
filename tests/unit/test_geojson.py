"""Geofence Feature validation: every geometry rule of the README, on made-up
and real inputs (the county and state files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import shapely

from chalicelib.errors import InvalidGeometry, InvalidInput
from chalicelib.geo.geojson import parse_feature, validate_fence_id

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def feature(geometry, **props):
    return {"type": "Feature", "geometry": geometry, "properties": props}


def square(x0=-122.72, y0=38.43, d=0.02, clockwise=False):
    ring = [[x0, y0], [x0 + d, y0], [x0 + d, y0 + d], [x0, y0 + d], [x0, y0]]
    return {"type": "Polygon", "coordinates": [ring[::-1] if clockwise else ring]}


@pytest.fixture(scope="module")
def counties():
    return {f["id"]: f for f in json.loads((FIXTURES / "us_counties.geojson").read_text())["features"]}


@pytest.fixture(scope="module")
def states():
    return {f["id"]: f for f in json.loads((FIXTURES / "us_states.geojson").read_text())["features"]}


def test_either_winding_is_accepted_and_stored_counter_clockwise():
    cw = parse_feature(feature(square(clockwise=True)), "a")
    ccw = parse_feature(feature(square()), "b")
    assert cw.geometry.equals(ccw.geometry)
    assert shapely.Polygon(cw.feature()["geometry"]["coordinates"][0]).exterior.is_ccw


@pytest.mark.parametrize(
    "coords, field_suffix, words",
    [
        ([[[-122.7, 38.4], [-122.6, 38.4], [-122.7, 38.4]]], "coordinates[0]", "at least 4"),
        ([[[-122.7, 38.4], [-122.6, 38.4], [-122.6, 38.5], [-122.7, 38.5], [-122.7, 38.41]]], "coordinates[0]", "closed"),
        ([[[-122.7, 38.4], [-122.6, 38.4], [-122.6, 98.5], [-122.7, 38.5], [-122.7, 38.4]]], "coordinates[0][2]", "latitude"),
        ([[[-182.7, 38.4], [-122.6, 38.4], [-122.6, 38.5], [-122.7, 38.5], [-182.7, 38.4]]], "coordinates[0][0]", "longitude"),
        ([[[-122.7, 38.4], ["x", 38.4], [-122.6, 38.5], [-122.7, 38.5], [-122.7, 38.4]]], "coordinates[0][1]", "finite"),
        ([[[-122.7, 38.4], [True, 38.4], [-122.6, 38.5], [-122.7, 38.5], [-122.7, 38.4]]], "coordinates[0][1]", "finite"),
        ([[[170.0, 50.0], [-170.0, 50.0], [-170.0, 51.0], [170.0, 51.0], [170.0, 50.0]]], "coordinates[0]", "antimeridian"),
    ],
)
def test_bad_rings_are_rejected_naming_the_position(coords, field_suffix, words):
    with pytest.raises(InvalidGeometry) as exc:
        parse_feature(feature({"type": "Polygon", "coordinates": coords}), "x", where="features[3]")
    assert exc.value.field == f"features[3].geometry.{field_suffix}"
    assert words in exc.value.message


def test_self_intersection_names_the_location_and_repair_makes_it_polygonal():
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    with pytest.raises(InvalidGeometry) as exc:
        parse_feature(feature(bowtie), "x")
    assert "self-intersection near lng 0.5" in exc.value.message and "repair=true" in exc.value.message
    fixed = parse_feature(feature(bowtie), "x", repair=True)
    assert fixed.repaired and fixed.geometry.geom_type in ("Polygon", "MultiPolygon") and fixed.geometry.is_valid


@pytest.mark.parametrize("state", ["AK", "MD", "VA"])
def test_self_intersecting_states_need_repair(states, state):
    with pytest.raises(InvalidGeometry) as exc:
        parse_feature(states[state], state)
    assert "self-intersection" in exc.value.message
    fixed = parse_feature(states[state], state, repair=True)
    assert fixed.geometry.geom_type in ("Polygon", "MultiPolygon")  # Maryland's make_valid is a GeometryCollection
    assert fixed.geometry.is_valid
    assert fixed.area_km2 > 10_000


def test_every_county_is_accepted(counties):
    for fid, f in counties.items():
        d = parse_feature(f, fid)
        assert d.geometry.is_valid and d.area_km2 > 0


def test_aleutians_west_is_cut_at_the_antimeridian_and_accepted(counties):
    d = parse_feature(counties["02016"], "02016")
    assert d.geometry.geom_type == "MultiPolygon"
    xs = shapely.get_coordinates(d.geometry)[:, 0]
    assert xs.min() < -170 and xs.max() > 170


def test_county_with_a_hole_keeps_it(counties):
    # Albemarle County VA (51003) surrounds the independent city of Charlottesville.
    d = parse_feature(counties["51003"], "51003")
    assert any(len(p.interiors) for p in shapely.get_parts(d.geometry))


def test_area_limit_admits_alaska_but_not_a_continent(states):
    ak = parse_feature(states["AK"], "AK", repair=True)
    assert ak.area_km2 < 3_000_000
    big = {"type": "Polygon", "coordinates": [[[-120, 20], [-60, 20], [-60, 60], [-120, 60], [-120, 20]]]}
    with pytest.raises(InvalidGeometry) as exc:
        parse_feature(feature(big), "x")
    assert "exceeds" in exc.value.message and exc.value.field == "geometry"


def test_vertex_limit():
    import math

    ring = [[-100 + math.cos(a / 1000) * 0.1, 40 + math.sin(a / 1000) * 0.1] for a in range(10_001)]
    ring.append(ring[0])
    with pytest.raises(InvalidGeometry) as exc:
        parse_feature(feature({"type": "Polygon", "coordinates": [ring]}), "x")
    assert "10000" in exc.value.message


def test_circle_needs_a_radius_in_range():
    pt = {"type": "Point", "coordinates": [-122.7, 38.44]}
    for bad in (None, 5, 100_001, "100", float("nan"), True):
        with pytest.raises(InvalidInput) as exc:
            parse_feature(feature(pt, radius_m=bad), "x")
        assert exc.value.field == "properties.radius_m"
    d = parse_feature(feature(pt, radius_m=250), "x")
    assert d.kind == "circle" and d.geometry.contains(shapely.Point(-122.7, 38.44))


def test_circle_across_the_antimeridian_is_cut():
    d = parse_feature(feature({"type": "Point", "coordinates": [179.999, 52.0]}, radius_m=5000), "x")
    assert d.geometry.geom_type == "MultiPolygon"
    assert abs(d.area_km2 - 78.54) < 0.01


def test_h3_region():
    import h3

    cells = [h3.latlng_to_cell(38.44, -122.71, 9), h3.latlng_to_cell(38.45, -122.70, 8)]
    d = parse_feature(feature(None, h3_cells=cells), "x")
    assert d.kind == "h3" and len(d.h3_cells) == 2
    with pytest.raises(InvalidInput) as exc:
        parse_feature(feature(None, h3_cells=["zzz"]), "x")
    assert exc.value.field == "properties.h3_cells[0]"
    with pytest.raises(InvalidGeometry):
        parse_feature(feature(None), "x")


@pytest.mark.parametrize(
    "props, field",
    [
        ({"tags": "x"}, "properties.tags"),
        ({"tags": [1]}, "properties.tags[0]"),
        ({"metadata": {"k": 1}}, "properties.metadata.k"),
        ({"metadata": {f"k{i}": "v" for i in range(33)}}, "properties.metadata"),
        ({"dwell_minutes": -1}, "properties.dwell_minutes"),
        ({"enabled": "yes"}, "properties.enabled"),
        ({"name": 7}, "properties.name"),
    ],
)
def test_bad_properties_name_the_field(props, field):
    with pytest.raises(InvalidInput) as exc:
        parse_feature(feature(square(), **props), "x")
    assert exc.value.field == field


def test_unsupported_geometry_and_non_features():
    with pytest.raises(InvalidGeometry) as exc:
        parse_feature(feature({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}), "x")
    assert exc.value.field == "geometry.type"
    with pytest.raises(InvalidInput):
        parse_feature({"type": "FeatureCollection"}, "x")
    with pytest.raises(InvalidInput):
        parse_feature([1, 2], "x")


def test_lat_lng_swap_into_the_ocean_is_still_valid():
    swapped = {"type": "Polygon", "coordinates": [[[38.43, -122.72 + 50], [38.45, -72.72], [38.45, -72.70], [38.43, -72.72]]]}
    d = parse_feature(feature(swapped), "x")
    assert d.area_km2 > 0


@pytest.mark.parametrize("bad", ["", "-x", "a b", "x" * 129, "é", None, True, 1.5])
def test_fence_ids(bad):
    with pytest.raises(InvalidInput):
        validate_fence_id(bad)
    assert validate_fence_id("06097") == "06097" and validate_fence_id(11) == "11"


def test_foreign_members_are_ignored_and_a_bbox_must_be_numbers():
    """RFC 7946: foreign members may appear anywhere and are ignored; a
    ``bbox`` is ignored too, but one that is not an array of numbers is a
    400 naming it, and so is a position's altitude that is not a number
    (found by the contract fuzz run: ``"bbox": [{}]`` and ``[0, 0, {}]`` passed)."""
    poly = dict(square(), bbox=[-122.72, 38.43, -122.70, 38.45], crs={"type": "name"})
    assert parse_feature(dict(feature(poly), bbox=[0, 0, 1, 1], title="x"), "f").kind == "polygon"
    point = {"type": "Point", "coordinates": [-122.7, 38.44]}
    for geometry, top, field in [(dict(square(), bbox=[{}]), None, "geometry.bbox"),
                                 (dict(point, bbox="0,0,1,1"), None, "geometry.bbox"),
                                 ({"type": "Point", "coordinates": [-122.7, 38.44, {}]}, None, "geometry.coordinates"),
                                 (square(), [True], "bbox"), (square(), None, "bbox")]:
        f = feature(geometry, radius_m=100)
        if field == "bbox":
            f["bbox"] = top
        with pytest.raises(InvalidInput) as exc:
            parse_feature(f, "f")
        assert exc.value.field == field
