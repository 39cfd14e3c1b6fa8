"""Time as a dependency: every adapter and use case gets the same clock
(and the same sleep) from the composition root, so tests can freeze time
and record backoff instead of waiting."""

from __future__ import annotations

import time
from collections.abc import Callable

#: Seconds since the epoch, as :func:`time.time`.
Clock = Callable[[], float]
#: Block for the given number of seconds, as :func:`time.sleep`.
Sleep = Callable[[float], None]

system_clock: Clock = time.time
system_sleep: Sleep = time.sleep

__all__ = ["Clock", "Sleep", "system_clock", "system_sleep"]
