"""Shared fixtures: fake AWS credentials, moto, the in-memory service deps."""

from __future__ import annotations

import contextlib
import os

from tools.clockshift import shift_the_wall_clock

shift_the_wall_clock()  # HEXCAST_TEST_CLOCK_SHIFT_DAYS: before any import of chalicelib

import pytest  # noqa: E402 (after the clock shift, which must precede every import of chalicelib)

from chalicelib import container as deps_module
from chalicelib.auth import hash_token
from chalicelib.services.fence_cache import VersionCache
from chalicelib.services.deps import Deps
from tests.fake_push import FakePushGateway
from chalicelib.services.delivery import CampaignCache
from chalicelib.settings import Settings, reset_settings
from chalicelib.store import memory_stores
from tools import moto_speedups

moto_speedups.apply()


ADMIN_KEY = "test-admin-key"
APP_KEY = "test-app-key"


class FakeClock:
    def __init__(self, now: float = 1_790_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings() -> Settings:
    return Settings(stage="test", admin_key_hashes=(hash_token(ADMIN_KEY),), app_key_hashes=(hash_token(APP_KEY),),
                    coupon_secret="test-coupon-secret", campaign_cache_s=0)


@pytest.fixture
def mem_deps(settings, clock) -> Deps:
    """Services wired to the in-memory fakes (the twins: ``mem_deps.devices.devices`` etc.)."""
    return Deps.over(memory_stores(clock=clock, region_shards=4), settings, clock=clock, cache=VersionCache(),
                     push=FakePushGateway(), campaign_cache=CampaignCache(0))


#: Fake credentials and the test stage: moto, never AWS.
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "HEXCAST_STAGE": "test",
}


