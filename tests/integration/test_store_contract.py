"""Fences and devices: one contract, two implementations — the in-memory
twins and the DynamoDB repositories (against moto) must behave the same
(the ``stores`` fixture, at two clock offsets)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from chalicelib.geo.cover import Cover
from chalicelib.geo.shape import FenceShape
from chalicelib.presence import LocationState, Visit
from chalicelib.ports import (
    ConcurrentUpdate,
    Device,
    FenceRecord,
    FenceVersion,
    IndexEntry,
    newest_entries,
)


def make(fid, cells, inside, tags=("a",), enabled=True):
    rec = FenceRecord(fid, 0, "polygon", f"name-{fid}", tuple(tags), enabled, 1.5, len(cells),
                      {"type": "Feature", "id": fid, "geometry": None, "properties": {"name": f"name-{fid}"}},
                      "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z")
    shape = FenceShape("polygon", shapely.box(0, 0, 1, 1))
    fv = FenceVersion(fid, 0, f"name-{fid}", tuple(tags), 5.0, shape)
    cov = Cover(np.array(cells, dtype=np.uint64), np.array(inside, dtype=bool))
    return rec, fv, cov


C1, C2, C3 = 0x85283473FFFFFFF, 0x85283477FFFFFFF, 0x8528347BFFFFFFF


def test_put_assigns_versions_and_indexes(stores):
    rec = stores.fences.put_fence(*make("f1", [C1, C2], [True, False]))
    assert rec.version == 1
    assert stores.fences.get_fence("f1").version == 1
    rows = stores.fences.lookup_cells([C1, C2, C3])
    assert rows == {C1: {"f1": IndexEntry(1, True)}, C2: {"f1": IndexEntry(1, False)}}
    fv = stores.fences.get_versions([("f1", 1)])[("f1", 1)]
    assert fv.dwell_minutes == 5.0 and fv.shape.covers(0.5, 0.5) and fv.name == "name-f1"


def test_re_put_replaces_rows(stores):
    stores.fences.put_fence(*make("f1", [C1, C2], [True, False]))
    rec = stores.fences.put_fence(*make("f1", [C2, C3], [True, True], tags=("b",)))
    assert rec.version == 2
    assert stores.fences.lookup_cells([C1, C2, C3]) == {C2: {"f1": IndexEntry(2, True)}, C3: {"f1": IndexEntry(2, True)}}
    assert stores.fences.get_versions([("f1", 1)]) == {}
    assert [r.fence_id for r in stores.fences.list_fences("a", 10, None)[0]] == []
    assert [r.fence_id for r in stores.fences.list_fences("b", 10, None)[0]] == ["f1"]


def test_delete_leaves_no_rows(stores):
    stores.fences.put_fence(*make("f1", [C1, C2], [True, False]))
    stores.fences.put_fence(*make("f2", [C2], [False]))
    assert stores.fences.delete_fence("f1") is True
    assert stores.fences.delete_fence("f1") is False
    assert stores.fences.get_fence("f1") is None
    assert stores.fences.lookup_cells([C1, C2]) == {C2: {"f2": IndexEntry(1, False)}}
    assert stores.fences.list_fences("a", 10, None)[0][0].fence_id == "f2"


def test_every_put_and_delete_raises_the_index_epoch(stores):
    e0 = stores.fences.index_epoch()
    stores.fences.put_fence(*make("f1", [C1], [True]))
    e1 = stores.fences.index_epoch()
    stores.fences.put_fence(*make("f1", [C2], [True]))
    e2 = stores.fences.index_epoch()
    assert stores.fences.delete_fence("f1") is True
    e3 = stores.fences.index_epoch()
    assert e0 < e1 < e2 < e3
    assert stores.fences.delete_fence("f1") is False and stores.fences.index_epoch() == e3  # nothing changed
    assert stores.fences.list_fences(None, 10, None) == ([], None)  # the epoch is no fence


def test_disabled_fence_has_no_rows(stores):
    stores.fences.put_fence(*make("f1", [C1], [True], enabled=False))
    assert stores.fences.lookup_cells([C1]) == {}
    assert stores.fences.get_fence("f1").enabled is False


def test_list_pagination(stores):
    for i in range(7):
        stores.fences.put_fence(*make(f"f{i}", [C1], [True]))
    seen, token = [], None
    while True:
        page, token = stores.fences.list_fences(None, 3, token)
        seen += [r.fence_id for r in page]
        if token is None:
            break
    assert sorted(seen) == [f"f{i}" for i in range(7)] and len(seen) == 7


def test_devices_profile_and_state(stores):
    d = Device("d1", "ios", "tok", None, {"first_name": "Ana"}, {"push": True, "location": True}, True, "t0", "t0")
    assert stores.devices.save_profile(d) is True
    assert stores.devices.save_profile(d) is False
    got = stores.devices.get_device("d1")
    assert got.attributes == {"first_name": "Ana"} and got.state is None
    state = LocationState(38.4, -122.7, 100.0, C1, 5.0, {"f1": Visit(100.0)})
    stores.devices.save_state("d1", got.state_version, state, 100.0)
    with pytest.raises(ConcurrentUpdate):
        stores.devices.save_state("d1", got.state_version, state, 100.0)
    got2 = stores.devices.get_device("d1", consistent=True)
    assert got2.state == state and got2.state_version == got.state_version + 1
    # a profile update keeps the location; withdrawing consent drops it
    stores.devices.save_profile(d)
    assert stores.devices.get_device("d1").state == state
    d.consent = {"push": True, "location": False}
    stores.devices.save_profile(d)
    assert stores.devices.get_device("d1").state is None
    assert stores.devices.delete_device("d1") is True and stores.devices.get_device("d1") is None
    with pytest.raises(ConcurrentUpdate):
        stores.devices.save_state("d1", 0, state, 1.0)  # never resurrects a deleted device


def test_a_ping_batch_reads_devices_and_rows(stores):
    """What a ping batch issues together: the devices (one batched read)
    and the index rows of its cells."""
    stores.fences.put_fence(*make("f1", [C1], [True]))
    stores.devices.save_profile(Device("d1", "android", "tok", consent={"push": True, "location": True}))
    devices = stores.devices.get_devices(["d1", "ghost", "d1"])
    rows = stores.fences.lookup_cells([C1, C2])
    assert set(devices) == {"d1"} and rows == {C1: {"f1": IndexEntry(1, True)}}
    assert devices["d1"] == stores.devices.get_device("d1", consistent=True)
    assert stores.devices.get_devices([]) == {} and stores.fences.lookup_cells([]) == {}


def test_get_devices_reads_more_than_one_batch(stores):
    for i in range(130):
        stores.devices.save_profile(Device(f"d{i:03d}", "ios", f"tok{i}"))
    got = stores.devices.get_devices([f"d{i:03d}" for i in range(140)])
    assert sorted(got) == [f"d{i:03d}" for i in range(130)] and got["d129"].push_token == "tok129"


def test_newest_entries_prefers_the_highest_version():
    rows = {C1: {"f": IndexEntry(1, True)}, C2: {"f": IndexEntry(2, False), "g": IndexEntry(1, True)}}
    assert newest_entries(rows, [C1, C2]) == {"f": IndexEntry(2, False), "g": IndexEntry(1, True)}
