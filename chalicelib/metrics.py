"""Metrics in CloudWatch's Embedded Metric Format (EMF), counted per
invocation and written as a few JSON log lines when it ends.

The code calls one-line hooks (:func:`pings`, :func:`delivery`,
:func:`event`, :func:`fanout_lag`, :func:`feed_failure`,
:func:`campaign_compile_error`); outside an invocation they do nothing.
The middleware (:mod:`chalicelib.api.observability`) opens an
:class:`Invocation` per request, SQS message or scheduled run and, when it
ends, logs one line per dimension set through the ``hexcast.metrics`` logger
— the JSON formatter puts the document's fields at the top level, where
CloudWatch Logs extracts them (namespace ``hexcast``, dimension ``stage``):

* ``pings_accepted``, ``pings_rejected``, ``delivery_duplicates``
  (Count) and ``fanout_lag_s`` (Seconds: alert processed → its fan-out chunk
  decided), dimensions ``[stage]``;
* ``events`` (Count) by ``[stage, type]``: ``enter``, ``exit``, ``dwell``
  from pings; ``push_opened``, ``conversion`` from the app;
* ``deliveries`` (Count) by ``[stage, status, reason]`` (``reason`` is ``-``
  when there is none, e.g. ``sent``);
* ``feed_failures`` (Count) and ``feed_consecutive_failures`` (Count: the
  polls in a row that failed, as this warm process saw them), dimensions
  ``[stage]``: alarm on them, a feed that fails forever otherwise only logs;
* ``campaign_compile_errors`` (Count), dimensions ``[stage]``: stored
  campaigns that no longer compile (they send nothing until fixed).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import threading
import time
from typing import Any, Callable, Iterable, Iterator, ParamSpec, Protocol, TypeVar

NAMESPACE = "hexcast"
NO_REASON = "-"
#: EMF takes at most 100 values per metric in one document.
MAX_VALUES = 100

log = logging.getLogger("hexcast.metrics")

_current: contextvars.ContextVar["Invocation | None"] = contextvars.ContextVar("hexcast_metrics", default=None)


class Invocation:
    """Counts of one invocation, by dimension values (thread-safe: worker
    threads of a :class:`~chalicelib.logs.ContextThreadPool` add to it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: (("type", "enter"),) → {"events": 3}; () → the stage-only metrics.
        self.counts: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
        self.values: dict[str, list[float]] = {}

    def add(self, name: str, n: float = 1, **dims: str) -> None:
        key = tuple(sorted(dims.items()))
        with self._lock:
            bucket = self.counts.setdefault(key, {})
            bucket[name] = bucket.get(name, 0) + n

    def observe(self, name: str, value: float) -> None:
        with self._lock:
            values = self.values.setdefault(name, [])
            if len(values) < MAX_VALUES:
                values.append(value)

    def documents(self, stage: str, now: float | None = None) -> list[dict[str, Any]]:
        """The EMF documents: one per set of dimension values."""
        ts = int((time.time() if now is None else now) * 1000)
        with self._lock:
            groups = {k: dict(v) for k, v in self.counts.items()}
            values = {k: list(v) for k, v in self.values.items()}
        docs = []
        for key in sorted(set(groups) | ({()} if values else set())):
            fields: dict[str, Any] = dict(groups.get(key, {}))
            if key == ():
                fields.update(values)
            if not fields:
                continue
            dims = dict(key)
            metrics = [{"Name": n, "Unit": "Seconds" if n.endswith("_s") else "Count"} for n in sorted(fields)]
            docs.append({
                "_aws": {
                    "Timestamp": ts,
                    "CloudWatchMetrics": [
                        {"Namespace": NAMESPACE, "Dimensions": [["stage", *sorted(dims)]], "Metrics": metrics}
                    ],
                },
                "stage": stage,
                **dims,
                **fields,
            })
        return docs


@contextlib.contextmanager
def invocation(stage: Callable[[], str]) -> Iterator[Invocation]:
    """Count what happens in this context; log the EMF lines when it ends
    (also when it raises). ``stage`` is called then (settings are read
    lazily)."""
    inv = Invocation()
    token = _current.set(inv)
    try:
        yield inv
    finally:
        _current.reset(token)
        flush(inv, stage)


def flush(inv: Invocation, stage: Callable[[], str]) -> None:
    try:
        docs = inv.documents(stage())
    except Exception:  # noqa: BLE001 — metrics never fail an invocation
        log.warning("metrics not emitted", exc_info=True)
        return
    for doc in docs:
        log.info("metrics", extra=doc)


# ---------------------------------------------------------------- hooks
def pings(results: Iterable[dict]) -> None:
    """Per ping result of a request: accepted or not, and its events by type."""
    inv = _current.get()
    if inv is None:
        return
    accepted = rejected = 0
    for r in results:
        if r.get("accepted"):
            accepted += 1
        else:
            rejected += 1
        for e in r.get("events", ()):
            inv.add("events", type=str(e.get("type")))
    if accepted:
        inv.add("pings_accepted", accepted)
    if rejected:
        inv.add("pings_rejected", rejected)


def event(event_type: str) -> None:
    """An app event (``push_opened``, ``conversion``) accepted."""
    inv = _current.get()
    if inv is not None:
        inv.add("events", type=str(event_type))


def delivery(status: str, reason: str | None = None, duplicate: bool = False) -> None:
    """One decision: a new record's status and reason, or a duplicate (a
    retried trigger that found its record)."""
    inv = _current.get()
    if inv is None:
        return
    if duplicate:
        inv.add("delivery_duplicates")
    else:
        inv.add("deliveries", status=str(status), reason=str(reason or NO_REASON))


class Decided(Protocol):
    """What a pipeline decision returns (``services.delivery.Outcome``)."""

    @property
    def status(self) -> str: ...

    @property
    def reason(self) -> str | None: ...

    @property
    def duplicate(self) -> bool: ...


_P = ParamSpec("_P")
_D = TypeVar("_D", bound=Decided)


def counts_outcome(fn: Callable[_P, _D]) -> Callable[_P, _D]:
    """Decorator for a function returning a pipeline ``Outcome``."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _D:
        out = fn(*args, **kwargs)
        if _current.get() is not None:
            delivery(out.status, out.reason, out.duplicate)
        return out

    return wrapper


def fanout_lag(queued_at: Any, now: float) -> None:
    """Seconds from the alert's processing (``queued_at`` in the fan-out
    message) to its chunk decided; ignored when the message has none."""
    inv = _current.get()
    if inv is None or not isinstance(queued_at, (int, float)) or isinstance(queued_at, bool):
        return
    inv.observe("fanout_lag_s", round(max(0.0, now - float(queued_at)), 3))


def alerts_queued(n: int) -> None:
    """``n`` accepted alerts went onto the alert queue."""
    inv = _current.get()
    if inv is not None:
        inv.add("alerts_queued", n)


def alert_planned(status: str, received_at: Any, now: float) -> None:
    """An alert left the planner (``status``); the lag from its intake."""
    inv = _current.get()
    if inv is None:
        return
    inv.add(f"alerts_{status}")
    if isinstance(received_at, (int, float)) and not isinstance(received_at, bool):
        inv.observe("alert_plan_lag_s", round(max(0.0, now - float(received_at)), 3))


def feed_failure(consecutive: int) -> None:
    """A poll of the weather feed failed; ``consecutive``: how many in a row."""
    inv = _current.get()
    if inv is None:
        return
    inv.add("feed_failures")
    inv.observe("feed_consecutive_failures", float(consecutive))


def campaign_compile_error() -> None:
    """A stored campaign definition no longer compiles (it sends nothing)."""
    inv = _current.get()
    if inv is not None:
        inv.add("campaign_compile_errors")
