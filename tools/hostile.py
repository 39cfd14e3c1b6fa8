"""The full hostile-input run (`make hostile`): ≥ 10,000 generated requests
across every route on top of the full catalogue (every documented limit,
every id format edge on every route, every wrong type at every field) —
twice: in process, then through the local stack.

    python -m tools.hostile                      # 12,000 generated requests, the default seed
    python -m tools.hostile --requests 20000 --seed 7
    python -m tools.hostile --only stack         # just the local stack's run

1. In process: ``tests/integration/test_hostile.py`` (the same generator and
   judging as ``make test``'s small version) with the full counts, over
   Chalice's test client and moto, comparing every table before and after
   each rejection. Figures go to ``out/hostile.json``.
2. Through the local stack (``tests/hostile_stack.py``): the same catalogue
   and generated requests over HTTP to a fresh stack (moto's server in its
   own process, the app behind its HTTP server), judged on what a client
   sees — statuses, error bodies, and every answer's wall time, which must
   stay within 5 s. Figures go to ``out/hostile_stack.json``.

Exit status 0 only when both runs had no 5xx, no 4xx without the
documented error body, no documented limit answered otherwise, no partial
write (in process) and no answer over 5 s (local stack).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.hostile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=12_000, help="generated requests (default 12,000; the catalogue adds ~3,000)")
    parser.add_argument("--seed", type=int, default=20260501, help="hypothesis seed (default 20260501)")
    parser.add_argument("--report", default=str(ROOT / "out" / "hostile.json"), help="where to write the in-process figures (JSON)")
    parser.add_argument("--stack-report", default=str(ROOT / "out" / "hostile_stack.json"),
                        help="where to write the local stack's figures (JSON)")
    parser.add_argument("--only", choices=("process", "stack"), help="run one of the two")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    code = 0
    if args.only != "stack":
        code |= _in_process(args)
    if args.only != "process":
        code |= _on_local_stack(args)
    return code


def _in_process(args: argparse.Namespace) -> int:
    import pytest

    os.environ.update({
        "HEXCAST_HOSTILE_REQUESTS": str(args.requests),
        "HEXCAST_HOSTILE_FULL": "1",
        "HEXCAST_HOSTILE_SEED": str(args.seed),
        "HEXCAST_HOSTILE_REPORT": args.report,
    })
    code = pytest.main(["-q", "-s", "-p", "no:cacheprovider", "-p", "no:logging", "tests/integration/test_hostile.py"])
    print(f"figures written to {args.report}")
    return int(code)


def _on_local_stack(args: argparse.Namespace) -> int:
    import logging

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests import hostile_stack

    os.environ.setdefault("HEXCAST_LOG_LEVEL", "WARNING")
    logging.basicConfig(level=logging.WARNING)
    load_before = os.getloadavg()
    print(f"through the local stack: the catalogue and {args.requests:,} generated requests over HTTP "
          f"(load average {load_before[0]:.1f} on {os.cpu_count()} cores) …", flush=True)
    run = hostile_stack.on_local_stack(generated=args.requests, seed_value=args.seed, full=True, verbose=True)
    tally = run.tally
    load_after = os.getloadavg()
    print("\n" + tally.report())
    figures = {"seed": args.seed, "generated": args.requests, "full": True, "through": "local stack over HTTP",
               "load_average_1m": [round(load_before[0], 1), round(load_after[0], 1)], "cores": os.cpu_count(),
               **tally.to_json()}
    Path(args.stack_report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.stack_report).write_text(json.dumps(figures, indent=1, default=str))
    print(f"figures written to {args.stack_report}")
    failed = tally.server_errors or tally.bad_error_bodies or tally.unexpected or tally.too_slow
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
