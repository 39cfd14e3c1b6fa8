"""Where an NWS alert applies: its polygon, else the union of the counties
named by its SAME codes (from the county file shipped in
``chalicelib/data/``), else its zone geometries fetched from
api.weather.gov, else nothing — the caller reports ``unresolved_area``.

Geometries are shapely Polygons/MultiPolygons in (lng, lat), valid, with
counter-clockwise shells (RFC 7946), whatever the winding of the input: NWS
polygons and the county file are both clockwise.

The county file is the Census 2010 set, so SAME codes of counties changed
since 2010 go through :data:`SAME_ALIASES` / :data:`SAME_MERGED`; codes that
still have no polygon (marine areas, territories, Connecticut's 2022
planning regions) are reported in :attr:`Area.unresolved`, never dropped
silently. See ``chalicelib/data/README.md``.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable
from urllib.parse import urlsplit

import numpy as np
import shapely
from shapely.geometry import shape

if TYPE_CHECKING:  # pragma: no cover
    from chalicelib.weather.alerts import Alert

log = logging.getLogger("hexcast.weather")

COUNTIES_PATH = Path(__file__).resolve().parent.parent / "data" / "us_counties_2010.geojson.gz"

#: SAME code → the 2010 county (FIPS) that holds it, for counties renamed or
#: split after 2010 (Census "Substantial changes to counties", 2010–2024).
SAME_ALIASES: dict[str, str] = {
    "046102": "46113",  # Oglala Lakota County SD = Shannon County renamed (2015), same land
    "002158": "02270",  # Kusilvak Census Area AK = Wade Hampton renamed (2015), same land
    "002063": "02261",  # Chugach Census Area AK (2019): part of the old Valdez-Cordova
    "002066": "02261",  # Copper River Census Area AK (2019): the rest of Valdez-Cordova
}

#: SAME code → the 2010 counties whose union it now covers exactly.
SAME_MERGED: dict[str, tuple[str, ...]] = {
    # Bedford city VA (51515) became part of Bedford County in 2013; the 2010
    # file still has the city as a hole in the county.
    "051019": ("51019", "51515"),
}

#: Codes resolved to a strictly larger area than they name (a split
#: county's parent): reported in :attr:`Area.approximate`. SAME codes whose
#: first digit is 1-9 (one ninth of a county) are approximate as well.
APPROXIMATE_SAME: frozenset[str] = frozenset({"002063", "002066"})

#: Connecticut's nine planning regions (county equivalents since 2022) cut
#: across the eight old counties: no 2010 county or union of them matches
#: one, and the smallest covering union is up to four counties (Naugatuck
#: Valley: Fairfield, Hartford, Litchfield, New Haven). They stay unresolved
#: here; an alert naming only them resolves through its zones.
CT_PLANNING_REGIONS: frozenset[str] = frozenset(f"09{n}" for n in range(110, 200, 10))

#: SAME "state" numbers that are marine areas (coastal waters, Great Lakes).
_MARINE_STATES = frozenset({"57", "58", "59", "61", "65", "73", "75", "77", "91", "92", "93", "94", "95", "96", "97", "98"})
#: Territories without a polygon in the 2010 file (Puerto Rico, 72, has them).
_TERRITORY_STATES = frozenset({"60", "64", "66", "68", "69", "70", "74", "78"})
_SAME_RE = re.compile(r"^[0-9]{6}\Z")


@dataclass(frozen=True)
class Area:
    """An alert's area and how it was found."""

    geometry: Any
    source: str  # "polygon" | "same" | "zones"
    unresolved: tuple[str, ...] = ()
    approximate: tuple[str, ...] = ()


# ---------------------------------------------------------------- geometry helpers
def polygonal(geom: Any) -> Any | None:
    """The polygonal part of ``geom``: valid (``make_valid`` when needed),
    counter-clockwise shells, ``None`` when nothing polygonal is left."""
    if geom is None or geom.is_empty:
        return None
    if not geom.is_valid:
        geom = shapely.make_valid(geom, method="structure", keep_collapsed=False)
    if geom.geom_type == "GeometryCollection":
        parts = [g for g in shapely.get_parts(geom) if g.geom_type in ("Polygon", "MultiPolygon")]
        geom = shapely.union_all(parts) if parts else None
    if geom is None or geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
        return None
    return shapely.orient_polygons(geom, exterior_cw=False)


