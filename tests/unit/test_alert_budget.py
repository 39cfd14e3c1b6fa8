"""Bounded work per alert, and an intake that never does the planner's work:
areas over the budget are reported ``area_too_large`` without a single
region Query, plans are coarsened to fit the Query budget, covers are
reused, concurrent duplicates are taken once and a poison message fails
alone."""

from __future__ import annotations

import copy
import threading

import pytest
import shapely

from chalicelib.services import alert_planning, weather
from chalicelib.services import campaigns as campaign_service
from chalicelib.weather.fanout import InlineQueue
from chalicelib.weather.targets import plan_area
from tests.alert_flow import outcomes, plan_queued, post_and_plan
from tests.unit.test_weather_service import STORM_CAMPAIGN, anchor, grid, make_deps, place, sample

FLOOD = sample("flash_flood_warning_polygon_update")


def alert_over(geometry: dict, alert_id: str) -> dict:
    f = copy.deepcopy(FLOOD["feature"])
    f["geometry"] = geometry
    f["properties"].update(id=alert_id, references=[], messageType="Alert")
    return f


class CountingDevices:
    """The device repository, counting region-index Queries."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.queries = 0

    def devices_in_ranges(self, queries):
        queries = list(queries)
        self.queries += sum(len(q.ranges) for q in queries)
        return self.inner.devices_in_ranges(queries)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture
def deps():
    d = make_deps(anchor(FLOOD))
    campaign_service.put_campaign(d, "storm", STORM_CAMPAIGN)
    place(d, grid(47.42, -122.28, 47.47, -122.20, 4))
    d.devices = CountingDevices(d.devices)  # type: ignore[assignment]
    return d


@pytest.mark.parametrize("box, why", [
    ((-180, -85, 180, 85), "km²"),  # the whole globe
    ((-170, 15, -50, 75), "km²"),  # North America
])
def test_a_continent_is_area_too_large_and_reads_nothing(deps, box, why):
    out = post_and_plan(deps, alert_over(shapely.geometry.mapping(shapely.box(*box)), "urn:oid:test.huge"))[0]
    assert (out["status"], out["reason"]) == ("ignored", "area_too_large")
    assert why in out["detail"]
    assert deps.devices.queries == 0 and deps.push.published == []
    assert weather.get_alert(deps, "urn:oid:test.huge")["reason"] == "area_too_large"


def test_a_state_sized_area_is_planned_within_the_query_budget(deps):
    texas = shapely.box(-106.6, 25.8, -93.5, 36.5)
    out = post_and_plan(deps, alert_over(shapely.geometry.mapping(texas), "urn:oid:test.texas"))[0]
    assert out["status"] == "processed"
    assert 0 < deps.devices.queries <= alert_planning.MAX_QUERIES


def test_a_plan_over_the_query_budget_is_coarsened_not_dropped(deps, monkeypatch):
    poly = shapely.geometry.shape(FLOOD["feature"]["geometry"])
    fine = plan_area(poly, shards=deps.settings.region_shards, max_boundary=alert_planning.BOUNDARY_LADDER[0]).query_count
    monkeypatch.setattr(alert_planning, "MAX_QUERIES", fine - 1)
    out = post_and_plan(deps, FLOOD["feature"])[0]
    assert out["status"] == "processed" and out["devices_targeted"] > 0
    assert deps.devices.queries < fine


def test_too_many_vertices_is_reported_at_intake(deps):
    ring = [[-122.3 + 0.1 * (i / 30000), 47.4 + 0.0001 * (i % 2)] for i in range(30000)]
    ring = ring + [[-122.2, 47.5], [-122.3, 47.5], ring[0]]
    out = weather.post_alerts(deps, alert_over({"type": "Polygon", "coordinates": [ring]}, "urn:oid:test.spiky"))
    (res,) = out["alerts"]
    assert (res["status"], res["reason"]) == ("ignored", "area_too_large")
    assert deps.devices.queries == 0
    # Recorded: the feed repeating it is a duplicate, not new work.
    again = weather.post_alerts(deps, alert_over({"type": "Polygon", "coordinates": [ring]}, "urn:oid:test.spiky"))
    assert again["alerts"][0]["status"] == "duplicate"


def test_the_cover_of_an_area_is_computed_once(deps):
    first = alert_over(FLOOD["feature"]["geometry"], "urn:oid:test.one")
    second = alert_over(FLOOD["feature"]["geometry"], "urn:oid:test.two")  # another lineage, same polygon
    post_and_plan(deps, first)
    post_and_plan(deps, second)
    assert (deps.plans.misses, deps.plans.hits) == (1, 1)


def test_the_same_alert_posted_twenty_times_at_once_is_taken_once(deps, monkeypatch):
    deps.queue = InlineQueue()
    answers: list[str] = []
    start = threading.Barrier(20)

    def post() -> None:
        start.wait()
        answers.append(weather.post_alerts(deps, FLOOD["feature"])["alerts"][0]["status"])

    threads = [threading.Thread(target=post) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == ["accepted"] + ["duplicate"] * 19
    # A duplicate of an alert still queued sends its message again (an intake
    # that died between the record and the queue loses nothing); the
    # planner plans it once and reads one record for each copy.
    planned = []
    real = alert_planning._plan
    monkeypatch.setattr(alert_planning, "_plan", lambda *a: planned.append(a[1].id) or real(*a))
    plan_queued(deps)
    assert planned == [FLOOD["feature"]["properties"]["id"]]


def test_a_poison_message_fails_alone(deps):
    deps.queue = InlineQueue()
    weather.post_alerts(deps, FLOOD["feature"])
    with pytest.raises(ValueError):
        alert_planning.plan_alert(deps, '{"v":1,"kind":"alert","alert":{"id":"x"}}')
    with pytest.raises(ValueError):
        alert_planning.plan_alert(deps, "not json at all")
    plan_queued(deps)
    (out,) = outcomes(deps, [{"id": FLOOD["feature"]["properties"]["id"], "status": "accepted"}])
    assert out["status"] == "processed"


def test_a_redelivered_alert_message_is_planned_once(deps):
    deps.queue = InlineQueue()
    weather.post_alerts(deps, FLOOD["feature"])
    (body,) = deps.queue.messages
    first = alert_planning.plan_alert(deps, body)
    again = alert_planning.plan_alert(deps, body)
    assert first["status"] == again["status"] == "processed"
    assert again == first and deps.devices.queries > 0


def test_a_lost_enqueue_is_made_good_by_the_retry(deps):
    class Down:
        def send(self, name, bodies):
            raise ConnectionError("SQS is down")

    deps.queue = Down()
    with pytest.raises(Exception) as exc:
        weather.post_alerts(deps, FLOOD["feature"])
    assert exc.value.__class__.__name__ == "Unavailable"
    deps.queue = InlineQueue()
    assert weather.post_alerts(deps, FLOOD["feature"])["alerts"][0]["status"] == "accepted"  # nothing was taken
    assert plan_queued(deps) == 1
