"""The ``by_region`` index's in-memory twin (what
:meth:`chalicelib.store.devices.DynamoDevices.devices_in_ranges` reads)."""

from __future__ import annotations

import numpy as np

from chalicelib.ports import Device, RegionQuery
from chalicelib.weather.region import location_cell, region_keys


def _light(d: Device) -> Device:
    """What the ``by_region`` index projects of a device (positional: a
    million-device benchmark builds them)."""
    return Device(d.device_id, "", "", None, {}, dict(d.consent), d.push_enabled, "", "", d.state, d.state_version,
                  0.0, None, {})


class RegionIndex:
    """The ``by_region`` GSI's fake. Like the GSI it keeps its own copy of
    what it projects, written with the device: device → (rc, cell9, light
    Device); and, per partition, a sorted array of cells with the parallel
    light Devices, rebuilt lazily on the first read after a device entered,
    left or moved (a million devices: ~0.5 s). Other changes (consent, push
    flag, a new location in the same cell) update the arrays in place."""

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self.entries: dict[str, tuple[str, int, Device]] = {}
        self.dirty = False
        self.parts: dict[str, tuple[int, int]] = {}
        self.cells = np.zeros(0, np.uint64)
        self.devs = np.zeros(0, object)
        self.pos: dict[str, int] = {}

    def set(self, device_id: str, device: Device | None) -> None:
        """Index ``device`` as stored now (None or no location: not indexed)."""
        if device is None or device.state is None:
            if self.entries.pop(device_id, None) is not None:
                self.dirty = True
            return
        cell = location_cell(device.state)
        rc, _ = region_keys(device_id, cell, self.shards)
        light = _light(device)
        old = self.entries.get(device_id)
        self.entries[device_id] = (rc, cell, light)
        if old is None or old[:2] != (rc, cell):
            self.dirty = True
        elif not self.dirty:
            self.devs[self.pos[device_id]] = light

    def rebuild(self) -> None:
        n = len(self.entries)
        names: dict[str, int] = {}
        values = self.entries.values()
        code = np.fromiter((names.setdefault(rc, len(names)) for rc, _, _ in values), dtype=np.int64, count=n)
        cells = np.fromiter((c for _, c, _ in values), dtype=np.uint64, count=n)
        devs = np.fromiter((d for _, _, d in values), dtype=object, count=n)
        order = np.lexsort((cells, code))
        code, self.cells, self.devs = code[order], cells[order], devs[order]
        bounds = np.searchsorted(code, np.arange(len(names) + 1))
        self.parts = {rc: (int(bounds[k]), int(bounds[k + 1])) for rc, k in names.items()}
        self.pos = {d.device_id: i for i, d in enumerate(self.devs.tolist())}
        self.dirty = False

    def find(self, queries: list[RegionQuery]) -> tuple[list[Device], int]:
        """The index's Devices in the queries' ranges (each once), and how
        many items the range reads return (duplicates included)."""
        if self.dirty:
            self.rebuild()
        spans: list[np.ndarray] = []
        for q in queries:
            part = self.parts.get(q.partition)
            if part is None or not q.ranges:
                continue
            a, b = part
            r = np.array(q.ranges, dtype=np.uint64).reshape(-1, 2)
            start = a + np.searchsorted(self.cells[a:b], r[:, 0], side="left")
            stop = a + np.searchsorted(self.cells[a:b], r[:, 1], side="right")
            spans += [np.arange(s, e) for s, e in zip(start.tolist(), stop.tolist()) if e > s]
        if not spans:
            return [], 0
        at = np.concatenate(spans)
        return self.devs[np.unique(at)].tolist(), len(at)
