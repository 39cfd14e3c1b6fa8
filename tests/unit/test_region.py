"""The device region index's key scheme and range maths: a cell's range holds
exactly its resolution-9 descendants, and a cover's queries find every device
the cover stands for."""

from __future__ import annotations

import h3.api.basic_int as h3i
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.geo.cells import FINEST, latlng_to_cell
from chalicelib.geo.cover import Cover, cover_contains, cover_geometry
from chalicelib.weather.region import (
    COARSE_RES,
    cell_range,
    cell_ranges,
    fine_key,
    merge_ranges,
    plan_queries,
    region_keys,
    shard_of,
)
from tests.strategies import lats, lngs, small_polygons


def in_range(cell: int, rng: tuple[int, int]) -> bool:
    return rng[0] <= cell <= rng[1]


# ------------------------------------------------------------ key scheme
@given(lat=lats, lng=lngs, device=st.text(min_size=1, max_size=40), shards=st.integers(1, 16))
def test_region_keys_name_the_coarse_parent_and_the_fine_cell(lat, lng, device, shards):
    c9 = latlng_to_cell(lat, lng, FINEST)
    rc, rf = region_keys(device, c9, shards)
    coarse, shard = rc.split("#")
    assert int(coarse, 16) == h3i.cell_to_parent(c9, COARSE_RES)
    assert int(shard) == shard_of(device, shards) and 0 <= int(shard) < shards
    assert len(rf) == 15 and int(rf, 16) == c9


@given(a=st.tuples(lats, lngs), b=st.tuples(lats, lngs))
def test_fine_keys_sort_like_the_cells(a, b):
    ca, cb = latlng_to_cell(*a, FINEST), latlng_to_cell(*b, FINEST)
    assert (fine_key(ca) < fine_key(cb)) == (ca < cb)


def test_shards_are_stable_and_spread():
    # CRC-32: the same value in every process and release (hash() is salted
    # per process); pinned, since changing it would orphan every index entry.
    assert [shard_of(f"device-{i}", 4) for i in range(6)] == [3, 1, 3, 1, 2, 0]
    counts = np.bincount([shard_of(f"device-{i}", 4) for i in range(4000)], minlength=4)
    assert counts.min() > 850


def test_region_keys_need_a_resolution_9_cell():
    with pytest.raises(ValueError):
        region_keys("d", h3i.latlng_to_cell(38.4, -122.7, 7), 4)


# ------------------------------------------------------------ cell_range
@settings(max_examples=60, deadline=None)
@given(lat=lats, lng=lngs, res=st.integers(5, 9))
def test_cell_range_bounds_are_the_extreme_children(lat, lng, res):
    parent = h3i.latlng_to_cell(lat, lng, res)
    children = h3i.cell_to_children(parent, FINEST)
    lo, hi = cell_range(parent)
    assert (lo, hi) == (min(children), max(children))
    assert all(lo <= c <= hi for c in children)


@settings(max_examples=60, deadline=None)
@given(lat=lats, lng=lngs, res=st.sampled_from([3, 4, 5, 6, 7, 8, 9]), k=st.integers(1, 6))
def test_a_cell_is_in_the_range_exactly_when_it_descends(lat, lng, res, k):
    """Neighbours of a descendant, near the parent's edge: in the range ⇔
    descendant (the numeric gap between siblings holds no valid cell)."""
    c9 = h3i.latlng_to_cell(lat, lng, FINEST)
    parent = h3i.cell_to_parent(c9, res)
    rng = cell_range(parent)
    for n in h3i.grid_disk(c9, k * 3):
        assert in_range(n, rng) == (h3i.cell_to_parent(n, res) == parent)


@pytest.mark.parametrize("pentagon", h3i.get_pentagons(5)[:3])
def test_cell_range_of_pentagons(pentagon):
    children = h3i.cell_to_children(pentagon, FINEST)
    lo, hi = cell_range(pentagon)
    assert (lo, hi) == (min(children), max(children))
    for n in h3i.grid_disk(h3i.cell_to_center_child(pentagon, FINEST), 60):
        assert in_range(n, (lo, hi)) == (h3i.cell_to_parent(n, 5) == pentagon)


