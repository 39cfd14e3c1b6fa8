"""Devices on DynamoDB: the ``devices`` table and its sparse ``by_region``
index (see :mod:`chalicelib.store.schema`).

Location-state writes are conditional single-item updates on the state
version; the region keys ``rc``/``rf`` are written with the state and
removed with it, so the index holds exactly the devices with a location.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from decimal import Decimal
from typing import Any

from chalicelib.presence import LocationState
from chalicelib.store.ddb import n as _n
from chalicelib.store.ddb import s as _s
from chalicelib.ports import ConcurrentUpdate, Device, EndpointClaim, EndpointHandover, RegionQuery
from chalicelib.store.ddb import item_bytes
from chalicelib.store.endpoint_claims import claim_from_item, claim_key, handover_writes, release_write
from chalicelib.store.table import Item, Table
from chalicelib.weather.region import fine_key, location_cell, region_keys

REGION_INDEX = "by_region"
OUTBOX_PREFIX = "ob_"
#: An expired location (see :mod:`chalicelib.retention`): a state whose
#: write time is before ``:before`` (a state without one is legacy: expired).
EXPIRED = "attribute_exists(st) AND (attribute_not_exists(wa) OR wa < :before)"


def _consent(item: Item) -> dict[str, bool]:
    return {k: v["BOOL"] for k, v in item.get("consent", {}).get("M", {}).items()}


def _state(item: Item) -> LocationState | None:
    st = item.get("st")
    return LocationState.from_json(json.loads(st["S"])) if st else None


def device_from_item(item: Item) -> Device:
    return Device(
        device_id=item["device_id"]["S"],
        platform=item["platform"]["S"],
        push_token=item["push_token"]["S"],
        user_id=item["user_id"]["S"] if "user_id" in item else None,
        attributes=json.loads(item["attrs"]["S"]) if "attrs" in item else {},
        consent=_consent(item),
        push_enabled=item.get("push_enabled", {}).get("BOOL", False),
        created_at=item.get("created_at", {}).get("S", ""),
        updated_at=item.get("updated_at", {}).get("S", ""),
        state=_state(item),
        state_version=int(item.get("sv", {}).get("N", "0")),
        written_at=float(item.get("wa", {}).get("N", "0")),
        endpoint_arn=item["endpoint_arn"]["S"] if "endpoint_arn" in item else None,
        outbox={k[len(OUTBOX_PREFIX):]: json.loads(v["S"]) for k, v in item.items() if k.startswith(OUTBOX_PREFIX)},
        secret_hash=item["secret_hash"]["S"] if "secret_hash" in item else None,
    )


def _region_device(item: Item) -> Device:
    """A light Device from a ``by_region`` item (what the index projects)."""
    return Device(
        device_id=item["device_id"]["S"],
        platform="",
        push_token="",
        consent=_consent(item),
        push_enabled=item.get("push_enabled", {}).get("BOOL", False),
        state=_state(item),
        state_version=int(item.get("sv", {}).get("N", "0")),
    )


def _key(device_id: str) -> Item:
    return {"device_id": _s(device_id)}


def attributes_json(attributes: dict[str, Any]) -> str:
    """The ``attrs`` attribute: compact JSON, text kept as UTF-8 (an
    escaped ``\\uXXXX`` would take 6-12 bytes of the item per character)."""
    return json.dumps(attributes, separators=(",", ":"), ensure_ascii=False)


def profile_item(device: Device) -> Item:
    """What a registration stores, as DynamoDB attributes (the location
    state and the outbox aside)."""
    item: Item = {
        "device_id": _s(device.device_id),
        "platform": _s(device.platform),
        "push_token": _s(device.push_token),
        "attrs": _s(attributes_json(device.attributes)),
        "consent": {"M": {k: {"BOOL": bool(v)} for k, v in device.consent.items()}},
        "push_enabled": {"BOOL": device.push_enabled},
        "updated_at": _s(device.updated_at),
        "created_at": _s(device.created_at or device.updated_at),
        "sv": _n(device.state_version),
    }
    for name, value in (("user_id", device.user_id), ("endpoint_arn", device.endpoint_arn),
                        ("secret_hash", device.secret_hash)):
        if value is not None:
            item[name] = _s(value)
    return item


def profile_bytes(device: Device) -> int:
    """The profile's stored size (:func:`chalicelib.store.ddb.item_bytes`)."""
    return item_bytes(profile_item(device))


