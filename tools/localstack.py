"""The local stack: the whole system on this machine, no AWS account, no Docker.

Three parts, started and stopped together by :class:`LocalStack`:

* :class:`~tools.emulator.MotoServer` — moto's server in a child process on ``127.0.0.1``
  (DynamoDB, SNS, SQS). A separate process, so the emulator runs on another
  core than the app. The child exits on its own when this process dies,
  even by ``SIGKILL``: it watches a pipe that only this process holds open.
* the Chalice app served over HTTP by ``chalice.local`` in a background
  thread (threaded, one thread per request), exactly as ``chalice local``
  serves it.
* :class:`~tools.pump.EventPump` — runs what ``chalice local`` does not: every
  ``@app.on_sqs_message`` handler is fed from its queue in the emulator
  (long polling; messages are deleted only when the handler returns without
  error, as Lambda does), and every ``@app.schedule`` function is called on
  an interval with a CloudWatch scheduled-event dict (the weather feed
  poller only when a feed is configured: see :class:`LocalStack`).

The app reaches the emulator through the standard ``AWS_ENDPOINT_URL``
variable, so the same code talks to AWS when the variable is absent.

Example::

    with LocalStack(port=0) as stack:
        requests.get(f"{stack.base_url}/v1/health",
                     headers={"X-Api-Key": stack.admin_key})
"""

from __future__ import annotations

import atexit
import importlib
import json
import logging
import os
import re
import secrets
import signal
import threading
import time
import urllib.error
from typing import Any

import boto3
from chalice import Chalice
from chalice.config import Config
from chalice.deploy.validate import validate_routes
from chalice.local import ChaliceRequestHandler, LocalChalice, LocalDevServer, ThreadedHTTPServer

from chalicelib.api.gateway import local_gateway_answer
from chalicelib.auth import hash_token
from tools._moto_server import SNS_MESSAGES_PATH
from tools.emulator import (
    _DIRECT,
    ACCOUNT_ID,
    FAKE_AWS_ENV,
    HOST,
    REGION,
    MotoServer,
    free_port,
)
from tools.feed_replay import FeedReplay
from tools.pump import EventPump, scheduled_event, sqs_event

__all__ = ["ACCOUNT_ID", "FAKE_AWS_ENV", "FEED_FILE_ENV", "FEED_POLLER", "FEED_URL_ENV", "HOST", "REGION",
           "EventPump", "LocalStack", "MotoServer", "free_port", "new_key", "scheduled_event", "sqs_event"]

log = logging.getLogger(__name__)
http_log = logging.getLogger(__name__ + ".http")

#: The scheduled function that polls the NWS alert feed: the only one that
#: would leave the machine, so it runs only when a feed is configured.
FEED_POLLER = "poll_weather"
#: The SQS consumers of the weather path (planner, fan-out sender).
WEATHER_FUNCTIONS = ("plan_alerts", "send_fanout")
#: The variable that names each SQS consumer's queue for its senders.
QUEUE_ENV_BY_FUNCTION = {"plan_alerts": "HEXCAST_ALERT_QUEUE", "send_fanout": "HEXCAST_FANOUT_QUEUE"}
#: A feed URL to poll, or a recorded feed file to serve on loopback and poll.
FEED_URL_ENV = "HEXCAST_WEATHER_FEED_URL"
FEED_FILE_ENV = "HEXCAST_WEATHER_FEED_FILE"


def new_key() -> str:
    """A fresh random API key that never starts with ``-``.

    ``secrets.token_urlsafe`` may start with a dash, which a command line
    (``--key -abc``) reads as an option; the keys are pasted into shells.
    """
    return "hx" + secrets.token_urlsafe(24)

#: Variables that could make boto3 reach real AWS or fail to find the fake
#: credentials; removed while the stack runs and restored afterwards.
_UNSET_AWS_ENV = (
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
)


