"""The alert-feed poller against a mocked HTTP feed (``responses``), with the
in-memory feed state."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import requests
import responses

from chalicelib.settings import Settings
from chalicelib.store.memory_weather import MemoryWeather
from chalicelib.weather.poller import PollResult, max_age_s, poll

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nws"
URL = "https://api.weather.test/alerts/active?status=actual"
NOW = 1_790_000_000.0
ETAG = '"W/5f0a-18c6"'
LAST_MODIFIED = "Mon, 21 Sep 2026 12:00:00 GMT"


class Handler:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[dict] = []
        self.fail = fail

    def __call__(self, body: dict) -> None:
        self.calls.append(body)
        if self.fail:
            raise RuntimeError("the alert code broke")


@pytest.fixture
def settings() -> Settings:
    return Settings(stage="test", weather_feed_url=URL, weather_user_agent="hexcast-test (ops@example.test)",
                    weather_http_timeout_s=2.5)


@pytest.fixture
def store() -> MemoryWeather:
    return MemoryWeather()


@pytest.fixture
def bundle() -> bytes:
    return (FIXTURES / "pynws__alerts_active_zone.json").read_bytes()


@pytest.fixture
def feed():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def test_200_hands_the_collection_over_once_and_remembers_the_validators(feed, store, settings, bundle):
    feed.get(URL, body=bundle, status=200, content_type="application/geo+json",
             headers={"ETag": ETAG, "Last-Modified": LAST_MODIFIED, "Cache-Control": "public, max-age=30"})
    handle = Handler()
    result = poll(store, settings, handle, now=NOW)
    assert result == PollResult("ok", 200, 1, None)
    assert handle.calls == [json.loads(bundle)]
    sent = feed.calls[0].request
    assert sent.headers["User-Agent"] == "hexcast-test (ops@example.test)"
    assert sent.headers["Accept"] == "application/geo+json"
    assert "If-None-Match" not in sent.headers and "If-Modified-Since" not in sent.headers
    assert sent.req_kwargs["timeout"] == 2.5
    assert store.get_feed_state(URL) == {"etag": ETAG, "last_modified": LAST_MODIFIED, "fetched_at": NOW,
                                         "status": "ok", "max_age": 30.0}


def test_304_sends_the_validators_and_calls_nothing(feed, store, settings, bundle):
    feed.get(URL, body=bundle, status=200, headers={"ETag": ETAG, "Last-Modified": LAST_MODIFIED})
    feed.get(URL, status=304, headers={"Cache-Control": "max-age=20"})
    handle = Handler()
    assert poll(store, settings, handle, now=NOW).status == "ok"
    result = poll(store, settings, handle, now=NOW + 120)
    assert result == PollResult("not_modified", 304, 0, None)
    assert len(handle.calls) == 1
    second = feed.calls[1].request
    assert second.headers["If-None-Match"] == ETAG
    assert second.headers["If-Modified-Since"] == LAST_MODIFIED
    # The 304 keeps the validators and refreshes the freshness window.
    assert store.get_feed_state(URL) == {"etag": ETAG, "last_modified": LAST_MODIFIED, "fetched_at": NOW + 120,
                                         "status": "not_modified", "max_age": 20.0}


def test_a_changed_feed_is_fetched_and_handled_again(feed, store, settings, bundle):
    second = (FIXTURES / "pynws__alerts_active_zone_second.json").read_bytes()
    feed.get(URL, body=bundle, headers={"ETag": ETAG})
    feed.get(URL, body=second, headers={"ETag": '"v2"'})
    handle = Handler()
    poll(store, settings, handle, now=NOW)
    result = poll(store, settings, handle, now=NOW + 120)
    assert result.status == "ok" and result.alerts == 2
    assert [len(b["features"]) for b in handle.calls] == [1, 2]
    assert store.get_feed_state(URL)["etag"] == '"v2"'


@pytest.mark.parametrize("status", [500, 503, 404, 429])
def test_http_errors_are_reported_and_logged_with_the_url(feed, store, settings, caplog, status):
    feed.get(URL, status=status, body="upstream trouble")
    handle = Handler()
    with caplog.at_level(logging.WARNING, logger="hexcast.weather"):
        result = poll(store, settings, handle, now=NOW)
    assert result == PollResult("error", status, 0, f"HTTP {status}")
    assert handle.calls == [] and store.get_feed_state(URL) is None
    [rec] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert rec.url == URL and rec.http_status == status


@pytest.mark.parametrize(
    "exc, reason",
    [(requests.exceptions.ReadTimeout("read timed out"), "timeout"),
     (requests.exceptions.ConnectTimeout("connect timed out"), "timeout"),
     (requests.exceptions.ConnectionError("refused"), "request failed: ConnectionError")],
)
def test_timeouts_and_connection_errors_are_reported(feed, store, settings, caplog, exc, reason):
    feed.get(URL, body=exc)
    with caplog.at_level(logging.WARNING, logger="hexcast.weather"):
        result = poll(store, settings, Handler(), now=NOW)
    assert result.status == "error" and result.http_status is None and result.reason.startswith(reason)
    assert any(r.url == URL for r in caplog.records if r.levelno == logging.WARNING)


@pytest.mark.parametrize(
    "body, reason",
    [(b'{"type": "FeatureCollection", "features": [', "the body is not JSON"),
     (b"<html>Service Unavailable</html>", "the body is not JSON"),
     (b'{"type": "Feature", "properties": {}, "geometry": null}', "the body is not a GeoJSON FeatureCollection"),
     (b'{"type": "FeatureCollection", "features": {}}', "the body is not a GeoJSON FeatureCollection"),
     (b"[]", "the body is not a GeoJSON FeatureCollection")],
)
def test_bodies_that_are_not_a_feature_collection_are_errors(feed, store, settings, body, reason):
    feed.get(URL, body=body, headers={"ETag": ETAG})
    handle = Handler()
    assert poll(store, settings, handle, now=NOW) == PollResult("error", 200, 0, reason)
    assert handle.calls == [] and store.get_feed_state(URL) is None


def test_max_age_skips_the_request_while_fresh(feed, store, settings, bundle):
    feed.get(URL, body=bundle, headers={"ETag": ETAG, "Cache-Control": "public, max-age=60, s-maxage=60", "Age": "10"})
    handle = Handler()
    poll(store, settings, handle, now=NOW)
    assert poll(store, settings, handle, now=NOW + 49) == PollResult("not_modified", None, 0, "fresh")
    assert len(feed.calls) == 1
    assert poll(store, settings, handle, now=NOW + 50).status == "ok"  # 60 s less the 10 s it had aged
    assert len(feed.calls) == 2 and len(handle.calls) == 2


def test_handle_raising_keeps_the_old_state_so_the_next_poll_refetches(feed, store, settings, bundle, caplog):
    feed.get(URL, body=bundle, headers={"ETag": ETAG, "Cache-Control": "max-age=600"})
    with caplog.at_level(logging.WARNING, logger="hexcast.weather"):
        result = poll(store, settings, Handler(fail=True), now=NOW)
    assert result.status == "error" and result.http_status == 200 and "RuntimeError" in result.reason
    assert store.get_feed_state(URL) is None
    assert any(r.url == URL for r in caplog.records if r.levelno == logging.WARNING)
    handle = Handler()
    result = poll(store, settings, handle, now=NOW + 1)  # neither "fresh" nor a conditional request
    assert result.status == "ok" and len(handle.calls) == 1
    assert "If-None-Match" not in feed.calls[1].request.headers


def test_handle_raising_after_an_earlier_success_resends_the_earlier_validators(feed, store, settings, bundle):
    second = (FIXTURES / "pynws__alerts_active_zone_second.json").read_bytes()
    feed.get(URL, body=bundle, headers={"ETag": ETAG})
    feed.get(URL, body=second, headers={"ETag": '"v2"'})
    poll(store, settings, Handler(), now=NOW)
    assert poll(store, settings, Handler(fail=True), now=NOW + 120).status == "error"
    assert store.get_feed_state(URL)["etag"] == ETAG
    handle = Handler()
    assert poll(store, settings, handle, now=NOW + 240).status == "ok"
    assert feed.calls[2].request.headers["If-None-Match"] == ETAG
    assert len(handle.calls[0]["features"]) == 2


def test_an_unreadable_feed_state_is_an_error_not_an_exception(settings):
    class Broken:
        def get_feed_state(self, url):
            raise RuntimeError("database down")

    assert poll(Broken(), settings, Handler(), now=NOW).status == "error"


def test_a_session_can_be_supplied(feed, store, settings, bundle):
    feed.get(URL, body=bundle)
    with requests.Session() as session:
        assert poll(store, settings, Handler(), session=session, now=NOW).status == "ok"


def test_max_age_parsing():
    assert max_age_s({"Cache-Control": "max-age=300"}) == 300.0
    assert max_age_s({"Cache-Control": "public, s-maxage=60"}) is None
    assert max_age_s({"Cache-Control": "private, no-store"}) == 0.0
    assert max_age_s({"Cache-Control": "max-age=30", "Age": "45"}) == 0.0
    assert max_age_s({"Cache-Control": "max-age=30", "Age": "soon"}) == 30.0
