"""Hostile input, measured: every route, bad
requests of every kind → never a 5xx, every 4xx with the documented error body,
and a rejected request writes nothing (all tables compared before and after).

``make test`` runs a small seeded version (the documented limits, a sweep of
wrong types over every field, and a few hundred generated requests);
``make hostile`` (``python -m tools.hostile``) runs the full count and
prints the figures recorded in RELIABILITY.md. The generator and the
judging live in ``tests/hostile.py``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings

from tests import hostile

#: generated requests (on top of the catalogue); the full run sets ≥ 10,000
REQUESTS = int(os.environ.get("HEXCAST_HOSTILE_REQUESTS", "300"))
FULL = os.environ.get("HEXCAST_HOSTILE_FULL") == "1"
SEED = int(os.environ.get("HEXCAST_HOSTILE_SEED", "20260501"))
REPORT = os.environ.get("HEXCAST_HOSTILE_REPORT")


@pytest.fixture
def harness(api, monkeypatch):
    """The app over moto, seeded; zone geometries never fetched over the network."""
    from chalicelib.weather.zones import ZoneFetcher

    monkeypatch.setattr(ZoneFetcher, "_fetch", lambda self, url: (None, True))
    h = hostile.Harness(api)
    h.verbose = FULL  # progress lines on stderr
    h.seed()
    yield h
    h.close()


def test_hostile_requests_never_5xx_and_rejections_write_nothing(harness):
    world = harness.world
    start = time.perf_counter()

    harness.run(hostile.catalogue(world, full=FULL))

    @seed(SEED)
    @settings(max_examples=REQUESTS, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(req=hostile.requests(world))
    def generated(req):
        harness.send(req)

    generated()

    tally = harness.tally
    tally.seconds = time.perf_counter() - start
    print("\n" + tally.report())
    if REPORT:
        Path(REPORT).parent.mkdir(parents=True, exist_ok=True)
        Path(REPORT).write_text(json.dumps({"seed": SEED, "generated": REQUESTS, "full": FULL, **tally.to_json()}, indent=1, default=str))

    assert set(tally.by_route) == {r.name for r in hostile.ROUTES}, "every route is tried"
    assert not tally.server_errors, "5xx:\n" + "\n".join(tally.server_errors[:10])
    assert not tally.partial_writes, "partial writes:\n" + "\n".join(tally.partial_writes[:10])
    assert not tally.bad_error_bodies, "4xx without the documented error body:\n" + "\n".join(tally.bad_error_bodies[:10])
    assert not tally.unexpected, "a documented limit answered otherwise:\n" + "\n".join(tally.unexpected[:10])
    if FULL:
        assert tally.requests >= 10_000


def test_geometry_budget_edges(harness):
    """The geometry budget's edges alone (they are in the catalogue too):
    the expected status, the error body, nothing written when rejected."""
    by_path = {r.name: r for r in hostile.ROUTES}
    reqs = []
    for name, body, exp, label in hostile.budget_edges():
        route = by_path[name]
        rid = hostile.SCRATCH_IDS[route.id_kind][0] if route.id_kind else None
        reqs.append(hostile.make(route, harness.world, id_=rid, body=hostile.dump(body), kind="limit", expect=exp, limit=label))
    harness.run(reqs)
    tally = harness.tally
    assert not tally.server_errors and not tally.partial_writes and not tally.bad_error_bodies
    assert not tally.unexpected, "\n".join(tally.unexpected)
