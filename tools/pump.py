"""The event pump: runs what ``chalice local`` does not — every
``@app.on_sqs_message`` handler fed from its queue, every ``@app.schedule``
function on an interval — against the emulator (or AWS)."""

from __future__ import annotations

import base64
import collections
import datetime as dt
import json
import logging
import multiprocessing
import os
import threading
import time
import uuid
from dataclasses import dataclass
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Collection

import boto3
from chalice import Chalice
from chalice.app import ScheduledEventConfig, SQSEventConfig
from chalice.local import LambdaContext

from tools.clockshift import shift_the_wall_clock
from tools.emulator import ACCOUNT_ID, REGION

log = logging.getLogger("tools.localstack")


def _utc_now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------
# The event pump: SQS handlers and scheduled functions
# --------------------------------------------------------------------------


@dataclass
class _QueueFeed:
    """One ``@app.on_sqs_message`` handler and the queue it consumes."""

    name: str  # the handler's name (= its Lambda function's name)
    handler: Callable[[dict, Any], Any]
    queue_name: str
    batch_size: int
    queue_url: str = ""
    queue_arn: str = ""


def _lambda_message_attributes(attrs: dict[str, Any]) -> dict[str, Any]:
    """SQS API message attributes → the shape Lambda puts in an SQS record."""
    out = {}
    for name, value in (attrs or {}).items():
        binary = value.get("BinaryValue")
        out[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(binary).decode() if binary is not None else None,
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": [base64.b64encode(b).decode() for b in value.get("BinaryListValues", [])],
            "dataType": value.get("DataType"),
        }
    return out


def sqs_event(messages: list[dict[str, Any]], *, queue_arn: str, region: str = REGION) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping would pass for ``messages``
    (as returned by ``ReceiveMessage``)."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m.get("Body", ""),
                "attributes": dict(m.get("Attributes", {})),
                "messageAttributes": _lambda_message_attributes(m.get("MessageAttributes", {})),
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


def scheduled_event(rule_name: str, *, region: str = REGION, account: str = ACCOUNT_ID) -> dict[str, Any]:
    """The event EventBridge passes to a scheduled Lambda function."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": _utc_now_iso(),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account}:rule/{rule_name}"],
        "detail": {},
    }


class FunctionFailed(RuntimeError):
    """A handler run in a function process raised (its text; the exception
    itself may not cross the process boundary)."""


def _child_start() -> None:
    shift_the_wall_clock()


def _run_in_child(module: str, name: str, event: dict[str, Any]) -> None:
    """In a function process: import the app (once) and run handler ``name``."""
    import importlib

    app = importlib.import_module(module).app
    try:
        app.handler_map[name](event, LambdaContext(name, memory_size=128, max_runtime_ms=900_000))
    except Exception as exc:
        raise FunctionFailed(f"{type(exc).__name__}: {exc}") from None


class FunctionProcess:
    """A Lambda function of its own, as deployed: one process that imports
    the app and runs one handler's invocations, one at a time. CPU-heavy
    work there (planning a storm) then cannot hold the API's interpreter
    lock, so pings on the local stack are not slowed by it any more than on
    AWS. Started on first use (after the local stack set the environment,
    which the process inherits); started afresh when hexcast's settings in
    the environment changed since, as Lambda starts new execution
    environments after a configuration update."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name
        self._pool: ProcessPoolExecutor | None = None
        self._settings: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any = None) -> None:
        settings = {k: v for k, v in os.environ.items() if k.startswith("HEXCAST_")}
        with self._lock:
            if self._pool is not None and settings != self._settings:
                self._pool.shutdown(wait=True)
                self._pool = None
            if self._pool is None:
                self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_child_start)
                self._settings = settings
            pool = self._pool
        pool.submit(_run_in_child, self.module, self.name, event).result()

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None


