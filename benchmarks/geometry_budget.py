"""The four expensive shapes of the geometry budget: parse + cover + the
stored definition, timed outside any test (figures for BENCHMARKS.md).

    python -m benchmarks.geometry_budget [holes|parts|cells|circles ...]

Each shape is parsed as a fence (``parse_feature``, which applies the
budget), then covered; the 500 circles as one import (the import budget
first). Prints one line per shape. ``--no-budget`` skips every budget
check: what the cover alone costs now. Index writes are not included: on main
they added about as much again (20,000 rows for the 2,500 parts).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import h3

SHOP = (38.44, -122.7)


def _square(lat: float, lng: float, d: float) -> list:
    return [[lng - d, lat - d], [lng + d, lat - d], [lng + d, lat + d], [lng - d, lat + d], [lng - d, lat - d]]


def holes_polygon(n: int = 900, lat: float = SHOP[0], lng: float = SHOP[1], s: float = 0.1) -> dict:
    """A 22 km square with ``n`` 220 m square holes on a grid (5 vertices
    each): the holes grown by a cell margin merge into each other."""
    side = math.ceil(math.sqrt(n))
    step = 1.6 * s / side
    holes = [_square(lat + step * (i % side - side / 2), lng + step * (i // side - side / 2), s / 100) for i in range(n)]
    return {"type": "Polygon", "coordinates": [_square(lat, lng, s)] + holes}


def tiny_parts(n: int = 2500, lat: float = SHOP[0], lng: float = SHOP[1]) -> dict:
    """``n`` 10 m triangles (4 positions each) 2 km apart (a MultiPolygon)."""
    side = math.ceil(math.sqrt(n))
    tri = ((0.0, 0.0), (1e-4, 0.0), (0.0, 1e-4), (0.0, 0.0))
    return {"type": "MultiPolygon",
            "coordinates": [[[[lng + (i // side) * 0.02 + dx, lat + (i % side) * 0.02 + dy] for dx, dy in tri]] for i in range(n)]}


def world_parts(n: int = 2500) -> dict:
    """``n`` 10 m triangles on a grid over the inhabited latitudes."""
    cols = math.ceil(math.sqrt(2 * n))
    rows = math.ceil(n / cols)
    tri = ((0.0, 0.0), (1e-4, 0.0), (0.0, 1e-4), (0.0, 0.0))
    pts = [(-175.0 + 350.0 * (i % cols) / cols, -60.0 + 130.0 * (i // cols) / rows) for i in range(n)]
    return {"type": "MultiPolygon", "coordinates": [[[[x + dx, y + dy] for dx, dy in tri]] for x, y in pts]}


def zigzag(n: int = 9_998, r_deg: float = 10.0) -> dict:
    """A star of ``n`` vertices alternating between ``r_deg`` and half of it
    (spikes ~1 km wide, 500 km long): under the vertex limit."""
    pts = []
    for i in range(n):
        a = 2 * math.pi * i / n
        r = r_deg if i % 2 == 0 else r_deg / 2
        pts.append([round(-100.0 + r * math.cos(a), 7), round(40.0 + 0.6 * r * math.sin(a), 7)])
    return {"type": "Polygon", "coordinates": [pts + [pts[0]]]}


def scattered_cells(n: int = 5000, res: int = 9) -> list[str]:
    """``n`` resolution-``res`` cells, none adjacent: the centre children of
    ``n`` neighbouring cells two resolutions coarser."""
    origin = h3.latlng_to_cell(SHOP[0], SHOP[1], res - 2)
    k = 1
    while 3 * k * k + 3 * k + 1 < n:
        k += 1
    parents = sorted(h3.grid_disk(origin, k))[:n]
    return sorted(h3.cell_to_center_child(p, res) for p in parents)


def circles(n: int = 500, radius_m: float = 100_000.0) -> list[dict]:
    return [{"type": "Feature", "id": f"c{i}", "geometry": {"type": "Point", "coordinates": [-120.0 + (i % 50) * 0.5, 30.0 + (i // 50) * 1.5]},
             "properties": {"radius_m": radius_m}} for i in range(n)]


def feature(geometry: Any, props: dict | None = None) -> dict:
    return {"type": "Feature", "geometry": geometry, "properties": props or {}}


SHAPES = {
    "holes": lambda: [feature(holes_polygon())],
    "parts": lambda: [feature(tiny_parts())],
    "world": lambda: [feature(world_parts())],
    "zigzag": lambda: [feature(zigzag())],
    "cells": lambda: [feature(None, {"h3_cells": scattered_cells()})],
    "circles": circles,
}


def run_one(name: str, no_budget: bool = False) -> str:
    if no_budget:
        from chalicelib.geo import geojson

        geojson.check_rings = lambda *a, **k: None  # type: ignore[attr-defined]
        geojson.check_h3_cells = lambda *a, **k: None  # type: ignore[attr-defined]
    from chalicelib.errors import HexcastError
    from chalicelib.geo.cells import coarse_cells
    from chalicelib.geo.cover import cover_geometry
    from chalicelib.geo.geojson import parse_feature
    from chalicelib.geo.shape import FenceShape

    try:
        from chalicelib.geo.budget import ImportBudget
        budget = None if no_budget else ImportBudget()
    except ImportError:  # before the budget existed
        budget = None
    feats = SHAPES[name]()
    coarse_cells()  # built once per process: not part of any shape's cost
    t0 = time.perf_counter()
    rows = 0
    blob = 0
    verdict = "accepted"
    try:
        defs = []
        for i, f in enumerate(feats):  # as the import does: parsed and priced one by one
            defs.append(parse_feature(f, f"f{i}", **({"budget": None} if no_budget else {})))
            if budget is not None:
                budget.add(i, defs[-1].work)
        for d in defs:
            rows += len(cover_geometry(d.geometry))
            blob = max(blob, len(FenceShape.from_definition(d).to_blob()))
    except HexcastError as exc:
        verdict = f"400 {exc.field}: {exc.message}"
    dt = time.perf_counter() - t0
    return f"{name:8s} {dt:7.2f} s  rows {rows:6d}  largest shape blob {blob / 1024:6.0f} KiB  {verdict}"


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--no-budget"]
    for n in args or list(SHAPES):
        print(run_one(n, no_budget="--no-budget" in sys.argv), flush=True)
