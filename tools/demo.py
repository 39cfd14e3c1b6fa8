"""The demo: ``python -m tools.demo`` (``make demo``).

Starts the local stack, uploads the sample fences from ``geofences/`` with
the marketer CLI's code, registers a runner's phone, replays a real GPS trace
(the 2016 Santa Rosa Marathon, 9,890 points at about 1 Hz) as location pings,
then prints the enter / exit / dwell timeline and writes ``out/demo_map.png``:
the fences, their H3 index cells, the trace and the events.

Exits 0 when every step worked; the stack is stopped in every case.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence, TextIO

from tools.fences import ApiError, HexcastClient, Unreachable, print_report, upload
from tools.gpx import TrackPoint, read_gpx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FENCE_FILES = (
    os.path.join(ROOT, "geofences", "sonoma_county.geojson"),
    os.path.join(ROOT, "geofences", "santa_rosa_places.geojson"),
)
TRACE = os.path.join(ROOT, "tests", "fixtures", "santa_rosa_marathon_2016.gpx")
DEVICE_ID = "runner-1"
DEVICE = {
    "platform": "ios",
    "push_token": "demo-apns-token-runner-1",
    "attributes": {"first_name": "Ana", "language": "en", "timezone": "America/Los_Angeles"},
    "consent": {"push": True, "location": True},
}
ACCURACY_M = 8.0
PINGS_PER_REQUEST = 100

#: Campaigns on the sample fences: what a race sponsor would send.
CAMPAIGNS = {
    "race-water": {
        "name": "Water station ahead",
        "trigger": {"type": "geofence_enter", "fence_tags": ["water-station", "aid-station"]},
        "message": {
            "title": "{{ fence.name }}",
            "body": "Keep going, {{ first_name | default: 'runner' }}! Grab a drink at {{ fence.name | downcase }}.",
            "deep_link": "race://map",
        },
        "limits": {"min_minutes_between": 1},
        "ttl_seconds": 600,
    },
    "race-cheer": {
        "name": "Cheer zone",
        "trigger": {"type": "geofence_enter", "fence_tags": ["cheer-zone", "photo-point"]},
        "message": {"title": "Smile, {{ first_name | default: 'runner' }}!", "body": "You are passing the {{ fence.name }}."},
        "variants": [{"name": "spanish", "when": {"attribute": "language", "equals": "es"},
                      "message": {"title": "¡Sonríe, {{ first_name }}!", "body": "Pasas por {{ fence.name }}."}}],
    },
    "race-halfway": {
        "name": "Halfway reward",
        "trigger": {"type": "geofence_exit", "fence_ids": ["sr-water-2"]},
        "message": {
            "title": "Halfway there, {{ first_name | default: 'runner' }}!",
            "body": "{{ fence.metadata.event }}: a recovery smoothie waits at the finish, {{ coupon.percent_off }}% off with {{ coupon.code }}",
            "deep_link": "race://rewards",
        },
        "coupon": {"percent_off": 20, "prefix": "FINISH", "valid_hours": 48},
    },
}


# ---------------------------------------------------------------- replay
@dataclass(frozen=True)
class TimelineEvent:
    at: str  # RFC 3339 as the API answered
    type: str  # enter | exit | dwell
    fence_id: str
    lat: float  # where the ping that caused it was
    lng: float


@dataclass
class Replay:
    sent: int = 0
    accepted: int = 0
    not_accepted: dict[str, int] = field(default_factory=dict)  # reason → count
    events: list[TimelineEvent] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0
    slowest_request_s: float = 0.0


def register_device(client: HexcastClient, device_id: str = DEVICE_ID, body: dict | None = None) -> dict[str, str]:
    """``PUT /v1/devices/{id}``; the headers later calls for the device need
    (``X-Device-Secret`` when the server hands one out)."""
    answer = client.request("PUT", f"/v1/devices/{device_id}", json_body=body or DEVICE)
    secret = answer.get("device_secret") if isinstance(answer, dict) else None
    return {"X-Device-Secret": secret} if secret else {}


def replay(
    client: HexcastClient,
    points: Sequence[TrackPoint],
    *,
    device_id: str = DEVICE_ID,
    accuracy_m: float | None = ACCURACY_M,
    batch: int = PINGS_PER_REQUEST,
    headers: dict[str, str] | None = None,
) -> Replay:
    """Post every point as a ping, ``batch`` per request, in trace order;
    collect the events each answer reports. Raises :class:`ApiError` /
    :class:`Unreachable` when a request fails."""
    out = Replay()
    t0 = time.perf_counter()
    for start in range(0, len(points), batch):
        chunk = points[start:start + batch]
        pings = []
        for p in chunk:
            ping: dict[str, Any] = {"device_id": device_id, "lat": p.lat, "lng": p.lng, "timestamp": p.timestamp}
            if accuracy_m is not None:
                ping["accuracy_m"] = accuracy_m
            pings.append(ping)
        t = time.perf_counter()
        answer = client.request("POST", "/v1/pings", json_body={"pings": pings}, headers=headers)
        out.slowest_request_s = max(out.slowest_request_s, time.perf_counter() - t)
        out.requests += 1
        out.sent += len(chunk)
        results = answer["results"]
        if len(results) != len(chunk):
            raise ApiError(200, "bad_answer", f"{len(results)} results for {len(chunk)} pings")
        for p, res in zip(chunk, results):
            if res.get("accepted"):
                out.accepted += 1
            else:
                reason = res.get("reason") or "unknown"
                out.not_accepted[reason] = out.not_accepted.get(reason, 0) + 1
            for ev in res.get("events", []):
                out.events.append(TimelineEvent(ev["at"], ev["type"], ev["fence_id"], p.lat, p.lng))
    out.seconds = time.perf_counter() - t0
    return out


def fence_names(client: HexcastClient, fence_ids: set[str]) -> dict[str, str]:
    """``GET /v1/geofences/{id}`` for each fence: its name."""
    names = {}
    for fid in sorted(fence_ids):
        feature = client.request("GET", f"/v1/geofences/{fid}")
        names[fid] = (feature.get("properties") or {}).get("name") or fid
    return names


# ---------------------------------------------------------------- output
def _clock(at: str, start: datetime) -> tuple[str, str]:
    t = datetime.fromisoformat(at.replace("Z", "+00:00"))
    secs = int((t - start).total_seconds())
    return t.strftime("%H:%M:%S"), f"{secs // 3600}:{secs % 3600 // 60:02d}:{secs % 60:02d}"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """A plain text table: columns as wide as their widest cell."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip(), file=out)


