"""SNS endpoint claims in the ``devices`` table: which device record holds
an endpoint (see :class:`chalicelib.ports.EndpointClaim`).

A claim is an item of its own, keyed ``claim#<sha256 of the endpoint ARN>``
(``#`` is never in a device id, so it cannot meet a device; it has no
location state, so the region index and the location sweep never see it).
It is written in the same ``TransactWriteItems`` as the profile that takes
the endpoint, and removed in the same one as the device that gives it up:
a claim names a device exactly while that device's ``endpoint_arn`` is the
endpoint.
"""

from __future__ import annotations

import hashlib
from typing import Any

from chalicelib.ports import Device, EndpointClaim, EndpointHandover
from chalicelib.store.ddb import n as _n
from chalicelib.store.ddb import s as _s
from chalicelib.store.table import Item

CLAIM_PREFIX = "claim#"


def claim_key(endpoint_arn: str) -> Item:
    """The claim item's key (the ARN hashed: it identifies a person's phone).

    >>> claim_key("arn:x")["device_id"]["S"][:14]
    'claim#37a06272'
    """
    return {"device_id": _s(CLAIM_PREFIX + hashlib.sha256(endpoint_arn.encode()).hexdigest())}


def claim_from_item(item: Item) -> EndpointClaim:
    return EndpointClaim(item["claim_arn"]["S"], item["claim_owner"]["S"], int(item["cv"]["N"]))


def _unchanged(seen: EndpointClaim) -> dict[str, Any]:
    return {
        "ConditionExpression": "claim_owner = :o AND cv = :v",
        "ExpressionAttributeValues": {":o": _s(seen.owner), ":v": _n(seen.version)},
    }


def handover_writes(table: str, device: Device, handover: EndpointHandover) -> list[dict[str, Any]]:
    """The transaction's writes besides the profile's own update: the claim
    on ``device.endpoint_arn`` taken (conditional on the claim read), its
    previous owner's ``endpoint_arn`` removed (conditional on it still being
    the endpoint), and the device's claim on its previous endpoint released."""
    writes: list[dict[str, Any]] = []
    arn, seen = device.endpoint_arn, handover.seen
    if arn is not None and seen is not None and seen.owner == device.device_id:
        # Held already: only checked (not rewritten), so concurrent updates
        # of one device do not conflict over their own claim.
        writes.append({"ConditionCheck": {
            "TableName": table, "Key": claim_key(arn), "ConditionExpression": "claim_owner = :o",
            "ExpressionAttributeValues": {":o": _s(device.device_id)},
        }})
    elif arn is not None:
        version = seen.version + 1 if seen is not None else 1
        item = {**claim_key(arn), "claim_arn": _s(arn), "claim_owner": _s(device.device_id), "cv": _n(version)}
        put: dict[str, Any] = {"TableName": table, "Item": item}
        if seen is None:
            put["ConditionExpression"] = "attribute_not_exists(device_id)"
        else:
            put.update(_unchanged(seen))
        writes.append({"Put": put})
        if handover.displace and seen is not None and seen.owner != device.device_id:
            writes.append({"Update": {
                "TableName": table,
                "Key": {"device_id": _s(seen.owner)},
                "UpdateExpression": "SET push_enabled = :f REMOVE endpoint_arn",
                "ConditionExpression": "endpoint_arn = :arn",
                "ExpressionAttributeValues": {":f": {"BOOL": False}, ":arn": _s(arn)},
            }})
    if handover.release is not None and handover.release.endpoint_arn != arn:
        writes.append(release_write(table, handover.release))
    return writes


def release_write(table: str, claim: EndpointClaim) -> dict[str, Any]:
    """Delete the claim while it is unchanged."""
    return {"Delete": {"TableName": table, "Key": claim_key(claim.endpoint_arn), **_unchanged(claim)}}
