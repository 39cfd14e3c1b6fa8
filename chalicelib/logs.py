"""Structured JSON logs: one JSON object per line, a request id on every line,
and a redaction safety net for personal data and secrets.

Every ``hexcast.*`` logger emits through one handler on the ``hexcast``
logger — the logger Chalice configures for the app (``app.log``), at ERROR
with a plain-text handler when ``debug`` is off. :func:`configure` replaces
that handler with :class:`JsonHandler`, sets the level (``settings.log_level``)
and keeps ``propagate`` off, so nothing is printed twice by Lambda's own root
handler. A line::

    {"time": "2026-11-23T15:04:05.123Z", "level": "INFO", "logger": "hexcast.push",
     "message": "delivery", "request_id": "c6af9ac6-...", "delivery_id": "dl_...", "status": "sent"}

``request_id`` is the invocation's id, bound by the middleware
(:mod:`chalicelib.api.observability`) in a context variable: API Gateway's
request id, Lambda's ``aws_request_id``, the SQS message id, or a generated
one locally. :class:`ContextThreadPool` carries it into worker threads.

The code logs ids and counts only — never coordinates, push tokens, keys or
secrets. The formatter is the safety net behind that rule: ``extra`` fields
whose names say "coordinate", "token", "secret", "key" or "password" are
replaced by ``"[redacted]"`` (at any depth), and the message and exception
text are scrubbed of ``name=value`` pairs with such names and of decimal
coordinate pairs. No third-party logger is needed for this (see the README's
"Libraries and why").
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

#: The app's logger (Chalice names it after the app); ``hexcast.*`` are its children.
ROOT = "hexcast"
METRICS_LOGGER = "hexcast.metrics"
REDACTED = "[redacted]"

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("hexcast_request_id", default=None)

#: LogRecord attributes that are not ``extra`` fields.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
#: Field names redacted wherever they appear (lower case, exact).
_SENSITIVE_NAMES = frozenset({"lat", "lng", "lon", "long", "latitude", "longitude", "coordinates", "location", "st"})
#: ... and any name containing one of these.
_SENSITIVE_PARTS = ("token", "secret", "password", "passwd", "authorization", "api_key", "apikey", "api-key", "credential")
_NAME_ALT = r"lat|lng|lon|latitude|longitude|push_token|token|device_secret|secret|api[_-]?key|x-api-key|x-device-secret|password"
#: ``lat=40.71``, ``"push_token": "abc"``, ``X-Api-Key: k`` in free text.
_KEYED = re.compile(rf"(?i)(?<![\w-])({_NAME_ALT})([\"']?\s*[:=]\s*[\"']?)([^\s,;&\"'}}\]\)]+)")
#: Two decimal numbers with ≥ 3 decimals each, side by side: a coordinate pair.
_PAIR = re.compile(r"(?<![\w.])-?\d{1,3}\.\d{3,}\s*[,;/ ]\s*-?\d{1,3}\.\d{3,}(?![\d])")


def sensitive_name(name: str) -> bool:
    """Whether a field called ``name`` may hold personal data or a secret.

    >>> [sensitive_name(n) for n in ("lat", "push_token", "X-Api-Key", "device_id", "next_token")]
    [True, True, True, False, True]
    """
    low = name.lower()
    return low in _SENSITIVE_NAMES or any(p in low for p in _SENSITIVE_PARTS)


def scrub(text: str) -> str:
    """Free text with sensitive ``name=value`` pairs and coordinate pairs masked.

    >>> scrub("GET /v1/geofences/lookup?lat=40.7128&lng=-74.0060 token=tok-1")
    'GET /v1/geofences/lookup?lat=[redacted]&lng=[redacted] token=[redacted]'
    >>> scrub("near 40.71280, -74.00600 (h3 8928308280fffff)")
    'near [redacted] (h3 8928308280fffff)'
    """
    if not text:
        return text
    text = _KEYED.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    return _PAIR.sub(REDACTED, text)


def redact(value: Any, depth: int = 0) -> Any:
    """``value`` with the values of sensitive fields replaced (dicts and
    lists walked to a bounded depth; strings scrubbed)."""
    if depth > 8:
        return REDACTED
    if isinstance(value, dict):
        return {k: REDACTED if sensitive_name(str(k)) else redact(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(v, depth + 1) for v in value]
    if isinstance(value, str):
        return scrub(value)
    return value


def request_id() -> str | None:
    """The id bound to the current invocation (None outside one)."""
    return _request_id.get()


@contextlib.contextmanager
def bound(rid: str | None) -> Iterator[str]:
    """Bind ``rid`` (a generated one when None) as the request id of every
    line logged in this context."""
    rid = rid or os.urandom(16).hex()
    token = _request_id.set(rid)
    try:
        yield rid
    finally:
        _request_id.reset(token)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request_id,
    the record's ``extra`` fields, and the exception when there is one.
    ``redaction=False`` renders without the safety net (tests compare)."""

    def __init__(self, *, redaction: bool = True) -> None:
        super().__init__()
        self.redaction = redaction

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        clean = self.redaction
        message = record.getMessage()
        out: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(message) if clean else message,
            "request_id": _request_id.get(),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_") and key != "_aws" or key in out:
                continue
            out[key] = REDACTED if clean and sensitive_name(key) else redact(value) if clean else value
        if record.exc_info:
            text = self.formatException(record.exc_info)
            out["exception"] = scrub(text) if clean else text
        elif record.exc_text:
            out["exception"] = scrub(record.exc_text) if clean else record.exc_text
        return out

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.fields(record), default=str, ensure_ascii=False, separators=(",", ":"))