def print_timeline(events: Sequence[TimelineEvent], names: dict[str, str], start: datetime, out: TextIO) -> None:
    rows = []
    for e in events:
        utc, race = _clock(e.at, start)
        rows.append([utc, race, e.type, e.fence_id, names.get(e.fence_id, "")])
    headers = ["time (UTC)", "race clock", "event", "fence id", "fence name"]
    print_table(headers, rows, out)


def print_pushes(admin: HexcastClient, stack, out: TextIO, device_id: str = DEVICE_ID) -> int:
    """The pushes as the phone got them — read back from the emulator's SNS
    endpoint, so only what was published — then how many other decisions
    (``GET /v1/deliveries``: suppressed, held, failed) were made, by reason.
    → the number of pushes received."""
    import json

    decisions = admin.request("GET", "/v1/deliveries", params={"device_id": device_id, "limit": "1000"})["deliveries"]
    received = {m["message_id"]: json.loads(m["message"]) for m in stack.sns_messages()}
    print(f"\npushes to {device_id}, as its SNS endpoint received them (oldest first; caps count real time,\n"
          "and the replay runs the 3-hour race in seconds)\n", file=out)
    rows = []
    for d in reversed(decisions):
        if d["status"] != "sent" or d.get("sns_message_id") not in received:
            continue
        payload = json.loads(received[d["sns_message_id"]]["APNS"])
        alert = payload["aps"]["alert"]
        rows.append([d["campaign_id"], d["trigger"].get("fence_id", ""), alert["title"], alert["body"],
                     payload.get("coupon_code", "")])
    print_table(["campaign", "fence", "title", "body", "coupon"], rows, out)
    print_not_sent([d for d in decisions if d["status"] != "sent"], out)
    return len(rows)


