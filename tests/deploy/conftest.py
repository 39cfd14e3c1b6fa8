"""The deployment checks: ``make package STAGE=dev`` once per session (about
10 s once the wheels are cached under ``~/.cache/hexcast/wheels``; the first
run downloads ~31 MB of cp313 wheels from PyPI)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.parse
from pathlib import Path
from typing import Callable

import pytest

from deploy import chalice_cli

ROOT = Path(__file__).resolve().parents[2]
STAGE = "dev"
DIST = ROOT / "dist" / STAGE
#: What pip prints when it cannot reach the package index at all (DNS,
#: refused or timed-out connections, a dead proxy): the only reason to skip.
_UNREACHABLE = ("NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
                "Name or service not known", "nodename nor servname provided", "getaddrinfo failed",
                "Network is unreachable", "Connection refused", "ConnectTimeoutError", "ConnectTimeout",
                "ProxyError", "Cannot connect to proxy")


#: What pip prints when the index answered but holds no wheel for a pin.
_NO_MATCH = ("No matching distribution found", "Could not find a version that satisfies")


def index_answers(timeout: float = 5.0) -> bool:
    """True when a TCP connection to pip's index (``PIP_INDEX_URL``, else
    pypi.org) opens: the index is reachable from here."""
    url = urllib.parse.urlsplit(os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple")
    if url.scheme not in ("http", "https") or not url.hostname:
        return True  # a local index (file:, a path): nothing network-bound to be down
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def index_unreachable(output: str, probe: Callable[[], bool] = index_answers) -> bool:
    """True when a failed ``make package`` could not reach the package index.

    Connection errors in pip's output (it prints them while retrying) decide
    at once. "No matching distribution found" alone means the index answered
    and has no such wheel — a bad pin, or a platform without wheels — and
    must fail, not skip; only when pip printed no connection error (retries
    turned off) does a direct connection ``probe`` tell the two apart. Any
    other failure is never "offline"."""
    if any(marker in output for marker in _UNREACHABLE):
        return True
    if any(marker in output for marker in _NO_MATCH):
        return not probe()
    return False


def _wheels_cached() -> bool:
    root = chalice_cli.cache_root()
    return root.is_dir() and any((d / ".complete").exists() for d in root.iterdir())


@pytest.fixture(scope="session")
def packaged() -> dict:
    """Runs ``make package STAGE=dev`` → its output and the template."""
    env = dict(os.environ)
    env.pop("DRY_RUN", None)
    proc = subprocess.run(["make", "--no-print-directory", "package", f"STAGE={STAGE}"], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        if not _wheels_cached() and index_unreachable(output):
            pytest.skip("PyPI is unreachable and no cp313 wheels are cached under ~/.cache/hexcast/wheels: "
                        "`make package` cannot fetch the Lambda runtime's wheels\n" + output[-2000:])
        pytest.fail(f"make package STAGE={STAGE} exited {proc.returncode}:\n{output}")
    return {
        "output": output,
        "template": json.loads((DIST / "sam.json").read_text()),
        "resources": json.loads((DIST / "resources.json").read_text()),
        "zip": DIST / "deployment.zip",
    }
