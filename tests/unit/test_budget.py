"""The geometry budget: limits named in the error with the field, the cover
estimate against the real cover, stored bytes against the store's encoding,
and the import total."""

from __future__ import annotations

import json
from pathlib import Path

import h3
import pytest
import shapely

from benchmarks.geometry_budget import circles, feature, holes_polygon, scattered_cells, tiny_parts
from chalicelib.errors import InvalidGeometry, InvalidInput
from chalicelib.geo.budget import (
    ALERT_BUDGET,
    FENCE_BUDGET,
    MAX_IMPORT_WORK,
    MAX_STORED_BYTES,
    check_area,
    check_import,
    estimate_cover,
    stored_bytes,
)
from chalicelib.geo.cover import cover_geometry
from chalicelib.geo.geojson import parse_feature
from chalicelib.store.codec import cover_to_blob, json_to_blob
from chalicelib.geo.shape import FenceShape

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
STATES = {f["id"]: f for f in json.loads((FIXTURES / "us_states.geojson").read_text())["features"]}


def test_holes_over_the_limit_name_the_count_the_limit_and_the_field():
    with pytest.raises(InvalidGeometry) as e:
        parse_feature(feature(holes_polygon(FENCE_BUDGET.max_holes + 1)), "x", where="features[2]")
    assert e.value.field == "features[2].geometry"
    assert f"{FENCE_BUDGET.max_holes + 1} holes" in e.value.message and f"at most {FENCE_BUDGET.max_holes}" in e.value.message


def test_holes_at_the_limit_are_accepted():
    d = parse_feature(feature(holes_polygon(FENCE_BUDGET.max_holes)), "x")
    assert len(d.geometry.interiors) == FENCE_BUDGET.max_holes and 0 < d.work <= FENCE_BUDGET.max_work


def test_parts_over_the_limit():
    with pytest.raises(InvalidGeometry) as e:
        parse_feature(feature(tiny_parts(2500)), "x")
    assert e.value.field == "geometry" and "2,500 parts" in e.value.message
    parse_feature(feature(tiny_parts(FENCE_BUDGET.max_parts)), "x")


def test_scattered_parts_worldwide_are_refused_for_their_index_rows():
    world = shapely.MultiPolygon([shapely.box(x, y, x + 1e-4, y + 1e-4) for x in range(-170, 170, 9) for y in range(-60, 61, 10)])
    assert len(world.geoms) <= FENCE_BUDGET.max_parts
    reason = check_area(world)
    assert reason is not None and "index cells" in reason
    assert estimate_cover(world).rows >= len(cover_geometry(world)) * 0.8


def test_scattered_h3_cells_are_a_400_on_h3_cells_not_a_500():
    with pytest.raises(InvalidGeometry) as e:
        parse_feature(feature(None, {"h3_cells": scattered_cells(5000)}), "x")
    assert e.value.field == "properties.h3_cells" and "bytes stored" in e.value.message


def test_ten_thousand_contiguous_cells_fit():
    origin = h3.latlng_to_cell(38.44, -122.7, 9)
    cells = sorted(h3.grid_disk(origin, 58))[:10_000]
    d = parse_feature(feature(None, {"h3_cells": cells}), "x")
    shape_b, meta_b = stored_bytes(d, estimate_cover(d.geometry).rows)
    assert max(shape_b, meta_b) < MAX_STORED_BYTES


def test_stored_bytes_measure_what_the_store_writes():
    d = parse_feature(feature(None, {"h3_cells": scattered_cells(800)}), "x")
    cover = cover_geometry(d.geometry)
    shape_b, meta_b = stored_bytes(d, len(cover))
    assert shape_b == len(FenceShape.from_definition(d).to_blob())
    # the META item: the Feature's blob, and a cover blob at most 9 bytes a row
    assert meta_b >= len(json_to_blob(d.feature())) + len(cover_to_blob(cover)) - 16


@pytest.mark.parametrize("state", ["TX", "CA", "NJ", "MI", "CT"])
def test_real_states_are_within_the_budget_and_estimated_at_least_near_their_rows(state):
    d = parse_feature(STATES[state], state)
    est = estimate_cover(d.geometry)
    assert check_area(d.geometry) is None
    assert est.rows >= 0.8 * len(cover_geometry(d.geometry))


@pytest.mark.parametrize("radius", [50, 1_000, 10_000, 100_000])
def test_circles_are_estimated_at_least_near_their_rows(radius):
    d = parse_feature(feature({"type": "Point", "coordinates": [-120.0, 35.0]}, {"radius_m": radius}), "c")
    assert estimate_cover(d.geometry).rows >= 0.7 * len(cover_geometry(d.geometry))


def test_alaska_repaired_is_within_the_budget():
    d = parse_feature(STATES["AK"], "AK", repair=True)
    assert d.work <= FENCE_BUDGET.max_work


def test_check_area_for_an_alert_area_without_fence_properties():
    assert check_area(shapely.box(-100.0, 35.0, -98.0, 37.0), ALERT_BUDGET) is None
    many_holes = shapely.Polygon(shapely.box(0, 0, 1, 1).exterior, [shapely.box(x / 40, y / 40, x / 40 + 0.01, y / 40 + 0.01).exterior.coords for x in range(1, 39) for y in range(1, 10)])
    reason = check_area(many_holes, ALERT_BUDGET)
    assert reason is not None and "holes" in reason


def test_an_import_over_its_work_budget_names_features_and_how_many_fit():
    defs = [parse_feature(f, f["id"]) for f in circles(500)]
    with pytest.raises(InvalidInput) as e:
        check_import([d.work for d in defs])
    fit = sum(1 for i in range(len(defs)) if sum(d.work for d in defs[: i + 1]) <= MAX_IMPORT_WORK)
    assert e.value.field == "features" and f"the first {fit} features fit" in e.value.message
    assert check_import([d.work for d in defs[:fit]]) <= MAX_IMPORT_WORK


def test_fifty_counties_fit_in_one_import():
    counties = json.loads((FIXTURES / "us_counties.geojson").read_text())["features"]
    works = [parse_feature(f, str(f["id"])).work for f in counties[:50]]
    assert check_import(works) < MAX_IMPORT_WORK
