"""Emulator speed-ups, no behaviour change:

* moto's ``Query`` on a table without an index sorts *every* item of the
  table and then filters by the partition key (O(table) per call, ~0.1 s at
  12k rows, seconds at 100k): :func:`apply` hands it just the queried
  partition;
* moto's ``TransactWriteItems`` deep-copies every table it touches to roll
  back a cancelled transaction (O(table) time per call, and memory that
  grew by ~0.7 MB a registration on the local stack, to gigabytes over a
  few thousand devices): :func:`apply` backs up just the items the
  transaction names and puts them back when it is cancelled;
* moto's ``Query`` on a global secondary index sorts and tests every item
  of the table (~20 ms a call at 3,000 devices, the region index's cost on
  the local stack): :func:`apply` hands it the items whose index partition
  key matches, from a per-index grouping rebuilt only after a write to that
  table (every DynamoDB request that is not a read bumps its tables'
  version, see :func:`_track_writes`);
* moto parses a condition or filter expression on every call (~1 ms for
  ``attribute_not_exists(pk)``, three times per write of a transaction):
  :func:`apply` keeps the parsed expression per (expression, names,
  values) — the parsed tree is only read when evaluated;
* moto's SQS reads a queue's attributes on every ``SendMessage``, counting
  its visible, in-flight and delayed messages with two clock reads per
  message (~0.1 s a send once 770 alert messages wait; 100 s for the
  national feed's intake): :func:`apply` counts them with one clock read
  per call, and remembers the attribute names' snake-case spelling.

Used by the local stack's moto server, the test suite and the benchmarks;
the application never knows.

The patch leans on moto internals (``Table.query`` calling
``Table.all_items``, ``Table.items`` keyed by partition then sort key), so it
is applied only to the moto release it was written and tested against
(:data:`PINNED_MOTO`, the pin of ``requirements-dev.txt``). On any other
release :func:`apply` warns and leaves moto alone: everything still works,
only slower. ``tests/unit/test_moto_speedups.py`` runs the same Queries with
and without the patch and compares items and ``LastEvaluatedKey``.
"""

from __future__ import annotations

import copy
import functools
import threading
import warnings
from importlib import metadata
from typing import Any, Callable

#: The moto release the patch was written against (requirements-dev.txt pins it).
PINNED_MOTO = "5.2.5"

_originals: dict[str, Any] = {}


class MotoVersionWarning(UserWarning):
    """The installed moto is not the release the speed-up was written for."""


def installed_moto() -> str | None:
    """moto's installed version, or None when it is not installed."""
    try:
        return metadata.version("moto")
    except metadata.PackageNotFoundError:
        return None


def is_applied() -> bool:
    return bool(_originals)


def apply() -> bool:
    """Patch moto's ``Table.query``; True when the patch is (now) in place.

    Refuses, with a :class:`MotoVersionWarning`, on any moto but
    :data:`PINNED_MOTO`.
    """
    if _originals:
        return True
    version = installed_moto()
    if version != PINNED_MOTO:
        warnings.warn(
            f"tools.moto_speedups: moto {version} is installed but the Query speed-up was written for moto "
            f"{PINNED_MOTO} (requirements-dev.txt); not patching — moto runs unmodified (slower, same results)",
            MotoVersionWarning,
            stacklevel=2,
        )
        return False
    from moto.dynamodb.models.table import Table

    original_query = Table.query
    original_all_items = Table.all_items
    local = threading.local()

    def all_items(self: Table) -> Any:
        hint = getattr(local, "hint", None)
        if hint is not None and hint[0] is self:
            return list(hint[1])
        return original_all_items(self)

    def query(self: Table, hash_key: Any, range_comparison: Any, range_objs: Any, limit: Any, exclusive_start_key: Any,
              scan_index_forward: Any, projection_expressions: Any, index_name: Any = None, *args: Any, **kwargs: Any) -> Any:
        items: list[Any] | None = None
        if index_name is None and hash_key is not None and self.range_key_attr:
            part = self.items.get(hash_key)
            items = sorted(part.values(), key=lambda x: x.range_key) if part else []
        elif index_name is not None:
            items = _index_partition(self, index_name, kwargs.get("hash_key_conditions"), original_all_items)
        if items is not None:
            local.hint = (self, items)
            try:
                return original_query(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key,
                                      scan_index_forward, projection_expressions, index_name, *args, **kwargs)
            finally:
                local.hint = None
        return original_query(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key,
                              scan_index_forward, projection_expressions, index_name, *args, **kwargs)

    _originals.update(query=original_query, all_items=original_all_items)
    Table.all_items = all_items  # type: ignore[method-assign]
    Table.query = query  # type: ignore[method-assign]
    _patch_transactions()
    _track_writes()
    _memoise_expressions()
    _patch_sqs_counts()
    return True


