"""A small LRU of immutable fence versions, kept while the Lambda is warm.

Entries are keyed by ``(fence_id, version)`` and versions never change, so the
version number in each index row *is* the cache check: a re-put fence has a
new version and misses the cache; nothing is ever stale.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Iterable

from chalicelib.ports import FenceRepo, FenceVersion


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
