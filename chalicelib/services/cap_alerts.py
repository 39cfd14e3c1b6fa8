"""The CAP 1.2 intake: one CAP document (``application/cap+xml`` or
``application/xml``) → the same asynchronous intake as NWS alerts
(:func:`chalicelib.services.weather.take_alerts`), answered per alert like
the NWS path.

Per alert, before the shared intake:

* ``msgType`` ``Ack`` / ``Error`` → ``ignored`` (``msg_type_ack`` …): they
  are not warnings;
* an alert that would push has its area resolved here
  (:mod:`chalicelib.weather.cap_area`: polygons, circles, EMMA_ID and SAME
  geocodes) and travels to the planner as a polygon; the answer's ``area``
  lists the ``<area>`` elements that yielded nothing and the repairs made.
  When nothing resolves, the planner records ``unresolved_area``
  (``GET /v1/weather/alerts/{id}``), as for an NWS alert without geometry;
* cancellations, all-clears, ``status`` other than ``Actual``, ended or
  not-yet-effective alerts need no area and are judged by the shared
  lifecycle (:func:`chalicelib.weather.alerts.classify`).

A document that is not well-formed, DTD-free CAP is refused whole (400,
field ``body`` or ``alert.<element>``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shapely.geometry import mapping

from chalicelib.errors import InvalidInput
from chalicelib.services.weather import take_alerts
from chalicelib.weather.alerts import Alert, classify
from chalicelib.weather.cap import CapAlert, parse_cap, to_alert
from chalicelib.weather.cap_area import CapAreaResolver

if TYPE_CHECKING:
    from chalicelib.services.deps import Deps

#: Content types routed to this intake.
CAP_MEDIA_TYPES = ("application/cap+xml", "application/xml", "text/xml")
#: Unresolved areas and repair notes listed per answer (the rest counted).
MAX_LISTED = 20

_RESOLVER = CapAreaResolver()


def post_cap(deps: Deps, body: bytes, resolver: CapAreaResolver | None = None) -> dict:
    """Take one CAP document (an ``<alert>``, or an ``<alerts>`` wrapper);
    → ``{"alerts": [...]}``, one answer per alert in document order."""
    caps = parse_cap(body)
    resolver = resolver or _RESOLVER
    now = deps.clock()
    answers: list[dict[str, Any] | None] = []
    taking: list[Alert | InvalidInput] = []
    area_info: list[dict[str, Any] | None] = []
    for index, cap in enumerate(caps):
        if cap.msg_type in ("Ack", "Error"):
            answers.append({"index": index, "id": cap.identifier, "status": "ignored",
                            "reason": f"msg_type_{cap.msg_type.lower()}"})
            continue
        alert, info = _alert(cap, now, resolver)
        answers.append(None)
        taking.append(alert)
        area_info.append(info)
    taken = take_alerts(deps, taking)["alerts"] if taking else []
    it = iter(zip(taken, area_info))
    out = []
    for index, answer in enumerate(answers):
        if answer is None:
            result, info = next(it)
            answer = {**result, "index": index}
            if info is not None and answer.get("status") == "accepted":
                answer["area"] = info
        out.append(answer)
    return {"alerts": out}


def _alert(cap: CapAlert, now: float, resolver: CapAreaResolver) -> tuple[Alert, dict[str, Any] | None]:
    """The alert to take, its area resolved only when it would push."""
    bare = to_alert(cap, None)
    if classify(bare, now).action != "push":
        return bare, None
    result = resolver.resolve(cap.areas())
    geometry = None if result.geometry is None else _geojson(mapping(result.geometry))
    info: dict[str, Any] = {
        "resolved": geometry is not None,
        "unresolved": [{"area": d[:200], "reason": r[:300]} for d, r in result.unresolved[:MAX_LISTED]],
        "notes": [n[:300] for n in result.notes[:MAX_LISTED]],
    }
    if len(result.unresolved) > MAX_LISTED:
        info["unresolved_more"] = len(result.unresolved) - MAX_LISTED
    if len(result.notes) > MAX_LISTED:
        info["notes_more"] = len(result.notes) - MAX_LISTED
    return to_alert(cap, geometry), info


def _geojson(obj: Any) -> Any:
    """shapely's mapping (tuples) → plain lists, as the queue's JSON will carry it."""
    if isinstance(obj, (list, tuple)):
        return [_geojson(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _geojson(v) for k, v in obj.items()}
    return obj


__all__ = ["CAP_MEDIA_TYPES", "post_cap"]
