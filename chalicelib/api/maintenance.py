"""Scheduled housekeeping: the location TTL sweep (see :mod:`chalicelib.retention`)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from chalice import Blueprint, Rate

from chalicelib import retention
from chalicelib.container import get_deps

bp = Blueprint(__name__)


def _hour(event: Any) -> int:
    """The scheduled run's UTC hour (from the event's ``time``; now otherwise)."""
    raw = getattr(event, "time", None)
    try:
        return datetime.strptime(str(raw), "%Y-%m-%dT%H:%M:%SZ").hour
    except ValueError:
        return datetime.now(timezone.utc).hour


@bp.schedule(Rate(1, unit=Rate.HOURS), name="sweep_locations")
def sweep_locations(event: Any) -> Any:
    """Hourly, one of 24 scan segments of the devices table: every expired
    location is erased within a day, and no run scans the whole table."""
    segment = retention.sweep_segment(_hour(event))
    return retention.sweep_expired_locations(get_deps(), segment=segment, segments=retention.SWEEP_SEGMENTS)