def print_not_sent(decisions: Sequence[dict[str, Any]], out: TextIO) -> None:
    """One line for the decisions that sent nothing (nothing reached the
    endpoint for them), counted by status and reason."""
    if not decisions:
        return
    counts = Counter(f"{d['status']}: {d.get('reason', '')}".rstrip(": ") for d in decisions)
    print(f"\nnot sent ({len(decisions)} decisions): " + ", ".join(f"{k} × {n}" for k, n in sorted(counts.items())),
          file=out)


# ---------------------------------------------------------------- map
def _fences_from_files(paths: Sequence[str]) -> list[Any]:
    """The fences as the server parses them (same library): FenceDefinitions."""
    import json

    from chalicelib.geo.geojson import parse_feature

    out = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for i, f in enumerate(json.load(fh)["features"]):
                fid = f.get("id") or (f.get("properties") or {}).get("id")
                out.append(parse_feature(f, str(fid), where=f"features[{i}]"))
    return out


def _add_geom(ax, geom, **kw) -> None:
    """Draw a shapely (Multi)Polygon, holes included, as one patch."""
    import numpy as np
    import shapely
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path

    verts, codes = [], []
    for poly in shapely.get_parts(geom):
        for ring in [poly.exterior, *poly.interiors]:
            xy = np.asarray(ring.coords)
            verts.append(xy)
            codes.append([Path.MOVETO] + [Path.LINETO] * (len(xy) - 2) + [Path.CLOSEPOLY])
    if verts:
        ax.add_patch(PathPatch(Path(np.concatenate(verts), np.concatenate(codes)), **kw))


def _draw_cells(ax, fences, *, inside_color: str, boundary_color: str) -> None:
    """The fences' H3 index cells, each drawn once: *inside* (a ping there
    needs no exact test) in one shade, *boundary* in a lighter one."""
    import numpy as np
    import shapely

    from chalicelib.geo.cells import cell_polygons
    from chalicelib.geo.cover import cover_geometry

    inside_of: dict[int, bool] = {}
    for d in fences:
        cover = cover_geometry(d.geometry)
        for cell, inside in zip(cover.cells.tolist(), cover.inside.tolist()):
            inside_of[cell] = inside_of.get(cell, False) or bool(inside)
    cells = np.array(sorted(inside_of), dtype=np.uint64)
    if not len(cells):
        return
    polys = cell_polygons(cells)
    flags = np.array([inside_of[int(c)] for c in cells])
    for inside, color in ((False, boundary_color), (True, inside_color)):
        sel = polys[flags == inside]
        if len(sel):
            _add_geom(ax, shapely.MultiPolygon([p for g in sel for p in shapely.get_parts(g)]),
                      facecolor=color, edgecolor="#7f9cbf", linewidth=0.4, zorder=1)


