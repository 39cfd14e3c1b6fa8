"""The demo's weather part: a real NWS Winter Storm Warning (Juneau, AK,
2025-12-15, zone-based: no polygon, its area comes from the SAME county
codes) replayed as if issued now over sample devices in and around its area.

It defines the "storm delay notice" campaign of the design card, registers
the devices and posts their last known locations, posts the alert to
``POST /v1/weather/alerts``, then prints who was reached — the notices as
each phone's SNS endpoint received them, with their coupon codes — and draws
the storm area and the devices to ``out/demo_storm.png``.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from typing import Any, TextIO

from tools.demo import _add_geom, print_table
from tools.fences import HexcastClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "tests", "fixtures", "nws", "nws_alert_samples_resolved.json")
LABEL = "winter_storm_warning_null_geometry"
TIME_FIELDS = ("sent", "effective", "onset", "expires", "ends")

CAMPAIGN = {
    "name": "Storm delay notice",
    "trigger": {"type": "weather_alert", "events": ["Winter Storm Warning", "Blizzard Warning"], "min_severity": "Moderate"},
    "audience": {"max_location_age_hours": 24},
    "message": {
        "title": "Deliveries may be late",
        "body": "Hi {{ first_name | default: 'there' }}, a {{ alert.event | downcase }} may delay your order. "
                "Take {{ coupon.percent_off }}% off your next one: {{ coupon.code }}",
        "deep_link": "shop://orders",
    },
    "variants": [{"name": "gold", "when": {"attribute": "loyalty_tier", "equals": "gold"},
                  "message": {"title": "{{ first_name }}, your order may be late",
                              "body": "A {{ alert.event | downcase }} is on its way. As a gold member, take "
                                      "{{ coupon.percent_off }}% off with {{ coupon.code }} — and stay safe."}}],
    "coupon": {"percent_off": 10, "prefix": "STORM", "valid_hours": 72},
    "limits": {"per_device_per_day": 2},
    "ttl_seconds": 21600,
}

#: (device id, place, lat, lng, attributes, consent)
DEVICES = [
    ("ak-ana", "Juneau, downtown", 58.3019, -134.4197, {"first_name": "Ana", "timezone": "America/Juneau"}, None),
    ("ak-ben", "Juneau, Mendenhall Valley", 58.3876, -134.5793, {"first_name": "Ben", "loyalty_tier": "gold", "timezone": "America/Juneau"}, None),
    ("ak-cho", "Douglas Island", 58.2770, -134.3920, {"first_name": " ", "timezone": "America/Juneau"}, None),
    ("ak-dev", "Hoonah", 58.1100, -135.4436, {"first_name": "Dev", "timezone": "America/Juneau"}, None),
    ("ak-eve", "Juneau (no location consent)", 58.3005, -134.4100, {"first_name": "Eve"}, {"push": True, "location": False}),
    ("ak-fay", "Sitka", 57.0531, -135.3300, {"first_name": "Fay", "timezone": "America/Sitka"}, None),
    ("ak-gus", "Skagway", 59.4583, -135.3139, {"first_name": "Gus", "timezone": "America/Juneau"}, None),
    ("ak-hal", "Anchorage", 61.2181, -149.9003, {"first_name": "Hal", "timezone": "America/Anchorage"}, None),
]


def rebased_alert(now: float) -> dict[str, Any]:
    """The real alert with its times moved so that it was sent a minute ago
    (everything else untouched: id, area, SAME codes, VTEC)."""
    with open(SAMPLES, encoding="utf-8") as fh:
        feature = next(s["feature"] for s in json.load(fh)["samples"] if s["label"] == LABEL)
    props = feature["properties"]
    shift = now - 60 - datetime.fromisoformat(props["sent"]).timestamp()
    for k in TIME_FIELDS:
        if props.get(k):
            t = datetime.fromisoformat(props[k]).timestamp() + shift
            props[k] = datetime.fromtimestamp(t, timezone.utc).isoformat()
    return feature


def run_storm(admin: HexcastClient, app: HexcastClient, stack, out: TextIO, out_dir: str) -> dict[str, Any]:
    admin.request("PUT", "/v1/campaigns/storm-delay", json_body=CAMPAIGN)
    now = time.time()
    for i, (device_id, _place, lat, lng, attrs, consent) in enumerate(DEVICES):
        answer = app.request("PUT", f"/v1/devices/{device_id}", json_body={
            "platform": "ios" if i % 2 else "android", "push_token": f"demo-token-{device_id}",
            "attributes": attrs, "consent": consent or {"push": True, "location": True}})
        # Each phone keeps the secret its registration returned and sends it with its own calls.
        secret = answer.get("device_secret") if isinstance(answer, dict) else None
        mine = {"X-Device-Secret": secret} if secret else {}
        if consent is None or consent.get("location"):
            app.request("POST", "/v1/pings", json_body={"device_id": device_id, "lat": lat, "lng": lng,
                                                        "timestamp": now - 600, "accuracy_m": 20}, headers=mine)
    feature = rebased_alert(now)
    p = feature["properties"]
    print(f"\nweather: replaying a real NWS alert as if issued now — {p['event']}, {p['areaDesc']}",
          f"\n  id {p['id'][:60]}…, SAME {', '.join(p['geocode']['SAME'])}, no polygon", file=out, sep="")
    t = time.perf_counter()
    taken = admin.request("POST", "/v1/weather/alerts", json_body=feature)["alerts"][0]
    took = time.perf_counter() - t
    print(f"  → {taken['status']} in {took * 1000:.0f} ms (the planner, an SQS consumer, takes it from there)", file=out)
    again = admin.request("POST", "/v1/weather/alerts", json_body=feature)["alerts"][0]
    print(f"  posted again → {again['status']}", file=out)
    if stack.pump is not None:
        stack.pump.wait_until_drained()
    result = admin.request("GET", f"/v1/weather/alerts/{taken['id']}")
    print(f"  planned → {result['status']} (area from {result.get('area_source', '-')}), "
          f"{result.get('devices_targeted', 0)} devices inside, {result.get('queued_chunks', 0)} fan-out chunks",
          file=out)

    decisions = admin.request("GET", "/v1/deliveries", params={"campaign_id": "storm-delay", "limit": "1000"})["deliveries"]
    received = {m["message_id"]: json.loads(m["message"]) for m in stack.sns_messages()}
    by_device = {d["device_id"]: d for d in decisions}
    print("\nstorm delay notices, as each phone's SNS endpoint received them\n", file=out)
    rows = []
    reached = []
    for device_id, place, *_ in DEVICES:
        d = by_device.get(device_id)
        if d is None or d["status"] != "sent" or d.get("sns_message_id") not in received:
            continue
        payload = received[d["sns_message_id"]]
        if "APNS" in payload:
            alert = json.loads(payload["APNS"])["aps"]["alert"]
        else:
            alert = json.loads(payload["GCM"])["fcmV1Message"]["message"]["notification"]
        reached.append(device_id)
        rows.append([device_id, place, alert["title"], alert["body"]])
    print_table(["device", "where", "title", "body"], rows, out)
    others = [f"{device_id}, {place}: " + (f"{d['status']}: {d.get('reason', '')}".rstrip(": ") if d else "not targeted")
              for device_id, place, *_ in DEVICES if device_id not in reached
              for d in [by_device.get(device_id)]]
    if others:
        print("\nnot sent: " + "; ".join(others), file=out)

    path = os.path.join(out_dir, "demo_storm.png")
    write_storm_map(path, feature, reached)
    print(f"\nstorm map: {os.path.relpath(path)}", file=out)
    return {"status": result["status"], "targeted": result.get("devices_targeted", 0), "sent": len(reached), "map": path}


def write_storm_map(path: str, feature: dict, reached: list[str]) -> None:
    """The alert's area (the union of its SAME counties, as the server
    resolves it), its H3 cover, and the devices: reached or not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import shapely
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from chalicelib.geo.cells import cell_polygons
    from chalicelib.geo.cover import cover_geometry
    from chalicelib.weather.alerts import Alert, parse_alerts
    from chalicelib.weather.area import AreaResolver, CountyIndex

    alert = parse_alerts(feature)[0]
    if not isinstance(alert, Alert):
        raise alert  # the recorded alert parses; a broken fixture should say why
    area = AreaResolver(CountyIndex.load(), None).resolve(alert)
    if area is None:
        raise RuntimeError(f"the demo alert {alert.id} has no resolvable area")

    fig, ax = plt.subplots(figsize=(10, 8.5))
    from chalicelib.weather.targets import PLAN_FINEST, PLAN_MAX_BOUNDARY

    cover = cover_geometry(area.geometry, buffer_m=0.0, max_boundary=PLAN_MAX_BOUNDARY, finest=PLAN_FINEST)  # as planned
    polys = cell_polygons(cover.cells)
    for inside, color in ((False, "#dde8f3"), (True, "#8fb3d9")):
        sel = polys[cover.inside == inside]
        if len(sel):
            _add_geom(ax, shapely.MultiPolygon([p for g in sel for p in shapely.get_parts(g)]),
                 facecolor=color, edgecolor="#7f9cbf", linewidth=0.3, zorder=1)
    _add_geom(ax, area.geometry, facecolor="#9467bd", edgecolor="#4b2a7b", alpha=0.25, linewidth=1.4, zorder=2)
    _add_geom(ax, area.geometry, facecolor="none", edgecolor="#4b2a7b", linewidth=1.4, zorder=2)
    offsets = {"ak-ana": (40, 30), "ak-cho": (40, -30), "ak-eve": (45, 0), "ak-ben": (-110, 20)}
    for device_id, place, lat, lng, *_ in DEVICES:
        hit = device_id in reached
        ax.plot([lng], [lat], marker="o" if hit else "x", color="#2ca02c" if hit else "#d62728", markersize=9,
                markeredgewidth=2, linestyle="none", zorder=4)
        dx, dy = offsets.get(device_id, (6, 4))
        ax.annotate(f"{device_id}: {place}", (lng, lat), xytext=(dx, dy), textcoords="offset points", fontsize=8, zorder=5,
                    arrowprops={"arrowstyle": "-", "color": "#555555", "linewidth": 0.5} if device_id in offsets else None,
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    minx, miny, maxx, maxy = area.geometry.bounds
    ax.set_xlim(min(minx, -136.5) - 0.3, max(maxx, -133.5) + 0.3)
    ax.set_ylim(min(miny, 56.8) - 0.2, max(maxy, 59.7) + 0.2)
    ax.set_aspect(1 / np.cos(np.radians(58.3)))
    p = feature["properties"]
    ax.set_title(f"{p['event']}: {p['areaDesc']}\narea from SAME {', '.join(p['geocode']['SAME'])} (no polygon in the alert)")
    ax.legend(handles=[
        Patch(facecolor="#9467bd", alpha=0.3, edgecolor="#4b2a7b", label="storm area (county union)"),
        Patch(facecolor="#8fb3d9", edgecolor="#7f9cbf", label="H3 cells queried: inside (no test)"),
        Patch(facecolor="#dde8f3", edgecolor="#7f9cbf", label="H3 cells queried: boundary (exact test)"),
        Line2D([], [], marker="o", color="#2ca02c", linestyle="none", label="device reached"),
        Line2D([], [], marker="x", color="#d62728", linestyle="none", label="device not reached"),
    ], loc="lower left", fontsize=8.5)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.grid(True, linewidth=0.3, alpha=0.5)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
