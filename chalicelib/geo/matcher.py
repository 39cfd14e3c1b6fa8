"""Vectorised in-memory point → fences matching over H3 covers.

:class:`FenceIndex` holds the index cells of many fences (their
:class:`~chalicelib.geo.cover.Cover`) in one sorted numpy array, and answers
"which fences cover each of these points?" for a whole batch at once, with
the same semantics as the DynamoDB path of a ping:

1. each point's resolution-9 cell and its ancestors at every ladder
   resolution (:func:`~chalicelib.geo.cells.to_parents`, bit operations);
2. the cells are sorted once, so points sharing an ancestor form a run at
   every level; each distinct ancestor is looked up once with
   :func:`numpy.searchsorted` in the sorted index cells, and each hit pairs
   its run of points with its entries — every candidate (point, fence,
   inside) triple without a Python loop per point or per pair;
3. *inside* candidates are matches; *boundary* candidates get the exact test
   of their fence (:class:`~chalicelib.geo.shape.FenceShape` semantics:
   *covers*, so a point on the edge is inside), vectorised over all pairs at
   once: a bounding-box test, then ``shapely.intersects_xy`` on an array of
   prepared geometries for polygons; haversine for circles.

The answer is a pair of index arrays like ``shapely.STRtree.query``:
``point_idx[k]`` is covered by fence ``fence_idx[k]`` (a position in the list
given to :meth:`FenceIndex.build`), sorted by point then fence, each pair
once.

>>> import shapely
>>> from chalicelib.geo.cover import cover_geometry
>>> from chalicelib.geo.geojson import circle_polygon
>>> square = shapely.box(-122.72, 38.43, -122.70, 38.45)
>>> ring = circle_polygon(38.44, -122.70, 300.0)
>>> index = FenceIndex.build([
...     ("square", FenceShape("polygon", square), cover_geometry(square)),
...     ("circle", FenceShape("circle", ring, center=(38.44, -122.70), radius_m=300.0),
...      cover_geometry(ring)),
... ])
>>> lats = np.array([38.44, 38.44, 38.43, 38.50])
>>> lngs = np.array([-122.71, -122.6975, -122.715, -122.71])
>>> points, fences = index.match(lats, lngs)
>>> [(int(p), index.fence_ids[f]) for p, f in zip(points, fences)]
[(0, 'square'), (1, 'circle'), (2, 'square')]

The third point lies exactly on the square's southern edge: *covers* says
it is inside.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterable, Sequence

import h3.api.basic_int as h3i
import numpy as np
import shapely

from chalicelib.geo.cells import FINEST, LADDER, to_parents
from chalicelib.geo.cover import Cover
from chalicelib.geo.shape import FenceShape
from chalicelib.geo.sphere import haversine_m

_POLYGON, _CIRCLE, _OTHER = 0, 1, 2
_EMPTY = np.zeros(0, dtype=np.intp)


def _changes(sorted_values: np.ndarray) -> np.ndarray:
    """True where a sorted array's value differs from the previous one."""
    out = np.empty(len(sorted_values), dtype=bool)
    if len(out):
        out[0] = True
        np.not_equal(sorted_values[1:], sorted_values[:-1], out=out[1:])
    return out


def res9_cells(lats: np.ndarray, lngs: np.ndarray) -> np.ndarray:
    """Resolution-9 cells of many points: one C call per point, driven by
    ``map`` over Python floats (~0.5 µs a point; the matcher's largest cost).

    >>> int(res9_cells(np.array([38.44]), np.array([-122.71]))[0]) == h3i.latlng_to_cell(38.44, -122.71, 9)
    True
    """
    return np.fromiter(
        map(h3i.latlng_to_cell, lats.tolist(), lngs.tolist(), itertools.repeat(FINEST, len(lats))),
        dtype=np.uint64,
        count=len(lats),
    )


