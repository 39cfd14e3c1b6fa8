"""DynamoDB table definitions, shared by the local stack, tests and deployment.

``TABLES`` maps a logical table name to the ``CreateTable`` arguments that
follow the table name. Keys:

* ``geofences`` — ``pk``/``sk``. ``F#<id>``/``META`` holds a fence's
  definition and current version; ``F#<id>``/``G#<version>`` its normalised
  geometry and H3 cover; ``T#<tag>``/``<id>`` one row per tag for listing.
* ``cells`` — ``cell`` (an H3 cell id, hex) / ``fid``: one small row per
  (index cell, fence) with the fence version ``v`` and ``i``, true when the
  cell is wholly inside the fence (no exact test needed). A fence's rows are
  its own: written and deleted with ``BatchWriteItem``, never contended.
* ``devices`` — ``device_id``: profile, consent, SNS endpoint ARN, last
  accepted location and the fences the device is inside, with a state
  version for conditional writes. While a device has a location state it
  also carries the region keys ``rc`` (``<resolution-3 cell hex>#<shard>``)
  and ``rf`` (its resolution-9 cell, 15 hex digits) of the sparse
  ``by_region`` index (projection: :data:`REGION_ATTRS`), which answers
  "who is inside this area" with range queries
  (:mod:`chalicelib.weather.region`).
* ``campaigns`` — ``campaign_id``: ``version`` (N, +1 per put),
  ``definition`` (S, compact JSON), ``created_at``/``updated_at`` (S).
* ``deliveries`` — ``pk`` (S), TTL on ``expires_at`` (N). Two kinds of item:

  - a delivery record: ``pk`` = the delivery id, one attribute per set
    :class:`~chalicelib.push.model.Delivery` field (same names), and the
    GSI keys ``ck`` = :func:`delivery_sort_key` (``<created_at
    %017.6f>#<delivery id>``: lexicographic order is numeric order, newest
    first with ``ScanIndexForward=False``), ``campaign_id``, ``device_id``
    and ``day`` = :func:`day_key` (``D#YYYY-MM-DD``, UTC date of creation).
    Indexes (projection ALL): ``by_campaign`` (campaign_id, ck),
    ``by_device`` (device_id, ck), ``by_day`` (day, ck) and the sparse
    ``held`` (hk, release_key): ``hk`` = ``HELD`` and ``release_key`` =
    :func:`release_key` exist only while the status is ``held``. The
    sparse, keys-only ``open`` index (ok, ot) finds records left
    ``pending``/``publishing`` by an invocation that died (the sweep,
    :func:`chalicelib.push.pipeline.sweep_open`): ``ok`` =
    :func:`open_hash` (``OPEN#<shard>``, 16 shards so a storm's claims do
    not all write one index partition) and ``ot`` = :func:`open_key` of
    the record's ``updated_at`` exist only while the status is open. The
    keys are written by the claim, re-keyed by an update that sets
    ``updated_at`` on an open record (a release, a take-over) and removed
    by the update to any other status; ``pending`` → ``publishing`` keeps
    them (no ``updated_at``), so a sent push costs two small index writes.
  - a frequency-cap counter: ``pk`` = ``cap#<campaign id>#<device id>``,
    ``sends`` (L of N: send times within the window), ``cv`` (N, version
    for the conditional write), ``expires_at``. No index keys.
* ``alerts`` — ``pk`` (S), TTL on ``expires_at`` (N): alert records
  (``A#``), lineages (``L#``), the feed poller's state (``FEED#``) and
  weather conditions per H3 cell (``W#``); see
  :mod:`chalicelib.store.weather`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import zlib
from dataclasses import MISSING, fields
from datetime import datetime, timezone
from typing import Any

from chalicelib.errors import InvalidInput
from chalicelib.push.lifecycle import open_since  # noqa: F401  (re-exported until callers import it from there)
from chalicelib.push.model import HELD, PENDING, PUBLISHING, Delivery

#: Device attributes the ``by_region`` index projects (besides the keys).
REGION_ATTRS = ("st", "consent", "push_enabled", "sv")

TABLES: dict[str, dict[str, Any]] = {
    "geofences": {
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        "BillingMode": "PAY_PER_REQUEST",
    },
    "cells": {
        "KeySchema": [
            {"AttributeName": "cell", "KeyType": "HASH"},
            {"AttributeName": "fid", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": "cell", "AttributeType": "S"},
            {"AttributeName": "fid", "AttributeType": "S"},
        ],
        "BillingMode": "PAY_PER_REQUEST",
    },
    "devices": {
        "KeySchema": [{"AttributeName": "device_id", "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": a, "AttributeType": "S"} for a in ("device_id", "rc", "rf")
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "by_region",
                "KeySchema": [
                    {"AttributeName": "rc", "KeyType": "HASH"},
                    {"AttributeName": "rf", "KeyType": "RANGE"},
                ],
                # What target planning reads, nothing more: the location
                # state, consent, push flag and state version.
                "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(REGION_ATTRS)},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    },
    "campaigns": {
        "KeySchema": [{"AttributeName": "campaign_id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "campaign_id", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
    },
    "deliveries": {
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": a, "AttributeType": "S"}
            for a in ("pk", "ck", "campaign_id", "device_id", "day", "hk", "release_key", "ok", "ot")
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": name,
                "KeySchema": [
                    {"AttributeName": hash_key, "KeyType": "HASH"},
                    {"AttributeName": range_key, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for name, hash_key, range_key in (
                ("by_campaign", "campaign_id", "ck"),
                ("by_device", "device_id", "ck"),
                ("by_day", "day", "ck"),
                ("held", "hk", "release_key"),
            )
        ] + [
            {
                # Records left open by a dead invocation: the sweep reads
                # the keys, then the records themselves.
                "IndexName": "open",
                "KeySchema": [
                    {"AttributeName": "ok", "KeyType": "HASH"},
                    {"AttributeName": "ot", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    },
    "alerts": {
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
    },
}

#: Tables with a TTL attribute (logical name → attribute).
TTL_ATTRIBUTES = {"deliveries": "expires_at", "alerts": "expires_at"}


def table_names(settings) -> dict[str, str]:
    """Logical name → physical table name for the given settings."""
    return {
        "geofences": settings.geofences_table,
        "cells": settings.cells_table,
        "devices": settings.devices_table,
        "campaigns": settings.campaigns_table,
        "deliveries": settings.deliveries_table,
        "alerts": settings.alerts_table,
    }


def create_tables(dynamodb_client, settings) -> None:
    """Create every table that does not exist yet and enable TTL where the
    schema wants it (idempotent)."""
    existing = set()
    for page in dynamodb_client.get_paginator("list_tables").paginate():
        existing.update(page.get("TableNames", []))
    created = []
    for logical, physical in table_names(settings).items():
        if physical in existing:
            continue
        dynamodb_client.create_table(TableName=physical, **TABLES[logical])
        created.append(physical)
    names = table_names(settings)
    for logical, attribute in TTL_ATTRIBUTES.items():
        physical = names[logical]
        if physical in created:
            dynamodb_client.get_waiter("table_exists").wait(TableName=physical, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        _enable_ttl(dynamodb_client, physical, attribute)


def _enable_ttl(dynamodb_client, table: str, attribute: str) -> None:
    from botocore.exceptions import ClientError

    desc = dynamodb_client.describe_time_to_live(TableName=table).get("TimeToLiveDescription", {})
    if desc.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") and desc.get("AttributeName") == attribute:
        return
    try:
        dynamodb_client.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute}
        )
    except ClientError as exc:
        # Another process enabled it meanwhile ("TimeToLive is already enabled").
        if "already enabled" not in str(exc):
            raise


# ------------------------------------------------ deliveries: keys, tokens
HELD_HASH = "HELD"
CAP_PREFIX = "cap#"


def fixed(ts: float) -> str:
    """Epoch seconds as a fixed-width string: lexicographic = numeric order.

    >>> fixed(1.5), fixed(1790000000.25)
    ('0000000001.500000', '1790000000.250000')
    """
    return f"{ts:017.6f}"


def delivery_sort_key(created_at: float, delivery_id: str) -> str:
    """``ck``: orders records by creation time, then id."""
    return f"{fixed(created_at)}#{delivery_id}"


def release_key(release_at: float, delivery_id: str) -> str:
    """The ``held`` index's sort key."""
    return f"{fixed(release_at)}#{delivery_id}"


