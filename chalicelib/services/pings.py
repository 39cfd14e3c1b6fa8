"""Location pings: parse a ping or a batch, then one pipeline —

1. read: the devices and every ladder row of every ping (one round trip),
   then the fence versions behind the rows (a second one on a cold cache);
2. step: each device's pings through the presence state machine
   (:class:`Stepper`, no shared mutable state besides a per-request memo);
3. write: one conditional write per changed device, its events in the
   outbox of the same write; on a race the pings are replayed on the state
   the other request stored (:func:`write_device`);
4. deliver: the outboxes' pushes (:func:`~chalicelib.services.outbox.deliver_outboxes`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from chalicelib import auth, metrics, retention
from chalicelib.errors import Forbidden, InvalidInput, NotFound, Unavailable
from chalicelib.geo.cells import FINEST, latlng_to_cell, parent_cell
from chalicelib.presence import (
    Event,
    FenceInfo,
    LocationState,
    Ping,
    Step,
    exit_buffer_m,
    step,
)
from chalicelib.services.devices import authorize_device, unknown_device
from chalicelib.services.fence_cache import IndexCache
from chalicelib.services.geofences import Match, ladder, match_fences
from chalicelib.services.outbox import Entries, Result, deliver_outboxes, outbox_entries
from chalicelib.ports import (
    ConcurrentUpdate,
    Device,
    FenceRecord,
    FenceVersion,
    IndexEntry,
    newest_entries,
)
from chalicelib.timeutil import iso, parse_timestamp
from chalicelib.validation import is_device_id, known_fields, number_field

if TYPE_CHECKING:
    from chalicelib.services.deps import Deps

MAX_PINGS_PER_BATCH = 100
#: A ping's fields; any other is a 400 (``"ts"`` for ``"timestamp"`` would
#: otherwise be taken as "now").
PING_FIELDS = ("device_id", "lat", "lng", "accuracy_m", "speed_mps", "timestamp")
MAX_FUTURE_SKEW_S = 300.0
STATE_WRITE_RETRIES = 5

__all__ = [
    "MAX_FUTURE_SKEW_S",
    "MAX_PINGS_PER_BATCH",
    "PING_FIELDS",
    "STATE_WRITE_RETRIES",
    "DeviceRun",
    "FenceLiveness",
    "IndexRead",
    "PendingWrite",
    "PingCells",
    "Stepper",
    "Written",
    "handle_pings",
    "parse_pings",
    "ping_result",
    "read_stepper",
    "refusal",
    "step_devices",
    "write_device",
]


# ---------------------------------------------------------------- parsing
def _parse_ping(p: Any, i: int, single: bool, now: float) -> Ping:
    pre = "" if single else f"pings[{i}]"
    if not isinstance(p, dict):
        raise InvalidInput("a ping is an object", pre or "body")
    known_fields(p, PING_FIELDS, pre)
    device_id = p.get("device_id")
    if not is_device_id(device_id):
        raise InvalidInput("device_id must be a valid device id", f"{pre}.device_id".lstrip("."))
    lat = number_field(p, "lat", pre, -90.0, 90.0)
    lng = number_field(p, "lng", pre, -180.0, 180.0)
    acc = number_field(p, "accuracy_m", pre, 0.0, 1e7, required=False)
    speed = number_field(p, "speed_mps", pre, 0.0, 1e4, required=False)
    ts_raw = p.get("timestamp")
    ts = now if ts_raw is None else parse_timestamp(ts_raw, field=f"{pre}.timestamp".lstrip("."))
    if ts > now + MAX_FUTURE_SKEW_S:
        raise InvalidInput("timestamp is in the future", f"{pre}.timestamp".lstrip("."))
    return Ping(device_id, lat, lng, ts, acc, speed, i)  # type: ignore[arg-type]  # lat, lng are required


def parse_pings(body: Any, now: float) -> tuple[list[Ping], bool]:
    """→ (pings, single). A malformed ping rejects the whole request (400
    naming ``pings[i].field``, or just ``field`` for a single ping):
    nothing is applied."""
    if not isinstance(body, dict):
        raise InvalidInput("expected a ping object or {\"pings\": [...]}", "body")
    single = "pings" not in body
    if not single:
        known_fields(body, ("pings",))
    raw = [body] if single else body["pings"]
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("pings must be a non-empty list", "pings")
    if len(raw) > MAX_PINGS_PER_BATCH:
        raise InvalidInput(f"at most {MAX_PINGS_PER_BATCH} pings per request", "pings")
    out = []
    for i, p in enumerate(raw):
        try:
            out.append(_parse_ping(p, i, single, now))
        except InvalidInput as exc:
            exc.field = exc.field.lstrip(".") if exc.field else exc.field
            raise
    return out, single


# ---------------------------------------------------------------- results
def ping_result(p: Ping, accepted: bool, reason: str | None, events: Iterable[Event] = ()) -> Result:
    """One ping's answer; the events ride along (``_events``) until delivery."""
    events = tuple(events)
    r: Result = {"device_id": p.device_id, "accepted": accepted}
    if reason:
        r["reason"] = reason
    r["events"] = [{"type": e.type, "fence_id": e.fence_id, "at": iso(e.at)} for e in events]
    r["deliveries"] = []
    if events:
        r["_events"] = events
    return r


