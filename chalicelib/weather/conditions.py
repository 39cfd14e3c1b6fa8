"""Weather conditions: observations in (``POST /v1/weather/conditions``),
stored per H3 resolution-5 cell with an expiry, and read back as the
``weather`` template variables of messages and campaign conditions.

Pure apart from the store port it is handed (``put_conditions``,
``get_conditions``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from chalicelib.errors import InvalidInput
from chalicelib.geo.cells import latlng_to_cell
from chalicelib.geo.geojson import is_finite_number
from chalicelib.timeutil import iso, parse_timestamp
from chalicelib.validation import known_fields

#: Resolution of the cells conditions are stored at (~250 km², edge ~9 km).
CONDITIONS_RES = 5
MAX_OBSERVATIONS = 1000
#: An observation is kept this long after it was made.
DEFAULT_TTL_S = 3 * 3600.0
#: Clock skew tolerated for ``observed_at`` in the future.
MAX_SKEW_S = 300.0

#: Allowed ``condition`` values (input is matched case-insensitively and
#: stored lowercase). One word each, the dominant weather at the place.
CONDITIONS = frozenset({
    "clear", "cloudy", "fog", "haze", "smoke", "dust",
    "drizzle", "rain", "snow", "sleet", "hail", "storm", "wind",
})

#: Numeric fields: (lowest, highest) physically plausible values. Records:
#: -89.2 °C (Vostok), 56.7 °C (Death Valley), a 408 km/h gust (Barrow
#: Island); rain rates above a few hundred mm/h last minutes at most.
RANGES = {
    "lat": (-90.0, 90.0),
    "lng": (-180.0, 180.0),
    "temperature_c": (-100.0, 70.0),
    "precipitation_mm_h": (0.0, 500.0),
    "wind_kph": (0.0, 500.0),
}
_REQUIRED = ("lat", "lng", "observed_at", "temperature_c", "condition")
_OPTIONAL = ("precipitation_mm_h", "wind_kph")
_ALLOWED = frozenset(_REQUIRED + _OPTIONAL)


@dataclass(frozen=True)
class Observation:
    lat: float
    lng: float
    observed_at: float  # epoch seconds
    temperature_c: float
    condition: str
    precipitation_mm_h: float | None = None
    wind_kph: float | None = None

    def to_store(self) -> dict:
        """The per-cell dict the store keeps (no coordinates)."""
        return {
            "condition": self.condition,
            "temperature_c": self.temperature_c,
            "precipitation_mm_h": self.precipitation_mm_h,
            "wind_kph": self.wind_kph,
            "observed_at": self.observed_at,
        }


def _number(value: Any, name: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{name} must be a number", field)
    lo, hi = RANGES[name]
    # not float() first: float(10**400) raises OverflowError, and 5e-324 cannot be stored
    if not is_finite_number(value) or not lo <= float(value) <= hi:
        raise InvalidInput(f"{name} must be a finite number between {lo:g} and {hi:g}", field)
    return float(value)


def _parse_one(raw: Any, i: int, now: float) -> Observation:
    where = f"observations[{i}]"
    if not isinstance(raw, dict):
        raise InvalidInput("an observation must be a JSON object", where)
    known_fields(raw, _ALLOWED, where)
    for name in _REQUIRED:
        if raw.get(name) is None:
            raise InvalidInput(f"{name} is required", f"{where}.{name}")
    lat = _number(raw["lat"], "lat", f"{where}.lat")
    lng = _number(raw["lng"], "lng", f"{where}.lng")
    observed_at = parse_timestamp(raw["observed_at"], field=f"{where}.observed_at")
    if observed_at > now + MAX_SKEW_S:
        raise InvalidInput("observed_at is in the future", f"{where}.observed_at")
    temperature = _number(raw["temperature_c"], "temperature_c", f"{where}.temperature_c")
    condition = raw["condition"]
    if not isinstance(condition, str) or condition.strip().lower() not in CONDITIONS:
        raise InvalidInput(f"condition must be one of: {', '.join(sorted(CONDITIONS))}", f"{where}.condition")
    optional = {
        name: _number(raw[name], name, f"{where}.{name}") if raw.get(name) is not None else None for name in _OPTIONAL
    }
    return Observation(lat, lng, observed_at, temperature, condition.strip().lower(), **optional)


def parse_observations(body: Any, now: float | None = None) -> list[Observation]:
    """``{"observations": [...]}`` → observations, in input order. ``now``
    (epoch seconds; default: the system clock) bounds ``observed_at``.

    Every error is an :class:`InvalidInput` naming ``observations[i].field``;
    the whole body is rejected on the first error.

    >>> obs = parse_observations({"observations": [{"lat": 38.44, "lng": -122.71,
    ...     "observed_at": "2026-09-21T12:00:00Z", "temperature_c": 14.5, "condition": "Rain",
    ...     "precipitation_mm_h": 2.5}]}, now=1_790_000_000.0)
    >>> obs[0].condition, obs[0].observed_at, obs[0].wind_kph
    ('rain', 1789992000.0, None)
    """
    now = time.time() if now is None else now
    if not isinstance(body, dict):
        raise InvalidInput('the body must be a JSON object {"observations": [...]}', None)
    known_fields(body, ("observations",))
    items = body.get("observations")
    if not isinstance(items, list) or not items:
        raise InvalidInput("observations must be a non-empty list", "observations")
    if len(items) > MAX_OBSERVATIONS:
        raise InvalidInput(f"at most {MAX_OBSERVATIONS} observations per request", "observations")
    return [_parse_one(raw, i, now) for i, raw in enumerate(items)]


def store_observations(store, observations: list[Observation], now: float, ttl_s: float = DEFAULT_TTL_S) -> dict:
    """Store each cell's newest observation, kept until ``observed_at +
    ttl_s``. An observation older than that is already expired and skipped.

    → ``{"stored": <observations used>, "cells": <distinct cells written>}``
    (a cell already holding a newer observation keeps it).
    """
    newest: dict[int, Observation] = {}
    used = 0
    for o in observations:
        if o.observed_at + ttl_s <= now:
            continue
        used += 1
        cell = latlng_to_cell(o.lat, o.lng, CONDITIONS_RES)
        cur = newest.get(cell)
        if cur is None or o.observed_at >= cur.observed_at:
            newest[cell] = o
    if newest:
        store.put_conditions([(cell, o.to_store(), o.observed_at + ttl_s) for cell, o in sorted(newest.items())])
    return {"stored": used, "cells": len(newest)}


def conditions_cell(lat: float, lng: float) -> int:
    """The resolution-5 cell conditions are kept at for a location."""
    return latlng_to_cell(lat, lng, CONDITIONS_RES)


def _plain(v: Any) -> Any:
    """Whole numbers render as "11", not "11.0", in messages."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def template_vars(stored: dict) -> dict:
    """A stored observation → the ``weather`` template dict."""
    return {
        "condition": stored["condition"],
        "temperature_c": _plain(stored["temperature_c"]),
        "precipitation_mm_h": _plain(stored.get("precipitation_mm_h")),
        "wind_kph": _plain(stored.get("wind_kph")),
        "observed_at": iso(stored["observed_at"]),
    }


def weather_at(store, lat: float, lng: float, now: float) -> dict | None:
    """The current conditions at a location (its resolution-5 cell), or
    None when nothing unexpired was observed there: ``{"condition",
    "temperature_c", "precipitation_mm_h", "wind_kph", "observed_at"}``."""
    cell = conditions_cell(lat, lng)
    found = store.get_conditions([cell], now).get(cell)
    return template_vars(found) if found is not None else None


def weather_at_many(store, points: list[tuple[float, float]], now: float) -> list[dict | None]:
    """:func:`weather_at` for many (lat, lng) points in one store read, in
    input order."""
    cells = [conditions_cell(lat, lng) for lat, lng in points]
    found = store.get_conditions(sorted(set(cells)), now) if cells else {}
    return [template_vars(found[c]) if c in found else None for c in cells]
