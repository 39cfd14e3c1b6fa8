"""How long a hostile body takes to be rejected, through the app's router
(``chalice.test.Client``; rejected before any AWS call, so no emulator),
and what the byte-level shape check costs a valid body of the same size.

    python -m benchmarks.rejection
    (cd <another checkout> && PYTHONPATH=. python <this file>)   # the same bodies, another version

Prints figures; asserts nothing (durations depend on the machine).
"""

from __future__ import annotations

import json
import os
import statistics
import time

ADMIN_KEY = "bench-admin-key"


def _bodies() -> dict[str, tuple[str, bytes]]:
    zeros = b'{"pings": [' + b",".join([b"0"] * 2_400_000) + b"]}"
    empties = b'{"pings": [' + b",".join([b"[]"] * 1_600_000) + b"]}"
    strings = b'{"observations": [' + b",".join([b'"ab"'] * 1_000_000) + b"]}"
    deep = b"[" * 2_000_000 + b"]" * 2_000_000
    nested = b'{"pings": [' + b",".join([b"[0,0,0,0,0,0,0,0,0,0]"] * 90_000) + b"]}"
    return {
        "2.4M-element array": ("/v1/pings", zeros),
        "1.6M empty arrays": ("/v1/pings", empties),
        "1M strings": ("/v1/weather/conditions", strings),
        "nesting 2M deep": ("/v1/pings", deep),
        "90k small arrays (under the entry limit)": ("/v1/pings", nested),
    }


def _valid_import() -> bytes:
    """~5 MB of valid GeoJSON: an import of 500 polygons (not sent: only scanned)."""
    ring = [[-122.0 + 0.0001 * i, 38.0 + 0.00001 * (i % 7)] for i in range(1_200)]
    ring.append(ring[0])
    feature = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": {"name": "f"}}
    return json.dumps({"type": "FeatureCollection", "features": [feature] * 120}).encode()


def main(runs: int = 3) -> None:
    os.environ.setdefault("HEXCAST_ADMIN_KEY", ADMIN_KEY)
    # Clients are built (no call is made: every body here is refused first).
    for k, v in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}.items():
        os.environ.setdefault(k, v)
    from chalice.test import Client

    from app import app

    try:
        from chalicelib.api.body_scan import check_shape
    except ImportError:  # a checkout from before the shape check: rejection times only
        check_shape = None

    headers = {"X-Api-Key": os.environ["HEXCAST_ADMIN_KEY"], "Content-Type": "application/json"}
    print(f"{'body':44} {'bytes':>10} {'status':>6} {'median s':>9}  field")
    with Client(app) as client:
        for label, (path, body) in _bodies().items():
            times, status, field = [], 0, None
            for _ in range(runs):
                t0 = time.perf_counter()
                r = client.http.post(path, headers=headers, body=body)
                times.append(time.perf_counter() - t0)
                status = r.status_code
                field = json.loads(r.body)["error"]["field"] if r.status_code >= 400 else None
            print(f"{label:44} {len(body):>10,} {status:>6} {statistics.median(times):>9.3f}  {field}")
    if check_shape is None:
        return
    valid = _valid_import()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        check_shape(valid)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    json.loads(valid)
    parse = time.perf_counter() - t0
    print(f"shape check of a valid {len(valid) / 1e6:.1f} MB import: {statistics.median(times):.3f} s "
          f"(json.loads of it: {parse:.3f} s)")


if __name__ == "__main__":
    main()