def write_map(path: str, fences, points: Sequence[TrackPoint], events: Sequence[TimelineEvent],
              names: dict[str, str]) -> None:
    """Two panels: the county set with its H3 cells, and the race route with
    the place fences, their H3 cells, the trace and the events."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    lats = np.array([p.lat for p in points])
    lngs = np.array([p.lng for p in points])
    big = [d for d in fences if d.area_km2 >= 10.0]
    small = [d for d in fences if d.area_km2 < 10.0]
    inside_c, boundary_c = "#8fb3d9", "#dde8f3"

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(17, 8.5), gridspec_kw={"width_ratios": [1, 1.35]})
    fig.suptitle("hexcast demo: fences, H3 index cells and the 2016 Santa Rosa Marathon trace", fontsize=14)

    # Overview: counties.
    _draw_cells(ax0, big, inside_color=inside_c, boundary_color=boundary_c)
    import shapely

    for d in big:
        _add_geom(ax0, d.geometry, facecolor="none", edgecolor="#1f3b5a", linewidth=1.2, zorder=2)
        c = d.geometry.representative_point()
        label = dict(ha="center", va="center", fontsize=8.5, color="#1f3b5a", zorder=4,
                     bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.7})
        if shapely.covers(d.geometry, shapely.Point(lngs[0], lats[0])):  # keep the label off the trace
            ax0.annotate(f"{d.name}\n{d.fence_id}", (lngs[0], lats[0]), xytext=(-45, 40), textcoords="offset points",
                         arrowprops={"arrowstyle": "-", "color": "#1f3b5a", "linewidth": 0.6}, **label)
        else:
            ax0.annotate(f"{d.name}\n{d.fence_id}", (c.x, c.y), **label)
    ax0.plot(lngs, lats, color="#d62728", linewidth=1.5, zorder=3)
    minx, miny, maxx, maxy = lngs.min(), lats.min(), lngs.max(), lats.max()
    ax0.add_patch(plt.Rectangle((minx - 0.02, miny - 0.02), maxx - minx + 0.04, maxy - miny + 0.04,
                                fill=False, edgecolor="#d62728", linewidth=1, linestyle="--", zorder=3))
    ax0.set_title("Sonoma County (06097) and neighbours: H3 res-5 index cells")
    ax0.autoscale_view()
    ax0.set_aspect(1 / np.cos(np.radians(38.5)))
    ax0.set_xlabel("longitude")
    ax0.set_ylabel("latitude")

    # Route: place fences.
    _draw_cells(ax1, small, inside_color=inside_c, boundary_color=boundary_c)
    fence_color = "#6a3d9a"
    for d in small:
        _add_geom(ax1, d.geometry, facecolor=fence_color, edgecolor=fence_color, linewidth=1.3, alpha=0.25, zorder=2)
        _add_geom(ax1, d.geometry, facecolor="none", edgecolor=fence_color, linewidth=1.3, zorder=2)
        b = d.geometry.bounds
        ax1.annotate(d.name, ((b[0] + b[2]) / 2, b[3]), xytext=(0, 6), textcoords="offset points",
                     ha="center", va="bottom", fontsize=9, color=fence_color, fontweight="bold", zorder=6,
                     bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.75})
    ax1.plot(lngs, lats, color="#d62728", linewidth=1.1, zorder=3)
    ax1.plot([lngs[0]], [lats[0]], marker="o", color="black", markersize=5, zorder=5)
    styles = {"enter": ("^", "#2ca02c"), "dwell": ("o", "#ff7f0e"), "exit": ("v", "#1f1f1f")}
    for e in events:
        if e.fence_id in {d.fence_id for d in small}:
            m, c = styles[e.type]
            ax1.plot([e.lng], [e.lat], marker=m, color=c, markersize=8, markeredgecolor="white",
                     markeredgewidth=0.8, linestyle="none", zorder=5)
    pad = 0.006
    ax1.set_xlim(minx - pad, maxx + pad)
    ax1.set_ylim(miny - pad, maxy + pad * 1.5)
    ax1.set_aspect(1 / np.cos(np.radians(38.46)))
    ax1.set_title("Race route: place fences (circle, polygon, H3 cells) and their res-9 index cells")
    ax1.set_xlabel("longitude")
    handles = [
        Patch(facecolor=fence_color, alpha=0.3, edgecolor=fence_color, label="fence"),
        Patch(facecolor=boundary_c, edgecolor="#5b7fa6", label="H3 index cell: boundary (exact test)"),
        Patch(facecolor=inside_c, edgecolor="#5b7fa6", label="H3 index cell: inside (no test)"),
        Line2D([], [], color="#d62728", label=f"GPX trace ({len(points):,} points)"),
        Line2D([], [], marker="o", color="black", linestyle="none", label="start/finish"),
    ] + [Line2D([], [], marker=m, color=c, linestyle="none", markersize=8, label=t) for t, (m, c) in styles.items()]
    ax1.legend(handles=handles, loc="lower left", fontsize=8.5, framealpha=0.9)
    for ax in (ax0, ax1):
        ax.tick_params(labelsize=8)
        ax.grid(True, linewidth=0.3, alpha=0.5)
    fig.tight_layout(rect=(0, 0.01, 1, 0.96))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- main
def run(out_dir: str, *, port: int | None = None, out: TextIO = sys.stdout) -> int:
    from tools.localstack import LocalStack, free_port

    points = read_gpx(TRACE)
    stack = LocalStack(port=port or free_port(), schedule_interval=None)
    t_all = time.perf_counter()
    try:
        print("starting the local stack ...", file=out, flush=True)
        stack.start()
        stack.wait_healthy()
        print(f"  up at {stack.base_url}", file=out)
        admin = HexcastClient(stack.base_url, stack.admin_key)
        app = HexcastClient(stack.base_url, stack.app_key)

        print("\nuploading sample geofences (python -m tools.fences upload ...)", file=out, flush=True)
        report = upload([os.path.relpath(p) for p in FENCE_FILES], admin)
        print_report(report, out)
        if not report.ok:
            print("demo: the upload failed", file=sys.stderr)
            return 1

        for cid, body in CAMPAIGNS.items():
            admin.request("PUT", f"/v1/campaigns/{cid}", json_body=body)
        print(f"\ndefined {len(CAMPAIGNS)} campaigns: {', '.join(CAMPAIGNS)}", file=out)

        headers = register_device(app)
        print(f"\nregistered device {DEVICE_ID} (ios, push and location consent)", file=out)
        print(f"replaying {len(points):,} GPX points as pings, {PINGS_PER_REQUEST} per request, "
              f"accuracy {ACCURACY_M:g} m ...", file=out, flush=True)
        result = replay(app, points, headers=headers)

        names = fence_names(admin, {e.fence_id for e in result.events})
        device = admin.request("GET", f"/v1/devices/{DEVICE_ID}")
        print("\ntimeline of runner-1 (2016-08-28)\n", file=out)
        print_timeline(result.events, names, points[0].time, out)
        inside = ", ".join(f"{f} ({names.get(f, f)})" for f in device.get("fences", [])) or "none"
        print(f"\nat the end of the trace the device is inside: {inside}", file=out)

        pushes = print_pushes(admin, stack, out)

        from tools.demo_storm import run_storm

        storm = run_storm(admin, app, stack, out, out_dir)

        fences = _fences_from_files(FENCE_FILES)
        map_path = os.path.join(out_dir, "demo_map.png")
        write_map(map_path, fences, points, result.events, names)

        rate = result.sent / result.seconds if result.seconds else float("inf")
        print(
            f"\nsummary: {result.sent:,} pings sent in {result.requests} requests "
            f"({result.accepted:,} accepted), {len(result.events)} events, {pushes} pushes, replay {result.seconds:.1f} s "
            f"({rate:,.0f} pings/s, slowest request {result.slowest_request_s * 1000:.0f} ms), "
            f"demo {time.perf_counter() - t_all:.1f} s; map: {os.path.relpath(map_path)}"
            f"\nweather: alert {storm['status']}, {storm['targeted']} devices inside its area, "
            f"{storm['sent']} storm delay notices sent; map: {os.path.relpath(storm['map'])}",
            file=out,
        )
        if storm["status"] != "processed" or storm["sent"] == 0:
            print("demo: the weather alert reached nobody", file=sys.stderr)
            return 1
        if result.not_accepted:
            print(f"demo: pings not accepted: {result.not_accepted}", file=sys.stderr)
            return 1
        return 0
    except (ApiError, Unreachable) as exc:
        print(f"demo: request failed: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "out"), help="output folder (default: out/)")
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default: a free one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The app's JSON lines and EMF metrics (what Lambda would ship to CloudWatch)
    # would drown the demo's own output: warnings only.
    from chalicelib import logs

    logs.configure("WARNING", metrics=False)
    return run(args.out, port=args.port)


if __name__ == "__main__":
    sys.exit(main())