#: Statuses a record holds only while an invocation works on it.
OPEN_STATUSES = (PENDING, PUBLISHING)
OPEN_SHARDS = 16


def open_hash(delivery_id: str) -> str:
    """``ok``: the ``open`` index partition of a record (by its id).

    >>> open_hash("dl_abc") == open_hash("dl_abc") and open_hash("dl_abc").startswith("OPEN#")
    True
    """
    return f"OPEN#{zlib.crc32(delivery_id.encode()) % OPEN_SHARDS:02d}"


def open_key(since: float, delivery_id: str) -> str:
    """``ot``: the ``open`` index's sort key (open since, then id)."""
    return f"{fixed(since)}#{delivery_id}"


def day_of(ts: float) -> str:
    """UTC date of an epoch time.

    >>> day_of(1470578400.0)
    '2016-08-07'
    """
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d")


def day_key(created_at: float) -> str:
    """``day``: the ``by_day`` partition of a record created at
    ``created_at`` (the date of its ``ck``, so the two always agree)."""
    return f"D#{day_of(float(fixed(created_at)))}"


def cap_key(campaign_id: str, device_id: str) -> str:
    return f"{CAP_PREFIX}{campaign_id}#{device_id}"


#: ``list_deliveries`` index codes: by_campaign, by_device, by_day.
LIST_INDEXES = {"c": "by_campaign", "v": "by_device", "d": "by_day"}
_CK = re.compile(r"\d{10,}\.\d{6}#.{1,1024}", re.S)
_TOKEN_MAC = b"hexcast deliveries page token v1"


