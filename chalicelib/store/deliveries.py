"""Delivery records and frequency caps on DynamoDB: the ``deliveries``
table (keys and indexes in :mod:`chalicelib.store.schema`).

A record is claimed with a conditional ``PutItem`` (exactly one per id,
however often the trigger is retried) and moved between statuses with
conditional ``UpdateItem``; listings read the ``by_campaign``/``by_device``/
``by_day`` indexes newest first; records still ``pending``/``publishing``
carry the keys of the sparse, keys-only ``open`` index, which the sweep
queries (``stale_open``) for what a dead invocation left behind. Frequency
caps are one small counter item per (campaign, device), written with
optimistic concurrency; the decision itself is
:func:`chalicelib.push.caps.decide_cap`.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor
from datetime import date, timedelta
from typing import Any

from chalicelib.errors import Unavailable
from chalicelib.push.caps import DAY_S, decide_cap
from chalicelib.push.lifecycle import open_since
from chalicelib.push.model import HELD, Delivery
from chalicelib.retry import Clock, RetryPolicy
from chalicelib.store.ddb import n as _n
from chalicelib.store.ddb import num as _num
from chalicelib.store.ddb import s as _s
from chalicelib.store.delivery_items import (
    build_update,
    delivery_from_item,
    delivery_item,
)
from chalicelib.store.schema import (
    HELD_HASH,
    LIST_INDEXES,
    OPEN_SHARDS,
    OPEN_STATUSES,
    cap_key,
    check_delivery_changes,
    check_new_delivery,
    ck_day,
    day_of,
    decode_page_token,
    encode_page_token,
    fixed,
    list_index,
)
from chalicelib.store.table import Item, Table

OPEN_INDEX = "open"
#: ``by_day`` partitions a listing walks: tomorrow (clock skew) back to
#: 90 days ago (records expire after 90 days).
LIST_DAYS = 92


def listing_days(now: float) -> tuple[date, date]:
    """(newest, oldest) ``by_day`` partition an unfiltered listing reads at
    ``now``: tomorrow back to ``LIST_DAYS`` days (both stores apply it)."""
    first = date.fromisoformat(day_of(now + DAY_S))
    return first, first - timedelta(days=LIST_DAYS - 1)


class DynamoDeliveries:
    """``clock``: the wall clock (where an unfiltered listing starts
    walking the ``by_day`` partitions); ``cap_retry``: how a cap write that
    lost a race is retried."""

    def __init__(self, table: Table, *, clock: Clock, cap_retry: RetryPolicy) -> None:
        self.table = table
        self.clock = clock
        self.cap_retry = cap_retry

    @property
    def pool(self) -> Executor:
        return self.table.pool

    def claim_delivery(self, delivery: Delivery) -> Delivery | None:
        check_new_delivery(delivery)
        item = delivery_item(delivery)
        for _ in range(3):
            if self.table.put_if(item, "attribute_not_exists(pk)") is not None:
                return None
            resp = self.table.update_if(
                {"pk": item["pk"]},
                UpdateExpression="ADD dups :one",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":one": _n(1)},
                ReturnValues="ALL_NEW",
            )
            if resp is not None:
                return delivery_from_item(resp["Attributes"])
            # The record expired between the two calls: claim it again.
        raise Unavailable("the delivery record is contended; retry shortly")

    def get_deliveries(self, delivery_ids: list[str]) -> dict[str, Delivery]:
        keys = [{"pk": _s(i)} for i in sorted(set(delivery_ids))]
        return {d.delivery_id: d for d in map(delivery_from_item, self.table.batch_get(keys))}

    def update_delivery(
        self, delivery_id: str, changes: dict[str, Any], *, expect_status: str | None = None, absent: str | None = None,
        updated_before: float | None = None,
    ) -> bool:
        """One conditional ``UpdateItem`` (see
        :func:`chalicelib.store.delivery_items.build_update`)."""
        check_delivery_changes(changes, absent, expect_status)
        stored_release = None
        if changes.get("status") == HELD and "release_at" not in changes:
            cur = self.table.get({"pk": _s(delivery_id)}, consistent=True, ProjectionExpression="pk, release_at")
            if not cur:
                return False
            if "release_at" not in cur:
                raise ValueError("a held delivery needs release_at")
            stored_release = cur["release_at"]
        update = build_update(delivery_id, changes, expect_status=expect_status, absent=absent,
                              updated_before=updated_before, stored_release=stored_release)
        return self.table.update_if({"pk": _s(delivery_id)}, **update.kwargs()) is not None

    def _query_newest(
        self, index: str, hash_attr: str, hash_value: str, *, before: str | None = None,
        filters: dict[str, str] | None = None, need: int | None = None,
    ) -> list[Item]:
        """Items of one index partition, newest first, with ``ck < before``
        and the attribute equalities ``filters``: at least ``need`` of them
        (all when None) unless the partition ends first. DynamoDB applies a
        filter after ``Limit``, so pages are read until enough match."""
        names = {"#h": hash_attr}
        values: dict[str, Any] = {":h": _s(hash_value)}
        key = "#h = :h"
        if before is not None:
            names["#ck"] = "ck"
            values[":before"] = _s(before)
            key += " AND #ck < :before"
        kwargs: dict[str, Any] = {"IndexName": index, "KeyConditionExpression": key, "ScanIndexForward": False}
        if filters:
            parts = []
            for i, (attr, want) in enumerate(sorted(filters.items())):
                names[f"#f{i}"] = attr
                values[f":f{i}"] = _s(want)
                parts.append(f"#f{i} = :f{i}")
            kwargs["FilterExpression"] = " AND ".join(parts)
        kwargs["ExpressionAttributeNames"] = names
        kwargs["ExpressionAttributeValues"] = values
        page_limit = None
        if need is not None:
            wanted = need

            def page_limit(got: int) -> int:
                missing = wanted - got
                return min(max(missing, 100), 1000) if filters else missing

        out: list[Item] = []
        for page in self.table.pages(page_limit=page_limit, **kwargs):
            out.extend(page.items)
            if need is not None and len(out) >= need:
                break
        return out

    def list_deliveries(
        self, *, campaign_id: str | None = None, device_id: str | None = None, status: str | None = None,
        limit: int = 100, next_token: str | None = None,
    ) -> tuple[list[Delivery], str | None]:
        """Newest first. ``by_campaign`` when a campaign is given, else
        ``by_device``, else the ``by_day`` partitions walked backwards. One
        record more than ``limit`` is read to know whether a page follows;
        the token is the sort key of the page's last record."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        code = list_index(campaign_id, device_id)
        before = decode_page_token(next_token, code) if next_token is not None else None
        filters = {}
        if status is not None:
            filters["status"] = status
        want = limit + 1
        if code == "c":
            assert campaign_id is not None
            if device_id is not None:
                filters["device_id"] = device_id
            found = self._query_newest(LIST_INDEXES[code], "campaign_id", campaign_id, before=before, filters=filters, need=want)
        elif code == "v":
            assert device_id is not None
            found = self._query_newest(LIST_INDEXES[code], "device_id", device_id, before=before, filters=filters, need=want)
        else:
            found = self._walk_days(before, filters, want)
        page = found[:limit]
        token = encode_page_token(code, page[-1]["ck"]["S"]) if len(found) > limit else None
        return [delivery_from_item(i) for i in page], token

    def _walk_days(self, before: str | None, filters: dict[str, str], want: int) -> list[Item]:
        """The ``by_day`` partitions from the newest day back: the first
        alone, then batches of 2, 4, 8 … days read concurrently (a sparse
        table's last page does not pay 90 sequential round trips)."""
        first, oldest = listing_days(self.clock())
        start = date.fromisoformat(ck_day(before)) if before else first
        days = []
        d = min(start, first)
        while d >= oldest:
            days.append(d)
            d -= timedelta(days=1)
        found: list[Item] = []
        batch = 1
        while days and len(found) < want:
            chunk, days = days[:batch], days[batch:]
            need = want - len(found)

            def run(day: date, need: int = need) -> list[Item]:
                return self._query_newest(
                    LIST_INDEXES["d"], "day", f"D#{day.isoformat()}",
                    before=before if before and day == start else None, filters=filters, need=need,
                )

            results = [run(chunk[0])] if len(chunk) == 1 else list(self.pool.map(run, chunk))
            for items in results:
                found.extend(items)
            batch = min(batch * 2, 16)
        return found

    def campaign_deliveries(self, campaign_id: str) -> Iterator[Delivery]:
        items = self.table.items(
            IndexName="by_campaign",
            KeyConditionExpression="#h = :h",
            ExpressionAttributeNames={"#h": "campaign_id"},
            ExpressionAttributeValues={":h": _s(campaign_id)},
            ScanIndexForward=False,
        )
        return map(delivery_from_item, items)

    def device_deliveries(self, device_id: str, since: float) -> list[Delivery]:
        items = self.table.items(
            IndexName="by_device",
            KeyConditionExpression="#h = :h AND #ck >= :since",
            ExpressionAttributeNames={"#h": "device_id", "#ck": "ck"},
            ExpressionAttributeValues={":h": _s(device_id), ":since": _s(fixed(since))},
            ScanIndexForward=False,
        )
        return [delivery_from_item(i) for i in items]

    def due_held(self, now: float, limit: int = 100) -> list[Delivery]:
        out: list[Delivery] = []
        if limit < 1:
            return out
        for page in self.table.pages(
            page_limit=lambda got: limit - got,
            IndexName="held",
            KeyConditionExpression="#h = :h AND #rk <= :end",
            ExpressionAttributeNames={"#h": "hk", "#rk": "release_key"},
            ExpressionAttributeValues={":h": _s(HELD_HASH), ":end": _s(fixed(now) + "#~")},
            ScanIndexForward=True,
        ):
            out.extend(map(delivery_from_item, page.items))
            if len(out) >= limit:
                break
        return out[:limit]

    def stale_open(self, before: float, limit: int = 100) -> list[Delivery]:
        """The ``open`` index's shards queried concurrently (keys up to
        ``before``, oldest first; one page each), then the records
        themselves; a record whose ``updated_at`` moved on since its key
        was written (a take-over in progress) or that left the open
        statuses is skipped."""
        end = _s(fixed(before) + "#~")

        def shard(k: int) -> list[tuple[str, str]]:
            resp = self.table.call(
                "query",
                IndexName=OPEN_INDEX,
                KeyConditionExpression="#h = :h AND #t <= :end",
                ExpressionAttributeNames={"#h": "ok", "#t": "ot"},
                ExpressionAttributeValues={":h": _s(f"OPEN#{k:02d}"), ":end": end},
                ScanIndexForward=True,
                Limit=limit,
            )
            return [(i["ot"]["S"], i["pk"]["S"]) for i in resp.get("Items", [])]

        keys = sorted(k for part in self.pool.map(shard, range(OPEN_SHARDS)) for k in part)[:limit]
        ids = [pk for _, pk in keys]
        found = self.get_deliveries(ids) if ids else {}
        out = [found[i] for i in ids if i in found]
        return [d for d in out if d.status in OPEN_STATUSES and open_since(d) <= before]

    def reserve_send(
        self, campaign_id: str, device_id: str, now: float, per_day: int | None, min_gap_s: float | None
    ) -> bool:
        """Read the (campaign, device) counter, decide, write it back
        conditionally on its version; a lost race re-reads and decides
        again (backing off under ``cap_retry``)."""
        if per_day is None and min_gap_s is None:
            return True
        key = {"pk": _s(cap_key(campaign_id, device_id))}
        for _ in self.cap_retry.attempts():
            item = self.table.get(key, consistent=True)
            sends = [float(v["N"]) for v in item["sends"]["L"]] if item else []
            allowed, kept, window = decide_cap(sends, now, per_day, min_gap_s)
            if not allowed:
                return False
            version = int(item["cv"]["N"]) if item else 0
            new_item = {
                **key,
                "sends": {"L": [_num(t) for t in kept]},
                "cv": _n(version + 1),
                "expires_at": _n(int(now + window + DAY_S)),
            }
            if item:
                written = self.table.put_if(new_item, "cv = :old", {":old": _n(version)})
            else:
                written = self.table.put_if(new_item, "attribute_not_exists(pk)")
            if written is not None:
                return True
        raise Unavailable("the frequency cap is contended; retry shortly")
