"""The one retry policy: full jitter, bounded by a time budget (fake clock
and sleep: nothing waits)."""

from __future__ import annotations

import random

from chalicelib.retry import RetryPolicy


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def policy(t: FakeTime, **kw) -> RetryPolicy:
    args = {"budget_s": 5.0, "base_s": 0.02, "cap_s": 1.0, "clock": t.clock, "sleep": t.sleep, "rng": random.Random(1)}
    return RetryPolicy(**{**args, **kw})


def test_a_success_at_once_never_sleeps():
    t = FakeTime()
    for attempt in policy(t).attempts():
        break
    assert attempt == 0 and t.slept == []


def test_waits_are_full_jitter_under_an_exponential_ceiling():
    t = FakeTime()
    p = policy(t, budget_s=1e9, max_attempts=12)
    assert list(p.attempts()) == list(range(12))
    assert len(t.slept) == 11
    for k, wait in enumerate(t.slept):
        assert 0.0 <= wait <= min(1.0, 0.02 * 2**k)


def test_the_budget_bounds_the_total_wait():
    t = FakeTime()
    n = len(list(policy(t, budget_s=5.0).attempts()))
    assert n > 5 and sum(t.slept) <= 5.0 and t.now <= 5.0


def test_a_caller_gives_up_when_the_attempts_run_out():
    t = FakeTime()
    tries = 0
    for _ in policy(t, max_attempts=3).attempts():
        tries += 1
    assert tries == 3 and len(t.slept) == 2


def test_the_clock_decides_not_the_sleep():
    """Time spent in the attempts themselves counts against the budget."""
    t = FakeTime()
    tries = 0
    for _ in policy(t, budget_s=1.0).attempts():
        tries += 1
        t.now += 0.6  # a slow call
    assert tries == 2
