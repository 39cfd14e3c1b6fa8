"""Weather storage on DynamoDB: one ``alerts`` table (``pk`` S, TTL on
``expires_at``).

Items:

* ``A#<alert id>`` — an alert record: ``rec`` (S, the record as compact
  JSON: ``lineage``, ``status``, ``fingerprint``, ``processed_at``, counts
  and whatever the caller adds), ``expires_at``. Created once with a
  conditional ``PutItem``: identical ids are processed once.
  The record's status is also kept as ``st`` (S), so status transitions are
  conditional writes (:meth:`DynamoWeather.advance_alert`).
* ``M#<alert id>`` — lineage membership: ``lineage`` (S), ``expires_at``.
  Written for an alert and every alert it references, conditionally, so
  whichever message of a chain arrives first names the lineage and every
  later one, in any order, joins it.
* ``L#<lineage id>`` — a lineage: ``alert_ids`` (SS), ``ended`` (BOOL),
  ``ended_reason`` (S, the first reason wins), ``updated_at`` (N),
  ``expires_at``. Written with ``UpdateItem`` only (``ADD`` to the set), so
  concurrent updates of one lineage never lose an id.
* ``FEED#<sha256(url)[:32]>`` — the poller's conditional-request state:
  ``url``, ``etag``, ``last_modified``, ``status`` (S), ``fetched_at``,
  ``max_age`` (N). No expiry.
* ``W#<H3 res-5 cell, hex>`` — the newest weather observation of a cell:
  ``condition`` (S), ``temperature_c``, ``observed_at`` (N), optional
  ``precipitation_mm_h``, ``wind_kph`` (N), ``expires_at``.

``expires_at`` is stored as whole epoch seconds (rounded up), the format
DynamoDB's TTL expects. TTL deletes items up to days late, so reads of
conditions treat ``expires_at <= now`` as absent themselves; alert records
and lineages are returned until DynamoDB deletes them (their retention is
far longer than any alert).
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from chalicelib.store.ddb import num as _n
from chalicelib.store.ddb import s as _s
from chalicelib.store.table import TRANSACT_MAX, Item, Table, chunks

#: Feed-state fields and their kinds (``str`` or ``num``); ``None`` = unset.
FEED_STATE_KINDS = {"etag": "str", "last_modified": "str", "status": "str", "fetched_at": "num", "max_age": "num"}
#: Observation fields stored per cell: required ones, then optional numbers.
OBS_REQUIRED = ("condition", "temperature_c", "observed_at")
OBS_OPTIONAL = ("precipitation_mm_h", "wind_kph")


def alert_key(alert_id: str) -> str:
    return f"A#{alert_id}"


def member_key(alert_id: str) -> str:
    return f"M#{alert_id}"


def lineage_key(lineage_id: str) -> str:
    return f"L#{lineage_id}"


def feed_key(url: str) -> str:
    """``FEED#`` + the first 32 hex digits of the URL's SHA-256.

    >>> feed_key("https://api.weather.gov/alerts/active?status=actual")
    'FEED#c98be18384602094f8ef86a19a3746f0'
    """
    return "FEED#" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]


def conditions_key(cell: int) -> str:
    return f"W#{int(cell):x}"


def ttl_seconds(expires_at: float) -> int:
    """Whole epoch seconds, rounded up (never expires early)."""
    return int(math.ceil(expires_at))


def check_feed_state(state: dict) -> None:
    """ValueError for a feed state either store would not keep."""
    unknown = set(state) - set(FEED_STATE_KINDS)
    if unknown:
        raise ValueError(f"unknown feed state fields: {sorted(unknown)}")


def check_observation(obs: dict) -> None:
    """ValueError for an observation either store would not keep."""
    missing = [k for k in OBS_REQUIRED if obs.get(k) is None]
    if missing:
        raise ValueError(f"observation lacks {missing}")
    unknown = set(obs) - set(OBS_REQUIRED) - set(OBS_OPTIONAL)
    if unknown:
        raise ValueError(f"unknown observation fields: {sorted(unknown)}")


def newest_per_cell(items: list[tuple[int, dict, float]]) -> dict[int, tuple[dict, float]]:
    """The newest observation of each cell in a batch (the later one on a tie)."""
    out: dict[int, tuple[dict, float]] = {}
    for cell, obs, expires_at in items:
        check_observation(obs)
        cur = out.get(int(cell))
        if cur is None or float(obs["observed_at"]) >= float(cur[0]["observed_at"]):
            out[int(cell)] = (obs, expires_at)
    return out


def _alert_item(alert_id: str, record: dict, expires_at: float) -> dict:
    return {
        "pk": _s(alert_key(alert_id)),
        "rec": _s(json.dumps(record, separators=(",", ":"), sort_keys=True)),
        "st": _s(str(record.get("status", ""))),
        "expires_at": _n(ttl_seconds(expires_at)),
    }


def _lineage(item: dict) -> dict:
    return {
        "ended": bool(item.get("ended", {}).get("BOOL", False)),
        "ended_reason": item["ended_reason"]["S"] if "ended_reason" in item else None,
        "alert_ids": sorted(item.get("alert_ids", {}).get("SS", [])),
        "updated_at": float(item["updated_at"]["N"]) if "updated_at" in item else None,
    }


def _observation(item: dict) -> dict:
    return {
        "condition": item["condition"]["S"],
        "temperature_c": float(item["temperature_c"]["N"]),
        "precipitation_mm_h": float(item["precipitation_mm_h"]["N"]) if "precipitation_mm_h" in item else None,
        "wind_kph": float(item["wind_kph"]["N"]) if "wind_kph" in item else None,
        "observed_at": float(item["observed_at"]["N"]),
    }


class DynamoWeather:
    """Weather storage on the ``alerts`` table (see the module docs)."""

    def __init__(self, table: Table) -> None:
        self.table = table

    # ------------------------------------------------------------ alert records
    def get_alert_records(self, alert_ids: list[str]) -> dict[str, dict]:
        """Records of the alerts already processed, by id (BatchGetItem)."""
        keys = [{"pk": _s(alert_key(i))} for i in sorted(set(alert_ids))]
        items = self.table.batch_get(keys)
        return {item["pk"]["S"][2:]: json.loads(item["rec"]["S"]) for item in items}

    def put_alert_record(self, alert_id: str, record: dict, expires_at: float) -> bool:
        """Create the record; False when the alert already has one."""
        return self.table.put_if(_alert_item(alert_id, record, expires_at), "attribute_not_exists(pk)") is not None

    def put_alert_records(self, records: list[tuple[str, dict, float]]) -> set[str]:
        """Create many records, each only if its alert has none (the first
        of an id repeated in ``records`` wins); → the ids created (see
        :meth:`_create_each`)."""
        first: dict[str, Item] = {}
        for alert_id, record, expires_at in records:
            first.setdefault(alert_id, _alert_item(alert_id, record, expires_at))
        return self._create_each(first)

    def _create_each(self, items: dict[str, Item]) -> set[str]:
        """Write each item (by id) only if its key is free; → the ids
        written. One ``TransactWriteItems`` per 100 items, each write
        conditional on its key being free; when keys are taken the
        transaction is cancelled with a reason per write, and is made again
        without them. A chunk that loses to a concurrent transaction is
        written one conditional ``PutItem`` at a time."""
        created: set[str] = set()
        for chunk in chunks(list(items.items()), TRANSACT_MAX):
            todo = list(chunk)
            for _attempt in range(3):
                if not todo:
                    break
                writes = [{"Put": {"TableName": self.table.name, "Item": item,
                                   "ConditionExpression": "attribute_not_exists(pk)"}} for _i, item in todo]
                reasons = self.table.transact_reasons(writes)
                if reasons is None:
                    created.update(i for i, _item in todo)
                    todo = []
                    break
                taken = {i for (i, _item), code in zip(todo, reasons) if code == "ConditionalCheckFailed"}
                if not taken:
                    break  # a conflicting transaction, not a taken key: one at a time
                todo = [x for x in todo if x[0] not in taken]
            created.update(i for i, item in todo if self.table.put_if(item, "attribute_not_exists(pk)") is not None)
        return created

    def advance_alert(self, alert_id: str, record: dict, expires_at: float, *, from_status: tuple[str, ...]) -> bool:
        """Replace the record when its status is one of ``from_status``;
        False otherwise (another consumer moved it on)."""
        names = {f":s{i}": _s(st) for i, st in enumerate(from_status)}
        return self.table.put_if(_alert_item(alert_id, record, expires_at), f"st IN ({', '.join(names)})", names) is not None

    def forget_alert(self, alert_id: str) -> None:
        """Remove a ``queued`` record (its message could not be queued)."""
        self.table.delete_if({"pk": _s(alert_key(alert_id))}, ConditionExpression="st = :q",
                             ExpressionAttributeValues={":q": _s("queued")})

    # ------------------------------------------------------------ membership
    def get_members(self, alert_ids: list[str]) -> dict[str, str]:
        """The lineage each known alert id belongs to."""
        items = self.table.batch_get([{"pk": _s(member_key(i))} for i in sorted(set(alert_ids))], ConsistentRead=True)
        return {item["pk"]["S"][2:]: item["lineage"]["S"] for item in items}

    def add_members(self, alert_ids: list[str], lineage_id: str, expires_at: float) -> dict[str, str]:
        """File each id under ``lineage_id`` unless it already has a lineage;
        → the lineage each id has afterwards (its earlier one where it had)."""
        out: dict[str, str] = {}
        for alert_id in dict.fromkeys(alert_ids):
            item = {"pk": _s(member_key(alert_id)), "lineage": _s(lineage_id), "expires_at": _n(ttl_seconds(expires_at))}
            if self.table.put_if(item, "attribute_not_exists(pk)") is not None:
                out[alert_id] = lineage_id
            else:
                found = self.table.get({"pk": _s(member_key(alert_id))}, consistent=True)
                out[alert_id] = found["lineage"]["S"] if found else lineage_id
        return out

    def file_members(self, members: list[tuple[str, str, float]]) -> set[str]:
        """File each ``(alert id, lineage, expires_at)`` unless the id has a
        lineage already (the first of a repeated id wins); → the ids filed
        now (the others: read them back with :meth:`get_members`)."""
        first: dict[str, Item] = {}
        for alert_id, lineage_id, expires_at in members:
            first.setdefault(alert_id, {"pk": _s(member_key(alert_id)), "lineage": _s(lineage_id),
                                        "expires_at": _n(ttl_seconds(expires_at))})
        return self._create_each(first)

    # ------------------------------------------------------------ lineages
    def get_lineages(self, lineage_ids: list[str]) -> dict[str, dict]:
        keys = [{"pk": _s(lineage_key(i))} for i in sorted(set(lineage_ids))]
        items = self.table.batch_get(keys)
        return {item["pk"]["S"][2:]: _lineage(item) for item in items}

    def touch_lineage(self, lineage_id: str, alert_id: str, now: float, expires_at: float) -> dict:
        """Create the lineage or add ``alert_id`` to it; → the lineage after
        the update (an ended lineage stays ended: the caller checks)."""
        if not alert_id:
            raise ValueError("alert_id must not be empty")
        resp = self.table.update(
            {"pk": _s(lineage_key(lineage_id))},
            UpdateExpression="ADD alert_ids :ids SET updated_at = :now, expires_at = :exp, ended = if_not_exists(ended, :no)",
            ExpressionAttributeValues={
                ":ids": {"SS": [alert_id]},
                ":now": _n(now),
                ":exp": _n(ttl_seconds(expires_at)),
                ":no": {"BOOL": False},
            },
            ReturnValues="ALL_NEW",
        )
        return _lineage(resp["Attributes"])

    def end_lineage(self, lineage_id: str, reason: str, now: float, expires_at: float) -> None:
        """Mark the lineage ended (creating it when unknown); idempotent, the
        first reason is kept."""
        self.table.update(
            {"pk": _s(lineage_key(lineage_id))},
            UpdateExpression="SET ended = :yes, ended_reason = if_not_exists(ended_reason, :r), updated_at = :now, expires_at = :exp",
            ExpressionAttributeValues={
                ":yes": {"BOOL": True},
                ":r": _s(reason),
                ":now": _n(now),
                ":exp": _n(ttl_seconds(expires_at)),
            },
        )

    # ------------------------------------------------------------ feed state
    def get_feed_state(self, url: str) -> dict | None:
        item = self.table.get({"pk": _s(feed_key(url))}, consistent=True)
        if not item:
            return None
        out: dict[str, Any] = {}
        for name, kind in FEED_STATE_KINDS.items():
            a = item.get(name)
            out[name] = None if a is None else a["S"] if kind == "str" else float(a["N"])
        return out

    def put_feed_state(self, url: str, state: dict) -> None:
        """Replace the feed's state (fields set to None are dropped)."""
        check_feed_state(state)
        item = {"pk": _s(feed_key(url)), "url": _s(url)}
        for name, value in state.items():
            if value is not None:
                item[name] = _s(str(value)) if FEED_STATE_KINDS[name] == "str" else _n(value)
        self.table.put(item)

    # ------------------------------------------------------------ conditions
    def put_conditions(self, items: list[tuple[int, dict, float]]) -> None:
        """Store each cell's observation unless the cell already holds a
        newer, unexpired one.

        Read-then-write: one ``BatchGetItem`` of the cells' current
        ``observed_at``/``expires_at``, then ``BatchWriteItem`` of the winners
        (two round trips for a whole batch instead of one conditional
        ``PutItem`` per cell). Two requests writing the same cell at the same
        instant may let the older observation land; the next observation of
        that cell repairs it, and stale weather expires anyway.
        """
        batch = newest_per_cell(items)
        if not batch:
            return
        keys = [{"pk": _s(conditions_key(c))} for c in sorted(batch)]
        current: dict[int, float] = {}
        for item in self.table.batch_get(keys):
            current[int(item["pk"]["S"][2:], 16)] = float(item["observed_at"]["N"])
        writes = []
        for cell in sorted(batch):
            obs, expires_at = batch[cell]
            observed_at = float(obs["observed_at"])
            cur = current.get(cell)
            if cur is not None and cur > observed_at:
                continue  # the cell holds a newer observation
            item = {
                "pk": _s(conditions_key(cell)),
                "condition": _s(str(obs["condition"])),
                "temperature_c": _n(obs["temperature_c"]),
                "observed_at": _n(observed_at),
                "expires_at": _n(ttl_seconds(expires_at)),
            }
            for name in OBS_OPTIONAL:
                if obs.get(name) is not None:
                    item[name] = _n(obs[name])
            writes.append({"PutRequest": {"Item": item}})
        self.table.batch_write(writes)

    def get_conditions(self, cells: list[int], now: float) -> dict[int, dict]:
        """The unexpired observation of each cell that has one."""
        keys = [{"pk": _s(conditions_key(c))} for c in sorted({int(c) for c in cells})]
        items = self.table.batch_get(keys)
        return {
            int(item["pk"]["S"][2:], 16): _observation(item)
            for item in items
            if float(item["expires_at"]["N"]) > now
        }
