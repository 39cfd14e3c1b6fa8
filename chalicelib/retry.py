"""The one retry policy: full-jitter exponential backoff inside a time budget.

Used where the code itself retries: a ``BatchWriteItem``/``BatchGetItem``
whose unprocessed items come back, and a frequency-cap write that lost an
optimistic-concurrency race. Every wait is ``uniform(0, min(cap, base *
2**attempt))`` ("full jitter": concurrent losers spread out instead of
colliding again), and the policy gives up once the next wait would end past
the budget, so a retrying call still fits the caller's own timeout (API
Gateway gives a request 29 s; the default 5 s leaves room for the rest of
the request).

botocore retries throttled calls on its own before this code sees them. The
composition root builds the DynamoDB client with
``Config(retries={"max_attempts": 3, "mode": "standard"})`` so the two layers
do not multiply into minutes of attempts: botocore handles a throttled
request, this policy handles the partial successes botocore reports as a
success (unprocessed items) and the application-level races.

The clock and the sleep are arguments: tests pass fakes and never sleep.
``clock`` measures elapsed time (``time.monotonic`` in production), not the
wall-clock time the domain uses.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

#: One generator for every policy's jitter: seeding a new ``random.Random``
#: reads the OS's entropy (tens of µs), and a policy is made per publish.
_JITTER = random.Random()

Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class RetryPolicy:
    """``budget_s``: total time the retries may take; ``base_s``/``cap_s``:
    the first and the largest backoff ceiling (5 s, 0.02 s and 1 s fit a
    29 s API call); ``clock``/``sleep``: elapsed time and waiting; ``max_attempts``: a backstop
    on the number of attempts (None: the budget alone bounds them)."""

    budget_s: float
    base_s: float
    cap_s: float
    clock: Clock = field(repr=False)
    sleep: Sleep = field(repr=False)
    max_attempts: int | None = None
    rng: random.Random = field(default_factory=lambda: _JITTER, repr=False, compare=False)

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt ``attempt`` (0-based): full jitter."""
        ceiling = min(self.cap_s, self.base_s * (2 ** min(attempt, 60)))
        return self.rng.uniform(0.0, ceiling)

    def attempts(self) -> Iterator[int]:
        """Attempt numbers 0, 1, 2 …; sleeps between them. The loop body
        ``break``s (or returns) on success; when the iterator ends the
        caller has run out of budget or attempts and raises its own error.

        >>> p = RetryPolicy(1.0, 0.1, 0.1, clock=lambda: 0.0, sleep=lambda s: None, max_attempts=3)
        >>> list(p.attempts())
        [0, 1, 2]
        """
        start = self.clock()
        attempt = 0
        while True:
            yield attempt
            if self.max_attempts is not None and attempt + 1 >= self.max_attempts:
                return
            wait = self.backoff(attempt)
            if self.clock() - start + wait > self.budget_s:
                return
            self.sleep(wait)
            attempt += 1
