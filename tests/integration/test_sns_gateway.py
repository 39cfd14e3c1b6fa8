"""SnsGateway against moto: AWS's endpoint lifecycle, payloads as SNS
received them, and error mapping (errors injected in front of moto with a
botocore event hook, on a client whose own retries are off)."""

from __future__ import annotations

import json
import logging

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError

from chalicelib.push.model import EndpointDisabled, PushError, PushMessage
from chalicelib.push.sns import SnsGateway, application_arn_of
from chalicelib.settings import get_settings

ACCOUNT, REGION = "123456789012", "us-east-1"
MSG = PushMessage("dl_abc", "Storm ahead", "Roads icy after 6 pm", deep_link="hexcast://x", ttl_seconds=600)


class Calls:
    """SNS operations the client actually sent (botocore event hook)."""

    def __init__(self, client) -> None:
        self.names: list[str] = []
        client.meta.events.register("before-call.sns", self._record)

    def _record(self, model, **_):
        self.names.append(model.name)

    def count(self, name: str) -> int:
        return self.names.count(name)


def inject_errors(client, operation: str, code: str, times: int, status: int = 400) -> list[int]:
    """The next ``times`` ``operation`` calls answer an SNS error without
    reaching moto (a ``before-call`` response, as botocore's Stubber does:
    botocore still raises its ``ClientError`` for it). Returns a list that
    grows per injected error."""
    injected: list[int] = []

    def respond(**_):
        if len(injected) >= times:
            return None
        injected.append(1)
        parsed = {
            "Error": {"Type": "Sender", "Code": code, "Message": f"injected {code}"},
            "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "r"},
        }
        return AWSResponse("https://sns.us-east-1.amazonaws.com/", status, {}, None), parsed

    client.meta.events.register_first(f"before-call.sns.{operation}", respond)
    return injected


