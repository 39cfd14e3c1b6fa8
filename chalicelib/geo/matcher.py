"""Vectorised in-memory point → fences matching over H3 covers.

:class:`FenceIndex` holds the index cells of many fences (their
:class:`~chalicelib.geo.cover.Cover`) in one sorted numpy array, and answers
"which fences cover each of these points?" for a whole batch at once, with
the same semantics as the DynamoDB path of a ping:

1. each point's resolution-9 cell and its ancestors at every ladder
   resolution (:func:`~chalicelib.geo.cells.to_parents`, bit operations);
2. one :func:`numpy.searchsorted` of all those ancestors into the sorted
   index cells gives every candidate (point, fence, inside) triple — no
   Python loop per point or per pair;
3. *inside* candidates are matches; *boundary* candidates get the exact test
   of their fence (:class:`~chalicelib.geo.shape.FenceShape` semantics:
   *covers*, so a point on the edge is inside), vectorised over all pairs at
   once: ``shapely.intersects_xy`` on an array of prepared geometries for
   polygons, haversine for circles.

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

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import shapely

from chalicelib.geo.cells import FINEST, LADDER, latlngs_to_cells, to_parents
from chalicelib.geo.cover import Cover
from chalicelib.geo.shape import FenceShape
from chalicelib.geo.sphere import haversine_m

_POLYGON, _CIRCLE, _OTHER = 0, 1, 2
_EMPTY = np.zeros(0, dtype=np.intp)


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
        first = np.flatnonzero(np.r_[True, sorted_cells[1:] != sorted_cells[:-1]]) if len(order) else _EMPTY
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
        )

    def __len__(self) -> int:
        return len(self.fence_ids)

    # ------------------------------------------------------------------
    def candidates(self, cells9: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every index entry found at a ladder ancestor of each resolution-9
        cell → ``(point_idx, fence_idx, inside)``, unordered; a (point,
        fence) pair appears once per matching entry."""
        cells9 = np.asarray(cells9, dtype=np.uint64)
        n = len(cells9)
        if n == 0 or len(self.cells) == 0:
            return _EMPTY, _EMPTY, np.zeros(0, bool)
        queries = np.concatenate([to_parents(cells9, r) if r < FINEST else cells9 for r in LADDER])
        pos = np.searchsorted(self.cells, queries)
        pos_ok = np.minimum(pos, len(self.cells) - 1)
        hit = self.cells[pos_ok] == queries
        qi = np.flatnonzero(hit)
        cell_pos = pos_ok[qi]
        lo = self.starts[cell_pos]
        counts = self.starts[cell_pos + 1] - lo
        total = int(counts.sum())
        # Expand the ranges [lo, lo + count) without a Python loop.
        ends = np.cumsum(counts)
        entry = np.arange(total, dtype=np.int64) + np.repeat(lo - (ends - counts), counts)
        point = np.repeat(qi % n, counts)
        return point, self.entry_fence[entry].astype(np.intp), self.entry_inside[entry]

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
        point, fence, inside = self.candidates(latlngs_to_cells(lats, lngs, FINEST))
        if len(point) == 0:
            return _EMPTY, _EMPTY

        # Order by (point, fence) with inside entries first, then keep the
        # first entry of each pair: a pair is matched once, and inside wins
        # if a fence's cover ever held two entries for one point.
        nf = len(self.fence_ids)
        key = (point.astype(np.int64) * nf + fence) * 2 + (~inside)
        key.sort()
        first = np.r_[True, (key[1:] >> 1) != (key[:-1] >> 1)]
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
            p = point[sel]
            # One call over all pairs; each geometry is prepared once.
            ok[sel] = shapely.intersects_xy(self._geoms[fence[sel]], lngs[p], lats[p])
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
