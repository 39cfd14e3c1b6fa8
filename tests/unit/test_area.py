"""Alert areas: polygon → SAME counties (the shipped 2010 file and its alias
table) → zone geometries over HTTP (mocked with ``responses``) → nothing."""

from __future__ import annotations

import copy
import dataclasses
import gzip
import hashlib
import json
import logging
from collections import Counter
from pathlib import Path

import pytest
import requests
import responses
import shapely
from hypothesis import given, settings

from chalicelib.weather.alerts import Alert, parse_alerts
from chalicelib.weather.area import (
    APPROXIMATE_SAME,
    COUNTIES_PATH,
    CT_PLANNING_REGIONS,
    SAME_ALIASES,
    SAME_MERGED,
    Area,
    AreaResolver,
    CountyIndex,
    ZoneFetcher,
    explain_same,
    is_zone_url,
    same_to_fips,
)
from tests.strategies import small_polygons
from tests.unit.test_alerts import BUNDLES, NWS, resolve_relative, ts

SAMPLES = json.loads((NWS / "nws_alert_samples_resolved.json").read_text())["samples"]
UA = "hexcast-test/1.0 (ops@hexcast.invalid)"


def sample_alert(label: str, n: int = 0) -> Alert:
    feature = copy.deepcopy([s for s in SAMPLES if s["label"] == label][n]["feature"])
    [alert] = parse_alerts(feature)
    return alert


def covers(area: Area, lat: float, lng: float) -> bool:
    return bool(shapely.intersects_xy(area.geometry, lng, lat))


def well_formed(geom) -> bool:
    polys = list(getattr(geom, "geoms", [geom]))
    return geom.is_valid and geom.geom_type in ("Polygon", "MultiPolygon") and all(p.exterior.is_ccw for p in polys)


@pytest.fixture(scope="module")
def counties() -> CountyIndex:
    return CountyIndex.load()


@pytest.fixture(scope="module")
def resolver(counties) -> AreaResolver:
    return AreaResolver(counties)


# ---------------------------------------------------------------- the shipped county file
def test_shipped_county_file_is_the_unchanged_plotly_2010_set():
    raw = gzip.decompress(COUNTIES_PATH.read_bytes())
    # sha256 of plotly/datasets @ 95672208 geojson-counties-fips.json (see chalicelib/data/README.md)
    assert hashlib.sha256(raw).hexdigest() == "e540149b7525e71ee6b6cab6dea2a95205f11e0c3e7374d27a7c9c47ea96e8c0"


def test_county_index_loads_once_and_every_county_is_valid_ccw(counties, monkeypatch):
    fresh = CountyIndex._read(COUNTIES_PATH)  # what the first call in a cold Lambda pays
    assert len(fresh) == len(counties) == 3221
    reads: list[Path] = []
    real_read = CountyIndex._read.__func__
    monkeypatch.setattr(CountyIndex, "_read", classmethod(lambda cls, path: reads.append(path) or real_read(cls, path)))
    assert CountyIndex.load() is counties  # cached per process: the file is read once
    assert CountyIndex.load() is counties
    assert reads == []
    assert all(well_formed(counties.geometry(f)) for f in ("06097", "02016", "51019", "02261"))
    assert counties.geometry("99999") is None
    # Aleutians West straddles ±180 as two parts, not one ring spanning the globe.
    assert counties.geometry("02016").geom_type == "MultiPolygon"


def test_alias_table_matches_the_shipped_file(counties):
    for same, fips in SAME_ALIASES.items():
        assert fips in counties, f"{same} → {fips} must exist in the 2010 file"
        assert same[1:] not in counties, f"{same} is in the 2010 file: no alias needed"
    for same, parts in SAME_MERGED.items():
        assert all(p in counties for p in parts)
    assert APPROXIMATE_SAME <= set(SAME_ALIASES)
    # Connecticut: the eight old counties are there, the 2022 planning regions are not.
    assert all(f"090{n:02d}" in counties for n in range(1, 16, 2))
    assert not any(r in counties for r in CT_PLANNING_REGIONS)
    # Counties changed before 2010 carry their current codes in the file.
    assert all(f in counties for f in ("02105", "02195", "02198", "02230", "02275", "08014", "12086", "51515"))


