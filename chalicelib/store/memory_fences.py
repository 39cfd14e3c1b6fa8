"""Fences in memory: the twin of :class:`chalicelib.store.fences.DynamoFences`."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import replace

from chalicelib.geo.cover import Cover
from chalicelib.store.memory_base import Tally
from chalicelib.ports import (
    ConcurrentUpdate,
    FenceRecord,
    FenceVersion,
    IndexEntry,
)


class MemoryFences:
    def __init__(self, tally: Tally | None = None) -> None:
        self.tally = tally or Tally()
        self._lock = threading.RLock()
        self.fences: dict[str, FenceRecord] = {}
        self.versions: dict[tuple[str, int], FenceVersion] = {}
        self.covers: dict[str, Cover] = {}
        self.cells: dict[int, dict[str, IndexEntry]] = {}
        self.epoch = 0

    def get_fence(self, fence_id: str) -> FenceRecord | None:
        return self.fences.get(fence_id)

    def get_fences(self, fence_ids: Iterable[str]) -> dict[str, FenceRecord]:
        self.tally.read()
        return {f: self.fences[f] for f in fence_ids if f in self.fences}

    def put_fence(self, record: FenceRecord, version: FenceVersion, cover: Cover) -> FenceRecord:
        with self._lock:
            old = self.fences.get(record.fence_id)
            n = (old.version if old else 0) + 1
            record = replace(record, version=n, created_at=old.created_at if old else record.created_at)
            version = replace(version, version=n)
            key = (record.fence_id, n)
            if key in self.versions:
                raise ConcurrentUpdate(record.fence_id)
            self.versions[key] = version
            new_cells = set()
            if record.enabled:
                for c, inside in zip(cover.cells.tolist(), cover.inside.tolist()):
                    self.cells.setdefault(c, {})[record.fence_id] = IndexEntry(n, inside)
                    new_cells.add(c)
            if old is not None:
                for c in self.covers[record.fence_id].cells.tolist():
                    if c not in new_cells:
                        self._remove(c, record.fence_id)
                self.versions.pop((old.fence_id, old.version), None)
            self.fences[record.fence_id] = record
            self.covers[record.fence_id] = cover if record.enabled else Cover(cover.cells[:0], cover.inside[:0])
            self.epoch += 1
            self.tally.write()
            return record

    def _remove(self, cell: int, fence_id: str) -> None:
        row = self.cells.get(cell)
        if row is not None:
            row.pop(fence_id, None)
            if not row:
                del self.cells[cell]

    def delete_fence(self, fence_id: str) -> bool:
        with self._lock:
            old = self.fences.pop(fence_id, None)
            if old is None:
                return False
            for c in self.covers.pop(fence_id).cells.tolist():
                self._remove(c, fence_id)
            self.versions.pop((fence_id, old.version), None)
            self.epoch += 1
            return True

    def list_fences(self, tag: str | None, limit: int, next_token: str | None) -> tuple[list[FenceRecord], str | None]:
        ids = sorted(f for f, r in self.fences.items() if tag is None or tag in r.tags)
        if next_token:
            ids = [i for i in ids if i > next_token]
        page = ids[:limit]
        more = len(ids) > limit
        return [self.fences[i] for i in page], (page[-1] if more and page else None)

    def get_versions(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], FenceVersion]:
        self.tally.read()
        return {k: self.versions[k] for k in keys if k in self.versions}

    def index_epoch(self) -> int:
        self.tally.read()
        return self.epoch

    def lookup_cells(self, cells: Iterable[int]) -> dict[int, dict[str, IndexEntry]]:
        self.tally.read()
        return {c: dict(self.cells[c]) for c in cells if c in self.cells}
