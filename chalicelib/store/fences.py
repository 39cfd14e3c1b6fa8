"""Fences on DynamoDB: the ``geofences`` table (definitions, versions,
tag rows) and the ``cells`` index table (one row per (cell, fence)).

A fence put writes, in order: the new version's geometry item (conditional:
a concurrent put of the same fence loses with :class:`ConcurrentUpdate`),
its index rows (``BatchWriteItem``; a row per (cell, fence) overwrites the
old version's row in place), the ``META`` flip (conditional on the old
version), then deletes the rows only the old version had. Readers merge a
ping's rows by the newest version
(:func:`chalicelib.ports.newest_entries`), so no ping sees both
versions or neither.

Every put and delete ends by adding one to the index epoch (an item of the
``geofences`` table, ``pk = INDEX``): a warm function that keeps index rows
in memory trusts them only while the epoch is the one it read before
querying them (:class:`chalicelib.services.fence_cache.IndexCache`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import replace
from decimal import Decimal
from typing import Any

from chalicelib.geo.cells import cell_str
from chalicelib.geo.cover import Cover
from chalicelib.geo.shape import FenceShape
from chalicelib.store.codec import (
    blob_to_cover,
    blob_to_json,
    cover_to_blob,
    json_to_blob,
)
from chalicelib.store.ddb import n as _n
from chalicelib.store.ddb import s as _s
from chalicelib.ports import (
    ConcurrentUpdate,
    FenceRecord,
    FenceVersion,
    IndexEntry,
)
from chalicelib.store.table import Item, Table

META = "META"
EPOCH_KEY = {"pk": {"S": "INDEX"}, "sk": {"S": "EPOCH"}}


def _fk(fence_id: str) -> str:
    return f"F#{fence_id}"


def _gk(version: int) -> str:
    return f"G#{version:010d}"


def _record(item: Item) -> FenceRecord:
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


def _version(item: Item) -> FenceVersion:
    return FenceVersion(
        fence_id=item["id"]["S"],
        version=int(item["version"]["N"]),
        name=item["name"]["S"],
        tags=tuple(json.loads(item["tags"]["S"])),
        dwell_minutes=float(item["dwell"]["N"]) if "dwell" in item else None,
        shape=FenceShape.from_blob(item["shape"]["B"]),
    )


def _empty(cover: Cover) -> Cover:
    return Cover(cover.cells[:0], cover.inside[:0])


class DynamoFences:
    def __init__(self, geofences: Table, cells: Table) -> None:
        self.geofences = geofences
        self.cells = cells

    def _get_meta(self, fence_id: str) -> Item | None:
        return self.geofences.get({"pk": _s(_fk(fence_id)), "sk": _s(META)}, consistent=True)

    def get_fence(self, fence_id: str) -> FenceRecord | None:
        item = self._get_meta(fence_id)
        return _record(item) if item else None

    def get_fences(self, fence_ids: Iterable[str]) -> dict[str, FenceRecord]:
        keys = [{"pk": _s(_fk(f)), "sk": _s(META)} for f in sorted(set(fence_ids))]
        return {r.fence_id: r for r in map(_record, self.geofences.batch_get(keys))}

    def put_fence(self, record: FenceRecord, version: FenceVersion, cover: Cover) -> FenceRecord:
        try:
            return self._put_fence(record, version, cover)
        finally:  # whatever was written, warm caches of index rows start over
            self._bump_epoch()

    def _put_fence(self, record: FenceRecord, version: FenceVersion, cover: Cover) -> FenceRecord:
        fid = record.fence_id
        old = self._get_meta(fid)
        old_version = int(old["version"]["N"]) if old else 0
        old_cover = blob_to_cover(old["cover"]["B"]) if old else _empty(cover)
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
        stored_cover = cover if record.enabled else _empty(cover)
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
        if self.geofences.put_if(geom_item, "attribute_not_exists(pk)") is None:
            raise ConcurrentUpdate(fid)
        # 2. its index rows (in place over the old version's rows).
        v = _n(new_version)
        self.cells.batch_write([
            {"PutRequest": {"Item": {"cell": _s(cell_str(c)), "fid": _s(fid), "v": v, "i": {"BOOL": bool(i)}}}}
            for c, i in zip(stored_cover.cells.tolist(), stored_cover.inside.tolist())
        ])
        # 3. the flip.
        if old:
            flipped = self.geofences.put_if(meta_item, "version = :old", {":old": _n(old_version)})
        else:
            flipped = self.geofences.put_if(meta_item, "attribute_not_exists(pk)")
        if flipped is None:
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
        self.geofences.batch_write(tag_ops)
        # 4. rows only the old version had.
        stale = sorted(set(old_cover.cells.tolist()) - set(stored_cover.cells.tolist()))
        self._delete_rows(fid, stale)
        return record

    def _delete_rows(self, fence_id: str, cells: list[int]) -> None:
        self.cells.batch_write(
            [{"DeleteRequest": {"Key": {"cell": _s(cell_str(c)), "fid": _s(fence_id)}}} for c in cells]
        )

    def delete_fence(self, fence_id: str) -> bool:
        old = self._get_meta(fence_id)
        if not old:
            return False
        version = int(old["version"]["N"])
        pk = _s(_fk(fence_id))
        if self.geofences.delete_if(
            {"pk": pk, "sk": _s(META)}, ConditionExpression="version = :v", ExpressionAttributeValues={":v": _n(version)}
        ) is None:
            return False
        try:
            self._delete_rows(fence_id, blob_to_cover(old["cover"]["B"]).cells.tolist())
            self.geofences.batch_write(
                [{"DeleteRequest": {"Key": {"pk": _s(f"T#{t}"), "sk": _s(fence_id)}}} for t in json.loads(old["tags"]["S"])]
                + [{"DeleteRequest": {"Key": {"pk": pk, "sk": _s(_gk(version))}}}]
            )
        finally:
            self._bump_epoch()
        return True

    def _bump_epoch(self) -> None:
        self.geofences.update(EPOCH_KEY, UpdateExpression="ADD n :one", ExpressionAttributeValues={":one": _n(1)})

    def index_epoch(self) -> int:
        """The index epoch (0 before the first change), read consistently."""
        item = self.geofences.get(EPOCH_KEY, consistent=True)
        return int(item["n"]["N"]) if item else 0

    def list_fences(self, tag: str | None, limit: int, next_token: str | None) -> tuple[list[FenceRecord], str | None]:
        """By tag: one ``Query`` page of the tag rows, then their ``META``
        items; all fences: a ``Scan`` for ``META`` items, read until the page
        is full. The token is the last fence id returned."""
        if tag is not None:
            kwargs: dict[str, Any] = {
                "KeyConditionExpression": "pk = :p",
                "ExpressionAttributeValues": {":p": _s(f"T#{tag}")},
                "Limit": limit,
            }
            if next_token:
                kwargs["ExclusiveStartKey"] = {"pk": _s(f"T#{tag}"), "sk": _s(next_token)}
            resp = self.geofences.call("query", **kwargs)
            ids = [i["sk"]["S"] for i in resp.get("Items", [])]
            metas = self.get_fences(ids)
            more = "LastEvaluatedKey" in resp
            return [metas[i] for i in ids if i in metas], (ids[-1] if more and ids else None)
        records: list[FenceRecord] = []
        if limit < 1:
            return records, None
        scan: dict[str, Any] = {"FilterExpression": "sk = :m", "ExpressionAttributeValues": {":m": _s(META)}}
        if next_token:
            scan["ExclusiveStartKey"] = {"pk": _s(_fk(next_token)), "sk": _s(META)}
        for page in self.geofences.pages("scan", page_limit=lambda got: max(limit - got, 25), **scan):
            for item in page.items:
                if len(records) == limit:
                    break
                records.append(_record(item))
            if len(records) == limit:
                return records, records[-1].fence_id
        return records, None

    def get_versions(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], FenceVersion]:
        req = [{"pk": _s(_fk(f)), "sk": _s(_gk(v))} for f, v in sorted(set(keys))]
        return {(fv.fence_id, fv.version): fv for fv in map(_version, self.geofences.batch_get(req))}

    def _query_cell(self, cell: int) -> dict[str, IndexEntry]:
        items = self.cells.items("query", KeyConditionExpression="cell = :c", ExpressionAttributeValues={":c": _s(cell_str(cell))})
        return {it["fid"]["S"]: IndexEntry(int(it["v"]["N"]), it["i"]["BOOL"]) for it in items}

    def lookup_cells(self, cells: Iterable[int]) -> dict[int, dict[str, IndexEntry]]:
        """One ``Query`` per distinct cell, all in flight at once: one
        sequential round trip."""
        futures: list[tuple[int, Future[dict[str, IndexEntry]]]] = [
            (c, self.cells.pool.submit(self._query_cell, c)) for c in sorted(set(cells))
        ]
        return {c: row for c, f in futures if (row := f.result())}
