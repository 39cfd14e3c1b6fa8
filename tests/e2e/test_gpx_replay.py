"""A real marathon trace replayed as pings against the local stack.

The trace (tests/fixtures/santa_rosa_marathon_2016.gpx, 9,890 points at
about 1 Hz) never leaves Sonoma County (06097). The place fences in
geofences/santa_rosa_places.geojson lie on the route: the course is out and
back, so water station 1 and the creek trail are passed twice, and it ends
where it starts.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import h3
import pytest
import shapely
import shapely.geometry

from tools.demo import replay
from tools.fences import HexcastClient, upload
from tools.gpx import read_gpx

ROOT = Path(__file__).resolve().parents[2]
TRACE = ROOT / "tests" / "fixtures" / "santa_rosa_marathon_2016.gpx"
COUNTIES = ROOT / "geofences" / "sonoma_county.geojson"
PLACES = ROOT / "geofences" / "santa_rosa_places.geojson"
ACCURACY_M = 8.0  # exit buffer: clamp(8, 10, 200) = 10 m

#: Visits per place fence, read off the map (out/demo_map.png): an
#: out-and-back course passes some points twice.
EXPECTED_VISITS = {
    "sr-start-finish": 2,  # the start, and the finish (still inside when the trace ends)
    "sr-water-1": 2,
    "sr-water-2": 1,
    "sr-creek-trail": 2,
    "sr-photo-north": 1,
    "sr-aid-north": 1,
}

pytestmark = pytest.mark.slow


def _features(path: Path) -> list[dict]:
    return json.loads(path.read_text())["features"]


def _epoch(at: str) -> float:
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


class Fence:
    """An oracle for one place fence, straight from its GeoJSON (not from
    chalicelib): circle by haversine, polygon by shapely, H3 region by h3."""

    def __init__(self, feature: dict) -> None:
        props = feature["properties"]
        self.dwell_minutes = props.get("dwell_minutes")
        self.center = self.radius_m = None
        self.cells: set[int] = set()
        geometry = feature["geometry"]
        if geometry is None:
            self.cells = {h3.str_to_int(c) for c in props["h3_cells"]}
            self.shape = shapely.union_all([shapely.Polygon([(lng, lat) for lat, lng in h3.cell_to_boundary(h3.int_to_str(c))])
                                            for c in self.cells])
        elif geometry["type"] == "Point":
            lng, lat = geometry["coordinates"]
            self.center, self.radius_m = (lat, lng), props["radius_m"]
        else:
            self.shape = shapely.geometry.shape(geometry)

    def distance_m(self, lat: float, lng: float) -> float:
        """0 inside (the boundary included), else metres to the fence."""
        if self.center is not None:
            return max(0.0, _haversine_m(lat, lng, *self.center) - self.radius_m)
        if self.cells and h3.str_to_int(h3.latlng_to_cell(lat, lng, 9)) in self.cells:
            return 0.0
        k = math.cos(math.radians(lat))  # local equirectangular metres: fine at this size
        scaled = shapely.transform(self.shape, lambda xy: xy * [k, 1.0])
        return shapely.distance(scaled, shapely.Point(lng * k, lat)) * math.pi * 6_371_008.8 / 180


def _haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lng2 - lng1) / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


@pytest.fixture(scope="module")
def fences():
    return {f["id"]: Fence(f) for f in _features(PLACES)}


@pytest.fixture(scope="module")
def run(stack):
    admin = HexcastClient(stack.base_url, stack.admin_key)
    report = upload([str(COUNTIES), str(PLACES)], admin, progress=False)
    assert report.ok, [(r.fence_id, r.field, r.message) for r in report.rejected] + report.failures

    device_id = f"runner-{uuid.uuid4().hex[:8]}"  # the stack is shared: start from no state
    app = HexcastClient(stack.base_url, stack.app_key)
    answer = app.request("PUT", f"/v1/devices/{device_id}", json_body={
        "platform": "ios", "push_token": f"tok-{device_id}", "consent": {"push": True, "location": True}})
    headers = {"X-Device-Secret": answer["device_secret"]} if answer.get("device_secret") else {}
    points = read_gpx(str(TRACE))
    result = replay(app, points, device_id=device_id, accuracy_m=ACCURACY_M, batch=100, headers=headers)

    by_fence = defaultdict(list)
    for e in result.events:
        by_fence[e.fence_id].append(e)
    device = admin.request("GET", f"/v1/devices/{device_id}")
    return {"points": points, "result": result, "by_fence": by_fence, "device": device}


def test_every_point_is_accepted(run):
    result = run["result"]
    assert len(run["points"]) == 9890
    assert (result.sent, result.accepted, result.not_accepted) == (9890, 9890, {})


def test_device_enters_sonoma_at_the_first_ping_and_never_exits(run):
    first = run["points"][0].timestamp
    assert [(e.type, e.at) for e in run["by_fence"]["06097"]] == [("enter", first)]
    assert "06097" in run["device"]["fences"]


def test_neighbour_counties_are_never_entered(run):
    neighbours = {f["id"] for f in _features(COUNTIES)} - {"06097"}
    assert neighbours == {"06041", "06033", "06045", "06055", "06095"}
    assert {fid: evs for fid, evs in run["by_fence"].items() if fid in neighbours} == {}


@pytest.mark.parametrize("fence_id", sorted(EXPECTED_VISITS))
def test_place_fence_visits_go_enter_dwell_exit_without_flapping(run, fences, fence_id):
    events = run["by_fence"][fence_id]
    fence = fences[fence_id]

    # Split into visits: each starts with an enter; only the last may stay open.
    visits: list[list] = []
    for e in events:
        if e.type == "enter":
            assert not visits or visits[-1][-1].type == "exit", f"enter while inside: {events}"
            visits.append([e])
        else:
            assert visits and visits[-1][-1].type != "exit", f"{e.type} while outside: {events}"
            visits[-1].append(e)
    assert len(visits) == EXPECTED_VISITS[fence_id], events

    for n, visit in enumerate(visits):
        kinds = [e.type for e in visit]
        assert kinds in (["enter", "exit"], ["enter", "dwell", "exit"], ["enter"], ["enter", "dwell"]), kinds
        assert kinds[-1] == "exit" or n == len(visits) - 1, "only the visit at the end of the trace may stay open"
        enter = visit[0]
        assert fence.distance_m(enter.lat, enter.lng) == 0.0, "enter at a ping outside the fence"
        end = _epoch(visit[-1].at) if kinds[-1] == "exit" else math.inf
        if kinds[-1] == "exit":
            assert fence.distance_m(visit[-1].lat, visit[-1].lng) > 10.0, "exit within the 10 m buffer"
        # Dwell: once, at the first ping inside the fence dwell_minutes or more after the enter.
        due = [
            p for p in run["points"]
            if fence.dwell_minutes is not None
            and _epoch(enter.at) + fence.dwell_minutes * 60 <= p.time.timestamp() < end
            and fence.distance_m(p.lat, p.lng) == 0.0
        ]
        dwell_at = [e.at for e in visit if e.type == "dwell"]
        assert dwell_at == ([due[0].timestamp] if due else []), (kinds, dwell_at)

    # No flapping: a fence is never entered again within a minute.
    enters = [_epoch(v[0].at) for v in visits]
    assert all(b - a > 60 for a, b in zip(enters, enters[1:])), enters


def test_the_creek_trail_dwell_fires_on_both_passes(run):
    kinds = [e.type for e in run["by_fence"]["sr-creek-trail"]]
    assert kinds == ["enter", "dwell", "exit"] * 2


def test_at_the_finish_the_device_is_inside_sonoma_and_the_start_finish_area(run):
    ours = {"06097", *EXPECTED_VISITS}
    assert sorted(set(run["device"]["fences"]) & (ours | {"06041", "06033", "06045", "06055", "06095"})) == [
        "06097", "sr-start-finish"]

