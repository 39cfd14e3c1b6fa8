"""(d) Cold ``import app`` in a fresh interpreter, against ``import chalice``
and a bare interpreter start, each the median of several runs."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time

from benchmarks.data import REPO
from benchmarks.report import Figure


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEXCAST_", "AWS_"))}
    env["PYTHONPATH"] = str(REPO)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def start_seconds(code: str, runs: int = 5) -> float:
    """Median wall time of ``python -c code`` (one unmeasured run first, so
    byte-code and the OS file cache are warm, as on a reused Lambda host)."""
    cmd = [sys.executable, "-c", code]
    subprocess.run(cmd, cwd=REPO, env=_env(), check=True, capture_output=True)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, env=_env(), check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def third_party_costs(module: str = "app") -> dict[str, float]:
    """Self + nested import time per third-party top-level package, however
    deep it was first imported (ms)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=REPO,
        env=_env(),
        check=True,
        capture_output=True,
        text=True,
    ).stderr
    seen: dict[str, float] = {}
    for line in out.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not m:
            continue
        top = m.group(4).split(".")[0]
        seen[top] = seen.get(top, 0.0) + int(m.group(1)) / 1000
    return dict(sorted(seen.items(), key=lambda kv: -kv[1]))


def run(runs: int = 5) -> list[Figure]:
    t_app = start_seconds("import app", runs)
    t_chalice = start_seconds("import chalice", runs)
    t_bare = start_seconds("pass", runs)
    costs = third_party_costs()
    top = ", ".join(f"{k} {v:.0f} ms" for k, v in list(costs.items())[:6])
    note = f"median of {runs} fresh interpreters; import time by package (self time summed, -X importtime): {top}"
    return [
        Figure("d", "cold `import app`", t_app, "`import chalice`", t_chalice, unit="s", target_max=0.4, note=note),
        Figure("d", "cold `import app`", t_app, "bare interpreter", t_bare, unit="s"),
    ]
