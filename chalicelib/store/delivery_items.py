"""Delivery records as DynamoDB items, and the one conditional update of a
record (see :mod:`chalicelib.store.schema` for the keys and indexes).

Pure: builds items and ``UpdateItem`` arguments, calls nothing.
"""

from __future__ import annotations

from typing import Any

from chalicelib.push.lifecycle import open_since
from chalicelib.push.model import HELD, Delivery
from chalicelib.store.ddb import n as _n
from chalicelib.store.ddb import num as _num
from chalicelib.store.ddb import s as _s
from chalicelib.store.schema import (
    DELIVERY_KINDS,
    HELD_HASH,
    OPEN_STATUSES,
    day_key,
    delivery_sort_key,
    open_hash,
    open_key,
    release_key,
)
from chalicelib.store.table import Item

#: ``new_release`` when the update leaves the release time alone.
UNCHANGED = "unchanged"


def value(kind: str, v: Any) -> dict:
    if kind == "str":
        return _s(v)
    if kind == "int":
        return _n(int(v))
    return _num(v)


def delivery_item(d: Delivery) -> Item:
    item: Item = {"pk": _s(d.delivery_id)}
    for name, kind in DELIVERY_KINDS.items():
        v = getattr(d, name)
        if v is not None and name != "delivery_id":
            item[name] = value(kind, v)
    item["ck"] = _s(delivery_sort_key(d.created_at, d.delivery_id))
    item["day"] = _s(day_key(d.created_at))
    item["expires_at"] = _n(d.expires_at)
    if d.status == HELD and d.release_at is not None:  # check_new_delivery: a held record has one
        item["hk"] = _s(HELD_HASH)
        item["release_key"] = _s(release_key(d.release_at, d.delivery_id))
    elif d.status in OPEN_STATUSES:
        item["ok"] = _s(open_hash(d.delivery_id))
        item["ot"] = _s(open_key(open_since(d), d.delivery_id))
    return item


def delivery_from_item(item: Item) -> Delivery:
    data: dict[str, Any] = {"delivery_id": item["pk"]["S"]}
    for name, kind in DELIVERY_KINDS.items():
        a = item.get(name)
        if a is None or name == "delivery_id":
            continue
        data[name] = a["S"] if kind == "str" else int(a["N"]) if kind == "int" else float(a["N"])
    return Delivery(**data)


class DeliveryUpdate:
    """The ``UpdateItem`` arguments of one ``update_delivery``: attribute
    name placeholders, values, ``SET``/``REMOVE`` parts and conditions."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}  # placeholder → attribute
        self._placeholders: dict[str, str] = {}  # attribute → placeholder
        self.values: dict[str, Any] = {}
        self.sets: list[str] = []
        self.removes: list[str] = []
        self.conds: list[str] = ["attribute_exists(pk)"]

    def alias(self, attr: str) -> str:
        if attr not in self._placeholders:
            self._placeholders[attr] = f"#a{len(self._placeholders)}"
            self.names[self._placeholders[attr]] = attr
        return self._placeholders[attr]

    def kwargs(self) -> dict[str, Any]:
        expr = ""
        if self.sets:
            expr = "SET " + ", ".join(self.sets)
        if self.removes:
            expr += (" " if expr else "") + "REMOVE " + ", ".join(dict.fromkeys(self.removes))
        out: dict[str, Any] = {
            "UpdateExpression": expr,
            "ConditionExpression": " AND ".join(self.conds),
            "ExpressionAttributeNames": self.names,
        }
        if self.values:
            out["ExpressionAttributeValues"] = self.values
        return out


def build_update(
    delivery_id: str,
    changes: dict[str, Any],
    *,
    expect_status: str | None,
    absent: str | None,
    updated_before: float | None,
    stored_release: dict | None,
) -> DeliveryUpdate:
    """The update for ``changes`` (already checked). ``stored_release``: the
    stored ``release_at`` attribute, read by the caller when the record goes
    back to ``held`` without a new release time (the write is then
    conditional on it). Keeps the sparse ``held`` index keys (``hk``,
    ``release_key``) in step with status and release_at, and the ``open``
    index keys (``ok``, ``ot``) with status and updated_at."""
    u = DeliveryUpdate()
    for i, (name, v) in enumerate(changes.items()):
        if v is None:
            u.removes.append(u.alias(name))
        else:
            u.sets.append(f"{u.alias(name)} = :v{i}")
            u.values[f":v{i}"] = value(DELIVERY_KINDS[name], v)
    new_release: float | None | str = UNCHANGED
    if "status" in changes:
        if changes["status"] == HELD:
            if "release_at" in changes:
                new_release = changes["release_at"]
            else:
                assert stored_release is not None
                new_release = float(stored_release["N"])
                u.conds.append(f"{u.alias('release_at')} = :ra")
                u.values[":ra"] = stored_release
            u.sets.append(f"{u.alias('hk')} = :hk")
            u.values[":hk"] = _s(HELD_HASH)
        else:
            u.removes += [u.alias("hk"), u.alias("release_key")]
    elif "release_at" in changes:
        new_release = changes["release_at"]
    if new_release is None:
        u.removes.append(u.alias("release_key"))
    elif new_release != UNCHANGED:
        u.sets.append(f"{u.alias('release_key')} = :rk")
        u.values[":rk"] = _s(release_key(float(new_release), delivery_id))
    # The open index: the status after this update, when it is known.
    target = changes.get("status", expect_status)
    if target in OPEN_STATUSES:
        if changes.get("updated_at") is not None:
            u.sets += [f"{u.alias('ok')} = :ok", f"{u.alias('ot')} = :ot"]
            u.values[":ok"] = _s(open_hash(delivery_id))
            u.values[":ot"] = _s(open_key(float(changes["updated_at"]), delivery_id))
    elif "status" in changes:
        u.removes += [u.alias("ok"), u.alias("ot")]
    if updated_before is not None:
        ua, ca = u.alias("updated_at"), u.alias("created_at")
        u.conds.append(f"({ua} <= :ub OR (attribute_not_exists({ua}) AND {ca} <= :ub))")
        u.values[":ub"] = _num(updated_before)
    if expect_status is not None:
        u.conds.append(f"{u.alias('status')} = :expect")
        u.values[":expect"] = _s(expect_status)
    if absent is not None:
        u.conds.append(f"attribute_not_exists({u.alias(absent)})")
    return u