def _patch_sqs_counts() -> None:
    """``Queue.messages`` and the approximate counts, one clock read a call."""
    from moto.sqs import models

    queue = models.Queue

    def messages(self: Any) -> list[Any]:
        now = models.unix_time_millis()
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    def delayed(self: Any) -> int:
        now = models.unix_time_millis()
        return sum(1 for m in self._messages if now < m.delayed_until)

    def not_visible(self: Any) -> int:
        now = models.unix_time_millis()
        return sum(1 for m in self._messages if not now > m.visible_at)

    names = ("messages", "approximate_number_of_messages_delayed", "approximate_number_of_messages_not_visible")
    _originals["sqs"] = {n: queue.__dict__[n] for n in names}
    _originals["sqs_camel"] = models.camelcase_to_underscores
    models.camelcase_to_underscores = functools.lru_cache(maxsize=1024)(models.camelcase_to_underscores)
    for name, fn in zip(names, (messages, delayed, not_visible)):
        setattr(queue, name, property(fn))


#: Parsed expressions kept (least recently used dropped beyond).
EXPRESSION_CACHE = 4096


def _memoise_expressions() -> None:
    """``get_filter_expression`` remembered per (expression, names, values),
    where moto's DynamoDB models look it up; a failing parse is not kept."""
    import json
    from collections import OrderedDict

    from moto.dynamodb import comparisons, models
    from moto.dynamodb.models import table as table_module

    original = comparisons.get_filter_expression
    cache: OrderedDict[tuple[Any, str, str], Any] = OrderedDict()
    lock = threading.Lock()

    def get_filter_expression(expr: Any, names: Any, values: Any) -> Any:
        try:
            key = (expr, json.dumps(names, sort_keys=True), json.dumps(values, sort_keys=True))
        except (TypeError, ValueError):
            return original(expr, names, values)
        with lock:
            got = cache.get(key)
            if got is not None:
                cache.move_to_end(key)
                return got
        got = original(expr, names, values)
        with lock:
            cache[key] = got
            while len(cache) > EXPRESSION_CACHE:
                cache.popitem(last=False)
        return got

    _originals["get_filter_expression"] = original
    models.get_filter_expression = get_filter_expression
    table_module.get_filter_expression = get_filter_expression


# ---------------------------------------------------------------- index partitions
#: DynamoDB actions that never change an item; any other request bumps the
#: version of the tables it names (of every table when it names none).
READ_ACTIONS = frozenset({
    "GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems", "DescribeTable", "ListTables",
    "DescribeTimeToLive", "ListTagsOfResource", "DescribeContinuousBackups", "DescribeEndpoints", "DescribeLimits",
})
_versions: dict[str, int] = {}
_epoch = [0]
_versions_lock = threading.Lock()


def _written_tables(action: str, params: Any) -> list[str] | None:
    """The tables a write request names; None when unknown (all of them)."""
    if not isinstance(params, dict):
        return None
    if action == "BatchWriteItem":
        return list(params.get("RequestItems") or {}) or None
    if action == "TransactWriteItems":
        names = []
        for entry in params.get("TransactItems") or []:
            for op in entry.values():
                names.append(op.get("TableName"))
        return names if names and all(isinstance(n, str) for n in names) else None
    name = params.get("TableName")
    return [name] if isinstance(name, str) else None


def _bump(tables: list[str] | None) -> None:
    with _versions_lock:
        if tables is None:
            _epoch[0] += 1
        else:
            for name in tables:
                _versions[name] = _versions.get(name, 0) + 1


def _stamp(table: Any) -> tuple[int, int]:
    with _versions_lock:
        return _epoch[0], _versions.get(table.name, 0)


