"""Real county polygons over real HTTP: import, then lookups equal a
brute-force shapely check (covers), including holes, shared borders and the
antimeridian."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import requests
import shapely
from shapely.geometry import shape

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# California (06), Virginia (51: independent cities are holes), Alaska (02: Aleutians West at ±180).
STATES = ("06", "51", "02")


@pytest.fixture(scope="module")
def imported(stack):
    feats = [f for f in json.loads((FIXTURES / "us_counties.geojson").read_text())["features"] if f["id"][:2] in STATES]
    h = {"X-Api-Key": stack.admin_key}
    for i in range(0, len(feats), 50):  # 50 counties fit an import's work budget
        part = feats[i:i + 50]
        r = requests.post(f"{stack.base_url}/v1/geofences/import", headers=h, json={"type": "FeatureCollection", "features": part},
                          timeout=300)
        assert r.status_code == 200, r.text
        assert r.json() == {"imported": len(part), "rejected": []}
    return {f["id"]: shape(f["geometry"]) for f in feats}


def lookup(stack, lat, lng):
    r = requests.get(f"{stack.base_url}/v1/geofences/lookup", params={"lat": lat, "lng": lng}, headers={"X-Api-Key": stack.admin_key}, timeout=30)
    assert r.status_code == 200
    return sorted(f["id"] for f in r.json()["fences"])


def brute(geoms, lat, lng):
    return sorted(fid for fid, g in geoms.items() if shapely.intersects_xy(g, lng, lat))


def test_lookups_equal_brute_force(stack, imported):
    rng = np.random.default_rng(11)
    pts = list(zip(rng.uniform(32.5, 42.0, 40), rng.uniform(-124.4, -114.1, 40)))  # California
    pts += list(zip(rng.uniform(36.5, 39.5, 25), rng.uniform(-83.7, -75.2, 25)))  # Virginia
    pts += [(38.0293, -78.4767), (52.0, 179.5), (52.0, -176.6), (61.2, -149.9)]  # hole, Aleutians both sides, Anchorage
    for lat, lng in pts:
        assert lookup(stack, lat, lng) == brute(imported, lat, lng), (lat, lng)


def test_shared_border_matches_both_counties(stack, imported):
    border = shapely.intersection(imported["06097"].boundary, imported["06055"].boundary)
    x, y = shapely.get_coordinates(border)[3]
    assert lookup(stack, float(y), float(x)) == ["06055", "06097"]


def test_independent_city_hole(stack, imported):
    assert lookup(stack, 38.0293, -78.4767) == ["51540"]  # Charlottesville, not Albemarle
