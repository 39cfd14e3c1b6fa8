"""Weather use cases: the alert intake (webhook or poller), conditions and
the scheduled feed poll. Planning an accepted alert is the alert queue
consumer's job (:mod:`chalicelib.services.alert_planning`).

The intake answers in seconds, whatever the alerts' areas. Per alert:

* an invalid feature is ``ignored: invalid`` (its field named), the others
  still taken;
* not ``Actual``, ended, or not yet effective → ``ignored`` with the reason
  (not recorded: a not-yet-effective alert is taken once it is);
* an id seen before (in this body, earlier, or by a concurrent request —
  the record is created with a conditional write) is ``duplicate``;
* ``Cancel`` / VTEC ``CAN``/``EXP``/``UPG`` / ``AllClear`` → ``cancelled``:
  its lineage ends at once, so no message of the chain pushes afterwards,
  whichever order they arrive in;
* otherwise the alert is recorded ``queued`` and ``accepted``: one message
  on the alert queue, planned by its consumer (or right here when there is
  no queue: tests, benchmarks). ``GET /v1/weather/alerts/{id}`` tells what
  became of it.

If the queue refuses the messages, the records just written are removed and
the request answers 503, so a retry is not taken for a duplicate.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib import metrics
from chalicelib.errors import InvalidInput, NotFound, Unavailable
from chalicelib.services import alert_planning
from chalicelib.services.alert_lineage import chain_lineages, chains_lineages
from chalicelib.services.alert_planning import keep_until, plan_message
from chalicelib.weather.alerts import Alert, classify, is_alert_id, parse_alerts
from chalicelib.weather.conditions import conditions_cell, parse_observations, store_observations, template_vars
from chalicelib.weather.poller import ERROR, PollResult, poll

if TYPE_CHECKING:
    from chalicelib.services.deps import Deps

log = logging.getLogger("hexcast.weather")

POLL_SLICE = 500  # the national feed holds ~500 alerts; post_alerts takes ≤ 1,000 at once
#: An accepted alert's queue message stays well under SQS's 256 KB.
MAX_MESSAGE_BYTES = 200_000


def post_alerts(deps: Deps, body: Any) -> dict:
    """Take a Feature or FeatureCollection of NWS alerts; → ``{"alerts": [...]}``,
    one answer per feature in input order (see the module docs)."""
    return take_alerts(deps, parse_alerts(body))


def take_alerts(deps: Deps, items: list[Alert | InvalidInput]) -> dict:
    """Take parsed alerts (NWS GeoJSON, or CAP: :mod:`chalicelib.services.cap_alerts`);
    → ``{"alerts": [...]}``, one answer per item in order."""
    now = deps.clock()
    alerts = [a for a in items if isinstance(a, Alert)]
    known = deps.weather.get_alert_records(sorted({a.id for a in alerts})) if alerts else {}
    results: list[dict] = []
    queued: list[tuple[str, str]] = []  # (alert id, message)
    requeue: list[tuple[str, str]] = []
    seen: set[str] = set()
    taking: list[tuple[dict, Alert]] = []
    for index, item in enumerate(items):
        if isinstance(item, InvalidInput):
            results.append({"index": index, "id": None, "status": "ignored", "reason": "invalid",
                            "error": item.to_json()["error"]})
            continue
        out: dict[str, Any] = {"index": index, "id": item.id}
        if item.id in seen or item.id in known:
            out["status"] = "duplicate"
            if item.id not in seen and known[item.id].get("status") == "queued":
                # Taken, but maybe never queued (the intake died in between):
                # queued again; the planner plans an alert once however often
                # its message arrives.
                requeue.append((item.id, plan_message(item, now)))
            seen.add(item.id)
        else:
            seen.add(item.id)
            taking.append((out, item))
        results.append(out)
    # Each alert's lineage writes are independent of the others': made
    # concurrently; then every record in one batch (a transaction per 100,
    # each write conditional on the id being new), the record last as before.
    chains = chains_lineages(deps, [(a, keep_until(a, now)) for _out, a in taking if _files_chain(a, now)])
    taken = deps.parallel([functools.partial(_take, deps, alert, now, chains.get(alert.id)) for _out, alert in taking])
    created = deps.weather.put_alert_records([t.record for t in taken if t.record is not None])
    for (out, alert), take in zip(taking, taken):
        if take.record is not None and alert.id not in created:
            out["status"] = "duplicate"  # a concurrent request took it first
            continue
        out.update(take.answer)
        if take.answer["status"] == "cancelled":
            log.info("alert lineage ended", extra={"alert_id": alert.id, "lineage": take.answer["lineage"],
                                                   "reason": take.answer["reason"]})
        if take.message is not None:
            queued.append((alert.id, take.message))
    _enqueue(deps, queued, forget=True)
    _enqueue(deps, requeue, forget=False)
    return {"alerts": results}


@dataclass(frozen=True)
class Taken:
    """What the intake makes of one new alert: its answer when its record
    (``(id, record, keep until)``, None when nothing is recorded) is
    created, and its queue message when accepted."""

    answer: dict
    record: tuple[str, dict, float] | None = None
    message: str | None = None


def _files_chain(alert: Alert, now: float) -> bool:
    """Whether the intake files the alert's chain: a cancellation, or an
    update of earlier messages that is taken (see :func:`_take`)."""
    action = classify(alert, now).action
    return action == "end_lineage" or (action != "ignore" and bool(alert.references))


def _take(deps: Deps, alert: Alert, now: float, chain: list[str] | None = None) -> Taken:
    """One new alert → its answer, record and message; its lineage filed
    (or ended) first — ``chain``: its lineages, filed already — the record
    written by the caller."""
    verdict = classify(alert, now)
    if verdict.action == "ignore":
        return Taken({"status": "ignored", "reason": verdict.reason})
    until = keep_until(alert, now)
    base = {"fingerprint": alert.fingerprint, "received_at": now}
    if verdict.action == "end_lineage":
        lineage, *linked = chain or chain_lineages(deps, alert, until)
        for ending in (lineage, *linked):
            deps.weather.end_lineage(ending, verdict.reason or verdict.action, now, until)
        return Taken({"status": "cancelled", "reason": verdict.reason, "lineage": lineage},
                     (alert.id, {**base, "status": "cancelled", "reason": verdict.reason, "lineage": lineage}, until))
    message = plan_message(alert, now)
    if len(message.encode()) > MAX_MESSAGE_BYTES:
        return Taken({"status": "ignored", "reason": "area_too_large",
                      "detail": f"the alert takes over {MAX_MESSAGE_BYTES} bytes once parsed"},
                     (alert.id, {**base, "status": "ignored", "reason": "area_too_large"}, until))
    # An update is filed under its lineage now, not when planned: a cancel
    # that arrives while the chain waits in the queue then ends the right
    # lineage. An alert without references needs no filing yet: until a
    # later message files it, its lineage is itself, which is what the
    # planner (or a cancel naming it) will file it under.
    if alert.references and chain is None:
        chain_lineages(deps, alert, until)
    return Taken({"status": "accepted"}, (alert.id, {**base, "status": "queued"}, until), message)


def _enqueue(deps: Deps, queued: list[tuple[str, str]], *, forget: bool) -> None:
    if not queued:
        return
    if deps.queue is None:
        for _alert_id, message in queued:
            alert_planning.plan_alert(deps, message)
        return
    try:
        deps.queue.send(deps.settings.alert_queue, [m for _i, m in queued])
    except Exception as exc:
        for alert_id, _m in queued if forget else ():
            deps.weather.forget_alert(alert_id)
        raise Unavailable("the alert queue is unavailable; nothing was taken, retry") from exc
    metrics.alerts_queued(len(queued))


def get_alert(deps: Deps, alert_id: str) -> dict:
    """What became of an alert: its record (status, lineage, counts)."""
    if not is_alert_id(alert_id):
        raise InvalidInput("alert id must be 1-256 characters without whitespace or control characters", "alert_id")
    rec = deps.weather.get_alert_records([alert_id]).get(alert_id)
    if rec is None:
        raise NotFound(f"alert {alert_id!r} not found")
    out = {"id": alert_id, **rec}
    out.pop("lease_until", None)
    out.pop("fingerprint", None)
    return out


# ---------------------------------------------------------------- conditions and the poller
class ConditionsReader(Protocol):
    def get_conditions(self, cells: list[int], now: float) -> dict[int, dict]: ...


def conditions_at(store: ConditionsReader, points: list[tuple[float, float]], now: float) -> list[dict | None]:
    """The current conditions at each (lat, lng) point (its resolution-5
    cell), in input order, read in one store call: the ``weather`` template
    dict, or None where nothing unexpired was observed."""
    cells = [conditions_cell(lat, lng) for lat, lng in points]
    found = store.get_conditions(sorted(set(cells)), now) if cells else {}
    return [template_vars(found[c]) if c in found else None for c in cells]


def post_conditions(deps: Deps, body: Any) -> dict:
    now = deps.clock()
    return store_observations(deps.weather, parse_observations(body, now=now), now)


class FeedFailures:
    """Consecutive failed polls per feed URL, as this warm process saw them
    (a cold start counts from zero again; ``feed_failures`` still counts
    every failure)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def failed(self, url: str) -> int:
        with self._lock:
            self._counts[url] = self._counts.get(url, 0) + 1
            return self._counts[url]

    def succeeded(self, url: str) -> None:
        with self._lock:
            self._counts.pop(url, None)


