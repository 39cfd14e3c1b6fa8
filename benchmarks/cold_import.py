"""(d) Cold start as deployed: fresh CPython 3.13 processes over the unpacked
``dist/<stage>/deployment.zip``, per Lambda function, with and without the
``.pyc`` files ``make package`` compiles into the zip.

``python -m benchmarks.cold_import`` (or ``benchmarks.run --only d``);
``--zip PATH`` another package, ``--runs N`` (default 7). The zip is built by
``make package STAGE=dev`` (with ``.pyc``; ``PYC=0`` without).

How it is measured, and why:

* **As deployed.** The zip is unpacked into a fresh directory, which is the
  working directory and first on ``sys.path`` (Lambda's ``/var/task``); the
  AWS SDK comes from a byte-compiled directory of its own, as the runtime
  provides it (the zip leaves it out; :func:`tools.py313.runtime_sdk`).
  ``PYTHONDONTWRITEBYTECODE=1`` stands for the read-only ``/var/task``: no
  run writes a ``.pyc`` another run then reads (checked after the runs). No
  unmeasured warm-up run.
* **The runtime.** CPython 3.13 from :mod:`tools.py313`; the zip's native
  wheels are cp313, so without it the section falls back to the repository
  on this interpreter, and says so.
* **Without .pyc**: the zip's ``__pycache__`` entries are left out when it is
  unpacked — how every package built before ``.pyc`` were compiled in ran.
* **Per function.** Every function's handler is ``app.<name>``, so its init
  is ``import app``; its first call then builds the wiring
  (``container.build_deps()``: the SDK clients, no request is sent) and runs
  the function-level imports of its handler (read from the source with
  :mod:`ast`: the ping route for the API, each ``schedule`` / SQS handler).
  "First call" = ``import app`` + those: what a cold invocation waits for
  before its handler's own work.
* Wall time of the whole process (interpreter start included), median and
  min–max of ``--runs`` fresh processes, and its CPU time (user + system,
  from rusage), which load on a shared machine inflates far less; the
  variants run interleaved, so a burst of load falls on all of them alike.
  Baselines in the same run: a bare interpreter and ``import chalice``.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.data import REPO
from benchmarks.report import Figure

TARGET_S = 0.4
DEFAULT_ZIP = REPO / "dist" / "dev" / "deployment.zip"
#: The API function's representative request: a ping.
PING_ROUTE = ("pings.py", "post_pings")


@dataclass
class Variant:
    label: str
    code: str
    times: list[float] = field(default_factory=list)
    #: user + system CPU seconds of each process (rusage): what load on a
    #: shared machine inflates far less than wall time
    cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    def spread(self) -> str:
        return f"{min(self.times) * 1000:.0f}–{max(self.times) * 1000:.0f} ms"


def handler_imports(api_dir: Path = REPO / "chalicelib" / "api") -> dict[str, list[str]]:
    """Lambda function → the import statements its handler runs on its
    first call, read from the blueprints: ``{"api (POST /v1/pings)": [...],
    "poll_weather": [...], ...}``."""
    out: dict[str, list[str]] = {}
    for path in sorted(api_dir.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in tree.body:
            if not isinstance(fn, ast.FunctionDef):
                continue
            name = None
            if (path.name, fn.name) == PING_ROUTE:
                name = "api (POST /v1/pings)"
            for dec in fn.decorator_list:
                if isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute) and dec.func.attr in (
                        "schedule", "on_sqs_message"):
                    name = next((k.value.value for k in dec.keywords
                                 if k.arg == "name" and isinstance(k.value, ast.Constant)), fn.name)
            if name is not None:
                out[name] = [ast.unparse(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))]
    return out


def variants() -> list[Variant]:
    first_call = "from chalicelib import container; container.build_deps()"
    out = [Variant("bare interpreter", "pass"), Variant("`import chalice`", "import chalice"),
           Variant("init: `import app` (every function)", "import app")]
    for name, imports in sorted(handler_imports().items()):
        out.append(Variant(f"first call: {name}", "; ".join(["import app", first_call, *imports])))
    return out


@dataclass
class Runtime:
    label: str
    command: list[str]
    env: dict[str, str]
    sdk: Path | None


def runtime() -> Runtime:
    """CPython 3.13 (tools.py313, fetched on first use) or, failing that, this interpreter."""
    from tools import py313

    try:
        root = py313.fetch(log=False)
        sdk = py313.runtime_sdk(root, log=False)
        version = (root / ".complete").read_text().split()[0]
        return Runtime(f"CPython {version} (Debian trixie build, tools/py313.py)", py313.command(root),
                       py313.environment(root), sdk)
    except Exception as exc:  # noqa: BLE001 — offline: say so and measure what can be
        return Runtime(f"CPython {sys.version.split()[0]} — NOT the deployed 3.13 ({type(exc).__name__}: {exc})",
                       [sys.executable], {}, None)


def unpack(zip_path: Path, dest: Path, pyc: bool) -> Path:
    with zipfile.ZipFile(zip_path) as zf:
        names = [n for n in zf.namelist() if pyc or "__pycache__/" not in n]
        zf.extractall(dest, members=names)
    return dest


def _env(rt: Runtime, task: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEXCAST_", "AWS_", "PYTHON"))}
    path = [str(task)] + ([str(rt.sdk)] if rt.sdk else [])
    env.update(rt.env, PYTHONPATH=os.pathsep.join(path), PYTHONDONTWRITEBYTECODE="1",
               AWS_DEFAULT_REGION="us-east-1", HEXCAST_STAGE="dev")
    return env


def pycs(task: Path) -> set[Path]:
    return set(task.rglob("*.pyc"))


def measure(rt: Runtime, task: Path, vs: list[Variant], runs: int) -> None:
    env = _env(rt, task)
    for _ in range(runs):
        for v in vs:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run([*rt.command, "-c", v.code], cwd=task, env=env, check=True, capture_output=True)
            v.times.append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            v.cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)


def import_costs(rt: Runtime, task: Path, code: str) -> dict[str, float]:
    """Self import time per top-level package (ms, ``-X importtime``)."""
    out = subprocess.run([*rt.command, "-X", "importtime", "-c", code], cwd=task, env=_env(rt, task),
                         check=True, capture_output=True, text=True).stderr
    seen: dict[str, float] = {}
    for line in out.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            top = m.group(4).split(".")[0]
            seen[top] = seen.get(top, 0.0) + int(m.group(1)) / 1000
    return dict(sorted(seen.items(), key=lambda kv: -kv[1]))


def _load() -> str:
    try:
        return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"
    except OSError:
        return "load unknown"


def has_pyc(zip_path: Path) -> bool:
    with zipfile.ZipFile(zip_path) as zf:
        return any(n.endswith(".pyc") for n in zf.namelist())


def measure_zip(zip_path: Path, runs: int) -> tuple[Runtime, dict[str, list[Variant]], dict[str, dict[str, float]]]:
    """→ (runtime, {"no .pyc"|"with .pyc": variants}, {label: import costs of the ping's first call})."""
    rt = runtime()
    modes = ["no .pyc"] + (["with .pyc"] if has_pyc(zip_path) else [])
    results: dict[str, list[Variant]] = {}
    costs: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="hexcast-task-") as tmp:
        tasks = {m: unpack(zip_path, Path(tmp) / m.replace(" ", "_").replace(".", ""), m == "with .pyc") for m in modes}
        for m in modes:
            results[m] = variants()
        # interleave the modes too: one run of every variant of every mode, then the next
        shipped = {m: pycs(tasks[m]) for m in modes}
        for _ in range(runs):
            for m in modes:
                measure(rt, tasks[m], results[m], 1)
        for m in modes:
            if pycs(tasks[m]) != shipped[m]:
                raise RuntimeError(f"a run wrote .pyc under {tasks[m]}: the later runs were not cold")
        ping = next(v.code for v in results[modes[0]] if "pings" in v.label)
        for m in modes:
            costs[m] = import_costs(rt, tasks[m], ping)
    return rt, results, costs


def measure_repo(runs: int) -> tuple[Runtime, dict[str, list[Variant]], dict[str, dict[str, float]]]:
    """No CPython 3.13: the repository on this interpreter, its own .pyc
    cache bypassed (``PYTHONDONTWRITEBYTECODE`` does not stop reading them,
    so a private ``PYTHONPYCACHEPREFIX`` that stays empty)."""
    rt = runtime()
    with tempfile.TemporaryDirectory() as tmp:
        rt.env = {**rt.env, "PYTHONPYCACHEPREFIX": tmp}
        vs = variants()
        measure(rt, REPO, vs, runs)
        ping = next(v.code for v in vs if "pings" in v.label)
        return rt, {"no .pyc (repository)": vs}, {"no .pyc (repository)": import_costs(rt, REPO, ping)}


def report(rt: Runtime, results: dict[str, list[Variant]], costs: dict[str, dict[str, float]], runs: int) -> str:
    lines = [f"(d) cold start as deployed — {rt.label}; {runs} fresh processes per row, {_load()}", ""]
    for mode, vs in results.items():
        lines.append(f"  {mode}:")
        for v in vs:
            verdict = ""
            if v.label.startswith(("first call", "init")):
                verdict = "  met" if v.median <= TARGET_S else "  MISSED (≤ 400 ms)"
            lines.append(f"    {v.label:<44} median {v.median * 1000:6.0f} ms  ({v.spread():>13}), "
                         f"CPU {v.cpu_median * 1000:4.0f} ms{verdict}")
        top = ", ".join(f"{k} {ms:.0f} ms" for k, ms in list(costs.get(mode, {}).items())[:8])
        lines.append(f"    self import time by package, ping's first call: {top}")
    best = min(results, key=lambda m: max(v.median for v in results[m] if v.label.startswith("first call")))
    worst = max((v for v in results[best] if v.label.startswith("first call")), key=lambda v: v.median)
    worst_cpu = max((v for v in results[best] if v.label.startswith("first call")), key=lambda v: v.cpu_median)
    ok, ok_cpu = worst.median <= TARGET_S, worst_cpu.cpu_median <= TARGET_S
    lines += ["", f"  verdict ({best}), wall: slowest first call {worst.label[12:]} {worst.median * 1000:.0f} ms — "
              f"{'every function within' if ok else 'NOT every function within'} 400 ms",
              f"  verdict ({best}), CPU:  slowest first call {worst_cpu.label[12:]} {worst_cpu.cpu_median * 1000:.0f} ms — "
              f"{'every function within' if ok_cpu else 'NOT every function within'} 400 ms"]
    return "\n".join(lines)


def run(runs: int = 7, zip_path: Path = DEFAULT_ZIP) -> list[Figure]:
    """The figures for ``benchmarks.run`` (prints the per-function table too)."""
    if zip_path.is_file() and runtime().sdk is not None:
        rt, results, costs = measure_zip(zip_path, runs)
    else:
        rt, results, costs = measure_repo(runs)
    print(report(rt, results, costs, runs))
    figures = []
    for mode, vs in results.items():
        by = {v.label: v for v in vs}
        bare, chalice_ = by["bare interpreter"], by["`import chalice`"]
        for v in vs:
            if v.label.startswith(("init", "first call")):
                figures.append(Figure("d", f"{v.label}, {mode}", v.median, "`import chalice`", chalice_.median, unit="s",
                                      target_max=TARGET_S,
                                      note=f"{rt.label}; median of {runs} ({v.spread()}), CPU "
                                           f"{v.cpu_median * 1000:.0f} ms; bare interpreter {bare.median * 1000:.0f} ms"))
    return figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zip", type=Path, default=DEFAULT_ZIP)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args(argv)
    if not args.zip.is_file():
        print(f"{args.zip} is missing: `make package STAGE=dev` builds it", file=sys.stderr)
        return 2
    rt, results, costs = measure_zip(args.zip, args.runs)
    print(report(rt, results, costs, args.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