@pytest.mark.parametrize("code, fips, reason", [
    ("006097", ("06097",), None),
    ("046102", ("46113",), None),           # Oglala Lakota = Shannon
    ("002158", ("02270",), None),           # Kusilvak = Wade Hampton
    ("002063", ("02261",), None),           # Chugach ⊂ Valdez-Cordova
    ("002066", ("02261",), None),           # Copper River ⊂ Valdez-Cordova
    ("051019", ("51019", "51515"), None),   # Bedford County absorbed Bedford city
    ("077237", ("77237",), "marine"),
    ("058012", ("58012",), "marine"),
    ("092744", ("92744",), "marine"),
    ("060010", ("60010",), "territory"),
    ("078020", ("78020",), "territory"),
    ("009110", ("09110",), "ct_planning_region"),
    ("006999", ("06999",), "unknown_county"),
    ("6097", (), "malformed"),
    ("00609a", (), "malformed"),
    ("006097\n", (), "malformed"),
])
def test_same_codes(counties, code, fips, reason):
    assert same_to_fips(code) == fips
    geom, unresolved = counties.union([code])
    assert (geom is None) == (reason is not None)
    assert unresolved == ((code,) if reason else ())
    if reason:
        assert explain_same(code) == reason


def test_bedford_county_covers_the_former_bedford_city(counties):
    geom, _ = counties.union(["051019"])
    city = counties.geometry("51515").representative_point()
    assert not counties.geometry("51019").intersects(city)  # a hole in 2010 …
    assert geom.intersects(city) and well_formed(geom)      # … part of the county since 2013


# ---------------------------------------------------------------- resolution order
def test_sonoma_coastal_flood_resolves_by_same_and_contains_santa_rosa(resolver):
    alert = sample_alert("coastal_flood_advisory_sonoma_same")
    assert alert.geometry is None and "006097" in alert.same
    area = resolver.resolve(alert)
    assert area.source == "same" and area.unresolved == () and area.approximate == ()
    assert covers(area, 38.44, -122.71)  # Santa Rosa
    assert not covers(area, 38.58, -121.49)  # Sacramento
    assert well_formed(area.geometry)


def test_chugach_resolves_through_the_alias_and_says_it_is_approximate(resolver, counties):
    alert = sample_alert("high_wind_warning_chugach_same_002063")
    assert alert.same == ("002063",)
    area = resolver.resolve(alert)
    assert area.source == "same" and area.unresolved == () and area.approximate == ("002063",)
    assert area.geometry.equals(counties.geometry("02261"))
    assert covers(area, 61.13, -146.35)  # Valdez


def test_american_samoa_is_unresolved_and_reported(resolver, counties):
    alert = sample_alert("hydrologic_outlook_american_samoa")
    geom, unresolved = counties.union(alert.same)
    assert geom is None and unresolved == alert.same
    assert {explain_same(c) for c in unresolved} == {"territory"}
    assert resolver.resolve(alert) is None  # no zone fetcher: the caller reports unresolved_area


def test_marine_codes_are_unresolved_but_the_marine_polygon_is_used(resolver, counties):
    alert = sample_alert("special_marine_warning_polygon")
    assert counties.union(alert.same) == (None, ("077237", "077255"))
    area = resolver.resolve(alert)
    assert area.source == "polygon" and well_formed(area.geometry)
    assert resolver.resolve(dataclasses.replace(alert, geometry=None)) is None


def test_polygon_area_contains_a_point_inside_and_not_one_outside(resolver):
    alert = sample_alert("flash_flood_warning_polygon_update")
    ring = alert.geometry["coordinates"][0]
    assert not shapely.LinearRing(ring).is_ccw  # NWS sends clockwise rings
    area = resolver.resolve(alert)
    assert area.source == "polygon" and area.unresolved == ()
    assert well_formed(area.geometry)
    assert covers(area, 47.455, -122.23)      # by the Desimone levee
    assert not covers(area, 47.50, -122.24)   # 5 km north, still King County
    assert not covers(area, 47.61, -122.33)   # downtown Seattle


def test_clockwise_and_counter_clockwise_input_give_the_same_ccw_area(resolver):
    alert = sample_alert("severe_thunderstorm_warning_polygon")
    ring = alert.geometry["coordinates"][0]
    cw = resolver.resolve(alert)
    ccw = resolver.resolve(dataclasses.replace(alert, geometry={"type": "Polygon", "coordinates": [ring[::-1]]}))
    assert cw.geometry.equals(ccw.geometry) and well_formed(cw.geometry) and well_formed(ccw.geometry)


def test_self_intersecting_polygon_is_repaired_to_its_polygonal_parts(resolver):
    alert = sample_alert("severe_thunderstorm_warning_polygon")
    bowtie = [[-75.9, 41.2], [-75.8, 41.3], [-75.8, 41.2], [-75.9, 41.3], [-75.9, 41.2]]
    area = resolver.resolve(dataclasses.replace(alert, geometry={"type": "Polygon", "coordinates": [bowtie]}))
    assert area.source == "polygon" and well_formed(area.geometry)
    assert area.geometry.area == pytest.approx(0.005)
    assert covers(area, 41.25, -75.88) and not covers(area, 41.21, -75.85)


