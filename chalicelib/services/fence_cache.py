"""What a warm Lambda keeps of the fences: a small LRU of immutable fence
versions (:class:`VersionCache`) and index rows per cell under the index
epoch (:class:`IndexCache`).

Versions are keyed by ``(fence_id, version)`` and never change, so the
version number in each index row *is* the version cache's check: a re-put
fence has a new version and misses the cache; nothing is ever stale.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from chalicelib.ports import FenceRepo, FenceVersion, IndexEntry


class VersionCache:
    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[tuple[str, int], FenceVersion] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_many(self, store: FenceRepo, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], FenceVersion]:
        """Cached versions, fetching the missing ones in one batched read."""
        keys = set(keys)
        out: dict[tuple[str, int], FenceVersion] = {}
        with self._lock:
            for k in keys:
                v = self._data.get(k)
                if v is not None:
                    self._data.move_to_end(k)
                    out[k] = v
        missing = keys - out.keys()
        self.hits += len(out)
        self.misses += len(missing)
        if missing:
            fetched = store.get_versions(missing)
            out.update(fetched)
            with self._lock:
                for k, v in fetched.items():
                    self._data[k] = v
                while len(self._data) > self.max_entries:
                    self._data.popitem(last=False)
        return out

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


EMPTY_ROW: Mapping[str, IndexEntry] = MappingProxyType({})


class IndexCache:
    """Index rows per cell, kept while the Lambda is warm, trusted only under
    the index epoch (:meth:`FenceRepo.index_epoch`) read *before* they were
    queried. A ping batch reads the epoch together with its devices and the
    cells it does not hold; when the epoch moved, the cached rows it used are
    queried again (a fence was put or deleted: one more round trip, once per
    change) and the cache starts over. Cells without rows are cached too
    (most ladder cells have none). Entries older than ``max_age_s`` are not
    trusted either: a put that died before raising the epoch is seen within
    that time.

    Besides rows, it remembers which fences exist under the epoch: those
    with cached rows (a disabled or deleted fence has none) and those read
    through :meth:`remember_alive`.
    """

    def __init__(self, max_cells: int = 200_000, max_age_s: float = 3600.0) -> None:
        self.max_cells = max_cells
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self.epoch: int | None = None
        self._since = 0.0
        self._rows: OrderedDict[int, Mapping[str, IndexEntry]] = OrderedDict()
        self._fences: set[str] = set()
        self._alive: dict[str, bool] = {}
        self.hits = 0
        self.misses = 0
        self.resets = 0

    def _reset(self, epoch: int | None, now: float) -> None:
        self.epoch, self._since = epoch, now
        self._rows.clear()
        self._fences.clear()
        self._alive.clear()
        self.resets += 1

    def split(self, cells: Iterable[int], now: float) -> tuple[int | None, dict[int, Mapping[str, IndexEntry]], list[int]]:
        """→ (the epoch the cached rows belong to, the cached rows of these
        cells — empty ones included —, the cells to query)."""
        cached: dict[int, Mapping[str, IndexEntry]] = {}
        missing: list[int] = []
        with self._lock:
            if self.epoch is not None and now - self._since > self.max_age_s:
                self._reset(None, now)
            for c in cells:
                row = self._rows.get(c)
                if row is None:
                    missing.append(c)
                else:
                    self._rows.move_to_end(c)
                    cached[c] = row
            self.hits += len(cached)
            self.misses += len(missing)
            return self.epoch, cached, missing

    def settle(self, label: int | None, epoch: int, queried: Iterable[int], rows: Mapping[int, Mapping[str, IndexEntry]], now: float) -> bool:
        """After reading ``epoch`` alongside the queries of ``queried``: True
        when the rows :meth:`split` handed out under ``label`` are still
        valid. The queried rows are kept when nothing changed (they were
        queried after ``label`` was read); otherwise the cache starts over
        under ``epoch`` and keeps nothing of this round."""
        valid = label is not None and label == epoch
        with self._lock:
            if valid and self.epoch == epoch:
                self._store(queried, rows)
            elif not valid and self.epoch != epoch:
                self._reset(epoch, now)
        return valid

    def store(self, epoch: int, queried: Iterable[int], rows: Mapping[int, Mapping[str, IndexEntry]]) -> None:
        """Rows queried after ``epoch`` was read (kept if it is still the cache's)."""
        with self._lock:
            if epoch == self.epoch:
                self._store(queried, rows)

    def _store(self, queried: Iterable[int], rows: Mapping[int, Mapping[str, IndexEntry]]) -> None:
        if self.max_cells <= 0:
            return
        for c in queried:
            row = rows.get(c)
            self._rows[c] = MappingProxyType(dict(row)) if row else EMPTY_ROW
            self._rows.move_to_end(c)
            if row:
                self._fences.update(row)
        while len(self._rows) > self.max_cells:
            self._rows.popitem(last=False)

    def known_alive(self, fence_ids: Iterable[str]) -> dict[str, bool]:
        """Whether these fences exist under the cache's epoch, where known."""
        with self._lock:
            out = {f: self._alive[f] for f in fence_ids if f in self._alive}
            out.update({f: True for f in fence_ids if f in self._fences})
            return out

    def remember_alive(self, epoch: int, alive: Mapping[str, bool]) -> None:
        """Fence existence read after ``epoch`` was read."""
        with self._lock:
            if epoch == self.epoch:
                self._alive.update(alive)

    def clear(self) -> None:
        with self._lock:
            self._reset(None, 0.0)
