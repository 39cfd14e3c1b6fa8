"""Campaigns, deliveries, frequency caps and device push state: one
contract, two implementations (the in-memory twins and the DynamoDB
repositories against moto), at two clock offsets (``store_clock``): no
test depends on the day it runs."""

from __future__ import annotations

import base64
import threading
from dataclasses import replace

import pytest

from chalicelib.errors import InvalidInput
from chalicelib.presence import LocationState, Visit
from chalicelib.push.model import (
    FAILED,
    HELD,
    PENDING,
    PUBLISHING,
    SENT,
    SUPPRESSED,
    Delivery,
    delivery_id_for,
)
from chalicelib.store.deliveries import DynamoDeliveries
from chalicelib.ports import Device

DAY = 86400.0
C1 = 0x85283473FFFFFFF


def _atomic_moto_writes(monkeypatch) -> None:
    """DynamoDB applies a conditional write to an item atomically; moto
    evaluates the condition and stores the item in separate steps with no
    lock, so threads of one process racing through it could both pass.
    Serialise moto's single-item writes, as AWS does per item."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in ("put_item", "update_item", "delete_item"):
        original = getattr(DynamoDBBackend, name)

        def locked(self, *args, _original=original, **kwargs):
            with lock:
                return _original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, locked)


@pytest.fixture
def store(stores, monkeypatch):
    """Every repository (see ``stores`` in conftest), moto's writes atomic."""
    if isinstance(stores.deliveries, DynamoDeliveries):
        _atomic_moto_writes(monkeypatch)
    return stores


def rec(key: str, at: float, campaign: str = "c1", device: str = "d1", status: str = SENT, **kw) -> Delivery:
    did = delivery_id_for(campaign, device, key)
    return Delivery(did, campaign, device, "geofence_enter", "f1", key, status, at, **kw)


def race(n: int, fn) -> list:
    """Run ``fn(i)`` in ``n`` threads released at once; results by i."""
    barrier = threading.Barrier(n)
    out: list = [None] * n
    errors: list = []

    def run(i):
        try:
            barrier.wait()
            out[i] = fn(i)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return out


# ---------------------------------------------------------------- claims
def test_claim_creates_once_and_later_claims_return_the_record_counting_dups(store, store_clock):
    now = store_clock()
    full = rec("k1", now, status=SENT, reason=None, arm="A", title="Hi", body="Body ✓", deep_link="shop://x",
               coupon_code="STORM-1", coupon_expires_at=now + 3600.25, sns_message_id="m-1", updated_at=now + 1,
               sent_at=now + 0.5, opened_at=now + 9.125, converted_at=now + 99, conversion_value=12.5)
    assert store.deliveries.claim_delivery(full) is None
    retry = replace(full, status=FAILED, title="other", arm="B")
    got = store.deliveries.claim_delivery(retry)
    assert got == replace(full, dups=1)
    assert store.deliveries.claim_delivery(retry).dups == 2
    assert store.deliveries.get_deliveries([full.delivery_id, "dl_missing"]) == {full.delivery_id: replace(full, dups=2)}


def test_concurrent_claims_have_exactly_one_winner(store, store_clock):
    now = store_clock()
    for round_ in range(4):
        d = rec(f"race{round_}", now, status=PENDING)
        results = race(8, lambda i: store.deliveries.claim_delivery(replace(d, title=f"t{i}")))
        winners = [i for i, r in enumerate(results) if r is None]
        assert len(winners) == 1
        stored = store.deliveries.get_deliveries([d.delivery_id])[d.delivery_id]
        assert stored.title == f"t{winners[0]}" and stored.dups == 7
        assert all(r.title == stored.title for r in results if r is not None)


def test_get_deliveries_reads_more_than_one_batch(store, store_clock):
    now = store_clock()
    ds = [rec(f"b{i}", now + i) for i in range(130)]
    for d in ds:
        store.deliveries.claim_delivery(d)
    got = store.deliveries.get_deliveries([d.delivery_id for d in ds])
    assert got == {d.delivery_id: d for d in ds}