@dataclass(frozen=True, eq=False)
class FenceIndex:
    """Index cells of many fences, sorted for batched lookups.

    Build it with :meth:`build`; the fields are the flattened index (CSR
    layout: the entries of ``cells[k]`` are ``entry_fence[starts[k]:starts[k+1]]``).
    """

    fence_ids: tuple[str, ...]
    shapes: tuple[FenceShape, ...]
    #: distinct index cells, sorted (uint64)
    cells: np.ndarray
    #: offsets into the entry arrays, ``len(cells) + 1`` of them
    starts: np.ndarray
    #: per entry: the fence (position in ``fence_ids``) and its inside flag
    entry_fence: np.ndarray
    entry_inside: np.ndarray
    # per fence: what the exact test needs, as parallel arrays
    _kind: np.ndarray
    _geoms: np.ndarray
    _center_lat: np.ndarray
    _center_lng: np.ndarray
    _radius_m: np.ndarray
    _bounds: np.ndarray  # (4, n): minx, miny, maxx, maxy of each geometry

    @classmethod
    def build(cls, fences: Iterable[tuple[str, FenceShape, Cover]]) -> "FenceIndex":
        """Index ``(fence_id, shape, cover)`` triples.

        The covers are those stored for the fences
        (:func:`~chalicelib.geo.cover.cover_geometry`); shapes are prepared
        already (:class:`FenceShape` prepares its geometry).
        """
        fences = list(fences)
        n = len(fences)
        ids = tuple(str(f[0]) for f in fences)
        shapes = tuple(f[1] for f in fences)
        covers = [f[2] for f in fences]

        lens = np.fromiter((len(c.cells) for c in covers), dtype=np.int64, count=n)
        if lens.sum():
            all_cells = np.concatenate([np.asarray(c.cells, dtype=np.uint64) for c in covers])
            all_inside = np.concatenate([np.asarray(c.inside, dtype=bool) for c in covers])
        else:
            all_cells, all_inside = np.zeros(0, np.uint64), np.zeros(0, bool)
        all_fence = np.repeat(np.arange(n, dtype=np.int32), lens)
        order = np.argsort(all_cells, kind="stable")
        sorted_cells = all_cells[order]
        first = np.flatnonzero(_changes(sorted_cells)) if len(order) else _EMPTY
        starts = np.append(first, len(order)).astype(np.int64)

        kind = np.full(n, _OTHER, dtype=np.int8)
        geoms = np.empty(n, dtype=object)
        clat = np.full(n, np.nan)
        clng = np.full(n, np.nan)
        radius = np.full(n, np.nan)
        for i, s in enumerate(shapes):
            geoms[i] = s.geometry
            if s.kind == "circle":
                kind[i] = _CIRCLE
                clat[i], clng[i] = s.center
                radius[i] = s.radius_m
            elif s.kind == "polygon":
                kind[i] = _POLYGON
        return cls(
            fence_ids=ids,
            shapes=shapes,
            cells=sorted_cells[first] if len(order) else np.zeros(0, np.uint64),
            starts=starts,
            entry_fence=all_fence[order],
            entry_inside=all_inside[order],
            _kind=kind,
            _geoms=geoms,
            _center_lat=clat,
            _center_lng=clng,
            _radius_m=radius,
            _bounds=np.ascontiguousarray(shapely.bounds(geoms).T) if n else np.zeros((4, 0)),
        )

    def __len__(self) -> int:
        return len(self.fence_ids)

    # ------------------------------------------------------------------
    def candidates(self, cells9: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every index entry found at a ladder ancestor of each resolution-9
        cell → ``(point_idx, fence_idx, inside)``, unordered; a (point,
        fence) pair appears once per matching entry.

        The cells are sorted once: points that share an ancestor then form
        one run at every level, so each distinct ancestor is looked up once
        (with sorted needles, which :func:`numpy.searchsorted` walks
        quickly) and a hit pairs its run of points with its entries.
        """
        cells9 = np.asarray(cells9, dtype=np.uint64)
        n = len(cells9)
        if n == 0 or len(self.cells) == 0:
            return _EMPTY, _EMPTY, np.zeros(0, bool)
        order = np.argsort(cells9)
        ordered = cells9[order]
        last = len(self.cells) - 1
        run_start, run_len, entry_start, entry_len = [], [], [], []
        for r in LADDER:
            anc = to_parents(ordered, r) if r < FINEST else ordered
            brk = np.flatnonzero(_changes(anc))
            distinct = anc[brk]
            pos = np.minimum(np.searchsorted(self.cells, distinct), last)
            hit = np.flatnonzero(self.cells[pos] == distinct)
            if len(hit) == 0:
                continue
            ends = np.append(brk[1:], n)
            run_start.append(brk[hit])
            run_len.append(ends[hit] - brk[hit])
            lo = self.starts[pos[hit]]
            entry_start.append(lo)
            entry_len.append(self.starts[pos[hit] + 1] - lo)
        if not run_start:
            return _EMPTY, _EMPTY, np.zeros(0, bool)
        rs, rl = np.concatenate(run_start), np.concatenate(run_len)
        es, el = np.concatenate(entry_start), np.concatenate(entry_len)
        # Expand each hit into run × entries, without a Python loop.
        count = rl * el
        total = int(count.sum())
        offset = np.cumsum(count) - count
        local = np.arange(total, dtype=np.int64) - np.repeat(offset, count)
        width = np.repeat(el, count)
        point = order[np.repeat(rs, count) + local // width]
        entry = np.repeat(es, count) + local % width
        return point.astype(np.intp), self.entry_fence[entry].astype(np.intp), self.entry_inside[entry]

    def match(self, lats: np.ndarray, lngs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The fences covering each point → ``(point_idx, fence_idx)``.

        ``lats``/``lngs`` are 1-D arrays in degrees (lat in [-90, 90], lng in
        [-180, 180]). Pairs are sorted by point, then fence, each once.
        """
        lats = np.ascontiguousarray(lats, dtype=float)
        lngs = np.ascontiguousarray(lngs, dtype=float)
        if lats.ndim != 1 or lats.shape != lngs.shape:
            raise ValueError("lats and lngs must be 1-D arrays of the same length")
        if not (np.isfinite(lats).all() and np.isfinite(lngs).all()):
            raise ValueError("coordinates must be finite")
        if (np.abs(lats) > 90.0).any() or (np.abs(lngs) > 180.0).any():
            raise ValueError("lat must be in [-90, 90] and lng in [-180, 180]")
        if len(lats) == 0 or len(self.cells) == 0:
            return _EMPTY, _EMPTY
        point, fence, inside = self.candidates(res9_cells(lats, lngs))
        if len(point) == 0:
            return _EMPTY, _EMPTY

        # Order by (point, fence) with inside entries first, then keep the
        # first entry of each pair: a pair is matched once, and inside wins
        # if a fence's cover ever held two entries for one point.
        nf = len(self.fence_ids)
        key = (point.astype(np.int64) * nf + fence) * 2 + (~inside)
        key.sort()
        first = _changes(key >> 1)
        key = key[first]
        boundary = (key & 1).astype(bool)
        pair = key >> 1
        point, fence = pair // nf, pair % nf

        keep = ~boundary
        b = np.flatnonzero(boundary)
        if len(b):
            keep[b] = self._exact(point[b], fence[b], lats, lngs)
        return point[keep].astype(np.intp), fence[keep].astype(np.intp)

    def _exact(self, point: np.ndarray, fence: np.ndarray, lats: np.ndarray, lngs: np.ndarray) -> np.ndarray:
        """The exact test of each (point, fence) pair, vectorised per kind."""
        ok = np.zeros(len(point), dtype=bool)
        kind = self._kind[fence]
        sel = np.flatnonzero(kind == _POLYGON)
        if len(sel):
            p, f = point[sel], fence[sel]
            x, y = lngs[p], lats[p]
            minx, miny, maxx, maxy = self._bounds
            # A bounding-box test first (most boundary candidates of small
            # fences are in their buffer ring), then one call over the
            # remaining pairs; each geometry is prepared once.
            inbox = np.flatnonzero((x >= minx[f]) & (x <= maxx[f]) & (y >= miny[f]) & (y <= maxy[f]))
            ok[sel[inbox]] = shapely.intersects_xy(self._geoms[f[inbox]], x[inbox], y[inbox])
        sel = np.flatnonzero(kind == _CIRCLE)
        if len(sel):
            p, f = point[sel], fence[sel]
            d = haversine_m(lats[p], lngs[p], self._center_lat[f], self._center_lng[f])
            ok[sel] = d <= self._radius_m[f]
        sel = np.flatnonzero(kind == _OTHER)
        if len(sel):  # H3 regions (rare): per fence, their own test
            for f in np.unique(fence[sel]):
                s = sel[fence[sel] == f]
                ok[s] = self.shapes[f].covers_many(lats[point[s]], lngs[point[s]])
        return ok

    def match_ids(self, lats: Sequence[float], lngs: Sequence[float]) -> list[list[str]]:
        """Per point, the ids of the fences covering it (sorted by position
        in the index). Convenience for callers that want ids, not indices."""
        points, fences = self.match(np.asarray(lats, float), np.asarray(lngs, float))
        out: list[list[str]] = [[] for _ in range(len(lats))]
        for p, f in zip(points.tolist(), fences.tolist()):
            out[p].append(self.fence_ids[f])
        return out
