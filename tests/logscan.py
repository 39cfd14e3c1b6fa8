"""The log scan: what the end-to-end suite logged must hold no personal data
or secret it handled.

:class:`Sensitive` collects, from every HTTP exchange the suite makes
(:func:`spy_on_requests`), the coordinates it posted (``lat``/``lng`` of
bodies and query strings), the push tokens, the API keys and device
secrets it sent (``X-Api-Key``, ``X-Device-Secret``), and the
``device_secret`` values the API returned; the stack adds its keys and
coupon secret. :class:`LogCapture` records every log line of the session
(every logger ≥ INFO, as the stack configures them; ``hexcast.*`` exactly
as its JSON handler writes them). :func:`scan` then looks for

* a posted coordinate pair: both numbers, side by side (within
  :data:`PAIR_WINDOW` characters, either order), for pairs precise enough
  to place someone (≥ 3 decimals);
* any coordinate-like pair (two decimals with ≥ 4 decimals each, in range)
  and any ``lat``/``lng`` key followed by a number;
* a push token, API key, device secret or the coupon secret, verbatim, and
  anything shaped like the suite's push tokens (``tok-…``, ``token-…``,
  ``demo-…-token…``).
"""

from __future__ import annotations

import bisect
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import parse_qsl, urlsplit

from chalicelib.logs import ROOT, JsonFormatter

#: Secrets shorter than this are not searched verbatim (too many false hits).
MIN_SECRET_LEN = 6
#: Characters between the two numbers of a leaked pair, at most.
PAIR_WINDOW = 80

_NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}\.\d+(?![\d.])")
_GENERIC_PAIR = re.compile(r"(?<![\w.])(-?\d{1,3}\.\d{4,})\s*[,; ]\s*(-?\d{1,3}\.\d{4,})(?![\d])")
_KEYED = re.compile(r"(?i)[\"']?(?<![\w-])(lat|lng|lon|latitude|longitude)[\"']?\s*[:=]\s*[\"']?(-?\d+\.\d+)")
_TOKEN_SHAPES = re.compile(r"(?<![\w-])(?:tok|token)-[A-Za-z0-9][\w.:-]*|(?<![\w-])demo-[\w.-]*-token[\w.-]*")


def _decimals(x: float) -> int:
    text = repr(float(x))
    return 0 if "e" in text or "." not in text else len(text.split(".", 1)[1].rstrip("0"))


def _mask(value: str) -> str:
    return value[:3] + "…" if len(value) > 3 else "…"


@dataclass
class Finding:
    kind: str
    line_no: int
    detail: str

    def __str__(self) -> str:
        return f"line {self.line_no}: {self.kind} ({self.detail})"


@dataclass
class Sensitive:
    """What the suite handled that its logs must not show."""

    pairs: set[tuple[float, float]] = field(default_factory=set)
    secrets: dict[str, str] = field(default_factory=dict)  # value → kind
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_pair(self, lat: Any, lng: Any) -> None:
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lat, lng)):
            with self._lock:
                self.pairs.add((float(lat), float(lng)))

    def add_secret(self, kind: str, value: Any) -> None:
        if isinstance(value, str) and len(value) >= MIN_SECRET_LEN:
            with self._lock:
                self.secrets.setdefault(value, kind)

    def collect_json(self, obj: Any) -> None:
        """Walk a request or response body: coordinate pairs, push tokens,
        device secrets."""
        stack = [obj]
        while stack:
            cur = stack.pop()
            if isinstance(cur, dict):
                lat = cur.get("lat", cur.get("latitude"))
                lng = cur.get("lng", cur.get("longitude", cur.get("lon")))
                if lat is not None and lng is not None:
                    self.add_pair(lat, lng)
                for key in ("push_token", "token"):
                    self.add_secret("push token", cur.get(key))
                self.add_secret("device secret", cur.get("device_secret"))
                stack.extend(cur.values())
            elif isinstance(cur, list):
                stack.extend(cur)

    def collect_request(self, url: str, headers: Any, body: Any) -> None:
        query = dict(parse_qsl(urlsplit(url).query))
        if "lat" in query and "lng" in query:
            try:
                self.add_pair(float(query["lat"]), float(query["lng"]))
            except ValueError:
                pass
        for name, value in (headers or {}).items():
            low = name.lower()
            if low == "x-api-key":
                self.add_secret("API key", value)
            elif low == "x-device-secret":
                self.add_secret("device secret", value)
        self.collect_json(_json_or_none(body))

    def collect_response(self, content: bytes | None) -> None:
        self.collect_json(_json_or_none(content))


