"""The four expensive shapes of the geometry budget: parse + cover + the
stored definition, timed outside any test (figures for BENCHMARKS.md).

    python -m benchmarks.geometry_budget [holes|parts|cells|circles ...]

Each shape is parsed as a fence (``parse_feature``, which applies the
budget), then covered; the 500 circles as one import (the import budget
first). Prints one line per shape. Index writes are not included: on main
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
    """``n`` 20 m squares spread over ~1° (a MultiPolygon)."""
    side = math.ceil(math.sqrt(n))
    return {"type": "MultiPolygon",
            "coordinates": [[_square(lat + (i % side) * 0.02, lng + (i // side) * 0.02, 0.0001)] for i in range(n)]}


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
    "cells": lambda: [feature(None, {"h3_cells": scattered_cells()})],
    "circles": circles,
}


def run_one(name: str) -> str:
    from chalicelib.errors import HexcastError
    from chalicelib.geo.cells import coarse_cells
    from chalicelib.geo.cover import cover_geometry
    from chalicelib.geo.geojson import parse_feature
    from chalicelib.geo.shape import FenceShape

    try:
        from chalicelib.geo.budget import ImportBudget
        budget = ImportBudget()
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
            defs.append(parse_feature(f, f"f{i}"))
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
    for n in sys.argv[1:] or list(SHAPES):
        print(run_one(n), flush=True)
