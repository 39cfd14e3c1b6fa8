"""Where a CAP alert applies: the union of every ``<polygon>``, ``<circle>``
and resolvable ``<geocode>`` of every ``<area>`` (of every ``<info>``).

* ``<polygon>``: ``lat,lon`` pairs (note the order) separated by any
  whitespace (spaces around the comma tolerated). Repairs, each reported:
  consecutive duplicate vertices dropped, an open ring closed, a
  self-intersecting ring made valid. A ring with fewer than three distinct
  vertices, no area, or out-of-range numbers is dropped with a reason.
  A ring spanning more than 180° of longitude crosses the antimeridian: it
  is unwrapped and cut at ±180 into two parts; rings that merely touch ±180
  (a publisher's own cut) are taken as they are.
* ``<circle>``: ``lat,lon radius_km``, the geodesic circle (the fence
  circle's code, cut at ±180 when it crosses); radius 0 is a point, taken
  as :data:`MIN_RADIUS_KM`.
* ``<geocode>``: ``EMMA_ID`` (the name in any case) from the MeteoAlarm
  geometries shipped in ``chalicelib/data/emma_id/`` (a country's file
  loaded on first use), ``SAME`` through the US county index; ``EXCLUDE_POLYGON`` (DWD) is a
  polygon cut out of its area. Other names (UGC, WARNCELLID, AMOC, ...)
  have no geometry here.

An ``<area>`` that yields nothing is listed in :attr:`CapAreaResult.unresolved`
with its reason; when no area yields anything the whole alert is unresolved
(the caller answers ``unresolved_area``).
"""

from __future__ import annotations

import gzip
import json
import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import shapely
from shapely.geometry import shape

from chalicelib.errors import InvalidGeometry
from chalicelib.geo.geojson import circle_polygon
from chalicelib.weather.area import polygonal

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.ports import CountySet
    from chalicelib.weather.cap import CapArea

EMMA_DIR = Path(__file__).resolve().parent.parent / "data" / "emma_id"
MIN_RADIUS_KM = 0.01
MAX_RADIUS_KM = 2000.0
#: Vertices of one polygon (the largest real one: 6,842, NWS).
MAX_POLYGON_VERTICES = 100_000

_COMMA_RE = re.compile(r"\s*,\s*")
_EMMA_RE = re.compile(r"^[A-Z]{2}[A-Z0-9]{1,10}\Z")


@dataclass(frozen=True)
class Ring:
    """A parsed ``<polygon>``: its (lng, lat) geometry or why it was dropped,
    and the repairs applied."""

    geometry: Any | None
    repairs: tuple[str, ...] = ()
    dropped: str | None = None


@dataclass(frozen=True)
class CapAreaResult:
    """The union of an alert's areas (shapely, lng/lat, valid, CCW shells) or
    ``None``; areas that yielded nothing and why; repairs and drops."""

    geometry: Any | None
    unresolved: tuple[tuple[str, str], ...] = ()  # (areaDesc, reason)
    notes: tuple[str, ...] = ()  # repairs and dropped parts, for logs and answers
    same: tuple[str, ...] = ()  # SAME codes found (resolved here when a county index is given)


# ---------------------------------------------------------------- text → geometry
def parse_points(value: str) -> np.ndarray:
    """``"lat,lon lat,lon ..."`` (any whitespace between pairs) → an (n, 2)
    array of (lng, lat). Raises ValueError with a reason."""
    tokens = _COMMA_RE.sub(",", value.strip()).split()
    if len(tokens) > MAX_POLYGON_VERTICES:
        raise ValueError(f"more than {MAX_POLYGON_VERTICES} vertices")
    pts = np.empty((len(tokens), 2), dtype=float)
    for i, tok in enumerate(tokens):
        parts = tok.split(",")
        if len(parts) != 2:
            raise ValueError(f"vertex {i} is not a lat,lon pair")
        try:
            lat, lng = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(f"vertex {i} is not a lat,lon pair of numbers") from None
        if not (math.isfinite(lat) and math.isfinite(lng) and -90 <= lat <= 90 and -180 <= lng <= 180):
            raise ValueError(f"vertex {i} is outside lat [-90, 90], lon [-180, 180]")
        pts[i] = (lng, lat)
    return pts


