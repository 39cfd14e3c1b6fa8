"""The device region index: key scheme and range maths (pure).

Every device with a location state carries two keys, indexed by the
``by_region`` GSI of the devices table:

* ``rc`` — ``<resolution-3 ancestor, hex>#<shard>``: the partition. The
  shard (a stable hash of the device id modulo ``shards``) spreads a dense
  metro over several partitions, so none of them gets hot.
* ``rf`` — the device's resolution-9 cell as 15 hex digits: fixed width, so
  lexicographic order is numeric order.

An H3 cell stores its resolution in bits 52-55 and one 3-bit digit per
resolution (digit 1 in bits 42-44 … digit 15 in bits 0-2); digits finer
than the cell's resolution are 7. The resolution-9 descendants of a cell P
of resolution r therefore share P's bits above digit r+1 and have digits
r+1..9 in 0..6 (digits 10..15 = 7): they are exactly the resolution-9 cells
numerically between P with digits r+1..9 set to 0 and P with them set to
6 (:func:`cell_range`). An area's cover becomes a few key ranges per
partition (:func:`plan_queries`): one ``Query`` each, with
``rc = :p AND rf BETWEEN :lo AND :hi``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from chalicelib.geo.cells import FINEST, latlng_to_cell, to_parents
from chalicelib.geo.cover import Cover


@dataclass(frozen=True)
class RegionQuery:
    """One partition of the device region index and the key ranges to read
    in it: inclusive ranges of resolution-9 cells (ints), sorted and
    disjoint. ``partition`` is an ``rc`` key (see
    :mod:`chalicelib.weather.region`); each range is one ``Query``."""

    partition: str
    ranges: tuple[tuple[int, int], ...]

#: The resolution of the partition key's cell.
COARSE_RES = 3
#: The resolution of the sort key's cell.
FINE_RES = FINEST

_RES_SHIFT = 52
_RES_MASK = 0xF << _RES_SHIFT
_BASE_SHIFT = 45  # base cell: bits 45-51


def _digit_shift(i: int) -> int:
    """Bit offset of digit ``i`` (1..15)."""
    return 3 * (15 - i)


def resolution_of(cell: int) -> int:
    """The resolution field of an H3 cell.

    >>> resolution_of(0x8928303588fffff)
    9
    """
    return (int(cell) & _RES_MASK) >> _RES_SHIFT


def fine_key(cell9: int) -> str:
    """``rf``: a resolution-9 cell as 15 lowercase hex digits.

    >>> fine_key(0x8928303588fffff)
    '8928303588fffff'
    """
    return format(int(cell9), "015x")


def shard_of(device_id: str, shards: int) -> int:
    """A stable shard for a device (CRC-32 of its id: the same in every
    process and release, unlike ``hash``).

    >>> shard_of("device-1", 4) == shard_of("device-1", 4)
    True
    """
    return zlib.crc32(device_id.encode()) % max(1, int(shards))


def partition_key(coarse_cell: int, shard: int) -> str:
    """``rc`` from a resolution-3 cell and a shard.

    >>> partition_key(0x832830fffffffff, 2)
    '832830fffffffff#2'
    """
    return f"{int(coarse_cell):x}#{shard}"


def coarse_of(cell: int) -> int:
    """The resolution-3 ancestor of a cell of resolution ≥ 3."""
    return int(to_parents(np.array([int(cell)], dtype=np.uint64), COARSE_RES)[0])


def region_keys(device_id: str, cell9: int, shards: int) -> tuple[str, str]:
    """``(rc, rf)`` of a device whose last location is in ``cell9``.

    >>> region_keys("d1", 0x8928303588fffff, 4)
    ('832830fffffffff#2', '8928303588fffff')
    """
    cell9 = int(cell9)
    if resolution_of(cell9) != FINE_RES:
        raise ValueError(f"region keys need a resolution-{FINE_RES} cell, got {cell9:x}")
    return partition_key(coarse_of(cell9), shard_of(device_id, shards)), fine_key(cell9)


def location_cell(state) -> int:
    """The resolution-9 cell a location state is filed under: its ``cell``
    (pings store the resolution-9 cell), or the cell of its lat/lng when the
    state holds another resolution.

    >>> from chalicelib.presence import LocationState
    >>> hex(location_cell(LocationState(38.44, -122.71, 0.0, 0x85283473fffffff)))
    '0x8928303588fffff'
    """
    cell = int(state.cell)
    if resolution_of(cell) == FINE_RES:
        return cell
    return latlng_to_cell(state.lat, state.lng, FINE_RES)


def cell_range(cell: int) -> tuple[int, int]:
    """The numeric range ``[lo, hi]`` holding exactly the resolution-9
    descendants of ``cell`` (resolution 3..9) among valid H3 cells.

    >>> lo, hi = cell_range(0x85283037fffffff)
    >>> hex(lo), hex(hi)
    ('0x89283034003ffff', '0x892830376dbffff')
    """
    cell = int(cell)
    r = resolution_of(cell)
    if not COARSE_RES <= r <= FINE_RES:
        raise ValueError(f"cell_range needs a cell of resolution {COARSE_RES}..{FINE_RES}, got {r}")
    base = (cell & ~_RES_MASK) | (FINE_RES << _RES_SHIFT)
    lo = hi = base
    for i in range(r + 1, FINE_RES + 1):
        s = _digit_shift(i)
        lo &= ~(7 << s)
        hi = (hi & ~(7 << s)) | (6 << s)
    return lo, hi


def cell_ranges(cells) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`cell_range` for uint64 cells of resolution 3..9."""
    cells = np.asarray(cells, dtype=np.uint64)
    res = (cells & np.uint64(_RES_MASK)) >> np.uint64(_RES_SHIFT)
    if len(cells) and (res.min() < COARSE_RES or res.max() > FINE_RES):
        raise ValueError(f"cells must have resolutions {COARSE_RES}..{FINE_RES}")
    lo = (cells & ~np.uint64(_RES_MASK)) | np.uint64(FINE_RES << _RES_SHIFT)
    hi = lo.copy()
    for i in range(COARSE_RES + 1, FINE_RES + 1):
        s = _digit_shift(i)
        finer = res < np.uint64(i)
        lo = np.where(finer, lo & ~np.uint64(7 << s), lo)
        hi = np.where(finer, (hi & ~np.uint64(7 << s)) | np.uint64(6 << s), hi)
    return lo, hi


