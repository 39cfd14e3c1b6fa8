"""CAP 1.2 (OASIS Common Alerting Protocol) documents → :class:`CapAlert`,
and a CapAlert → the :class:`~chalicelib.weather.alerts.Alert` the intake and
the planner already know (pure, no I/O).

What real national services send, and how it is read here:

* the root is ``<alert>`` in the CAP 1.2 namespace, or a non-standard
  ``<alerts>`` wrapper holding several (SMHI): :func:`parse_cap` gives a list;
* only CAP-namespace children are read, never descendants: XML signatures
  inside ``<alert>`` carry look-alike elements in other namespaces;
* element order is not trusted (some senders put ``<status>`` last);
* ``references`` are whitespace-separated ``sender,identifier,sent``
  triples; a reference to the alert's own identifier (seen in the wild) is
  dropped; a triple without three parts is refused (it decides lineages);
* every ``<info>`` block is kept, with its language (missing → ``en-US``,
  the CAP default); the alert-level event, severity, times come from the
  English block, else the first;
* ``status`` other than ``Actual`` and ``msgType`` ``Ack``/``Error`` never
  push (:func:`ignore_reason`);
* times with ``-00:00`` are UTC.

Required (else :class:`InvalidInput` naming ``alert.<element>``):
identifier, sender, sent, status, msgType.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element, tostring

from chalicelib.errors import InvalidInput
from chalicelib.timeutil import parse_timestamp
from chalicelib.weather.alerts import CERTAINTIES, SEVERITIES, URGENCIES, Alert, Reference, _vocab, is_alert_id
from chalicelib.weather.cap_xml import CAP_NS, children, local, parse_xml, text

STATUSES = ("Actual", "Exercise", "System", "Test", "Draft")
MSG_TYPES = ("Alert", "Update", "Cancel", "Ack", "Error")
#: A wrapper (``<alerts>``) may hold at most this many alerts.
MAX_ALERTS = 100
#: Limits on what one alert may carry (a real DWD alert: 8 infos x 1,352 areas).
MAX_INFOS = 64
MAX_AREAS = 20_000
MAX_TEXT = 20_000
DEFAULT_LANGUAGE = "en-US"


@dataclass(frozen=True)
class CapArea:
    """One ``<area>`` as written: the geometry is resolved by
    :mod:`chalicelib.weather.cap_area`."""

    desc: str
    polygons: tuple[str, ...]
    circles: tuple[str, ...]
    geocodes: tuple[tuple[str, str], ...]  # (valueName, value)


@dataclass(frozen=True)
class CapInfo:
    """One ``<info>`` block: the texts in one language, and its areas."""

    language: str
    event: str
    headline: str | None
    description: str | None
    instruction: str | None
    severity: str
    urgency: str
    certainty: str
    sender_name: str | None
    web: str | None
    response_types: tuple[str, ...]
    effective: float | None
    onset: float | None
    expires: float | None
    areas: tuple[CapArea, ...]

    def texts(self) -> dict[str, str | None]:
        """The texts templates show (``alert.*``), in this block's language."""
        return {"language": self.language, "event": self.event, "headline": self.headline,
                "description": self.description, "instruction": self.instruction,
                "severity": self.severity, "urgency": self.urgency, "certainty": self.certainty,
                "sender_name": self.sender_name, "web": self.web}


@dataclass(frozen=True)
class CapAlert:
    """One CAP alert message."""

    identifier: str
    sender: str
    sent: float
    status: str
    msg_type: str
    references: tuple[Reference, ...]
    infos: tuple[CapInfo, ...]
    fingerprint: str

    def primary(self) -> CapInfo | None:
        """The block alert-level fields come from: the first English block
        still in force, else the first block in force."""
        active = [i for i in self.infos if "AllClear" not in i.response_types] or list(self.infos)
        for info in active:
            if info.language.lower().split("-")[0] == "en":
                return info
        return active[0] if active else None

    def areas(self) -> tuple[CapArea, ...]:
        """Every area of every block still in force, each distinct one once
        (language blocks repeat the same areas). A message that clears some
        events and keeps others (ECCC) keeps the areas of the latter; one
        that clears everything keeps all (the area it clears)."""
        active = [i for i in self.infos if "AllClear" not in i.response_types] or list(self.infos)
        seen: dict[CapArea, None] = {}
        for info in active:
            for area in info.areas:
                seen.setdefault(area, None)
        return tuple(seen)

    def all_clear(self) -> bool:
        """Every block says ``responseType`` AllClear (a message mixing a
        cleared event with one still in force is not an all-clear)."""
        return bool(self.infos) and all("AllClear" in i.response_types for i in self.infos)