def geojson_polygonal(obj: Any) -> Any | None:
    """A GeoJSON Polygon/MultiPolygon dict (lng/lat, either winding) →
    :func:`polygonal` geometry, or ``None`` when it is not one or is broken."""
    if not isinstance(obj, dict) or obj.get("type") not in ("Polygon", "MultiPolygon"):
        return None
    try:
        geom = shape(obj)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, shapely.errors.ShapelyError):
        return None  # OverflowError: an integer coordinate such as 10**400 (no float holds it)
    if geom.is_empty:
        return None
    coords = shapely.get_coordinates(geom)
    if not np.isfinite(coords).all():
        return None
    minx, miny, maxx, maxy = geom.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        return None
    return polygonal(geom)


# ---------------------------------------------------------------- SAME codes
def same_to_fips(code: str) -> tuple[str, ...]:
    """The 2010 county FIPS a SAME code ``PSSCCC`` stands for (aliases and
    mergers applied); ``()`` when it is not a county code at all.

    >>> same_to_fips("006097"), same_to_fips("046102"), same_to_fips("051019")
    (('06097',), ('46113',), ('51019', '51515'))
    """
    if not isinstance(code, str) or not _SAME_RE.match(code):
        return ()
    whole = "0" + code[1:]
    if whole in SAME_MERGED:
        return SAME_MERGED[whole]
    if whole in SAME_ALIASES:
        return (SAME_ALIASES[whole],)
    return (code[1:],)


def is_approximate(code: str) -> bool:
    """Whether ``code`` resolves to more than it names (a split county's
    parent, or a whole county for a ninth-of-county code)."""
    return isinstance(code, str) and bool(_SAME_RE.match(code)) and (code[0] != "0" or code in APPROXIMATE_SAME)


def explain_same(code: str) -> str:
    """Why a SAME code has no polygon (for logs and reports): ``malformed``,
    ``marine``, ``territory``, ``ct_planning_region`` or ``unknown_county``."""
    if not isinstance(code, str) or not _SAME_RE.match(code):
        return "malformed"
    state = code[1:3]
    if state in _MARINE_STATES:
        return "marine"
    if state in _TERRITORY_STATES:
        return "territory"
    if code[1:] in CT_PLANNING_REGIONS:
        return "ct_planning_region"
    return "unknown_county"


class CountyIndex:
    """County polygons by 5-digit FIPS, from the shipped Census 2010 file."""

    _loaded: dict[str, "CountyIndex"] = {}
    _lock = threading.Lock()

    def __init__(self, geometries: dict[str, Any]) -> None:
        self._geoms = geometries

    @classmethod
    def load(cls, path: str | Path | None = None) -> "CountyIndex":
        """Parse the (gzipped) GeoJSON once per process and path (~0.2 s); later
        calls return the same index."""
        key = str(Path(path) if path is not None else COUNTIES_PATH)
        index = cls._loaded.get(key)
        if index is None:
            with cls._lock:
                index = cls._loaded.get(key)
                if index is None:
                    index = cls._loaded[key] = cls._read(Path(key))
        return index

    @classmethod
    def _read(cls, path: Path) -> "CountyIndex":
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        features = json.loads(raw)["features"]
        ids = [str(f["id"]) for f in features]
        geoms = np.array([shape(f["geometry"]) for f in features], dtype=object)
        del features, raw
        bad = ~shapely.is_valid(geoms)
        for i in np.flatnonzero(bad):
            geoms[i] = polygonal(geoms[i])
        geoms = shapely.orient_polygons(geoms, exterior_cw=False)
        return cls({i: g for i, g in zip(ids, geoms) if g is not None and not g.is_empty})

    def __len__(self) -> int:
        return len(self._geoms)

    def __contains__(self, fips: object) -> bool:
        return fips in self._geoms

    def geometry(self, fips: str) -> Any | None:
        """One county's polygon (valid, CCW shells), or ``None``."""
        return self._geoms.get(fips)

    def union(self, same_codes: Iterable[str]) -> tuple[Any | None, tuple[str, ...]]:
        """SAME codes → (union of their counties or ``None``, the codes that
        name no county polygon, in input order)."""
        parts: dict[str, Any] = {}
        unresolved: dict[str, None] = {}
        for code in same_codes:
            fips = same_to_fips(code)
            found = [f for f in fips if f in self._geoms]
            if not fips or len(found) < len(fips):
                unresolved.setdefault(code if isinstance(code, str) else repr(code), None)
            for f in found:
                parts[f] = self._geoms[f]
        if not parts:
            return None, tuple(unresolved)
        geoms = list(parts.values())
        merged = geoms[0] if len(geoms) == 1 else polygonal(shapely.union_all(geoms))
        return merged, tuple(unresolved)


