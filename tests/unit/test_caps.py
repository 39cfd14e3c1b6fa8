"""The frequency-cap decision (one pure function, both stores apply it)."""

from __future__ import annotations

import pytest

from chalicelib.push.caps import DAY_S, cap_window, decide_cap

T = 1_790_000_000.0


def test_per_day_counts_the_last_24_hours():
    assert decide_cap([], T, 2, None) == (True, [T], DAY_S)
    assert decide_cap([T - 10, T - 5], T, 2, None)[0] is False
    assert decide_cap([T - DAY_S, T - 5], T, 2, None) == (True, [T - 5, T], DAY_S)  # T - DAY left the window


def test_a_refusal_returns_what_is_kept_without_now():
    allowed, kept, _ = decide_cap([T - 2 * DAY_S, T - 60], T, 1, None)
    assert (allowed, kept) == (False, [T - 60])


def test_min_gap_sees_the_newest_send():
    assert decide_cap([T - 30], T, None, 60.0)[0] is False
    assert decide_cap([T - 60], T, None, 60.0) == (True, [T - 60, T], DAY_S)
    assert decide_cap([T - 60], T, 1, 60.0)[0] is False  # per_day decides first


def test_a_gap_longer_than_a_day_widens_the_window():
    assert cap_window(2 * DAY_S) == 2 * DAY_S and cap_window(None) == cap_window(60.0) == DAY_S
    allowed, kept, window = decide_cap([T - 1.5 * DAY_S], T, None, 2 * DAY_S)
    assert (allowed, kept, window) == (False, [T - 1.5 * DAY_S], 2 * DAY_S)


@pytest.mark.parametrize("per_day, min_gap", [(None, None), (3, None), (None, 10.0), (2, 5.0)])
def test_the_stored_list_only_holds_sends_inside_the_window(per_day, min_gap):
    sends = [T - 3 * DAY_S, T - DAY_S - 1, T - 100]
    allowed, kept, window = decide_cap(sends, T, per_day, min_gap)
    assert all(t > T - window for t in kept)
    assert kept[-1] == T if allowed else T not in kept