def _profile_update(device: Device, create: bool | None) -> dict[str, Any]:
    """The profile's ``UpdateItem`` arguments (key aside): conditional on the
    id being free (``create=True``) or on the stored secret hash (``False``)."""
    profile = profile_item(device)
    values: dict[str, Any] = {
        ":p": profile["platform"],
        ":t": profile["push_token"],
        ":a": profile["attrs"],
        ":c": profile["consent"],
        ":e": profile["push_enabled"],
        ":now": profile["updated_at"],
        ":z": _n(0),
    }
    sets = [
        "platform = :p",
        "push_token = :t",
        "attrs = :a",
        "#c = :c",
        "push_enabled = :e",
        "updated_at = :now",
        "created_at = if_not_exists(created_at, :now)",
    ]
    removes = []
    if device.user_id is not None:
        sets.append("user_id = :u")
        values[":u"] = _s(device.user_id)
    else:
        removes.append("user_id")
    if device.endpoint_arn is not None:
        sets.append("endpoint_arn = :arn")
        values[":arn"] = _s(device.endpoint_arn)
    else:
        removes.append("endpoint_arn")
    if device.location_consent:
        sets.append("sv = if_not_exists(sv, :z)")
    else:
        # Consent withdrawn: forget the location at once (and leave the region index).
        removes += ["st", "wa", "rc", "rf"]
        sets.append("sv = if_not_exists(sv, :z) + :one")
        values[":one"] = _n(1)
    condition: dict[str, Any] = {}
    if device.secret_hash is not None:
        values[":h"] = _s(device.secret_hash)
    if create is True:
        condition["ConditionExpression"] = "attribute_not_exists(device_id)"
        if device.secret_hash is not None:
            sets.append("secret_hash = :h")
    elif create is False:
        has = "secret_hash = :h" if device.secret_hash is not None else "attribute_not_exists(secret_hash)"
        condition["ConditionExpression"] = f"attribute_exists(device_id) AND {has}"
    elif device.secret_hash is not None:
        sets.append("secret_hash = if_not_exists(secret_hash, :h)")
    expr = "SET " + ", ".join(sets)
    if removes:
        expr += " REMOVE " + ", ".join(removes)
    return {
        "UpdateExpression": expr,
        "ExpressionAttributeNames": {"#c": "consent"},
        "ExpressionAttributeValues": values,
        **condition,
    }


