"""DynamoDB adapter for the store ports (low-level client, compact items).

Round trips are what a ping pays for, so a ping batch's reads are issued
together: the devices in ``BatchGetItem`` chunks and one ``Query`` per
distinct ladder cell, all concurrently — one sequential round trip. Device
state writes are conditional single-item updates.

A fence put writes, in order: the new version's geometry item (conditional:
a concurrent put of the same fence loses with 409), its index rows
(``BatchWriteItem``; a row per (cell, fence) overwrites the old version's row
in place), the ``META`` flip (conditional on the old version), then deletes
the rows only the old version had. Readers merge a ping's rows by the newest
version (:func:`chalicelib.store.ports.newest_entries`), so no ping sees both
versions or neither.

Deliveries (keys in :mod:`chalicelib.store.schema`): a record is claimed
with a conditional ``PutItem`` (exactly one per id, however often the
trigger is retried) and moved between statuses with conditional
``UpdateItem``; listings read the ``by_campaign``/``by_device``/``by_day``
indexes newest first; records still ``pending``/``publishing`` carry the
keys of the sparse, keys-only ``open`` index, which the sweep queries
(``stale_open``) for what a dead invocation left behind. Frequency caps are one small counter item per
(campaign, device), written with optimistic concurrency.
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator

from botocore.exceptions import ClientError

from chalicelib.errors import Unavailable
from chalicelib.geo.cells import cell_str
from chalicelib.geo.cover import Cover
from chalicelib.geo.shape import FenceShape
from chalicelib.presence import LocationState
from chalicelib.push.model import HELD, CampaignRecord, Delivery
from chalicelib.store.weather_dynamo import WeatherDynamoMixin
from chalicelib.store.ddb import conditional_failed as _failed
from chalicelib.store.ddb import num as _num
from chalicelib.store.ddb import s as _s
from chalicelib.store.codec import blob_to_cover, blob_to_json, cover_to_blob, json_to_blob
from chalicelib.store.ports import ConcurrentUpdate, Device, FenceRecord, FenceVersion, IndexEntry, RegionQuery
from chalicelib.store.schema import (
    DELIVERY_KINDS,
    HELD_HASH,
    LIST_INDEXES,
    OPEN_SHARDS,
    OPEN_STATUSES,
    cap_key,
    check_delivery_changes,
    check_new_delivery,
    ck_day,
    day_key,
    day_of,
    decode_page_token,
    delivery_sort_key,
    encode_page_token,
    fixed,
    list_index,
    open_hash,
    open_key,
    open_since,
    release_key,
)
from chalicelib.weather.region import fine_key, location_cell, region_keys

META = "META"
REGION_INDEX = "by_region"
OPEN_INDEX = "open"
OUTBOX_PREFIX = "ob_"
BATCH_GET_MAX = 100
DAY_S = 86400.0
#: ``by_day`` partitions a listing walks: tomorrow (clock skew) back to
#: 90 days ago (records expire after 90 days).
LIST_DAYS = 92
#: Attempts of a frequency-cap write that keeps losing races.
CAP_ATTEMPTS = 8
#: What a Device is built from (scan_locations projects only these).
DEVICE_ATTRS = (
    "device_id", "platform", "push_token", "user_id", "attrs", "consent", "push_enabled",
    "created_at", "updated_at", "st", "sv", "wa", "endpoint_arn",
)


def _fk(fence_id: str) -> str:
    return f"F#{fence_id}"


def _gk(version: int) -> str:
    return f"G#{version:010d}"


def _n(v) -> dict:
    return {"N": str(v)}


def _value(kind: str, v) -> dict:
    if kind == "str":
        return _s(v)
    if kind == "int":
        return _n(int(v))
    return _num(v)


def _chunks(seq: list, size: int):
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


class DynamoStore(WeatherDynamoMixin):
    def __init__(
        self,
        client,
        settings,
        pool: ThreadPoolExecutor | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.geofences = settings.geofences_table
        self.cells_table = settings.cells_table
        self.devices_table = settings.devices_table
        self.campaigns_table = settings.campaigns_table
        self.deliveries_table = settings.deliveries_table
        self._init_weather(settings)
        self.pool = pool or ThreadPoolExecutor(max_workers=16, thread_name_prefix="hexcast-ddb")
        #: Only where listing starts walking the ``by_day`` partitions.
        self.clock = clock
        #: Partitions per coarse cell of the device region index.
        self.region_shards = int(getattr(settings, "region_shards", 4))
        #: Region index reads served: ``Query`` calls (pages) and items.
        self.region_queries_made = 0
        self.region_items_read = 0
        self._count_lock = threading.Lock()

    # ------------------------------------------------------------ helpers
    def _call(self, fn, **kwargs):
        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"):
                raise Unavailable("the database is throttling; retry shortly") from None
            raise

    def _if(self, fn, **kwargs) -> dict | None:
        """A conditional write: its response, or None when the condition
        did not hold (a lost race, an item that exists or is gone)."""
        try:
            return self._call(fn, **kwargs)
        except ClientError as exc:
            if _failed(exc):
                return None
            raise

    def _batch_get(self, request_items: dict[str, list[dict]]) -> dict[str, list[dict]]:
        """BatchGetItem over any number of keys: chunks of 100 sent
        concurrently; unprocessed keys retried with backoff."""
        flat = [(t, k) for t, keys in request_items.items() for k in keys]
        if not flat:
            return {}
        out: dict[str, list[dict]] = {t: [] for t in request_items}

        def run(chunk):
            req: dict[str, dict] = {}
            for t, k in chunk:
                req.setdefault(t, {"Keys": []})["Keys"].append(k)
            got: dict[str, list[dict]] = {}
            delay = 0.02
            for _ in range(10):
                resp = self._call(self.client.batch_get_item, RequestItems=req)
                for t, items in resp.get("Responses", {}).items():
                    got.setdefault(t, []).extend(items)
                req = resp.get("UnprocessedKeys") or {}
                if not req:
                    return got
                time.sleep(delay)
                delay *= 2
            raise Unavailable("the database is throttling; retry shortly")

        chunks = list(_chunks(flat, BATCH_GET_MAX))
        results = [run(chunks[0])] if len(chunks) == 1 else list(self.pool.map(run, chunks))
        for got in results:
            for t, items in got.items():
                out[t].extend(items)
        return out

    # ------------------------------------------------------------ geofences
    def _record(self, item: dict) -> FenceRecord:
        return FenceRecord(
            fence_id=item["id"]["S"],
            version=int(item["version"]["N"]),
            kind=item["kind"]["S"],
            name=item["name"]["S"],
            tags=tuple(json.loads(item["tags"]["S"])),
            enabled=item["enabled"]["BOOL"],
            area_km2=float(item["area_km2"]["N"]),
            cells=int(item["cells"]["N"]),
            feature=blob_to_json(item["feature"]["B"]),
            created_at=item["created_at"]["S"],
            updated_at=item["updated_at"]["S"],
        )

    def _get_meta(self, fence_id: str, consistent: bool = True) -> dict | None:
        resp = self._call(
            self.client.get_item,
            TableName=self.geofences,
            Key={"pk": _s(_fk(fence_id)), "sk": _s(META)},
            ConsistentRead=consistent,
        )
        return resp.get("Item")

    def get_fence(self, fence_id: str) -> FenceRecord | None:
        item = self._get_meta(fence_id)
        return self._record(item) if item else None

    def get_fences(self, fence_ids: Iterable[str]) -> dict[str, FenceRecord]:
        keys = [{"pk": _s(_fk(f)), "sk": _s(META)} for f in sorted(set(fence_ids))]
        items = self._batch_get({self.geofences: keys}).get(self.geofences, [])
        return {r.fence_id: r for r in map(self._record, items)}

    def put_fence(self, record: FenceRecord, version: FenceVersion, cover: Cover) -> FenceRecord:
        fid = record.fence_id
        old = self._get_meta(fid)
        old_version = int(old["version"]["N"]) if old else 0
        old_cover = blob_to_cover(old["cover"]["B"]) if old else Cover(cover.cells[:0], cover.inside[:0])
        old_tags = set(json.loads(old["tags"]["S"])) if old else set()
        new_version = old_version + 1
        record = replace(record, version=new_version, created_at=old["created_at"]["S"] if old else record.created_at)
        pk = _s(_fk(fid))
        geom_item = {
            "pk": pk,
            "sk": _s(_gk(new_version)),
            "id": _s(fid),
            "version": _n(new_version),
            "name": _s(record.name),
            "tags": _s(json.dumps(list(record.tags))),
            "shape": {"B": version.shape.to_blob()},
        }
        if version.dwell_minutes is not None:
            geom_item["dwell"] = _n(version.dwell_minutes)
        stored_cover = cover if record.enabled else Cover(cover.cells[:0], cover.inside[:0])
        meta_item = {
            "pk": pk,
            "sk": _s(META),
            "id": _s(fid),
            "version": _n(new_version),
            "kind": _s(record.kind),
            "name": _s(record.name),
            "tags": _s(json.dumps(list(record.tags))),
            "enabled": {"BOOL": record.enabled},
            "area_km2": _n(Decimal(str(record.area_km2))),
            "cells": _n(len(stored_cover)),
            "feature": {"B": json_to_blob(record.feature)},
            "cover": {"B": cover_to_blob(stored_cover)},
            "created_at": _s(record.created_at),
            "updated_at": _s(record.updated_at),
        }
        # 1. the new version's geometry: the version lock.
        if self._if(
            self.client.put_item,
            TableName=self.geofences,
            Item=geom_item,
            ConditionExpression="attribute_not_exists(pk)",
        ) is None:
            raise ConcurrentUpdate(fid)
        # 2. its index rows (in place over the old version's rows).
        v = _n(new_version)
        rows = [
            {"PutRequest": {"Item": {"cell": _s(cell_str(c)), "fid": _s(fid), "v": v, "i": {"BOOL": bool(i)}}}}
            for c, i in zip(stored_cover.cells.tolist(), stored_cover.inside.tolist())
        ]
        self._batch_write(self.cells_table, rows)
        # 3. the flip.
        if old:
            cond = {"ConditionExpression": "version = :old", "ExpressionAttributeValues": {":old": _n(old_version)}}
        else:
            cond = {"ConditionExpression": "attribute_not_exists(pk)"}
        if self._if(self.client.put_item, TableName=self.geofences, Item=meta_item, **cond) is None:
            raise ConcurrentUpdate(fid)
        tag_ops = [
            {"PutRequest": {"Item": {"pk": _s(f"T#{t}"), "sk": _s(fid), "id": _s(fid)}}}
            for t in sorted(set(record.tags) - old_tags)
        ] + [
            {"DeleteRequest": {"Key": {"pk": _s(f"T#{t}"), "sk": _s(fid)}}}
            for t in sorted(old_tags - set(record.tags))
        ]
        if old:
            tag_ops.append({"DeleteRequest": {"Key": {"pk": pk, "sk": _s(_gk(old_version))}}})
        self._batch_write(self.geofences, tag_ops)
        # 4. rows only the old version had.
        stale = sorted(set(old_cover.cells.tolist()) - set(stored_cover.cells.tolist()))
        self._delete_rows(fid, stale)
        return record

    def _batch_write(self, table: str, requests: list[dict]) -> None:
        """BatchWriteItem in chunks of 25, sent concurrently, unprocessed
        items retried with backoff."""
        if not requests:
            return

        def run(chunk):
            req = {table: chunk}
            delay = 0.02
            for _ in range(10):
                resp = self._call(self.client.batch_write_item, RequestItems=req)
                req = resp.get("UnprocessedItems") or {}
                if not req:
                    return
                time.sleep(delay)
                delay *= 2
            raise Unavailable("the database is throttling; retry shortly")

        chunks = list(_chunks(requests, 25))
        if len(chunks) == 1:
            run(chunks[0])
        else:
            list(self.pool.map(run, chunks))

    def _delete_rows(self, fence_id: str, cells: list[int]) -> None:
        self._batch_write(
            self.cells_table,
            [{"DeleteRequest": {"Key": {"cell": _s(cell_str(c)), "fid": _s(fence_id)}}} for c in cells],
        )

    def delete_fence(self, fence_id: str) -> bool:
        old = self._get_meta(fence_id)
        if not old:
            return False
        version = int(old["version"]["N"])
        pk = _s(_fk(fence_id))
        if self._if(
            self.client.delete_item,
            TableName=self.geofences,
            Key={"pk": pk, "sk": _s(META)},
            ConditionExpression="version = :v",
            ExpressionAttributeValues={":v": _n(version)},
        ) is None:
            return False
        self._delete_rows(fence_id, blob_to_cover(old["cover"]["B"]).cells.tolist())
        self._batch_write(
            self.geofences,
            [{"DeleteRequest": {"Key": {"pk": _s(f"T#{t}"), "sk": _s(fence_id)}}} for t in json.loads(old["tags"]["S"])]
            + [{"DeleteRequest": {"Key": {"pk": pk, "sk": _s(_gk(version))}}}],
        )
        return True

    def list_fences(self, tag: str | None, limit: int, next_token: str | None):
        if tag is not None:
            kwargs: dict[str, Any] = {
                "TableName": self.geofences,
                "KeyConditionExpression": "pk = :p",
                "ExpressionAttributeValues": {":p": _s(f"T#{tag}")},
                "Limit": limit,
            }
            if next_token:
                kwargs["ExclusiveStartKey"] = {"pk": _s(f"T#{tag}"), "sk": _s(next_token)}
            resp = self._call(self.client.query, **kwargs)
            ids = [i["sk"]["S"] for i in resp.get("Items", [])]
            metas = self.get_fences(ids)
            records = [metas[i] for i in ids if i in metas]
            more = "LastEvaluatedKey" in resp
            return records, (ids[-1] if more and ids else None)
        records: list[FenceRecord] = []
        start = {"pk": _s(_fk(next_token)), "sk": _s(META)} if next_token else None
        while len(records) < limit:
            kwargs = {
                "TableName": self.geofences,
                "FilterExpression": "sk = :m",
                "ExpressionAttributeValues": {":m": _s(META)},
                "Limit": max(limit - len(records), 25),
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            resp = self._call(self.client.scan, **kwargs)
            for item in resp.get("Items", []):
                if len(records) < limit:
                    records.append(self._record(item))
                    start = {"pk": item["pk"], "sk": item["sk"]}
                else:
                    break
            if "LastEvaluatedKey" not in resp and len(records) < limit:
                return records, None
            if "LastEvaluatedKey" in resp and len(records) < limit:
                start = resp["LastEvaluatedKey"]
        return records, (records[-1].fence_id if records else None)

    def get_versions(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], FenceVersion]:
        req = [{"pk": _s(_fk(f)), "sk": _s(_gk(v))} for f, v in sorted(set(keys))]
        items = self._batch_get({self.geofences: req}).get(self.geofences, [])
        out = {}
        for it in items:
            fv = FenceVersion(
                fence_id=it["id"]["S"],
                version=int(it["version"]["N"]),
                name=it["name"]["S"],
                tags=tuple(json.loads(it["tags"]["S"])),
                dwell_minutes=float(it["dwell"]["N"]) if "dwell" in it else None,
                shape=FenceShape.from_blob(it["shape"]["B"]),
            )
            out[(fv.fence_id, fv.version)] = fv
        return out

    # ------------------------------------------------------------ cells
    def _query_cell(self, cell: int) -> tuple[int, dict[str, IndexEntry]]:
        row: dict[str, IndexEntry] = {}
        kwargs: dict[str, Any] = {
            "TableName": self.cells_table,
            "KeyConditionExpression": "cell = :c",
            "ExpressionAttributeValues": {":c": _s(cell_str(cell))},
        }
        while True:
            resp = self._call(self.client.query, **kwargs)
            for it in resp.get("Items", []):
                row[it["fid"]["S"]] = IndexEntry(int(it["v"]["N"]), it["i"]["BOOL"])
            if "LastEvaluatedKey" not in resp:
                return cell, row
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def lookup_cells(self, cells: Iterable[int]) -> dict[int, dict[str, IndexEntry]]:
        _, rows = self.read_for_pings((), cells)
        return rows

    # ------------------------------------------------------------ devices
    def _device(self, item: dict) -> Device:
        st = item.get("st")
        return Device(
            device_id=item["device_id"]["S"],
            platform=item["platform"]["S"],
            push_token=item["push_token"]["S"],
            user_id=item["user_id"]["S"] if "user_id" in item else None,
            attributes=json.loads(item["attrs"]["S"]) if "attrs" in item else {},
            consent={k: v["BOOL"] for k, v in item.get("consent", {}).get("M", {}).items()},
            push_enabled=item.get("push_enabled", {}).get("BOOL", False),
            created_at=item.get("created_at", {}).get("S", ""),
            updated_at=item.get("updated_at", {}).get("S", ""),
            state=LocationState.from_json(json.loads(st["S"])) if st else None,
            state_version=int(item.get("sv", {}).get("N", "0")),
            written_at=float(item.get("wa", {}).get("N", "0")),
            endpoint_arn=item["endpoint_arn"]["S"] if "endpoint_arn" in item else None,
            outbox={k[len(OUTBOX_PREFIX):]: json.loads(v["S"]) for k, v in item.items() if k.startswith(OUTBOX_PREFIX)},
            secret_hash=item["secret_hash"]["S"] if "secret_hash" in item else None,
        )

    def read_for_pings(self, device_ids: Iterable[str], cells: Iterable[int]):
        """The devices (BatchGetItem) and one Query per cell, all in flight at
        once: one sequential round trip."""
        dkeys = [{"device_id": _s(d)} for d in sorted(set(device_ids))]
        cells = sorted(set(cells))
        futures = [self.pool.submit(self._query_cell, c) for c in cells]
        got = self._batch_get({self.devices_table: dkeys}) if dkeys else {}
        devices = {i["device_id"]["S"]: self._device(i) for i in got.get(self.devices_table, [])}
        rows = {}
        for f in futures:
            c, row = f.result()
            if row:
                rows[c] = row
        return devices, rows

    def get_device(self, device_id: str, consistent: bool = False) -> Device | None:
        resp = self._call(
            self.client.get_item,
            TableName=self.devices_table,
            Key={"device_id": _s(device_id)},
            ConsistentRead=consistent,
        )
        item = resp.get("Item")
        return self._device(item) if item else None

    def save_profile(self, device: Device, *, create: bool | None = None) -> bool:
        """One ``UpdateItem``; ``create`` makes it conditional (see the port):
        ``attribute_not_exists(device_id)`` to create, the stored secret hash
        to update."""
        names = {"#c": "consent"}
        values: dict[str, Any] = {
            ":p": _s(device.platform),
            ":t": _s(device.push_token),
            ":a": _s(json.dumps(device.attributes, separators=(",", ":"))),
            ":c": {"M": {k: {"BOOL": bool(v)} for k, v in device.consent.items()}},
            ":e": {"BOOL": device.push_enabled},
            ":now": _s(device.updated_at),
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
            # Consent withdrawn: forget the location at once (and leave
            # the region index).
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
        resp = self._if(
            self.client.update_item,
            TableName=self.devices_table,
            Key={"device_id": _s(device.device_id)},
            UpdateExpression=expr,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_OLD",
            **condition,
        )
        if resp is None:
            raise ConcurrentUpdate(device.device_id)
        return not resp.get("Attributes")

    def save_state(self, device_id: str, expected_version: int, state: LocationState | None, written_at: float,
                   outbox: dict[str, dict] | None = None) -> None:
        values = {":old": _n(expected_version), ":new": _n(expected_version + 1), ":wa": _n(Decimal(str(round(written_at, 3))))}
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
        if self._if(
            self.client.update_item,
            TableName=self.devices_table,
            Key={"device_id": _s(device_id)},
            UpdateExpression=expr,
            ConditionExpression="attribute_exists(device_id) AND sv = :old",
            ExpressionAttributeValues=values,
            **kwargs,
        ) is None:
            raise ConcurrentUpdate(device_id)

    def clear_outbox(self, device_id: str, keys: Iterable[str]) -> None:
        keys = sorted(set(keys))
        if not keys:
            return
        names = {f"#o{i}": OUTBOX_PREFIX + k for i, k in enumerate(keys)}
        self._if(  # a deleted device has nothing left to clear
            self.client.update_item,
            TableName=self.devices_table,
            Key={"device_id": _s(device_id)},
            UpdateExpression="REMOVE " + ", ".join(names),
            ConditionExpression="attribute_exists(device_id)",
            ExpressionAttributeNames=names,
        )

    def delete_device(self, device_id: str, *, secret_hash: str | None = None) -> bool:
        condition: dict[str, Any] = {}
        if secret_hash is not None:
            condition = {"ConditionExpression": "secret_hash = :h", "ExpressionAttributeValues": {":h": _s(secret_hash)}}
        resp = self._if(
            self.client.delete_item,
            TableName=self.devices_table,
            Key={"device_id": _s(device_id)},
            ReturnValues="ALL_OLD",
            **condition,
        )
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
        if self._if(
            self.client.update_item,
            TableName=self.devices_table,
            Key={"device_id": _s(device_id)},
            UpdateExpression=expr,
            ConditionExpression="attribute_exists(device_id)",
            ExpressionAttributeValues=values,
        ) is None:
            return False
        return True

    def scan_locations(self, segments: int = 4) -> Iterator[Device]:
        """A parallel ``Scan`` (one segment per pool thread) of the devices
        with a location state, projecting only what a Device is built from."""
        segments = max(1, int(segments))
        names = {f"#a{i}": a for i, a in enumerate(DEVICE_ATTRS)}
        state = f"#a{DEVICE_ATTRS.index('st')}"

        def run(segment: int) -> list[dict]:
            kwargs: dict[str, Any] = {
                "TableName": self.devices_table,
                "ProjectionExpression": ", ".join(names),
                "FilterExpression": f"attribute_exists({state})",
                "ExpressionAttributeNames": names,
                "Segment": segment,
                "TotalSegments": segments,
            }
            items: list[dict] = []
            while True:
                resp = self._call(self.client.scan, **kwargs)
                items.extend(resp.get("Items", []))
                if "LastEvaluatedKey" not in resp:
                    return items
                kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

        futures = [self.pool.submit(run, seg) for seg in range(segments)]
        for f in futures:
            for item in f.result():
                yield self._device(item)

    #: An expired location (see :mod:`chalicelib.retention`): a state whose
    #: write time is before ``:before`` (a state without one is legacy: expired).
    _EXPIRED = "attribute_exists(st) AND (attribute_not_exists(wa) OR wa < :before)"

    def expire_locations(
        self, written_before: float, *, segment: int = 0, segments: int = 1, limit: int = 20_000
    ) -> tuple[int, bool]:
        """A ``Scan`` of one segment, filtered on the write time and projecting
        the key only; each page's devices are cleared concurrently with a
        conditional ``UpdateItem`` (``REMOVE st, wa, rc, rf``, state version
        + 1) whose condition repeats the filter, so a location written since
        the scan read it stays. The ``by_region`` entry goes with ``rc``/``rf``."""
        before = _n(Decimal(str(round(written_before, 3))))
        kwargs: dict[str, Any] = {
            "TableName": self.devices_table,
            "ProjectionExpression": "device_id",
            "FilterExpression": self._EXPIRED,
            "ExpressionAttributeValues": {":before": before},
        }
        if segments > 1:
            kwargs["Segment"], kwargs["TotalSegments"] = int(segment), int(segments)

        def clear(device_id: str) -> int:
            try:
                self._call(
                    self.client.update_item,
                    TableName=self.devices_table,
                    Key={"device_id": _s(device_id)},
                    UpdateExpression="REMOVE st, wa, rc, rf SET sv = if_not_exists(sv, :z) + :one",
                    ConditionExpression=self._EXPIRED,
                    ExpressionAttributeValues={":before": before, ":z": _n(0), ":one": _n(1)},
                )
                return 1
            except ClientError as exc:
                if _failed(exc):
                    return 0  # written again (or deleted) since the scan
                raise

        removed = tried = 0
        while True:
            resp = self._call(self.client.scan, **kwargs)
            ids = [i["device_id"]["S"] for i in resp.get("Items", [])]
            room = limit - tried
            tried += min(len(ids), room)
            removed += sum(self.pool.map(clear, ids[:room])) if room > 0 else 0
            if len(ids) > room:
                return removed, False
            if "LastEvaluatedKey" not in resp:
                return removed, True
            if tried >= limit:
                return removed, False
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def _region_device(self, item: dict) -> Device:
        """A light Device from a ``by_region`` item (what the index projects)."""
        st = item.get("st")
        return Device(
            device_id=item["device_id"]["S"],
            platform="",
            push_token="",
            consent={k: v["BOOL"] for k, v in item.get("consent", {}).get("M", {}).items()},
            push_enabled=item.get("push_enabled", {}).get("BOOL", False),
            state=LocationState.from_json(json.loads(st["S"])) if st else None,
            state_version=int(item.get("sv", {}).get("N", "0")),
        )

    def _query_region(self, partition: str, lo: int, hi: int) -> list[dict]:
        kwargs: dict[str, Any] = {
            "TableName": self.devices_table,
            "IndexName": REGION_INDEX,
            "KeyConditionExpression": "rc = :p AND rf BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {":p": _s(partition), ":lo": _s(fine_key(lo)), ":hi": _s(fine_key(hi))},
        }
        items: list[dict] = []
        while True:
            resp = self._call(self.client.query, **kwargs)
            got = resp.get("Items", [])
            items.extend(got)
            with self._count_lock:
                self.region_queries_made += 1
                self.region_items_read += len(got)
            if "LastEvaluatedKey" not in resp:
                return items
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def devices_in_ranges(self, queries: list[RegionQuery]) -> Iterator[Device]:
        """One ``Query`` on ``by_region`` per (partition, range), every
        page, all issued at once on the pool; devices yielded as their
        queries finish (each once, in no particular order)."""
        jobs = [(q.partition, int(lo), int(hi)) for q in queries for lo, hi in q.ranges]
        futures = [self.pool.submit(self._query_region, *job) for job in jobs]
        seen: set[str] = set()
        try:
            for f in futures:
                for item in f.result():
                    did = item["device_id"]["S"]
                    if did not in seen:
                        seen.add(did)
                        yield self._region_device(item)
        finally:
            for f in futures:
                f.cancel()

    # ------------------------------------------------------------ campaigns
    @staticmethod
    def _campaign(item: dict) -> CampaignRecord:
        return CampaignRecord(
            campaign_id=item["campaign_id"]["S"],
            version=int(item["version"]["N"]),
            definition=json.loads(item["definition"]["S"]),
            created_at=item["created_at"]["S"],
            updated_at=item["updated_at"]["S"],
        )

    def put_campaign(self, campaign_id: str, definition: dict, now_iso: str) -> CampaignRecord:
        resp = self._call(
            self.client.update_item,
            TableName=self.campaigns_table,
            Key={"campaign_id": _s(campaign_id)},
            UpdateExpression="SET #v = if_not_exists(#v, :z) + :one, #d = :d, #c = if_not_exists(#c, :now), #u = :now",
            ExpressionAttributeNames={"#v": "version", "#d": "definition", "#c": "created_at", "#u": "updated_at"},
            ExpressionAttributeValues={
                ":z": _n(0),
                ":one": _n(1),
                ":d": _s(json.dumps(definition, separators=(",", ":"))),
                ":now": _s(now_iso),
            },
            ReturnValues="ALL_NEW",
        )
        return self._campaign(resp["Attributes"])

    def get_campaign(self, campaign_id: str) -> CampaignRecord | None:
        resp = self._call(
            self.client.get_item,
            TableName=self.campaigns_table,
            Key={"campaign_id": _s(campaign_id)},
            ConsistentRead=True,
        )
        item = resp.get("Item")
        return self._campaign(item) if item else None

    def delete_campaign(self, campaign_id: str) -> bool:
        resp = self._call(
            self.client.delete_item,
            TableName=self.campaigns_table,
            Key={"campaign_id": _s(campaign_id)},
            ReturnValues="ALL_OLD",
        )
        return bool(resp.get("Attributes"))

    def list_campaigns(self) -> list[CampaignRecord]:
        kwargs: dict[str, Any] = {"TableName": self.campaigns_table, "ConsistentRead": True}
        out: list[CampaignRecord] = []
        while True:
            resp = self._call(self.client.scan, **kwargs)
            out.extend(self._campaign(i) for i in resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return out
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    # ------------------------------------------------------------ deliveries
    @staticmethod
    def _delivery_item(d: Delivery) -> dict:
        item: dict[str, Any] = {"pk": _s(d.delivery_id)}
        for name, kind in DELIVERY_KINDS.items():
            v = getattr(d, name)
            if v is not None and name != "delivery_id":
                item[name] = _value(kind, v)
        item["ck"] = _s(delivery_sort_key(d.created_at, d.delivery_id))
        item["day"] = _s(day_key(d.created_at))
        item["expires_at"] = _n(d.expires_at)
        if d.status == HELD:
            item["hk"] = _s(HELD_HASH)
            item["release_key"] = _s(release_key(d.release_at, d.delivery_id))
        elif d.status in OPEN_STATUSES:
            item["ok"] = _s(open_hash(d.delivery_id))
            item["ot"] = _s(open_key(open_since(d), d.delivery_id))
        return item

    @staticmethod
    def _delivery(item: dict) -> Delivery:
        data: dict[str, Any] = {"delivery_id": item["pk"]["S"]}
        for name, kind in DELIVERY_KINDS.items():
            a = item.get(name)
            if a is None or name == "delivery_id":
                continue
            data[name] = a["S"] if kind == "str" else int(a["N"]) if kind == "int" else float(a["N"])
        return Delivery(**data)

    def claim_delivery(self, delivery: Delivery) -> Delivery | None:
        check_new_delivery(delivery)
        item = self._delivery_item(delivery)
        for _ in range(3):
            try:
                self._call(
                    self.client.put_item,
                    TableName=self.deliveries_table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(pk)",
                )
                return None
            except ClientError as exc:
                if not _failed(exc):
                    raise
            try:
                resp = self._call(
                    self.client.update_item,
                    TableName=self.deliveries_table,
                    Key={"pk": item["pk"]},
                    UpdateExpression="ADD dups :one",
                    ConditionExpression="attribute_exists(pk)",
                    ExpressionAttributeValues={":one": _n(1)},
                    ReturnValues="ALL_NEW",
                )
                return self._delivery(resp["Attributes"])
            except ClientError as exc:
                if not _failed(exc):
                    raise
            # The record expired between the two calls: claim it again.
        raise Unavailable("the delivery record is contended; retry shortly")

    def get_deliveries(self, delivery_ids: list[str]) -> dict[str, Delivery]:
        keys = [{"pk": _s(i)} for i in sorted(set(delivery_ids))]
        items = self._batch_get({self.deliveries_table: keys}).get(self.deliveries_table, [])
        return {d.delivery_id: d for d in map(self._delivery, items)}

    def update_delivery(
        self, delivery_id: str, changes: dict[str, Any], *, expect_status: str | None = None, absent: str | None = None,
        updated_before: float | None = None,
    ) -> bool:
        """One conditional ``UpdateItem``; keeps the sparse ``held`` index
        keys (``hk``, ``release_key``) in step with status and release_at,
        and the ``open`` index keys (``ok``, ``ot``) with status and
        updated_at (see :mod:`chalicelib.store.schema`)."""
        check_delivery_changes(changes, absent, expect_status)
        names: dict[str, str] = {}  # placeholder → attribute
        placeholders: dict[str, str] = {}  # attribute → placeholder
        values: dict[str, Any] = {}

        def alias(attr: str) -> str:
            if attr not in placeholders:
                placeholders[attr] = f"#a{len(placeholders)}"
                names[placeholders[attr]] = attr
            return placeholders[attr]

        sets, removes, conds = [], [], ["attribute_exists(pk)"]
        for i, (name, value) in enumerate(changes.items()):
            if value is None:
                removes.append(alias(name))
            else:
                sets.append(f"{alias(name)} = :v{i}")
                values[f":v{i}"] = _value(DELIVERY_KINDS[name], value)
        new_release: float | None | str = "unchanged"
        if "status" in changes:
            if changes["status"] == HELD:
                if "release_at" in changes:
                    new_release = changes["release_at"]
                else:
                    cur = self._call(
                        self.client.get_item,
                        TableName=self.deliveries_table,
                        Key={"pk": _s(delivery_id)},
                        ProjectionExpression="pk, release_at",
                        ConsistentRead=True,
                    ).get("Item")
                    if not cur:
                        return False
                    if "release_at" not in cur:
                        raise ValueError("a held delivery needs release_at")
                    new_release = float(cur["release_at"]["N"])
                    conds.append(f"{alias('release_at')} = :ra")
                    values[":ra"] = cur["release_at"]
                sets.append(f"{alias('hk')} = :hk")
                values[":hk"] = _s(HELD_HASH)
            else:
                removes += [alias("hk"), alias("release_key")]
        elif "release_at" in changes:
            new_release = changes["release_at"]
        if new_release is None:
            removes.append(alias("release_key"))
        elif new_release != "unchanged":
            sets.append(f"{alias('release_key')} = :rk")
            values[":rk"] = _s(release_key(float(new_release), delivery_id))
        # The open index: the status after this update, when it is known.
        target = changes.get("status", expect_status)
        if target in OPEN_STATUSES:
            if changes.get("updated_at") is not None:
                sets += [f"{alias('ok')} = :ok", f"{alias('ot')} = :ot"]
                values[":ok"] = _s(open_hash(delivery_id))
                values[":ot"] = _s(open_key(float(changes["updated_at"]), delivery_id))
        elif "status" in changes:
            removes += [alias("ok"), alias("ot")]
        if updated_before is not None:
            u, c = alias("updated_at"), alias("created_at")
            conds.append(f"({u} <= :ub OR (attribute_not_exists({u}) AND {c} <= :ub))")
            values[":ub"] = _num(updated_before)
        if expect_status is not None:
            conds.append(f"{alias('status')} = :expect")
            values[":expect"] = _s(expect_status)
        if absent is not None:
            conds.append(f"attribute_not_exists({alias(absent)})")
        expr = ""
        if sets:
            expr = "SET " + ", ".join(sets)
        if removes:
            expr += (" " if expr else "") + "REMOVE " + ", ".join(dict.fromkeys(removes))
        kwargs: dict[str, Any] = {
            "TableName": self.deliveries_table,
            "Key": {"pk": _s(delivery_id)},
            "UpdateExpression": expr,
            "ConditionExpression": " AND ".join(conds),
            "ExpressionAttributeNames": names,
        }
        if values:
            kwargs["ExpressionAttributeValues"] = values
        if self._if(self.client.update_item, **kwargs) is None:
            return False
        return True

    def _query_newest(
        self,
        index: str,
        hash_attr: str,
        hash_value: str,
        *,
        before: str | None = None,
        filters: dict[str, str] | None = None,
        need: int | None = None,
    ) -> list[dict]:
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
        kwargs: dict[str, Any] = {
            "TableName": self.deliveries_table,
            "IndexName": index,
            "KeyConditionExpression": key,
            "ScanIndexForward": False,
        }
        if filters:
            parts = []
            for i, (attr, want) in enumerate(sorted(filters.items())):
                names[f"#f{i}"] = attr
                values[f":f{i}"] = _s(want)
                parts.append(f"#f{i} = :f{i}")
            kwargs["FilterExpression"] = " AND ".join(parts)
        kwargs["ExpressionAttributeNames"] = names
        kwargs["ExpressionAttributeValues"] = values
        out: list[dict] = []
        while need is None or len(out) < need:
            if need is not None:
                missing = need - len(out)
                kwargs["Limit"] = min(max(missing, 100), 1000) if filters else missing
            resp = self._call(self.client.query, **kwargs)
            out.extend(resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                break
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        return out

    def list_deliveries(
        self,
        *,
        campaign_id: str | None = None,
        device_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
        next_token: str | None = None,
    ) -> tuple[list[Delivery], str | None]:
        """Newest first. ``by_campaign`` when a campaign is given, else
        ``by_device``, else the ``by_day`` partitions walked backwards. One
        record more than ``limit`` is read to know whether a page follows;
        the token is the sort key of the page's last record."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        code = list_index(campaign_id, device_id)
        before = decode_page_token(next_token, code) if next_token else None
        filters = {}
        if status is not None:
            filters["status"] = status
        want = limit + 1
        if code == "c":
            if device_id is not None:
                filters["device_id"] = device_id
            found = self._query_newest(LIST_INDEXES[code], "campaign_id", campaign_id, before=before, filters=filters, need=want)
        elif code == "v":
            found = self._query_newest(LIST_INDEXES[code], "device_id", device_id, before=before, filters=filters, need=want)
        else:
            found = self._walk_days(before, filters, want)
        page = found[:limit]
        token = encode_page_token(code, page[-1]["ck"]["S"]) if len(found) > limit else None
        return [self._delivery(i) for i in page], token

    def _walk_days(self, before: str | None, filters: dict[str, str], want: int) -> list[dict]:
        """The ``by_day`` partitions from the newest day back: the first
        alone, then batches of 2, 4, 8 … days read concurrently (a sparse
        table's last page does not pay 90 sequential round trips)."""
        now = self.clock()
        first = date.fromisoformat(day_of(now + DAY_S))
        oldest = first - timedelta(days=LIST_DAYS - 1)
        start = date.fromisoformat(ck_day(before)) if before else first
        days = []
        d = min(start, first)
        while d >= oldest:
            days.append(d)
            d -= timedelta(days=1)
        found: list[dict] = []
        batch = 1
        while days and len(found) < want:
            chunk, days = days[:batch], days[batch:]
            need = want - len(found)

            def run(day: date, need=need) -> list[dict]:
                return self._query_newest(
                    LIST_INDEXES["d"], "day", f"D#{day.isoformat()}",
                    before=before if before and day == start else None,
                    filters=filters,
                    need=need,
                )

            results = [run(chunk[0])] if len(chunk) == 1 else list(self.pool.map(run, chunk))
            for items in results:
                found.extend(items)
            batch = min(batch * 2, 16)
        return found

    def campaign_deliveries(self, campaign_id: str) -> Iterator[Delivery]:
        kwargs: dict[str, Any] = {
            "TableName": self.deliveries_table,
            "IndexName": "by_campaign",
            "KeyConditionExpression": "#h = :h",
            "ExpressionAttributeNames": {"#h": "campaign_id"},
            "ExpressionAttributeValues": {":h": _s(campaign_id)},
            "ScanIndexForward": False,
        }
        while True:
            resp = self._call(self.client.query, **kwargs)
            for item in resp.get("Items", []):
                yield self._delivery(item)
            if "LastEvaluatedKey" not in resp:
                return
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def device_deliveries(self, device_id: str, since: float) -> list[Delivery]:
        kwargs: dict[str, Any] = {
            "TableName": self.deliveries_table,
            "IndexName": "by_device",
            "KeyConditionExpression": "#h = :h AND #ck >= :since",
            "ExpressionAttributeNames": {"#h": "device_id", "#ck": "ck"},
            "ExpressionAttributeValues": {":h": _s(device_id), ":since": _s(fixed(since))},
            "ScanIndexForward": False,
        }
        out: list[Delivery] = []
        while True:
            resp = self._call(self.client.query, **kwargs)
            out.extend(map(self._delivery, resp.get("Items", [])))
            if "LastEvaluatedKey" not in resp:
                return out
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def due_held(self, now: float, limit: int = 100) -> list[Delivery]:
        kwargs: dict[str, Any] = {
            "TableName": self.deliveries_table,
            "IndexName": "held",
            "KeyConditionExpression": "#h = :h AND #rk <= :end",
            "ExpressionAttributeNames": {"#h": "hk", "#rk": "release_key"},
            "ExpressionAttributeValues": {":h": _s(HELD_HASH), ":end": _s(fixed(now) + "#~")},
            "ScanIndexForward": True,
        }
        out: list[Delivery] = []
        while len(out) < limit:
            kwargs["Limit"] = limit - len(out)
            resp = self._call(self.client.query, **kwargs)
            out.extend(map(self._delivery, resp.get("Items", [])))
            if "LastEvaluatedKey" not in resp:
                break
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        return out[:limit]

    def stale_open(self, before: float, limit: int = 100) -> list[Delivery]:
        """The ``open`` index's shards queried concurrently (keys up to
        ``before``, oldest first), then the records themselves; a record
        whose ``updated_at`` moved on since its key was written (a take-over
        in progress) or that left the open statuses is skipped."""
        end = _s(fixed(before) + "#~")

        def shard(k: int) -> list[tuple[str, str]]:
            kwargs: dict[str, Any] = {
                "TableName": self.deliveries_table,
                "IndexName": OPEN_INDEX,
                "KeyConditionExpression": "#h = :h AND #t <= :end",
                "ExpressionAttributeNames": {"#h": "ok", "#t": "ot"},
                "ExpressionAttributeValues": {":h": _s(f"OPEN#{k:02d}"), ":end": end},
                "ScanIndexForward": True,
                "Limit": limit,
            }
            resp = self._call(self.client.query, **kwargs)
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
        again."""
        if per_day is None and min_gap_s is None:
            return True
        key = {"pk": _s(cap_key(campaign_id, device_id))}
        window = max(DAY_S, min_gap_s or 0.0)
        for attempt in range(CAP_ATTEMPTS):
            item = self._call(
                self.client.get_item, TableName=self.deliveries_table, Key=key, ConsistentRead=True
            ).get("Item")
            sends = [float(v["N"]) for v in item["sends"]["L"]] if item else []
            kept = [t for t in sends if t > now - window]
            if per_day is not None and sum(1 for t in kept if t > now - DAY_S) >= per_day:
                return False
            if min_gap_s is not None and kept and now - max(kept) < min_gap_s:
                return False
            version = int(item["cv"]["N"]) if item else 0
            new_item = {
                **key,
                "sends": {"L": [_num(t) for t in kept + [now]]},
                "cv": _n(version + 1),
                "expires_at": _n(int(now + window + DAY_S)),
            }
            if item:
                cond = {"ConditionExpression": "cv = :old", "ExpressionAttributeValues": {":old": _n(version)}}
            else:
                cond = {"ConditionExpression": "attribute_not_exists(pk)"}
            try:
                self._call(self.client.put_item, TableName=self.deliveries_table, Item=new_item, **cond)
                return True
            except ClientError as exc:
                if not _failed(exc):
                    raise
            time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
        raise Unavailable("the frequency cap is contended; retry shortly")