@pytest.mark.parametrize("geometry", [
    {"type": "Polygon", "coordinates": [[[-75.9, 41.2], [-75.8, 41.3]]]},      # too few positions
    {"type": "Polygon", "coordinates": "nope"},
    {"type": "Polygon", "coordinates": [[[-75.9, 141.2], [-75.8, 41.3], [-75.8, 41.2], [-75.9, 141.2]]]},
    {"type": "Point", "coordinates": [-75.9, 41.2]},
    {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [2, 2], [0, 0]]]},   # collapses to nothing
])
def test_unusable_polygon_falls_back_to_the_counties(resolver, geometry):
    alert = sample_alert("severe_thunderstorm_warning_polygon")  # SAME 042079 Luzerne PA
    area = resolver.resolve(dataclasses.replace(alert, geometry=geometry))
    assert area.source == "same" and covers(area, 41.25, -75.88)


def test_partial_same_areas_are_used_and_the_rest_reported(resolver):
    alert = dataclasses.replace(sample_alert("coastal_flood_advisory_sonoma_same"),
                                same=("009110", "036119", "077237", "046102"))
    area = resolver.resolve(alert)
    assert area.source == "same" and area.unresolved == ("009110", "077237")
    assert covers(area, 41.03, -73.76)   # White Plains, Westchester NY
    assert covers(area, 43.31, -102.55)  # Pine Ridge, Oglala Lakota SD
    assert not covers(area, 41.76, -72.67)  # Hartford CT: its planning region is not guessed


@settings(max_examples=50, deadline=None)
@given(poly=small_polygons())
def test_either_winding_resolves_to_the_same_valid_ccw_polygon(poly):
    resolver = AreaResolver(None)
    alert = sample_alert("flash_flood_warning_polygon_update")
    ring = [list(c) for c in poly.exterior.coords]
    a = resolver.resolve(dataclasses.replace(alert, geometry={"type": "Polygon", "coordinates": [ring]}))
    b = resolver.resolve(dataclasses.replace(alert, geometry={"type": "Polygon", "coordinates": [ring[::-1]]}))
    assert a.geometry.equals(b.geometry) and well_formed(a.geometry)
    assert a.geometry.covers(shapely.Point(poly.representative_point()))


# ---------------------------------------------------------------- the national bundles, counties only
BUNDLE_AREAS = {  # measured: how each alert resolves without zone lookups
    "northwest": {"polygon": 19, "same": 135, None: 375},
    "guam-7day": {"polygon": 14, "same": 92, None: 140},
}


@pytest.mark.parametrize("name", sorted(BUNDLES))
def test_bundle_areas_without_zones_leave_only_marine_and_territories(resolver, name):
    path, anchor = BUNDLES[name]
    items = parse_alerts(resolve_relative(json.loads((NWS / path).read_text()), ts(anchor)))
    sources = Counter()
    for alert in items:
        area = resolver.resolve(alert)
        sources[area.source if area else None] += 1
        if area is None:
            assert {explain_same(c) for c in alert.same} <= {"marine", "territory"}, alert.id
        else:
            assert well_formed(area.geometry), alert.id
            assert {explain_same(c) for c in area.unresolved} <= {"marine", "territory"}, alert.id
        assert all(is_zone_url(u) for u in alert.affected_zones)  # every real zone URL passes the SSRF check
    assert dict(sources) == BUNDLE_AREAS[name]


# ---------------------------------------------------------------- zones over HTTP
ZONE_URL = "https://api.weather.gov/zones/forecast/ORZ004"
ZONE_RING_CW = [[-123.82, 45.25], [-123.35, 45.25], [-123.35, 44.53], [-123.62, 44.29], [-123.82, 44.53],
                [-123.82, 45.25]][::-1]


def zone_feature(zone_id: str = "ORZ004", ring=None) -> dict:
    """Shaped like an application/geo+json answer of /zones/forecast/{id}."""
    url = f"https://api.weather.gov/zones/forecast/{zone_id}"
    return {
        "@context": {"@version": "1.1"},
        "id": url,
        "type": "Feature",
        "geometry": {"type": "MultiPolygon", "coordinates": [[ring or ZONE_RING_CW]]},
        "properties": {
            "@id": url, "@type": "wx:Zone", "id": zone_id, "type": "public",
            "name": "Central Coast Range of Western Oregon", "effectiveDate": "2025-03-18T18:00:00+00:00",
            "expirationDate": "2200-01-01T00:00:00+00:00", "state": "OR", "forecastOffice": "https://api.weather.gov/offices/PQR",
            "gridIdentifier": "PQR", "awipsLocationIdentifier": "PQR", "cwa": ["PQR"],
            "forecastOffices": ["https://api.weather.gov/offices/PQR"], "timeZone": ["America/Los_Angeles"],
            "observationStations": [], "radarStation": None,
        },
    }