def list_index(campaign_id: str | None, device_id: str | None) -> str:
    """The index code ``list_deliveries`` reads for these filters."""
    return "c" if campaign_id is not None else "v" if device_id is not None else "d"


def encode_page_token(index: str, last_ck: str) -> str:
    """Opaque, URL-safe: the index and the sort key of the last record
    returned (the next page starts strictly after it; for ``by_day`` the
    partition is the record's own day). A checksum catches edits."""
    body = json.dumps({"i": index, "k": last_ck}, separators=(",", ":")).encode()
    mac = hashlib.blake2b(body, key=_TOKEN_MAC, digest_size=6).digest()
    return base64.urlsafe_b64encode(mac + body).decode().rstrip("=")


def decode_page_token(token: str, index: str) -> str:
    """→ the last sort key; :class:`InvalidInput` for anything else than a
    token this code made for the same kind of listing."""
    bad = InvalidInput("next_token is not valid", "next_token")
    if not isinstance(token, str) or not 0 < len(token) <= 4096:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        mac, body = raw[:6], raw[6:]
        if hashlib.blake2b(body, key=_TOKEN_MAC, digest_size=6).digest() != mac:
            raise bad
        data = json.loads(body)
    except (ValueError, TypeError):
        raise bad from None
    if not isinstance(data, dict) or data.get("i") != index or not isinstance(data.get("k"), str):
        raise bad
    if not _CK.fullmatch(data["k"]) or not _listable_ck(data["k"]):
        raise bad
    return data["k"]


def _listable_ck(ck: str) -> bool:
    """The checksum's key is in this source, so it proves nothing: every
    value a token carries is checked as if it came from outside. A sort key
    is the fixed-width creation time :func:`fixed` writes (a time a calendar
    date exists for) and a delivery id."""
    head = ck.split("#", 1)[0]
    if len(head) != len(fixed(0)):
        return False
    try:
        day_of(float(head))
    except (ValueError, OverflowError, OSError):
        return False
    return True


def ck_day(ck: str) -> str:
    """The ``by_day`` partition (``YYYY-MM-DD``) a sort key belongs to."""
    return day_of(float(ck.split("#", 1)[0]))


# ------------------------------------------------ deliveries: field rules
def _delivery_fields() -> tuple[dict[str, str], frozenset[str]]:
    kinds, required = {}, set()
    for f in fields(Delivery):
        ann = str(f.type)
        kinds[f.name] = "int" if ann == "int" else "num" if "float" in ann else "str"
        if f.default is MISSING and f.default_factory is MISSING:
            required.add(f.name)
    return kinds, frozenset(required)


#: Delivery field → ``str`` | ``num`` (float) | ``int``.
DELIVERY_KINDS, DELIVERY_REQUIRED = _delivery_fields()
#: Fields that place a record in the indexes: set once, by the claim.
DELIVERY_IMMUTABLE = frozenset({"delivery_id", "campaign_id", "device_id", "created_at"})


def check_new_delivery(delivery) -> None:
    """A record ``claim_delivery`` can store (ValueError otherwise)."""
    if delivery.status == HELD and delivery.release_at is None:
        raise ValueError("a held delivery needs release_at")


def check_delivery_changes(changes: dict[str, Any], absent: str | None = None, expect_status: str | None = None) -> None:
    """The ``update_delivery`` arguments both stores accept (ValueError
    otherwise): known, mutable fields; required fields never removed; a
    record entering ``pending``/``publishing`` from another status says
    since when (``updated_at``: the ``open`` index key)."""
    if changes.get("status") in OPEN_STATUSES and expect_status not in OPEN_STATUSES and changes.get("updated_at") is None:
        raise ValueError("a record entering pending/publishing needs updated_at")
    if not changes:
        raise ValueError("update_delivery needs at least one change")
    for name, value in changes.items():
        if name not in DELIVERY_KINDS:
            raise ValueError(f"unknown Delivery field: {name!r}")
        if name in DELIVERY_IMMUTABLE:
            raise ValueError(f"Delivery.{name} cannot change")
        if value is None and name in DELIVERY_REQUIRED:
            raise ValueError(f"Delivery.{name} cannot be removed")
    if changes.get("status") == HELD and "release_at" in changes and changes["release_at"] is None:
        raise ValueError("a held delivery needs release_at")
    if absent is not None and absent not in DELIVERY_KINDS:
        raise ValueError(f"unknown Delivery field: {absent!r}")
