"""Low-level DynamoDB attribute values and error checks shared by the
repositories (see :mod:`chalicelib.store.table`)."""

from __future__ import annotations

from decimal import Decimal

from botocore.exceptions import ClientError


def s(v: str) -> dict:
    return {"S": v}


def num(v) -> dict:
    """A number as a DynamoDB number, exactly (plain notation, no exponent)."""
    if isinstance(v, int) and not isinstance(v, bool):
        return {"N": str(v)}
    return {"N": format(Decimal(repr(float(v))), "f")}


def conditional_failed(exc: ClientError) -> bool:
    """The write's condition did not hold (a lost race, an existing item)."""
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


#: Cancellation reasons of a transaction that lost a race (re-read and retry).
_LOST = ("ConditionalCheckFailed", "TransactionConflict")


def transaction_lost(exc: ClientError) -> bool:
    """A ``TransactWriteItems`` cancelled by a condition that did not hold
    or by a conflicting transaction — not by throttling or a bad request."""
    err = exc.response.get("Error", {})
    code = err.get("Code")
    if code == "TransactionConflictException":
        return True
    if code != "TransactionCanceledException":
        return False
    reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", []) or []]
    if not reasons:  # some emulators name the reasons in the message only
        text = str(err.get("Message", ""))
        return any(r in text for r in _LOST) and "Throttl" not in text
    return any(r in _LOST for r in reasons) and not any(r and "Throttl" in r for r in reasons)


def n(v) -> dict:
    """An integer (or Decimal) as a DynamoDB number, as ``str`` writes it."""
    return {"N": str(v)}


#: DynamoDB's largest item: 400 KB, attribute names and values counted.
MAX_ITEM_BYTES = 400 * 1024


def value_bytes(value: dict) -> int:
    """The stored size of one attribute value as DynamoDB counts it (an
    upper bound for numbers): UTF-8 bytes of a string, 1 byte for a boolean
    or null, 3 bytes per list or map plus 1 per element, names included.

    >>> value_bytes({"S": "né"}), value_bytes({"BOOL": True}), value_bytes({"M": {"a": {"S": "xy"}}})
    (3, 1, 7)
    """
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode("utf-8", "surrogatepass"))
    if kind == "N":
        return len(v) // 2 + 2
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(1 + len(k.encode("utf-8", "surrogatepass")) + value_bytes(x) for k, x in v.items())
    if kind == "L":
        return 3 + sum(1 + value_bytes(x) for x in v)
    if kind in ("SS", "NS", "BS"):
        return 3 + sum(1 + value_bytes({kind[0]: x}) for x in v)
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_bytes(item: dict) -> int:
    """The stored size of an item: every attribute's UTF-8 name plus its value.

    >>> item_bytes({"id": {"S": "d1"}, "ok": {"BOOL": False}})
    7
    """
    return sum(len(k.encode("utf-8", "surrogatepass")) + value_bytes(v) for k, v in item.items())
