"""The in-memory push gateway keeps the SNS gateway's contract."""

from __future__ import annotations

import threading

import pytest

from tests.fake_push import FakePushGateway
from chalicelib.push.model import EndpointDisabled, PushError, PushMessage

MSG = PushMessage("dl_1", "Hi", "there")


@pytest.fixture
def gw() -> FakePushGateway:
    return FakePushGateway()


def test_lifecycle_create_once_update_token_reenable_recreate(gw):
    ep = gw.ensure_endpoint("d1", "ios", "tok-1", None)
    assert (ep.created, gw.ensure_endpoint("d1", "ios", "tok-1", ep.arn).created, gw.creates) == (True, False, 1)

    gw.disable(ep.arn)
    again = gw.ensure_endpoint("d1", "ios", "tok-2", ep.arn)
    assert (again.arn, again.enabled, gw.endpoints[ep.arn].token, gw.updates) == (ep.arn, True, "tok-2", 1)

    gw.forget(ep.arn)
    new = gw.ensure_endpoint("d1", "ios", "tok-2", ep.arn)
    assert new.created and new.arn != ep.arn and gw.creates == 2


def test_platform_switch_replaces_the_endpoint(gw):
    old = gw.ensure_endpoint("d1", "ios_sandbox", "tok", None)

    new = gw.ensure_endpoint("d1", "ios", "tok", old.arn)

    assert new.created and old.arn not in gw.endpoints and "/APNS/" in new.arn


def test_unconfigured_platform_fails():
    with pytest.raises(PushError) as err:
        FakePushGateway(platforms=("ios",)).ensure_endpoint("d1", "android", "tok", None)
    assert err.value.reason == "platform_not_configured"


def test_publish_records_and_raises_like_sns(gw):
    ep = gw.ensure_endpoint("d1", "android", "tok", None)

    msg_id = gw.publish(ep.arn, "android", MSG)
    assert gw.published == [(ep.arn, "android", MSG, msg_id)]

    gw.disable(ep.arn)
    with pytest.raises(EndpointDisabled):
        gw.publish(ep.arn, "android", MSG)
    gw.delete_endpoint(ep.arn)
    with pytest.raises(PushError) as err:
        gw.publish(ep.arn, "android", MSG)
    assert err.value.reason == "endpoint_not_found"
    assert gw.publishes == 3 and len(gw.published) == 1


def test_injected_errors_then_success(gw):
    ep = gw.ensure_endpoint("d1", "ios", "tok", None)
    gw.fail_next(2, PushError("platform_disabled"))

    reasons = []
    for _ in range(3):
        try:
            gw.publish(ep.arn, "ios", MSG)
            reasons.append("sent")
        except PushError as exc:
            reasons.append(exc.reason)

    assert reasons == ["platform_disabled", "platform_disabled", "sent"]


def test_throttling_is_absorbed_within_the_retry_budget(gw):
    ep = gw.ensure_endpoint("d1", "ios", "tok", None)
    gw.fail_next(3, "throttle")
    gw.publish(ep.arn, "ios", MSG)
    assert gw.throttled == 3 and len(gw.published) == 1

    gw.fail_next(6, "throttle")  # 5 attempts exhausted, then 1 more absorbed
    with pytest.raises(PushError) as err:
        gw.publish(ep.arn, "ios", MSG)
    assert err.value.reason == "throttled"
    gw.publish(ep.arn, "ios", MSG)
    assert gw.throttled == 9 and len(gw.published) == 2


def test_concurrent_registrations_and_publishes_are_all_counted(gw):
    arns = [gw.ensure_endpoint(f"d{i}", "ios", f"t{i}", None).arn for i in range(8)]

    def work(arn):
        for _ in range(200):
            gw.publish(arn, "ios", MSG)

    threads = [threading.Thread(target=work, args=(arn,)) for arn in arns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert gw.publishes == len(gw.published) == 1600
    assert len({m for *_, m in gw.published}) == 1600