@pytest.fixture
def aws_env(monkeypatch):
    for k, v in {
        **FAKE_AWS,
        # as a deployed stage has them: hashes only (tests/integration/test_auth.py covers plaintext)
        "HEXCAST_ADMIN_KEY_HASHES": hash_token(ADMIN_KEY),
        "HEXCAST_APP_KEY_HASHES": hash_token(APP_KEY),
        "HEXCAST_COUPON_SECRET": "test-coupon-secret",
        "HEXCAST_CAMPAIGN_CACHE_S": "0",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("HEXCAST_ADMIN_KEY", raising=False)
    monkeypatch.delenv("HEXCAST_APP_KEY", raising=False)
    reset_settings()
    yield
    reset_settings()


@pytest.fixture
def moto_aws(aws_env, monkeypatch):
    """A moto-mocked AWS with the tables and the SNS platform applications
    created (their ARNs in the environment and the settings)."""
    import boto3
    from moto import mock_aws

    from chalicelib.push.platform_apps import ensure_platform_applications
    from chalicelib.settings import get_settings
    from chalicelib.store.schema import create_tables

    with mock_aws():
        create_tables(boto3.client("dynamodb"), get_settings())
        create_queues(get_settings())
        for name, arn in ensure_platform_applications(boto3.client("sns"), get_settings().stage).items():
            monkeypatch.setenv(name, arn)
        reset_settings()
        # Cached now, as before this reset: chalice.test.Client later sets the
        # "dev" stage's variables (table names), which must not win.
        get_settings()
        yield


@pytest.fixture
def dynamo_repos(moto_aws, clock):
    """The DynamoDB repositories (moto) as one bundle, on the ``clock``
    fixture (not parametrised, unlike ``dynamo_stores``), retries not
    sleeping. A test that wraps the client builds its own:
    ``dynamo_stores(Wrapped(boto3.client("dynamodb")), get_settings(), clock=clock)``."""
    import boto3

    from chalicelib.settings import get_settings
    from chalicelib.store import dynamo_stores as build

    return build(boto3.client("dynamodb"), get_settings(), clock=clock, sleep=lambda s: None)


#: The store contract runs at the fixed clock and 60 days later: nothing in
#: it may depend on the day the tests run (the unfiltered delivery listing
#: reads a window of days back from the store's clock).
STORE_CLOCK_OFFSETS = {"t0": 0.0, "t0+60d": 60 * 86400.0}


@pytest.fixture(params=list(STORE_CLOCK_OFFSETS))
def store_clock(request) -> FakeClock:
    return FakeClock(1_790_000_000.0 + STORE_CLOCK_OFFSETS[request.param])


@pytest.fixture
def dynamo_stores(moto_aws, store_clock):
    """The DynamoDB repositories (moto), on ``store_clock``, retries not sleeping."""
    import boto3

    from chalicelib.settings import get_settings
    from chalicelib.store import dynamo_stores as build

    return build(boto3.client("dynamodb"), get_settings(), clock=store_clock, sleep=lambda s: None)


@pytest.fixture(params=["memory", "dynamodb"])
def stores(request, store_clock):
    """Every repository, in memory and on DynamoDB (moto): one contract."""
    if request.param == "memory":
        return memory_stores(clock=store_clock, region_shards=4)
    return request.getfixturevalue("dynamo_stores")


@pytest.fixture
def api(moto_aws):
    """``chalice.test.Client`` over the real app, backed by moto."""
    from chalice.test import Client

    from app import app

    deps_module.set_deps(None)
    with Client(app) as client:
        answer_as_deployed(client)
        yield client
    deps_module.set_deps(None)


def create_queues(settings) -> None:
    """The alert and fan-out queues, in moto (the local stack's pump and the
    deployed template create their own)."""
    import boto3

    for queue in (settings.alert_queue, settings.fanout_queue):
        boto3.client("sqs").create_queue(QueueName=queue)


def run_queues(client) -> int:
    """Deliver what the app queued in moto's SQS to its consumers, as Lambda's
    event source mappings would (alerts to ``plan_alerts``, chunks to
    ``send_fanout``), until both queues are empty; → messages delivered."""
    import boto3

    from chalicelib.settings import get_settings

    sqs = boto3.client("sqs")
    consumers = ((get_settings().alert_queue, "plan_alerts"), (get_settings().fanout_queue, "send_fanout"))
    delivered = 0
    while True:
        moved = 0
        for queue, handler in consumers:
            url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
            for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                client.lambda_.invoke(handler, client.events.generate_sqs_event(queue_name=queue, message_bodies=[m["Body"]]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                moved += 1
        delivered += moved
        if not moved:
            return delivered


@contextlib.contextmanager
def moto_app_client(env: dict[str, str], unset: tuple[str, ...] = ()):
    """What the ``api`` fixture builds (fake credentials, moto, the tables,
    the SNS platform applications, ``chalice.test.Client`` over the real app)
    as a context manager with the given extra environment, for class-scoped
    worlds and key setups of their own."""
    import boto3
    from chalice.test import Client
    from moto import mock_aws

    from app import app
    from chalicelib.push.platform_apps import ensure_platform_applications
    from chalicelib.settings import get_settings
    from chalicelib.store.schema import create_tables

    with pytest.MonkeyPatch.context() as mp:
        for k in ("AWS_ENDPOINT_URL", "AWS_PROFILE", *unset):
            mp.delenv(k, raising=False)
        for k, v in {**FAKE_AWS, **env}.items():
            mp.setenv(k, v)
        reset_settings()
        try:
            with mock_aws():
                create_tables(boto3.client("dynamodb"), get_settings())
                create_queues(get_settings())
                for name, arn in ensure_platform_applications(boto3.client("sns"), get_settings().stage).items():
                    mp.setenv(name, arn)
                reset_settings()
                get_settings()  # cached before Client sets the "dev" stage's table names
                deps_module.set_deps(None)
                try:
                    with Client(app) as client:
                        answer_as_deployed(client)
                        yield client
                finally:
                    deps_module.set_deps(None)
        finally:
            reset_settings()


def answer_as_deployed(client) -> None:
    """``chalice.test.Client`` answering a path no route has as the deployed
    API (its gateway responses) and the local stack do: a 404 with the
    documented error body, not chalice.local's 403."""
    import json

    from chalice.test import HTTPResponse

    from chalicelib.api.gateway import local_gateway_answer

    def error_response(e) -> HTTPResponse:
        status, body = local_gateway_answer(e.CODE)
        return HTTPResponse(headers={"Content-Type": "application/json"}, body=json.dumps(body).encode(), status_code=status)

    client.http._error_response = error_response