FEED_FAILURES = FeedFailures()


def poll_feed(deps: Deps, failures: FeedFailures = FEED_FAILURES) -> PollResult:
    """The scheduled poller: the feed's new or changed alerts go through
    :func:`post_alerts` (ids already processed answer ``duplicate``).

    A poll that fails is retried next tick, so the poller never raises; to
    keep a feed that fails forever from going unnoticed, every failure is
    logged at ERROR with the consecutive count and counted in the
    ``feed_failures`` / ``feed_consecutive_failures`` metrics."""

    def handle(collection: dict) -> None:
        features = collection.get("features") or []
        counts: dict[str, int] = defaultdict(int)
        for start in range(0, len(features), POLL_SLICE):
            out = post_alerts(deps, {"type": "FeatureCollection", "features": features[start:start + POLL_SLICE]})
            for r in out["alerts"]:
                counts[r["status"]] += 1
        log.info("feed polled", extra={"statuses": dict(counts)})

    url = deps.settings.weather_feed_url
    result = poll(deps.weather, deps.settings, handle, now=deps.clock())
    if result.status != ERROR:
        failures.succeeded(url)
        return result
    n = failures.failed(url)
    metrics.feed_failure(n)
    log.error("weather feed failing", extra={"url": url, "consecutive_failures": n, "http_status": result.http_status,
                                             "reason": result.reason})
    return result