def parse_polygon(value: str) -> Ring:
    """One ``<polygon>`` text → :class:`Ring` (see the module docs)."""
    try:
        pts = parse_points(value)
    except ValueError as exc:
        return Ring(None, dropped=f"malformed: {exc}")
    repairs: list[str] = []
    if len(pts) > 1:
        keep = np.ones(len(pts), dtype=bool)
        keep[1:] = np.any(pts[1:] != pts[:-1], axis=1)
        if not keep.all():
            repairs.append(f"{int((~keep).sum())} repeated vertices dropped")
            pts = pts[keep]
    if len(pts) > 1 and not np.array_equal(pts[0], pts[-1]):
        repairs.append("ring closed")
        pts = np.vstack([pts, pts[:1]])
    if len(np.unique(pts, axis=0)) < 3:
        return Ring(None, tuple(repairs), "degenerate: fewer than 3 distinct vertices")
    geom = _unwrapped_polygon(pts)
    if not geom.is_valid:
        repairs.append("self-intersection repaired")
    fixed = polygonal(geom)
    if fixed is None or fixed.area == 0:
        return Ring(None, tuple(repairs), "degenerate: no area")
    return Ring(fixed, tuple(repairs))


def _unwrapped_polygon(pts: np.ndarray) -> Any:
    """A ring in lng/lat; one spanning over 180° of longitude is taken to
    cross the antimeridian, unwrapped east and cut at ±180."""
    lngs = pts[:, 0]
    if lngs.max() - lngs.min() <= 180.0:
        return shapely.Polygon(pts)
    moved = pts.copy()
    moved[moved[:, 0] < 0, 0] += 360.0
    poly = shapely.Polygon(moved)
    if not poly.is_valid:
        poly = shapely.make_valid(poly)
    east = shapely.clip_by_rect(poly, -180.0, -90.0, 180.0, 90.0)
    west = shapely.transform(shapely.clip_by_rect(poly, 180.0, -90.0, 540.0, 90.0),
                             lambda xy: xy - np.array([360.0, 0.0]))
    parts = [p for g in (east, west) for p in shapely.get_parts(g)
             if p.geom_type == "Polygon" and not p.is_empty and p.area > 0]
    return shapely.MultiPolygon(parts) if parts else shapely.Polygon()


def parse_circle(value: str) -> Ring:
    """``"lat,lon radius_km"`` → the geodesic circle as a :class:`Ring`."""
    tokens = _COMMA_RE.sub(",", value.strip()).split()
    if len(tokens) != 2:
        return Ring(None, dropped="malformed: a circle is 'lat,lon radius_km'")
    try:
        centre = parse_points(tokens[0])
        radius_km = float(tokens[1])
    except ValueError as exc:
        return Ring(None, dropped=f"malformed: {exc}")
    if not math.isfinite(radius_km) or radius_km < 0:
        return Ring(None, dropped="malformed: the radius must be a number of kilometres >= 0")
    if radius_km > MAX_RADIUS_KM:
        return Ring(None, dropped=f"circle radius over {MAX_RADIUS_KM:.0f} km")
    repairs = ("radius 0 taken as 10 m",) if radius_km < MIN_RADIUS_KM else ()
    lng, lat = centre[0]
    try:
        geom = circle_polygon(float(lat), float(lng), max(radius_km, MIN_RADIUS_KM) * 1000.0)
    except InvalidGeometry as exc:
        return Ring(None, dropped=f"circle: {exc.message}")
    return Ring(polygonal(geom), repairs)


# ---------------------------------------------------------------- EMMA_ID
class EmmaIndex:
    """MeteoAlarm EMMA_ID areas from the shipped files, one per country
    prefix (``PL.json.gz``): a country's file is read on the first code that
    names it (once per process), each polygon built on first request."""

    _shared: dict[str, "EmmaIndex"] = {}
    _lock = threading.Lock()

    def __init__(self, directory: str | Path | None = None) -> None:
        self._dir = Path(directory) if directory is not None else EMMA_DIR
        self._countries: dict[str, dict[str, dict]] = {}
        self._geoms: dict[str, Any] = {}

    @classmethod
    def load(cls, directory: str | Path | None = None) -> "EmmaIndex":
        """The process-wide index of ``directory`` (reads nothing yet)."""
        key = str(Path(directory) if directory is not None else EMMA_DIR)
        with cls._lock:
            return cls._shared.setdefault(key, cls(key))

    def _country(self, prefix: str) -> dict[str, dict]:
        codes = self._countries.get(prefix)
        if codes is None:
            with self._lock:
                codes = self._countries.get(prefix)
                if codes is None:
                    path = self._dir / f"{prefix}.json.gz"
                    codes = json.loads(gzip.decompress(path.read_bytes()))["codes"] if path.is_file() else {}
                    self._countries[prefix] = codes
        return codes

    def _entry(self, code: str) -> dict | None:
        key = code.strip().upper()
        if not _EMMA_RE.match(key):
            return None
        return self._country(key[:2]).get(key)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and self._entry(code) is not None

    def name(self, code: str) -> str | None:
        entry = self._entry(code)
        return None if entry is None else entry.get("name")

    def geometry(self, code: str) -> Any | None:
        """The code's polygon (valid, CCW shells), or ``None`` when unknown."""
        key = code.strip().upper()
        geom = self._geoms.get(key)
        if geom is None:
            entry = self._entry(key)
            if entry is None:
                return None
            geom = polygonal(shape({"type": entry["type"], "coordinates": entry["coordinates"]}))
            self._geoms[key] = geom
        return geom


