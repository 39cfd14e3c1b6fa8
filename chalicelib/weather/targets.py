"""Who to notify for an area: devices with push
and location consent whose last known location is inside the area and recent
enough, found through the device region index instead of a full scan.

The area is covered top-down with H3 cells (:func:`cover_geometry`, no exit
buffer, a finer boundary than a fence's index uses), the cover becomes key
ranges per index partition (:func:`plan_queries`), and the devices read
back are filtered. Devices in a range that lies wholly inside the area need
no geometry test; the others get one vectorised exact test (a point on the
boundary is inside, as for fences).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import shapely

from chalicelib.geo.cells import FINEST
from chalicelib.geo.cover import cover_geometry
from chalicelib.weather.region import RegionPlan, location_cell, plan_queries

log = logging.getLogger("hexcast.weather")

#: Why a device read from the index is not a target, in the order checked.
SKIP_REASONS = ("no_consent", "push_disabled", "stale_location", "outside", "not_in_fence")

#: Boundary cells the area's cover may split down to (``cover_geometry``'s
#: ``max_boundary``): a finer boundary reads fewer devices outside the area
#: but needs more ranges, i.e. Queries (each at least 0.5 read unit, the
#: price of ~16 projected devices). A fence's index uses 96 so its rows stay
#: few. Measured over 1,000,000 population-weighted US devices (benchmark
#: (f)): with 1,000 a ~200,000 km² Great Plains storm and Texas stop at
#: resolution-5 boundaries (324 and 732 Queries, 3% overread), New Jersey
#: and a 40 km circle over Dallas at resolution 7 (868 and 292 Queries,
#: 6-27% overread) — for each, within 1% of the cheapest of 96 … 8,000
#: (counting a Query as 16 devices read; any value from ~660 to ~1,660
#: gives the same covers). Denser device counts favour larger values.
PLAN_MAX_BOUNDARY = 1000
#: The finest boundary cells: resolution 7 (~5 km²). Splitting them into
#: resolution-9 cells multiplies the ranges (a 30 km polygon: 988 Queries
#: instead of 236) to save reading the devices within ~1 km of the edge —
#: worth it only above ~40 devices per km² along the edge.
PLAN_FINEST = 7


def plan_within(
    area_geometry, *, shards: int, ladder: tuple[int, ...], max_queries: int, finest: int = PLAN_FINEST
) -> tuple[RegionPlan, bool]:
    """The area's region plan at the first boundary size of ``ladder`` whose
    Queries fit ``max_queries`` — and True; else the coarsest plan and False.
    Coarser boundaries read a few more devices near the edge, which the
    exact test drops."""
    plan = None
    for boundary in ladder:
        plan = plan_area(area_geometry, shards=shards, max_boundary=boundary, finest=finest)
        if plan.query_count <= max_queries:
            return plan, True
    assert plan is not None, "an empty ladder"
    return plan, False


@dataclass
class TargetPlan:
    """The devices to notify (sorted ids) and what finding them cost."""

    device_ids: list[str]
    queries: int  # index Queries (one per partition and range)
    items_read: int  # devices the index returned
    exact_tests: int  # devices tested against the geometry
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))


def plan_area(
    area_geometry, *, shards: int, max_boundary: int = PLAN_MAX_BOUNDARY, finest: int = PLAN_FINEST
) -> RegionPlan:
    """The region-index queries for a shapely (Multi)Polygon in lng/lat."""
    cover = cover_geometry(area_geometry, buffer_m=0.0, max_boundary=max_boundary, finest=finest)
    return plan_queries(cover, shards)


def plan_targets(
    store,
    area_geometry,
    *,
    now: float,
    max_age_s: float | None,
    shards: int,
    inside_fences: set[str] | None = None,
    max_boundary: int = PLAN_MAX_BOUNDARY,
    finest: int = PLAN_FINEST,
    plan: RegionPlan | None = None,
) -> TargetPlan:
    """The devices to notify for ``area_geometry`` (shapely, lng/lat).

    A target has push and location consent, push enabled, a location at
    most ``max_age_s`` old (any age when None) covered by the area and,
    when ``inside_fences`` is given, is inside one of those fences.
    ``shards`` is the number of index partitions per coarse cell
    (``Settings.region_shards``); a store that files devices over another
    number (its ``region_shards``) is asked with its own, since a query of
    the wrong shards would silently miss devices. ``max_boundary`` and
    ``finest`` set how finely the area's boundary is covered (see
    :data:`PLAN_MAX_BOUNDARY`); ``plan``: the area's region plan, when
    already made (for these ``shards``).
    """
    filed = getattr(store, "region_shards", shards)
    if filed != shards:
        log.warning("region shards differ: planning with the store's", extra={"asked": shards, "store": filed})
        shards = filed
        plan = None
    if plan is None:
        plan = plan_area(area_geometry, shards=shards, max_boundary=max_boundary, finest=finest)
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    oldest = now - max_age_s if max_age_s is not None else -math.inf
    ids: list[str] = []
    lats: list[float] = []
    lngs: list[float] = []
    cells: list[int] = []
    states = []
    items = 0
    for dev in store.devices_in_ranges(plan.queries):
        items += 1
        consent = dev.consent
        st = dev.state
        if not (consent.get("push") and consent.get("location")):
            skipped["no_consent"] += 1
        elif not dev.push_enabled:
            skipped["push_disabled"] += 1
        elif st is None or st.ts < oldest:
            skipped["stale_location"] += 1
        else:
            ids.append(dev.device_id)
            lats.append(st.lat)
            lngs.append(st.lng)
            cells.append(st.cell)
            states.append(st)
    n = len(ids)

    keep = np.ones(n, bool)
    exact = 0
    if n:
        cells9 = np.array(cells, dtype=np.uint64)
        odd = np.flatnonzero(((cells9 >> np.uint64(52)) & np.uint64(0xF)) != np.uint64(FINEST))
        for k in odd.tolist():  # states filed under their lat/lng's cell
            cells9[k] = location_cell(states[k])
        need = ~plan.inside.contains(cells9)
        exact = int(need.sum())
        if exact:
            shapely.prepare(area_geometry)
            keep[need] = shapely.intersects_xy(area_geometry, np.array(lngs)[need], np.array(lats)[need])
        skipped["outside"] = int((~keep).sum())
        if inside_fences is not None:
            fenced = np.fromiter((not inside_fences.isdisjoint(s.inside) for s in states), bool, n)
            skipped["not_in_fence"] = int((keep & ~fenced).sum())
            keep &= fenced
    chosen = sorted(i for i, k in zip(ids, keep.tolist()) if k)
    return TargetPlan(chosen, plan.query_count, items, exact, skipped)