def ignore_reason(alert: CapAlert) -> str | None:
    """Why a CAP message never pushes, or ``None``: not ``Actual``
    (``status_test``, ``status_exercise``, ...), or an ``Ack``/``Error``."""
    if alert.status != "Actual":
        return f"status_{alert.status.lower()}"
    if alert.msg_type in ("Ack", "Error"):
        return f"msg_type_{alert.msg_type.lower()}"
    return None


# ---------------------------------------------------------------- parsing
def parse_cap(body: bytes | str) -> list[CapAlert]:
    """A CAP document (one ``<alert>``, or an ``<alerts>`` wrapper) → its alerts.
    Raises :class:`InvalidInput` naming ``body`` or ``alert.<element>``
    (``alerts[3].sent`` inside a wrapper)."""
    root = parse_xml(body)
    if root.tag == f"{{{CAP_NS}}}alert":
        return [parse_alert_element(root, raw=_raw(body))]
    if root.tag == f"{{{CAP_NS}}}alerts":
        items = children(root, "alert")
        if not items:
            raise InvalidInput("the <alerts> wrapper holds no CAP <alert>", "body")
        if len(items) > MAX_ALERTS:
            raise InvalidInput(f"at most {MAX_ALERTS} alerts per document (got {len(items)})", "body")
        return [parse_alert_element(el, prefix=f"alerts[{i}]") for i, el in enumerate(items)]
    ns = root.tag[1:].split("}")[0] if root.tag.startswith("{") else ""
    raise InvalidInput(f"expected a CAP 1.2 <alert> (namespace {CAP_NS}); got <{local(root.tag)}>"
                       + (f" in namespace {ns}" if ns else " without a namespace"), "body")


