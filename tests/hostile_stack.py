"""The hostile requests over real HTTP, through the local stack.

:mod:`tests.hostile`'s harness judges requests sent through Chalice's test
client over moto in the same process, where it can compare every table
before and after each rejection. This module sends the *same* requests —
the catalogue and the seeded generated ones — over a socket to the local
stack (the app behind its HTTP server, moto's server in a process of its
own, the weather functions in theirs), as a client of a deployed stage
would, and judges what a client sees: the status, the error body, and how
long the answer took. ``make hostile`` runs both; the local stack's run
fails when any answer takes longer than :data:`SLOW_LIMIT_S`.

Requests that no HTTP client can put on the wire as written are sent the
way a client must: the path percent-encoded where it holds characters a
request line cannot carry (spaces, controls, non-ASCII), header values as
UTF-8 bytes.
"""

from __future__ import annotations

import http.client
import os
import socket
import time
from dataclasses import dataclass
from typing import Iterable, Iterator
from urllib.parse import quote, urlsplit

from hypothesis import HealthCheck, Phase, given, seed, settings

from tests import hostile

#: no answer from the local stack may take longer (seconds)
SLOW_LIMIT_S = 5.0
#: how long the client waits before it calls an answer lost (a 599 then)
TIMEOUT_S = 120.0
#: what a request line may carry as is; the rest is percent-encoded
_PATH_SAFE = "/?&=%:+,;@!$'()*~[]-._"


@dataclass
class Answer:
    """What the harness reads from an answer (the test client's names)."""

    status_code: int
    body: bytes
    headers: dict


class _Http:
    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80

    def request(self, method: str, path: str, headers: dict | None = None, body: bytes = b"") -> Answer:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S)
        try:
            conn.putrequest(method, quote(path, safe=_PATH_SAFE), skip_accept_encoding=True)
            for name, value in (headers or {}).items():
                conn.putheader(name, value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value)
            if body or method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            try:
                conn.endheaders(body or None)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered (and closed) before reading it all: read that answer
            resp = conn.getresponse()
            return Answer(resp.status, resp.read(), dict(resp.getheaders()))
        except (socket.timeout, TimeoutError):
            return Answer(599, b'{"client": "no answer within the client timeout"}', {})
        except (ConnectionError, http.client.HTTPException) as exc:
            return Answer(598, f'{{"client": "connection failed: {type(exc).__name__}"}}'.encode(), {})
        finally:
            conn.close()


class HttpClient:
    """``client.http.request(...)`` over a socket, like ``chalice.test.Client``."""

    def __init__(self, base_url: str) -> None:
        self.http = _Http(base_url)


def run_generated(harness: hostile.Harness, count: int, seed_value: int) -> None:
    """``count`` requests from :func:`tests.hostile.requests`, seeded: the
    same sequence for the same seed and world."""
    if count <= 0:
        return

    @seed(seed_value)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(req=hostile.requests(harness.world))
    def generated(req: hostile.Req) -> None:
        harness.send(req)

    generated()


@dataclass
class StackRun:
    tally: hostile.Tally
    base_url: str


def on_local_stack(*, generated: int, seed_value: int, full: bool, verbose: bool = False,
                   slow_limit: float = SLOW_LIMIT_S, catalogue: bool = True) -> StackRun:
    """Start a local stack, seed it as the in-process run does, send the
    catalogue and ``generated`` requests, stop it; the tally says what a
    client saw."""
    from tools.localstack import FEED_FILE_ENV, FEED_URL_ENV, LocalStack, free_port

    hidden = {name: os.environ.pop(name, None) for name in (FEED_URL_ENV, FEED_FILE_ENV)}
    try:
        with LocalStack(port=free_port()) as stack:
            stack.wait_healthy()
            tally = run_against(stack.base_url, stack.admin_key, stack.app_key, generated=generated,
                                seed_value=seed_value, full=full, verbose=verbose, slow_limit=slow_limit,
                                catalogue=catalogue)
            return StackRun(tally, stack.base_url)
    finally:
        os.environ.update({name: value for name, value in hidden.items() if value is not None})


def run_against(base_url: str, admin_key: str, app_key: str, *, generated: int, seed_value: int, full: bool,
                verbose: bool = False, slow_limit: float | None = SLOW_LIMIT_S, catalogue: bool = True,
                extra: Iterable[hostile.Req] = ()) -> hostile.Tally:
    """The hostile run against a running stack at ``base_url``."""
    world = hostile.World(admin_key=admin_key, app_key=app_key)
    harness = hostile.Harness(HttpClient(base_url), world, judge_writes=False)
    harness.verbose = verbose
    harness.tally.slow_limit = slow_limit
    start = time.perf_counter()
    try:
        harness.seed()
        harness.run(_chain(hostile.catalogue(world, full=full) if catalogue else [], extra))
        run_generated(harness, generated, seed_value)
    finally:
        harness.close()
    harness.tally.seconds = time.perf_counter() - start
    return harness.tally


def _chain(*parts: Iterable[hostile.Req]) -> Iterator[hostile.Req]:
    for part in parts:
        yield from part
