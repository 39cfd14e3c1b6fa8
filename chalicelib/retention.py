"""How long a device's last location is kept (``Settings.location_ttl_days``,
30 by default) and the sweep that erases it afterwards.

DynamoDB's TTL deletes whole items, and the device item also holds the
profile, consent and push endpoint, which must outlive the location. So:

* a location state whose write time (``wa``, :attr:`Device.written_at`) is
  more than the TTL ago counts as absent wherever it is read
  (:func:`forget_expired`: a ping starts from no state, ``GET`` shows no
  last location);
* target planning and audience estimates never use a location older than
  the TTL (:func:`max_location_age_s` caps the age they accept; their index
  holds the location's own timestamp, at most
  :data:`LOCATION_CLOCK_SKEW_S` ahead of its write);
* a scheduled sweep (:func:`sweep_expired_locations`, hourly, one of 24 scan
  segments per run: the whole table once a day) removes the expired state
  and its region-index keys (``st``, ``wa``, ``rc``, ``rf``) with a
  conditional update, so a location written meanwhile is never touched. An
  expired location is therefore unreadable at once and physically gone
  within a day.
"""

from __future__ import annotations

import logging
from typing import Iterable

log = logging.getLogger("hexcast.retention")

DAY_S = 86400.0
#: A ping's timestamp may be this far ahead of the server (services'
#: ``MAX_FUTURE_SKEW_S``): a location's timestamp is at most this much
#: later than its write time.
LOCATION_CLOCK_SKEW_S = 300.0
#: Scan segments of the devices table; the hourly sweep takes one per run.
SWEEP_SEGMENTS = 24
#: Locations removed per run at most (the rest wait for the next day's run
#: of that segment; reads already treat them as absent).
SWEEP_LIMIT = 20_000


def location_ttl_s(settings) -> float:
    """The TTL in seconds (at least one hour, whatever the configuration says)."""
    return max(float(settings.location_ttl_days) * DAY_S, 3600.0)


def location_expired(written_at: float, now: float, ttl_s: float) -> bool:
    """Whether a location state written at ``written_at`` has expired.

    >>> location_expired(1000.0, 1000.0 + 30 * DAY_S, 30 * DAY_S), location_expired(1000.0, 2000.0, 30 * DAY_S)
    (True, False)
    """
    return written_at + ttl_s <= now


def forget_expired(devices: Iterable, now: float, ttl_s: float) -> None:
    """Drop the expired location states of these devices (in place: the state
    version stays, so the next write is still conditional on it)."""
    for d in devices:
        if d is not None and d.state is not None and location_expired(d.written_at, now, ttl_s):
            d.state = None


def max_location_age_s(requested_s: float | None, ttl_s: float) -> float:
    """The location age a target plan may accept: what was asked (any age
    when None), never more than the TTL (less the clock skew a ping may have).

    >>> max_location_age_s(None, 30 * DAY_S) == 30 * DAY_S - LOCATION_CLOCK_SKEW_S, max_location_age_s(3600.0, 30 * DAY_S)
    (True, 3600.0)
    """
    cap = max(ttl_s - LOCATION_CLOCK_SKEW_S, 0.0)
    return cap if requested_s is None else min(float(requested_s), cap)


def sweep_segment(hour: int, segments: int = SWEEP_SEGMENTS) -> int:
    """The segment an hourly run sweeps: every segment once a day."""
    return int(hour) % segments


def sweep_expired_locations(deps, *, segment: int = 0, segments: int = 1, limit: int = SWEEP_LIMIT) -> dict:
    """Remove the location states written more than the TTL ago, in one scan
    segment of the devices table (``segments=1``: all of it), at most
    ``limit`` of them. → ``{"removed", "complete", "segment", "segments"}``."""
    ttl = location_ttl_s(deps.settings)
    before = deps.clock() - ttl
    removed, complete = deps.devices.expire_locations(before, segment=segment, segments=segments, limit=limit)
    out = {"removed": removed, "complete": complete, "segment": segment, "segments": segments}
    if not complete:
        log.warning("location sweep stopped at its limit", extra=out)
    else:
        log.info("location sweep", extra=out)
    return out
