"""Benchmark inputs: real files in ``tests/fixtures`` (provenance in its README) and seeded synthetic
fences, pings and device walks built on them.

Realistic fences are what a geofencing customer uploads: all 3,221 US
counties plus store-sized circles (50-500 m) and small polygons (rotated
rectangles and irregular footprints, 30-300 m) scattered around the 1,000
largest US cities, in proportion to population.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
# The repository's own copies (provenance in tests/fixtures/README.md).
CITIES_CSV = REPO / "tests" / "fixtures" / "us_cities_top_1k.csv"
COUNTIES = REPO / "tests" / "fixtures" / "us_counties.geojson"
GPX = REPO / "tests" / "fixtures" / "santa_rosa_marathon_2016.gpx"

M_PER_DEG = 111_195.0
#: Contiguous US, for the pings that are not near a city.
CONUS = (-125.0, 24.5, -66.9, 49.4)


@dataclass(frozen=True)
class City:
    name: str
    state: str
    population: int
    lat: float
    lng: float

    @property
    def radius_km(self) -> float:
        """A rough urban radius: ~4 km for 40k people, ~20 km for 8M."""
        return 3.0 + 0.006 * math.sqrt(self.population)


@lru_cache(maxsize=1)
def cities() -> tuple[City, ...]:
    with open(CITIES_CSV, newline="") as fh:
        return tuple(
            City(r["City"], r["State"], int(r["Population"]), float(r["lat"]), float(r["lon"])) for r in csv.DictReader(fh)
        )


def city(name: str) -> City:
    return next(c for c in cities() if c.name == name)


@lru_cache(maxsize=1)
def county_features() -> tuple[dict, ...]:
    return tuple(json.loads(COUNTIES.read_text())["features"])


def gpx_points(path: Path = GPX) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The trace's (lats, lngs, epoch seconds); extensions ignored."""
    from chalicelib.timeutil import parse_timestamp

    ns = {"g": "http://www.topografix.com/GPX/1/1"}
    pts = ET.parse(path).getroot().findall(".//g:trkpt", ns)
    lats = np.array([float(p.get("lat")) for p in pts])
    lngs = np.array([float(p.get("lon")) for p in pts])
    ts = np.array([parse_timestamp(p.find("g:time", ns).text, field="time") for p in pts])
    return lats, lngs, ts


# ------------------------------------------------------------ scattering
def offset(lats, lngs, east_m, north_m) -> tuple[np.ndarray, np.ndarray]:
    """Move points by metres east/north (local flat approximation)."""
    lats = np.asarray(lats, float)
    new_lats = lats + np.asarray(north_m) / M_PER_DEG
    new_lngs = np.asarray(lngs, float) + np.asarray(east_m) / (M_PER_DEG * np.cos(np.radians(lats)))
    return new_lats, new_lngs


