"""What a cold start imports: every Lambda function imports ``app.py``, so
``import app`` must load no use case and no heavy library, and the ping
route must load neither the template engine (python-liquid, babel) nor the
county set — whatever it serves, unless a campaign is there to render.

Each check runs in a fresh interpreter (``sys.modules`` of this one is full
of whatever other tests imported), over the in-memory stores: no network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Loaded by no function at ``import app``.
NOT_AT_IMPORT = ("numpy", "shapely", "h3", "liquid", "babel", "boto3", "botocore", "requests",
                 "chalicelib.services", "chalicelib.push", "chalicelib.ports", "chalicelib.geo", "chalicelib.store")
#: Loaded by no ping (with no campaign stored), nor by registering a device or a fence.
NOT_FOR_PINGS = ("liquid", "babel", "chalicelib.push.render", "chalicelib.push.campaigns",
                 "chalicelib.weather.area", "chalicelib.weather.zones")

SCRIPT = r"""
import json, sys

def loaded(prefixes):
    return sorted(p for p in prefixes if any(m == p or m.startswith(p + ".") for m in sys.modules))

probe = json.loads(sys.argv[1])
import app
out = {"import_app": loaded(probe["at_import"])}

from chalice.test import Client
from chalicelib import container
from chalicelib.services.deps import Deps
from chalicelib.settings import get_settings
from chalicelib.store import memory_stores
from chalicelib.clock import system_clock
from tests.fake_push import FakePushGateway

container.set_deps(Deps.over(memory_stores(clock=system_clock, region_shards=4), get_settings(), push=FakePushGateway()))
ADMIN = {"X-Api-Key": "admin-key", "Content-Type": "application/json"}
FENCE = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-122.7, 38.44]},
         "properties": {"radius_m": 100, "name": "Shop", "tags": ["shop"]}}
DEVICE = {"platform": "android", "push_token": "tok", "consent": {"push": True, "location": True}}

def call(client, method, path, payload):
    r = getattr(client.http, method)(path, headers=ADMIN, body=json.dumps(payload))
    assert r.status_code < 300, (path, r.status_code, r.body)
    return json.loads(r.body) if r.body else None

with Client(app.app) as client:
    call(client, "put", "/v1/geofences/shop", FENCE)
    call(client, "put", "/v1/devices/d1", DEVICE)
    out["setup"] = loaded(probe["for_pings"])
    # far away, then into the fence (an enter event: the delivery path runs) and out again
    for lat, lng in ((40.0, -100.0), (38.44, -122.7), (40.0, -100.0)):
        r = call(client, "post", "/v1/pings", {"device_id": "d1", "lat": lat, "lng": lng})
    out["events"] = [e["type"] for res in r["results"] for e in res["events"]]
    out["pings"] = loaded(probe["for_pings"])
    # with a campaign to render, the template engine is loaded (the probe can see it)
    call(client, "put", "/v1/campaigns/c1", {
        "name": "Hi", "trigger": {"type": "geofence_enter", "fence_ids": ["shop"]},
        "message": {"title": "Hi {{ first_name | default: 'there' }}", "body": "Welcome to {{ fence.name }}"}})
    r = call(client, "post", "/v1/pings", {"device_id": "d1", "lat": 38.44, "lng": -122.7})
    out["deliveries"] = r["results"][0]["deliveries"]
    out["with_campaign"] = loaded(probe["for_pings"])
print(json.dumps(out))
"""


def _run() -> dict:
    from chalicelib.auth import hash_token

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEXCAST_", "AWS_"))}
    env.update(PYTHONPATH=str(ROOT), HEXCAST_STAGE="test", HEXCAST_ADMIN_KEY_HASHES=hash_token("admin-key"),
               HEXCAST_COUPON_SECRET="test-coupon-secret", HEXCAST_CAMPAIGN_CACHE_S="0")
    probe = json.dumps({"at_import": NOT_AT_IMPORT, "for_pings": NOT_FOR_PINGS})
    proc = subprocess.run([sys.executable, "-c", SCRIPT, probe], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_app_loads_no_use_case_and_no_heavy_library():
    out = _run()
    assert out["import_app"] == []
    # registering a fence and a device, and pings in and out of the fence, load no templates
    assert out["setup"] == []
    assert out["events"] == ["exit"]
    assert out["pings"] == []
    # a stored campaign is compiled on the next ping, and the probe sees Liquid then
    assert len(out["deliveries"]) == 1
    assert {"liquid", "babel", "chalicelib.push.render"} <= set(out["with_campaign"])


def test_the_cold_start_benchmark_times_every_lambda_function():
    """BENCHMARKS (d) times each function's first call from the handlers'
    own imports: a function added to the config and not found there fails."""
    from benchmarks.cold_import import handler_imports

    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    found = handler_imports()
    assert set(found) == {"api (POST /v1/pings)", *config["lambda_functions"]}
    assert found["api (POST /v1/pings)"] == ["from chalicelib.services import pings"]


def test_no_function_imports_the_template_engine_before_it_has_a_campaign_to_render():
    """Each function's first call imports its handler's use case: none of them
    loads python-liquid or babel by importing it (a campaign compiled later does)."""
    from benchmarks.cold_import import handler_imports

    for name, imports in handler_imports().items():
        code = "; ".join(["import app", *imports, "import sys",
                          "print(sorted(m for m in ('liquid', 'babel') if m in sys.modules))"])
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip() == "[]", name
