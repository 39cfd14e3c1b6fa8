"""Fault injection — the small, seeded versions of the soak
(``make soak`` runs the full counts; RELIABILITY.md has the figures): under
DynamoDB throttling, conditional-check races, SNS throttling and disabled
endpoints, crashed and retried invocations and redelivered fan-out
messages, every (campaign, device, trigger) of the fault-free run ends in
exactly one final record, none is published twice, none is lost, and two
concurrent pings of one device lose no enter or exit."""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from chalicelib.store.memory_deliveries import MemoryDeliveries
from tests import faults
from tests.faults import FAULT_KINDS, Rates


@pytest.fixture(autouse=True)
def quiet_logs():
    logging.disable(logging.WARNING)  # thousands of injected failures are logged as warnings
    yield
    logging.disable(logging.NOTSET)


def check(rep) -> None:
    assert rep.ok, "\n".join(rep.lines())
    assert rep.records == rep.expected > 0


def test_storm_fan_out_under_faults_ends_in_exactly_one_record_each():
    rep = faults.storm(11, 400, Rates.harsh(), chunk=20, redelivery=0.5)
    check(rep)
    for kind in ("ddb_throttle", "claim_race", "sns_throttle", "crash", "sqs_redelivery"):
        assert rep.faults[kind] > 0, kind
    assert rep.effects["sqs_redelivery_after_failure"] > 0
    assert rep.publishes == rep.statuses["sent"] + rep.published_interrupted


def test_ping_replay_under_faults_loses_nothing_and_sends_nothing_twice():
    rep = faults.ping_replay(12, 120, 20, Rates.harsh(), twin=0.08, duplicate=0.08)
    check(rep)
    for kind in ("ddb_throttle", "state_race", "claim_race", "sns_throttle", "endpoint_disabled", "crash",
                 "ping_twin_raced", "ping_duplicate_late"):
        assert rep.faults[kind] > 0, kind
    assert rep.effects["ping_retry"] > 0
    assert any(k.startswith("pending->") for k in rep.swept)  # the sweep had work to do


def test_two_different_pings_of_one_device_at_once_lose_no_enter_or_exit():
    rep = faults.concurrent_pairs(13, 120, Rates.harsh())
    assert rep.ok, "\n".join(rep.lines())
    assert rep.matched_in_order + rep.matched_reversed == 120
    assert rep.matched_in_order > 0 and rep.matched_reversed > 0  # both orders really happened
    assert rep.faults["state_race"] > 0 and rep.exits > 0


def test_every_fault_kind_is_exercised():
    seen: Counter = Counter()
    seen.update(faults.storm(14, 150, Rates.harsh(), chunk=10, redelivery=0.5).faults)
    seen.update(faults.ping_replay(14, 60, 12, Rates.harsh(), twin=0.1, duplicate=0.1).faults)
    assert [k for k in FAULT_KINDS if not seen[k]] == []


def test_the_same_seed_gives_the_same_figures():
    one = faults.storm(15, 150, Rates.harsh(), workers=1, chunk=10, redelivery=0.5)
    two = faults.storm(15, 150, Rates.harsh(), workers=1, chunk=10, redelivery=0.5)
    assert (one.faults, one.effects, one.statuses, one.swept) == (two.faults, two.effects, two.statuses, two.swept)


def test_the_harness_sees_a_push_sent_twice(monkeypatch):
    """Without conditional writes (no claim, no status condition),
    redelivered messages send again: the counts say so (the harness can fail)."""
    claim, update = MemoryDeliveries.claim_delivery, MemoryDeliveries.update_delivery

    def no_claim(self, d):
        claim(self, d)
        return None  # "created": every copy goes on to publish

    def unconditional(self, did, changes, **kwargs):
        kwargs.pop("expect_status", None)
        return update(self, did, {"updated_at": faults.T0, **changes}, **kwargs)

    monkeypatch.setattr(MemoryDeliveries, "claim_delivery", no_claim)
    monkeypatch.setattr(MemoryDeliveries, "update_delivery", unconditional)
    rep = faults.storm(16, 100, Rates.none(), chunk=10, redelivery=1.0)
    assert rep.duplicates > 0 and not rep.ok
