"""The four shapes that cost minutes before the geometry budget, through the
API over moto: each a 400 naming the limit and the field, nothing written."""

from __future__ import annotations

import pytest

from benchmarks.geometry_budget import circles, feature, holes_polygon, scattered_cells, tiny_parts
from tests.integration.test_api import body, call, snapshot

CASES = {
    "900 holes": (feature(holes_polygon(900)), "geometry", "900 holes"),
    "2,500 parts": (feature(tiny_parts(2500)), "geometry", "2,500 parts"),
    "5,000 scattered H3 cells": (feature(None, {"h3_cells": scattered_cells(5000)}), "properties.h3_cells", "bytes stored"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_fence_beyond_the_budget_is_a_400_and_writes_nothing(api, case):
    fence, field, words = CASES[case]
    before = snapshot()
    r = call(api, "put", "/v1/geofences/hx", payload=fence)
    assert r.status_code == 400, r.body[:300]
    err = body(r)["error"]
    assert err["code"] == "invalid_geometry" and err["field"] == field and words in err["message"]
    assert snapshot() == before


def test_an_import_beyond_its_work_budget_is_a_400_and_writes_nothing(api):
    before = snapshot()
    r = call(api, "post", "/v1/geofences/import", payload={"type": "FeatureCollection", "features": circles(500)})
    assert r.status_code == 400
    err = body(r)["error"]
    assert err["field"] == "features" and "split the file" in err["message"]
    assert snapshot() == before


def test_an_import_within_its_budget_still_takes_each_feature_on_its_own(api):
    features = circles(20) + [dict(feature(holes_polygon(900)), id="holey")]
    r = call(api, "post", "/v1/geofences/import", payload={"type": "FeatureCollection", "features": features})
    assert r.status_code == 200
    out = body(r)
    assert out["imported"] == 20
    assert [(x["index"], x["error"]["field"]) for x in out["rejected"]] == [(20, "features[20].geometry")]


def test_an_audience_estimate_beyond_the_budget_is_a_400_on_geometry(api):
    r = call(api, "post", "/v1/audience/estimate", payload={"geometry": holes_polygon(900)})
    assert r.status_code == 400 and body(r)["error"]["field"] == "geometry"
    r = call(api, "post", "/v1/audience/estimate", payload={"geometry": tiny_parts(2500)})
    assert r.status_code == 400 and body(r)["error"]["field"] == "geometry"