@pytest.fixture
def sns(moto_aws):
    # Retries off: the gateway's own backoff must be right without botocore's.
    return boto3.client("sns", config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def gw(sns, sleeps) -> SnsGateway:
    return SnsGateway(sns, get_settings(), sleep=sleeps.append)


def received(arn: str) -> list[str]:
    from moto.sns.models import sns_backends

    return list(sns_backends[ACCOUNT][REGION].platform_endpoints[arn].messages.values())


def attributes(sns, arn: str) -> dict:
    return sns.get_endpoint_attributes(EndpointArn=arn)["Attributes"]


# ------------------------------------------------------------ lifecycle
def test_new_endpoint_is_created_once(gw, sns):
    calls = Calls(sns)

    first = gw.ensure_endpoint("dev-1", "ios", "tok-1", None)
    second = gw.ensure_endpoint("dev-1", "ios", "tok-1", first.arn)

    assert first.created and first.enabled
    assert (second.arn, second.created, second.enabled) == (first.arn, False, True)
    assert calls.count("CreatePlatformEndpoint") == 1
    assert calls.count("SetEndpointAttributes") == 0  # nothing to repair
    assert application_arn_of(first.arn) == get_settings().sns_apns_arn
    assert attributes(sns, first.arn)["Token"] == "tok-1"


def test_token_change_updates_the_token_and_keeps_the_endpoint(gw, sns):
    ep = gw.ensure_endpoint("dev-1", "android", "tok-old", None)
    calls = Calls(sns)

    again = gw.ensure_endpoint("dev-1", "android", "tok-new", ep.arn)

    assert (again.arn, again.created) == (ep.arn, False)
    assert attributes(sns, ep.arn) == {"Token": "tok-new", "Enabled": "true"}
    assert calls.count("CreatePlatformEndpoint") == 0


def test_disabled_endpoint_is_reenabled_on_registration(gw, sns):
    ep = gw.ensure_endpoint("dev-1", "ios", "tok-1", None)
    sns.set_endpoint_attributes(EndpointArn=ep.arn, Attributes={"Enabled": "false"})  # APNs said: bad token

    again = gw.ensure_endpoint("dev-1", "ios", "tok-1", ep.arn)

    assert (again.arn, again.enabled, again.created) == (ep.arn, True, False)
    assert attributes(sns, ep.arn)["Enabled"] == "true"
    assert gw.publish(ep.arn, "ios", MSG)


def test_deleted_endpoint_is_recreated(gw, sns):
    ep = gw.ensure_endpoint("dev-1", "ios", "tok-1", None)
    sns.delete_endpoint(EndpointArn=ep.arn)

    again = gw.ensure_endpoint("dev-1", "ios", "tok-1", ep.arn)

    assert again.created and again.arn != ep.arn
    assert attributes(sns, again.arn)["Token"] == "tok-1"


def test_platform_switch_deletes_the_old_endpoint_and_creates_one_in_the_new_application(gw, sns):
    settings = get_settings()
    old = gw.ensure_endpoint("dev-1", "ios_sandbox", "tok-1", None)
    assert application_arn_of(old.arn) == settings.sns_apns_sandbox_arn

    new = gw.ensure_endpoint("dev-1", "ios", "tok-1", old.arn)

    assert new.created and new.arn != old.arn
    assert application_arn_of(new.arn) == settings.sns_apns_arn
    with pytest.raises(sns.exceptions.NotFoundException):
        sns.get_endpoint_attributes(EndpointArn=old.arn)


def test_existing_endpoint_for_the_token_is_reused_from_the_error_message(gw, sns):
    """Another device record registered this token with other user data:
    SNS answers "already exists ... different attributes" and names the ARN."""
    other = sns.create_platform_endpoint(
        PlatformApplicationArn=get_settings().sns_fcm_arn, Token="tok-shared", CustomUserData="old-device"
    )["EndpointArn"]
    sns.set_endpoint_attributes(EndpointArn=other, Attributes={"Enabled": "false"})

    ep = gw.ensure_endpoint("new-device", "android", "tok-shared", None)

    assert (ep.arn, ep.created, ep.enabled) == (other, True, True)
    assert attributes(sns, other)["Enabled"] == "true"


def test_unconfigured_platform_raises(sns):
    from dataclasses import replace

    gw = SnsGateway(sns, replace(get_settings(), sns_fcm_arn=""))
    with pytest.raises(PushError) as err:
        gw.ensure_endpoint("dev-1", "android", "tok", None)
    assert err.value.reason == "platform_not_configured"


def test_delete_endpoint_is_idempotent(gw, sns):
    ep = gw.ensure_endpoint("dev-1", "ios", "tok-1", None)

    gw.delete_endpoint(ep.arn)
    gw.delete_endpoint(ep.arn)

    with pytest.raises(sns.exceptions.NotFoundException):
        sns.get_endpoint_attributes(EndpointArn=ep.arn)


# ------------------------------------------------------------ publish
@pytest.mark.parametrize(("platform", "key"), [("ios", "APNS"), ("ios_sandbox", "APNS_SANDBOX")])
def test_apns_payload_as_sns_received_it(gw, platform, key):
    ep = gw.ensure_endpoint("dev-1", platform, f"tok-{platform}", None)

    gw.publish(ep.arn, platform, MSG)

    [raw] = received(ep.arn)
    outer = json.loads(raw)
    assert set(outer) == {"default", key}
    assert json.loads(outer[key]) == {
        "aps": {"alert": {"title": "Storm ahead", "body": "Roads icy after 6 pm"}, "sound": "default"},
        "delivery_id": "dl_abc",
        "deep_link": "hexcast://x",
    }


def test_fcm_v1_payload_as_sns_received_it(gw):
    ep = gw.ensure_endpoint("dev-1", "android", "tok-a", None)
    msg = PushMessage("dl_1", "Título", "Cuerpo ❄️", data={"coupon_code": "C-1"}, ttl_seconds=30)

    message_id = gw.publish(ep.arn, "android", msg)

    assert message_id
    outer = json.loads(received(ep.arn)[0])
    assert set(outer) == {"default", "GCM"} and outer["default"] == "Cuerpo ❄️"
    fcm = json.loads(outer["GCM"])["fcmV1Message"]["message"]
    assert fcm["notification"] == {"title": "Título", "body": "Cuerpo ❄️"}
    assert fcm["data"] == {"coupon_code": "C-1", "delivery_id": "dl_1"}
    assert fcm["android"] == {"ttl": "30s"}


def test_publish_sends_the_ttl_attribute(gw, sns):
    ep = gw.ensure_endpoint("dev-1", "android", "tok-a", None)
    sent: list[dict] = []
    sns.meta.events.register("provide-client-params.sns.Publish", lambda params, **_: sent.append(params))

    gw.publish(ep.arn, "android", MSG)

    assert sent[0]["MessageAttributes"] == {"AWS.SNS.MOBILE.FCM.TTL": {"DataType": "String", "StringValue": "600"}}
    assert sent[0]["MessageStructure"] == "json"


def test_publish_to_a_disabled_endpoint_raises_endpoint_disabled(gw, sns):
    ep = gw.ensure_endpoint("dev-1", "ios", "tok-1", None)
    sns.set_endpoint_attributes(EndpointArn=ep.arn, Attributes={"Enabled": "false"})

    with pytest.raises(EndpointDisabled) as err:
        gw.publish(ep.arn, "ios", MSG)

    assert err.value.reason == "endpoint_disabled"
    assert received(ep.arn) == []


def test_publish_to_a_deleted_endpoint_is_endpoint_not_found(gw, sns):
    ep = gw.ensure_endpoint("dev-1", "ios", "tok-1", None)
    sns.delete_endpoint(EndpointArn=ep.arn)

    with pytest.raises(PushError) as err:
        gw.publish(ep.arn, "ios", MSG)

    assert err.value.reason == "endpoint_not_found"


# ------------------------------------------------------------ errors
def test_throttling_is_retried_with_backoff_then_succeeds(gw, sns, sleeps):
    ep = gw.ensure_endpoint("dev-1", "ios", "tok-1", None)
    injected = inject_errors(sns, "Publish", "Throttled", times=3)

    message_id = gw.publish(ep.arn, "ios", MSG)

    assert message_id and len(injected) == 3
    assert len(received(ep.arn)) == 1
    assert len(sleeps) == 3
    # full jitter under a doubling ceiling (chalicelib.retry): 0.05, 0.1, 0.2 s
    assert 0 <= sleeps[0] <= 0.05 and 0 <= sleeps[1] <= 0.1 and 0 <= sleeps[2] <= 0.2


def test_throttling_exhausted_raises_throttled(gw, sns, sleeps, caplog):
    ep = gw.ensure_endpoint("dev-1", "ios", "tok-secret", None)
    injected = inject_errors(sns, "Publish", "Throttling", times=99)

    with caplog.at_level(logging.INFO, logger="hexcast.push"), pytest.raises(PushError) as err:
        gw.publish(ep.arn, "ios", MSG)

    assert err.value.reason == "throttled"
    assert len(injected) == 5 and len(sleeps) == 4
    assert received(ep.arn) == []
    assert ep.arn not in caplog.text and "tok-secret" not in caplog.text


def test_throttled_registration_is_retried_too(gw, sns, sleeps):
    inject_errors(sns, "CreatePlatformEndpoint", "ThrottlingException", times=2)

    ep = gw.ensure_endpoint("dev-1", "ios", "tok-1", None)

    assert ep.created and len(sleeps) == 2


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("PlatformApplicationDisabled", "platform_disabled"),
        ("KMSAccessDenied", "kms_access_denied"),
        ("InternalError", "internal_error"),
        ("EndpointDisabled", "endpoint_disabled"),
    ],
)
def test_client_errors_map_to_reasons(gw, sns, sleeps, code, reason):
    ep = gw.ensure_endpoint("dev-1", "ios", "tok-1", None)
    inject_errors(sns, "Publish", code, times=1, status=500 if code == "InternalError" else 400)

    with pytest.raises(PushError) as err:
        gw.publish(ep.arn, "ios", MSG)

    assert err.value.reason == reason
    assert isinstance(err.value, EndpointDisabled) == (code == "EndpointDisabled")
    assert sleeps == []


