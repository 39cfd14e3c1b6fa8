"""CAP areas: polygon and circle text, EMMA_ID and SAME geocodes, the union,
the antimeridian — and every real file's area against an independent
construction of the same elements with plain shapely (regular expressions
over the raw XML, the shipped geometry read with json, a geodesic circle
computed here)."""

from __future__ import annotations

import gzip
import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import shape

from chalicelib.weather.cap import CapArea, parse_cap
from chalicelib.weather.cap_area import CapAreaResolver, EmmaIndex, parse_circle, parse_points, parse_polygon

ROOT = Path(__file__).resolve().parent.parent.parent
FIX = ROOT / "tests" / "fixtures" / "cap"
EMMA_DIR = ROOT / "chalicelib" / "data" / "emma_id"
COUNTIES = ROOT / "tests" / "fixtures" / "us_counties.geojson"


# ---------------------------------------------------------------- the independent construction
def _polygonal(g: Any) -> Any:
    g = shapely.make_valid(g)
    parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon") and p.area > 0]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def _ring(text: str) -> Any:
    pts = []
    for pair in text.split():
        lat, lon = pair.split(",")
        pts.append((float(lon), float(lat)))
    if len(pts) < 4:
        return shapely.Polygon()
    return _polygonal(shapely.Polygon(pts))


def _geodesic_circle(lat: float, lon: float, km: float, n: int = 720) -> Any:
    r = 6371.0088
    d = km / r
    p1, l1 = math.radians(lat), math.radians(lon)
    pts = []
    for b in np.linspace(0, 2 * math.pi, n, endpoint=False):
        p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
        l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
        pts.append((math.degrees(l2), math.degrees(p2)))
    return shapely.Polygon(pts)


@lru_cache(maxsize=None)
def _emma(code: str) -> Any:
    data = json.loads(gzip.decompress((EMMA_DIR / f"{code[:2]}.json.gz").read_bytes()))["codes"][code]
    return _polygonal(shape({"type": data["type"], "coordinates": data["coordinates"]}))


@lru_cache(maxsize=1)
def _counties() -> dict[str, Any]:
    return {f["id"]: f["geometry"] for f in json.loads(COUNTIES.read_text())["features"]}


def independent_area(raw: str) -> Any:
    """The union of the document's areas, from its text, without the code under test."""
    tag = r"(?:cap:)?"
    infos = re.findall(rf"<{tag}info>(.*?)</{tag}info>", raw, re.S)
    active = [i for i in infos if not re.search(rf"<{tag}responseType>\s*AllClear", i)] or infos
    areas: list[str] = []
    for info in active:
        for a in re.findall(rf"<{tag}area>(.*?)</{tag}area>", info, re.S):
            if a not in areas:
                areas.append(a)
    geoms = []
    for a in areas:
        keep = [_ring(t) for t in re.findall(rf"<{tag}polygon>(.*?)</{tag}polygon>", a, re.S) if t.strip()]
        for c in re.findall(rf"<{tag}circle>(.*?)</{tag}circle>", a, re.S):
            centre, radius = c.split()
            lat, lon = centre.split(",")
            keep.append(_geodesic_circle(float(lat), float(lon), float(radius)))
        cut = []
        for name, value in re.findall(rf"<{tag}valueName>(.*?)</{tag}valueName>\s*<{tag}value>(.*?)</{tag}value>", a, re.S):
            if name.upper() == "EMMA_ID":
                keep.append(_emma(value.strip().upper()))
            elif name == "SAME" and value[1:] in _counties():
                keep.append(_polygonal(shape(_counties()[value[1:]])))
            elif name == "EXCLUDE_POLYGON":
                cut.append(_ring(value))
        g = shapely.union_all(keep) if keep else shapely.Polygon()
        if cut:
            g = shapely.difference(g, shapely.union_all(cut))
        geoms.append(g)
    return shapely.union_all(geoms) if geoms else shapely.Polygon()


# ---------------------------------------------------------------- every real file
# file → whether its area resolves (areaDesc only, AMOC or Taiwan geocodes, no <area>: it does not)
RESOLVES = {
    "AU__kelvinn_capparselib__australia_bom.cap": False,
    "CH__KDE_foss-public-alert-server__alertswiss-TEST-1163.xml": False,
    "SE__kelvinn_capparselib__smhi.se.alerts.cap": False,
    "SE__kelvinn_capparselib__sweden.cap": False,
    "TW__kelvinn_capparselib__taiwan.cap": False,
}
FILES = sorted(p.name for p in FIX.iterdir())