def _ordinals(cells9: np.ndarray) -> np.ndarray:
    """Position of resolution-9 cells in base-7 order within their base cell
    (digits 1..9 read as a base-7 number), offset by the base cell: cells
    with consecutive ordinals have no valid cell between them."""
    cells9 = np.asarray(cells9, dtype=np.uint64)
    out = ((cells9 >> np.uint64(_BASE_SHIFT)) & np.uint64(0x7F)).astype(np.int64)
    for i in range(1, FINE_RES + 1):
        d = ((cells9 >> np.uint64(_digit_shift(i))) & np.uint64(7)).astype(np.int64)
        out = out * 7 + d
    return out


@dataclass(frozen=True)
class RangeSet:
    """Disjoint, sorted, inclusive ranges of resolution-9 cells."""

    lo: np.ndarray
    hi: np.ndarray

    def __len__(self) -> int:
        return len(self.lo)

    def contains(self, cells9) -> np.ndarray:
        """Vectorised: which cells fall in one of the ranges."""
        cells9 = np.asarray(cells9, dtype=np.uint64)
        if len(self.lo) == 0:
            return np.zeros(len(cells9), bool)
        k = np.searchsorted(self.lo, cells9, side="right") - 1
        ok = k >= 0
        kk = np.where(ok, k, 0)
        return ok & (cells9 <= self.hi[kk])


def merge_ranges(lo: np.ndarray, hi: np.ndarray) -> RangeSet:
    """Sort and merge ranges that overlap or touch (no valid resolution-9
    cell between them)."""
    lo = np.asarray(lo, dtype=np.uint64)
    hi = np.asarray(hi, dtype=np.uint64)
    if len(lo) == 0:
        return RangeSet(lo, hi)
    order = np.argsort(lo, kind="stable")
    lo, hi = lo[order], hi[order]
    olo, ohi = _ordinals(lo), _ordinals(hi)
    # running max of the ends so far: a range starts a new run when it
    # begins after everything before it (plus one) ends.
    run_hi = np.maximum.accumulate(ohi)
    start = np.ones(len(lo), bool)
    start[1:] = olo[1:] > run_hi[:-1] + 1
    starts = np.flatnonzero(start)
    # a run ends at its largest hi (numeric order = ordinal order)
    return RangeSet(lo[starts], np.maximum.reduceat(hi, starts))


@dataclass(frozen=True)
class RegionPlan:
    """The queries for an area's cover, and the ranges whose devices are
    inside the area without an exact test."""

    queries: list[RegionQuery]
    inside: RangeSet

    @property
    def query_count(self) -> int:
        """DynamoDB ``Query`` calls (one per partition and range)."""
        return sum(len(q.ranges) for q in self.queries)


def plan_queries(cover: Cover, shards: int) -> RegionPlan:
    """Key ranges covering every device that may be in ``cover``.

    Each cover cell (resolution ≥ 3) becomes the range of its resolution-9
    descendants in its resolution-3 ancestor's partition; within a
    partition, ranges that overlap or touch are merged (whatever their
    inside flags), and each partition is asked once per shard. Inside
    ranges are kept apart (merged among themselves) to tell which devices
    need no exact test.

    >>> from chalicelib.geo.cover import Cover
    >>> plan = plan_queries(Cover(np.array([0x85283037fffffff], np.uint64), np.array([True])), 2)
    >>> [(q.partition, [(hex(a), hex(b)) for a, b in q.ranges]) for q in plan.queries]
    [('832830fffffffff#0', [('0x89283034003ffff', '0x892830376dbffff')]), ('832830fffffffff#1', [('0x89283034003ffff', '0x892830376dbffff')])]
    >>> bool(plan.inside.contains([0x8928303588fffff])[0])
    True
    """
    cells = np.asarray(cover.cells, dtype=np.uint64)
    inside = np.asarray(cover.inside, dtype=bool)
    if len(cells) == 0:
        return RegionPlan([], merge_ranges(np.zeros(0, np.uint64), np.zeros(0, np.uint64)))
    lo, hi = cell_ranges(cells)
    coarse = to_parents(cells, COARSE_RES)
    queries: list[RegionQuery] = []
    for p in np.unique(coarse).tolist():
        sel = coarse == np.uint64(p)
        merged = merge_ranges(lo[sel], hi[sel])
        ranges = tuple(zip(merged.lo.tolist(), merged.hi.tolist()))
        for shard in range(max(1, int(shards))):
            queries.append(RegionQuery(partition_key(p, shard), ranges))
    return RegionPlan(queries, merge_ranges(lo[inside], hi[inside]))
