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
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal
from typing import Any, Iterable

from botocore.exceptions import ClientError

from chalicelib.errors import Unavailable
from chalicelib.geo.cells import cell_str
from chalicelib.geo.cover import Cover
from chalicelib.geo.shape import FenceShape
from chalicelib.presence import LocationState
from chalicelib.store.codec import blob_to_cover, blob_to_json, cover_to_blob, json_to_blob
from chalicelib.store.ports import ConcurrentUpdate, Device, FenceRecord, FenceVersion, IndexEntry

META = "META"
BATCH_GET_MAX = 100


def _fk(fence_id: str) -> str:
    return f"F#{fence_id}"


def _gk(version: int) -> str:
    return f"G#{version:010d}"


def _s(v: str) -> dict:
    return {"S": v}


def _n(v) -> dict:
    return {"N": str(v)}


def _chunks(seq: list, size: int):
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


class DynamoStore:
    def __init__(self, client, settings, pool: ThreadPoolExecutor | None = None) -> None:
        self.client = client
        self.geofences = settings.geofences_table
        self.cells_table = settings.cells_table
        self.devices_table = settings.devices_table
        self.pool = pool or ThreadPoolExecutor(max_workers=16, thread_name_prefix="hexcast-ddb")

    # ------------------------------------------------------------ helpers
    def _call(self, fn, **kwargs):
        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"):
                raise Unavailable("the database is throttling; retry shortly") from None
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
        try:
            self._call(
                self.client.put_item,
                TableName=self.geofences,
                Item=geom_item,
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise ConcurrentUpdate(fid) from None
            raise
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
        try:
            self._call(self.client.put_item, TableName=self.geofences, Item=meta_item, **cond)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise ConcurrentUpdate(fid) from None
            raise
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
        try:
            self.client.delete_item(
                TableName=self.geofences,
                Key={"pk": pk, "sk": _s(META)},
                ConditionExpression="version = :v",
                ExpressionAttributeValues={":v": _n(version)},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
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

    def save_profile(self, device: Device) -> bool:
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
        if device.location_consent:
            sets.append("sv = if_not_exists(sv, :z)")
        else:
            # Consent withdrawn: forget the location at once.
            removes += ["st", "wa"]
            sets.append("sv = if_not_exists(sv, :z) + :one")
            values[":one"] = _n(1)
        expr = "SET " + ", ".join(sets)
        if removes:
            expr += " REMOVE " + ", ".join(removes)
        resp = self._call(
            self.client.update_item,
            TableName=self.devices_table,
            Key={"device_id": _s(device.device_id)},
            UpdateExpression=expr,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_OLD",
        )
        return not resp.get("Attributes")

    def save_state(self, device_id: str, expected_version: int, state: LocationState | None, written_at: float) -> None:
        values = {":old": _n(expected_version), ":new": _n(expected_version + 1), ":wa": _n(Decimal(str(round(written_at, 3))))}
        if state is None:
            expr = "SET sv = :new, wa = :wa REMOVE st"
        else:
            expr = "SET sv = :new, wa = :wa, st = :st"
            values[":st"] = _s(json.dumps(state.to_json(), separators=(",", ":")))
        try:
            self.client.update_item(
                TableName=self.devices_table,
                Key={"device_id": _s(device_id)},
                UpdateExpression=expr,
                ConditionExpression="attribute_exists(device_id) AND sv = :old",
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise ConcurrentUpdate(device_id) from None
            raise

    def delete_device(self, device_id: str) -> bool:
        resp = self._call(
            self.client.delete_item,
            TableName=self.devices_table,
            Key={"device_id": _s(device_id)},
            ReturnValues="ALL_OLD",
        )
        return bool(resp.get("Attributes"))
