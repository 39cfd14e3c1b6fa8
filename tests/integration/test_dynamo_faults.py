"""DynamoDB faults below the adapter (a botocore ``before-call`` injector,
as tests/integration/test_sns_gateway.py does for SNS): throttling surfaces
as ``Unavailable`` from every write, and records a failed invocation left
open are found through the sparse ``open`` index on moto and resolved by
the sweep — the same code path as on AWS."""

from __future__ import annotations

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from chalicelib.cache import VersionCache
from chalicelib.services.deps import Deps
from chalicelib.errors import Unavailable
from chalicelib.services import campaigns as campaign_service
from chalicelib.services import engagement
from chalicelib.push.fake import FakePushGateway
from chalicelib.services.devices import register_device
from chalicelib.services.geofences import put_geofence
from chalicelib.services.pings import handle_pings
from chalicelib.services.delivery import STALE_OPEN_S, CampaignCache
from chalicelib.settings import get_settings
from chalicelib.store.dynamo import DynamoStore
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
def deps(moto_aws):
    # botocore's own retries off: the injected throttle reaches the adapter.
    client = boto3.client("dynamodb", config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    settings = get_settings()
    d = Deps(store=DynamoStore(client, settings), settings=settings, clock=Clock(T0), cache=VersionCache(),
             push=FakePushGateway(), campaigns=CampaignCache(0), sleep=lambda s: None)
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
    return deps.store.list_deliveries()[0]


def test_a_throttled_state_write_is_unavailable_and_writes_nothing(deps):
    ping(deps, OUTSIDE, 0)
    before = deps.store.get_device("d1", consistent=True)
    throttle(deps.store.client, "UpdateItem", ["throttle"])
    with pytest.raises(Unavailable):
        ping(deps, INSIDE, 60)
    after = deps.store.get_device("d1", consistent=True)
    assert (after.state_version, after.state, after.outbox) == (before.state_version, before.state, {})
    assert ping(deps, INSIDE, 60)["deliveries"]  # the retry goes through
    assert [d.status for d in deliveries(deps)] == ["sent"]


def test_a_claim_left_pending_is_found_through_the_open_index_and_sent(deps):
    ping(deps, OUTSIDE, 0)
    # save_state passes; pending → publishing and the release of the claim are throttled.
    done = throttle(deps.store.client, "UpdateItem", ["pass", "throttle", "throttle"])
    with pytest.raises(Unavailable):
        ping(deps, INSIDE, 60)
    assert done == ["pass", "throttle", "throttle"]
    (d,) = deliveries(deps)
    assert d.status == "pending"
    assert ping(deps, INSIDE, 60)["deliveries"] == [d.delivery_id]  # the owner may be alive: not yet
    assert deps.store.stale_open(T0 + 59) == []  # open since T0 + 60
    assert [x.delivery_id for x in deps.store.stale_open(T0 + 60)] == [d.delivery_id]
    deps.clock.now = T0 + 60 + STALE_OPEN_S + 1
    assert engagement.sweep_open(deps) == {"pending->sent": 1}
    (d,) = deliveries(deps)
    assert (d.status, d.title, d.body) == ("sent", "Welcome to Main St store", "Hi Ana")
    assert len(deps.push.published) == 1
    assert deps.store.stale_open(deps.clock.now + 10 * STALE_OPEN_S) == []


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
