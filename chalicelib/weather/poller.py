"""The alert-feed adapter: one conditional GET of the configured feed per
tick, the FeatureCollection handed to ``handle`` (the use case,
:func:`chalicelib.services.weather.poll_feed`, passes the alert code path).

HTTP caching, as api.weather.gov asks of its clients:

* the ``ETag`` and ``Last-Modified`` of the last handled response are sent
  back as ``If-None-Match`` / ``If-Modified-Since``; a ``304`` calls nothing;
* ``Cache-Control: max-age=N`` (less the ``Age`` header) makes the next
  ticks within N seconds skip the request; ``no-cache``/``no-store`` mean 0;
* the state is saved only after ``handle`` returned: a response whose
  handling failed is fetched (not 304'd) again next tick.

Failures never escape :func:`poll`: HTTP errors, timeouts, connection
errors, bodies that are not a GeoJSON FeatureCollection, and exceptions
from ``handle`` are logged at WARNING and reported as ``status="error"``;
the use case turns each into an ERROR line and a metric.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

if TYPE_CHECKING:
    import requests

    from chalicelib.settings import Settings

log = logging.getLogger("hexcast.weather")

OK, NOT_MODIFIED, ERROR = "ok", "not_modified", "error"
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)\"?", re.I)
_NO_CACHE = re.compile(r"(?:^|[,\s])(?:no-cache|no-store)(?:$|[,\s=])", re.I)


class FeedStateStore(Protocol):
    """Where the conditional-request state of a feed is kept."""

    def get_feed_state(self, url: str) -> dict | None: ...

    def put_feed_state(self, url: str, state: dict) -> None: ...


@dataclass(frozen=True)
class PollResult:
    status: str  # "ok" | "not_modified" | "error"
    http_status: int | None
    alerts: int
    reason: str | None = None


def max_age_s(headers: Mapping[str, str]) -> float | None:
    """Seconds a response stays fresh per ``Cache-Control`` and ``Age``, or
    None when the response says nothing about it.

    >>> max_age_s({"Cache-Control": "public, max-age=30, s-maxage=30", "Age": "12"})
    18.0
    >>> max_age_s({"Cache-Control": "no-cache"}), max_age_s({})
    (0.0, None)
    """
    cc = headers.get("Cache-Control") or ""
    if _NO_CACHE.search(cc):
        return 0.0
    m = _MAX_AGE.search(cc)
    if not m:
        return None
    try:
        age = max(0.0, float(headers.get("Age") or 0))
    except ValueError:
        age = 0.0
    return max(0.0, float(m.group(1)) - age)


def _fresh(state: dict | None, now: float) -> bool:
    if not state or state.get("fetched_at") is None or not state.get("max_age"):
        return False
    return float(state["fetched_at"]) + float(state["max_age"]) > now


def _error(url: str, http_status: int | None, reason: str) -> PollResult:
    log.warning("weather feed poll failed", extra={"url": url, "http_status": http_status, "reason": reason})
    return PollResult(ERROR, http_status, 0, reason)


def poll(store: FeedStateStore, settings: Settings, handle: Callable[[dict], Any], *,
         session: requests.Session | None = None, now: float) -> PollResult:
    """Fetch ``settings.weather_feed_url`` unless the last response is still
    fresh or unchanged, and hand a new FeatureCollection to ``handle``.

    ``store`` keeps the conditional-request state (``get_feed_state`` /
    ``put_feed_state``); ``session`` is a ``requests.Session`` (a new one
    when None).
    """
    import requests  # here: only the scheduled poller pays for importing it

    url = settings.weather_feed_url
    try:
        state = store.get_feed_state(url)
    except Exception as exc:  # noqa: BLE001 - the poller never raises
        return _error(url, None, f"feed state unreadable: {type(exc).__name__}")
    if _fresh(state, now):
        return PollResult(NOT_MODIFIED, None, 0, "fresh")
    headers = {"User-Agent": settings.weather_user_agent, "Accept": "application/geo+json"}
    if state and state.get("etag"):
        headers["If-None-Match"] = state["etag"]
    if state and state.get("last_modified"):
        headers["If-Modified-Since"] = state["last_modified"]

    own = session is None
    http = requests.Session() if session is None else session
    try:
        resp = http.get(url, headers=headers, timeout=settings.weather_http_timeout_s)
        content = resp.content
    except requests.exceptions.Timeout:
        return _error(url, None, f"timeout after {settings.weather_http_timeout_s:g} s")
    except requests.exceptions.RequestException as exc:
        return _error(url, None, f"request failed: {type(exc).__name__}")
    except Exception as exc:  # noqa: BLE001 - the poller never raises
        return _error(url, None, f"request failed: {type(exc).__name__}")
    finally:
        if own:
            http.close()

    if resp.status_code == 304:
        # Still the response we handled: it stays valid for max-age more.
        _save(store, url, state, resp.headers, NOT_MODIFIED, now, keep_validators=True)
        return PollResult(NOT_MODIFIED, 304, 0, None)
    if resp.status_code != 200:
        return _error(url, resp.status_code, f"HTTP {resp.status_code}")
    try:
        body = json.loads(content)
    except ValueError:
        return _error(url, 200, "the body is not JSON")
    if not (isinstance(body, dict) and body.get("type") == "FeatureCollection" and isinstance(body.get("features"), list)):
        return _error(url, 200, "the body is not a GeoJSON FeatureCollection")
    try:
        handle(body)
    except Exception as exc:  # noqa: BLE001 - retried next tick
        log.warning("weather feed handling failed", exc_info=True, extra={"url": url, "http_status": 200})
        return PollResult(ERROR, 200, len(body["features"]), f"handling failed: {type(exc).__name__}")
    _save(store, url, state, resp.headers, OK, now, keep_validators=False)
    return PollResult(OK, 200, len(body["features"]), None)


def _save(store: FeedStateStore, url: str, old: dict | None, headers: Mapping[str, str], status: str, now: float, *,
          keep_validators: bool) -> None:
    """Remember the validators and freshness of the response just handled.
    A 304 updates what it carries; what it omits stays as it was."""
    etag = headers.get("ETag")
    last_modified = headers.get("Last-Modified")
    max_age = max_age_s(headers)
    if keep_validators and old:
        etag = etag or old.get("etag")
        last_modified = last_modified or old.get("last_modified")
        max_age = old.get("max_age") if max_age is None else max_age
    state = {"etag": etag, "last_modified": last_modified, "fetched_at": now, "status": status, "max_age": max_age}
    try:
        store.put_feed_state(url, state)
    except Exception:  # noqa: BLE001 - next tick refetches; handle dedupes ids
        log.warning("weather feed state not saved", exc_info=True, extra={"url": url})