# ---------------------------------------------------------------- zones over HTTP
_ZONE_PATH_RE = re.compile(r"^/zones/[a-z]{3,12}/[A-Z]{2}[A-Z][0-9]{3}\Z")
ZONE_MAX_BYTES = 16 * 1024 * 1024
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")
_MISSING = object()


def is_zone_url(url: Any) -> bool:
    """Only ``https://api.weather.gov/zones/<type>/<ZONE>`` is ever fetched:
    the URLs come from the request body (SSRF)."""
    # urlsplit silently drops tabs and newlines: refuse them (and anything
    # but visible ASCII) before parsing, so what is checked is what is fetched.
    if not isinstance(url, str) or len(url) > 200 or not _VISIBLE_ASCII.fullmatch(url):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (parts.scheme == "https" and parts.hostname == "api.weather.gov" and parts.netloc == "api.weather.gov"
            and port is None and not parts.query and not parts.fragment and bool(_ZONE_PATH_RE.match(parts.path)))


class ZoneFetcher:
    """NWS zone geometries by URL, over HTTP, cached in-process (LRU).

    Negative results are cached for answers that will not change (404/410, a
    zone Feature without a polygon); transient failures (timeouts, 5xx,
    malformed bodies) are not, so a later alert tries again. URLs outside
    ``https://api.weather.gov/zones/`` are refused without a request. Nothing
    raises: failures are ``None`` and a WARNING log.
    """

    def __init__(self, user_agent: str, timeout_s: float = 10.0, session=None, max_cached: int = 2048) -> None:
        self.user_agent = user_agent
        self.timeout_s = timeout_s
        self._session = session
        self.max_cached = max_cached
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def session(self):
        if self._session is None:
            import requests

            self._session = requests.Session()
        return self._session

    def geometry(self, url: str) -> Any | None:
        """The polygon of the zone at ``url``, or ``None``."""
        with self._lock:
            hit = self._cache.get(url, _MISSING) if isinstance(url, str) else _MISSING
            if hit is not _MISSING:
                self._cache.move_to_end(url)
                return hit
        if not is_zone_url(url):
            log.warning("zone url refused", extra={"url": str(url)[:200]})
            return None
        try:
            geom, cacheable = self._fetch(url)
        except Exception:  # a defensive boundary: a bad zone must never fail the alert
            log.warning("zone geometry unavailable", extra={"url": url, "reason": "unexpected"}, exc_info=True)
            return None
        if cacheable:
            with self._lock:
                self._cache[url] = geom
                self._cache.move_to_end(url)
                while len(self._cache) > self.max_cached:
                    self._cache.popitem(last=False)
        return geom

    def _fetch(self, url: str) -> tuple[Any | None, bool]:
        import requests

        def fail(reason: str, cacheable: bool = False, **extra) -> tuple[None, bool]:
            log.warning("zone geometry unavailable", extra={"url": url, "reason": reason, **extra})
            return None, cacheable

        try:
            resp = self.session.get(url, headers={"User-Agent": self.user_agent, "Accept": "application/geo+json"},
                                    timeout=self.timeout_s, allow_redirects=False, stream=True)
        except requests.Timeout:
            return fail("timeout")
        except requests.RequestException as exc:
            return fail("http_error", error=type(exc).__name__)
        try:
            if resp.status_code in (404, 410):
                return fail("not_found", cacheable=True, status=resp.status_code)
            if resp.status_code != 200:
                return fail("http_status", status=resp.status_code)
            chunks, size = [], 0
            for chunk in resp.iter_content(64 * 1024):
                size += len(chunk)
                if size > ZONE_MAX_BYTES:
                    return fail("too_large")
                chunks.append(chunk)
            body = json.loads(b"".join(chunks))
        except requests.RequestException as exc:
            return fail("http_error", error=type(exc).__name__)
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, absurd nesting
            return fail("malformed_json")
        finally:
            resp.close()
        raw = body.get("geometry") if isinstance(body, dict) else None
        if isinstance(raw, str):  # JSON-LD answers carry WKT
            try:
                geom = polygonal(shapely.from_wkt(raw))
            except shapely.errors.ShapelyError:
                geom = None
        else:
            geom = geojson_polygonal(raw)
        if geom is None:
            return fail("no_polygon", cacheable=isinstance(body, dict) and body.get("type") == "Feature")
        return geom, True


