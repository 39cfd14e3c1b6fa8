"""NWS zone geometries over HTTP: the adapter behind the
:class:`~chalicelib.ports.ZoneFetcher` port, used for an alert whose area is
neither a polygon nor SAME counties. Only ``https://api.weather.gov/zones/``
URLs are fetched (:func:`chalicelib.weather.area.is_zone_url`)."""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from typing import Any

import shapely

from chalicelib.weather.area import geojson_polygonal, is_zone_url, polygonal

log = logging.getLogger("hexcast.weather")

ZONE_MAX_BYTES = 16 * 1024 * 1024
_MISSING = object()


class ZoneFetcher:
    """NWS zone geometries by URL, over HTTP, cached in-process (LRU).

    Negative results are cached for answers that will not change (404/410, a
    zone Feature without a polygon); transient failures (timeouts, 5xx,
    malformed bodies) are not, so a later alert tries again. URLs outside
    ``https://api.weather.gov/zones/`` are refused without a request. Nothing
    raises: failures are ``None`` and a WARNING log.
    """

    def __init__(self, user_agent: str, timeout_s: float = 10.0, session=None, max_cached: int = 2048) -> None:
        self.user_agent = user_agent
        self.timeout_s = timeout_s
        self._session = session
        self.max_cached = max_cached
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def session(self):
        if self._session is None:
            import requests

            self._session = requests.Session()
        return self._session

    def geometry(self, url: str) -> Any | None:
        """The polygon of the zone at ``url``, or ``None``."""
        with self._lock:
            hit = self._cache.get(url, _MISSING) if isinstance(url, str) else _MISSING
            if hit is not _MISSING:
                self._cache.move_to_end(url)
                return hit
        if not is_zone_url(url):
            log.warning("zone url refused", extra={"url": str(url)[:200]})
            return None
        try:
            geom, cacheable = self._fetch(url)
        except Exception:  # a defensive boundary: a bad zone must never fail the alert
            log.warning("zone geometry unavailable", extra={"url": url, "reason": "unexpected"}, exc_info=True)
            return None
        if cacheable:
            with self._lock:
                self._cache[url] = geom
                self._cache.move_to_end(url)
                while len(self._cache) > self.max_cached:
                    self._cache.popitem(last=False)
        return geom

    def _fetch(self, url: str) -> tuple[Any | None, bool]:
        import requests

        def fail(reason: str, cacheable: bool = False, **extra) -> tuple[None, bool]:
            log.warning("zone geometry unavailable", extra={"url": url, "reason": reason, **extra})
            return None, cacheable

        try:
            resp = self.session.get(url, headers={"User-Agent": self.user_agent, "Accept": "application/geo+json"},
                                    timeout=self.timeout_s, allow_redirects=False, stream=True)
        except requests.Timeout:
            return fail("timeout")
        except requests.RequestException as exc:
            return fail("http_error", error=type(exc).__name__)
        try:
            if resp.status_code in (404, 410):
                return fail("not_found", cacheable=True, status=resp.status_code)
            if resp.status_code != 200:
                return fail("http_status", status=resp.status_code)
            chunks, size = [], 0
            for chunk in resp.iter_content(64 * 1024):
                size += len(chunk)
                if size > ZONE_MAX_BYTES:
                    return fail("too_large")
                chunks.append(chunk)
            body = json.loads(b"".join(chunks))
        except requests.RequestException as exc:
            return fail("http_error", error=type(exc).__name__)
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, absurd nesting
            return fail("malformed_json")
        finally:
            resp.close()
        raw = body.get("geometry") if isinstance(body, dict) else None
        if isinstance(raw, str):  # JSON-LD answers carry WKT
            try:
                geom = polygonal(shapely.from_wkt(raw))
            except shapely.errors.ShapelyError:
                geom = None
        else:
            geom = geojson_polygonal(raw)
        if geom is None:
            return fail("no_polygon", cacheable=isinstance(body, dict) and body.get("type") == "Feature")
        return geom, True


__all__ = ["ZONE_MAX_BYTES", "ZoneFetcher"]
