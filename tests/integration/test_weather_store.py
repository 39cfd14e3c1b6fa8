"""Weather storage: one contract, the in-memory twin and the DynamoDB
repository (against moto) — alert records, lineages, feed state, conditions."""

from __future__ import annotations

import threading

import pytest

from chalicelib.store.memory_weather import MemoryWeather
from chalicelib.store.weather import feed_key

NOW = 1_790_000_000.0
LATER = NOW + 86400
URL = "https://api.weather.gov/alerts/active?status=actual"
C1, C2, C3 = 0x85283473FFFFFFF, 0x85283477FFFFFFF, 0x8528347BFFFFFFF


@pytest.fixture
def store(stores):
    """The weather repository of each twin (see ``stores`` in conftest)."""
    return stores.weather


def obs(observed_at, condition="rain", temperature_c=12.5, **extra):
    return {"condition": condition, "temperature_c": temperature_c, "observed_at": observed_at,
            "precipitation_mm_h": extra.get("precipitation_mm_h"), "wind_kph": extra.get("wind_kph")}


# ---------------------------------------------------------------- alert records
def test_alert_record_is_created_once(store):
    rec = {"lineage": "L1", "status": "processed", "fingerprint": "abc", "processed_at": NOW + 0.25,
           "devices_targeted": 3, "deliveries": 2}
    assert store.put_alert_record("urn:oid:2.49.0.1.840.0.a", rec, LATER) is True
    assert store.put_alert_record("urn:oid:2.49.0.1.840.0.a", {**rec, "status": "ignored"}, LATER) is False
    got = store.get_alert_records(["urn:oid:2.49.0.1.840.0.a", "unknown", "urn:oid:2.49.0.1.840.0.a"])
    assert got == {"urn:oid:2.49.0.1.840.0.a": rec}


def test_alert_records_in_one_batch_are_created_once_each(store):
    store.put_alert_record("old", {"status": "processed"}, LATER)
    ids = [f"urn:oid:b.{i}" for i in range(230)]  # three transactions
    batch = [(i, {"status": "queued", "n": k}, LATER) for k, i in enumerate(ids)]
    batch[5:5] = [("old", {"status": "queued"}, LATER)]
    batch.append((ids[7], {"status": "ignored"}, LATER))
    assert store.put_alert_records(batch) == set(ids)  # not "old"; ids[7] once, its first record
    records = store.get_alert_records(ids + ["old"])
    assert records["old"] == {"status": "processed"}
    assert records[ids[7]] == {"status": "queued", "n": 7}
    assert all(records[i]["n"] == k for k, i in enumerate(ids))
    assert store.put_alert_records(batch) == set()  # every id now exists
    assert store.put_alert_records([]) == set()


def test_alert_records_of_nothing_and_of_many(store):
    assert store.get_alert_records([]) == {}
    ids = [f"NWS-IDP-PROD-{i}" for i in range(130)]  # more than one BatchGetItem
    for i in ids[:120]:
        store.put_alert_record(i, {"lineage": i, "status": "processed"}, LATER)
    got = store.get_alert_records(ids)
    assert sorted(got) == sorted(ids[:120])
    assert got["NWS-IDP-PROD-7"] == {"lineage": "NWS-IDP-PROD-7", "status": "processed"}


def test_advance_alert_moves_only_from_the_named_statuses(store):
    store.put_alert_record("a", {"status": "queued", "received_at": NOW}, LATER)
    assert store.advance_alert("a", {"status": "planning", "lease_until": NOW + 60}, LATER, from_status=("queued",))
    assert not store.advance_alert("a", {"status": "planning"}, LATER, from_status=("queued",))  # the other consumer
    assert store.advance_alert("a", {"status": "processed", "devices_targeted": 2}, LATER, from_status=("planning",))
    assert store.get_alert_records(["a"]) == {"a": {"status": "processed", "devices_targeted": 2}}
    assert not store.advance_alert("missing", {"status": "planning"}, LATER, from_status=("queued", "planning"))
    assert store.get_alert_records(["missing"]) == {}


def test_forget_alert_removes_only_a_queued_record(store):
    store.put_alert_record("q", {"status": "queued"}, LATER)
    store.put_alert_record("p", {"status": "processed"}, LATER)
    store.forget_alert("q")
    store.forget_alert("p")
    store.forget_alert("never")
    assert set(store.get_alert_records(["q", "p"])) == {"p"}
    assert store.put_alert_record("q", {"status": "queued"}, LATER)  # taken again on retry


