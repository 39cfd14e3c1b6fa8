"""(c) Importing all 3,221 counties on the local stack (moto's server in a
child process, the app over HTTP), as the marketer CLI does: POST
/v1/geofences/import in chunks with the admin key."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks import data
from benchmarks.report import Figure

CHUNK = 200


def post_chunks(base_url: str, admin_key: str, features: list[dict], *, in_flight: int) -> float:
    import requests

    chunks = [features[i : i + CHUNK] for i in range(0, len(features), CHUNK)]
    session = requests.Session()
    session.trust_env = False  # loopback: never through a proxy

    def post(chunk):
        resp = session.post(
            f"{base_url}/v1/geofences/import",
            json={"type": "FeatureCollection", "features": chunk},
            headers={"X-Api-Key": admin_key},
            timeout=600,
        )
        resp.raise_for_status()
        body = resp.json()
        if body["rejected"]:
            raise RuntimeError(f"rejected: {body['rejected'][:3]}")
        return body["imported"]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        imported = sum(pool.map(post, chunks))
    elapsed = time.perf_counter() - t0
    assert imported == len(features), (imported, len(features))
    return elapsed


def check_lookup(base_url: str, admin_key: str) -> None:
    import requests

    resp = requests.get(
        f"{base_url}/v1/geofences/lookup",
        params={"lat": 38.44, "lng": -122.71},
        headers={"X-Api-Key": admin_key},
        timeout=30,
    )
    resp.raise_for_status()
    ids = [f["id"] for f in resp.json()["fences"]]
    assert "06097" in ids, ids  # Sonoma County


def raw_cover_seconds(features: list[dict]) -> float:
    """Parse + cover on one core, no storage: the floor of any import."""
    from chalicelib.geo.cover import cover_geometry
    from chalicelib.geo.geojson import parse_feature

    t0 = time.perf_counter()
    for f in features:
        cover_geometry(parse_feature(f, str(f["id"])).geometry)
    return time.perf_counter() - t0


def run(quick: bool, moto_inprocess_s: float | None, moto_n: int | None) -> list[Figure]:
    from tools.localstack import LocalStack, free_port

    features = list(data.county_features())
    if quick:
        features = [f for f in features if str(f["id"])[:2] in ("06", "17")]
    n = len(features)
    raw = raw_cover_seconds(features)
    with LocalStack(port=free_port(), schedule_interval=None) as stack:
        stack.wait_healthy()
        t_seq = post_chunks(stack.base_url, stack.admin_key, features, in_flight=1)
        check_lookup(stack.base_url, stack.admin_key)
    with LocalStack(port=free_port(), schedule_interval=None) as stack:
        stack.wait_healthy()
        t_par = post_chunks(stack.base_url, stack.admin_key, features, in_flight=2)
    note = f"{n:,} counties, {CHUNK} per request; parse + cover alone on one core: {raw:.1f} s"
    figs = [
        Figure("c", f"import {n:,} counties, local stack, 1 request in flight", t_seq, "parse + cover only", raw, unit="s", target_max=60.0, note=note),
        Figure("c", f"import {n:,} counties, local stack, 2 in flight", t_par, "parse + cover only", raw, unit="s", target_max=60.0),
    ]
    if moto_inprocess_s is not None and moto_n == n:
        figs.append(Figure("c", f"import {n:,} counties, local stack (1 in flight)", t_seq, "in-process moto", moto_inprocess_s, unit="s"))
    return figs
