"""What the national feed costs in AWS calls, per phase: the intake (one
POST of both real weather.gov bundles), planning (every alert message) and
fan-out (every chunk), in process against moto with ``--devices`` devices
registered near US cities. Counts every DynamoDB / SQS / SNS call by
operation (botocore's ``before-call`` event) and the time spent in each
(moto's time, mostly: in process there is no HTTP). Offline.

    python -m benchmarks.weather_calls [--devices 500] [--alerts 775]

The local stack's figures (benchmark (g)) follow from these: its emulator
answers the same calls one at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from typing import Any

import numpy as np

from benchmarks import data

FAKE_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "HEXCAST_STAGE": "bench", "HEXCAST_COUPON_SECRET": "bench", "HEXCAST_CAMPAIGN_CACHE_S": "0",
            "HEXCAST_LOG_LEVEL": "WARNING"}


class CallMeter:
    """Calls and seconds per (phase, service.operation), from botocore events."""

    def __init__(self) -> None:
        self.phase = "setup"
        self.calls: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._started: dict[int, float] = {}

    def attach(self, client: Any) -> None:
        ev = client.meta.events
        ev.register("before-call.*.*", self._before)
        ev.register("after-call.*.*", self._after)

    def _before(self, model: Any, **_kw: Any) -> None:
        import threading

        name = f"{model.service_model.service_name}.{model.name}"
        self.calls[self.phase][name] += 1
        self._started[threading.get_ident()] = time.perf_counter()

    def _after(self, model: Any, **_kw: Any) -> None:
        import threading

        t = self._started.pop(threading.get_ident(), None)
        if t is not None:
            self.seconds[self.phase][f"{model.service_model.service_name}.{model.name}"] += time.perf_counter() - t

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for phase, ops in self.calls.items():
            out[phase] = {"total": sum(ops.values()),
                          "ops": {op: {"calls": n, "s": round(self.seconds[phase][op], 2)}
                                  for op, n in sorted(ops.items(), key=lambda kv: -kv[1])}}
        return out


def run(n_devices: int, n_alerts: int) -> dict[str, Any]:
    os.environ.update(FAKE_ENV)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    import boto3
    from moto import mock_aws

    from tools import moto_speedups

    moto_speedups.apply()
    meter = CallMeter()
    real_client = boto3.client

    def client(*args: Any, **kwargs: Any) -> Any:
        c = real_client(*args, **kwargs)
        meter.attach(c)
        return c

    with mock_aws():
        boto3.client = client  # type: ignore[assignment]
        try:
            return _run(meter, n_devices, n_alerts)
        finally:
            boto3.client = real_client  # type: ignore[assignment]


def _run(meter: CallMeter, n_devices: int, n_alerts: int) -> dict[str, Any]:
    import dataclasses

    import boto3

    from benchmarks.weather_feed import CAMPAIGN, national_feed
    from chalicelib import container
    from chalicelib.push.platform_apps import ensure_platform_applications
    from chalicelib.services import alert_planning, campaigns, devices, fanout, pings, weather
    from chalicelib.settings import get_settings, reset_settings
    from chalicelib.store.schema import create_tables
    from chalicelib.weather.fanout import InlineQueue

    create_tables(boto3.client("dynamodb"), get_settings())
    for name, arn in ensure_platform_applications(boto3.client("sns"), get_settings().stage).items():
        os.environ[name] = arn
    reset_settings()
    queue = InlineQueue()
    deps = dataclasses.replace(container.build_deps(), queue=queue)
    rng = np.random.default_rng(7)
    lats, lngs = data.near_cities(rng, n_devices)
    now = time.time()
    for i in range(n_devices):
        did = f"wx-{i:05d}"
        devices.register_device(deps, did, {"platform": "android" if i % 2 else "ios", "push_token": f"tok-{did}",
                                            "consent": {"push": True, "location": True}})
        pings.handle_pings(deps, {"device_id": did, "lat": float(lats[i]), "lng": float(lngs[i]), "timestamp": now - 60})
    campaigns.put_campaign(deps, "storm", CAMPAIGN)
    feed = national_feed(time.time())
    feed["features"] = feed["features"][:n_alerts]
    out: dict[str, Any] = {"devices": n_devices, "alerts": len(feed["features"])}
    wall: dict[str, float] = {}

    meter.phase = "intake"
    t = time.perf_counter()
    answers = weather.post_alerts(deps, feed)["alerts"]
    wall["intake"] = time.perf_counter() - t
    out["answers"] = {st: sum(a["status"] == st for a in answers) for st in {a["status"] for a in answers}}

    if os.environ.get("WEATHER_CALLS_INTAKE_ONLY"):
        out["calls"] = meter.report()
        out["wall_s"] = wall
        return out
    meter.phase = "planning"
    t = time.perf_counter()
    plans = [m for m in queue.messages if alert_planning.is_plan_message(m)]
    queue.messages[:] = [m for m in queue.messages if not alert_planning.is_plan_message(m)]
    for body in plans:
        alert_planning.plan_alert(deps, body)
    wall["planning"] = time.perf_counter() - t

    meter.phase = "fanout"
    t = time.perf_counter()
    chunks = list(queue.messages)
    queue.messages.clear()
    decided = 0
    for body in chunks:
        decided += len(fanout.send_chunk(deps, body))
    wall["fanout"] = time.perf_counter() - t
    out["chunks"] = len(chunks)
    out["decisions"] = decided
    out["wall_s"] = {k: round(v, 1) for k, v in wall.items()}
    out["calls"] = meter.report()
    out["plan_cache"] = {"hits": deps.plans.hits, "misses": deps.plans.misses}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=500)
    ap.add_argument("--alerts", type=int, default=775)
    args = ap.parse_args(argv)
    got = run(args.devices, args.alerts)
    got["calls"].pop("setup", None)
    print(json.dumps(got, indent=2))
    for phase, rep in got["calls"].items():
        print(f"{phase}: {rep['total']} calls, {got['wall_s'].get(phase)} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
