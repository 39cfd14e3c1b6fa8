"""Exact point tests for one fence, prepared once and reused while warm."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import h3.api.basic_int as h3i
import numpy as np
import shapely

from chalicelib.geo.sphere import M_PER_DEG_LAT, haversine_m


@dataclass
class FenceShape:
    """What the exact test needs: the geometry (prepared) and, for circles
    and H3 regions, their own exact definitions.

    ``covers`` is true on the boundary (a point on a shared county border is
    inside both counties).
    """

    kind: str
    geometry: Any
    center: tuple[float, float] | None = None
    radius_m: float | None = None
    h3_cells: frozenset = field(default_factory=frozenset)
    _h3_res: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        shapely.prepare(self.geometry)
        if self.kind == "h3":
            self._h3_res = tuple(sorted({h3i.get_resolution(c) for c in self.h3_cells}))

    def _circle(self) -> tuple[float, float, float]:
        """(lat, lng, radius_m) of a circle fence."""
        if self.center is None or self.radius_m is None:
            raise ValueError("a circle needs a center and a radius")
        return self.center[0], self.center[1], self.radius_m

    # -- exact containment ------------------------------------------------
    def covers(self, lat: float, lng: float) -> bool:
        if self.kind == "circle":
            clat, clng, radius = self._circle()
            return float(haversine_m(lat, lng, clat, clng)) <= radius
        if self.kind == "h3":
            return any(h3i.latlng_to_cell(lat, lng, r) in self.h3_cells for r in self._h3_res)
        return bool(shapely.intersects_xy(self.geometry, lng, lat))

    def covers_many(self, lats: np.ndarray, lngs: np.ndarray) -> np.ndarray:
        if self.kind == "circle":
            clat, clng, radius = self._circle()
            return haversine_m(lats, lngs, clat, clng) <= radius
        if self.kind == "h3":
            return np.array([self.covers(a, b) for a, b in zip(lats, lngs)], dtype=bool)
        return shapely.intersects_xy(self.geometry, lngs, lats)

    # -- distance for the exit buffer ----------------------------------------
    def distance_m(self, lat: float, lng: float, horizon_m: float = 1000.0) -> float:
        """Metres from the point to the fence (0 inside); ``inf`` when farther
        than ``horizon_m`` (the caller only asks whether it is beyond a buffer)."""
        if self.covers(lat, lng):
            return 0.0
        if self.kind == "circle":
            clat, clng, radius = self._circle()
            return float(haversine_m(lat, lng, clat, clng)) - radius
        # Clip to a small box around the point and measure in a local
        # equirectangular frame: exact enough at these distances.
        dlat = horizon_m / M_PER_DEG_LAT
        coslat = max(math.cos(math.radians(lat)), 1e-6)
        dlng = dlat / coslat
        near = shapely.clip_by_rect(self.geometry, lng - dlng, lat - dlat, lng + dlng, lat + dlat)
        if near.is_empty:
            return math.inf

        def to_m(xy: np.ndarray) -> np.ndarray:
            return np.column_stack(((xy[:, 0] - lng) * coslat * M_PER_DEG_LAT, (xy[:, 1] - lat) * M_PER_DEG_LAT))

        local = shapely.transform(near, to_m)
        d = float(shapely.distance(local, shapely.Point(0.0, 0.0)))
        return d if d <= horizon_m else math.inf

    # -- serialisation ----------------------------------------------------
    def to_blob(self) -> bytes:
        """Compact bytes for the geometry store (zlib-compressed WKB + params)."""
        import json

        head: dict[str, Any] = {"kind": self.kind}
        if self.kind == "circle":
            clat, clng, radius = self._circle()
            head["center"] = [clat, clng]
            head["radius_m"] = radius
        if self.kind == "h3":
            head["cells"] = [format(c, "x") for c in sorted(self.h3_cells)]
        header = json.dumps(head, separators=(",", ":")).encode()
        wkb = shapely.to_wkb(self.geometry)
        return zlib.compress(len(header).to_bytes(4, "big") + header + wkb, 6)

    @classmethod
    def from_blob(cls, blob: bytes) -> "FenceShape":
        import json

        raw = zlib.decompress(blob)
        n = int.from_bytes(raw[:4], "big")
        head = json.loads(raw[4 : 4 + n])
        geom = shapely.from_wkb(raw[4 + n :])
        return cls(
            kind=head["kind"],
            geometry=geom,
            center=tuple(head["center"]) if "center" in head else None,
            radius_m=head.get("radius_m"),
            h3_cells=frozenset(int(c, 16) for c in head.get("cells", ())),
        )

    @classmethod
    def from_definition(cls, d) -> "FenceShape":
        return cls(kind=d.kind, geometry=d.geometry, center=d.center, radius_m=d.radius_m, h3_cells=frozenset(d.h3_cells))
