"""The frequency-cap decision, one pure function both stores apply.

A (campaign, device) pair keeps the times of its recent sends. A new send
at ``now`` is allowed when fewer than ``per_day`` sends fall in the last 24
hours and the newest is at least ``min_gap_s`` old; the kept list then
gains ``now``. Only sends inside the window (a day, or the gap when that is
longer) are kept, so the stored list stays small; a refused send changes
nothing.
"""

from __future__ import annotations

DAY_S = 86400.0


def cap_window(min_gap_s: float | None) -> float:
    """How far back sends matter: a day, or the gap when that is longer."""
    return max(DAY_S, min_gap_s or 0.0)


def decide_cap(
    sends: list[float], now: float, per_day: int | None, min_gap_s: float | None
) -> tuple[bool, list[float], float]:
    """→ (allowed, the sends to store when allowed, the window).

    >>> decide_cap([100.0], 150.0, None, 60.0)
    (False, [100.0], 86400.0)
    >>> decide_cap([100.0], 200.0, 2, 60.0)
    (True, [100.0, 200.0], 86400.0)
    >>> decide_cap([0.0, 10.0], 86400.0, 2, None)  # 0.0 left the window
    (True, [10.0, 86400.0], 86400.0)
    """
    window = cap_window(min_gap_s)
    kept = [t for t in sends if t > now - window]
    if per_day is not None and sum(1 for t in kept if t > now - DAY_S) >= per_day:
        return False, kept, window
    if min_gap_s is not None and kept and now - max(kept) < min_gap_s:
        return False, kept, window
    return True, kept + [now], window