class JsonHandler(logging.Handler):
    """Writes each record as one JSON line to the *current* ``sys.stdout``
    (looked up per line: test runners swap it; Lambda ships stdout to
    CloudWatch Logs, where EMF lines become metrics)."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            stream = sys.stdout
            stream.write(line + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 — logging must never break a request
            self.handleError(record)


_configured_lock = threading.Lock()
#: What :func:`configure` last set: (level, metrics).
_configured: tuple[str | int, bool] | None = None


def level_of(name: str | int) -> int:
    """A level name (``"INFO"``) or number; unknown names are INFO."""
    if isinstance(name, int):
        return name
    value = logging.getLevelName(str(name).strip().upper())
    return value if isinstance(value, int) else logging.INFO


def configure(level: str | int = "INFO", *, metrics: bool = True) -> logging.Logger:
    """Make the ``hexcast`` logger emit JSON lines at ``level``: Chalice's
    plain-text stdout handler is replaced (other handlers, such as a test's
    capture, stay), ``propagate`` stays off. EMF metric lines are written
    whatever the level unless ``metrics=False`` (a console demo). Idempotent:
    a later :func:`configure_once` keeps what this set."""
    global _configured
    logger = logging.getLogger(ROOT)
    with _configured_lock:
        for h in list(logger.handlers):
            if type(h) is logging.StreamHandler:  # Chalice's own (exactly that class)
                logger.removeHandler(h)
        if not any(isinstance(h, JsonHandler) for h in logger.handlers):
            logger.addHandler(JsonHandler())
        logger.setLevel(level_of(level))
        logger.propagate = False
        # EMF lines are metrics, not chatter: emitted whatever the level.
        logging.getLogger(METRICS_LOGGER).setLevel(logging.INFO if metrics else logging.CRITICAL)
        _configured = (level, metrics)
    return logger


def configure_once(level: str | int) -> None:
    """:func:`configure` on the first call of a process; afterwards only
    when a ``Chalice(app_name="hexcast")`` created since has put its own
    handler and level back (with what was configured before)."""
    if _configured is None:
        configure(level)
    elif any(type(h) is logging.StreamHandler for h in logging.getLogger(ROOT).handlers):
        configure(_configured[0], metrics=_configured[1])


class ContextThreadPool(ThreadPoolExecutor):
    """A thread pool whose tasks run in a copy of the submitter's context, so
    lines logged (and metrics counted) in a worker carry the invocation's
    request id."""

    def submit(self, fn, /, *args, **kwargs):
        ctx = contextvars.copy_context()
        return super().submit(ctx.run, fn, *args, **kwargs)
