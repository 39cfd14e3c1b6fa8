"""Failures the system survives by design must not pass unnoticed: a feed
that keeps failing and a stored campaign that no longer compiles each leave
an ERROR line and a metric (alarms are set on the metrics); and the
fan-out's sender and consumer name the same queue."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from chalicelib import metrics
from chalicelib.services.fence_cache import VersionCache
from tests.fake_push import FakePushGateway
from chalicelib.services.deps import Deps
from chalicelib.services import campaigns as campaign_service
from chalicelib.services import weather
from chalicelib.services.delivery import CampaignCache
from chalicelib.settings import Settings
from chalicelib.store import memory_stores
from chalicelib.store.memory_weather import MemoryWeather
from chalicelib.settings import alert_queue_name, fanout_queue_name
from tests.alert_flow import post_and_plan
from chalicelib.weather.poller import ERROR, NOT_MODIFIED

T0 = 1_780_000_000.0  # a fixed instant: nothing here depends on today

CAMPAIGN = {
    "name": "Welcome",
    "trigger": {"type": "geofence_enter", "fence_ids": ["store-1"]},
    "message": {"title": "Hi", "body": "Welcome to {{ fence.name }}"},
}


class FlakyFeedStore(MemoryWeather):
    """The feed state is unreadable while ``broken`` (no HTTP is attempted
    then); else it says the last response is still fresh (no HTTP either)."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = True

    def get_feed_state(self, url: str) -> dict | None:
        if self.broken:
            raise RuntimeError("throttled")
        return {"etag": None, "last_modified": None, "status": "ok", "fetched_at": T0, "max_age": 60.0}


def make_deps(weather: MemoryWeather | None = None, settings: Settings | None = None) -> Deps:
    """Deps over the in-memory twins; ``weather``: the weather repository to use instead of the twin's."""
    settings = settings or Settings(stage="test", campaign_cache_s=0)
    stores = memory_stores(clock=lambda: T0)
    if weather is not None:
        stores.weather = weather
    return Deps.over(stores, settings, clock=lambda: T0, cache=VersionCache(), push=FakePushGateway(),
                     campaign_cache=CampaignCache(0))


@pytest.fixture(autouse=True)
def propagating(monkeypatch: pytest.MonkeyPatch) -> None:
    """caplog listens at the root: the app's logging setup (run by other
    tests of the session) stops ``hexcast`` lines from propagating there."""
    monkeypatch.setattr(logging.getLogger("hexcast"), "propagate", True)


def errors(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR and r.getMessage() == message]


# ---------------------------------------------------------------- the feed
def test_every_failed_poll_is_an_error_line_and_a_metric_with_the_consecutive_count(caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyFeedStore()
    deps = make_deps(store)
    failures = weather.FeedFailures()
    caplog.set_level(logging.INFO, logger="hexcast")
    with metrics.invocation(lambda: "t") as inv:
        results = [weather.poll_feed(deps, failures) for _ in range(3)]
    assert [r.status for r in results] == [ERROR] * 3  # the poller still never raises
    lines = errors(caplog, "weather feed failing")
    assert [r.__dict__["consecutive_failures"] for r in lines] == [1, 2, 3]
    assert all(r.__dict__["url"] == deps.settings.weather_feed_url for r in lines)
    assert all("feed state unreadable" in r.__dict__["reason"] for r in lines)
    assert inv.counts[()]["feed_failures"] == 3
    assert inv.values["feed_consecutive_failures"] == [1.0, 2.0, 3.0]


def test_a_poll_that_works_resets_the_count(caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyFeedStore()
    deps = make_deps(store)
    failures = weather.FeedFailures()
    caplog.set_level(logging.INFO, logger="hexcast")
    with metrics.invocation(lambda: "t") as inv:
        weather.poll_feed(deps, failures)
        store.broken = False
        assert weather.poll_feed(deps, failures).status == NOT_MODIFIED
        store.broken = True
        weather.poll_feed(deps, failures)
    assert [r.__dict__["consecutive_failures"] for r in errors(caplog, "weather feed failing")] == [1, 1]
    assert inv.counts[()]["feed_failures"] == 2


# ---------------------------------------------------------------- campaigns
def test_a_stored_campaign_that_no_longer_compiles_is_an_error_line_and_a_metric(caplog: pytest.LogCaptureFixture) -> None:
    deps = make_deps()
    store = deps.campaigns
    campaign_service.put_campaign(deps, "good", CAMPAIGN)
    # Stored by an older version whose rules were looser: it no longer parses.
    store.put_campaign("broken", {**CAMPAIGN, "trigger": {"type": "no_such_trigger"}}, "2026-06-01T00:00:00Z")
    caplog.set_level(logging.INFO, logger="hexcast")
    with metrics.invocation(lambda: "t") as inv:
        compiled = deps.campaign_cache.all(store, T0)
    assert [c.campaign_id for c in compiled] == ["good"]  # the others still work
    (line,) = errors(caplog, "stored campaign no longer compiles")
    assert line.__dict__["campaign_id"] == "broken" and line.exc_info is not None
    assert inv.counts[()]["campaign_compile_errors"] == 1


# ---------------------------------------------------------------- the fan-out queue
class RecordingQueue:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.messages: list[str] = []

    def send(self, name: str, bodies: list[str]) -> int:
        self.names.append(name)
        self.messages += list(bodies)
        return len(self.messages)


@pytest.mark.parametrize("env", [
    {},
    {"HEXCAST_STAGE": "prod"},
    {"HEXCAST_STAGE": "dev", "HEXCAST_FANOUT_QUEUE": "hexcast-dev-fanout-2"},
])
def test_the_consumers_queue_name_is_the_one_settings_hold(env: dict[str, str]) -> None:
    assert fanout_queue_name(env) == Settings.from_env(env).fanout_queue
    assert alert_queue_name(env) == Settings.from_env(env).alert_queue


def test_the_sender_uses_the_settings_queue() -> None:
    from tests.unit.test_weather_service import STORM_CAMPAIGN, anchor, grid, place, sample
    from tests.unit.test_weather_service import make_deps as weather_deps

    s = sample("flash_flood_warning_polygon_update")
    deps = weather_deps(anchor(s), chunk=2)
    deps.settings = dataclasses.replace(deps.settings, fanout_queue="hexcast-test-fanout-x",
                                        alert_queue="hexcast-test-alerts-x")
    deps.queue = RecordingQueue()
    campaign_service.put_campaign(deps, "storm", STORM_CAMPAIGN)
    place(deps, grid(47.43, -122.25, 47.455, -122.23, 4))
    out = post_and_plan(deps, s["feature"])[0]
    assert out["queued_chunks"] > 1
    assert deps.queue.names == ["hexcast-test-alerts-x", "hexcast-test-fanout-x"]
