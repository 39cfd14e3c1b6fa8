"""Run the benchmarks and print each figure beside its baseline,
both measured in this run, as a ratio (``baseline / ours``: above 1 is
faster or cheaper).

    python -m benchmarks.run            # full run (make bench)
    python -m benchmarks.run --quick    # a smoke run in a few minutes
    python -m benchmarks.run --only a,d --json out/bench.json

Sections: (a) in-memory point → fences matching, (b) DynamoDB cost of
pings, (c) importing the 3,221 counties on the local stack, (d) cold
``import app``, (e) push decisions per second through the delivery pipeline
with fakes, (f) storm target planning through the device region index (in
memory over 1,000,000 devices, and Queries/items on moto). See BENCHMARKS.md
for the method and the last results.

Every run prints the machine (CPU model, cores, Python and package
versions) and its load average before and after each section, the figures
(timings as median with min–max), and at the end one verdict line per
target: met, MISSED, or not run at full size (``--quick`` inputs or a
section left out). ``--strict`` exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time

from benchmarks.report import MISSED, Figure, dump, table, verdict, verdict_lines

SECTIONS = ("d", "e", "f", "a", "b", "c")  # the interpreter-start and single-core timings first, on a quiet machine
#: The packages whose versions a figure depends on (printed with each run).
PACKAGES = ("numpy", "shapely", "h3", "python-liquid", "boto3", "moto", "chalice")
#: Each section's targets, for the verdict when the section is not run or
#: its figures carry no target (a section's own figures, when they declare
#: a target, are judged instead).
DECLARED_TARGETS = {
    "b": "round trips per batch of 100 ≤ 2; ≤ $0.25 per million pings",
    "c": "import of the 3,221 counties on the local stack ≤ 60 s",
    "d": "cold `import app` ≤ 400 ms",
    "e": "≥ 20,000 push decisions/s/core (≤ 50 µs a decision)",
    "f": "≤ 10 µs of CPU per targeted device (≥ 100,000/s) over 1,000,000 devices",
}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in PACKAGES:
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} (not installed)")
    return ", ".join(out)


def load() -> str:
    """The 1/5/15-minute load averages (``os.getloadavg``), over the core count."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller inputs: a smoke run, not the figures of record")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections to run (a,b,c,d,e,f)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    ap.add_argument("--no-cache", action="store_true", help="recompute fence covers instead of using the disk cache")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args(argv)
    wanted = [s for s in SECTIONS if s in {x.strip() for x in args.only.split(",")}]

    started = dt.datetime.now(dt.timezone.utc)
    meta = {"started": f"{started:%Y-%m-%d %H:%M} UTC", "machine": machine(), "packages": versions(),
            "quick": args.quick, "load_before": load()}
    print(f"hexcast benchmarks — {meta['started']} — {meta['machine']}")
    print(f"packages: {meta['packages']}")
    print(f"{meta['load_before']} before the run")
    print("quick run: smaller inputs, not the figures of record\n" if args.quick else "")
    figures: list[Figure] = []
    moto_import = (None, None)
    pipeline_outcome = None
    t_all = time.perf_counter()
    for section in wanted:
        t0 = time.perf_counter()
        print(f"[{section}] running ... ({load()})", flush=True)
        if section == "d":
            from benchmarks import cold_import

            got = cold_import.run()
        elif section == "a":
            from benchmarks import matching

            got = matching.run(args.quick, use_cache=not args.no_cache)
        elif section == "b":
            from benchmarks import ping_cost

            outcome = ping_cost.run(args.quick)
            got = outcome.figures
            moto_import = (outcome.import_moto_s, outcome.import_n)
        elif section == "e":
            from benchmarks import pipeline

            pipeline_outcome = pipeline.run(args.quick)
            got = pipeline_outcome.figures
        elif section == "f":
            from benchmarks import storm

            got = storm.run(args.quick)
        else:
            from benchmarks import importing

            got = importing.run(args.quick, *moto_import)
        figures += got
        print(table(got, args.quick))
        print(f"[{section}] done in {time.perf_counter() - t0:.0f} s ({load()})\n", flush=True)

    meta["load_after"] = load()
    print("=" * 20, f"summary ({time.perf_counter() - t_all:.0f} s)", "=" * 20)
    print(f"{meta['machine']}; {meta['packages']}")
    print(f"before: {meta['load_before']}; after: {meta['load_after']}")
    print(table(figures, args.quick))
    print("\nverdict per target:")
    print("\n".join("  " + line for line in verdict_lines(figures, args.quick, DECLARED_TARGETS, wanted)))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        dump(figures, args.json, meta)
    missed = [f for f in figures if verdict(f, args.quick) == MISSED]
    if missed:
        print("\ntargets missed: " + "; ".join(f"[{f.section}] {f.name}" for f in missed))
    return 1 if (missed and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