def refusal(device: Device | None) -> str | None:
    """Why this device's pings are not applied, or None when they are."""
    if device is None:
        return "unknown_device"
    if not device.location_consent:
        return "no_location_consent"
    return None


# ---------------------------------------------------------------- stepping
@dataclass(frozen=True)
class PingCells:
    """The resolution-9 cell and its ladder of ancestors, per usable ping
    (pings less accurate than ``max_accuracy_m`` have none)."""

    cell_of: dict[int, int]
    anc_of: dict[int, list[int]]

    @classmethod
    def of(cls, pings: list[Ping], max_accuracy_m: float) -> PingCells:
        usable = [p for p in pings if p.accuracy_m is None or p.accuracy_m <= max_accuracy_m]
        cells9 = np.array([latlng_to_cell(p.lat, p.lng, FINEST) for p in usable], dtype=np.uint64)
        rows = ladder(cells9)
        return cls(
            {p.index: int(c) for p, c in zip(usable, cells9)},
            {p.index: [int(c) for c in row] for p, row in zip(usable, rows)},
        )

    @property
    def all_cells(self) -> list[int]:
        return sorted({c for anc in self.anc_of.values() for c in anc})


class FenceLiveness:
    """Whether a fence a device is inside, with no row near its ping, still
    exists and is enabled. Known up front for the fences the request read
    (or the warm index cache knew); any other (rare: a replay found a state
    with other fences) is read once and remembered for the rest of the
    request."""

    def __init__(self, known: dict[str, bool], fetch: Callable[[list[str]], dict[str, FenceRecord]]) -> None:
        self._known = known
        self._fetch = fetch

    def alive(self, fence_id: str) -> bool:
        if fence_id not in self._known:
            self._known[fence_id] = _alive(self._fetch([fence_id]).get(fence_id))
        return self._known[fence_id]


def _alive(rec: FenceRecord | None) -> bool:
    return rec is not None and rec.enabled


@dataclass(frozen=True)
class DeviceRun:
    """A device's pings stepped: its new state, whether that is worth a
    write, and each ping's result."""

    state: LocationState | None
    changed: bool
    results: dict[int, Result] = field(default_factory=dict)


@dataclass
class Stepper:
    """What stepping a device's pings needs, read once per request."""

    cells: PingCells
    entries_of: dict[int, dict[str, IndexEntry]]
    versions: dict[tuple[str, int], FenceVersion]
    liveness: FenceLiveness
    max_accuracy_m: float
    #: A move to another cell at this resolution is worth a write (0: never).
    location_write_res: int = 0
    #: Fences with rows anywhere in this batch: they exist.
    seen: set[str] = field(init=False)

    def __post_init__(self) -> None:
        self.seen = {fid for ents in self.entries_of.values() for fid in ents}

    def distance(self, p: Ping, m: Match, fence_id: str) -> float | None:
        """Metres from ``p`` to a fence the device is inside that does not
        cover it; ``inf`` beyond any exit buffer, None when gone or disabled."""
        fv = m.near.get(fence_id)
        if fv is not None:
            return fv.shape.distance_m(p.lat, p.lng, horizon_m=exit_buffer_m(p.accuracy_m) + 1.0)
        if fence_id in self.seen:
            return math.inf  # exists (rows elsewhere in this batch), none near the ping
        if not self.liveness.alive(fence_id):
            return None  # deleted or disabled: the visit ends quietly
        return math.inf  # no row near the ping: beyond any exit buffer

    def worth_a_write(self, before: LocationState | None, st: Step) -> bool:
        """A changed step is written when it has events or the visits
        changed, or it moved to another cell at ``location_write_res``;
        a move alone waits for the last-seen refresh otherwise."""
        after = st.state
        if before is None or after is None or st.events or before.inside != after.inside:
            return True
        res = self.location_write_res
        return res > 0 and parent_cell(before.cell, res) != parent_cell(after.cell, res)

    def run(self, device: Device, pings: list[Ping]) -> DeviceRun:
        """Step ``pings`` (oldest first) from the device's stored state."""
        state, changed = device.state, False
        results: dict[int, Result] = {}
        for p in sorted(pings, key=lambda q: (q.ts, q.index)):
            cell = self.cells.cell_of.get(p.index)
            if cell is None:
                results[p.index] = ping_result(p, False, "inaccurate")
                continue
            m = match_fences(p.lat, p.lng, self.entries_of[p.index], self.versions)
            covering = {f: FenceInfo(f, v.dwell_minutes) for f, v in m.covering.items()}
            st = step(state, p, cell, covering, partial(self.distance, p, m), max_accuracy_m=self.max_accuracy_m)
            if st.accepted:
                changed |= st.changed and self.worth_a_write(state, st)
                state = st.state
            results[p.index] = ping_result(p, st.accepted, st.reason, st.events)
        return DeviceRun(state, changed, results)