def test_connection_failure_is_sns_unavailable(gw, sns):
    ep = gw.ensure_endpoint("dev-1", "ios", "tok-1", None)

    def refuse(request, **_):
        raise EndpointConnectionError(endpoint_url=request.url)

    sns.meta.events.register_first("before-send.sns.Publish", refuse)

    with pytest.raises(PushError) as err:
        gw.publish(ep.arn, "ios", MSG)
    assert err.value.reason == "sns_unavailable"


def test_tokens_and_arns_are_not_logged_at_info(gw, sns, caplog):
    with caplog.at_level(logging.INFO, logger="hexcast.push"):
        ep = gw.ensure_endpoint("dev-1", "ios", "tok-very-secret", None)
        gw.ensure_endpoint("dev-1", "ios", "tok-other-secret", ep.arn)
        gw.publish(ep.arn, "ios", MSG)

    assert caplog.records, "the lifecycle steps are logged"
    assert "secret" not in caplog.text and ep.arn not in caplog.text


def test_a_stored_value_that_is_no_endpoint_arn_is_replaced(gw, sns):
    calls = Calls(sns)

    ep = gw.ensure_endpoint("dev-1", "ios", "tok-1", "not-an-arn")

    assert ep.created and application_arn_of(ep.arn) == get_settings().sns_apns_arn
    assert calls.count("DeleteEndpoint") == 0
