"""(a) Point → fences on the path production runs, beside a shapely brute force.

Production answers "which fences contain this ping" with the H3 ladder of the
store's index: the ping's resolution-9 cell and its ancestors
(``services.geofences.ladder``), the index rows of those cells
(``store.lookup_cells``), the newest entry per fence
(``store.ports.newest_entries``), the fence versions through the warm
``VersionCache`` and the exact ``FenceShape.covers`` test where a row is a
boundary row (``services.geofences.match_fences``). Measured two ways, over an
in-memory fences repository filled with the fences of the old benchmark (all counties +
store-sized fences around cities), so the figure is the application's own
CPU cost with no network:

* ``services.geofences.lookup(deps, lat, lng)``, one call per ping (``GET /v1/lookup``);
* the matching half of ``services.handle_pings`` on batches of 100 pings:
  cells and ladders of the batch at once, one ``lookup_cells`` of every
  ladder cell, then ``newest_entries`` + versions + ``_match`` per ping —
  the same calls in the same order (the device reads, presence steps and
  writes of ``handle_pings`` are left out: they are (b)'s business).

Baseline, in the same run: ``shapely.STRtree(polygons).query(points,
predicate="intersects")`` — one call over every ping, calls of 100, and one
call per ping (the shape of ``lookup``).
The run **asserts that every ping gets the same fence set** on all paths.
No ping lies within ~2 m of a fence boundary, so the baseline's polygon
(a circle's 64-gon) and the exact geodesic circle test agree.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Sequence, TypeVar

import numpy as np
import shapely

from benchmarks import data
from benchmarks.report import Figure, Sample, timed

if TYPE_CHECKING:
    from chalicelib.services.deps import Deps

T = TypeVar("T")
BATCH = 100  # pings per request, as handle_pings accepts


def _timed(fn: Callable[[], T], repeat: int) -> tuple[Sample, T]:
    """Wall time of ``fn``: median of ``repeat`` runs with min–max, and its result."""
    got = timed(fn, repeat)
    return got.wall, got.result


def make_pings(n: int, boundary_polys: np.ndarray, seed: int = 7, clearance_deg: float = 2e-5) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pings: 90% around cities (as the fences), 10% anywhere in the
    contiguous US. None lies within ``clearance_deg`` (~2 m) of a fence's
    boundary, so the polygon baseline and the exact tests must agree."""
    rng = np.random.default_rng(seed)

    def draw(k: int) -> tuple[np.ndarray, np.ndarray]:
        near = int(round(k * 0.9))
        la, ln = data.near_cities(rng, near)
        minx, miny, maxx, maxy = data.CONUS
        la = np.concatenate([la, rng.uniform(miny, maxy, k - near)])
        ln = np.concatenate([ln, rng.uniform(minx, maxx, k - near)])
        return la, ln

    lats, lngs = draw(n)
    edges = shapely.STRtree(shapely.boundary(boundary_polys))
    for _ in range(20):
        bad = np.unique(edges.query(shapely.points(lngs, lats), predicate="dwithin", distance=clearance_deg)[0])
        if len(bad) == 0:
            break
        lats[bad], lngs[bad] = draw(len(bad))
    else:  # pragma: no cover
        raise RuntimeError("could not place pings away from fence boundaries")
    return lats, lngs


def build_deps(defs: Sequence, covers: Sequence) -> Deps:
    """Service deps over an in-memory fences repository holding every fence, stored as
    ``services.geofences.store_definition`` stores them (record, version, cover), but
    from the cached covers instead of recomputing them."""
    from chalicelib.geo.shape import FenceShape
    from chalicelib.ports import FenceRecord, FenceVersion
    from chalicelib.services.deps import Deps
    from chalicelib.services.fence_cache import VersionCache
    from chalicelib.settings import Settings
    from chalicelib.store import memory_stores

    settings = Settings(stage="bench")
    stores = memory_stores(clock=lambda: 0.0)
    store = stores.fences
    now = "2026-07-15T00:00:00Z"
    for d, cover in zip(defs, covers):
        record = FenceRecord(d.fence_id, 0, d.kind, d.name, d.tags, d.enabled, d.area_km2, len(cover), d.feature(), now, now)
        version = FenceVersion(d.fence_id, 0, d.name, d.tags, d.dwell_minutes, FenceShape.from_definition(d))
        store.put_fence(record, version, cover)
    return Deps.over(stores, settings, clock=lambda: 0.0, cache=VersionCache(settings.geometry_cache_size))


def lookup_all(deps: Deps, lats: np.ndarray, lngs: np.ndarray) -> list[frozenset[str]]:
    """``services.lookup`` per ping: the fence ids it answers."""
    from chalicelib.services.geofences import lookup
    return [frozenset(f["id"] for f in lookup(deps, la, ln)["fences"]) for la, ln in zip(lats.tolist(), lngs.tolist())]