def _track_writes() -> None:
    """Bump the version of every table a non-read DynamoDB request names,
    after it ran (whether it succeeded or not: a cancelled transaction may
    have written and rolled back)."""
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        try:
            return original(self)
        finally:
            try:
                action = self._get_action()
            except Exception:
                action = ""
            if action not in READ_ACTIONS:
                _bump(_written_tables(action, getattr(self, "params", None)))

    _originals["call_action"] = original
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def _all_items_key(x: Any) -> Any:
    """moto's ``Table.all_items`` order: its key compares DynamoTypes, i.e.
    their ``cast_value`` (keys are scalars of the schema's one type), so the
    cast values order the same, without a Python call per comparison."""
    return (x.hash_key.cast_value, x.range_key.cast_value) if x.range_key else x.hash_key.cast_value


def _index_partition(table: Any, index_name: str, hash_conditions: Any,
                     all_items: Callable[[Any], list[Any]]) -> list[Any] | None:
    """The items (in ``all_items`` order) whose global secondary index
    ``index_name`` partition key equals the Query's, or None when the
    Query is not a single-key GSI Query (moto then does its full pass)."""
    index = next((i for i in table.global_indexes if i.name == index_name), None)
    if index is None or not hash_conditions or len(hash_conditions) != 1:
        return None
    hash_attrs = [k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH"]
    attr, value = hash_conditions[0]
    if hash_attrs != [attr] or getattr(value, "type", None) != "S":
        return None  # string keys only: grouped by the raw string, cheap to hash
    stamp = _stamp(table)  # taken before reading: a write meanwhile makes it stale
    cache: dict[str, tuple[tuple[int, int], dict[Any, list[Any]]]] = table.__dict__.setdefault("_hexcast_gsi", {})
    got = cache.get(index_name)
    if got is None or got[0] != stamp:
        # moto's all_items() sorts the whole table (DynamoType comparisons
        # in Python, ~0.1 s at 6,000 items) and this runs after every write:
        # group first, then sort each group with the same stable key, which
        # gives each group in all_items() order.
        groups: dict[Any, list[Any]] = {}
        for part in list(table.items.values()):
            for item in (list(part.values()) if table.range_key_attr else [part]):
                v = item.attrs.get(attr)
                if v is not None and v.type == "S":
                    groups.setdefault(v.value, []).append(item)
        for members in groups.values():
            members.sort(key=_all_items_key)
        got = (stamp, groups)
        cache[index_name] = got
    return list(got[1].get(value.value, ()))


class _CopyButNotTables:
    """``copy`` as moto's DynamoDB backend module sees it: a table is not
    deep-copied (its transaction backup), anything else is."""

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        from moto.dynamodb.models.table import Table

        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _transaction_key(table: Any, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return dict(op["Key"])
    attrs = op["Item"]
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def _patch_transactions() -> None:
    from moto.dynamodb import models
    from moto.dynamodb.models import DynamoDBBackend

    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        backups: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
        for entry in transact_items:
            try:
                op_type, op = next(iter(entry.items()))
                table = self.tables[op["TableName"]]
                key = _transaction_key(table, op_type, op)
                current = self.get_item(op["TableName"], key)
            except Exception:  # moto reports the malformed entry itself
                continue
            backups.append((op["TableName"], key, copy.deepcopy(current.to_json()["Attributes"]) if current else None))
        try:
            return original(self, transact_items)
        except Exception:
            for name, key, old in reversed(backups):
                if old is None:
                    if self.get_item(name, key) is not None:
                        self.delete_item(name, key)
                else:
                    self.put_item(name, old)
            raise

    _originals.update(transact_write_items=original, models_copy=models.copy)
    models.copy = _CopyButNotTables  # type: ignore[assignment]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def remove() -> None:
    """Undo :func:`apply` (the differential test compares both)."""
    if not _originals:
        return
    from moto.dynamodb.models.table import Table

    from moto.dynamodb import models
    from moto.dynamodb.models import DynamoDBBackend

    Table.query = _originals.pop("query")  # type: ignore[method-assign]
    Table.all_items = _originals.pop("all_items")  # type: ignore[method-assign]
    DynamoDBBackend.transact_write_items = _originals.pop("transact_write_items")  # type: ignore[method-assign]
    models.copy = _originals.pop("models_copy")
    from moto.dynamodb.responses import DynamoHandler

    DynamoHandler.call_action = _originals.pop("call_action")  # type: ignore[method-assign]
    from moto.dynamodb.models import table as table_module

    models.get_filter_expression = table_module.get_filter_expression = _originals.pop("get_filter_expression")
    from moto.sqs import models as sqs_models

    for name, prop in _originals.pop("sqs").items():
        setattr(sqs_models.Queue, name, prop)
    sqs_models.camelcase_to_underscores = _originals.pop("sqs_camel")
