"""The caches a warm Lambda keeps in :class:`~chalicelib.services.deps.Deps`:
the compiled campaigns and the alert areas' region plans.

They live apart from the use cases that fill them so that building ``Deps``
(every function's first call) imports neither Liquid and babel (campaign
templates) nor shapely's planning code: a campaign is compiled, and its
template engine imported, only when the store holds one to compile.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from chalicelib import metrics

if TYPE_CHECKING:
    from chalicelib.ports import CampaignRepo
    from chalicelib.push.campaigns import Campaign
    from chalicelib.push.model import Trigger
    from chalicelib.services.alert_planning import Budgeted

log = logging.getLogger("hexcast.push")


def _compile(campaign_id: str, definition: Any) -> Campaign:
    from chalicelib.push.campaigns import parse_campaign  # Liquid and babel: only with a campaign to compile

    return parse_campaign(campaign_id, definition)


class CampaignCache:
    """The compiled campaigns of a warm Lambda, re-read from the store at most
    every ``max_age_s`` seconds; writes through this process refresh at once.
    Compiled campaigns are reused while their version is unchanged."""

    def __init__(self, max_age_s: float = 30.0) -> None:
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._loaded_at: float | None = None
        self._compiled: dict[str, tuple[int, Campaign]] = {}
        self._index: dict[tuple[str, str], list[Campaign]] = {}

    def invalidate(self) -> None:
        with self._lock:
            self._loaded_at = None

    def all(self, store: CampaignRepo, now: float) -> list[Campaign]:
        with self._lock:
            fresh = self._loaded_at is not None and 0 <= now - self._loaded_at < self.max_age_s
            if fresh:
                return [c for _, c in self._compiled.values()]
        records = store.list_campaigns()
        compiled: dict[str, tuple[int, Campaign]] = {}
        for rec in records:
            old = self._compiled.get(rec.campaign_id)
            if old is not None and old[0] == rec.version:
                compiled[rec.campaign_id] = old
                continue
            try:
                compiled[rec.campaign_id] = (rec.version, _compile(rec.campaign_id, rec.definition))
            except Exception:  # stored definitions were valid when saved; never break pings
                # Never silent: the campaign sends nothing until it is fixed.
                log.exception("stored campaign no longer compiles", extra={"campaign_id": rec.campaign_id})
                metrics.campaign_compile_error()
        index: dict[tuple[str, str], list[Campaign]] = {}
        for _, c in sorted(compiled.items()):
            t = c[1].trigger
            keys = [("f", f) for f in t.fence_ids] + [("t", tag) for tag in t.fence_tags] or [("*", "")]
            for kind, value in keys:
                index.setdefault((t.type, f"{kind}:{value}"), []).append(c[1])
        with self._lock:
            self._compiled = compiled
            self._index = index
            self._loaded_at = now
            return [c for _, c in compiled.values()]

    def candidates(self, store: CampaignRepo, trigger: Trigger, now: float) -> list[Campaign]:
        """The campaigns that may match ``trigger`` (by type, fence id or tag),
        from an index built when the list is loaded — not a scan per event."""
        self.all(store, now)
        index = self._index
        keys = [(trigger.type, "*:")]
        if trigger.fence is not None:
            keys.append((trigger.type, f"f:{trigger.fence.fence_id}"))
            keys += [(trigger.type, f"t:{tag}") for tag in trigger.fence.tags]
        seen: dict[str, Campaign] = {}
        for k in keys:
            for c in index.get(k, ()):
                seen.setdefault(c.campaign_id, c)
        return [seen[k] for k in sorted(seen)]

    def get(self, store: CampaignRepo, campaign_id: str, now: float) -> Campaign | None:
        for c in self.all(store, now):
            if c.campaign_id == campaign_id:
                return c
        return None



class PlanCache:
    """Areas and region plans by their input, kept while warm (LRU)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple, Budgeted] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> Budgeted | None:
        with self._lock:
            got = self._items.get(key)
            if got is not None:
                self._items.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return got

    def put(self, key: tuple, value: Budgeted) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
