"""The local stack: the whole system on this machine, no AWS account, no Docker.

Three parts, started and stopped together by :class:`LocalStack`:

* :class:`MotoServer` — moto's server in a child process on ``127.0.0.1``
  (DynamoDB, SNS, SQS). A separate process, so the emulator runs on another
  core than the app. The child exits on its own when this process dies,
  even by ``SIGKILL``: it watches a pipe that only this process holds open.
* the Chalice app served over HTTP by ``chalice.local`` in a background
  thread (threaded, one thread per request), exactly as ``chalice local``
  serves it.
* :class:`EventPump` — runs what ``chalice local`` does not: every
  ``@app.on_sqs_message`` handler is fed from its queue in the emulator
  (long polling; messages are deleted only when the handler returns without
  error, as Lambda does), and every ``@app.schedule`` function is called on
  an interval with a CloudWatch scheduled-event dict.

The app reaches the emulator through the standard ``AWS_ENDPOINT_URL``
variable, so the same code talks to AWS when the variable is absent.

Example::

    with LocalStack(port=0) as stack:
        requests.get(f"{stack.base_url}/v1/health",
                     headers={"X-Api-Key": stack.admin_key})
"""

from __future__ import annotations

import atexit
import base64
import collections
import datetime as dt
import importlib
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import boto3
from chalice import Chalice
from chalice.app import ScheduledEventConfig, SQSEventConfig
from chalice.config import Config
from chalice.deploy.validate import validate_routes
from chalice.local import ChaliceRequestHandler, LambdaContext, LocalChalice, LocalDevServer

from chalicelib.auth import hash_token
from tools._moto_server import SNS_MESSAGES_PATH

log = logging.getLogger(__name__)
http_log = logging.getLogger(__name__ + ".http")

HOST = "127.0.0.1"
REGION = "us-east-1"
#: moto's default account: queue URLs and ARNs in the emulator carry it.
ACCOUNT_ID = "123456789012"

#: Fake credentials: the emulator accepts anything, and real AWS never sees them.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}
#: Variables that could make boto3 reach real AWS or fail to find the fake
#: credentials; removed while the stack runs and restored afterwards.
_UNSET_AWS_ENV = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)


def free_port(host: str = HOST) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


#: For the stack's own readiness checks: loopback never goes through a proxy.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _no_proxy_value(current: str | None) -> str:
    """``NO_PROXY`` extended with loopback, so clients never send local calls
    to a proxy configured in the environment."""
    hosts = [h.strip() for h in (current or "").split(",") if h.strip()]
    return ",".join(hosts + [h for h in ("127.0.0.1", "localhost") if h not in hosts])


def _utc_now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------
# moto's server in a child process
# --------------------------------------------------------------------------

#: The child: ``moto.server.main`` plus a watch that ends it with its parent.
_MOTO_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_moto_server.py")
#: ``-P``: keep tools/ off the child's sys.path, so no file there shadows a module.
_NO_SCRIPT_DIR = ("-P",) if sys.version_info >= (3, 11) else ()