# ---------------------------------------------------------------- updates
def test_update_delivery_conditions(store, store_clock):
    now = store_clock()
    d = rec("u1", now, status=PENDING, title="T")
    store.deliveries.claim_delivery(d)
    did = d.delivery_id
    assert store.deliveries.update_delivery(did, {"status": SENT}, expect_status=PUBLISHING) is False
    assert store.deliveries.get_deliveries([did])[did] == d
    assert store.deliveries.update_delivery(did, {"status": PUBLISHING, "updated_at": now + 1}, expect_status=PENDING) is True
    assert store.deliveries.update_delivery(did, {"status": SENT, "sns_message_id": "m1"}, expect_status=PUBLISHING,
                                 absent="sns_message_id") is True
    assert store.deliveries.update_delivery(did, {"opened_at": now + 5}, absent="opened_at") is True
    assert store.deliveries.update_delivery(did, {"opened_at": now + 6}, absent="opened_at") is False
    assert store.deliveries.update_delivery(did, {"sns_message_id": "m2"}, expect_status=SENT, absent="sns_message_id") is False
    assert store.deliveries.update_delivery("dl_unknown", {"status": SENT}) is False
    assert store.deliveries.update_delivery("dl_unknown", {"status": SENT}, expect_status=PENDING) is False
    got = store.deliveries.get_deliveries([did])[did]
    assert (got.status, got.sns_message_id, got.opened_at, got.updated_at) == (SENT, "m1", now + 5, now + 1)
    assert store.deliveries.get_deliveries(["dl_unknown"]) == {}  # never created by an update


def test_update_delivery_none_removes_a_field(store, store_clock):
    now = store_clock()
    d = rec("n1", now, status=SUPPRESSED, reason="quiet_hours", title="T", coupon_expires_at=now + 60)
    store.deliveries.claim_delivery(d)
    assert store.deliveries.update_delivery(d.delivery_id, {"reason": None, "coupon_expires_at": None, "body": "B"}) is True
    got = store.deliveries.get_deliveries([d.delivery_id])[d.delivery_id]
    assert got == replace(d, reason=None, coupon_expires_at=None, body="B")
    # a removed field is absent again
    assert store.deliveries.update_delivery(d.delivery_id, {"reason": "x"}, absent="reason") is True


@pytest.mark.parametrize("changes", [{"nope": 1}, {"delivery_id": "x"}, {"campaign_id": "c9"}, {"status": None}, {}])
def test_update_delivery_rejects_bad_changes(store, store_clock, changes):
    d = rec("v1", store_clock())
    store.deliveries.claim_delivery(d)
    with pytest.raises(ValueError):
        store.deliveries.update_delivery(d.delivery_id, changes)
    with pytest.raises(ValueError):
        store.deliveries.update_delivery(d.delivery_id, {"title": "x"}, absent="nope")


# ---------------------------------------------------------------- listing
def _dataset(now: float) -> list[Delivery]:
    """Records over four UTC days (all within the listing window), three
    campaigns, three devices, three statuses, and two with the same time."""
    midnight = now // DAY * DAY
    out = []
    for i in range(26):
        at = midnight - 50 * 3600 + i * 2.5 * 3600 + 0.123456
        out.append(rec(f"L{i}", at, campaign=f"c{i % 3}", device=f"d{i % 4}", status=(SENT, SUPPRESSED, FAILED)[i % 5 % 3]))
    twin = out[10]
    out.append(rec("twin", twin.created_at, campaign=twin.campaign_id, device=twin.device_id, status=twin.status))
    return out


def _newest_first(ds):
    return sorted(ds, key=lambda d: (d.created_at, d.delivery_id), reverse=True)


