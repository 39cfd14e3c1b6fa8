"""Small spherical-earth helpers (WGS84 mean radius; metres and km²)."""

from __future__ import annotations

import math

import numpy as np

EARTH_RADIUS_M = 6_371_008.8
M_PER_DEG_LAT = math.pi * EARTH_RADIUS_M / 180.0  # ≈ 111,195 m


def haversine_m(lat1, lng1, lat2, lng2):
    """Great-circle distance in metres; works on scalars and numpy arrays.

    >>> round(haversine_m(0.0, 0.0, 0.0, 1.0))
    111195
    """
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lng2) - np.asarray(lng1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def destination_latlng(lat: float, lng: float, bearings_deg, distance_m: float):
    """Points ``distance_m`` from (lat, lng) along each bearing → (lats, lngs).

    Longitudes are *not* wrapped, so a circle near the antimeridian stays one
    contiguous ring (the caller cuts it at ±180).
    """
    phi1, lam1 = math.radians(lat), math.radians(lng)
    theta = np.radians(np.asarray(bearings_deg, dtype=float))
    delta = distance_m / EARTH_RADIUS_M
    sin_phi2 = math.sin(phi1) * math.cos(delta) + math.cos(phi1) * math.sin(delta) * np.cos(theta)
    phi2 = np.arcsin(np.clip(sin_phi2, -1.0, 1.0))
    lam2 = lam1 + np.arctan2(
        np.sin(theta) * math.sin(delta) * math.cos(phi1),
        math.cos(delta) - math.sin(phi1) * np.sin(phi2),
    )
    return np.degrees(phi2), np.degrees(lam2)


def ring_area_m2(lngs, lats) -> float:
    """Signed spherical area of a closed ring (the sign depends on winding).

    The formula of Chamberlain & Duquette (JPL, 2007) as used by d3 and turf;
    accurate to well under 1% for the polygons a geofence service sees.

    >>> one_degree = ring_area_m2([0, 1, 1, 0, 0], [0, 0, 1, 1, 0])
    >>> round(abs(one_degree) / 1e6)
    12364
    """
    lng = np.radians(np.asarray(lngs, dtype=float))
    lat = np.radians(np.asarray(lats, dtype=float))
    if len(lng) < 4:
        return 0.0
    dl = lng[1:] - lng[:-1]
    s = np.sum(dl * (2 + np.sin(lat[:-1]) + np.sin(lat[1:])))
    return float(s * EARTH_RADIUS_M**2 / 2.0)


def geometry_area_km2(geom) -> float:
    """Area of a shapely (Multi)Polygon in lng/lat degrees, in km² on the sphere."""
    total = 0.0
    for poly in getattr(geom, "geoms", [geom]):
        ext = np.asarray(poly.exterior.coords)
        total += abs(ring_area_m2(ext[:, 0], ext[:, 1]))
        for hole in poly.interiors:
            h = np.asarray(hole.coords)
            total -= abs(ring_area_m2(h[:, 0], h[:, 1]))
    return max(total, 0.0) / 1e6


def metres_to_degrees(metres: float, max_abs_lat: float) -> float:
    """A distance in degrees that is at least ``metres`` in every direction at
    latitudes up to ``max_abs_lat`` (longitude degrees shrink with cos(lat))."""
    c = math.cos(math.radians(min(abs(max_abs_lat), 89.0)))
    return metres / (M_PER_DEG_LAT * c)