def read_stepper(
    deps: Deps, pings: list[Ping], cells: PingCells, devices: dict[str, Device], index: IndexRead
) -> Stepper:
    """Round trip 2 (only on a cold cache or an exit far from a fence not
    known to exist): the versions behind the rows, and whether fences left
    behind still exist."""
    entries_of = {i: newest_entries(index.rows, anc) for i, anc in cells.anc_of.items()}
    version_keys = {(f, e.version) for ents in entries_of.values() for f, e in ents.items()}
    gone: set[str] = set()
    for p in pings:
        d = devices.get(p.device_id)
        if p.index in cells.anc_of and d is not None and d.state is not None:
            gone |= set(d.state.inside) - set(entries_of[p.index])
    cache = deps.index_cache
    known = cache.known_alive(gone) if cache is not None and index.epoch is not None else {}
    unknown = gone - known.keys()
    fns: list[Callable[[], Any]] = [lambda: deps.cache.get_many(deps.fences, version_keys)]
    if unknown:
        fns.append(lambda: deps.fences.get_fences(unknown))
    res = deps.parallel(fns)
    read = {fid: _alive(res[1].get(fid)) for fid in unknown} if unknown else {}
    if cache is not None and index.epoch is not None:
        cache.remember_alive(index.epoch, read)
    liveness = FenceLiveness({**known, **read}, deps.fences.get_fences)
    s = deps.settings
    return Stepper(cells, entries_of, res[0], liveness, s.max_accuracy_m, s.location_write_res)


def step_devices(
    stepper: Stepper, pings: list[Ping], devices: dict[str, Device], *, single: bool, now: float, refresh_s: float
) -> tuple[dict[int, Result], list[PendingWrite]]:
    """Every device's pings stepped → (results, the writes worth making).
    A single ping for an unknown device is a 404, for one without location
    consent a 403; in a batch those pings are refused one by one."""
    results: dict[int, Result] = {}
    writes: list[PendingWrite] = []
    by_device: dict[str, list[Ping]] = defaultdict(list)
    for p in pings:
        by_device[p.device_id].append(p)
    for device_id, dpings in by_device.items():
        device = devices.get(device_id)
        reason = refusal(device)
        if reason is not None or device is None:
            if single:
                if device is None:
                    raise NotFound(f"no device {device_id!r}", "device_id")
                raise Forbidden("the device has not consented to location", "consent.location")
            results.update({p.index: ping_result(p, False, reason) for p in dpings})
            continue
        run = stepper.run(device, dpings)
        results.update(run.results)
        # An unchanged device is still written now and then: its last-seen time.
        due = run.state is not None and run.state is not device.state and (now - device.written_at) >= refresh_s
        if run.changed or due:
            writes.append(PendingWrite(device, dpings, run))
    return results, writes


# ---------------------------------------------------------------- writing
@dataclass(frozen=True)
class PendingWrite:
    device: Device
    pings: list[Ping]
    run: DeviceRun


@dataclass(frozen=True)
class Written:
    """A device's write done: the results of a replay (empty when the first
    write landed) and the outbox entries stored with the state."""

    results: dict[int, Result]
    outbox: Entries


def write_device(
    deps: Deps, stepper: Stepper, w: PendingWrite, now: float, *, role: str, secret: str | None
) -> Written:
    """The device's new state, conditional on the version read. The events
    go into the device's outbox in the same write, so a Lambda that dies
    before deciding their pushes leaves them for the next ping. When another
    request moved the device meanwhile, our pings are replayed on its state
    so neither request's transitions are lost."""
    device, run, replayed = w.device, w.run, False
    for _ in range(STATE_WRITE_RETRIES):
        outbox = outbox_entries(run.results.values()) if deps.push is not None else {}
        try:
            deps.devices.save_state(device.device_id, device.state_version, run.state, now, outbox or None)
            return Written(run.results if replayed else {}, outbox)
        except ConcurrentUpdate:
            fresh = deps.devices.get_device(device.device_id, consistent=True)
            retention.forget_expired([fresh], now, retention.location_ttl_s(deps.settings))
            if fresh is not None and role != auth.ADMIN:
                authorize_device(fresh, role, secret)  # deleted and registered again meanwhile
            reason = refusal(fresh)
            if reason is not None or fresh is None:
                return Written({p.index: ping_result(p, False, reason) for p in w.pings}, {})
            device, run, replayed = fresh, stepper.run(fresh, w.pings), True
            if not run.changed:
                return Written(run.results, {})
    raise Unavailable("too many concurrent updates of one device; retry", "device_id")