class MotoServer:
    """moto's server (``python -m moto.server``) in a child process.

    :param host: interface to bind; keep it on loopback.
    :param port: TCP port; ``None`` picks a free one.
    :param startup_timeout: seconds to wait for the server to answer.
    """

    def __init__(self, host: str = HOST, port: int | None = None, *, startup_timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    @property
    def endpoint(self) -> str:
        """The URL to give boto3 as ``endpoint_url`` / ``AWS_ENDPOINT_URL``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoServer:
        """Start the child and wait until it answers HTTP; raise if it cannot."""
        if self._proc is not None:
            return self
        attempts = 1 if self.port else 3  # a picked free port can be taken meanwhile
        for attempt in range(attempts):
            port_given = self.port is not None
            if not port_given:
                self.port = free_port(self.host)
            try:
                self._spawn()
                self._wait_ready()
                log.info("moto server on %s (pid %s)", self.endpoint, self._proc.pid)
                return self
            except RuntimeError:
                self.stop()
                if port_given or attempt == attempts - 1:
                    raise
                self.port = None
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        env = dict(os.environ)
        env.update(FAKE_AWS_ENV)
        env.pop("MOTO_PORT", None)
        self._log_file = tempfile.TemporaryFile(prefix="hexcast-moto-")
        self._proc = subprocess.Popen(
            [sys.executable, *_NO_SCRIPT_DIR, _MOTO_CHILD, "-H", self.host, "-p", str(self.port)],
            stdin=subprocess.PIPE,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            # Its own session: a terminal's Ctrl-C reaches only us, and we
            # stop the child in order (no KeyboardInterrupt noise from it).
            start_new_session=True,
        )

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.endpoint}/moto-api/"
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto server exited with code {self._proc.returncode}:\n{self.log_tail()}")
            try:
                with _DIRECT.open(url, timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answered: that is all we need
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"moto server did not answer on {self.endpoint} within {self.startup_timeout:.0f} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

    def is_running(self) -> bool:
        """True while the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, limit: int = 4000) -> str:
        """The end of the child's output (errors and tracebacks only)."""
        if self._log_file is None:
            return ""
        try:
            # pread: the child shares this file's offset, so never seek it.
            fd = self._log_file.fileno()
            size = os.fstat(fd).st_size
            start = max(0, size - limit)
            return os.pread(fd, size - start, start).decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def stop(self) -> None:
        """Stop the child (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()  # the child exits on EOF
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


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
      :meth:`run_schedules` still calls them on demand).

    :param app: the Chalice app whose ``event_sources`` to run.
    :param endpoint_url: where SQS is; ``None`` lets boto3 read ``AWS_ENDPOINT_URL``.
    :param wait_seconds: long-poll wait (1–20); also bounds how long :meth:`stop` takes.
    :param visibility_timeout: ``VisibilityTimeout`` of queues the pump creates.
    :param max_receive_count: when set, queues the pump creates get a dead-letter
        queue ``<name>-dlq`` and a redrive policy: a message received this many
        times without success moves there, as the deployed fan-out queue does.
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
    ) -> None:
        self.app = app
        self.max_receive_count = max_receive_count
        self.endpoint_url = endpoint_url
        self.region = region
        self.stage = stage
        self.schedule_interval = schedule_interval
        self.wait_seconds = max(1, min(20, int(wait_seconds)))
        self.visibility_timeout = visibility_timeout
        #: per handler name: ``batches``, ``messages``, ``errors``, ``deleted``, ``runs``.
        self.stats: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
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
                self._feeds.append(_QueueFeed(source.name, handler, queue, batch))
            elif isinstance(source, ScheduledEventConfig):
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
                handler(event, LambdaContext(self._function_name(name), memory_size=128, max_runtime_ms=900_000))
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


# --------------------------------------------------------------------------
# The whole stack
# --------------------------------------------------------------------------


def _load_app() -> Chalice:
    """The project's Chalice app (``app.py`` at the repository root)."""
    return importlib.import_module("app").app


def _reset_app_caches() -> None:
    """Forget settings (and lazily built clients) read from the old environment."""
    try:
        from chalicelib.settings import reset_settings

        reset_settings()
        deps = importlib.import_module("chalicelib.container")
    except ImportError:
        return
    set_deps = getattr(deps, "set_deps", None)
    if callable(set_deps):
        set_deps(None)  # rebuilt on next use, with the new endpoint and settings


