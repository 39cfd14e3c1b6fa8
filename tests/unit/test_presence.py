"""The presence state machine, case by case."""

from __future__ import annotations

import math

from chalicelib.presence import FenceInfo, LocationState, Ping, Visit, exit_buffer_m, step

T0 = 1_790_000_000.0
CELL = 0x8928308280FFFFF


def ping(ts, acc=5.0):
    return Ping("d1", 38.44, -122.7, T0 + ts, acc)


def far(_fid):
    return math.inf


def test_enter_when_covered():
    s = step(None, ping(0), CELL, {"f": FenceInfo("f")}, far)
    assert s.accepted and [(e.type, e.fence_id) for e in s.events] == [("enter", "f")]
    assert s.state.inside == {"f": Visit(T0)} and s.changed


def test_no_flapping_within_the_exit_buffer():
    state = LocationState(38.44, -122.7, T0, CELL, 5.0, {"f": Visit(T0)})
    # 30 m outside with 50 m accuracy: buffer is 50 m, stay inside.
    s = step(state, ping(10, acc=50.0), CELL, {}, lambda f: 30.0)
    assert s.accepted and s.events == () and "f" in s.state.inside and not s.changed
    # 30 m outside with 5 m accuracy: the buffer is clamped up to 10 m → exit.
    s = step(state, ping(20, acc=5.0), CELL, {}, lambda f: 30.0)
    assert [e.type for e in s.events] == ["exit"] and "f" not in s.state.inside


def test_exit_buffer_is_clamped():
    assert exit_buffer_m(1.0) == 10.0 and exit_buffer_m(500.0) == 200.0 and exit_buffer_m(None) == 10.0
    state = LocationState(38.44, -122.7, T0, CELL, 5.0, {"f": Visit(T0)})
    s = step(state, ping(10, acc=900.0), CELL, {}, lambda f: 199.0)
    assert s.events == ()
    s = step(state, ping(10, acc=900.0), CELL, {}, lambda f: 201.0)
    assert [e.type for e in s.events] == ["exit"]


def test_dwell_once_per_visit():
    info = {"f": FenceInfo("f", dwell_minutes=5)}
    s1 = step(None, ping(0), CELL, info, far)
    s2 = step(s1.state, ping(200), CELL, info, far)
    assert s2.events == ()
    s3 = step(s2.state, ping(300), CELL, info, far)
    assert [e.type for e in s3.events] == ["dwell"]
    s4 = step(s3.state, ping(900), CELL, info, far)
    assert s4.events == ()
    # leave and come back: a new visit dwells again
    s5 = step(s4.state, ping(1000), CELL, {}, far)
    s6 = step(s5.state, ping(1100), CELL, info, far)
    s7 = step(s6.state, ping(1400), CELL, info, far)
    assert [e.type for e in s5.events + s6.events + s7.events] == ["exit", "enter", "dwell"]


def test_no_dwell_without_dwell_minutes():
    info = {"f": FenceInfo("f")}
    s1 = step(None, ping(0), CELL, info, far)
    assert step(s1.state, ping(10_000), CELL, info, far).events == ()


def test_duplicate_and_out_of_order_produce_nothing():
    s1 = step(None, ping(100), CELL, {"f": FenceInfo("f")}, far)
    dup = step(s1.state, ping(100), CELL, {}, far)
    old = step(s1.state, ping(50), CELL, {}, far)
    assert (dup.accepted, dup.reason, dup.events) == (False, "duplicate", ())
    assert (old.accepted, old.reason, old.events) == (False, "out_of_order", ())
    assert dup.state is s1.state and old.state is s1.state


def test_inaccurate_pings_update_nothing():
    s = step(None, ping(0, acc=1500.0), CELL, {"f": FenceInfo("f")}, far)
    assert (s.accepted, s.reason, s.state, s.events) == (False, "inaccurate", None, ())


def test_deleted_fence_ends_the_visit_without_an_exit():
    state = LocationState(38.44, -122.7, T0, CELL, 5.0, {"f": Visit(T0)})
    s = step(state, ping(10), CELL, {}, lambda f: None)
    assert s.events == () and s.state.inside == {} and s.changed


def test_events_are_ordered_exit_enter_dwell():
    state = LocationState(38.44, -122.7, T0, CELL, 5.0, {"a": Visit(T0), "b": Visit(T0 - 3600)})
    s = step(state, ping(10), CELL, {"b": FenceInfo("b", 1), "c": FenceInfo("c")}, far)
    assert [(e.type, e.fence_id) for e in s.events] == [("exit", "a"), ("enter", "c"), ("dwell", "b")]


def test_state_round_trips_through_json():
    state = LocationState(38.44, -122.7, T0, CELL, 5.0, {"a": Visit(T0, True)})
    assert LocationState.from_json(state.to_json()) == state


def test_moving_within_a_cell_is_not_a_change():
    s1 = step(None, ping(0), CELL, {}, far)
    s2 = step(s1.state, ping(5), CELL, {}, far)
    assert s2.accepted and not s2.changed
    assert step(s2.state, ping(6), CELL + 1, {}, far).changed
