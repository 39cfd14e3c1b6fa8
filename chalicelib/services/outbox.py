"""The device outbox: the presence events a ping stored together with the
device's new state, and the pushes they cause once that state is stored.

A Lambda that dies between the state write and the push decision leaves
the events in the outbox; the device's next ping delivers them. Deciding
twice is harmless: each decision is claimed once."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from chalicelib.presence import Ping
from chalicelib.push.model import FenceContext, Trigger
from chalicelib.ports import Device, FenceRecord
from chalicelib.weather.conditions import weather_at_many

if TYPE_CHECKING:
    from chalicelib.services.deps import Deps

#: One ping's result as the ping pipeline builds it (``_events`` until delivery).
Result = dict[str, Any]
#: Outbox entries of one device, by key.
Entries = dict[str, dict[str, Any]]

__all__ = ["Entries", "Result", "deliver_outboxes", "outbox_entries", "outbox_key"]


def outbox_key(entry: Mapping[str, Any]) -> str:
    """The occasion of an entry: the same event stored twice has one key."""
    raw = f"{entry['type']}|{entry['fence_id']}|{entry['visit_ts']:.3f}"
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def outbox_entries(results: Iterable[Result]) -> Entries:
    """The events of these results as outbox entries, keyed by occasion."""
    entries: Entries = {}
    for r in results:
        for e in r.get("_events", ()):
            entry = {"type": e.type, "fence_id": e.fence_id, "at": e.at, "visit_ts": e.visit_ts if e.visit_ts is not None else e.at}
            entries[outbox_key(entry)] = entry
    return entries


def _pending(devices: Mapping[str, Device], pinged: Iterable[str], written: Mapping[str, Entries]) -> dict[str, Entries]:
    """Per device: what an earlier request left in its outbox, plus what this one wrote."""
    pinged = set(pinged)
    todo: dict[str, Entries] = {}
    for device_id, device in devices.items():
        if device.outbox and device_id in pinged:
            todo[device_id] = dict(device.outbox)
    for device_id, entries in written.items():
        todo.setdefault(device_id, {}).update(entries)
    return todo


def _weather_of(
    deps: Deps, devices: Mapping[str, Device], pings: list[Ping], results: Mapping[int, Result], todo: Mapping[str, Entries]
) -> dict[str, Any]:
    """The weather where each device is now (``weather.*``, campaign weather
    conditions): its latest accepted ping, else its stored location; one
    read for the whole request."""
    where: dict[str, tuple[float, float]] = {}
    for p in sorted(pings, key=lambda q: q.ts):
        if p.device_id in todo and results[p.index].get("accepted"):
            where[p.device_id] = (p.lat, p.lng)
    for device_id in todo:
        st = devices[device_id].state
        if device_id not in where and st is not None:
            where[device_id] = (st.lat, st.lng)
    order = sorted(where)
    found = weather_at_many(deps.weather, [where[d] for d in order], deps.clock()) if order else []
    return dict(zip(order, found))


def _triggers(entries: Entries, records: Mapping[str, FenceRecord], wx: Any) -> list[tuple[str, Trigger]]:
    """The entries as push triggers (oldest first), keyed by outbox key."""
    keyed: list[tuple[str, Trigger]] = []
    for key, e in sorted(entries.items(), key=lambda kv: (kv[1]["at"], kv[0])):
        rec = records.get(e["fence_id"])
        props = rec.feature.get("properties", {}) if rec else {}
        fence = FenceContext(
            e["fence_id"],
            rec.name if rec else e["fence_id"],
            tuple(rec.tags) if rec else (),
            dict(props.get("metadata") or {}),
        )
        t = Trigger.geofence(e["type"], fence, e["visit_ts"], e["at"])
        keyed.append((key, replace(t, weather=wx) if wx else t))
    return keyed


def deliver_outboxes(
    deps: Deps, devices: Mapping[str, Device], pings: list[Ping], results: Mapping[int, Result], written: Mapping[str, Entries]
) -> None:
    """Decide the pushes of every outbox entry — the events just stored, and
    any a previous request stored but did not get to — then clear them. The
    delivery ids go into the result of the ping that caused the event (a
    leftover's into the device's first ping)."""
    first_ping: dict[str, int] = {}
    key_ping: dict[tuple[str, str], int] = {}
    for p in pings:
        first_ping.setdefault(p.device_id, p.index)
        for key in outbox_entries([results[p.index]]):
            key_ping[(p.device_id, key)] = p.index
    todo = _pending(devices, first_ping, written)
    if not todo:
        return
    # Campaigns and their templates (Liquid, babel) load with the first event
    # to deliver: a ping that moves no device across a fence never imports them.
    from chalicelib.services import delivery

    records = deps.fences.get_fences({e["fence_id"] for entries in todo.values() for e in entries.values()})
    weather_of = _weather_of(deps, devices, pings, results, todo)
    for device_id, entries in todo.items():
        keyed = _triggers(entries, records, weather_of.get(device_id))
        ids = delivery.deliver(deps, devices[device_id], [t for _, t in keyed])
        for key, t in keyed:
            index = key_ping.get((device_id, key), first_ping[device_id])
            for did in ids.get(t.key, []):
                if did not in results[index]["deliveries"]:
                    results[index]["deliveries"].append(did)
        deps.devices.clear_outbox(device_id, list(entries))
