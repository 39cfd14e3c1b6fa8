"""DynamoDB faults below the repositories (a botocore ``before-call`` injector,
as tests/integration/test_sns_gateway.py does for SNS): throttling surfaces
as ``Unavailable`` from every write, and records a failed invocation left
open are found through the sparse ``open`` index on moto and resolved by
the sweep — the same code path as on AWS."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from chalicelib.services.fence_cache import VersionCache
from chalicelib.services.deps import Deps
from chalicelib.errors import Unavailable
from chalicelib.services import campaigns as campaign_service
from chalicelib.services import engagement
from tests.fake_push import FakePushGateway
from chalicelib.services.devices import register_device
from chalicelib.services.geofences import put_geofence
from chalicelib.services.pings import handle_pings
from chalicelib.services.delivery import STALE_OPEN_S, CampaignCache
from chalicelib.settings import get_settings
from chalicelib.store import dynamo_stores
from tests.faults import Crash

T0 = 1_790_000_000.0
INSIDE, OUTSIDE = (38.44, -122.7), (38.46, -122.7)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def throttle(client, operation: str, plan: list[str]) -> list[str]:
    """Answer the next calls of ``operation`` by ``plan`` ("pass" or
    "throttle"), then let every call through; returns what was done."""
    done: list[str] = []

    def respond(**_):
        if not plan:
            return None
        step = plan.pop(0)
        done.append(step)
        if step == "pass":
            return None
        parsed = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "injected"},
                  "ResponseMetadata": {"HTTPStatusCode": 400, "RequestId": "r"}}
        return AWSResponse("https://dynamodb.us-east-1.amazonaws.com/", 400, {}, None), parsed

    client.meta.events.register_first(f"before-call.dynamodb.{operation}", respond)
    return done


@pytest.fixture
def client(moto_aws):
    """The one DynamoDB client under every repository of ``deps`` (faults go in here)."""
    # botocore's own retries off: the injected throttle reaches the adapter.
    return boto3.client("dynamodb", config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))


@pytest.fixture
def deps(client):
    settings, clock = get_settings(), Clock(T0)
    # The repositories' clock is the services' clock: listings never depend on today's date.
    d = Deps.over(dynamo_stores(client, settings, clock=clock), settings, clock=clock, cache=VersionCache(),
                  push=FakePushGateway(), campaign_cache=CampaignCache(0), sleep=lambda s: None)
    put_geofence(d, "store-1", {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-122.7, 38.44]},
                                         "properties": {"radius_m": 200, "name": "Main St store"}})
    register_device(d, "d1", {"platform": "ios", "push_token": "tok-d1", "attributes": {"first_name": "Ana"},
                                       "consent": {"push": True, "location": True}})
    campaign_service.put_campaign(d, "c1", {"name": "Visit", "trigger": {"type": "geofence_enter", "fence_ids": ["store-1"]},
                                   "message": {"title": "Welcome to {{ fence.name }}", "body": "Hi {{ first_name }}"}})
    return d


def ping(deps, where, dt):
    deps.clock.now = max(deps.clock.now, T0 + dt)
    lat, lng = where
    return handle_pings(deps, {"device_id": "d1", "lat": lat, "lng": lng, "timestamp": T0 + dt})["results"][0]


def deliveries(deps):
    return deps.deliveries.list_deliveries()[0]


def test_a_throttled_state_write_is_unavailable_and_writes_nothing(deps, client):
    ping(deps, OUTSIDE, 0)
    before = deps.devices.get_device("d1", consistent=True)
    throttle(client, "UpdateItem", ["throttle"])
    with pytest.raises(Unavailable):
        ping(deps, INSIDE, 60)
    after = deps.devices.get_device("d1", consistent=True)
    assert (after.state_version, after.state, after.outbox) == (before.state_version, before.state, {})
    assert ping(deps, INSIDE, 60)["deliveries"]  # the retry goes through
    assert [d.status for d in deliveries(deps)] == ["sent"]


def test_a_claim_left_pending_is_found_through_the_open_index_and_sent(deps, client):
    ping(deps, OUTSIDE, 0)
    # save_state passes; pending → publishing and the release of the claim are throttled.
    done = throttle(client, "UpdateItem", ["pass", "throttle", "throttle"])
    with pytest.raises(Unavailable):
        ping(deps, INSIDE, 60)
    assert done == ["pass", "throttle", "throttle"]
    (d,) = deliveries(deps)
    assert d.status == "pending"
    assert ping(deps, INSIDE, 60)["deliveries"] == [d.delivery_id]  # the owner may be alive: not yet
    assert deps.deliveries.stale_open(T0 + 59) == []  # open since T0 + 60
    assert [x.delivery_id for x in deps.deliveries.stale_open(T0 + 60)] == [d.delivery_id]
    deps.clock.now = T0 + 60 + STALE_OPEN_S + 1
    assert engagement.sweep_open(deps) == {"pending->sent": 1}
    (d,) = deliveries(deps)
    assert (d.status, d.title, d.body) == ("sent", "Welcome to Main St store", "Hi Ana")
    assert len(deps.push.published) == 1
    assert deps.deliveries.stale_open(deps.clock.now + 10 * STALE_OPEN_S) == []


def test_a_crash_while_publishing_becomes_failed_interrupted(deps, monkeypatch):
    real = deps.push.publish

    def accepted_then_died(*args):
        real(*args)
        raise Crash("the Lambda died after SNS accepted the push")

    monkeypatch.setattr(deps.push, "publish", accepted_then_died)
    ping(deps, OUTSIDE, 0)
    with pytest.raises(Crash):
        ping(deps, INSIDE, 60)
    deps.clock.now = T0 + 60 + STALE_OPEN_S + 1
    assert engagement.sweep_open(deps) == {"publishing->failed:interrupted": 1}
    (d,) = deliveries(deps)
    assert (d.status, d.reason) == ("failed", "interrupted")
    assert len(deps.push.published) == 1


# ---------------------------------------------------------------- the table helper
def unprocessed(client, operation: str, rounds: int) -> list[int]:
    """The next ``rounds`` calls of a batch ``operation`` leave everything
    unprocessed (as DynamoDB does under load: a success, nothing done);
    returns the sizes of the requests seen."""
    seen: list[int] = []

    def respond(params, **_):
        items = json.loads(params["body"])["RequestItems"]
        seen.append(sum(len(v["Keys"]) if isinstance(v, dict) else len(v) for v in items.values()))
        if len(seen) > rounds:
            return None
        key = "UnprocessedItems" if operation == "BatchWriteItem" else "UnprocessedKeys"
        parsed = {key: items, "ResponseMetadata": {"HTTPStatusCode": 200, "RequestId": "r"}}
        if operation == "BatchGetItem":
            parsed["Responses"] = {}
        return AWSResponse("https://dynamodb.us-east-1.amazonaws.com/", 200, {}, None), parsed

    client.meta.events.register_first(f"before-call.dynamodb.{operation}", respond)
    return seen


class FakeTime:
    def __init__(self) -> None:
        self.now, self.slept = 0.0, []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def _stores(moto_aws, t: FakeTime, budget_s: float = 5.0):
    from chalicelib.retry import RetryPolicy

    client = boto3.client("dynamodb", config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    retry = RetryPolicy(budget_s=budget_s, base_s=0.02, cap_s=1.0, clock=t.clock, sleep=t.sleep, max_attempts=10)
    return client, dynamo_stores(client, get_settings(), clock=Clock(T0), retry=retry)


def test_unprocessed_batch_items_are_retried_with_backoff(moto_aws):
    t = FakeTime()
    client, stores = _stores(moto_aws, t)
    seen = unprocessed(client, "BatchWriteItem", 3)
    stores.weather.put_conditions([(0x85283473FFFFFFF, {"condition": "rain", "temperature_c": 1.0, "observed_at": T0}, T0 + 60)])
    assert seen == [1, 1, 1, 1] and len(t.slept) == 3
    seen = unprocessed(client, "BatchGetItem", 2)
    assert stores.weather.get_conditions([0x85283473FFFFFFF], T0)[0x85283473FFFFFFF]["condition"] == "rain"
    assert seen[-3:] == [1, 1, 1] and len(t.slept) == 5


def test_batch_items_still_unprocessed_when_the_budget_is_spent_are_unavailable(moto_aws):
    t = FakeTime()
    client, stores = _stores(moto_aws, t, budget_s=0.1)
    unprocessed(client, "BatchGetItem", 1000)
    with pytest.raises(Unavailable):
        stores.devices.get_devices(["d1", "d2"])
    assert sum(t.slept) <= 0.1


def test_throttling_of_any_repository_call_is_unavailable(moto_aws):
    t = FakeTime()
    client, stores = _stores(moto_aws, t)
    throttle(client, "Query", ["throttle"])
    with pytest.raises(Unavailable):
        stores.fences.lookup_cells([0x85283473FFFFFFF])
    throttle(client, "GetItem", ["throttle"])
    with pytest.raises(Unavailable):
        stores.campaigns.get_campaign("c1")
    assert stores.campaigns.get_campaign("c1") is None
