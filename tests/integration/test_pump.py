"""The event pump runs SQS handlers and scheduled functions against moto's server."""

from __future__ import annotations

import time
import uuid
from typing import Callable, Iterator

import boto3
import pytest
from chalice import Chalice

from tools.localstack import FAKE_AWS_ENV, EventPump, MotoServer


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def sqs(moto_server: MotoServer):
    return boto3.client("sqs", endpoint_url=moto_server.endpoint, region_name="us-east-1")


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def queue_counts(sqs, url: str) -> tuple[int, int]:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


class Throwaway:
    """A Chalice app with one SQS handler and one scheduled function that
    record what they see; the SQS handler raises while ``failures`` > 0."""

    def __init__(self, queue: str, failures: int = 0) -> None:
        self.queue = queue
        self.failures = failures
        self.records: list[dict] = []
        self.attempts = 0
        self.ticks: list[dict] = []
        self.app = app = Chalice(app_name="throwaway")

        @app.on_sqs_message(queue=queue, batch_size=5)
        def consume(event):
            self.attempts += 1
            if self.failures > 0:
                self.failures -= 1
                raise RuntimeError("transient failure")
            for record in event:
                self.records.append(record.to_dict())

        @app.schedule("rate(5 minutes)")
        def poll_weather(event):
            self.ticks.append(event.to_dict())


def make_pump(moto_server: MotoServer, app: Chalice, **kwargs) -> EventPump:
    return EventPump(app, endpoint_url=moto_server.endpoint, visibility_timeout=1, **kwargs)


def test_pump_creates_the_handlers_queue(moto_server, sqs):
    thing = Throwaway(f"q-{uuid.uuid4().hex[:8]}")

    with make_pump(moto_server, thing.app, schedule_interval=None) as pump:
        assert pump.queue_names == [thing.queue]
        assert sqs.get_queue_url(QueueName=thing.queue)["QueueUrl"] == pump.queue_url(thing.queue)


def test_message_is_handled_once_and_deleted(moto_server, sqs):
    thing = Throwaway(f"q-{uuid.uuid4().hex[:8]}")

    with make_pump(moto_server, thing.app, schedule_interval=None) as pump:
        url = pump.queue_url(thing.queue)
        sqs.send_message(
            QueueUrl=url,
            MessageBody='{"campaign": "c1"}',
            MessageAttributes={"kind": {"DataType": "String", "StringValue": "fanout"}},
        )
        assert pump.wait_until_drained(timeout=10)
        time.sleep(1.5)  # past the visibility timeout: an undeleted message would be back

        assert queue_counts(sqs, url) == (0, 0)
    assert thing.attempts == 1
    [record] = thing.records
    assert record["body"] == '{"campaign": "c1"}'
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"].endswith(":" + thing.queue)
    assert record["messageAttributes"]["kind"]["stringValue"] == "fanout"
    assert pump.stats["consume"]["deleted"] == 1


def test_failing_handler_leaves_the_message_for_redelivery(moto_server, sqs):
    thing = Throwaway(f"q-{uuid.uuid4().hex[:8]}", failures=1)

    with make_pump(moto_server, thing.app, schedule_interval=None) as pump:
        url = pump.queue_url(thing.queue)
        sqs.send_message(QueueUrl=url, MessageBody="retry me")
        assert wait_for(lambda: thing.attempts >= 1)
        assert thing.records == []
        assert sum(queue_counts(sqs, url)) == 1  # still there, invisible for now

        assert wait_for(lambda: len(thing.records) == 1, timeout=10)
        assert pump.wait_until_drained(timeout=10)

    assert thing.attempts == 2
    assert thing.records[0]["body"] == "retry me"
    assert thing.records[0]["attributes"]["ApproximateReceiveCount"] == "2"
    assert pump.stats["consume"]["errors"] == 1
    assert pump.stats["consume"]["deleted"] == 1


def test_handler_that_keeps_failing_never_loses_the_message(moto_server, sqs):
    thing = Throwaway(f"q-{uuid.uuid4().hex[:8]}", failures=10**6)

    with make_pump(moto_server, thing.app, schedule_interval=None) as pump:
        url = pump.queue_url(thing.queue)
        sqs.send_message(QueueUrl=url, MessageBody="poison")
        assert wait_for(lambda: thing.attempts >= 2, timeout=10)
        assert not pump.wait_until_drained(timeout=0.2)

    assert thing.records == []
    assert wait_for(lambda: queue_counts(sqs, url) == (1, 0), timeout=5)


def test_scheduled_function_runs_on_the_interval_with_a_scheduled_event(moto_server):
    thing = Throwaway(f"q-{uuid.uuid4().hex[:8]}")

    with make_pump(moto_server, thing.app, schedule_interval=0.2):
        assert wait_for(lambda: len(thing.ticks) >= 2, timeout=10)

    tick = thing.ticks[0]
    assert tick["detail-type"] == "Scheduled Event"
    assert tick["source"] == "aws.events"
    assert tick["resources"][0].endswith(":rule/throwaway-local-poll_weather")


def test_scheduled_functions_can_be_run_on_demand(moto_server):
    thing = Throwaway(f"q-{uuid.uuid4().hex[:8]}")

    with make_pump(moto_server, thing.app, schedule_interval=None) as pump:
        assert pump.run_schedules() == 1

    assert len(thing.ticks) == 1


def test_stop_ends_the_threads_without_waiting_out_the_interval(moto_server):
    """The schedule thread waits on the stop event, not a sleep: with an
    hour's interval, stop() still ends every pump thread (a thread still
    alive after stop's join would be one waiting out its interval)."""
    thing = Throwaway(f"q-{uuid.uuid4().hex[:8]}")
    pump = make_pump(moto_server, thing.app, schedule_interval=3600).start()
    threads = list(pump._threads)
    assert {t.name for t in threads} == {"pump-sqs-consume", "pump-schedule"}

    pump.stop()

    assert [t.name for t in threads if t.is_alive()] == []
    assert thing.ticks == []  # nothing ran: stopping is not a tick


def test_a_poison_message_reaches_the_dead_letter_queue(moto_server, sqs):
    """With a redrive policy (as the local stack and the deployment set on the
    fan-out queue), a message that keeps failing moves to ``<queue>-dlq``
    after ``max_receive_count`` receives instead of blocking the queue."""
    thing = Throwaway(f"q-{uuid.uuid4().hex[:8]}", failures=10**6)

    with make_pump(moto_server, thing.app, schedule_interval=None, max_receive_count=2) as pump:
        url = pump.queue_url(thing.queue)
        dlq = sqs.get_queue_url(QueueName=f"{thing.queue}-dlq")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="poison")

        def in_dlq():
            got = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=1, VisibilityTimeout=0).get("Messages", [])
            return got and got[0]["Body"] == "poison"

        assert wait_for(in_dlq, timeout=15)
        assert wait_for(lambda: queue_counts(sqs, url) == (0, 0), timeout=5)
    assert thing.attempts == 2
    assert thing.records == []
