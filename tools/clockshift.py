"""``HEXCAST_TEST_CLOCK_SHIFT_DAYS``: move the wall clock ahead in a process.

The test suite calls :func:`shift_the_wall_clock` before it imports any of
the project (``tests/conftest.py``), and so do the local stack's function
processes (:mod:`tools.pump`), so that a run with the clock moved ahead is
moved ahead everywhere. Imports nothing of the project."""

from __future__ import annotations

import os
import time

ENV = "HEXCAST_TEST_CLOCK_SHIFT_DAYS"


def shift_the_wall_clock() -> None:
    """``HEXCAST_TEST_CLOCK_SHIFT_DAYS=60 make test``: the wall clock
    (``time.time``, which every adapter's default clock and the system clock
    of the composition root read) that many days ahead, to show that no test
    depends on today's date. Monotonic clocks are left alone. Once per process."""
    days = float(os.environ.get(ENV, "0") or 0)
    if not days or getattr(time, "_hexcast_shifted", False):
        return
    shift = days * 86400.0
    real_time, real_time_ns = time.time, time.time_ns
    time.time = lambda: real_time() + shift
    time.time_ns = lambda: real_time_ns() + int(shift * 1e9)
    time._hexcast_shifted = True  # type: ignore[attr-defined]