@pytest.mark.parametrize("name", FILES)
def test_real_area_equals_an_independent_construction(name: str) -> None:
    raw = (FIX / name).read_text(encoding="utf-8-sig")
    resolver = CapAreaResolver()
    caps = parse_cap(raw)
    docs = re.findall(r"<alert>.*?</alert>", raw, re.S) if len(caps) > 1 else [raw]
    assert len(docs) == len(caps)
    for cap, doc in zip(caps, docs):
        result = resolver.resolve(cap.areas())
        expected = independent_area(doc)
        if not RESOLVES.get(name, True):
            assert result.geometry is None and expected.is_empty
            assert result.unresolved or not cap.areas()
            continue
        got = result.geometry
        assert got is not None and got.is_valid and not expected.is_empty
        tolerance = 0.01 if "<circle>" in doc else 1e-6  # a 64-gon pushed out vs a 720-gon
        assert shapely.symmetric_difference(got, expected).area <= tolerance * expected.area
        assert got.bounds[0] >= -180 and got.bounds[2] <= 180


def test_geocodes_without_geometry_are_reported_not_fatal() -> None:
    name = "DE__jdemaeyer_brightsky__2.49.0.0.276.0.DWD.PVW.1687470000000.fe90b61b-3755-4efb-8eda-b161251da9f7.MUL.xml"
    [cap] = parse_cap((FIX / name).read_bytes())
    result = CapAreaResolver().resolve(cap.areas())
    assert result.geometry is not None
    assert result.unresolved and all("WARNCELLID" in reason for _desc, reason in result.unresolved)
    assert any("repeated vertices" in n for n in result.notes)


def test_emma_id_in_any_case_and_unknown_codes() -> None:
    r = CapAreaResolver()
    lower = r.resolve([CapArea("x", (), (), (("emma_id", "pl1208"),))])
    upper = r.resolve([CapArea("x", (), (), (("EMMA_ID", "PL1208"),))])
    assert lower.geometry is not None and lower.geometry.equals(upper.geometry)
    # PL1208 = powiat miechowski; Miechów (50.357 N, 20.03 E) lies in it
    assert lower.geometry.contains(shapely.Point(20.03, 50.357))
    bad = r.resolve([CapArea("nowhere", (), (), (("EMMA_ID", "XX999"),))])
    assert bad.geometry is None and bad.unresolved == (("nowhere", "EMMA_ID XX999 unknown"),)


def test_emma_geometries_load_per_country_on_first_use() -> None:
    index = EmmaIndex(EMMA_DIR)
    r = CapAreaResolver(emma=index)
    r.resolve([CapArea("x", ("50,10 50,11 51,11 50,10",), (), ())])
    assert index._countries == {}
    r.resolve([CapArea("x", (), (), (("EMMA_ID", "NO808"),))])
    assert list(index._countries) == ["NO"]
    lazy = CapAreaResolver()
    lazy.resolve([CapArea("x", ("50,10 50,11 51,11 50,10",), (), ())])
    assert lazy._emma is None and lazy._counties is None


def test_same_goes_through_the_county_index() -> None:
    result = CapAreaResolver().resolve([CapArea("Sonoma", (), (), (("SAME", "006097"), ("UGC", "CAZ506")))])
    assert result.geometry is not None and result.same == ("006097",)
    assert result.geometry.contains(shapely.Point(-122.71, 38.44))  # Santa Rosa
    marine = CapAreaResolver().resolve([CapArea("sea", (), (), (("SAME", "075650"),))])
    assert marine.geometry is None and "075650" in marine.unresolved[0][1]


def test_polygons_and_geocodes_of_all_areas_are_a_union() -> None:
    poly = "49.9,19.0 49.9,19.2 50.0,19.2 49.9,19.0"
    r = CapAreaResolver().resolve([CapArea("a", (poly,), (), (("EMMA_ID", "PL1208"),)),
                                   CapArea("b", (), ("52.0,21.0 5",), ())])
    expected = shapely.union_all([parse_polygon(poly).geometry, EmmaIndex.load().geometry("PL1208"),
                                  parse_circle("52.0,21.0 5").geometry])
    assert r.geometry is not None and r.geometry.equals(expected)


# ---------------------------------------------------------------- polygon and circle text
def test_degenerate_rings_are_repaired_or_dropped_with_a_reason() -> None:
    dup = parse_polygon("0,0 0,0 0,1 1,1 1,1 0,0 0,0")
    assert dup.geometry is not None and "repeated vertices" in dup.repairs[0]
    opened = parse_polygon("0,0 0,1 1,1")
    assert opened.geometry is not None and "ring closed" in opened.repairs
    bowtie = parse_polygon("0,0 1,1 1,0 0,1 0,0")
    assert bowtie.geometry is not None and bowtie.geometry.is_valid and "self-intersection repaired" in bowtie.repairs
    for text, why in [("1,1 1,1 1,1 1,1", "fewer than 3"), ("0,0 0,1 0,2 0,0", "no area"),
                      ("0,0 0,1 x,y 0,0", "malformed"), ("0,0 0,1 91,1 0,0", "outside"), ("0;0 1;1", "malformed")]:
        ring = parse_polygon(text)
        assert ring.geometry is None and ring.dropped is not None and why in ring.dropped, text


