"""(a) In-memory point → fences: ``FenceIndex.match`` against
``shapely.STRtree(polygons).query(points, predicate="within")``."""

from __future__ import annotations

import statistics
import time

import numpy as np
import shapely

from benchmarks import data
from benchmarks.report import Figure


def _timed(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def make_pings(n: int, boundary_polys: np.ndarray, seed: int = 7, clearance_deg: float = 2e-5):
    """``n`` pings: 90% around cities (as the fences), 10% anywhere in the
    contiguous US. None lies within ``clearance_deg`` (~2 m) of a fence's
    boundary, so ``within`` (baseline) and ``covers`` (ours) must agree —
    and a circle's exact test (geodesic radius) agrees with its polygon."""
    rng = np.random.default_rng(seed)

    def draw(k):
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


def run(quick: bool, use_cache: bool) -> list[Figure]:
    from chalicelib.geo.geojson import parse_feature
    from chalicelib.geo.matcher import FenceIndex
    from chalicelib.geo.shape import FenceShape

    n_fences = 10_000 if quick else 100_000
    n_pings = 10_000 if quick else 100_000
    repeat = 3 if quick else 5

    t0 = time.perf_counter()
    features = data.realistic_fence_features(n_fences)
    defs = [parse_feature(f, str(f["id"])) for f in features]
    t_parse = time.perf_counter() - t0
    polys = np.array([d.geometry for d in defs], dtype=object)
    covers, t_cover, cached = data.covers_for(list(polys), use_cache=use_cache)
    n_circles = sum(d.kind == "circle" for d in defs)
    n_cells = sum(len(c) for c in covers)

    shapes = [FenceShape.from_definition(d) for d in defs]
    t0 = time.perf_counter()
    index = FenceIndex.build([(d.fence_id, s, c) for d, s, c in zip(defs, shapes, covers)])
    t_build = time.perf_counter() - t0

    baseline_polys = shapely.from_wkb(shapely.to_wkb(polys))  # unprepared copies
    t0 = time.perf_counter()
    tree = shapely.STRtree(baseline_polys)
    t_tree = time.perf_counter() - t0

    lats, lngs = make_pings(n_pings, baseline_polys)
    points = shapely.points(lngs, lats)

    t_ours, (p_ours, f_ours) = _timed(lambda: index.match(lats, lngs), repeat)
    t_base, base = _timed(lambda: tree.query(points, predicate="within"), repeat)
    order = np.lexsort((base[1], base[0]))
    p_base, f_base = base[0][order], base[1][order]
    if not (np.array_equal(p_ours, p_base) and np.array_equal(f_ours, f_base)):
        ours = set(zip(p_ours.tolist(), f_ours.tolist()))
        theirs = set(zip(p_base.tolist(), f_base.tolist()))
        raise AssertionError(
            f"matcher and STRtree disagree: {len(ours - theirs)} extra, {len(theirs - ours)} missing, "
            f"e.g. {sorted(ours ^ theirs)[:5]}"
        )

    # Ping-sized batches (a Lambda sees ≤ 100 pings per request).
    def batched(fn, size=100):
        return lambda: [fn(i, i + size) for i in range(0, n_pings, size)]

    t_ours_b, _ = _timed(batched(lambda a, b: index.match(lats[a:b], lngs[a:b])), max(repeat // 2, 1))
    t_base_b, _ = _timed(batched(lambda a, b: tree.query(points[a:b], predicate="within")), max(repeat // 2, 1))

    # A stronger shapely baseline for reference: bbox candidates from the
    # tree, then the prepared exact test vectorised over all pairs.
    shapely.prepare(baseline_polys)
    t_pre = lambda: _strtree_prepared(tree, baseline_polys, points, lngs, lats)  # noqa: E731
    t_base2, base2 = _timed(t_pre, repeat)
    assert len(base2[0]) == len(p_ours)

    scale = f"{n_fences:,} fences ({len(data.county_features()):,} counties, {n_circles:,} circles), {n_pings:,} pings"
    note = (
        f"{scale}; {len(p_ours):,} matches, identical to the baseline; index {n_cells:,} cells; "
        f"parse {t_parse:.1f} s, covers {t_cover:.1f} s ({'disk cache' if cached else 'computed on all cores'})"
    )
    return [
        Figure("a", f"match, one call of {n_pings // 1000}k pings", t_ours, "STRtree.query(within)", t_base, unit="s", target=None if quick else 1.5, note=note),
        Figure("a", "match, batches of 100 pings", t_ours_b, "STRtree.query(within)", t_base_b, unit="s"),
        Figure("a", "match vs tuned shapely (reference)", t_ours, "STRtree bbox + prepared intersects_xy", t_base2, unit="s"),
        Figure("a", "build (from stored covers)", t_build, "STRtree build", t_tree, unit="s"),
    ]


def _strtree_prepared(tree, polys, points, lngs, lats):
    p, f = tree.query(points)
    ok = shapely.intersects_xy(polys[f], lngs[p], lats[p])
    return p[ok], f[ok]