def _all_pages(store, limit, **filters):
    seen, token, pages = [], None, 0
    while True:
        page, token = store.deliveries.list_deliveries(limit=limit, next_token=token, **filters)
        pages += 1
        assert len(page) <= limit
        seen.append(page)
        if token is None:
            return seen
        assert len(page) == limit  # a short page is the last one
        assert pages < 100


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"campaign_id": "c1"},
        {"device_id": "d2"},
        {"status": SENT},
        {"campaign_id": "c1", "device_id": "d1"},
        {"campaign_id": "c2", "status": SUPPRESSED},
        {"device_id": "d0", "status": FAILED},
        {"campaign_id": "c0", "device_id": "d0", "status": SENT},
        {"campaign_id": "nobody"},
        {"status": "held"},
    ],
)
def test_list_deliveries_newest_first_across_pages_and_days(store, store_clock, filters):
    now = store_clock()
    data = _dataset(now)
    for d in data:
        store.deliveries.claim_delivery(d)
    assert len({d.created_at // DAY for d in data}) == 4
    want = _newest_first(
        d for d in data
        if all(getattr(d, k) == v for k, v in filters.items())
    )
    for limit in (1, 3, 7, 1000):
        pages = _all_pages(store, limit, **filters)
        assert [d for p in pages for d in p] == want
        if want:
            assert pages[-1]  # no empty page after a full one
    if filters == {"campaign_id": "nobody"}:
        assert store.deliveries.list_deliveries(**filters) == ([], None)


def test_list_deliveries_with_exactly_limit_records_has_no_token(store, store_clock):
    now = store_clock()
    for i in range(4):
        store.deliveries.claim_delivery(rec(f"e{i}", now - i * 3600 * 9))
    page, token = store.deliveries.list_deliveries(limit=4)
    assert len(page) == 4 and token is None
    page, token = store.deliveries.list_deliveries(limit=3)
    assert len(page) == 3 and token is not None
    page2, token2 = store.deliveries.list_deliveries(limit=3, next_token=token)
    assert len(page2) == 1 and token2 is None


def test_list_deliveries_rejects_garbage_and_tampered_tokens(store, store_clock):
    now = store_clock()
    for i in range(5):
        store.deliveries.claim_delivery(rec(f"g{i}", now - i))
    _, token = store.deliveries.list_deliveries(campaign_id="c1", limit=2)
    assert token is not None
    mid = len(token) // 2
    tampered = token[:mid] + ("A" if token[mid] != "A" else "B") + token[mid + 1 :]
    forged = base64.urlsafe_b64encode(b'{"i":"c","k":"0000000001.000000#x"}').decode()
    for bad in ("garbage", "!!!", "%%%%", "A" * 5000, tampered, forged, token + "x"):
        with pytest.raises(InvalidInput) as err:
            store.deliveries.list_deliveries(campaign_id="c1", limit=2, next_token=bad)
        assert err.value.field == "next_token"
    with pytest.raises(InvalidInput):  # a campaign listing's token does not fit a device listing
        store.deliveries.list_deliveries(device_id="d1", limit=2, next_token=token)
    page, _ = store.deliveries.list_deliveries(campaign_id="c1", limit=2, next_token=token)
    assert [d.trigger_key for d in page] == ["g2", "g3"]


def test_campaign_and_device_deliveries(store, store_clock):
    now = store_clock()
    data = _dataset(now)
    for d in data:
        store.deliveries.claim_delivery(d)
    assert list(store.deliveries.campaign_deliveries("c1")) == _newest_first(d for d in data if d.campaign_id == "c1")
    since = data[12].created_at
    want = _newest_first(d for d in data if d.device_id == "d2" and d.created_at >= since)
    assert store.deliveries.device_deliveries("d2", since) == want and want
    assert store.deliveries.device_deliveries("d2", now + 10 * DAY) == []
    assert list(store.deliveries.campaign_deliveries("nobody")) == []


def test_an_unfiltered_listing_reads_tomorrow_back_92_days_by_the_store_clock(store, store_clock):
    """Without a campaign or a device the listing walks the by-day
    partitions from the clock's tomorrow back to 91 days before it (records
    expire after 90 days); both twins apply the same window. Listings by
    campaign or device have none."""
    now = store_clock()
    tomorrow = now // DAY * DAY + DAY
    listed = [rec("w-now", now), rec("w-tomorrow", tomorrow + 60), rec("w-oldest-day", tomorrow - 91 * DAY + 60)]
    unlisted = [rec("w-too-old", tomorrow - 91 * DAY - 60), rec("w-after-tomorrow", tomorrow + DAY + 60)]
    for d in listed + unlisted:
        store.deliveries.claim_delivery(d)
    assert store.deliveries.list_deliveries(limit=100)[0] == _newest_first(listed)
    assert store.deliveries.list_deliveries(status=SENT, limit=100)[0] == _newest_first(listed)
    assert store.deliveries.list_deliveries(campaign_id="c1", limit=100)[0] == _newest_first(listed + unlisted)
    assert store.deliveries.list_deliveries(device_id="d1", limit=100)[0] == _newest_first(listed + unlisted)


@pytest.mark.parametrize("days_later, listed", [(0, True), (60, True), (73, True), (90, True), (92, False), (120, False)])
def test_records_of_a_fixed_day_are_listed_while_the_store_clock_is_within_the_window(store, store_clock, days_later, listed):
    """The listing window follows the store's clock, never the machine's:
    records of 2026-09-21 stay listed for a store whose clock says so,
    whatever day the tests run."""
    t = 1_790_000_000.0
    d = rec("fixed-day", t)
    store.deliveries.claim_delivery(d)
    store_clock.now = t + days_later * DAY
    assert store.deliveries.list_deliveries()[0] == ([d] if listed else [])


# ---------------------------------------------------------------- held
def test_held_records_come_due_at_release_and_leave_when_status_changes(store, store_clock):
    now = store_clock()
    a = rec("h1", now, status=HELD, release_at=now + 100)
    b = rec("h2", now, status=HELD, release_at=now + 50)
    c = rec("h3", now, status=PENDING)
    for d in (a, b, c):
        store.deliveries.claim_delivery(d)
    assert store.deliveries.due_held(now) == []
    assert store.deliveries.due_held(now + 50) == [b]
    assert store.deliveries.due_held(now + 100) == [b, a]  # oldest release first
    assert store.deliveries.due_held(now + 100, limit=1) == [b]
    # pending → held (with its release time) joins; a re-timed hold moves
    assert store.deliveries.update_delivery(c.delivery_id, {"status": HELD, "release_at": now + 75}, expect_status=PENDING)
    assert store.deliveries.update_delivery(a.delivery_id, {"release_at": now + 10})
    assert [d.trigger_key for d in store.deliveries.due_held(now + 80)] == ["h1", "h2", "h3"]
    # leaving held leaves the index
    assert store.deliveries.update_delivery(b.delivery_id, {"status": PUBLISHING, "release_at": None, "updated_at": now + 60},
                                 expect_status=HELD)
    assert store.deliveries.update_delivery(b.delivery_id, {"status": SENT}, expect_status=HELD) is False
    assert store.deliveries.update_delivery(a.delivery_id, {"status": SUPPRESSED}, expect_status=HELD)
    assert [d.trigger_key for d in store.deliveries.due_held(now + 1000)] == ["h3"]
    # back to held without a new release time: the stored one counts
    assert store.deliveries.update_delivery(a.delivery_id, {"status": HELD})
    assert [d.trigger_key for d in store.deliveries.due_held(now + 1000)] == ["h1", "h3"]


def test_a_held_record_keeps_its_trigger_until_release(store, store_clock):
    now = store_clock()
    kept = '{"alert":null,"at":1.5,"fence":["f1","Shop ✓",["a"],{"city":"Santa Rosa"}],"weather":null}'
    d = rec("hk1", now, status=PENDING)
    store.deliveries.claim_delivery(d)
    assert store.deliveries.update_delivery(d.delivery_id, {"status": HELD, "release_at": now + 5, "held_context": kept},
                                            expect_status=PENDING)
    [due] = store.deliveries.due_held(now + 5)
    assert due.held_context == kept and due.title is None
    changes = {"status": PUBLISHING, "release_at": None, "held_context": None, "title": "T", "body": "B", "updated_at": now + 6}
    assert store.deliveries.update_delivery(d.delivery_id, changes, expect_status=HELD)
    out = store.deliveries.get_deliveries([d.delivery_id])[d.delivery_id]
    assert (out.held_context, out.release_at, out.title, out.status) == (None, None, "T", PUBLISHING)


# ---------------------------------------------------------------- open (the sweep)
def test_open_records_become_stale_by_updated_at_and_leave_with_a_final_status(store):
    now = 1_790_000_000.0
    a = rec("o1", now, status=PENDING, updated_at=now)
    b = rec("o2", now + 5, status=PENDING, updated_at=now + 5)
    c = rec("o3", now, status=SENT, updated_at=now)
    h = rec("o4", now, status=HELD, release_at=now + 30, updated_at=now)
    for d in (a, b, c, h):
        store.deliveries.claim_delivery(d)
    assert store.deliveries.stale_open(now - 1) == []
    assert [d.trigger_key for d in store.deliveries.stale_open(now + 10)] == ["o1", "o2"]  # oldest first
    assert [d.trigger_key for d in store.deliveries.stale_open(now + 10, limit=1)] == ["o1"]
    # pending → publishing keeps the open-since time
    assert store.deliveries.update_delivery(a.delivery_id, {"status": PUBLISHING, "title": "T"}, expect_status=PENDING)
    assert [(d.trigger_key, d.status) for d in store.deliveries.stale_open(now + 1)] == [("o1", PUBLISHING)]
    # a lease: only while updated_at is old enough; the winner re-times the record
    assert store.deliveries.update_delivery(b.delivery_id, {"updated_at": now + 100}, expect_status=PENDING, updated_before=now + 4) is False
    assert store.deliveries.update_delivery(b.delivery_id, {"updated_at": now + 100}, expect_status=PENDING, updated_before=now + 5)
    assert store.deliveries.update_delivery(b.delivery_id, {"updated_at": now + 101}, expect_status=PENDING, updated_before=now + 5) is False
    assert [d.trigger_key for d in store.deliveries.stale_open(now + 50)] == ["o1"]
    assert [d.trigger_key for d in store.deliveries.stale_open(now + 100)] == ["o1", "o2"]
    # backdated (an abandoned claim): stale at once
    assert store.deliveries.update_delivery(b.delivery_id, {"updated_at": now - 600}, expect_status=PENDING, updated_before=now + 100)
    assert [d.trigger_key for d in store.deliveries.stale_open(now - 500)] == ["o2"]
    # a record without updated_at counts from its creation
    e = rec("o5", now + 1, status=PENDING)
    store.deliveries.claim_delivery(e)
    assert [d.trigger_key for d in store.deliveries.stale_open(now + 1)] == ["o2", "o1", "o5"]
    assert store.deliveries.update_delivery(e.delivery_id, {"updated_at": now + 9}, expect_status=PENDING, updated_before=now + 1)
    # held → publishing (a release) opens it from the release time
    assert store.deliveries.update_delivery(h.delivery_id, {"status": PUBLISHING, "release_at": None, "updated_at": now + 30},
                                 expect_status=HELD)
    assert [d.trigger_key for d in store.deliveries.stale_open(now + 30)] == ["o2", "o1", "o5", "o4"]
    # any other status leaves
    for d in (a, h):
        assert store.deliveries.update_delivery(d.delivery_id, {"status": FAILED, "reason": "interrupted", "updated_at": now + 40},
                                     expect_status=PUBLISHING)
    assert store.deliveries.update_delivery(b.delivery_id, {"status": SUPPRESSED, "reason": "x", "updated_at": now + 40},
                                 expect_status=PENDING)
    assert store.deliveries.update_delivery(e.delivery_id, {"status": HELD, "release_at": now + 99, "updated_at": now + 40},
                                 expect_status=PENDING)
    assert store.deliveries.stale_open(now + 1000) == []


def test_entering_an_open_status_needs_updated_at(store, store_clock):
    now = store_clock()
    d = rec("p1", now, status=HELD, release_at=now + 1)
    store.deliveries.claim_delivery(d)
    with pytest.raises(ValueError):
        store.deliveries.update_delivery(d.delivery_id, {"status": PUBLISHING}, expect_status=HELD)
    with pytest.raises(ValueError):
        store.deliveries.update_delivery(d.delivery_id, {"status": PENDING})


def test_held_needs_a_release_time(store, store_clock):
    now = store_clock()
    with pytest.raises(ValueError):
        store.deliveries.claim_delivery(rec("x1", now, status=HELD))
    d = rec("x2", now, status=PENDING)
    store.deliveries.claim_delivery(d)
    with pytest.raises(ValueError):
        store.deliveries.update_delivery(d.delivery_id, {"status": HELD})
    with pytest.raises(ValueError):
        store.deliveries.update_delivery(d.delivery_id, {"status": HELD, "release_at": None})
    assert store.deliveries.update_delivery("dl_unknown", {"status": HELD}) is False


# ---------------------------------------------------------------- caps
def test_reserve_send_per_day_counts_the_last_24_hours(store):
    t = 1_790_000_000.0
    assert store.deliveries.reserve_send("c1", "d1", t, 2, None) is True
    assert store.deliveries.reserve_send("c1", "d1", t + 10, 2, None) is True
    assert store.deliveries.reserve_send("c1", "d1", t + 20, 2, None) is False
    assert store.deliveries.reserve_send("c2", "d1", t + 20, 2, None) is True  # per campaign
    assert store.deliveries.reserve_send("c1", "d2", t + 20, 2, None) is True  # per device
    assert store.deliveries.reserve_send("c1", "d1", t + DAY, 2, None) is True  # t left the window (t + DAY - DAY is not > t)
    assert store.deliveries.reserve_send("c1", "d1", t + DAY + 5, 2, None) is False  # t+10 and t+DAY still count
    assert store.deliveries.reserve_send("c1", "d1", t + DAY + 11, 2, None) is True


def test_reserve_send_refusal_counts_nothing(store):
    t = 1_790_000_000.0
    assert store.deliveries.reserve_send("c1", "d1", t, 1, None) is True
    assert store.deliveries.reserve_send("c1", "d1", t + 3600, 1, None) is False
    assert store.deliveries.reserve_send("c1", "d1", t + DAY + 1, 1, None) is True  # the refused t+3600 was not counted


def test_reserve_send_min_gap(store):
    t = 1_790_000_000.0
    assert store.deliveries.reserve_send("c1", "d1", t, None, 60.0) is True
    assert store.deliveries.reserve_send("c1", "d1", t + 30, None, 60.0) is False
    assert store.deliveries.reserve_send("c1", "d1", t + 60, None, 60.0) is True
    assert store.deliveries.reserve_send("c1", "d1", t + 61, 5, 60.0) is False
    assert store.deliveries.reserve_send("c1", "d1", t + 200, 3, 60.0) is True
    assert store.deliveries.reserve_send("c1", "d1", t + 300, 3, 60.0) is False  # per_day reached first
    # a gap longer than a day still sees the last send
    assert store.deliveries.reserve_send("c9", "d1", t, None, 2 * DAY) is True
    assert store.deliveries.reserve_send("c9", "d1", t + 1.5 * DAY, None, 2 * DAY) is False


def test_reserve_send_without_limits_always_allows(store):
    for i in range(5):
        assert store.deliveries.reserve_send("c1", "d1", 1_790_000_000.0 + i, None, None) is True
    assert store.deliveries.reserve_send("c1", "d1", 1_790_000_010.0, 1, None) is True  # nothing was counted


def test_reserve_send_is_race_safe(store):
    t = 1_790_000_000.0
    for round_ in range(3):
        results = race(8, lambda i: store.deliveries.reserve_send("c1", f"dev{round_}", t + i * 0.001, 3, None))
        assert results.count(True) == 3
        assert store.deliveries.reserve_send("c1", f"dev{round_}", t + 1, 3, None) is False


# ---------------------------------------------------------------- campaigns
def test_campaigns_put_get_list_delete(store):
    d1 = {"name": "Storm", "enabled": True, "limits": {"per_device_per_day": 2}, "tags": ["a", "b"], "pct": 12.5}
    r1 = store.campaigns.put_campaign("camp1", d1, "2026-01-01T00:00:00Z")
    assert (r1.campaign_id, r1.version, r1.definition) == ("camp1", 1, d1)
    assert r1.created_at == r1.updated_at == "2026-01-01T00:00:00Z"
    d2 = dict(d1, name="Storm 2")
    r2 = store.campaigns.put_campaign("camp1", d2, "2026-01-02T00:00:00Z")
    assert (r2.version, r2.definition, r2.created_at, r2.updated_at) == (2, d2, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
    assert store.campaigns.get_campaign("camp1") == r2
    store.campaigns.put_campaign("camp2", {"name": "Other"}, "2026-01-03T00:00:00Z")
    assert {(r.campaign_id, r.version) for r in store.campaigns.list_campaigns()} == {("camp1", 2), ("camp2", 1)}
    assert store.campaigns.delete_campaign("camp1") is True
    assert store.campaigns.delete_campaign("camp1") is False
    assert store.campaigns.get_campaign("camp1") is None
    assert [r.campaign_id for r in store.campaigns.list_campaigns()] == ["camp2"]
    # a deleted campaign starts again at version 1
    assert store.campaigns.put_campaign("camp1", d1, "2026-01-04T00:00:00Z").version == 1


def test_list_campaigns_reads_every_page(store):
    big = {"name": "x", "blob": "y" * 50_000}  # ~1 MB scan page holds ~20 of these
    for i in range(30):
        store.campaigns.put_campaign(f"camp{i:02d}", big, "2026-01-01T00:00:00Z")
    assert sorted(r.campaign_id for r in store.campaigns.list_campaigns()) == [f"camp{i:02d}" for i in range(30)]


# ---------------------------------------------------------------- devices
def _device(did: str, arn: str | None = None, location: bool = True) -> Device:
    return Device(did, "ios", "tok", None, {"first_name": "Ana"}, {"push": True, "location": location}, True,
                  "t0", "t0", endpoint_arn=arn)


def test_endpoint_arn_round_trips_through_save_profile(store):
    store.devices.save_profile(_device("d1", arn="arn:aws:sns:us-east-1:123:endpoint/APNS/app/1"))
    assert store.devices.get_device("d1").endpoint_arn == "arn:aws:sns:us-east-1:123:endpoint/APNS/app/1"
    store.devices.save_profile(_device("d1", arn=None))
    assert store.devices.get_device("d1").endpoint_arn is None


def test_set_push_state(store):
    store.devices.save_profile(_device("d1"))
    assert store.devices.set_push_state("d1", "arn:1", True) is True
    got = store.devices.get_device("d1", consistent=True)
    assert (got.endpoint_arn, got.push_enabled, got.attributes) == ("arn:1", True, {"first_name": "Ana"})
    assert store.devices.set_push_state("d1", "arn:1", False) is True
    assert store.devices.get_device("d1").push_enabled is False
    assert store.devices.set_push_state("d1", None, False) is True
    got = store.devices.get_device("d1")
    assert (got.endpoint_arn, got.push_enabled) == (None, False)
    assert store.devices.set_push_state("ghost", "arn:2", True) is False
    assert store.devices.get_device("ghost") is None  # not created


def test_outbox_is_written_with_the_state_and_cleared_by_key(store):
    state = LocationState(38.4, -122.7, 100.0, C1, 5.0, {"f1": Visit(100.0)})
    store.devices.save_profile(_device("d1"))
    a = {"type": "enter", "fence_id": "f1", "at": 100.0, "visit_ts": 100.0}
    b = {"type": "exit", "fence_id": "f2", "at": 100.0, "visit_ts": 40.5}
    store.devices.save_state("d1", 0, state, 100.0, {"ka": a})
    store.devices.save_state("d1", 1, state, 101.0, {"kb": b})  # adds; "ka" stays
    assert store.devices.get_device("d1", consistent=True).outbox == {"ka": a, "kb": b}
    devices = store.devices.get_devices(["d1"])
    assert devices["d1"].outbox == {"ka": a, "kb": b}
    store.devices.save_profile(_device("d1"))  # a re-registration keeps it
    assert set(store.devices.get_device("d1", consistent=True).outbox) == {"ka", "kb"}
    store.devices.clear_outbox("d1", ["ka", "missing"])
    assert store.devices.get_device("d1", consistent=True).outbox == {"kb": b}
    store.devices.clear_outbox("d1", [])
    store.devices.clear_outbox("ghost", ["kb"])  # a deleted device: nothing to do, nothing created
    assert store.devices.get_device("ghost") is None
    store.devices.save_state("d1", 2, state, 102.0)  # no outbox: untouched
    assert store.devices.get_device("d1", consistent=True).outbox == {"kb": b}


def test_get_devices_returns_whole_devices_with_and_without_a_state(store):
    """(Was the ``scan_locations`` contract: that scan is gone, the region
    index serves audiences; its per-device assertions hold for the batched read.)"""
    state = LocationState(38.4, -122.7, 100.0, C1, 5.0, {"f1": Visit(100.0)})
    for i in range(9):
        store.devices.save_profile(_device(f"d{i}", arn=f"arn:{i}"))
    store.devices.save_profile(_device("no-consent", location=False))
    with_state = {f"d{i}" for i in range(9) if i % 3 != 0}
    for did in sorted(with_state):
        store.devices.save_state(did, store.devices.get_device(did, consistent=True).state_version, state, 100.0)
    found = store.devices.get_devices([f"d{i}" for i in range(9)] + ["no-consent"])
    assert sorted(d.device_id for d in found.values() if d.state is not None) == sorted(with_state)
    assert all(d.state == state and d.written_at == 100.0 and d.endpoint_arn == f"arn:{d.device_id[1:]}"
               and d.consent == {"push": True, "location": True} and d.platform == "ios"
               for d in found.values() if d.device_id in with_state)
    assert found["no-consent"].state is None and found["d0"].state is None


# ---------------------------------------------------------------- schema
def test_both_twins_implement_every_repository_method(store):
    from chalicelib import ports

    for field, port in (("fences", ports.FenceRepo), ("devices", ports.DeviceRepo), ("campaigns", ports.CampaignRepo),
                        ("deliveries", ports.DeliveryRepo), ("weather", ports.WeatherRepo)):
        wanted = {n for n in dir(port) if not n.startswith("_")}
        repo = getattr(store, field)
        assert [n for n in sorted(wanted) if n != "region_shards" and not callable(getattr(repo, n, None))] == [], field
    assert {"claim_delivery", "reserve_send"} <= set(dir(ports.DeliveryRepo))
    assert {"put_campaign"} <= set(dir(ports.CampaignRepo))
    assert {"set_push_state", "get_devices"} <= set(dir(ports.DeviceRepo))
    assert isinstance(store.devices.region_shards, int)


def test_create_tables_is_idempotent_and_enables_ttl_on_deliveries(moto_aws):
    import boto3

    from chalicelib.settings import get_settings
    from chalicelib.store.schema import create_tables

    client, settings = boto3.client("dynamodb"), get_settings()
    create_tables(client, settings)  # again: nothing to do
    ttl = client.describe_time_to_live(TableName=settings.deliveries_table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    table = client.describe_table(TableName=settings.deliveries_table)["Table"]
    assert sorted(i["IndexName"] for i in table["GlobalSecondaryIndexes"]) == ["by_campaign", "by_day", "by_device", "held", "open"]
    assert client.describe_table(TableName=settings.campaigns_table)["Table"]["KeySchema"] == [
        {"AttributeName": "campaign_id", "KeyType": "HASH"}
    ]


def test_enabling_ttl_tolerates_already_enabled():
    from botocore.exceptions import ClientError

    from chalicelib.store.schema import _enable_ttl

    class RacingClient:
        """Describes TTL as off, then finds another process enabled it."""

        calls = 0

        def describe_time_to_live(self, TableName):
            return {"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}}

        def update_time_to_live(self, TableName, TimeToLiveSpecification):
            self.calls += 1
            raise ClientError({"Error": {"Code": "ValidationException", "Message": "TimeToLive is already enabled"}},
                              "UpdateTimeToLive")

    client = RacingClient()
    _enable_ttl(client, "t", "expires_at")
    assert client.calls == 1


def test_delivery_items_carry_the_index_keys_and_ttl(dynamo_stores):
    deliveries = dynamo_stores.deliveries
    now = 1_790_000_000.5
    d = rec("keys", now, status=HELD, release_at=now + 60)
    deliveries.claim_delivery(d)
    item = deliveries.table.get({"pk": {"S": d.delivery_id}})
    assert item["ck"] == {"S": f"1790000000.500000#{d.delivery_id}"}
    assert item["day"] == {"S": "D#2026-09-21"}
    assert item["expires_at"] == {"N": str(d.expires_at)}
    assert (item["hk"], item["release_key"]) == ({"S": "HELD"}, {"S": f"1790000060.500000#{d.delivery_id}"})
    assert deliveries.update_delivery(d.delivery_id, {"status": PUBLISHING, "updated_at": now + 60}, expect_status=HELD)
    item = deliveries.table.get({"pk": {"S": d.delivery_id}})
    assert "hk" not in item and "release_key" not in item and item["release_at"] == {"N": "1790000060.5"}
    # open: the sparse keys-only ``open`` index, sharded by id
    from chalicelib.store.schema import open_hash

    assert (item["ok"], item["ot"]) == ({"S": open_hash(d.delivery_id)}, {"S": f"1790000060.500000#{d.delivery_id}"})
    assert deliveries.update_delivery(d.delivery_id, {"status": SENT, "updated_at": now + 61}, expect_status=PUBLISHING)
    item = deliveries.table.get({"pk": {"S": d.delivery_id}})
    assert "ok" not in item and "ot" not in item