def _no_proxy_value(current: str | None) -> str:
    """``NO_PROXY`` extended with loopback, so clients never send local calls
    to a proxy configured in the environment."""
    hosts = [h.strip() for h in (current or "").split(",") if h.strip()]
    return ",".join(hosts + [h for h in ("127.0.0.1", "localhost") if h not in hosts])


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
    :param weather_feed_url: the alert feed the scheduled poller reads
        (default: ``HEXCAST_WEATHER_FEED_URL`` from the environment).
    :param weather_feed_file: a recorded feed (NWS GeoJSON) to serve on
        ``127.0.0.1`` and poll instead (default: ``HEXCAST_WEATHER_FEED_FILE``).
        With neither, the poller is off: by default nothing the stack runs
        on its own reaches beyond ``127.0.0.1``.

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
        weather_feed_url: str | None = None,
        weather_feed_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.app = app
        self._own_app = app is None  # the repository's app.py: importable by a function process
        self.host = host
        self.port = port
        self.admin_key = admin_key or new_key()
        self.app_key = app_key or new_key()
        # Coupon codes are HMACs with a per-stage secret: the environment's
        # when set (stable codes across restarts), else a fresh one.
        self.coupon_secret = os.environ.get("HEXCAST_COUPON_SECRET") or secrets.token_urlsafe(32)
        self.stage = stage
        self.schedule_interval = schedule_interval
        self.create_tables = create_tables
        self.weather_feed_url = weather_feed_url or os.environ.get(FEED_URL_ENV) or None
        self.weather_feed_file = weather_feed_file or os.environ.get(FEED_FILE_ENV) or None
        #: The recorded feed being served, when ``weather_feed_file`` is set (after start).
        self.feed_replay: FeedReplay | None = None
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

    @property
    def feed_url(self) -> str | None:
        """The feed the weather poller reads; None while the poller is off."""
        if self.feed_replay is not None:
            return self.feed_replay.url
        return self.weather_feed_url

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
                self._configure_feed()
                if self.create_tables:
                    self._create_tables()
                    self._create_platform_applications()
                if self.app is None:
                    self.app = _load_app()
                self._align_queue_env()
                self._serve_http()
                self.pump = EventPump(
                    self.app,
                    endpoint_url=self.aws_endpoint,
                    stage=self.stage,
                    schedule_interval=self.schedule_interval,
                    max_receive_count=5,  # then the dead-letter queue, as deployed
                    skip_schedules=() if self.feed_url else (FEED_POLLER,),
                    # The weather functions run in processes of their own, as
                    # each Lambda function does: storm work never holds the
                    # API's interpreter.
                    processes=WEATHER_FUNCTIONS if self._own_app else (),
                )
                self.pump.start()
            except BaseException:
                self._stop_locked()
                raise
        log.info("local stack up: app %s, AWS emulator %s, weather feed %s", self.base_url, self.aws_endpoint,
                 self.feed_url or f"off (set {FEED_URL_ENV} or {FEED_FILE_ENV})")
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
        replay, self.feed_replay = self.feed_replay, None
        if replay is not None:
            replay.stop()
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

    def _configure_feed(self) -> None:
        """Serve the recorded feed file on loopback, and point the app's
        poller at it or at the configured URL (restored on stop)."""
        if self.weather_feed_file:
            self.feed_replay = FeedReplay(self.weather_feed_file, host=self.host).start()
        if self.feed_url:
            self._extend_env({FEED_URL_ENV: self.feed_url})

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

    def _align_queue_env(self) -> None:
        """The senders' queue names = the ones the app's consumers read.

        A consumer's queue is named when ``app.py`` is imported (its
        decorator); the app may have been imported before this stack set its
        stage (a test run, an earlier stack). Deployed, the template hands
        every function the names of the queues it created; here the app's
        own event sources give them."""
        from chalice.app import SQSEventConfig

        env = {QUEUE_ENV_BY_FUNCTION[src.name]: src.queue for src in getattr(self.app, "event_sources", [])
               if isinstance(src, SQSEventConfig) and src.name in QUEUE_ENV_BY_FUNCTION and src.queue}
        if env:
            self._extend_env(env)

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
        server = LocalDevServer(app, config, self.host, self.port, handler_cls=_LoggingRequestHandler,
                                server_cls=BurstHTTPServer)
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


class BurstHTTPServer(ThreadedHTTPServer):
    """chalice.local's threaded server (a thread per connection) with a
    listen backlog of :attr:`request_queue_size` instead of socketserver's 5:
    a burst of clients connecting at once waits in the kernel's queue
    instead of being reset."""

    request_queue_size = 128


class _LoggingRequestHandler(ChaliceRequestHandler):
    """chalice.local's request handler, with request lines sent to logging
    (query values left out)."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        http_log.info("%s %s", self.address_string(), _without_query_values(format % args))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The HTTP server's own refusals (a header line over 64 KiB → 431, a
        malformed request line → 400) in the documented error body, as the
        deployed API's gateway responses answer (its header limit is 10 KiB)."""
        field = "headers" if code == 431 else None
        text = json.dumps({"error": {"code": "headers_too_large" if code == 431 else "bad_request",
                                     "message": f"{message or 'refused'}: the request was refused before reaching the app",
                                     "field": field}})
        try:
            self.log_error("code %d, message %s", code, message)
            self.send_response(code, message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            if self.command != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(text.encode())
        except OSError:  # the client went away first
            pass

    def _send_error_response(self, error: Any) -> None:  # a chalice.local LocalGatewayException
        """A path no route has: the deployed API's 404 in the documented
        error body (its gateway responses), not chalice.local's 403."""
        status, body = local_gateway_answer(error.CODE)
        headers = {**error.headers, "Content-Type": "application/json"}
        headers.pop("x-amzn-ErrorType", None)
        self._send_http_response(status, headers, json.dumps(body))
