"""The local stack stays on 127.0.0.1: its weather poller is off unless a feed
is configured, and a recorded feed file is served on loopback and polled."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tools.demo_storm import rebased_alert
from tools.localstack import FEED_FILE_ENV, FEED_POLLER, FEED_URL_ENV, LocalStack

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class NetworkSpy:
    """Every host name resolved and every address connected to in this process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.resolved: list[str] = []
        self.connected: list[str] = []
        real_getaddrinfo = socket.getaddrinfo
        real_connect = socket.socket.connect
        spy = self

        def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
            spy.resolved.append(host.decode() if isinstance(host, bytes) else str(host))
            return real_getaddrinfo(host, *args, **kwargs)

        def connect(sock: socket.socket, address: Any) -> None:
            if isinstance(address, tuple):
                spy.connected.append(str(address[0]))
            return real_connect(sock, address)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket.socket, "connect", connect)

    def outside(self) -> list[str]:
        return [h for h in self.resolved + self.connected if h not in LOOPBACK]


@pytest.fixture
def no_feed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FEED_URL_ENV, raising=False)
    monkeypatch.delenv(FEED_FILE_ENV, raising=False)


def test_by_default_the_poller_is_off_and_nothing_leaves_loopback(no_feed_env, monkeypatch):
    with LocalStack(port=0) as stack:
        assert stack.feed_url is None
        assert stack.pump is not None and stack.pump.skip_schedules == {FEED_POLLER}
        spy = NetworkSpy(monkeypatch)

        assert stack.pump.run_schedules() == 2  # release_held and sweep_locations, against the emulator
        assert requests.get(f"{stack.base_url}/v1/health", timeout=10).status_code == 200

    assert stack.pump.stats[FEED_POLLER]["runs"] == 0
    assert spy.connected, "the spy saw the calls to the emulator"
    assert spy.outside() == []


def test_a_recorded_feed_file_is_served_on_loopback_and_polled(no_feed_env, monkeypatch, tmp_path: Path):
    feed = tmp_path / "alerts.json"
    feed.write_text(json.dumps({"type": "FeatureCollection", "features": [rebased_alert(time.time())]}))
    monkeypatch.setenv(FEED_FILE_ENV, str(feed))

    with LocalStack(port=0) as stack:
        assert stack.feed_replay is not None
        assert stack.feed_url == stack.feed_replay.url and stack.feed_url.startswith("http://127.0.0.1:")
        spy = NetworkSpy(monkeypatch)

        assert stack.pump.run_schedules() == 3
        assert stack.pump.results[FEED_POLLER] == {"status": "ok", "alerts": 1, "reason": None}
        assert stack.feed_replay.requests == 1

    assert spy.outside() == []
    assert FEED_URL_ENV not in __import__("os").environ  # restored on stop
