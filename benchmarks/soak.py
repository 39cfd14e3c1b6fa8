"""Fault injection at full counts (``make soak``): a storm fan-out,
a ping replay and concurrent pings of one device, each under injected
DynamoDB throttling, conditional-check races, SNS throttling and disabled
endpoints, crashed and retried invocations and SQS redelivery — and the
counts: faults injected by kind, decisions, publishes, duplicates, losses.

    python -m benchmarks.soak                 # full counts (make soak)
    python -m benchmarks.soak --quick         # a smoke run
    python -m benchmarks.soak --seed 7 --json out/soak.json

The harness is ``tests/faults.py``; ``tests/unit/test_faults.py`` runs small
versions in ``make test``. Exits 1 when a duplicate or a loss is seen.
RELIABILITY.md records the last run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

from benchmarks.run import machine
from tests import faults
from tests.faults import Rates

FULL = {"storm_devices": 20_000, "ping_devices": 5_000, "pings_per_device": 20, "pair_devices": 5_000}
QUICK = {"storm_devices": 2_000, "ping_devices": 500, "pings_per_device": 20, "pair_devices": 500}


def plain(report) -> dict:
    """A report as JSON-ready data (``dataclasses.asdict`` would turn a
    Counter's items into tuple keys)."""
    return {f.name: dict(v) if isinstance(v := getattr(report, f.name), dict) else v for f in dataclasses.fields(report)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a tenth of the counts")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)  # injected failures are logged by the thousand
    n = QUICK if args.quick else FULL
    rates = Rates.default()
    print(f"hexcast soak — {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC — {machine()}")
    print(f"seed {args.seed}; rates per store call / publish / invocation attempt: "
          + ", ".join(f"{k} {v:g}" for k, v in dataclasses.asdict(rates).items()) + "\n", flush=True)
    t0 = time.perf_counter()
    reports = [
        faults.storm(args.seed, n["storm_devices"], rates, workers=8, redelivery=0.3, chunk=100),
        faults.ping_replay(args.seed, n["ping_devices"], n["pings_per_device"], rates, workers=8,
                           twin=0.03, duplicate=0.03),
    ]
    for rep in reports:
        print("\n".join(rep.lines()) + "\n", flush=True)
    pairs = faults.concurrent_pairs(args.seed, n["pair_devices"], rates, workers=8)
    print("\n".join(pairs.lines()) + "\n")
    ok = all(r.ok for r in reports) and pairs.ok
    total = sum(v for r in (*reports, pairs) for k, v in r.faults.items() if not k.startswith("crash_"))  # crash_*: where
    print(f"{'OK' if ok else 'FAILED'}: duplicates {sum(r.duplicates for r in reports) + pairs.publishes_duplicated}, "
          f"lost {sum(r.lost for r in reports)}, enters/exits lost {pairs.matched_neither}; "
          f"{total:,} faults injected in {time.perf_counter() - t0:.0f} s")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"seed": args.seed, "rates": dataclasses.asdict(rates), "ok": ok,
                                    "reports": [plain(r) for r in reports], "pairs": plain(pairs)}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
