"""A recorded NWS alert feed served on ``127.0.0.1``, for the local stack's poller.

``HEXCAST_WEATHER_FEED_FILE=path/to/alerts.json make serve`` serves the file
(a GeoJSON FeatureCollection as ``api.weather.gov/alerts/active`` returns it)
at ``http://127.0.0.1:<free port>/alerts/active`` and points the scheduled
poller there, so the whole weather path runs with no request leaving the
machine. The file is read on every request: edit it (add a Feature, change
an ``expires``) and the next poll sees the change. Answers carry an ``ETag``
and honour ``If-None-Match`` (304), as the real feed does.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger(__name__)

#: Where the replay answers (the path the real feed has).
FEED_PATH = "/alerts/active"


class FeedReplay:
    """Serve ``path`` at :attr:`url` from a daemon thread until :meth:`stop`.

    :param path: the recorded feed (JSON); read on every request.
    :param host: interface to bind; loopback.
    :param port: TCP port; ``0`` picks a free one.
    """

    def __init__(self, path: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 0) -> None:
        self.path = Path(path)
        self.host = host
        self.port = port
        #: Requests answered so far (200s and 304s).
        self.requests = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The feed URL to give the poller (``HEXCAST_WEATHER_FEED_URL``)."""
        return f"http://{self.host}:{self.port}{FEED_PATH}"

    def start(self) -> FeedReplay:
        """Bind and serve; raises ``FileNotFoundError`` when the file is missing."""
        if not self.path.is_file():
            raise FileNotFoundError(f"weather feed file not found: {self.path}")
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                replay._answer(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                log.debug("feed replay: " + format, *args)

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="feed-replay", daemon=True)
        self._thread.start()
        log.info("weather feed replay: %s at %s", self.path, self.url)
        return self

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests += 1
        if handler.path.split("?", 1)[0] != FEED_PATH:
            handler.send_error(404)
            return
        try:
            body = self.path.read_bytes()
        except OSError:
            handler.send_error(503, "feed file unreadable")
            return
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if handler.headers.get("If-None-Match") == etag:
            handler.send_response(304)
            handler.send_header("ETag", etag)
            handler.end_headers()
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "application/geo+json")
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("ETag", etag)
        handler.end_headers()
        handler.wfile.write(body)

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