class DynamoDevices:
    """``region_shards``: partitions per coarse cell of the region index.
    ``region_queries_made``/``region_items_read`` count the index reads
    served (``Query`` pages and items)."""

    def __init__(self, table: Table, region_shards: int = 4) -> None:
        self.table = table
        self.region_shards = int(region_shards)
        self.region_queries_made = 0
        self.region_items_read = 0
        self._count_lock = threading.Lock()

    def get_device(self, device_id: str, consistent: bool = False) -> Device | None:
        item = self.table.get(_key(device_id), consistent=consistent)
        return device_from_item(item) if item else None

    def get_devices(self, device_ids: Iterable[str]) -> dict[str, Device]:
        """``BatchGetItem`` (chunks of 100 at once); unknown ids are absent."""
        keys = [_key(d) for d in sorted(set(device_ids))]
        return {i["device_id"]["S"]: device_from_item(i) for i in self.table.batch_get(keys)}

    def save_profile(
        self, device: Device, *, create: bool | None = None, handover: EndpointHandover | None = None
    ) -> bool:
        """One ``UpdateItem``; ``create`` makes it conditional (see the port):
        ``attribute_not_exists(device_id)`` to create, the stored secret hash
        to update. With ``handover``, one ``TransactWriteItems`` of that
        update and the endpoint claims' writes
        (:func:`~chalicelib.store.endpoint_claims.handover_writes`)."""
        update = _profile_update(device, create)
        if handover is not None:
            writes = [{"Update": {"TableName": self.table.name, "Key": _key(device.device_id), **update}}]
            writes += handover_writes(self.table.name, device, handover)
            if not self.table.transact_if(writes):
                raise ConcurrentUpdate(device.device_id)
            return create is True
        resp = self.table.update_if(_key(device.device_id), ReturnValues="ALL_OLD", **update)
        if resp is None:
            raise ConcurrentUpdate(device.device_id)
        return not resp.get("Attributes")

    def profile_bytes(self, device: Device) -> int:
        return profile_bytes(device)

    def get_endpoint_claim(self, endpoint_arn: str) -> EndpointClaim | None:
        item = self.table.get(claim_key(endpoint_arn), consistent=True)
        return claim_from_item(item) if item else None

    def save_state(self, device_id: str, expected_version: int, state: LocationState | None, written_at: float,
                   outbox: dict[str, dict] | None = None) -> None:
        values = {":old": _n(expected_version), ":new": _n(expected_version + 1),
                  ":wa": _n(Decimal(str(round(written_at, 3))))}
        sets = ["sv = :new", "wa = :wa"]
        names: dict[str, str] = {}
        if state is not None:
            sets += ["st = :st", "rc = :rc", "rf = :rf"]
            values[":st"] = _s(json.dumps(state.to_json(), separators=(",", ":")))
            rc, rf = region_keys(device_id, location_cell(state), self.region_shards)
            values[":rc"], values[":rf"] = _s(rc), _s(rf)
        # Outbox entries are top-level attributes of their own (ob_<key>):
        # adding and removing them never overlaps another writer's entries.
        for i, (key, entry) in enumerate(sorted((outbox or {}).items())):
            names[f"#o{i}"] = OUTBOX_PREFIX + key
            values[f":o{i}"] = _s(json.dumps(entry, separators=(",", ":")))
            sets.append(f"#o{i} = :o{i}")
        expr = "SET " + ", ".join(sets) + (" REMOVE st, rc, rf" if state is None else "")
        kwargs = {"ExpressionAttributeNames": names} if names else {}
        if self.table.update_if(
            _key(device_id),
            UpdateExpression=expr,
            ConditionExpression="attribute_exists(device_id) AND sv = :old",
            ExpressionAttributeValues=values,
            **kwargs,
        ) is None:
            raise ConcurrentUpdate(device_id)

    def clear_outbox(self, device_id: str, keys: Iterable[str]) -> None:
        ordered = sorted(set(keys))
        if not ordered:
            return
        names = {f"#o{i}": OUTBOX_PREFIX + k for i, k in enumerate(ordered)}
        self.table.update_if(  # a deleted device has nothing left to clear
            _key(device_id),
            UpdateExpression="REMOVE " + ", ".join(names),
            ConditionExpression="attribute_exists(device_id)",
            ExpressionAttributeNames=names,
        )

    def delete_device(
        self, device_id: str, *, secret_hash: str | None = None, release: EndpointClaim | None = None
    ) -> bool:
        condition: dict[str, Any] = {}
        if secret_hash is not None:
            condition = {"ConditionExpression": "secret_hash = :h", "ExpressionAttributeValues": {":h": _s(secret_hash)}}
        if release is not None:
            writes = [{"Delete": {"TableName": self.table.name, "Key": _key(device_id), **condition}},
                      release_write(self.table.name, release)]
            if not self.table.transact_if(writes):
                raise ConcurrentUpdate(device_id)
            return True
        resp = self.table.delete_if(_key(device_id), ReturnValues="ALL_OLD", **condition)
        if resp is None:
            raise ConcurrentUpdate(device_id)
        return bool(resp.get("Attributes"))

    def set_push_state(self, device_id: str, endpoint_arn: str | None, push_enabled: bool) -> bool:
        values: dict[str, Any] = {":e": {"BOOL": bool(push_enabled)}}
        if endpoint_arn is not None:
            expr = "SET push_enabled = :e, endpoint_arn = :arn"
            values[":arn"] = _s(endpoint_arn)
        else:
            expr = "SET push_enabled = :e REMOVE endpoint_arn"
        return self.table.update_if(
            _key(device_id),
            UpdateExpression=expr,
            ConditionExpression="attribute_exists(device_id)",
            ExpressionAttributeValues=values,
        ) is not None

    def expire_locations(
        self, written_before: float, *, segment: int = 0, segments: int = 1, limit: int = 20_000
    ) -> tuple[int, bool]:
        """A ``Scan`` of one segment, filtered on the write time and projecting
        the key only; each page's devices are cleared concurrently with a
        conditional ``UpdateItem`` (``REMOVE st, wa, rc, rf``, state version
        + 1) whose condition repeats the filter, so a location written since
        the scan read it stays. The ``by_region`` entry goes with ``rc``/``rf``."""
        before = _n(Decimal(str(round(written_before, 3))))
        scan: dict[str, Any] = {
            "ProjectionExpression": "device_id",
            "FilterExpression": EXPIRED,
            "ExpressionAttributeValues": {":before": before},
        }
        if segments > 1:
            scan["Segment"], scan["TotalSegments"] = int(segment), int(segments)

        def clear(device_id: str) -> int:
            return int(self.table.update_if(
                _key(device_id),
                UpdateExpression="REMOVE st, wa, rc, rf SET sv = if_not_exists(sv, :z) + :one",
                ConditionExpression=EXPIRED,
                ExpressionAttributeValues={":before": before, ":z": _n(0), ":one": _n(1)},
            ) is not None)  # 0: written again (or deleted) since the scan

        removed = tried = 0
        for page in self.table.pages("scan", **scan):
            ids = [i["device_id"]["S"] for i in page.items]
            room = limit - tried
            tried += min(len(ids), room)
            removed += sum(self.table.pool.map(clear, ids[:room])) if room > 0 else 0
            if len(ids) > room:
                return removed, False
            if not page.more:
                return removed, True
            if tried >= limit:
                return removed, False
        return removed, True

    def _query_region(self, partition: str, lo: int, hi: int) -> list[Item]:
        items: list[Item] = []
        for page in self.table.pages(
            IndexName=REGION_INDEX,
            KeyConditionExpression="rc = :p AND rf BETWEEN :lo AND :hi",
            ExpressionAttributeValues={":p": _s(partition), ":lo": _s(fine_key(lo)), ":hi": _s(fine_key(hi))},
        ):
            items.extend(page.items)
            with self._count_lock:
                self.region_queries_made += 1
                self.region_items_read += len(page.items)
        return items

    def devices_in_ranges(self, queries: list[RegionQuery]) -> Iterator[Device]:
        """One ``Query`` on ``by_region`` per (partition, range), every
        page, all issued at once on the pool; devices yielded as their
        queries finish (each once, in no particular order)."""
        jobs = [(q.partition, int(lo), int(hi)) for q in queries for lo, hi in q.ranges]
        futures: list[Future[list[Item]]] = [self.table.pool.submit(self._query_region, *job) for job in jobs]
        seen: set[str] = set()
        try:
            for f in futures:
                for item in f.result():
                    did = item["device_id"]["S"]
                    if did not in seen:
                        seen.add(did)
                        yield _region_device(item)
        finally:
            for f in futures:
                f.cancel()
