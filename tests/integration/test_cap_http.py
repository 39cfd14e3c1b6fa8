"""CAP 1.2 over HTTP through chalice.test.Client over moto: the content
types that route to the CAP intake, a real alert answered per alert, and
hostile XML refused with the documented error body."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.conftest import ADMIN_KEY
from tests.integration.test_error_shape import err, post

CAP = Path(__file__).resolve().parents[1] / "fixtures" / "cap"


@pytest.mark.parametrize("content_type", ["application/cap+xml", "application/xml", "text/xml; charset=utf-8"])
def test_a_cap_document_is_answered_per_alert(api, content_type):
    raw = (CAP / "CH__KDE_foss-public-alert-server__alertswiss-TEST-1163.xml").read_bytes()
    r = post(api, "/v1/weather/alerts", raw, content_type)
    assert r.status_code == 202, r.body
    [answer] = json.loads(r.body)["alerts"]
    assert (answer["index"], answer["status"], answer["reason"]) == (0, "ignored", "not_actual")


def shifted(raw: bytes, now: float) -> bytes:
    """The IMGW alert with its times moved to around ``now`` (sent 1 h ago,
    onset in 1 h, expiring in 6 h)."""
    def at(offset_s: float) -> str:
        return datetime.fromtimestamp(now + offset_s, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")

    text = raw.decode("utf-8")
    for old, offset in (("2026-02-18T06:42:00+01:00", -3600), ("2026-02-18T18:00:00+01:00", 3600),
                        ("2026-02-19T00:00:00+01:00", 6 * 3600)):
        assert old in text
        text = text.replace(old, at(offset))
    return text.encode("utf-8")


def test_a_real_warning_is_accepted_with_its_area(api):
    raw = shifted((CAP / "PL__aule83-glitch_meteo-cap__CAP_example_poland.xml").read_bytes(), time.time())
    r = post(api, "/v1/weather/alerts", raw, "application/cap+xml")
    assert r.status_code == 202, r.body
    [answer] = json.loads(r.body)["alerts"]
    assert answer["id"].startswith("2.49.0.0.616.0.PL.") and answer["status"] == "accepted", answer
    assert answer["area"] == {"resolved": True, "unresolved": [], "notes": []}
    r = api.http.get(f"/v1/weather/alerts/{answer['id']}", headers={"X-Api-Key": ADMIN_KEY})
    assert r.status_code == 200 and json.loads(r.body)["status"] in ("queued", "planning", "processed")


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><alert>&b;</alert>',
    b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">&x;</alert>',
    b"<alert", b"",
])
def test_hostile_or_broken_xml_is_400_naming_body(api, body):
    r = post(api, "/v1/weather/alerts", body, "application/cap+xml")
    assert r.status_code == 400
    e = err(r)
    assert e["field"] == "body" and e["code"] == "invalid_input"


def test_an_oversized_document_is_413(api):
    r = post(api, "/v1/weather/alerts", b"<a>" + b" " * (5 * 1024 * 1024) + b"</a>", "application/cap+xml")
    assert r.status_code == 413 and err(r)["field"] == "body"
