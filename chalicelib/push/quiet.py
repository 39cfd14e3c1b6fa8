"""Quiet hours in the device's time zone. Pure: no I/O beyond the tz database.

A quiet window is ``[start, end)`` in local wall-clock minutes; it may cross
midnight (``21:00``-``08:00``). A push decided inside the window is held until
the window's end (or dropped, by campaign choice). All zone arithmetic goes
through :mod:`zoneinfo`, so DST nights are handled:

- an end time that does not exist that night (spring-forward gap) releases at
  the first instant after the gap;
- an end time that happens twice (fall-back) releases at its first occurrence,
  or at the second one when the first is already past.
"""

from __future__ import annotations

import functools
import re
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from chalicelib.errors import InvalidInput

UTC_ZONE = ZoneInfo("UTC")

_HHMM_RE = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_TZ_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")
#: Names the tz database ships that are not real places (or depend on the host).
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


def parse_hhmm(value, field: str) -> int:
    """``"HH:MM"`` (00:00-23:59, two digits each) → minutes after midnight.

    >>> parse_hhmm("21:30", "quiet_hours.start")
    1290
    """
    if not isinstance(value, str) or not _HHMM_RE.fullmatch(value):
        raise InvalidInput('must be a time "HH:MM" between 00:00 and 23:59', field)
    return int(value[:2]) * 60 + int(value[3:])


def hhmm(minutes: int) -> str:
    """Minutes after midnight → ``"HH:MM"``.

    >>> hhmm(1290)
    '21:30'
    """
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def zone_for(name) -> ZoneInfo | None:
    """An IANA zone by name, or None when ``name`` is not a valid zone name
    (any type is accepted: device attributes are not trusted).

    >>> zone_for("America/Chicago").key, zone_for("Mars/Olympus_Mons"), zone_for(["UTC"])
    ('America/Chicago', None, None)
    """
    if not isinstance(name, str):
        return None
    return _zone_for(name)


@lru_cache(maxsize=2048)
def _zone_for(name: str) -> ZoneInfo | None:
    """Cached: device time zones repeat, and this is on the render path."""
    if not 0 < len(name) <= 64 or name in _NOT_ZONES or not _TZ_NAME_RE.fullmatch(name):
        return None
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return None


def resolve_zone(tz_name: str | None, fallback_tz: str | None = "UTC") -> ZoneInfo:
    """The device's zone, else the fallback zone, else UTC (invalid names fall through)."""
    return zone_for(tz_name) or zone_for(fallback_tz) or UTC_ZONE


def validate_timezone(value, field: str) -> str:
    """An IANA time zone name (``America/New_York``), else InvalidInput."""
    if zone_for(value) is None:
        raise InvalidInput("must be an IANA time zone name such as 'America/New_York'", field)
    return value


def in_window(minute_of_day: float, start_min: int, end_min: int) -> bool:
    """Whether a local minute of the day is inside ``[start, end)``; windows may cross midnight.

    >>> in_window(22 * 60, 21 * 60, 8 * 60), in_window(8 * 60, 21 * 60, 8 * 60)
    (True, False)
    """
    if start_min == end_min:
        return False
    if start_min < end_min:
        return start_min <= minute_of_day < end_min
    return minute_of_day >= start_min or minute_of_day < end_min


def wall_to_epoch(day: date, minutes: int, zone: ZoneInfo, *, after: float | None = None) -> float:
    """Epoch seconds of local wall time ``day`` + ``minutes`` in ``zone``.

    A wall time in a spring-forward gap maps to the first instant after the
    gap; an ambiguous one (fall-back) to its first occurrence, or to the
    second when the first is not after ``after``.
    """
    naive = datetime(day.year, day.month, day.day) + timedelta(minutes=minutes)
    first = naive.replace(tzinfo=zone, fold=0)
    second = naive.replace(tzinfo=zone, fold=1)
    t_first, t_second = first.timestamp(), second.timestamp()
    if t_first == t_second:
        return t_first
    if _exists(naive, t_first, zone):
        # Ambiguous (fall-back): both instants show this wall time.
        if after is not None and t_first <= after < t_second:
            return t_second
        return t_first
    # Gap (spring-forward): fold=1 uses the new offset and gives the earlier instant.
    return _transition_between(min(t_first, t_second), max(t_first, t_second), zone)


def _exists(naive: datetime, ts: float, zone: ZoneInfo) -> bool:
    return datetime.fromtimestamp(ts, zone).replace(tzinfo=None, fold=0) == naive


def _transition_between(lo: float, hi: float, zone: ZoneInfo) -> float:
    """The first instant in ``(lo, hi]`` whose UTC offset differs from ``lo``'s
    (a zone transition; transitions fall on whole seconds)."""
    before = datetime.fromtimestamp(lo, timezone.utc).astimezone(zone).utcoffset()
    lo_s, hi_s = int(lo), int(hi)
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if datetime.fromtimestamp(mid, timezone.utc).astimezone(zone).utcoffset() == before:
            lo_s = mid
        else:
            hi_s = mid
    return float(hi_s)


def quiet_release_at(
    start_min: int, end_min: int, tz_name: str | None, now: float, fallback_tz: str = "UTC"
) -> float | None:
    """When a push decided at ``now`` may go out, or None when not in quiet hours.

    Local time is taken in ``tz_name`` (the device's zone), else
    ``fallback_tz``, else UTC when neither is a valid zone. Returns None when
    that local time is outside ``[start, end)``; otherwise the epoch seconds of
    the window's end in that zone (see the module docstring for DST nights).

    >>> # 22:30 in Chicago (CST, UTC-6) on 2026-01-15 → 08:00 the next morning
    >>> quiet_release_at(21 * 60, 8 * 60, "America/Chicago", 1768537800.0)
    1768572000.0
    """
    if not isinstance(tz_name, str):
        tz_name = None  # junk in a device attribute: the fallback zone
    if not isinstance(fallback_tz, str):
        fallback_tz = "UTC"
    release = _release_in_minute(start_min, end_min, tz_name, fallback_tz, int(now // 60))
    if release is None:
        return None
    return release if release > now else None


@functools.lru_cache(maxsize=4096)
def _release_in_minute(start_min: int, end_min: int, tz_name: str | None, fallback_tz: str, utc_minute: int) -> float | None:
    """The answer for a whole UTC minute: zones are whole-minute offsets and
    windows whole minutes, so every instant of the minute gets the same one
    (memoised: a storm fan-out asks the same question millions of times)."""
    now = utc_minute * 60.0
    zone = resolve_zone(tz_name, fallback_tz)
    local = datetime.fromtimestamp(now, zone)
    minute = local.hour * 60 + local.minute
    if not in_window(minute, start_min, end_min):
        return None
    day = local.date()
    if start_min > end_min and minute >= start_min:
        day += timedelta(days=1)  # the window crosses midnight: it ends tomorrow
    return wall_to_epoch(day, end_min, zone, after=now)
