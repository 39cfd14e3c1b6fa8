"""The per-device presence state machine: pure, no I/O.

Given a device's last state, one ping and what the index says about the
ping's location, :func:`step` returns the new state and the enter / exit /
dwell events. Rules:

* pings less accurate than ``max_accuracy_m`` change nothing;
* a ping not after the last processed one (older, or a duplicate) changes
  nothing;
* enter when a fence covers the ping (a point on the edge is inside);
* exit only when the ping is farther outside than
  ``clamp(accuracy_m, 10, 200)`` metres, so GPS jitter at an edge never flaps;
* dwell once per visit, at the first later ping ≥ ``dwell_minutes`` after the
  enter, while still inside.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

MIN_EXIT_BUFFER_M = 10.0
MAX_EXIT_BUFFER_M = 200.0


def exit_buffer_m(accuracy_m: float | None) -> float:
    """``clamp(accuracy_m, 10, 200)``; a ping without accuracy gets 10 m.

    >>> exit_buffer_m(None), exit_buffer_m(65.0), exit_buffer_m(900.0)
    (10.0, 65.0, 200.0)
    """
    if accuracy_m is None:
        return MIN_EXIT_BUFFER_M
    return min(max(float(accuracy_m), MIN_EXIT_BUFFER_M), MAX_EXIT_BUFFER_M)


@dataclass(frozen=True)
class Ping:
    device_id: str
    lat: float
    lng: float
    ts: float  # epoch seconds
    accuracy_m: float | None = None
    speed_mps: float | None = None
    index: int = 0  # position in the request


@dataclass(frozen=True)
class Visit:
    enter_ts: float
    dwelled: bool = False


@dataclass(frozen=True)
class LocationState:
    """The last accepted location and the fences the device is inside."""

    lat: float
    lng: float
    ts: float
    cell: int
    accuracy_m: float | None = None
    inside: Mapping[str, Visit] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "lat": self.lat,
            "lng": self.lng,
            "ts": self.ts,
            "cell": format(self.cell, "x"),
            "acc": self.accuracy_m,
            "in": {k: [v.enter_ts, int(v.dwelled)] for k, v in self.inside.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> "LocationState":
        return cls(
            lat=data["lat"],
            lng=data["lng"],
            ts=data["ts"],
            cell=int(data["cell"], 16),
            accuracy_m=data.get("acc"),
            inside={k: Visit(v[0], bool(v[1])) for k, v in data.get("in", {}).items()},
        )


@dataclass(frozen=True)
class Event:
    type: str  # enter | exit | dwell
    fence_id: str
    at: float
    #: The visit's enter time: with the fence and the type it identifies the
    #: occasion (a new visit is a new occasion; a replayed ping is not).
    visit_ts: float | None = None


@dataclass(frozen=True)
class FenceInfo:
    """What the state machine needs to know about a fence."""

    fence_id: str
    dwell_minutes: float | None = None


@dataclass(frozen=True)
class Step:
    accepted: bool
    reason: str | None
    state: LocationState | None
    events: tuple[Event, ...] = ()
    changed: bool = False  # cell or fence set changed: worth a write


_ORDER = {"exit": 0, "enter": 1, "dwell": 2}


def step(
    state: LocationState | None,
    ping: Ping,
    cell: int,
    covering: Mapping[str, FenceInfo],
    distance_m: Callable[[str], float | None],
    *,
    max_accuracy_m: float = 1000.0,
) -> Step:
    """Apply one ping.

    ``covering``: the fences that cover the ping (exact test done).
    ``distance_m(fence_id)``: metres from the ping to a fence the device is
    inside but which does not cover the ping — ``math.inf`` when beyond any
    buffer, ``None`` when the fence is gone or disabled (the visit ends
    without an exit event).
    """
    if ping.accuracy_m is not None and ping.accuracy_m > max_accuracy_m:
        return Step(False, "inaccurate", state)
    if state is not None and ping.ts <= state.ts:
        return Step(False, "duplicate" if ping.ts == state.ts else "out_of_order", state)
    inside = dict(state.inside) if state else {}
    events: list[Event] = []
    buffer = exit_buffer_m(ping.accuracy_m)
    for fid in sorted(inside):
        if fid in covering:
            continue
        d = distance_m(fid)
        if d is None:
            del inside[fid]
        elif d > buffer:
            visit = inside.pop(fid)
            events.append(Event("exit", fid, ping.ts, visit.enter_ts))
    for fid in sorted(covering):
        info = covering[fid]
        current = inside.get(fid)
        if current is None:
            inside[fid] = Visit(ping.ts)
            events.append(Event("enter", fid, ping.ts, ping.ts))
        elif not current.dwelled and info.dwell_minutes is not None and ping.ts - current.enter_ts >= info.dwell_minutes * 60.0:
            inside[fid] = replace(current, dwelled=True)
            events.append(Event("dwell", fid, ping.ts, current.enter_ts))
    events.sort(key=lambda e: (_ORDER[e.type], e.fence_id))
    new_state = LocationState(ping.lat, ping.lng, ping.ts, cell, ping.accuracy_m, inside)
    changed = state is None or bool(events) or state.cell != cell or set(state.inside) != set(inside)
    return Step(True, None, new_state, tuple(events), changed)