def _json_or_none(raw: Any) -> Any:
    if raw is None or isinstance(raw, (dict, list)):
        return raw
    if isinstance(raw, (bytes, bytearray)):
        if len(raw) > 8 * 1024 * 1024:
            return None
        raw = bytes(raw).decode("utf-8", "replace")
    if not isinstance(raw, str):
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


# ---------------------------------------------------------------- the scan
def scan(lines: Iterable[str], sensitive: Sensitive) -> list[Finding]:
    """Every leak in ``lines`` (one log record or output line each)."""
    lines = list(lines)
    findings: list[Finding] = []
    # Posted pairs precise enough to place someone, by either coordinate.
    by_value: dict[float, set[float]] = {}
    for lat, lng in sensitive.pairs:
        if max(_decimals(lat), _decimals(lng)) >= 3:
            by_value.setdefault(lat, set()).add(lng)
            by_value.setdefault(lng, set()).add(lat)
    for n, line in enumerate(lines, 1):
        numbers = [(m.start(), float(m.group())) for m in _NUMBER.finditer(line)]
        hit = None
        for i, (pos, value) in enumerate(numbers):
            partners = by_value.get(value)
            if not partners:
                continue
            for pos2, value2 in numbers[:i] + numbers[i + 1:]:
                if value2 in partners and abs(pos2 - pos) <= PAIR_WINDOW:
                    hit = f"posted location {value:g}/{value2:g}"
                    break
            if hit:
                break
        if hit:
            findings.append(Finding("coordinate pair", n, hit))
        for m in _GENERIC_PAIR.finditer(line):
            a, b = float(m.group(1)), float(m.group(2))
            if (abs(a) <= 90 and abs(b) <= 180) or (abs(a) <= 180 and abs(b) <= 90):
                findings.append(Finding("coordinate-like pair", n, m.group(0)[:40]))
        for m in _KEYED.finditer(line):
            findings.append(Finding("keyed coordinate", n, m.group(0)[:40]))
        for m in _TOKEN_SHAPES.finditer(line):
            findings.append(Finding("push-token-shaped value", n, _mask(m.group(0))))
    # Verbatim secrets: one search per secret over the whole text.
    text = "\n".join(lines)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    for value, kind in sorted(sensitive.secrets.items()):
        at = text.find(value)
        while at != -1:
            findings.append(Finding(kind, bisect.bisect_right(starts, at), _mask(value)))
            at = text.find(value, at + len(value))
    return sorted(findings, key=lambda f: (f.line_no, f.kind))


# ---------------------------------------------------------------- capture
class LogCapture(logging.Handler):
    """Keeps every record as a line: ``hexcast.*`` as the app's JSON handler
    writes it (redaction included — that is what ships), others rendered in
    full (message, every extra field, the exception)."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.lines: list[str] = []
        self._app = JsonFormatter()
        self._raw = JsonFormatter(redaction=False)
        self._attached: list[logging.Logger] = []
        self._last = threading.local()
        self._root_level: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        # Attached at several levels of the hierarchy: a record that reaches
        # this handler twice (a propagating logger) is kept once.
        if getattr(self._last, "record", None) is record:
            return
        self._last.record = record
        try:
            own = record.name == ROOT or record.name.startswith(ROOT + ".")
            self.lines.append((self._app if own else self._raw).format(record))
        except Exception:  # noqa: BLE001
            self.handleError(record)

    def add_text(self, text: str) -> None:
        """Other output of the session (the emulator's log), line by line."""
        self.lines.extend(text.splitlines())

    def install(self, level: int = logging.INFO) -> "LogCapture":
        """On the root logger (at ``level``), on ``hexcast`` (Chalice stops its
        propagation) and on every logger that does not propagate now."""
        root = logging.getLogger()
        self._root_level = root.level
        root.setLevel(level)
        targets = [root, logging.getLogger(ROOT)]
        targets += [lg for lg in root.manager.loggerDict.values() if isinstance(lg, logging.Logger) and not lg.propagate]
        for lg in dict.fromkeys(targets):
            lg.addHandler(self)
            self._attached.append(lg)
        return self

    def uninstall(self) -> None:
        for lg in self._attached:
            lg.removeHandler(self)
        self._attached = []
        if self._root_level is not None:
            logging.getLogger().setLevel(self._root_level)
            self._root_level = None


def spy_on_requests(sensitive: Sensitive):
    """Wrap ``requests.Session.send`` so every request and response the
    process makes feeds ``sensitive``; returns the function that undoes it."""
    import requests

    original = requests.Session.send

    def send(self, request, **kwargs):
        sensitive.collect_request(request.url, request.headers, request.body)
        response = original(self, request, **kwargs)
        if not kwargs.get("stream"):
            sensitive.collect_response(response.content)
        return response

    requests.Session.send = send

    def undo() -> None:
        requests.Session.send = original

    return undo