def test_antimeridian_crossing_polygon_is_cut_in_two() -> None:
    ring = parse_polygon("60,170 60,-170 65,-170 65,170 60,170")
    g = ring.geometry
    assert g is not None and g.geom_type == "MultiPolygon" and len(g.geoms) == 2
    expected = shapely.union_all([shapely.box(170, 60, 180, 65), shapely.box(-180, 60, -170, 65)])
    assert shapely.symmetric_difference(g, expected).area < 1e-9
    assert g.contains(shapely.Point(179.5, 62)) and g.contains(shapely.Point(-179.5, 62))
    assert not g.contains(shapely.Point(0, 62))


def test_polygons_touching_the_antimeridian_are_taken_as_they_are() -> None:
    east = parse_polygon("64,175 64,180 68,180 68,175 64,175").geometry
    west = parse_polygon("64,-180 64,-175 68,-175 68,-180 64,-180").geometry
    both = CapAreaResolver().resolve([CapArea("ru", ("64,175 64,180 68,180 68,175 64,175",
                                                     "64,-180 64,-175 68,-175 68,-180 64,-180"), (), ())])
    assert east is not None and east.bounds == (175.0, 64.0, 180.0, 68.0)
    assert west is not None and west.bounds == (-180.0, 64.0, -175.0, 68.0)
    assert both.geometry is not None and both.geometry.bounds == (-180.0, 64.0, 180.0, 68.0)
    assert abs(both.geometry.area - 40.0) < 1e-9  # two 5x4 boxes, not a band round the globe


def test_circles() -> None:
    c = parse_circle("38.8963,-121.0784 1.0")
    assert c.geometry is not None and c.geometry.contains(shapely.Point(-121.0784, 38.8963))
    assert c.geometry.contains(shapely.Point(-121.0784, 38.8963 + 0.0089))  # 0.99 km north
    assert not c.geometry.contains(shapely.Point(-121.0784, 38.8963 + 0.0095))  # 1.06 km north
    across = parse_circle("0,179.99 5").geometry
    assert across is not None and across.geom_type == "MultiPolygon"
    point = parse_circle("10,10 0")
    assert point.geometry is not None and point.repairs
    for text in ("10,10", "10,10 -1", "10,10 x", "10,10 5000", "89.99,0 100"):
        assert parse_circle(text).geometry is None, text


_SEPARATORS = st.sampled_from([" ", "  ", "\n", "\t", "\r\n", "\n\t\t", " \n "])


@settings(max_examples=60, deadline=None)
@given(pts=st.lists(st.tuples(st.floats(-89, 89), st.floats(-179, 179)), min_size=1, max_size=30),
       seps=st.lists(_SEPARATORS, min_size=31, max_size=31), lead=_SEPARATORS, trail=_SEPARATORS,
       comma=st.sampled_from([",", ", ", " ,", " , "]))
def test_polygon_text_parses_the_same_whatever_the_whitespace(pts: list, seps: list, lead: str, trail: str,
                                                              comma: str) -> None:
    canonical = " ".join(f"{lat!r},{lon!r}" for lat, lon in pts)
    spaced = lead + "".join(f"{lat!r}{comma}{lon!r}" + seps[i] for i, (lat, lon) in enumerate(pts)) + trail
    a, b = parse_points(canonical), parse_points(spaced)
    assert a.shape == (len(pts), 2)
    assert np.array_equal(a, b)
    assert np.array_equal(a[:, ::-1], np.array(pts))  # lat,lon in, (lng, lat) out


@settings(max_examples=40, deadline=None)
@given(lat=st.floats(-60, 60), lon=st.floats(-179, 174.9), w=st.floats(0.01, 5), h=st.floats(0.01, 5), sep=_SEPARATORS)
def test_rectangle_rings_round_trip(lat: float, lon: float, w: float, h: float, sep: str) -> None:
    corners = [(lat, lon), (lat, lon + w), (lat + h, lon + w), (lat + h, lon), (lat, lon)]
    ring = parse_polygon(sep.join(f"{a!r},{b!r}" for a, b in corners))
    assert ring.geometry is not None
    expected = shapely.Polygon([(b, a) for a, b in corners])
    if lon + w <= 180:
        assert shapely.symmetric_difference(ring.geometry, expected).area <= 1e-9 * expected.area
    assert ring.geometry.bounds[0] >= -180 and ring.geometry.bounds[2] <= 180