class LocalStack:
    """moto's server + the Chalice app over HTTP + the event pump.

    :param app: the Chalice app; ``None`` imports ``app.app`` from the
        repository root (after the environment is set).
    :param port: HTTP port of the app; ``0`` picks a free one.
    :param admin_key, app_key: API keys; generated when not given.
    :param moto_port: port of the emulator; ``None`` picks a free one.
    :param schedule_interval: seconds between calls of scheduled functions.
    :param create_tables: create hexcast's DynamoDB tables and SNS platform
        applications at start (their ARNs go into the environment).

    ``start()`` sets the process environment (``AWS_ENDPOINT_URL``, fake
    credentials, ``HEXCAST_STAGE=local``, the keys' hashes) and ``stop()`` restores
    it. Use one stack per process at a time: the environment is global.

    ``stop()`` runs on leaving a ``with`` block (Ctrl-C included), at
    interpreter exit, and — when started from the main thread of a program
    that does not handle SIGTERM itself — SIGTERM unwinds like Ctrl-C. If the
    process is killed outright, the emulator exits by itself.
    """

    def __init__(
        self,
        app: Chalice | None = None,
        *,
        host: str = HOST,
        port: int = 8000,
        admin_key: str | None = None,
        app_key: str | None = None,
        moto_port: int | None = None,
        schedule_interval: float | None = 60.0,
        stage: str = "local",
        create_tables: bool = True,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.admin_key = admin_key or secrets.token_urlsafe(24)
        self.app_key = app_key or secrets.token_urlsafe(24)
        # Coupon codes are HMACs with a per-stage secret: the environment's
        # when set (stable codes across restarts), else a fresh one.
        self.coupon_secret = os.environ.get("HEXCAST_COUPON_SECRET") or secrets.token_urlsafe(32)
        self.stage = stage
        self.schedule_interval = schedule_interval
        self.create_tables = create_tables
        self.moto = MotoServer(host, moto_port)
        self.pump: EventPump | None = None
        self._server: LocalDevServer | None = None
        self._server_thread: threading.Thread | None = None
        self._saved_env: dict[str, str | None] | None = None
        self._lock = threading.RLock()
        self._sigterm_installed = False

    @property
    def base_url(self) -> str:
        """The app's base URL, e.g. ``http://127.0.0.1:8000``."""
        return f"http://{self.host}:{self.port}"

    @property
    def aws_endpoint(self) -> str:
        """The emulator's URL (what ``AWS_ENDPOINT_URL`` is set to)."""
        return self.moto.endpoint

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> LocalStack:
        """Start everything; on failure stop what was started and re-raise."""
        with self._lock:
            if self._server is not None:
                return self
            atexit.register(self.stop)
            self._install_sigterm()
            try:
                self.moto.start()
                self._set_env()
                if self.create_tables:
                    self._create_tables()
                    self._create_platform_applications()
                if self.app is None:
                    self.app = _load_app()
                self._serve_http()
                self.pump = EventPump(
                    self.app,
                    endpoint_url=self.aws_endpoint,
                    stage=self.stage,
                    schedule_interval=self.schedule_interval,
                    max_receive_count=5,  # then the dead-letter queue, as deployed
                )
                self.pump.start()
            except BaseException:
                self._stop_locked()
                raise
        log.info("local stack up: app %s, AWS emulator %s", self.base_url, self.aws_endpoint)
        return self

    def stop(self) -> None:
        """Stop the pump, the HTTP server and the emulator; restore the
        environment. Idempotent; safe from ``atexit`` and signal handlers."""
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self.pump is not None:
            self.pump.stop()  # kept: its stats stay readable after stop
        server, self._server = self._server, None
        thread, self._server_thread = self._server_thread, None
        if server is not None:
            if thread is not None and thread.is_alive():
                server.server.shutdown()  # returns once serve_forever has left
            server.server.server_close()
        if thread is not None:
            thread.join(timeout=10)
        self.moto.stop()
        self._restore_env()
        atexit.unregister(self.stop)
        self._restore_sigterm()

    def _install_sigterm(self) -> None:
        """Make SIGTERM unwind like Ctrl-C (so ``with``/``finally`` stop the
        stack), when this is the main thread and nobody handles SIGTERM yet."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        signal.signal(signal.SIGTERM, _sigterm_to_keyboard_interrupt)
        self._sigterm_installed = True

    def _restore_sigterm(self) -> None:
        if self._sigterm_installed and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self._sigterm_installed = False

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def is_running(self) -> bool:
        """True while the emulator and the HTTP server are both up."""
        thread = self._server_thread
        return self.moto.is_running() and thread is not None and thread.is_alive()

    def wait_healthy(self, path: str = "/v1/health", timeout: float = 30.0) -> None:
        """Wait until ``GET path`` answers 200; raise ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                with _DIRECT.open(self.base_url + path, timeout=5) as resp:
                    if resp.status == 200:
                        return
                    last = resp.status
            except urllib.error.HTTPError as exc:
                last = f"{exc.code} {exc.read()[:200]!r}"
            except OSError as exc:
                last = exc
            time.sleep(0.1)
        raise TimeoutError(f"GET {self.base_url}{path} did not answer 200 within {timeout:.0f} s (last: {last})")

    # -- parts -------------------------------------------------------------

    def _set_env(self) -> None:
        values: dict[str, str | None] = dict(FAKE_AWS_ENV)
        values["AWS_ENDPOINT_URL"] = self.aws_endpoint
        values.update(dict.fromkeys(_UNSET_AWS_ENV))
        # Per-service endpoints would win over AWS_ENDPOINT_URL.
        values.update(dict.fromkeys(k for k in os.environ if k.startswith("AWS_ENDPOINT_URL_")))
        values["NO_PROXY"] = values["no_proxy"] = _no_proxy_value(
            os.environ.get("NO_PROXY") or os.environ.get("no_proxy")
        )
        values["HEXCAST_STAGE"] = self.stage
        # The app gets the keys' hashes, as a deployed stage does; a plaintext
        # key variable from the shell is hidden while the stack runs.
        values["HEXCAST_ADMIN_KEY_HASHES"] = hash_token(self.admin_key)
        values["HEXCAST_APP_KEY_HASHES"] = hash_token(self.app_key)
        values["HEXCAST_ADMIN_KEY"] = values["HEXCAST_APP_KEY"] = None
        values["HEXCAST_COUPON_SECRET"] = self.coupon_secret
        self._saved_env = {k: os.environ.get(k) for k in values}
        _apply_env(values)
        _reset_app_caches()

    def _restore_env(self) -> None:
        if self._saved_env is None:
            return
        _apply_env(self._saved_env)
        self._saved_env = None
        _reset_app_caches()

    def _create_tables(self) -> None:
        from chalicelib.settings import get_settings
        from chalicelib.store.schema import create_tables

        client = boto3.session.Session().client("dynamodb", endpoint_url=self.aws_endpoint)
        create_tables(client, get_settings())

    def _create_platform_applications(self) -> None:
        """The SNS platform applications in the emulator; their ARNs join the
        environment the app reads its settings from (restored on stop)."""
        from chalicelib.push.platform_apps import ensure_platform_applications

        client = boto3.session.Session().client("sns", endpoint_url=self.aws_endpoint)
        self._extend_env(ensure_platform_applications(client, self.stage))

    def _extend_env(self, values: dict[str, str]) -> None:
        """Set more variables after :meth:`_set_env`, restored on stop as well."""
        assert self._saved_env is not None
        for key in values:
            self._saved_env.setdefault(key, os.environ.get(key))
        _apply_env(dict(values))
        _reset_app_caches()

    # -- inspection --------------------------------------------------------

    def sns_messages(self) -> list[dict[str, str]]:
        """What the emulator's SNS platform endpoints received, oldest
        endpoint first and each endpoint's messages in order: ``[{"endpoint_arn",
        "message_id", "message"}]`` where ``message`` is the raw published
        ``Message`` (for ``MessageStructure=json``: the JSON with ``default``
        and ``APNS``/``APNS_SANDBOX``/``GCM``). Endpoints deleted since are
        included. Read from the emulator process over HTTP (a read-only
        route that ``tools/_moto_server.py`` adds to moto's ``/moto-api``)."""
        if not self.moto.is_running():
            raise RuntimeError("the local stack is not running")
        with _DIRECT.open(self.aws_endpoint + SNS_MESSAGES_PATH, timeout=10) as resp:
            return json.loads(resp.read())["messages"]

    def _serve_http(self) -> None:
        app = self.app
        assert app is not None
        validate_routes(app.routes)  # as `chalice local` does: what would not deploy fails here
        if not isinstance(app, LocalChalice):
            # What chalice.local.create_local_server does, without mutating a
            # shared class: the current request becomes thread-local, so
            # concurrent requests cannot see each other's request.
            app.__class__ = type(f"Local{type(app).__name__}", (LocalChalice, type(app)), {})
        config = Config.create(
            chalice_stage=self.stage,
            app_name=app.app_name,
            chalice_app=app,
            project_dir=os.getcwd(),
            lambda_timeout=60,
        )
        # Binds now, in this thread: a taken port fails start() at once.
        server = LocalDevServer(app, config, self.host, self.port, handler_cls=_LoggingRequestHandler)
        self.port = server.server.server_address[1]
        self._server = server
        self._server_thread = threading.Thread(
            target=server.server.serve_forever, kwargs={"poll_interval": 0.2}, name="local-http", daemon=True
        )
        self._server_thread.start()


def _sigterm_to_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _apply_env(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


_QUERY_VALUE = re.compile(r"=[^&\s\"]*")


def _without_query_values(line: str) -> str:
    """A request line with its query values dropped (names kept): a lookup's
    ``?lat=…&lng=…`` is a location, and an access log keeps none.

    >>> _without_query_values('"GET /v1/geofences/lookup?lat=40.7128&lng=-74.006 HTTP/1.1" 200 -')
    '"GET /v1/geofences/lookup?lat=…&lng=… HTTP/1.1" 200 -'
    """
    head, sep, rest = line.partition("?")
    if not sep:
        return line
    query, space, tail = rest.partition(" ")
    return head + sep + _QUERY_VALUE.sub("=…", query) + space + tail


class _LoggingRequestHandler(ChaliceRequestHandler):
    """chalice.local's request handler, with request lines sent to logging
    (query values left out)."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        http_log.info("%s %s", self.address_string(), _without_query_values(format % args))