# ---------------------------------------------------------------- resolution
class AreaResolver:
    """Polygon → SAME counties → zones → ``None`` (see the module docs)."""

    def __init__(self, counties: CountyIndex | None = None, zones: ZoneFetcher | None = None, *,
                 max_zones: int = 100, zone_budget_s: float = 20.0) -> None:
        self.counties = counties
        self.zones = zones
        #: An alert names at most ~100 zones (97 measured); a dead API must
        #: not hold the Lambda for timeout x zones.
        self.max_zones = max_zones
        self.zone_budget_s = zone_budget_s

    def resolve(self, alert: "Alert") -> Area | None:
        """The alert's :class:`Area`, or ``None`` when nothing resolves."""
        if alert.geometry is not None:
            geom = geojson_polygonal(alert.geometry)
            if geom is not None:
                return Area(geom, "polygon")
            log.warning("alert polygon unusable; trying its counties",
                        extra={"alert_id": alert.id, "type": str(alert.geometry.get("type"))[:40]})
        if alert.same and self.counties is not None:
            geom, unresolved = self.counties.union(alert.same)
            if unresolved:
                log.info("SAME codes without a county polygon", extra={
                    "alert_id": alert.id, "codes": {c: explain_same(c) for c in unresolved[:20]}})
            if geom is not None:
                approx = tuple(c for c in alert.same if is_approximate(c) and c not in unresolved)
                return Area(geom, "same", unresolved, approx)
        if alert.affected_zones and self.zones is not None:
            return self._zones(alert)
        return None

    def _zones(self, alert: "Alert") -> Area | None:
        if self.zones is None:
            return None
        deadline = time.monotonic() + self.zone_budget_s
        geoms, missing = [], []
        for n, url in enumerate(alert.affected_zones):
            if n >= self.max_zones or time.monotonic() > deadline:
                missing.append(_zone_code(url))
                continue
            g = self.zones.geometry(url)
            if g is None:
                missing.append(_zone_code(url))
            else:
                geoms.append(g)
        if not geoms:
            return None
        merged = geoms[0] if len(geoms) == 1 else polygonal(shapely.union_all(geoms))
        if merged is None:
            return None
        return Area(merged, "zones", tuple(missing))


def _zone_code(url: str) -> str:
    tail = url.rstrip("/").rsplit("/", 1)[-1] if isinstance(url, str) else ""
    return tail[:40] if re.match(r"^[A-Za-z0-9]{1,40}$", tail or "") else str(url)[:200]


__all__ = [
    "Area", "AreaResolver", "CountyIndex", "ZoneFetcher", "SAME_ALIASES", "SAME_MERGED", "APPROXIMATE_SAME",
    "CT_PLANNING_REGIONS", "same_to_fips", "is_approximate", "explain_same", "is_zone_url", "polygonal",
    "geojson_polygonal",
]