class EventPump:
    """Runs an app's event-driven functions against the emulator (or AWS).

    * For every ``@app.on_sqs_message`` handler: creates its queue when
      missing, long-polls it in a thread of its own, calls the handler with a
      Lambda-shaped SQS event through Chalice's own wrapper (so middleware and
      ``SQSEvent`` work as deployed), and deletes the batch only when the
      handler returned. A handler that raises leaves the messages to come back
      after the queue's visibility timeout — Lambda's behaviour (no partial
      batch response).
    * For every ``@app.schedule`` function: calls it every
      ``schedule_interval`` seconds (``None`` or ``0``: never on its own;
      :meth:`run_schedules` still calls them on demand). Functions named in
      ``skip_schedules`` are never called, neither on the interval nor on
      demand (the local stack's weather poller when no feed is configured).

    :param app: the Chalice app whose ``event_sources`` to run.
    :param endpoint_url: where SQS is; ``None`` lets boto3 read ``AWS_ENDPOINT_URL``.
    :param wait_seconds: long-poll wait (1–20); also bounds how long :meth:`stop` takes.
    :param visibility_timeout: ``VisibilityTimeout`` of queues the pump creates.
    :param max_receive_count: when set, queues the pump creates get a dead-letter
        queue ``<name>-dlq`` and a redrive policy: a message received this many
        times without success moves there, as the deployed fan-out queue does.
    :param skip_schedules: names of scheduled functions the pump never calls.
    :param processes: names of SQS handlers run each in a process of its own
        (:class:`FunctionProcess`), importing the app from ``app_module``.
    """

    def __init__(
        self,
        app: Chalice,
        *,
        endpoint_url: str | None = None,
        region: str = REGION,
        stage: str = "local",
        schedule_interval: float | None = 60.0,
        wait_seconds: int = 1,
        visibility_timeout: int = 30,
        max_receive_count: int | None = None,
        skip_schedules: Collection[str] = (),
        processes: Collection[str] = (),
        app_module: str = "app",
    ) -> None:
        self.app = app
        self.processes = {name: FunctionProcess(app_module, name) for name in processes}
        self.max_receive_count = max_receive_count
        self.skip_schedules = frozenset(skip_schedules)
        self.endpoint_url = endpoint_url
        self.region = region
        self.stage = stage
        self.schedule_interval = schedule_interval
        self.wait_seconds = max(1, min(20, int(wait_seconds)))
        self.visibility_timeout = visibility_timeout
        #: per handler name: ``batches``, ``messages``, ``errors``, ``deleted``, ``runs``.
        self.stats: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        #: per scheduled function: what its last successful run returned.
        self.results: dict[str, Any] = {}
        self._stats_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._feeds: list[_QueueFeed] = []
        self._schedules: list[tuple[str, Callable[[dict, Any], Any]]] = []
        self._started = False

    # -- discovery ---------------------------------------------------------

    def _discover(self) -> None:
        self._feeds, self._schedules = [], []
        for source in self.app.event_sources:
            handler = self.app.handler_map[source.name]
            if isinstance(source, SQSEventConfig):
                queue = source.queue or (source.queue_arn or "").rsplit(":", 1)[-1]
                batch = max(1, min(10, int(source.batch_size or 1)))  # SQS returns at most 10
                run = self.processes.get(source.name, handler)
                self._feeds.append(_QueueFeed(source.name, run, queue, batch))
            elif isinstance(source, ScheduledEventConfig):
                if source.name in self.skip_schedules:
                    log.info("scheduled function %s is off", source.name)
                    continue
                self._schedules.append((source.name, handler))
            else:
                log.warning("event source %s (%s) is not run locally", source.name, type(source).__name__)

    @property
    def queue_names(self) -> list[str]:
        """Names of the queues the pump consumes (after :meth:`start`)."""
        return [f.queue_name for f in self._feeds]

    def queue_url(self, queue_name: str) -> str:
        """The URL of a queue the pump consumes (after :meth:`start`)."""
        for feed in self._feeds:
            if feed.queue_name == queue_name:
                return feed.queue_url
        raise KeyError(queue_name)

    def _client(self) -> Any:
        # One session per client: boto3 sessions are not thread-safe.
        return boto3.session.Session(region_name=self.region).client("sqs", endpoint_url=self.endpoint_url)

    def _ensure_queue(self, sqs: Any, feed: _QueueFeed) -> None:
        try:
            feed.queue_url = sqs.get_queue_url(QueueName=feed.queue_name)["QueueUrl"]
        except sqs.exceptions.QueueDoesNotExist:
            attributes = {"VisibilityTimeout": str(self.visibility_timeout)}
            if feed.queue_name.endswith(".fifo"):
                attributes["FifoQueue"] = "true"
            if self.max_receive_count:
                dlq_name = feed.queue_name.removesuffix(".fifo") + "-dlq" + (".fifo" if feed.queue_name.endswith(".fifo") else "")
                dlq_attrs = {"FifoQueue": "true"} if feed.queue_name.endswith(".fifo") else {}
                dlq_url = sqs.create_queue(QueueName=dlq_name, Attributes=dlq_attrs)["QueueUrl"]
                dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
                attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(self.max_receive_count)})
            feed.queue_url = sqs.create_queue(QueueName=feed.queue_name, Attributes=attributes)["QueueUrl"]
            log.info("created queue %s", feed.queue_name)
        attrs = sqs.get_queue_attributes(QueueUrl=feed.queue_url, AttributeNames=["QueueArn"])
        feed.queue_arn = attrs["Attributes"]["QueueArn"]

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> EventPump:
        """Create missing queues and start the polling and schedule threads."""
        if self._started:
            return self
        self._discover()
        self._stop.clear()
        self._started = True
        try:
            for feed in self._feeds:
                sqs = self._client()
                self._ensure_queue(sqs, feed)
                self._spawn(f"pump-sqs-{feed.name}", self._poll_loop, feed, sqs)
            if self._schedules and self.schedule_interval:
                self._spawn("pump-schedule", self._schedule_loop)
        except BaseException:
            self.stop()
            raise
        log.info(
            "event pump: %d SQS handler(s) %s, %d scheduled function(s) every %s s",
            len(self._feeds),
            [f.queue_name for f in self._feeds],
            len(self._schedules),
            self.schedule_interval or "never",
        )
        return self

    def _spawn(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop the threads; a handler already running finishes first."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.wait_seconds + 30)
            if thread.is_alive():
                log.warning("pump thread %s did not stop", thread.name)
        self._threads = []
        self._started = False
        for process in self.processes.values():
            process.close()

    def __enter__(self) -> EventPump:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- SQS ---------------------------------------------------------------

    def _poll_loop(self, feed: _QueueFeed, sqs: Any) -> None:
        while not self._stop.is_set():
            try:
                self._poll_once(feed, sqs)
            except Exception:  # the emulator went away, or a bug: keep the pump alive
                if self._stop.is_set():
                    return
                log.exception("polling %s failed; retrying", feed.queue_name)
                self._stop.wait(1.0)

    def _poll_once(self, feed: _QueueFeed, sqs: Any) -> int:
        messages = sqs.receive_message(
            QueueUrl=feed.queue_url,
            MaxNumberOfMessages=feed.batch_size,
            WaitTimeSeconds=self.wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if messages:
            self._dispatch(feed, sqs, messages)
        return len(messages)

    def _dispatch(self, feed: _QueueFeed, sqs: Any, messages: list[dict[str, Any]]) -> None:
        event = sqs_event(messages, queue_arn=feed.queue_arn, region=self.region)
        context = LambdaContext(self._function_name(feed.name), memory_size=128, max_runtime_ms=900_000)
        self._count(feed.name, batches=1, messages=len(messages))
        try:
            feed.handler(event, context)
        except Exception:
            self._count(feed.name, errors=1)
            log.exception(
                "SQS handler %s failed on %d message(s) from %s; they will be redelivered",
                feed.name,
                len(messages),
                feed.queue_name,
            )
            return
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        failed = sqs.delete_message_batch(QueueUrl=feed.queue_url, Entries=entries).get("Failed", [])
        self._count(feed.name, deleted=len(entries) - len(failed))
        for failure in failed:
            log.warning("could not delete a message from %s: %s", feed.queue_name, failure)

    def wait_until_drained(self, timeout: float = 30.0) -> bool:
        """Wait until every consumed queue is empty — nothing visible, delayed
        or in flight — twice in a row; False on timeout.

        A received message counts as in flight until the pump deletes it,
        which happens after its handler returned, so an empty queue means its
        handler is done (including anything it sent to another pumped queue
        before returning). Messages whose handler failed stay in flight until
        their visibility timeout, then come back.
        """
        sqs = self._client()
        deadline = time.monotonic() + timeout
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        idle_rounds = 0
        while idle_rounds < 2:
            busy = False
            for feed in self._feeds:
                attrs = sqs.get_queue_attributes(QueueUrl=feed.queue_url, AttributeNames=names)["Attributes"]
                busy = busy or any(int(attrs.get(n, 0)) for n in names)
            idle_rounds = 0 if busy else idle_rounds + 1
            if busy and time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    # -- schedules ---------------------------------------------------------

    def _schedule_loop(self) -> None:
        while not self._stop.wait(self.schedule_interval):
            self.run_schedules()

    def run_schedules(self) -> int:
        """Call every scheduled function once now; returns how many succeeded."""
        ok = 0
        for name, handler in self._schedules:
            event = scheduled_event(self._function_name(name), region=self.region)
            self._count(name, runs=1)
            try:
                result = handler(event, LambdaContext(self._function_name(name), memory_size=128, max_runtime_ms=900_000))
                self.results[name] = result
                ok += 1
            except Exception:
                self._count(name, errors=1)
                log.exception("scheduled function %s failed", name)
        return ok

    # -- helpers -----------------------------------------------------------

    def _function_name(self, handler_name: str) -> str:
        return f"{self.app.app_name}-{self.stage}-{handler_name}"

    def _count(self, name: str, **deltas: int) -> None:
        with self._stats_lock:
            self.stats[name].update(deltas)