def _raw(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def parse_alert_element(el: Element, *, prefix: str = "alert", raw: bytes | None = None) -> CapAlert:
    """One ``<alert>`` element → :class:`CapAlert`."""
    def required(name: str, max_len: int = 256) -> str:
        value = text(el, name)
        if value is None:
            raise InvalidInput(f"<{name}> is required", f"{prefix}.{name}")
        if len(value) > max_len:
            raise InvalidInput(f"<{name}> is longer than {max_len} characters", f"{prefix}.{name}")
        return value

    identifier = required("identifier")
    if not is_alert_id(identifier):
        raise InvalidInput("<identifier> must be 1-256 characters without whitespace", f"{prefix}.identifier")
    sender = required("sender")
    sent = parse_timestamp(required("sent", 40), field=f"{prefix}.sent")
    status = _enum(required("status", 40), STATUSES, f"{prefix}.status")
    msg_type = _enum(required("msgType", 40), MSG_TYPES, f"{prefix}.msgType")
    refs = parse_references(text(el, "references") or "", identifier, f"{prefix}.references")
    info_els = children(el, "info")
    if len(info_els) > MAX_INFOS:
        raise InvalidInput(f"at most {MAX_INFOS} <info> blocks (got {len(info_els)})", f"{prefix}.info")
    infos = tuple(_info(i_el, f"{prefix}.info[{n}]") for n, i_el in enumerate(info_els))
    n_areas = sum(len(i.areas) for i in infos)
    if n_areas > MAX_AREAS:
        raise InvalidInput(f"at most {MAX_AREAS} <area> elements (got {n_areas})", f"{prefix}.info")
    digest = hashlib.sha256(raw if raw is not None else tostring(el)).hexdigest()
    return CapAlert(identifier, sender, sent, status, msg_type, refs, infos, digest)


def _enum(value: str, words: tuple[str, ...], field: str) -> str:
    for w in words:
        if value.lower() == w.lower():
            return w
    raise InvalidInput(f"must be one of {', '.join(words)} (got {value[:40]!r})", field)


def parse_references(value: str, own_id: str, field: str) -> tuple[Reference, ...]:
    """``sender,identifier,sent`` triples separated by whitespace → the
    references, oldest first, own identifier and duplicates dropped."""
    refs: dict[str, Reference] = {}
    for n, triple in enumerate(value.split()):
        parts = triple.split(",")
        if len(parts) != 3 or not all(p.strip() for p in parts):
            raise InvalidInput(f"reference {n} is not a sender,identifier,sent triple", field)
        ref_id = parts[1].strip()
        if not is_alert_id(ref_id):
            raise InvalidInput(f"reference {n} has no usable identifier", field)
        if ref_id == own_id:
            continue  # self-references happen (Alertswiss, Macao): no lineage to follow
        refs.setdefault(ref_id, Reference(ref_id, parse_timestamp(parts[2].strip(), field=field)))
    return tuple(sorted(refs.values(), key=lambda r: (r.sent or 0.0, r.id)))


def _info(el: Element, where: str) -> CapInfo:
    def opt(name: str, max_len: int = MAX_TEXT) -> str | None:
        value = text(el, name)
        if value is not None and len(value) > max_len:
            raise InvalidInput(f"<{name}> is longer than {max_len} characters", f"{where}.{name}")
        return None if value is None else " ".join(value.split()) if max_len <= 1000 else value

    def when(name: str) -> float | None:
        value = text(el, name)
        return None if value is None else parse_timestamp(value, field=f"{where}.{name}")

    event = opt("event", 500)
    if event is None:
        raise InvalidInput("<event> is required", f"{where}.event")
    return CapInfo(
        language=opt("language", 35) or DEFAULT_LANGUAGE,
        event=event,
        headline=opt("headline", 1000),
        description=opt("description"),
        instruction=opt("instruction"),
        severity=_vocab(text(el, "severity"), SEVERITIES),
        urgency=_vocab(text(el, "urgency"), URGENCIES),
        certainty=_vocab(text(el, "certainty"), CERTAINTIES),
        sender_name=opt("senderName", 1000),
        web=opt("web", 1000),
        response_types=tuple(r.text.strip() for r in children(el, "responseType") if r.text and r.text.strip()),
        effective=when("effective"),
        onset=when("onset"),
        expires=when("expires"),
        areas=tuple(_area(a, f"{where}.area[{n}]") for n, a in enumerate(children(el, "area"))),
    )


def _area(el: Element, where: str) -> CapArea:
    def texts(name: str) -> tuple[str, ...]:
        return tuple(t for t in (" ".join((c.text or "").split()) for c in children(el, name)) if t)

    geocodes = []
    for g in children(el, "geocode"):
        name, value = text(g, "valueName"), text(g, "value")
        if name and value:
            geocodes.append((name, value))
    return CapArea(desc=" ".join((text(el, "areaDesc") or "").split())[:1000], polygons=texts("polygon"),
                   circles=texts("circle"), geocodes=tuple(geocodes))


# ---------------------------------------------------------------- to the weather model
def to_alert(alert: CapAlert, geometry: dict[str, Any] | None, same: tuple[str, ...] = ()) -> Alert:
    """The :class:`Alert` the intake and planner take: alert-level fields
    from :meth:`CapAlert.primary`, ``geometry`` the resolved area (GeoJSON,
    lng/lat) or ``None``, ``same`` the SAME codes left for the county path."""
    info = alert.primary()
    descs = {a.desc for a in (info.areas if info else ()) if a.desc}
    return Alert(
        id=alert.identifier,
        event=info.event if info else alert.msg_type,
        status=alert.status,
        message_type=alert.msg_type,
        severity=info.severity if info else "Unknown",
        urgency=info.urgency if info else "Unknown",
        certainty=info.certainty if info else "Unknown",
        sent=alert.sent,
        effective=info.effective if info else None,
        onset=info.onset if info else None,
        expires=info.expires if info else None,
        ends=None,
        headline=info.headline if info else None,
        area_desc="; ".join(sorted(descs))[:20_000],
        sender_name=info.sender_name if info else None,
        response="AllClear" if alert.all_clear() else None,
        same=same,
        ugc=(),
        affected_zones=(),
        references=alert.references,
        vtec=(),
        vtec_actions=(),
        geometry=geometry,
        fingerprint=alert.fingerprint,
        sender=alert.sender,
        infos=tuple(i.texts() for i in alert.infos),
    )


__all__ = ["CapAlert", "CapInfo", "CapArea", "parse_cap", "parse_alert_element", "parse_references",
           "ignore_reason", "to_alert", "STATUSES", "MSG_TYPES"]
