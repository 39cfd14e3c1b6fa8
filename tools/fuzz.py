"""Schemathesis against the local stack (`make fuzz`): requests generated
from the OpenAPI document (``GET /v1/openapi.json``), valid and invalid, on
every operation, each answer checked against the document.

    python -m tools.fuzz                           # 25 cases per operation, the default seed
    python -m tools.fuzz --max-examples 200 --seed 7
    python -m tools.fuzz --checks not_a_server_error --include-operation-id postPings

Bounded: at most ``--max-examples`` cases per operation (23 operations, two
generation modes), then the stateful phase over the document's links, and a
wall-clock ``--timeout`` for the whole run. (``make test`` runs a shorter pass
in-process with the same settings: tests/e2e/test_contract_fuzz.py.) It starts
the local stack (moto + the app over HTTP, nothing beyond 127.0.0.1), seeds the
fence, device and campaign the document's examples name, and runs
``schemathesis run`` with the admin key and ``tools/fuzz.toml``, whose checks
are: no 5xx, statuses, content types and bodies as documented, and input the
document forbids answered 4xx. Reports (JUnit XML, a pytest file reproducing each
failure) go to ``out/fuzz/``. Exit status: schemathesis's (0 = nothing found).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import requests

from tools.localstack import LocalStack
from tools.openapi_doc import EXAMPLES

ROOT = Path(__file__).resolve().parent.parent
CONFIG = Path(__file__).resolve().parent / "fuzz.toml"
#: The default generation seed (``--seed``).
SEED = 20261203


def seed(base: str, admin_key: str) -> None:
    """The resources the document's examples name (store-42, dev-1,
    store-welcome: its path parameter examples), so the examples phase
    reaches past the 404s."""
    h = {"X-Api-Key": admin_key}
    for op_id, path in (("putGeofence", "/v1/geofences/store-42"), ("putDevice", "/v1/devices/dev-1"),
                        ("putCampaign", "/v1/campaigns/store-welcome")):
        requests.put(base + path, json=EXAMPLES[op_id], headers=h, timeout=30).raise_for_status()
    ping = {"device_id": "dev-1", "lat": 40.7484, "lng": -73.9857}
    requests.post(base + "/v1/pings", json=ping, headers=h, timeout=30).raise_for_status()


def settings(base: str, admin_key: str, *, max_examples: int, seed: int = SEED) -> dict[str, Any]:
    """``tools/fuzz.toml`` (the checks and the written exclusions) with a
    run's target, key, seed and bound: what a Python-API run (the bounded
    run in the test suite) passes to ``schemathesis.Config.from_dict``.
    Deterministic: the seed fixes every generated case, and no example
    database carries cases over from an earlier run."""
    data: dict[str, Any] = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    data.update({
        "base-url": base,
        "headers": {"X-Api-Key": admin_key},
        "seed": seed,
        "request-timeout": 60,
        "generation": {"max-examples": max_examples, "deterministic": True, "database": "none"},
    })
    return data


def command(base: str, admin_key: str, args: argparse.Namespace) -> list[str]:
    cmd = [
        sys.executable, "-c", "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
        "--config-file", str(CONFIG), "--no-color",
        "run", f"{base}/v1/openapi.json",
        "--header", f"X-Api-Key: {admin_key}",
        "--max-examples", str(args.max_examples),
        "--seed", str(args.seed),
        "--workers", "1",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--generation-database", "none",
        "--request-timeout", "60",
        "--report", "junit,pytest",
        "--report-dir", str(args.report_dir),
    ]
    if args.checks:
        cmd += ["--checks", args.checks]
    for op_id in args.include_operation_id or ():
        cmd += ["--include-operation-id", op_id]
    return cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=25, help="cases per operation and mode (default 25)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"generation seed (default {SEED})")
    parser.add_argument("--checks", help="schemathesis checks, comma-separated (default: those tools/fuzz.toml enables)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="wall-clock limit for the run, seconds (default 1800)")
    parser.add_argument("--include-operation-id", action="append", help="only this operation (repeatable)")
    parser.add_argument("--report-dir", type=Path, default=ROOT / "out" / "fuzz", help="where the reports go")
    args = parser.parse_args(argv)
    args.report_dir.mkdir(parents=True, exist_ok=True)

    with LocalStack(port=0, schedule_interval=0) as stack:
        seed(stack.base_url, stack.admin_key)
        print(f"fuzz: {stack.base_url}/v1/openapi.json, {args.max_examples} cases per operation, seed {args.seed}", flush=True)
        try:
            proc = subprocess.run(command(stack.base_url, stack.admin_key, args), cwd=ROOT, timeout=args.timeout, check=False)
        except subprocess.TimeoutExpired:
            print(f"fuzz: stopped after {args.timeout:g} s (--timeout)", file=sys.stderr)
            return 2
    print(f"fuzz: exit status {proc.returncode}; reports in {args.report_dir}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