def test_cell_range_of_a_coarse_cell_holds_its_117649_descendants():
    parent = h3i.latlng_to_cell(39.0, -98.0, COARSE_RES)
    children = np.array(h3i.cell_to_children(parent, FINEST), dtype=np.uint64)
    lo, hi = cell_range(parent)
    assert len(children) == 7**6 and int(children.min()) == lo and int(children.max()) == hi


def test_cell_range_refuses_other_resolutions():
    with pytest.raises(ValueError):
        cell_range(h3i.latlng_to_cell(39.0, -98.0, 2))


# ------------------------------------------------------------ merging, planning
def test_sibling_ranges_merge_and_strangers_do_not():
    parent = h3i.latlng_to_cell(39.0, -98.0, 5)
    kids = sorted(h3i.cell_to_children(parent, 7))
    got = merge_ranges(*np.array([cell_range(c) for c in kids], dtype=np.uint64).T)
    assert len(got) == 1 and (int(got.lo[0]), int(got.hi[0])) == cell_range(parent)
    # a gap (the middle sibling missing) keeps two ranges
    some = kids[:3] + kids[4:]
    got = merge_ranges(*np.array([cell_range(c) for c in some], dtype=np.uint64).T)
    assert len(got) == 2
    # overlapping (a parent and its child) merge
    got = merge_ranges(*np.array([cell_range(parent), cell_range(kids[2])], dtype=np.uint64).T)
    assert len(got) == 1


def test_plan_queries_asks_every_shard_of_every_partition():
    cells = [h3i.latlng_to_cell(39.0, -98.0, 5), h3i.latlng_to_cell(35.0, -90.0, 7)]
    plan = plan_queries(Cover(np.array(cells, np.uint64), np.array([True, False])), 3)
    parts = sorted(q.partition for q in plan.queries)
    coarse = sorted(f"{h3i.cell_to_parent(c, COARSE_RES):x}" for c in cells)
    assert parts == sorted(f"{c}#{s}" for c in coarse for s in range(3))
    assert plan.query_count == 6
    assert plan.inside.contains([h3i.cell_to_center_child(cells[0], 9), h3i.cell_to_center_child(cells[1], 9)]).tolist() == [True, False]


def test_plan_of_an_empty_cover_is_empty():
    plan = plan_queries(Cover(np.zeros(0, np.uint64), np.zeros(0, bool)), 4)
    assert plan.queries == [] and plan.query_count == 0 and not plan.inside.contains([0x8928303588FFFFF]).any()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), poly=small_polygons(max_size_deg=0.5), max_boundary=st.sampled_from([96, 2000]),
       shards=st.integers(1, 4))
def test_plan_finds_exactly_what_the_cover_stands_for(data, poly, max_boundary, shards):
    """A resolution-9 cell is in one of its partition's ranges ⇔ the cover
    holds an ancestor; it is in an inside range ⇔ that ancestor is inside."""
    cover = cover_geometry(poly, buffer_m=0, max_boundary=max_boundary)
    plan = plan_queries(cover, shards)
    by_part = {q.partition: q.ranges for q in plan.queries}
    assert len(by_part) == len(plan.queries)
    minx, miny, maxx, maxy = poly.bounds
    xs = data.draw(st.lists(st.floats(minx - 0.3, maxx + 0.3), min_size=30, max_size=30))
    ys = data.draw(st.lists(st.floats(max(miny - 0.3, -80), min(maxy + 0.3, 80)), min_size=30, max_size=30))
    for x, y in zip(xs, ys):
        c9 = latlng_to_cell(y, x, FINEST)
        want = cover_contains(cover, c9)
        for shard in range(shards):
            rc, _ = region_keys(f"dev{shard}", c9, shards)
            rc = rc.split("#")[0] + f"#{shard}"
            found = any(lo <= c9 <= hi for lo, hi in by_part.get(rc, ()))
            assert found == (want is not None)
        assert bool(plan.inside.contains([c9])[0]) == bool(want)


@settings(max_examples=40, deadline=None)
@given(pts=st.lists(st.tuples(lats, lngs, st.integers(3, 9)), min_size=1, max_size=20))
def test_cell_ranges_vectorises_cell_range(pts):
    cells = [h3i.latlng_to_cell(a, b, r) for a, b, r in pts]
    lo, hi = cell_ranges(np.array(cells, dtype=np.uint64))
    assert list(zip(lo.tolist(), hi.tolist())) == [cell_range(c) for c in cells]
