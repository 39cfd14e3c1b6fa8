"""The fault-injection worlds wrap every repository on its own
(:func:`tests.faults.faulty_stores`), as the services use them: the same
guarantees as ``test_faults.py``, on other seeds."""

from __future__ import annotations

import logging

import pytest

from chalicelib.store import memory_stores
from tests import faults
from tests.faults import FaultyRepo, Rates


@pytest.fixture(autouse=True)
def quiet_logs():
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def test_each_repository_is_wrapped():
    stores = faults.faulty_stores(memory_stores(clock=lambda: faults.T0), faults.Faults(1, Rates.none()))
    assert all(isinstance(getattr(stores, f), FaultyRepo) for f in ("fences", "devices", "campaigns", "deliveries", "weather"))
    world = faults.make_world(1, Rates.none())
    assert all(isinstance(getattr(world.deps, f), FaultyRepo) for f in ("fences", "devices", "campaigns", "deliveries", "weather"))
    assert world.deps.deliveries.inner is world.stores.deliveries  # the checks read the real twins


def test_storm_under_faults_with_split_repositories():
    rep = faults.storm(21, 150, Rates.harsh(), chunk=10, redelivery=0.5)
    assert rep.ok, "\n".join(rep.lines())
    assert rep.records == rep.expected > 0 and rep.faults["ddb_throttle"] > 0 and rep.faults["claim_race"] > 0


def test_ping_replay_under_faults_with_split_repositories():
    rep = faults.ping_replay(22, 60, 12, Rates.harsh(), twin=0.1, duplicate=0.1)
    assert rep.ok, "\n".join(rep.lines())
    assert rep.faults["state_race"] > 0 and rep.faults["crash"] > 0
