"""Quiet hours in the device's zone, across zones with odd offsets and DST nights.

Expected instants are written with fixed UTC offsets (not zoneinfo), so the
tests check the zone arithmetic rather than repeat it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.errors import InvalidInput
from chalicelib.push.campaigns import parse_campaign
from chalicelib.push.quiet import in_window, parse_hhmm, quiet_release_at, zone_for


def at(y, mo, d, h, mi, offset_hours: float) -> float:
    """Epoch seconds of a local wall time with a fixed UTC offset."""
    return datetime(y, mo, d, h, mi, tzinfo=timezone(timedelta(hours=offset_hours))).timestamp()


def hm(text: str) -> int:
    return parse_hhmm(text, "t")


NIGHT = (hm("21:00"), hm("08:00"))


@pytest.mark.parametrize(
    "zone,now,expected",
    [
        # New York in winter (EST, -5): 22:30 → 08:00 next morning
        ("America/New_York", at(2026, 1, 15, 22, 30, -5), at(2026, 1, 16, 8, 0, -5)),
        # ... and just after midnight: same night's end
        ("America/New_York", at(2026, 1, 16, 0, 10, -5), at(2026, 1, 16, 8, 0, -5)),
        # New York in summer (EDT, -4)
        ("America/New_York", at(2026, 7, 1, 21, 0, -4), at(2026, 7, 2, 8, 0, -4)),
        # Chicago (CST, -6), 07:59 is still quiet
        ("America/Chicago", at(2026, 1, 16, 7, 59, -6), at(2026, 1, 16, 8, 0, -6)),
        # Tokyo (+9, no DST)
        ("Asia/Tokyo", at(2026, 6, 30, 23, 45, 9), at(2026, 7, 1, 8, 0, 9)),
        # Kolkata (+5:30)
        ("Asia/Kolkata", at(2026, 3, 10, 23, 15, 5.5), at(2026, 3, 11, 8, 0, 5.5)),
        # Lord Howe: +11 in its summer (DST of 30 minutes), +10:30 in winter
        ("Australia/Lord_Howe", at(2026, 1, 15, 22, 0, 11), at(2026, 1, 16, 8, 0, 11)),
        ("Australia/Lord_Howe", at(2026, 6, 15, 23, 0, 10.5), at(2026, 6, 16, 8, 0, 10.5)),
    ],
)
def test_inside_the_window_releases_at_its_end(zone, now, expected):
    assert quiet_release_at(*NIGHT, zone, now) == expected


@pytest.mark.parametrize(
    "zone,now",
    [
        ("America/New_York", at(2026, 1, 15, 20, 59, -5)),
        ("America/New_York", at(2026, 1, 16, 8, 0, -5)),  # the end is not quiet
        ("America/Chicago", at(2026, 1, 15, 12, 0, -6)),
        ("Asia/Tokyo", at(2026, 7, 1, 8, 0, 9)),
        ("Asia/Kolkata", at(2026, 3, 10, 20, 59, 5.5)),
        ("Australia/Lord_Howe", at(2026, 1, 15, 20, 30, 11)),
    ],
)
def test_outside_the_window_is_none(zone, now):
    assert quiet_release_at(*NIGHT, zone, now) is None


def test_the_same_instant_is_quiet_in_one_zone_and_not_another():
    now = at(2026, 1, 16, 3, 0, 0)  # 03:00Z
    assert quiet_release_at(*NIGHT, "UTC", now) == at(2026, 1, 16, 8, 0, 0)
    assert quiet_release_at(*NIGHT, "Asia/Tokyo", now) is None  # 12:00 in Tokyo
    assert quiet_release_at(*NIGHT, "America/Chicago", now) == at(2026, 1, 16, 8, 0, -6)  # 21:00 in Chicago


def test_window_within_one_day():
    lunch = (hm("12:00"), hm("14:00"))
    assert quiet_release_at(*lunch, "Asia/Kolkata", at(2026, 3, 10, 12, 0, 5.5)) == at(2026, 3, 10, 14, 0, 5.5)
    assert quiet_release_at(*lunch, "Asia/Kolkata", at(2026, 3, 10, 14, 0, 5.5)) is None
    assert quiet_release_at(*lunch, "Asia/Kolkata", at(2026, 3, 10, 11, 59, 5.5)) is None


def test_device_zone_then_fallback_then_utc():
    now = at(2026, 1, 16, 3, 0, 0)  # 03:00Z, 21:00 in Chicago, 12:00 in Tokyo
    assert quiet_release_at(*NIGHT, None, now, fallback_tz="America/Chicago") == at(2026, 1, 16, 8, 0, -6)
    assert quiet_release_at(*NIGHT, "Bogus/Zone", now, fallback_tz="America/Chicago") == at(2026, 1, 16, 8, 0, -6)
    assert quiet_release_at(*NIGHT, "Asia/Tokyo", now, fallback_tz="America/Chicago") is None
    assert quiet_release_at(*NIGHT, "Bogus/Zone", now, fallback_tz="Also/Bogus") == at(2026, 1, 16, 8, 0, 0)
    assert quiet_release_at(*NIGHT, 42, now) == at(2026, 1, 16, 8, 0, 0)
    assert quiet_release_at(*NIGHT, ["America/Chicago"], now) == at(2026, 1, 16, 8, 0, 0)  # unhashable junk
    assert quiet_release_at(*NIGHT, "localtime", now) == at(2026, 1, 16, 8, 0, 0)  # the host's zone is not a place


# ------------------------------------------------------------------ DST nights, New York
# 2026-03-08: 02:00 EST (-5) jumps to 03:00 EDT (-4); 02:00-02:59 does not exist.
# 2026-11-01: 02:00 EDT (-4) falls back to 01:00 EST (-5); 01:00-01:59 happens twice.
NY = "America/New_York"


def test_spring_forward_end_in_the_gap_releases_when_the_gap_ends():
    window = (hm("01:00"), hm("02:30"))
    assert quiet_release_at(*window, NY, at(2026, 3, 8, 1, 30, -5)) == at(2026, 3, 8, 3, 0, -4)
    overnight = (hm("22:00"), hm("02:30"))
    assert quiet_release_at(*overnight, NY, at(2026, 3, 7, 23, 0, -5)) == at(2026, 3, 8, 3, 0, -4)


def test_spring_forward_window_containing_two_oclock():
    window = (hm("00:00"), hm("03:00"))
    # 01:30 EST: quiet; the end, 03:00 EDT, is only 30 real minutes later
    assert quiet_release_at(*window, NY, at(2026, 3, 8, 1, 30, -5)) == at(2026, 3, 8, 3, 0, -4)
    starts_in_gap = (hm("02:00"), hm("04:00"))
    assert quiet_release_at(*starts_in_gap, NY, at(2026, 3, 8, 1, 59, -5)) is None
    assert quiet_release_at(*starts_in_gap, NY, at(2026, 3, 8, 3, 0, -4)) == at(2026, 3, 8, 4, 0, -4)


def test_fall_back_window_containing_two_oclock():
    window = (hm("01:00"), hm("03:00"))
    assert quiet_release_at(*window, NY, at(2026, 11, 1, 1, 30, -4)) == at(2026, 11, 1, 3, 0, -5)  # 2.5 h later
    assert quiet_release_at(*window, NY, at(2026, 11, 1, 1, 30, -5)) == at(2026, 11, 1, 3, 0, -5)
    until_two = (hm("22:00"), hm("02:00"))
    assert quiet_release_at(*until_two, NY, at(2026, 11, 1, 1, 15, -4)) == at(2026, 11, 1, 2, 0, -5)


def test_fall_back_ambiguous_end_uses_the_first_occurrence_unless_past():
    window = (hm("00:00"), hm("01:30"))
    # 00:30 EDT → the first 01:30 (EDT)
    assert quiet_release_at(*window, NY, at(2026, 11, 1, 0, 30, -4)) == at(2026, 11, 1, 1, 30, -4)
    # 01:10 EST (the second pass) is inside [00:00, 01:30) again: the first 01:30 is past → the second
    assert quiet_release_at(*window, NY, at(2026, 11, 1, 1, 10, -5)) == at(2026, 11, 1, 1, 30, -5)
    # 01:40 EDT is outside the window
    assert quiet_release_at(*window, NY, at(2026, 11, 1, 1, 40, -4)) is None


def test_lord_howe_half_hour_dst_changes():
    lh = "Australia/Lord_Howe"
    # 2026-10-04 02:00 (+10:30) jumps to 02:30 (+11): an end at 02:15 does not exist
    window = (hm("00:00"), hm("02:15"))
    assert quiet_release_at(*window, lh, at(2026, 10, 4, 1, 0, 10.5)) == at(2026, 10, 4, 2, 30, 11)
    # 2026-04-05 02:00 (+11) falls back to 01:30 (+10:30): 01:45 happens twice
    window = (hm("00:00"), hm("01:45"))
    assert quiet_release_at(*window, lh, at(2026, 4, 5, 1, 0, 11)) == at(2026, 4, 5, 1, 45, 11)
    assert quiet_release_at(*window, lh, at(2026, 4, 5, 1, 40, 10.5)) == at(2026, 4, 5, 1, 45, 10.5)


# ------------------------------------------------------------------ properties
ZONES = ["UTC", "America/New_York", "America/Chicago", "Asia/Tokyo", "Asia/Kolkata", "Australia/Lord_Howe", "Europe/London"]


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 1439),
    st.integers(0, 1439),
    st.sampled_from(ZONES),
    st.floats(1.76e9, 1.80e9, allow_nan=False),
)
def test_release_is_after_now_within_a_day_at_the_local_end(start, end, zone, now):
    release = quiet_release_at(start, end, zone, now)
    local = datetime.fromtimestamp(now, ZoneInfo(zone))
    minute = local.hour * 60 + local.minute + local.second / 60 + local.microsecond / 6e7
    if start == end or not in_window(minute, start, end):
        assert release is None
        return
    assert release is not None and now < release <= now + 25 * 3600
    wall = datetime.fromtimestamp(release, ZoneInfo(zone))
    # the local end time, or (in a spring-forward gap) the first instant after it
    assert (wall.hour * 60 + wall.minute) == end or datetime.fromtimestamp(release - 1, ZoneInfo(zone)).utcoffset() != wall.utcoffset()


def test_parse_hhmm_and_zone_names():
    assert parse_hhmm("00:00", "f") == 0 and parse_hhmm("23:59", "f") == 1439
    for bad in ("24:00", "7:00", "07:0", "07:60", "0700", None, 700, " 07:00"):
        with pytest.raises(InvalidInput) as exc:
            parse_hhmm(bad, "quiet_hours.start")
        assert exc.value.field == "quiet_hours.start"
    assert zone_for("Australia/Lord_Howe") is not None
    for bad in ("", "Mars/Base", "../etc/passwd", "/etc/passwd", "localtime", "America", None, 5):
        assert zone_for(bad) is None


def test_campaign_quiet_hours_helper_uses_its_timezone_as_fallback():
    c = parse_campaign(
        "c1",
        {
            "name": "n",
            "trigger": {"type": "weather_alert"},
            "message": {"title": "t", "body": "b"},
            "quiet_hours": {"start": "21:00", "end": "08:00", "timezone": "Asia/Kolkata"},
        },
    )
    now = at(2026, 3, 10, 23, 15, 5.5)
    assert c.quiet_hours.release_at(None, now) == at(2026, 3, 11, 8, 0, 5.5)
    assert c.quiet_hours.release_at("Asia/Tokyo", now) == at(2026, 3, 11, 8, 0, 9)  # 02:45 in Tokyo
    assert c.quiet_hours.release_at("America/New_York", now) is None  # 12:45 in New York