def handle_pings_match(deps: Deps, lats: Sequence[float], lngs: Sequence[float]) -> list[frozenset[str]]:
    """The matching steps of ``services.handle_pings`` for one batch."""
    from chalicelib.geo.cells import FINEST, latlng_to_cell
    from chalicelib.ports import newest_entries
    from chalicelib.services.geofences import ladder, match_fences

    cells9 = np.array([latlng_to_cell(la, ln, FINEST) for la, ln in zip(lats, lngs)], dtype=np.uint64)
    ladders = ladder(cells9)
    anc_of = [[int(c) for c in row] for row in ladders]
    rows = deps.fences.lookup_cells(sorted({int(c) for c in ladders.ravel()}))
    entries_of = [newest_entries(rows, anc) for anc in anc_of]
    versions = deps.cache.get_many(deps.fences, {(f, e.version) for ents in entries_of for f, e in ents.items()})
    return [frozenset(match_fences(la, ln, ents, versions).covering) for la, ln, ents in zip(lats, lngs, entries_of)]


def _sets(n: int, p: np.ndarray, f: np.ndarray, ids: Sequence[str]) -> list[frozenset[str]]:
    out: list[set[str]] = [set() for _ in range(n)]
    for i, j in zip(p.tolist(), f.tolist()):
        out[i].add(ids[j])
    return [frozenset(s) for s in out]


def _check(name: str, got: list[frozenset[str]], want: list[frozenset[str]]) -> None:
    bad = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
    if len(got) != len(want) or bad:
        i = bad[0] if bad else -1
        raise AssertionError(f"{name} and STRtree disagree on {len(bad)} pings, e.g. ping {i}: {sorted(got[i] ^ want[i]) if bad else ''}")


def run(quick: bool, use_cache: bool) -> list[Figure]:
    from chalicelib.geo.geojson import parse_feature

    n_fences = 10_000 if quick else 100_000
    n_pings = 10_000 if quick else 100_000
    repeat = 3 if quick else 5

    t0 = time.perf_counter()
    features = data.realistic_fence_features(n_fences)
    defs = [parse_feature(f, str(f["id"])) for f in features]
    t_parse = time.perf_counter() - t0
    ids = [d.fence_id for d in defs]
    polys = np.array([d.geometry for d in defs], dtype=object)
    covers, t_cover, cached = data.covers_for(list(polys), use_cache=use_cache)
    n_circles = sum(d.kind == "circle" for d in defs)
    n_cells = sum(len(c) for c in covers)

    t0 = time.perf_counter()
    deps = build_deps(defs, covers)
    t_build = time.perf_counter() - t0

    baseline_polys = shapely.from_wkb(shapely.to_wkb(polys))  # unprepared copies
    t0 = time.perf_counter()
    tree = shapely.STRtree(baseline_polys)
    t_tree = time.perf_counter() - t0

    lats, lngs = make_pings(n_pings, baseline_polys)
    points = shapely.points(lngs, lats)
    la_list, ln_list = lats.tolist(), lngs.tolist()
    batches = [(la_list[i : i + BATCH], ln_list[i : i + BATCH]) for i in range(0, n_pings, BATCH)]

    # Baseline: one call, and calls of a request's size.
    t_base, (p_base, f_base) = _timed(lambda: tree.query(points, predicate="intersects"), repeat)
    want = _sets(n_pings, p_base, f_base, ids)
    t_base_b, _ = _timed(lambda: [tree.query(points[i : i + BATCH], predicate="intersects") for i in range(0, n_pings, BATCH)], repeat)
    query = tree.query
    t_base_1, _ = _timed(lambda: [query(pt, predicate="intersects") for pt in points.tolist()], repeat)

    # Production: a warm Lambda (the version cache filled by a first pass, as
    # its size allows), then timed passes.
    lookup_all(deps, lats, lngs)
    t_lookup, got = _timed(lambda: lookup_all(deps, lats, lngs), repeat)
    _check("services.lookup", got, want)
    t_batch, got_b = _timed(lambda: [s for la, ln in batches for s in handle_pings_match(deps, la, ln)], repeat)
    _check("handle_pings' matching", got_b, want)

    matches = sum(len(s) for s in want)
    hits, misses = deps.cache.hits, deps.cache.misses
    scale = f"{n_fences:,} fences ({len(data.county_features()):,} counties, {n_circles:,} circles), {n_pings:,} pings"
    note = (
        f"{scale}; {matches:,} matches, every ping's fence set identical to the baseline's; index {n_cells:,} cells "
        f"in {len(deps.fences.cells):,} rows; version cache {hits / max(hits + misses, 1):.0%} hits; "
        f"parse {t_parse:.1f} s, covers {t_cover:.1f} s ({'disk cache' if cached else 'computed on all cores'}); wall time, median of {repeat} with min–max"
    )
    per = f"{n_pings // 1000}k pings"
    def fig(name: str, ours: Sample, baseline: str, base: Sample, **kw) -> Figure:
        return Figure("a", name, ours.median, baseline, base.median, unit="s", spread=ours.spread, baseline_spread=base.spread, **kw)

    return [
        fig(f"services.lookup, one call per ping, {per}", t_lookup, "STRtree.query(intersects), one call per ping", t_base_1, note=note),
        fig(f"services.lookup, one call per ping, {per}", t_lookup, "STRtree.query(intersects), one call", t_base),
        fig(f"handle_pings' matching, batches of {BATCH}, {per}", t_batch, f"STRtree.query(intersects), calls of {BATCH}", t_base_b),
        Figure("a", "build: fences.put_fence of every fence (covers given)", t_build, "STRtree build", t_tree, unit="s",
               note="one build each, not repeated"),
    ]