# ---------------------------------------------------------------- areas → union
class CapAreaResolver:
    """CAP areas → :class:`CapAreaResult`. ``emma`` and ``counties`` are
    loaded lazily by default: only alerts that name such geocodes pay."""

    def __init__(self, emma: EmmaIndex | None = None, counties: CountySet | None = None, *,
                 load_defaults: bool = True) -> None:
        self._emma = emma
        self._counties = counties
        self._load_defaults = load_defaults

    def emma(self) -> EmmaIndex | None:
        if self._emma is None and self._load_defaults:
            self._emma = EmmaIndex.load()
        return self._emma

    def counties(self) -> CountySet | None:
        if self._counties is None and self._load_defaults:
            from chalicelib.weather.area import CountyIndex

            self._counties = CountyIndex.load()
        return self._counties

    def resolve(self, areas: Iterable[CapArea]) -> CapAreaResult:
        parts: list[Any] = []
        unresolved: list[tuple[str, str]] = []
        notes: list[str] = []
        same: dict[str, None] = {}
        for n, area in enumerate(areas):
            label = area.desc or f"area {n}"
            geom, reason = self._area(area, label, notes, same)
            if geom is None:
                unresolved.append((label, reason))
            else:
                parts.append(geom)
        union = None
        if parts:
            union = parts[0] if len(parts) == 1 else polygonal(shapely.union_all(parts))
        return CapAreaResult(union, tuple(unresolved), tuple(notes), tuple(same))

    def _area(self, area: CapArea, label: str, notes: list[str], same: dict[str, None]) -> tuple[Any | None, str]:
        keep: list[Any] = []
        cut: list[Any] = []
        reasons: list[str] = []
        for kind, texts, parse in (("polygon", area.polygons, parse_polygon), ("circle", area.circles, parse_circle)):
            for i, value in enumerate(texts):
                ring = parse(value)
                for r in ring.repairs:
                    notes.append(f"{label}: {kind} {i}: {r}")
                if ring.geometry is None:
                    notes.append(f"{label}: {kind} {i} dropped: {ring.dropped}")
                    reasons.append(f"{kind} dropped ({ring.dropped})")
                else:
                    keep.append(ring.geometry)
        emma_codes = [v for k, v in area.geocodes if k.strip().upper() == "EMMA_ID"]
        same_codes = [v.strip() for k, v in area.geocodes if k.strip().upper() == "SAME"]
        for k, v in area.geocodes:
            if k.strip().upper() == "EXCLUDE_POLYGON":
                ring = parse_polygon(v)
                if ring.geometry is not None:
                    cut.append(ring.geometry)
        if emma_codes:
            index = self.emma()
            for code in emma_codes:
                g = index.geometry(code) if index is not None else None
                if g is None:
                    reasons.append(f"EMMA_ID {code[:20]} unknown")
                else:
                    keep.append(g)
        if same_codes:
            for code in same_codes:
                same.setdefault(code, None)
            counties = self.counties()
            if counties is not None:
                g, missing = counties.union(same_codes)
                if g is not None:
                    keep.append(g)
                if missing:
                    reasons.append(f"SAME {', '.join(missing[:5])} without a county polygon")
        if not keep:
            other = sorted({k for k, _v in area.geocodes if k.strip().upper() not in ("EMMA_ID", "SAME", "EXCLUDE_POLYGON")})
            if other:
                reasons.append(f"no geometry for geocodes {', '.join(n[:40] for n in other[:5])}")
            return None, "; ".join(reasons) or "no polygon, circle or geocode"
        geom = keep[0] if len(keep) == 1 else polygonal(shapely.union_all(keep))
        if geom is not None and cut:
            geom = polygonal(shapely.difference(geom, shapely.union_all(cut)))
        if geom is None:
            return None, "nothing left once EXCLUDE_POLYGON is cut out"
        return geom, ""


__all__ = ["CapAreaResolver", "CapAreaResult", "EmmaIndex", "Ring", "parse_points", "parse_polygon",
           "parse_circle", "EMMA_DIR"]
