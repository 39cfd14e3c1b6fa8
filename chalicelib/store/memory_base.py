"""What the in-memory twins share: a tally of the round trips they serve
(tests and benchmarks compare it with what DynamoDB would be asked)."""

from __future__ import annotations

import threading


class Tally:
    """Batched reads and writes served, across every twin of one bundle."""

    def __init__(self) -> None:
        self.reads = 0
        self.writes = 0
        self._lock = threading.Lock()

    def read(self) -> None:
        with self._lock:
            self.reads += 1

    def write(self, n: int = 1) -> None:
        with self._lock:
            self.writes += n
