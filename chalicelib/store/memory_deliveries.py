"""Delivery records and frequency caps in memory: the twin of
:class:`chalicelib.store.deliveries.DynamoDeliveries`, with the same
listing window (an unfiltered listing sees the records of the ``by_day``
partitions DynamoDB would walk: tomorrow back to 92 days, by the clock)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from typing import Any

from chalicelib.push.caps import decide_cap
from chalicelib.push.lifecycle import open_since
from chalicelib.push.model import HELD, Delivery
from chalicelib.retry import Clock
from chalicelib.store.deliveries import listing_days
from chalicelib.store.memory_base import Tally
from chalicelib.store.schema import (
    OPEN_STATUSES,
    check_delivery_changes,
    check_new_delivery,
    day_of,
    decode_page_token,
    delivery_sort_key,
    encode_page_token,
    fixed,
    list_index,
    open_key,
    release_key,
)


def _ck(d: Delivery) -> str:
    return delivery_sort_key(d.created_at, d.delivery_id)


def _copy_delivery(d: Delivery) -> Delivery:
    """A shallow copy (every field is an immutable value), a third of what
    ``copy.copy``'s reduce protocol costs."""
    new = object.__new__(Delivery)
    vars(new).update(vars(d))
    return new


class MemoryDeliveries:
    """``clock``: the wall clock (the unfiltered listing's window)."""

    def __init__(self, *, clock: Clock, tally: Tally | None = None) -> None:
        self.clock = clock
        self.tally = tally or Tally()
        self._lock = threading.RLock()
        self.deliveries: dict[str, Delivery] = {}
        self.caps: dict[tuple[str, str], list[float]] = {}

    def claim_delivery(self, delivery: Delivery) -> Delivery | None:
        check_new_delivery(delivery)
        with self._lock:
            cur = self.deliveries.get(delivery.delivery_id)
            if cur is None:
                self.deliveries[delivery.delivery_id] = _copy_delivery(delivery)
                self.tally.write()
                return None
            cur.dups += 1
            return _copy_delivery(cur)

    def get_deliveries(self, delivery_ids: list[str]) -> dict[str, Delivery]:
        self.tally.read()
        with self._lock:
            return {i: copy.deepcopy(self.deliveries[i]) for i in delivery_ids if i in self.deliveries}

    def update_delivery(
        self, delivery_id: str, changes: dict[str, Any], *, expect_status: str | None = None, absent: str | None = None,
        updated_before: float | None = None,
    ) -> bool:
        check_delivery_changes(changes, absent, expect_status)
        with self._lock:
            cur = self.deliveries.get(delivery_id)
            if cur is None:
                return False
            if changes.get("status") == HELD and "release_at" not in changes and cur.release_at is None:
                raise ValueError("a held delivery needs release_at")
            if expect_status is not None and cur.status != expect_status:
                return False
            if absent is not None and getattr(cur, absent) is not None:
                return False
            if updated_before is not None and open_since(cur) > updated_before:
                return False
            vars(cur).update(changes)  # checked above: Delivery fields only
            self.tally.write()
            return True

    def _sorted(self, keep: Callable[[Delivery], bool]) -> list[tuple[str, Delivery]]:
        """(ck, record) of the matching records, newest first."""
        with self._lock:
            rows = [(_ck(d), copy.deepcopy(d)) for d in self.deliveries.values() if keep(d)]
        rows.sort(key=lambda r: r[0], reverse=True)
        return rows

    def list_deliveries(
        self, *, campaign_id: str | None = None, device_id: str | None = None, status: str | None = None,
        limit: int = 100, next_token: str | None = None,
    ) -> tuple[list[Delivery], str | None]:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        index = list_index(campaign_id, device_id)
        after = decode_page_token(next_token, index) if next_token is not None else None
        newest, oldest = (d.isoformat() for d in listing_days(self.clock()))
        rows = self._sorted(
            lambda d: (campaign_id is None or d.campaign_id == campaign_id)
            and (device_id is None or d.device_id == device_id)
            and (status is None or d.status == status)
            and (index != "d" or oldest <= day_of(float(fixed(d.created_at))) <= newest)
        )
        if after is not None:
            rows = [r for r in rows if r[0] < after]
        page = rows[:limit]
        token = encode_page_token(index, page[-1][0]) if len(rows) > limit else None
        return [d for _, d in page], token

    def campaign_deliveries(self, campaign_id: str) -> Iterator[Delivery]:
        for _, d in self._sorted(lambda d: d.campaign_id == campaign_id):
            yield d

    def device_deliveries(self, device_id: str, since: float) -> list[Delivery]:
        start = fixed(since)
        return [d for ck, d in self._sorted(lambda d: d.device_id == device_id) if ck >= start]

    def due_held(self, now: float, limit: int = 100) -> list[Delivery]:
        end = fixed(now) + "#~"
        with self._lock:
            rows = [
                (release_key(d.release_at, d.delivery_id), copy.deepcopy(d))
                for d in self.deliveries.values()
                if d.status == HELD and d.release_at is not None
            ]
        rows = sorted((r for r in rows if r[0] <= end), key=lambda r: r[0])
        return [d for _, d in rows[:limit]]

    def stale_open(self, before: float, limit: int = 100) -> list[Delivery]:
        with self._lock:
            rows = [
                (open_key(open_since(d), d.delivery_id), copy.deepcopy(d))
                for d in self.deliveries.values()
                if d.status in OPEN_STATUSES and open_since(d) <= before
            ]
        rows.sort(key=lambda r: r[0])
        return [d for _, d in rows[:limit]]

    def reserve_send(
        self, campaign_id: str, device_id: str, now: float, per_day: int | None, min_gap_s: float | None
    ) -> bool:
        if per_day is None and min_gap_s is None:
            return True
        with self._lock:
            allowed, kept, _ = decide_cap(self.caps.get((campaign_id, device_id), []), now, per_day, min_gap_s)
            if not allowed:
                return False
            self.caps[(campaign_id, device_id)] = kept
            self.tally.write()
            return True
