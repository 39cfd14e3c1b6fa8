"""The HTTP API through the local stack: moto's server, the app over real HTTP.

One stack serves every end-to-end test. It sets process-wide variables
(``AWS_ENDPOINT_URL``, fake credentials, keys) while it runs, so the
end-to-end tests run last: every other test sees the environment it started
with, and the stack restores it when the session ends.

The log scan (:mod:`tests.logscan`): every log line of the end-to-end
session — every logger at INFO and above, the app's JSON lines as written,
the emulator's own output — is captured from before the stack starts, and
when the session ends it must hold none of the coordinates, push tokens,
API keys, device secrets or the coupon secret the suite handled; otherwise
the session fails (an error at teardown) naming each leak. The result is
written to ``out/log_scan.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import pytest

from tests.logscan import LogCapture, Sensitive, scan, spy_on_requests
from tools.localstack import FEED_FILE_ENV, FEED_URL_ENV, LocalStack, free_port

_HERE = os.path.dirname(os.path.abspath(__file__))
_REPORT = Path(_HERE).parents[1] / "out" / "log_scan.json"
_SCAN_KEY = pytest.StashKey[dict]()


#: End-to-end modules that run after the others: the contract fuzz run leaves
#: arbitrary fences, devices and campaigns in the shared stack.
_LAST = ("test_contract_fuzz.py",)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move the tests under tests/e2e after all others, and ``_LAST`` after
    those (stable otherwise)."""

    def rank(item: pytest.Item) -> int:
        if not str(item.path).startswith(_HERE + os.sep):
            return 0
        return 2 if item.path.name in _LAST else 1

    items.sort(key=rank)  # stable


class LogScan:
    """The session's capture, what it must not contain, and the verdict."""

    def __init__(self) -> None:
        self.sensitive = Sensitive()
        self.capture = LogCapture()
        self.findings: list = []

    def missing_request_id(self) -> list[str]:
        """The app's JSON lines that carry no request id (there must be none)."""
        out = []
        for line in self.capture.lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and str(rec.get("logger", "")).startswith("hexcast") and not rec.get("request_id"):
                out.append(line)
        return out

    def report(self) -> dict:
        loggers: dict[str, int] = {}
        for line in self.capture.lines:
            try:
                name = json.loads(line).get("logger", "?")
            except (ValueError, AttributeError):
                name = "(other output: emulator, stdout, stderr)"
            loggers[name] = loggers.get(name, 0) + 1
        return {
            "lines": len(self.capture.lines),
            "app_lines_without_request_id": len(self.missing_request_id()),
            "by_logger": dict(sorted(loggers.items())),
            "coordinate_pairs": len(self.sensitive.pairs),
            "secrets": dict(sorted(_count(self.sensitive.secrets.values()).items())),
            "findings": len(self.findings),
            "first_findings": [str(f) for f in self.findings[:20]],
        }


_active: list[LogScan] = []  # the session's scan while it runs


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


@pytest.fixture(scope="session")
def log_scan(request: pytest.FixtureRequest) -> Iterator[LogScan]:
    """Capture every log line of the end-to-end session; fail at its end on a leak."""
    scan_state = LogScan()
    scan_state.capture.install()
    undo = spy_on_requests(scan_state.sensitive)
    _active.append(scan_state)
    try:
        yield scan_state
    finally:
        _active.remove(scan_state)
        undo()
        scan_state.capture.uninstall()
    scan_state.findings = scan(scan_state.capture.lines, scan_state.sensitive)
    report = scan_state.report()
    request.config.stash[_SCAN_KEY] = report
    try:
        _REPORT.parent.mkdir(parents=True, exist_ok=True)
        _REPORT.write_text(json.dumps(report, indent=1) + "\n")
    except OSError:
        pass
    missing = scan_state.missing_request_id()
    if missing:
        pytest.fail(f"{len(missing)} app log line(s) without a request id, e.g. {missing[0][:300]}", pytrace=False)
    if scan_state.findings:
        pytest.fail(
            f"the end-to-end logs leak personal data or secrets ({len(scan_state.findings)} finding(s)):\n"
            + "\n".join(str(f) for f in scan_state.findings[:20]),
            pytrace=False,
        )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """What each test phase wrote to stdout and stderr joins the scan (a
    server thread's traceback, a stray print); the app's JSON lines are
    already captured from their logger. (While the scan is active only
    end-to-end tests run: they run last.)"""
    if not _active:
        return
    for text in (report.capstdout, report.capstderr):
        _active[0].capture.add_text("\n".join(line for line in text.splitlines() if not line.startswith('{"time":')))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    report = config.stash.get(_SCAN_KEY, None)
    if report is not None:
        terminalreporter.write_line(
            f"log scan: {report['lines']} lines, {report['coordinate_pairs']} posted locations and "
            f"{sum(report['secrets'].values())} secrets checked, {report['findings']} leak(s)"
        )


@pytest.fixture(scope="session")
def stack(log_scan: LogScan) -> Iterator[LocalStack]:
    """The running local stack (``base_url``, ``admin_key``, ``app_key``).

    Hermetic: a weather feed configured in the shell is ignored, so the
    feed poller stays off and nothing leaves 127.0.0.1."""
    hidden = {name: os.environ.pop(name, None) for name in (FEED_URL_ENV, FEED_FILE_ENV)}
    try:
        with LocalStack(port=free_port()) as running:
            for kind, value in (("API key", running.admin_key), ("API key", running.app_key),
                                ("coupon secret", running.coupon_secret)):
                log_scan.sensitive.add_secret(kind, value)
            running.wait_healthy()
            try:
                yield running
            finally:
                log_scan.capture.add_text(running.moto.log_tail(limit=64 * 1024 * 1024))
    finally:
        os.environ.update({name: value for name, value in hidden.items() if value is not None})
