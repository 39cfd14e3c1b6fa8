"""The HTTP client of hexcast's admin API, as the CLI and the demo use it:
JSON in and out, the API's error body as :class:`ApiError`, 502/503/504 and
dropped connections retried with backoff (every call it makes is idempotent:
imports replace fences by id)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import requests

DEFAULT_TIMEOUT_S = 120.0
#: Statuses worth retrying (the import replaces fences by id: retrying is safe).
RETRY_STATUSES = (502, 503, 504)
RETRIES = 3


class ApiError(Exception):
    """An HTTP error answer, with the server's error body when it sent one."""

    #: What an upload had done for the file when this stopped it (tools.fences).
    result: Any = None

    def __init__(self, status: int, code: str | None, message: str, field: str | None = None) -> None:
        super().__init__(f"HTTP {status}" + (f" {code}" if code else "") + f": {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    @property
    def fatal(self) -> bool:
        """True when no later request can succeed either (bad key, no route)."""
        return self.status in (401, 403, 404, 405)

    def describe(self) -> str:
        text = f"HTTP {self.status}" + (f" {self.code}" if self.code else "") + f": {self.message}"
        if self.field:
            text += f" (field {self.field})"
        return text


class Unreachable(Exception):
    """The server did not answer (connection refused, timeout, DNS)."""

    #: What an upload had done for the file when this stopped it (tools.fences).
    result: Any = None


class HexcastClient:
    """A small client for the hexcast HTTP API (admin routes)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        session: requests.Session | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = RETRIES,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.session = session or requests.Session()
        self.timeout = timeout
        self.retries = retries

    def request(self, method: str, path: str, *, body: bytes | None = None, json_body: Any = None,
                params: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
        """Send one request; the decoded JSON answer, or :class:`ApiError` /
        :class:`Unreachable`. Retries 502/503/504 and dropped connections."""
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode()
        hdrs = {"X-Api-Key": self.api_key, "Accept": "application/json"}
        if body is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        url = self.base_url + path
        for attempt in range(self.retries + 1):
            try:
                resp = self.session.request(method, url, data=body, params=params, headers=hdrs, timeout=self.timeout)
            except requests.ReadTimeout:
                # The server may still be working on it: do not pile on.
                raise Unreachable(f"{method} {url}: no answer within {self.timeout:g} s") from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt < self.retries and _dropped(exc):
                    time.sleep(0.5 * 2**attempt)
                    continue
                raise Unreachable(f"{method} {url}: {_short(exc)}") from None
            if resp.status_code in RETRY_STATUSES and attempt < self.retries:
                time.sleep(_retry_after(resp, 0.5 * 2**attempt))
                continue
            return _decode(resp)
        raise AssertionError("unreachable")  # pragma: no cover

    def import_collection(self, body: bytes, *, repair: bool = False) -> dict:
        """``POST /v1/geofences/import`` with an already serialised collection."""
        params = {"repair": "true"} if repair else None
        return self.request("POST", "/v1/geofences/import", body=body, params=params)

    def lookup(self, lat: float, lng: float) -> list[dict]:
        """``GET /v1/geofences/lookup``: the fences that contain the point."""
        return self.request("GET", "/v1/geofences/lookup", params={"lat": repr(lat), "lng": repr(lng)})["fences"]


def _dropped(exc: Exception) -> bool:
    """A connection dropped mid-request is worth a retry; a refused one, a
    connect timeout or an unknown host will fail again."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    text = str(exc).lower()
    return not any(s in text for s in ("refused", "name or service not known", "nodename", "failed to resolve"))


def _short(exc: Exception) -> str:
    text = str(exc)
    m = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    return m.group(1).strip() if m else text[:200]


def _retry_after(resp: requests.Response, default: float) -> float:
    try:
        return min(float(resp.headers.get("Retry-After", default)), 30.0)
    except ValueError:
        return default


def _decode(resp: requests.Response) -> Any:
    try:
        data = resp.json()
    except ValueError:
        data = None
    if resp.ok:
        if data is None and resp.content:
            raise ApiError(resp.status_code, None, f"answer is not JSON: {resp.text[:200]!r}")
        return data
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        raise ApiError(resp.status_code, err.get("code"), str(err.get("message")), err.get("field"))
    text = (resp.text or resp.reason or "").strip()[:200]
    raise ApiError(resp.status_code, None, text or "(no body)")
