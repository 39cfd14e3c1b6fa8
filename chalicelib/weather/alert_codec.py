"""An :class:`~chalicelib.weather.alerts.Alert` as compact JSON and back: what
the alert queue carries from the intake to the planner (only the parsed
fields, not the feed's descriptions, so a message stays small).

>>> from chalicelib.weather.alerts import parse_alert
>>> a = parse_alert({"type": "Feature", "geometry": None, "properties": {
...     "id": "x1", "event": "Flood Watch", "status": "Actual", "messageType": "Update",
...     "sent": "2025-01-01T00:00:00Z", "references": [{"identifier": "x0"}]}})
>>> alert_from_json(json.loads(json.dumps(alert_to_json(a)))) == a
True
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from chalicelib.weather.alerts import Alert, Reference

_TUPLES = ("same", "ugc", "affected_zones", "vtec", "vtec_actions")
_FIELDS = {f.name for f in dataclasses.fields(Alert)}


def alert_to_json(alert: Alert) -> dict[str, Any]:
    """The alert's fields as a JSON-ready dict."""
    out = {f: getattr(alert, f) for f in _FIELDS}
    for name in _TUPLES:
        out[name] = list(out[name])
    out["references"] = [[r.id, r.sent] for r in alert.references]
    out["infos"] = [dict(i) for i in alert.infos]
    return out


#: Fields added later, with defaults: messages written before them still decode.
_OPTIONAL = frozenset({"sender", "infos"})


def alert_from_json(data: Any) -> Alert:
    """The alert back; ValueError for anything :func:`alert_to_json` did not write."""
    if not isinstance(data, dict) or not (_FIELDS - _OPTIONAL) <= set(data) <= _FIELDS:
        raise ValueError("not an encoded alert")
    kw = dict(data)
    for name in _TUPLES:
        kw[name] = tuple(kw[name])
    if "infos" in kw:
        if not isinstance(kw["infos"], list) or not all(isinstance(i, dict) for i in kw["infos"]):
            raise ValueError("not an encoded alert")
        kw["infos"] = tuple(kw["infos"])
    kw["references"] = tuple(Reference(str(i), None if s is None else float(s)) for i, s in kw["references"])
    return Alert(**kw)