@responses.activate
def test_zone_fetcher_gets_parses_and_caches_a_zone():
    responses.get(ZONE_URL, json=zone_feature(), content_type="application/geo+json")
    zones = ZoneFetcher(UA, timeout_s=2.0)
    geom = zones.geometry(ZONE_URL)
    assert well_formed(geom) and geom.covers(shapely.Point(-123.6, 44.9))
    assert zones.geometry(ZONE_URL) is geom
    assert len(responses.calls) == 1  # the second answer came from the cache
    sent = responses.calls[0].request
    assert sent.headers["User-Agent"] == UA and sent.headers["Accept"] == "application/geo+json"


@responses.activate
def test_zone_fetcher_caches_404_as_a_negative_answer(caplog):
    responses.get(ZONE_URL, json={"status": 404, "title": "Not Found"}, status=404)
    zones = ZoneFetcher(UA)
    with caplog.at_level(logging.WARNING, logger="hexcast.weather"):
        assert zones.geometry(ZONE_URL) is None
        assert zones.geometry(ZONE_URL) is None
    assert len(responses.calls) == 1
    assert [getattr(r, "reason", None) for r in caplog.records] == ["not_found"]


@pytest.mark.parametrize("kwargs, reason", [
    ({"status": 500, "json": {"title": "Unexpected Problem"}}, "http_status"),
    ({"status": 503, "body": "busy"}, "http_status"),
    ({"status": 301, "headers": {"Location": "http://169.254.169.254/latest/meta-data/"}}, "http_status"),
    ({"body": requests.exceptions.ReadTimeout("read timed out")}, "timeout"),
    ({"body": requests.exceptions.ConnectionError("refused")}, "http_error"),
    ({"body": '{"type": "Feature", "geometry": {"type": "Poly'}, "malformed_json"),
    ({"body": b"\xff\xfe not json"}, "malformed_json"),
])
@responses.activate
def test_zone_fetcher_transient_failures_return_none_log_and_retry_later(caplog, kwargs, reason):
    responses.get(ZONE_URL, **kwargs)
    zones = ZoneFetcher(UA)
    with caplog.at_level(logging.WARNING, logger="hexcast.weather"):
        assert zones.geometry(ZONE_URL) is None
    assert [getattr(r, "reason", None) for r in caplog.records] == [reason]
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    zones.geometry(ZONE_URL)
    assert len(responses.calls) == 2  # not cached: the next alert tries again


@responses.activate
def test_zone_without_a_polygon_is_a_cached_negative():
    feature = zone_feature()
    feature["geometry"] = None
    responses.get(ZONE_URL, json=feature)
    zones = ZoneFetcher(UA)
    assert zones.geometry(ZONE_URL) is None and zones.geometry(ZONE_URL) is None
    assert len(responses.calls) == 1


@responses.activate
def test_zone_wkt_geometry_from_a_json_ld_answer_is_accepted():
    responses.get(ZONE_URL, json={"@id": ZONE_URL, "geometry": "POLYGON ((-123.8 45.2, -123.4 45.2, -123.4 44.5, -123.8 45.2))"})
    assert well_formed(ZoneFetcher(UA).geometry(ZONE_URL))


@pytest.mark.parametrize("url", [
    "http://api.weather.gov/zones/forecast/ORZ004",
    "https://api.weather.gov.evil.example/zones/forecast/ORZ004",
    "https://evil.example/zones/forecast/ORZ004",
    "https://user@api.weather.gov/zones/forecast/ORZ004",
    "https://api.weather.gov:8443/zones/forecast/ORZ004",
    "https://api.weather.gov/alerts/active",
    "https://api.weather.gov/zones/forecast/../../alerts/ORZ004",
    "https://api.weather.gov/zones/forecast/%2e%2e/ORZ004",
    "https://api.weather.gov/zones/forecast/ORZ004?x=1",
    "https://api.weather.gov/zones/forecast/ORZ004#frag",
    "https://api.weather.gov/zones/forecast/ORZ004\n",
    "https://api.weather.gov/zones/forecast/ORZ\u0664\u0660\u0664",
    "https://169.254.169.254/zones/forecast/ORZ004",
    "file:///etc/passwd",
    "",
    None,
])
@responses.activate
def test_zone_fetcher_refuses_anything_but_api_weather_gov_zones(url):
    assert not is_zone_url(url)
    assert ZoneFetcher(UA).geometry(url) is None
    assert len(responses.calls) == 0


