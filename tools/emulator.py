"""moto's server in a child process on ``127.0.0.1``: the AWS emulator
(DynamoDB, SNS, SQS) of the local stack and the tests.

The child exits on its own when this process dies, even by ``SIGKILL``: it
watches a pipe that only this process holds open.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

log = logging.getLogger("tools.localstack")

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


def free_port(host: str = HOST) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


#: For the stack's own readiness checks: loopback never goes through a proxy.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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
                log.info("moto server on %s (pid %s)", self.endpoint, self._proc.pid if self._proc else None)
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
