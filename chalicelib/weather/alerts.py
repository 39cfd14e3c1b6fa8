"""NWS alerts: parse the API's GeoJSON (pure, no I/O) and decide what an alert
means now — push it, end its lineage, or ignore it.

The traps this module exists for (measured on real api.weather.gov output,
see ``tests/fixtures/README.md``):

* ``expires`` is not the end of the hazard: ``ends`` is, and ``expires`` is
  only a fallback when ``ends`` is null or missing (both occur);
* cancellations, expirations and upgrades are still listed by
  ``/alerts/active`` with ``messageType: "Alert"``: only the VTEC action
  (``CAN``/``EXP``/``UPG``) or ``response: "AllClear"`` gives them away;
* ids come as ``urn:oid:2.49.0.1.840.0.…``, older ``NWS-IDP-PROD-…`` and
  non-NWS IPAWS ``IINFO_…``: ids are opaque strings;
* ``references`` are not in time order;
* the same Feature can appear twice in one response (``fingerprint``).

Lenient where NWS is messy (missing optional fields, ``geocode: null``,
severity words we do not know), strict where we could not act safely: no id,
no event, no ``sent``, no ``status``/``messageType`` (a missing message type
could hide a cancellation), unparsable times.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from chalicelib.errors import InvalidInput
from chalicelib.timeutil import iso, parse_timestamp

SEVERITIES = ("Unknown", "Minor", "Moderate", "Severe", "Extreme")
URGENCIES = ("Unknown", "Past", "Future", "Expected", "Immediate")
CERTAINTIES = ("Unknown", "Unlikely", "Possible", "Likely", "Observed")

#: A request may carry at most this many features.
MAX_FEATURES = 1000
#: Ids become storage keys: keep them bounded and free of whitespace.
MAX_ID_LEN = 256
_ID_RE = re.compile(r"^[^\s\x00-\x1f\x7f]{1,%d}\Z" % MAX_ID_LEN)



def is_alert_id(value: object) -> bool:
    """An alert id as this service takes it: 1-256 characters, no whitespace
    or control characters (NWS ids are URNs, ``NWS-IDP-PROD-…`` or ``IINFO_…``)."""
    return isinstance(value, str) and _ID_RE.match(value) is not None


#: P-VTEC: ``/k.aaa.cccc.pp.s.####.yymmddThhnnZ-yymmddThhnnZ/`` (NWSI 10-1703).
_PVTEC_RE = re.compile(
    r"^/?(?P<klass>[OTEX])\.(?P<action>[A-Z]{3})\.(?P<office>[A-Z0-9]{4})\.(?P<phen>[A-Z0-9]{2})\."
    r"(?P<sig>[A-Z])\.(?P<etn>\d{4})\.(?P<begin>\d{6}T\d{4}Z)-(?P<end>\d{6}T\d{4}Z)/?$"
)

#: VTEC actions that end a lineage, and the reason reported for each.
_ENDING_ACTIONS = {"CAN": "cancelled", "EXP": "expired", "UPG": "upgraded"}


@dataclass(frozen=True)
class Reference:
    """An earlier alert this one updates or cancels (CAP ``references``)."""

    id: str
    sent: float | None


@dataclass(frozen=True)
class Alert:
    """One alert (NWS, or CAP through :func:`chalicelib.weather.cap.to_alert`),
    its times as epoch seconds."""

    id: str
    event: str
    status: str
    message_type: str
    severity: str
    urgency: str
    certainty: str
    sent: float
    effective: float | None
    onset: float | None
    expires: float | None
    ends: float | None
    headline: str | None
    area_desc: str
    sender_name: str | None
    response: str | None
    same: tuple[str, ...]
    ugc: tuple[str, ...]
    affected_zones: tuple[str, ...]
    references: tuple[Reference, ...]
    vtec: tuple[str, ...]
    vtec_actions: tuple[str, ...]
    geometry: dict | None = field(hash=False)  # a dict: left out of hash(), still compared
    fingerprint: str
    #: CAP only: the ``<sender>``, and each ``<info>`` block's texts in its
    #: language (:meth:`chalicelib.weather.cap.CapInfo.texts`), in document order.
    sender: str | None = None
    infos: tuple[dict, ...] = field(default=(), hash=False)

    def end_time(self) -> float | None:
        """When the hazard ends: ``ends``, else ``expires`` (only when ``ends`` is missing)."""
        return self.ends if self.ends is not None else self.expires

    def start_time(self) -> float:
        """When the alert becomes actionable: ``effective``, else ``sent``."""
        return self.effective if self.effective is not None else self.sent

    def template_vars(self) -> dict:
        """The ``alert.*`` variables of message templates (times RFC 3339 UTC or None)."""

        def t(ts: float | None) -> str | None:
            return None if ts is None else iso(ts)

        return {
            "id": self.id,
            "event": self.event,
            "headline": self.headline,
            "severity": self.severity,
            "urgency": self.urgency,
            "certainty": self.certainty,
            "area_desc": self.area_desc,
            "sender_name": self.sender_name,
            "onset": t(self.onset),
            "effective": t(self.effective),
            "ends": t(self.ends),
            "expires": t(self.expires),
        }


@dataclass(frozen=True)
class Verdict:
    """What to do with an alert now: ``push``, ``end_lineage`` or ``ignore``."""

    action: str
    reason: str | None = None


# ---------------------------------------------------------------- parsing
def parse_alerts(body: Any) -> list[Alert | InvalidInput]:
    """A Feature or FeatureCollection as api.weather.gov returns it → one
    entry per feature, in input order: an :class:`Alert` or the
    :class:`InvalidInput` that names the offending field
    (``features[3].properties.sent``).

    Raises :class:`InvalidInput` (field ``type``) when the body is neither,
    and (field ``features``) when it holds more than 1,000 features.
    """
    if not isinstance(body, dict):
        raise InvalidInput("body must be a GeoJSON Feature or FeatureCollection of NWS alerts", "type")
    kind = body.get("type")
    if kind == "Feature":
        return [_parse_or_error(body, "")]
    if kind != "FeatureCollection":
        raise InvalidInput("body must be a GeoJSON Feature or FeatureCollection of NWS alerts", "type")
    features = body.get("features")
    if not isinstance(features, list):
        raise InvalidInput("features must be a list", "features")
    if len(features) > MAX_FEATURES:
        raise InvalidInput(f"at most {MAX_FEATURES} features per request (got {len(features)})", "features")
    return [_parse_or_error(f, f"features[{i}].") for i, f in enumerate(features)]


def _parse_or_error(feature: Any, prefix: str) -> Alert | InvalidInput:
    try:
        return parse_alert(feature, prefix=prefix)
    except InvalidInput as exc:
        return exc


def parse_alert(feature: Any, *, prefix: str = "") -> Alert:
    """One alert Feature → :class:`Alert`; raises :class:`InvalidInput` whose
    field starts with ``prefix`` (e.g. ``"features[3]."``)."""
    where = prefix[:-1] if prefix.endswith(".") else (prefix or "feature")
    if not isinstance(feature, dict):
        raise InvalidInput("each feature must be a GeoJSON Feature object", where)
    if feature.get("type") != "Feature":
        raise InvalidInput("type must be 'Feature'", f"{prefix}type")
    props = feature.get("properties")
    if not isinstance(props, dict):
        raise InvalidInput("properties must be an object", f"{prefix}properties")
    p = f"{prefix}properties."

    def text(key: str, *, required: bool = False, max_len: int = 10_000) -> str | None:
        value = props.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise InvalidInput(f"{key} is required", p + key)
            return None
        if not isinstance(value, str):
            raise InvalidInput(f"{key} must be a string", p + key)
        if len(value) > max_len:
            raise InvalidInput(f"{key} is longer than {max_len} characters", p + key)
        return value.strip()

    def required_text(key: str, max_len: int) -> str:
        value = text(key, required=True, max_len=max_len)
        assert value is not None  # text() raised otherwise
        return value

    def when(key: str, *, required: bool = False) -> float | None:
        value = props.get(key)
        if value is None:
            if required:
                raise InvalidInput(f"{key} is required", p + key)
            return None
        return parse_timestamp(value, field=p + key)

    alert_id = _alert_id(feature, props, prefix)
    geometry = feature.get("geometry")
    if geometry is not None and not (isinstance(geometry, dict) and isinstance(geometry.get("type"), str)):
        raise InvalidInput("geometry must be a GeoJSON geometry object or null", f"{prefix}geometry")

    geocode = props.get("geocode")
    if geocode is not None and not isinstance(geocode, dict):
        raise InvalidInput("geocode must be an object or null", p + "geocode")
    geocode = geocode or {}
    parameters = props.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidInput("parameters must be an object or null", p + "parameters")
    vtec = _strings(parameters.get("VTEC") if parameters else None, p + "parameters.VTEC")

    sent = when("sent", required=True)
    assert sent is not None  # when() raised otherwise
    return Alert(
        id=alert_id,
        event=required_text("event", 200),
        status=required_text("status", 40),
        message_type=required_text("messageType", 40),
        severity=_vocab(props.get("severity"), SEVERITIES),
        urgency=_vocab(props.get("urgency"), URGENCIES),
        certainty=_vocab(props.get("certainty"), CERTAINTIES),
        sent=sent,
        effective=when("effective"),
        onset=when("onset"),
        expires=when("expires"),
        ends=when("ends"),
        headline=text("headline", max_len=1000),
        area_desc=text("areaDesc", max_len=20_000) or "",
        sender_name=text("senderName", max_len=200),
        response=text("response", max_len=40),
        same=_strings(geocode.get("SAME"), p + "geocode.SAME"),
        ugc=_strings(geocode.get("UGC"), p + "geocode.UGC"),
        affected_zones=_strings(props.get("affectedZones"), p + "affectedZones"),
        references=_references(props.get("references"), p + "references"),
        vtec=vtec,
        vtec_actions=tuple(m.group("action") for m in map(_PVTEC_RE.match, vtec) if m),
        geometry=geometry,
        fingerprint=fingerprint(feature),
    )


def fingerprint(feature: dict) -> str:
    """sha256 of the Feature's canonical JSON (sorted keys, compact): equal
    for byte-identical duplicates whatever their key order or whitespace."""
    # ensure_ascii: a lone surrogate ("\ud800" in the body) cannot break it.
    canonical = json.dumps(feature, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _alert_id(feature: dict, props: dict, prefix: str) -> str:
    value = props.get("id")
    field = f"{prefix}properties.id"
    if value is None or value == "":
        # The live API always sends properties.id; older captures may only
        # carry the URL form ("https://api.weather.gov/alerts/<id>").
        for url in (feature.get("id"), props.get("@id"), feature.get("@id")):
            if isinstance(url, str) and url.strip():
                value = urlsplit(url.strip()).path.rstrip("/").rsplit("/", 1)[-1] or None
                if value:
                    break
        else:
            value = None
        if not value:
            raise InvalidInput("the alert has no id (properties.id, or the Feature id URL)", field)
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise InvalidInput(f"id must be a string of 1-{MAX_ID_LEN} characters without whitespace", field)
    return value


def _vocab(value: Any, words: tuple[str, ...]) -> str:
    """A CAP enumeration value, normalised to its canonical spelling; anything
    missing or unknown is ``"Unknown"``."""
    if isinstance(value, str):
        for w in words:
            if value.strip().lower() == w.lower():
                return w
    return "Unknown"


def _strings(value: Any, field: str) -> tuple[str, ...]:
    """A list of strings (null/missing → empty), duplicates dropped, order kept."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise InvalidInput("must be a list of strings", field)
    out: dict[str, None] = {}
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidInput("must be a list of strings", f"{field}[{i}]")
        item = item.strip()
        if item:
            out.setdefault(item, None)
    return tuple(out)


