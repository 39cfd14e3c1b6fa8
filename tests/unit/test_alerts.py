"""NWS alert parsing and lifecycle on real api.weather.gov output: the
labelled samples, two national ``/alerts/active`` bundles (relative times
resolved against their capture instant), the older pynws captures and
hand-made edge cases."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.errors import InvalidInput
from chalicelib.timeutil import iso
from chalicelib.weather.alerts import (
    SEVERITIES,
    Alert,
    Reference,
    Verdict,
    classify,
    lineage_root,
    parse_alerts,
)

NWS = Path(__file__).resolve().parent.parent / "fixtures" / "nws"
SAMPLES = json.loads((NWS / "nws_alert_samples_resolved.json").read_text())["samples"]


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# ---------------------------------------------------------------- the test helper for relative times
_RELATIVE = re.compile(r"^date:now ([+-]\d+) (second|minute|hour|day)s?$")
_UNIT_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def resolve_relative(obj, anchor: float):
    """Rewrite the weather.gov proxy's replay times (``"date:now -2 minutes"``,
    ``"date:now +1755 seconds"``) to absolute RFC 3339 against ``anchor``;
    any other ``date:`` form fails loudly instead of slipping through."""
    if isinstance(obj, dict):
        return {k: resolve_relative(v, anchor) for k, v in obj.items()}
    if isinstance(obj, list):
        return [resolve_relative(v, anchor) for v in obj]
    if isinstance(obj, str) and obj.startswith("date:"):
        m = _RELATIVE.match(obj)
        if not m:
            raise ValueError(f"unsupported relative time {obj!r}")
        return iso(anchor + int(m.group(1)) * _UNIT_S[m.group(2)])
    return obj


def test_resolve_relative_rewrites_only_replay_times():
    anchor = ts("2025-12-15T21:55:00Z")
    got = resolve_relative({"a": ["date:now -2 minutes", "date:now +1755 seconds", "2019-12-20T13:34:00-08:00", 3]}, anchor)
    assert got == {"a": ["2025-12-15T21:53:00Z", "2025-12-15T22:24:15Z", "2019-12-20T13:34:00-08:00", 3]}
    with pytest.raises(ValueError):
        resolve_relative("date:today 14:00:-5h", anchor)


# The capture instants, from the file names.
BUNDLES = {
    "northwest": ("weathergov__alerts_active_national_2025-12-15T2155Z_northwest-bundle.json", "2025-12-15T21:55:00Z"),
    "guam-7day": ("weathergov__alerts_active_national_2026-05-14T1635Z_guam-7day-bundle.json", "2026-05-14T16:35:00Z"),
}


@pytest.fixture(scope="module", params=sorted(BUNDLES))
def bundle(request):
    name = request.param
    path, anchor = BUNDLES[name]
    now = ts(anchor)
    raw = json.loads((NWS / path).read_text())
    body = resolve_relative(raw, now)
    return name, now, raw, body, parse_alerts(body)


def sample(label: str, n: int = 0) -> tuple[dict, float]:
    s = [s for s in SAMPLES if s["label"] == label][n]
    return copy.deepcopy(s["feature"]), ts(s["anchor_utc"])


def one(feature: dict) -> Alert:
    [item] = parse_alerts(feature)
    assert isinstance(item, Alert), item
    return item


# ---------------------------------------------------------------- the labelled samples
EXPECTED = {  # label → verdict at the sample's anchor (its bundle's capture instant)
    "flash_flood_warning_polygon_update": Verdict("push", None),
    "winter_storm_warning_null_geometry": Verdict("push", None),
    "high_wind_warning_chugach_same_002063": Verdict("push", None),
    "hydrologic_outlook_american_samoa": Verdict("push", None),
    "severe_thunderstorm_warning_polygon": Verdict("push", None),
    "special_marine_warning_polygon": Verdict("push", None),
    "civil_emergency_message_non_nws_id": Verdict("push", None),
    "air_quality_alert_null_geometry_unknown_severity": Verdict("push", None),
    "exact_duplicate_feature_pair": Verdict("push", None),
    "coastal_flood_advisory_sonoma_same": Verdict("push", None),
    "cancelled_vtec_can_allclear_still_in_active": Verdict("end_lineage", "cancelled"),
    "vtec_upg_upgraded_watch_still_in_active": Verdict("end_lineage", "upgraded"),
    "expires_in_past_but_ends_future": Verdict("push", None),
}


def test_every_sample_label_has_an_expectation():
    assert {s["label"] for s in SAMPLES} == set(EXPECTED)


@pytest.mark.parametrize("index", range(len(SAMPLES)), ids=[f"{i}-{s['label']}" for i, s in enumerate(SAMPLES)])
def test_sample_parses_and_classifies_at_its_anchor(index):
    s = SAMPLES[index]
    alert = one(s["feature"])
    assert alert.id == s["feature"]["properties"]["id"]
    assert alert.status == "Actual"
    assert classify(alert, ts(s["anchor_utc"])) == EXPECTED[s["label"]]
    # Whatever it is, it is over once its end time has passed.
    if alert.end_time() is not None and EXPECTED[s["label"]].action == "push":
        assert classify(alert, alert.end_time()) == Verdict("ignore", "ended")


def test_polygon_update_keeps_geometry_and_roots_its_lineage_at_the_oldest_reference():
    feature, now = sample("flash_flood_warning_polygon_update")
    alert = one(feature)
    assert alert.message_type == "Update" and alert.severity == "Severe" and alert.urgency == "Immediate"
    assert alert.geometry == feature["geometry"] and alert.geometry["type"] == "Polygon"
    assert alert.vtec == ("/O.CON.KSEW.FF.W.0001.000000T0000Z-251216T0500Z/",) and alert.vtec_actions == ("CON",)
    # "2025-12-15T11:51:00-08:00": offsets are honoured.
    assert alert.references[0] == Reference("urn:oid:2.49.0.1.840.0.63a42e39f3aa3d224af13646ee40a935639cefa6.001.1",
                                            ts("2025-12-15T19:51:00Z"))
    assert lineage_root(alert) == alert.references[0].id
    assert alert.same == ("053033",) and alert.ugc == ("WAC033",)
    assert alert.affected_zones == ("https://api.weather.gov/zones/county/WAC033",)


def test_cancellation_listed_as_an_alert_with_a_future_end_never_pushes():
    for n in range(2):
        feature, now = sample("cancelled_vtec_can_allclear_still_in_active", n)
        alert = one(feature)
        assert alert.message_type == "Alert" and alert.response == "AllClear" and alert.ends > now
        assert classify(alert, now).action == "end_lineage"
        # Even without the AllClear response, the VTEC action alone ends it …
        bare = copy.deepcopy(feature)
        bare["properties"]["response"] = "Monitor"
        assert classify(one(bare), now) == Verdict("end_lineage", "cancelled")
        # … and without VTEC, the AllClear alone does.
        del bare["properties"]["parameters"]["VTEC"]
        bare["properties"]["response"] = "AllClear"
        assert classify(one(bare), now) == Verdict("end_lineage", "all_clear")


def test_expires_in_the_past_is_not_the_end_when_ends_is_later():
    feature, now = sample("expires_in_past_but_ends_future")
    alert = one(feature)
    assert alert.expires < now < alert.ends
    assert alert.end_time() == alert.ends
    assert classify(alert, now).action == "push"


def test_missing_ends_falls_back_to_expires():
    feature, now = sample("hydrologic_outlook_american_samoa")
    assert "ends" not in feature["properties"]
    alert = one(feature)
    assert alert.ends is None and alert.end_time() == alert.expires
    assert classify(alert, alert.expires) == Verdict("ignore", "ended")
    feature["properties"]["ends"] = None  # what the live API sends
    assert one(feature).end_time() == alert.expires


def test_non_nws_ipaws_id_and_missing_optional_fields():
    feature, now = sample("civil_emergency_message_non_nws_id")
    alert = one(feature)
    assert alert.id.startswith("IINFO_")
    assert alert.onset is None and alert.ends is None and alert.response is None
    assert alert.vtec == () and alert.references == ()
    assert lineage_root(alert) == alert.id


def test_unknown_severity_urgency_certainty_stay_unknown():
    feature, _ = sample("air_quality_alert_null_geometry_unknown_severity")
    alert = one(feature)
    assert (alert.severity, alert.urgency, alert.certainty) == ("Unknown", "Unknown", "Unknown")
    assert alert.geometry is None


def test_the_duplicate_pair_has_one_id_and_one_fingerprint():
    (a, _), (b, _) = sample("exact_duplicate_feature_pair", 0), sample("exact_duplicate_feature_pair", 1)
    [x, y] = parse_alerts({"type": "FeatureCollection", "features": [a, b]})
    assert x.id == y.id and x.fingerprint == y.fingerprint
    # Key order and whitespace do not change the fingerprint; content does.
    reordered = json.loads(json.dumps(dict(reversed(list(a.items())))))
    assert one(reordered).fingerprint == x.fingerprint
    a["properties"]["headline"] += "."
    assert one(a).fingerprint != x.fingerprint


def test_upgrade_and_cancel_of_one_product_are_distinct_alerts():
    can = one(sample("cancelled_vtec_can_allclear_still_in_active", 0)[0])
    upg = one(sample("vtec_upg_upgraded_watch_still_in_active")[0])
    assert can.id != upg.id and can.vtec_actions == ("CAN",) and upg.vtec_actions == ("UPG",)


# ---------------------------------------------------------------- the national bundles
# Measured: every feature parses; verdicts per reason at the capture instant.
BUNDLE_VERDICTS = {
    "northwest": {("push", None): 525, ("end_lineage", "cancelled"): 2, ("end_lineage", "expired"): 1,
                  ("end_lineage", "upgraded"): 1},
    "guam-7day": {("push", None): 245, ("end_lineage", "upgraded"): 1},
}
BUNDLE_SIZES = {"northwest": 529, "guam-7day": 246}


def test_bundle_every_feature_parses(bundle):
    name, now, raw, body, items = bundle
    assert len(items) == BUNDLE_SIZES[name] == len(raw["features"])
    assert [type(i) for i in items if not isinstance(i, Alert)] == []
    assert [a.id for a in items] == [f["properties"]["id"] for f in body["features"]]
    assert all(a.id.startswith("urn:oid:2.49.0.1.840.0.") for a in items)


def test_bundle_verdict_counts(bundle):
    name, now, raw, body, items = bundle
    counts = Counter(dataclasses.astuple(classify(a, now)) for a in items)
    assert dict(counts) == BUNDLE_VERDICTS[name]


def test_bundle_cancellations_upgrades_expirations_never_push(bundle):
    name, now, raw, body, items = bundle
    ending = [a for a in items if set(a.vtec_actions) & {"CAN", "UPG", "EXP"} or a.response == "AllClear"]
    assert ending, "each bundle holds at least one"
    for a in ending:
        for t in (now - 86400, now, now + 86400):  # whatever the clock says
            assert classify(a, t).action == "end_lineage", a.id
    assert all(a.message_type != "Cancel" for a in ending)  # they hide behind Alert/Update


def test_bundle_expires_before_ends_alerts_still_push(bundle):
    name, now, raw, body, items = bundle
    late = [a for a in items if a.expires <= now < (a.ends or 0)]
    assert len(late) == {"northwest": 156, "guam-7day": 45}[name]  # 29% / 18% of the bundle
    for a in late:
        ending = bool(set(a.vtec_actions) & {"CAN", "UPG", "EXP"}) or a.response == "AllClear"
        assert classify(a, now).action == ("end_lineage" if ending else "push"), a.id


def test_bundle_ends_missing_or_null_falls_back_to_expires(bundle):
    name, now, raw, body, items = bundle
    no_ends = [a for a, f in zip(items, body["features"]) if f["properties"].get("ends") is None]
    assert len(no_ends) == {"northwest": 18, "guam-7day": 22}[name]
    assert all(a.end_time() == a.expires for a in no_ends)


def test_bundle_same_id_twice_gives_identical_fingerprints(bundle):
    name, now, raw, body, items = bundle
    by_id: dict[str, set[str]] = {}
    for a in items:
        by_id.setdefault(a.id, set()).add(a.fingerprint)
    assert all(len(fps) == 1 for fps in by_id.values())
    assert len(by_id) == len(items)  # measured: neither bundle repeats an id …
    # … so repeat one, as /alerts/active sometimes does: same id, same fingerprint.
    doubled = parse_alerts({"type": "FeatureCollection", "features": body["features"][:3] + body["features"][:1]})
    assert doubled[3].id == doubled[0].id and doubled[3].fingerprint == doubled[0].fingerprint


def test_bundle_references_are_sorted_and_roots_are_references(bundle):
    name, now, raw, body, items = bundle
    updates = [a for a in items if a.references]
    assert updates
    for a in updates:
        sents = [r.sent for r in a.references]
        assert sents == sorted(sents) and len({r.id for r in a.references}) == len(a.references)
        assert lineage_root(a) == a.references[0].id != a.id


# ---------------------------------------------------------------- pynws (2019) and Phoenix (2024) captures
def test_pynws_update_roots_at_the_earliest_reference_whatever_the_listed_order():
    body = json.loads((NWS / "pynws__alerts_active_zone.json").read_text())
    [alert] = parse_alerts(body)
    assert alert.id == "NWS-IDP-PROD-3965873-3369046" and alert.message_type == "Update"
    assert [r.id for r in alert.references] == [
        "NWS-IDP-PROD-3963421-3367361",  # 2019-12-18T12:29-08:00 (listed 4th)
        "NWS-IDP-PROD-3964821-3368352",
        "NWS-IDP-PROD-3965155-3368578",
        "NWS-IDP-PROD-3965324-3368680",
    ]
    assert lineage_root(alert) == "NWS-IDP-PROD-3963421-3367361"
    now = ts(body["updated"])
    assert classify(alert, now).action == "push"
    assert alert.expires < ts("2019-12-22T18:00:00Z") == alert.end_time()


def test_pynws_second_capture_keeps_properties_id_and_its_own_lineage():
    first = parse_alerts(json.loads((NWS / "pynws__alerts_active_zone.json").read_text()))[0]
    a, b = parse_alerts(json.loads((NWS / "pynws__alerts_active_zone_second.json").read_text()))
    assert a.id == first.id and a.fingerprint == first.fingerprint  # the same Feature, another capture
    # properties.id wins over the (stale) @id URL.
    assert b.id == "NWS-IDP-PROD-3965873-001"
    assert lineage_root(b) == "NWS-IDP-PROD-3963421-001"


def test_phoenix_heat_warning_update_and_county_air_quality_alert():
    body = json.loads((NWS / "nws_alerts_ha__alerts_active_point_phoenix.json").read_text())
    heat, aqa = parse_alerts(body)
    now = ts(body["updated"])
    assert heat.event == "Excessive Heat Warning" and heat.message_type == "Update"
    assert heat.expires < heat.onset < heat.ends  # expires can even precede onset
    assert classify(heat, now).action == "push" and heat.template_vars()["onset"] == "2024-07-19T17:00:00Z"
    assert lineage_root(heat) == "urn:oid:2.49.0.1.840.0.2852349b8f25500975c692db29cb2f047ff20a7c.004.2"
    assert aqa.severity == "Unknown" and aqa.ends is None and aqa.end_time() == aqa.expires
    assert aqa.references == () and aqa.same == ("004013",)


def test_a_count_reply_is_not_an_alert_body():
    with pytest.raises(InvalidInput) as exc:
        parse_alerts(json.loads((NWS / "nws_alerts_ha__alerts_active_count.json").read_text()))
    assert exc.value.field == "type"


# ---------------------------------------------------------------- parsing edge cases
def base_feature(**props) -> dict:
    p = {
        "id": "urn:oid:2.49.0.1.840.0.test.001.1", "event": "Winter Storm Warning", "status": "Actual",
        "messageType": "Alert", "severity": "Severe", "urgency": "Expected", "certainty": "Likely",
        "sent": "2026-01-10T12:00:00-06:00", "effective": "2026-01-10T12:00:00-06:00",
        "onset": "2026-01-10T21:00:00-06:00", "expires": "2026-01-11T00:00:00-06:00", "ends": "2026-01-11T12:00:00-06:00",
        "headline": "Winter Storm Warning issued", "areaDesc": "Somewhere", "senderName": "NWS Chicago IL",
        "response": "Prepare", "geocode": {"SAME": ["017031"], "UGC": ["ILZ014"]},
        "affectedZones": ["https://api.weather.gov/zones/forecast/ILZ014"], "references": [],
        "parameters": {"VTEC": ["/O.NEW.KLOT.WS.W.0003.260111T0300Z-260111T1800Z/"]},
    }
    p.update(props)
    return {"type": "Feature", "geometry": None, "properties": {k: v for k, v in p.items() if v is not ...}}


NOW = ts("2026-01-10T19:00:00Z")


def test_single_feature_and_collection_fields_are_named():
    assert isinstance(one(base_feature()), Alert)
    [err] = parse_alerts(base_feature(sent="yesterday"))
    assert isinstance(err, InvalidInput) and err.field == "properties.sent"
    items = parse_alerts({"type": "FeatureCollection", "features": [base_feature(), base_feature(sent=...),
                                                                     base_feature(ends="2026-01-11T12:00:00")]})
    assert isinstance(items[0], Alert)
    assert (items[1].field, items[2].field) == ("features[1].properties.sent", "features[2].properties.ends")


@pytest.mark.parametrize("props, field", [
    ({"id": ...}, "properties.id"),
    ({"id": "has space"}, "properties.id"),
    ({"id": "trailing-newline\n"}, "properties.id"),
    ({"id": 42}, "properties.id"),
    ({"event": ...}, "properties.event"),
    ({"event": "  "}, "properties.event"),
    ({"status": ...}, "properties.status"),
    ({"messageType": ...}, "properties.messageType"),
    ({"onset": "2026-13-01T00:00:00Z"}, "properties.onset"),
    ({"expires": True}, "properties.expires"),
    ({"geocode": ["017031"]}, "properties.geocode"),
    ({"geocode": {"SAME": [17031]}}, "properties.geocode.SAME[0]"),
    ({"affectedZones": "nope", "id": "x"}, None),  # a lone string is taken as a one-item list
    ({"references": [{"sender": "x"}]}, "properties.references[0].identifier"),
    ({"references": [{"identifier": "a", "sent": "soon"}]}, "properties.references[0].sent"),
    ({"parameters": "VTEC"}, "properties.parameters"),
])
def test_strict_where_we_cannot_act(props, field):
    [item] = parse_alerts(base_feature(**props))
    if field is None:
        assert isinstance(item, Alert)
    else:
        assert isinstance(item, InvalidInput) and item.field == field, item


def test_missing_properties_id_falls_back_to_the_feature_url():
    f = base_feature(id=...)
    f["id"] = "https://api.weather.gov/alerts/NWS-IDP-PROD-1-2"
    assert one(f).id == "NWS-IDP-PROD-1-2"
    f = base_feature(id=...)
    f["properties"]["@id"] = "https://api.weather.gov/alerts/urn:oid:2.49.0.1.840.0.abc.001.1"
    assert one(f).id == "urn:oid:2.49.0.1.840.0.abc.001.1"


def test_lenient_where_nws_is_messy():
    a = one(base_feature(geocode=None, affectedZones=None, references=None, parameters=None, headline=...,
                         senderName=None, severity="EXTREME", urgency="soon", certainty=..., areaDesc=..., ends=...))
    assert a.same == a.ugc == a.affected_zones == a.vtec == a.vtec_actions == () and a.references == ()
    assert (a.severity, a.urgency, a.certainty) == ("Extreme", "Unknown", "Unknown")
    assert a.headline is None and a.sender_name is None and a.area_desc == "" and a.ends is None
    assert a.severity in SEVERITIES


@pytest.mark.parametrize("body, field", [
    ([], "type"), ("x", "type"), ({"type": "Point", "coordinates": [0, 0]}, "type"),
    ({"type": "FeatureCollection"}, "features"), ({"type": "FeatureCollection", "features": {}}, "features"),
    ({"type": "FeatureCollection", "features": [{}] * 1001}, "features"),
])
def test_bodies_that_are_not_alerts_raise(body, field):
    with pytest.raises(InvalidInput) as exc:
        parse_alerts(body)
    assert exc.value.field == field


def test_bad_features_are_reported_one_by_one():
    items = parse_alerts({"type": "FeatureCollection", "features": [
        "x", {"type": "Point"}, {"type": "Feature", "properties": None}, base_feature(), {"type": "Feature",
        "geometry": [1, 2], "properties": base_feature()["properties"]}]})
    assert [getattr(i, "field", "ok") for i in items] == [
        "features[0]", "features[1].type", "features[2].properties", "ok", "features[4].geometry"]
    assert len(parse_alerts({"type": "FeatureCollection", "features": [base_feature()] * 1000})) == 1000


def test_references_sorted_deduplicated_unknown_times_last():
    refs = [
        {"identifier": "c", "sent": None},
        {"@id": "https://api.weather.gov/alerts/b", "sent": "2026-01-10T08:00:00-06:00"},
        {"identifier": "a", "sent": "2026-01-10T15:00:00Z"},
        {"identifier": "b", "sent": "2026-01-10T14:00:00Z"},
    ]
    a = one(base_feature(references=refs))
    assert a.references == (Reference("b", ts("2026-01-10T14:00:00Z")), Reference("a", ts("2026-01-10T15:00:00Z")),
                            Reference("c", None))
    assert lineage_root(a) == "b"
    assert one(base_feature(references=list(reversed(refs)))).references == a.references


def test_vtec_actions_parse_pvtec_and_skip_hvtec():
    a = one(base_feature(parameters={"VTEC": [
        "/O.EXP.KLOT.SC.Y.0113.000000T0000Z-251215T2200Z/", "/00000.0.ER.000000T0000Z.000000T0000Z.000000T0000Z.OO/"]}))
    assert a.vtec_actions == ("EXP",) and len(a.vtec) == 2
    assert classify(a, NOW) == Verdict("end_lineage", "expired")


@pytest.mark.parametrize("props, now, verdict", [
    ({}, NOW, Verdict("push")),
    ({"status": "Test"}, NOW, Verdict("ignore", "not_actual")),
    ({"status": "Exercise", "messageType": "Cancel"}, NOW, Verdict("ignore", "not_actual")),
    ({"messageType": "Cancel"}, NOW, Verdict("end_lineage", "cancelled")),
    ({"parameters": {"VTEC": ["/O.UPG.KLOT.WS.A.0003.260111T0300Z-260111T1800Z/"]}}, NOW, Verdict("end_lineage", "upgraded")),
    ({"response": "AllClear", "parameters": None}, NOW, Verdict("end_lineage", "all_clear")),
    ({}, ts("2026-01-11T18:00:00Z"), Verdict("ignore", "ended")),  # ends == now: over
    ({}, ts("2026-01-11T17:59:59Z"), Verdict("push")),  # past expires, before ends
    ({"ends": None}, ts("2026-01-11T06:00:00Z"), Verdict("ignore", "ended")),  # expires stands in
    ({}, ts("2026-01-10T17:55:00Z"), Verdict("push")),  # 5 min early: within the skew
    ({}, ts("2026-01-10T17:54:59Z"), Verdict("ignore", "not_yet_effective")),
    ({"effective": ...}, ts("2026-01-10T17:54:59Z"), Verdict("ignore", "not_yet_effective")),  # sent stands in
    ({"effective": "2026-01-10T20:00:00Z"}, NOW, Verdict("ignore", "not_yet_effective")),
])
def test_classify(props, now, verdict):
    assert classify(one(base_feature(**props)), now) == verdict


def test_onset_in_the_future_still_pushes_and_is_in_template_vars():
    a = one(base_feature())
    assert a.onset > NOW and classify(a, NOW).action == "push"
    assert a.template_vars() == {
        "id": "urn:oid:2.49.0.1.840.0.test.001.1", "event": "Winter Storm Warning", "headline": "Winter Storm Warning issued",
        "severity": "Severe", "urgency": "Expected", "certainty": "Likely", "area_desc": "Somewhere",
        "sender_name": "NWS Chicago IL", "onset": "2026-01-11T03:00:00Z", "effective": "2026-01-10T18:00:00Z",
        "ends": "2026-01-11T18:00:00Z", "expires": "2026-01-11T06:00:00Z"}
    assert one(base_feature(ends=None)).template_vars()["ends"] is None


times = st.floats(min_value=1.5e9, max_value=2.0e9, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(action=st.sampled_from(["CAN", "EXP", "UPG"]), message_type=st.sampled_from(["Alert", "Update", "Cancel"]),
       response=st.sampled_from([None, "Monitor", "AllClear"]), start=times, end=st.none() | times, now=times)
def test_ending_actions_never_push_whatever_the_times(action, message_type, response, start, end, now):
    a = dataclasses.replace(one(base_feature()), message_type=message_type, response=response, vtec_actions=(action,),
                            sent=start, effective=start, ends=end, expires=end)
    assert classify(a, now).action == "end_lineage"


def test_alerts_are_hashable_values():
    feature = copy.deepcopy(SAMPLES[0]["feature"])
    a, b = parse_alerts({"type": "FeatureCollection", "features": [feature, copy.deepcopy(feature)]})
    assert a == b and len({a, b}) == 1