# ---------------------------------------------------------------- the use case
@dataclass(frozen=True)
class IndexRead:
    """The index rows of every ladder cell of a batch, and the index epoch
    they are valid under (None without the warm index cache)."""

    rows: dict[int, Mapping[str, IndexEntry]]
    epoch: int | None = None


def _read_devices(
    deps: Deps, pings: list[Ping], cells: PingCells, now: float, role: str, secret: str | None
) -> tuple[dict[str, Device], IndexRead]:
    """Round trip 1: the devices and every ladder row of every ping (the
    warm cache's rows, the index epoch they need, and the rest). An app
    key may post for one device only, and needs its secret: checked on the
    device read here (403 before anything is written — for an unknown
    device too; an admin key gets ``unknown_device``)."""
    device_ids = sorted({p.device_id for p in pings})
    if role != auth.ADMIN and len(device_ids) > 1:
        raise Forbidden("an app key may post pings for one device only", "pings")
    read_devices = partial(deps.devices.get_devices, device_ids)
    if deps.index_cache is None:
        devices, rows = deps.both(read_devices, lambda: deps.fences.lookup_cells(cells.all_cells))
        index = IndexRead(dict(rows))
    else:
        devices, index = _read_through_cache(deps, deps.index_cache, cells, read_devices, now)
    retention.forget_expired(devices.values(), now, retention.location_ttl_s(deps.settings))  # an expired location is no state
    if role != auth.ADMIN:
        for did in device_ids:  # an unknown id answers as another device's: 403
            authorize_device(devices.get(did) or unknown_device(did), role, secret)
    return devices, index


def _read_through_cache(
    deps: Deps, cache: IndexCache, cells: PingCells, read_devices: Callable[[], dict[str, Device]], now: float
) -> tuple[dict[str, Device], IndexRead]:
    """The devices, the index epoch and the cells the cache lacks, at once;
    when the epoch moved since the cached rows were read, those are read
    again (a second round trip, once per fence change)."""
    label, cached, missing = cache.split(cells.all_cells, now)
    fns: list[Callable[[], Any]] = [read_devices, deps.fences.index_epoch]
    if missing:
        fns.append(lambda: deps.fences.lookup_cells(missing))
    res = deps.parallel(fns)
    devices, epoch = res[0], res[1]
    fresh: dict[int, Mapping[str, IndexEntry]] = res[2] if missing else {}
    if not cache.settle(label, epoch, missing, fresh, now) and cached:
        again = deps.fences.lookup_cells(list(cached))
        cache.store(epoch, list(cached), again)
        cached = dict(again)
    rows = {c: r for part in (cached, fresh) for c, r in part.items() if r}
    return devices, IndexRead(rows, epoch)


def handle_pings(deps: Deps, body: Any, *, role: str = auth.ADMIN, secret: str | None = None) -> dict[str, Any]:
    """Apply a ping or a batch → ``{"results": [...]}``, one result per ping
    in request order: read → step each device → write (with replay) → deliver."""
    now = deps.clock()
    pings, single = parse_pings(body, now)
    s = deps.settings
    cells = PingCells.of(pings, s.max_accuracy_m)
    devices, index = _read_devices(deps, pings, cells, now, role, secret)
    stepper = read_stepper(deps, pings, cells, devices, index)
    results, writes = step_devices(stepper, pings, devices, single=single, now=now, refresh_s=s.last_seen_refresh_s)
    written = deps.parallel([partial(write_device, deps, stepper, w, now, role=role, secret=secret) for w in writes])
    outboxes: dict[str, Entries] = {}
    for w, done in zip(writes, written):
        results.update(done.results)
        if done.outbox:
            outboxes[w.device.device_id] = done.outbox
    # The state is stored: now the pushes its events cause.
    if deps.push is not None:
        deliver_outboxes(deps, devices, pings, results, outboxes)
    for r in results.values():
        r.pop("_events", None)
    metrics.pings(results.values())
    return {"results": [results[p.index] for p in pings]}