def _references(value: Any, field: str) -> tuple[Reference, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidInput("references must be a list", field)
    refs: list[Reference] = []
    for i, item in enumerate(value):
        here = f"{field}[{i}]"
        if not isinstance(item, dict):
            raise InvalidInput("each reference must be an object", here)
        ref_id = item.get("identifier")
        if not (isinstance(ref_id, str) and ref_id.strip()):
            url = item.get("@id")
            ref_id = urlsplit(url.strip()).path.rstrip("/").rsplit("/", 1)[-1] if isinstance(url, str) else None
        if not ref_id or not _ID_RE.match(ref_id.strip()):
            raise InvalidInput("reference has no usable identifier", f"{here}.identifier")
        sent = item.get("sent")
        refs.append(Reference(ref_id.strip(), None if sent is None else parse_timestamp(sent, field=f"{here}.sent")))
    # Oldest first, unknown times last, ties by id: the same chain listed in
    # any order gives the same tuple (and so the same lineage root).
    refs.sort(key=lambda r: (r.sent is None, r.sent or 0.0, r.id))
    seen: set[str] = set()
    unique = []
    for r in refs:
        if r.id not in seen:
            seen.add(r.id)
            unique.append(r)
    return tuple(unique)


# ---------------------------------------------------------------- lifecycle
def classify(alert: Alert, now: float, *, skew_s: float = 300.0) -> Verdict:
    """What to do with ``alert`` at ``now`` (epoch seconds).

    Cancellations, expirations, upgrades and all-clears end the lineage even
    when ``messageType`` says ``Alert`` and ``ends`` is in the future: they
    never push. An alert is actionable from ``effective`` (else ``sent``;
    ``skew_s`` tolerates clocks slightly behind the sender's) until ``ends``
    (else ``expires``).
    """
    if alert.status != "Actual":
        return Verdict("ignore", "not_actual")
    if alert.message_type == "Cancel":
        return Verdict("end_lineage", "cancelled")
    for action in alert.vtec_actions:
        if action in _ENDING_ACTIONS:
            return Verdict("end_lineage", _ENDING_ACTIONS[action])
    if alert.response == "AllClear":
        return Verdict("end_lineage", "all_clear")
    end = alert.end_time()
    if end is not None and end <= now:
        return Verdict("ignore", "ended")
    if alert.start_time() > now + skew_s:
        return Verdict("ignore", "not_yet_effective")
    return Verdict("push", None)


def lineage_root(alert: Alert) -> str:
    """The lineage an alert belongs to: the earliest alert of its
    ``references`` chain, else the alert itself."""
    return alert.references[0].id if alert.references else alert.id