def test_zone_url_check_accepts_the_real_forms():
    for url in ("https://api.weather.gov/zones/forecast/ORZ004", "https://api.weather.gov/zones/county/WAC033",
                "https://api.weather.gov/zones/fire/AZZ102", "https://api.weather.gov/zones/forecast/PKZ132"):
        assert is_zone_url(url), url


@responses.activate
def test_zone_cache_is_lru_and_bounded():
    urls = [f"https://api.weather.gov/zones/forecast/ORZ00{i}" for i in range(1, 4)]
    for u in urls:
        responses.get(u, json=zone_feature(u[-6:]))
    zones = ZoneFetcher(UA, max_cached=2)
    zones.geometry(urls[0]), zones.geometry(urls[1]), zones.geometry(urls[0]), zones.geometry(urls[2])
    assert len(responses.calls) == 3
    zones.geometry(urls[0])  # still cached (recently used)
    assert len(responses.calls) == 3
    zones.geometry(urls[1])  # evicted
    assert len(responses.calls) == 4


@responses.activate
def test_resolver_falls_back_to_zones_and_reports_the_missing_ones(counties):
    other = "https://api.weather.gov/zones/forecast/ORZ005"
    east = [[-123.35, 45.25], [-122.9, 45.25], [-122.9, 44.53], [-123.35, 44.53], [-123.35, 45.25]]
    responses.get(ZONE_URL, json=zone_feature())
    responses.get(other, json=zone_feature("ORZ005", east))
    responses.get("https://api.weather.gov/zones/forecast/ORZ006", status=404)
    alert = dataclasses.replace(sample_alert("winter_storm_warning_null_geometry"), same=("041999", "077237"),
                                affected_zones=(ZONE_URL, other, "https://api.weather.gov/zones/forecast/ORZ006",
                                                "https://evil.example/zones/forecast/ORZ007"))
    area = AreaResolver(counties, ZoneFetcher(UA)).resolve(alert)
    assert area.source == "zones" and area.unresolved == ("ORZ006", "ORZ007")
    assert well_formed(area.geometry) and area.geometry.geom_type == "Polygon"  # the two zones merged
    assert covers(area, 44.9, -123.6) and covers(area, 44.9, -123.0) and not covers(area, 44.9, -122.5)
    # SAME first: when a county resolves, no HTTP at all.
    n = len(responses.calls)
    assert AreaResolver(counties, ZoneFetcher(UA)).resolve(dataclasses.replace(alert, same=("041041",))).source == "same"
    assert len(responses.calls) == n


@responses.activate
def test_resolver_bounds_zone_lookups_per_alert():
    responses.get(ZONE_URL, json=zone_feature())
    alert = dataclasses.replace(sample_alert("winter_storm_warning_null_geometry"), same=(),
                                affected_zones=(ZONE_URL, "https://api.weather.gov/zones/forecast/ORZ005"))
    area = AreaResolver(None, ZoneFetcher(UA), max_zones=1).resolve(alert)
    assert area.source == "zones" and area.unresolved == ("ORZ005",)
    assert len(responses.calls) == 1
    assert AreaResolver(None, ZoneFetcher(UA), zone_budget_s=-1).resolve(alert) is None
    assert len(responses.calls) == 1


@responses.activate
def test_resolver_with_no_zone_answers_is_none():
    responses.get(ZONE_URL, status=500)
    alert = dataclasses.replace(sample_alert("hydrologic_outlook_american_samoa"), affected_zones=(ZONE_URL,))
    assert AreaResolver(CountyIndex.load(), ZoneFetcher(UA)).resolve(alert) is None


def test_area_module_reads_the_file_next_to_the_package():
    assert COUNTIES_PATH == Path(__file__).resolve().parents[2] / "chalicelib" / "data" / "us_counties_2010.geojson.gz"


def test_zone_fetcher_never_raises_even_when_the_session_does(caplog):
    class Broken:
        def get(self, *args, **kwargs):
            raise RuntimeError("boom")

    with caplog.at_level(logging.WARNING, logger="hexcast.weather"):
        assert ZoneFetcher(UA, session=Broken()).geometry(ZONE_URL) is None
    assert [getattr(r, "reason", None) for r in caplog.records] == ["unexpected"]