def test_members_are_filed_once_and_the_first_lineage_wins(store):
    assert store.get_members(["a", "b"]) == {}
    assert store.add_members(["a", "b", "a"], "a", LATER) == {"a": "a", "b": "a"}
    assert store.add_members(["b", "c"], "c", LATER) == {"b": "a", "c": "c"}
    assert store.get_members(["a", "b", "c", "d"]) == {"a": "a", "b": "a", "c": "c"}


def test_members_filed_in_one_batch_keep_an_earlier_lineage(store):
    store.add_members(["x"], "L0", LATER)
    ids = [f"m{i}" for i in range(150)]  # two transactions
    batch = [("x", "L1", LATER)] + [(i, f"L{k % 3}", LATER) for k, i in enumerate(ids)] + [("m4", "L9", LATER)]
    assert store.file_members(batch) == set(ids)  # not x; m4 once
    got = store.get_members(ids + ["x"])
    assert got["x"] == "L0" and got["m4"] == "L1"
    assert all(got[i] == f"L{k % 3}" for k, i in enumerate(ids))
    assert store.file_members(batch) == set()


def test_concurrent_filings_agree_on_one_lineage(store):
    got: list[dict] = []
    threads = [threading.Thread(target=lambda i=i: got.append(store.add_members(["root", f"m{i}"], f"L{i}", LATER)))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({g["root"] for g in got}) == 1
    assert store.get_members(["root"])["root"] == got[0]["root"]


# ---------------------------------------------------------------- lineages
def test_touch_lineage_creates_then_appends(store):
    first = store.touch_lineage("a1", "a1", NOW, LATER)
    assert first == {"ended": False, "ended_reason": None, "alert_ids": ["a1"], "updated_at": NOW}
    store.touch_lineage("a1", "a2", NOW + 60, LATER)
    again = store.touch_lineage("a1", "a2", NOW + 120, LATER)  # the same id twice: a set
    assert again == {"ended": False, "ended_reason": None, "alert_ids": ["a1", "a2"], "updated_at": NOW + 120}
    assert store.get_lineages(["a1", "nope"]) == {"a1": again}
    assert store.get_lineages([]) == {}


def test_end_lineage_is_idempotent_and_keeps_the_first_reason(store):
    store.touch_lineage("a1", "a1", NOW, LATER)
    store.end_lineage("a1", "cancel", NOW + 10, LATER)
    store.end_lineage("a1", "expired", NOW + 20, LATER)
    assert store.get_lineages(["a1"])["a1"] == {"ended": True, "ended_reason": "cancel", "alert_ids": ["a1"],
                                               "updated_at": NOW + 20}


def test_a_cancellation_seen_first_makes_later_updates_see_an_ended_lineage(store):
    store.end_lineage("root", "vtec_can", NOW, LATER)
    assert store.get_lineages(["root"])["root"] == {"ended": True, "ended_reason": "vtec_can", "alert_ids": [],
                                                   "updated_at": NOW}
    after = store.touch_lineage("root", "update-1", NOW + 5, LATER)
    assert after["ended"] is True and after["ended_reason"] == "vtec_can" and after["alert_ids"] == ["update-1"]


def test_touch_lineage_rejects_an_empty_alert_id(store):
    with pytest.raises(ValueError):
        store.touch_lineage("a1", "", NOW, LATER)


# ---------------------------------------------------------------- feed state
def test_feed_state_round_trip_and_replace(store):
    assert store.get_feed_state(URL) is None
    state = {"etag": '"abc"', "last_modified": "Mon, 21 Sep 2026 12:00:00 GMT", "fetched_at": NOW + 0.5,
             "status": "ok", "max_age": 30.0}
    store.put_feed_state(URL, state)
    assert store.get_feed_state(URL) == state
    assert store.get_feed_state(URL + "&area=OR") is None
    store.put_feed_state(URL, {"etag": None, "last_modified": None, "fetched_at": NOW + 60, "status": "ok"})
    assert store.get_feed_state(URL) == {"etag": None, "last_modified": None, "fetched_at": NOW + 60,
                                         "status": "ok", "max_age": None}


def test_feed_state_rejects_unknown_fields(store):
    with pytest.raises(ValueError):
        store.put_feed_state(URL, {"etag": "x", "body": "..."})


def test_feed_key_is_stable_and_short():
    assert feed_key(URL) == feed_key(URL) != feed_key(URL + " ")
    assert len(feed_key(URL)) == len("FEED#") + 32


# ---------------------------------------------------------------- conditions
def test_conditions_round_trip_with_optional_fields(store):
    store.put_conditions([(C1, obs(NOW, precipitation_mm_h=2.5, wind_kph=30), NOW + 3600),
                          (C2, obs(NOW, "clear", -3.25), NOW + 3600)])
    assert store.get_conditions([C1, C2, C3], NOW + 1) == {
        C1: obs(NOW, precipitation_mm_h=2.5, wind_kph=30.0),
        C2: obs(NOW, "clear", -3.25),
    }
    assert store.get_conditions([], NOW) == {}


def test_expired_conditions_are_absent_before_ttl_deletes_them(store):
    store.put_conditions([(C1, obs(NOW), NOW + 3600)])
    assert C1 in store.get_conditions([C1], NOW + 3599)
    assert store.get_conditions([C1], NOW + 3600) == {}


def test_a_newer_observation_wins_whatever_the_write_order(store):
    store.put_conditions([(C1, obs(NOW, "rain"), NOW + 3600)])
    store.put_conditions([(C1, obs(NOW - 600, "snow"), NOW + 3000)])  # older: ignored
    assert store.get_conditions([C1], NOW)[C1]["condition"] == "rain"
    store.put_conditions([(C1, obs(NOW + 600, "storm"), NOW + 4200)])  # newer: replaces
    assert store.get_conditions([C1], NOW)[C1] == obs(NOW + 600, "storm")


def test_one_batch_keeps_the_newest_per_cell(store):
    store.put_conditions([
        (C1, obs(NOW - 10, "fog"), NOW + 3600),
        (C1, obs(NOW, "hail"), NOW + 3600),
        (C1, obs(NOW - 20, "rain"), NOW + 3600),
        (C2, obs(NOW, "wind"), NOW + 3600),
    ])
    got = store.get_conditions([C1, C2], NOW)
    assert got[C1]["condition"] == "hail" and got[C2]["condition"] == "wind"


def test_many_cells_in_one_write(store):
    import h3.api.basic_int as h3i

    cells = sorted(h3i.grid_disk(C1, 6))  # 127 cells: several batch requests
    store.put_conditions([(c, obs(NOW, temperature_c=float(i % 40)), NOW + 3600) for i, c in enumerate(cells)])
    got = store.get_conditions(cells, NOW)
    assert sorted(got) == cells
    assert [got[c]["temperature_c"] for c in cells] == [float(i % 40) for i in range(len(cells))]


def test_observation_needs_its_fields(store):
    with pytest.raises(ValueError):
        store.put_conditions([(C1, {"condition": "rain", "observed_at": NOW}, NOW + 60)])


# ---------------------------------------------------------------- memory: thread safety
def test_memory_lineage_updates_from_many_threads_lose_nothing():
    s = MemoryWeather()
    ids = [f"a{i}" for i in range(200)]

    def work(chunk):
        for i in chunk:
            s.touch_lineage("L", i, NOW, LATER)
            s.put_alert_record(i, {"lineage": "L"}, LATER)

    threads = [threading.Thread(target=work, args=(ids[k::8],)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s.get_lineages(["L"])["L"]["alert_ids"] == sorted(ids)
    assert len(s.get_alert_records(ids)) == 200


def test_memory_store_returns_copies():
    s = MemoryWeather()
    s.put_alert_record("a", {"lineage": "a", "list": [1]}, LATER)
    s.get_alert_records(["a"])["a"]["list"].append(2)
    assert s.get_alert_records(["a"])["a"]["list"] == [1]
    s.put_conditions([(C1, obs(NOW), NOW + 60)])
    s.get_conditions([C1], NOW)[C1]["condition"] = "changed"
    assert s.get_conditions([C1], NOW)[C1]["condition"] == "rain"


def test_alerts_table_has_ttl_on_expires_at(moto_aws):
    import boto3

    from chalicelib.settings import get_settings

    desc = boto3.client("dynamodb").describe_time_to_live(TableName=get_settings().alerts_table)
    assert desc["TimeToLiveDescription"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