def near_cities(rng: np.random.Generator, n: int, pool: tuple[City, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points around cities chosen in proportion to population, each
    a 2-D Gaussian around the centre with σ = half the urban radius."""
    pool = pool or cities()
    pop = np.array([c.population for c in pool], float)
    pick = rng.choice(len(pool), size=n, p=pop / pop.sum())
    clat = np.array([c.lat for c in pool])[pick]
    clng = np.array([c.lng for c in pool])[pick]
    sigma = np.array([c.radius_km for c in pool])[pick] * 500.0
    return offset(clat, clng, rng.normal(0, 1, n) * sigma, rng.normal(0, 1, n) * sigma)


def local_fence_features(rng: np.random.Generator, n: int, pool: tuple[City, ...] | None = None, prefix: str = "f") -> list[dict]:
    """``n`` GeoJSON Features: 60% circles (radius log-uniform 50-500 m),
    25% rotated rectangles and 15% irregular 5-10-gons (30-300 m)."""
    lats, lngs = near_cities(rng, n, pool)
    kind = rng.choice(3, size=n, p=[0.6, 0.25, 0.15])
    out = []
    for i in range(n):
        lat, lng = float(lats[i]), float(lngs[i])
        fid = f"{prefix}{i:06d}"
        props: dict = {"name": fid, "tags": ["store"]}
        if kind[i] == 0:
            props["radius_m"] = round(float(math.exp(rng.uniform(math.log(50), math.log(500)))), 1)
            geometry = {"type": "Point", "coordinates": [round(lng, 7), round(lat, 7)]}
        else:
            if kind[i] == 1:
                w, h = rng.uniform(30, 300, 2) / 2
                corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]])
            else:
                k = int(rng.integers(5, 11))
                ang = (np.arange(k) + rng.uniform(0.1, 0.9, k)) * (2 * math.pi / k)  # simple: star-shaped
                rad = rng.uniform(0.5, 1.0, k) * rng.uniform(30, 300) / 2
                corners = np.column_stack([rad * np.cos(ang), rad * np.sin(ang)])
            theta = rng.uniform(0, math.pi)
            rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
            xy = corners @ rot.T
            plat, plng = offset(np.full(len(xy), lat), np.full(len(xy), lng), xy[:, 0], xy[:, 1])
            ring = [[round(float(a), 7), round(float(b), 7)] for a, b in zip(plng, plat)]
            geometry = {"type": "Polygon", "coordinates": [ring + [ring[0]]]}
        out.append({"type": "Feature", "id": fid, "geometry": geometry, "properties": props})
    return out


def realistic_fence_features(n_total: int, seed: int = 20260501) -> list[dict]:
    """All counties plus ``n_total - 3221`` local fences around cities."""
    counties = list(county_features())
    rng = np.random.default_rng(seed)
    return counties + local_fence_features(rng, max(n_total - len(counties), 0))


# ------------------------------------------------------------ covers, cached
def _cover_chunk(args):
    from shapely import from_wkb

    from chalicelib.geo.cover import cover_geometry

    cells, inside, lens = [], [], []
    for wkb in args:
        c = cover_geometry(from_wkb(wkb))
        cells.append(c.cells)
        inside.append(c.inside)
        lens.append(len(c.cells))
    return np.concatenate(cells), np.concatenate(inside), np.array(lens)


def _code_fingerprint() -> str:
    h = hashlib.sha256()
    for name in ("cover.py", "cells.py", "geojson.py", "sphere.py"):
        h.update((REPO / "chalicelib" / "geo" / name).read_bytes())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "hexcast-bench"


def covers_for(geometries: list, *, use_cache: bool = True, processes: int | None = None):
    """``cover_geometry`` of every geometry → (list of Cover, seconds spent,
    whether they came from the cache). Computed on all cores; cached on disk
    keyed by the geometries and the source of ``chalicelib/geo``."""
    import shapely

    from chalicelib.geo.cover import Cover

    wkbs = shapely.to_wkb(np.asarray(geometries, dtype=object)).tolist()
    key = hashlib.sha256(_code_fingerprint().encode() + b"".join(hashlib.sha256(w).digest() for w in wkbs)).hexdigest()[:24]
    path = cache_dir() / f"covers-{key}.npz"
    import time

    t0 = time.perf_counter()
    if use_cache and path.exists():
        z = np.load(path)
        cells, inside, lens = z["cells"], z["inside"], z["lens"]
        cached = True
    else:
        chunks = [wkbs[i : i + 250] for i in range(0, len(wkbs), 250)]
        procs = processes or os.cpu_count() or 1
        if procs > 1 and len(chunks) > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(procs) as pool:
                parts = pool.map(_cover_chunk, chunks, chunksize=1)
        else:
            parts = [_cover_chunk(c) for c in chunks]
        cells = np.concatenate([p[0] for p in parts]).astype(np.uint64)
        inside = np.concatenate([p[1] for p in parts]).astype(bool)
        lens = np.concatenate([p[2] for p in parts]).astype(np.int64)
        cached = False
        if use_cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, cells=cells, inside=inside, lens=lens)
            os.replace(tmp, path)
    elapsed = time.perf_counter() - t0
    bounds = np.concatenate([[0], np.cumsum(lens)])
    covers = [Cover(cells[a:b], inside[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    return covers, elapsed, cached
