"""Timestamps: RFC 3339 or epoch seconds in, RFC 3339 (UTC, 'Z') out."""

from __future__ import annotations

import math
from datetime import datetime, timezone


def parse_timestamp(value, *, field: str):
    """RFC 3339 string or epoch seconds → epoch seconds (float).

    >>> parse_timestamp("2016-08-07T14:00:00Z", field="t")
    1470578400.0
    >>> parse_timestamp(1470578400, field="t")
    1470578400.0
    """
    from chalicelib.errors import InvalidInput

    if isinstance(value, bool):
        raise InvalidInput("timestamp must be RFC 3339 or epoch seconds", field)
    if isinstance(value, (int, float)):
        if (isinstance(value, float) and not math.isfinite(value)) or not 0 <= value < 32503680000:
            raise InvalidInput("timestamp must be epoch seconds between 1970 and 3000", field)
        return float(value)
    if isinstance(value, str) and 10 <= len(value) <= 40:
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            dt = None
        if dt is not None and "T" in value.upper() and dt.tzinfo is not None:
            ts = dt.timestamp()
            if not 0 <= ts < 32503680000:  # as for epoch seconds: "0001-01-01T00:00:00+01:00" is year 0 in UTC
                raise InvalidInput("timestamp must be between 1970 and 3000", field)
            return ts
    raise InvalidInput("timestamp must be RFC 3339 with a time zone (e.g. 2026-01-31T08:00:00Z) or epoch seconds", field)


def iso(ts: float) -> str:
    """Epoch seconds → RFC 3339 UTC.

    >>> iso(1470578400.5)
    '2016-08-07T14:00:00.500Z'
    """
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    if dt.year < 1000:  # the C library's %Y does not pad the year: keep its text
        if dt.microsecond:
            return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    text = dt.isoformat(timespec="milliseconds")  # "2016-08-07T14:00:00.500+00:00"; cheaper than strftime
    return text[:-6] + "Z" if dt.microsecond else text[:-10] + "Z"
