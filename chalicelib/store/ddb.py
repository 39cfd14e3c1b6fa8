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


def n(v) -> dict:
    """An integer (or Decimal) as a DynamoDB number, as ``str`` writes it."""
    return {"N": str(v)}
