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
* ``devices`` — ``device_id``: profile, consent, last accepted location and
  the fences the device is inside, with a state version for conditional
  writes.
"""

from __future__ import annotations

from typing import Any

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
        "AttributeDefinitions": [{"AttributeName": "device_id", "AttributeType": "S"}],
        "BillingMode": "PAY_PER_REQUEST",
    },
}


def table_names(settings) -> dict[str, str]:
    """Logical name → physical table name for the given settings."""
    return {
        "geofences": settings.geofences_table,
        "cells": settings.cells_table,
        "devices": settings.devices_table,
    }


def create_tables(dynamodb_client, settings) -> None:
    """Create every table that does not exist yet (idempotent)."""
    existing = set(dynamodb_client.list_tables().get("TableNames", []))
    for logical, physical in table_names(settings).items():
        if physical in existing:
            continue
        dynamodb_client.create_table(TableName=physical, **TABLES[logical])
