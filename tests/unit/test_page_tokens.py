"""Listing page tokens are outside input: their checksum's key is in this
source, so a forged token passes it. Every value inside is checked —
anything but a token this code could have made is a 400 naming
``next_token``, never another error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.errors import InvalidInput
from chalicelib.store import memory_stores
from chalicelib.store.schema import decode_page_token, delivery_sort_key, encode_page_token
from tests.conftest import FakeClock
from tests.hostile import forged_page_token

FORGED = ["9" * 400 + ".000000#dl_x", "99999999999.000000#dl_x", "-999999999.000000#dl_x", "0000000000.000000#",
          "1790000000.000000", "x", "", "1e9#dl_x", "inf#dl_x", "nan.000000#dl_x"]


@pytest.mark.parametrize("key", FORGED)
def test_a_forged_token_with_a_valid_checksum_is_a_400(key):
    with pytest.raises(InvalidInput) as exc:
        decode_page_token(forged_page_token(key), "d")
    assert exc.value.field == "next_token"


def test_a_token_this_code_made_round_trips():
    ck = delivery_sort_key(1_790_000_000.25, "dl_abc")
    for index in ("c", "v", "d"):
        assert decode_page_token(encode_page_token(index, ck), index) == ck
    with pytest.raises(InvalidInput):
        decode_page_token(encode_page_token("c", ck), "d")  # another listing's token


@settings(max_examples=300, deadline=None)
@given(head=st.one_of(st.integers(min_value=-(10**30), max_value=10**30).map(str), st.text(max_size=30)),
       frac=st.text(alphabet="0123456789", min_size=0, max_size=8), tail=st.text(max_size=20),
       index=st.sampled_from(["c", "v", "d"]))
def test_any_forged_token_lists_or_is_a_400(head, frac, tail, index):
    deliveries = memory_stores(clock=FakeClock()).deliveries
    token = forged_page_token(f"{head}.{frac}#{tail}", index)
    filters = {"c": {"campaign_id": "c1"}, "v": {"device_id": "d1"}, "d": {}}[index]
    try:
        items, _ = deliveries.list_deliveries(limit=10, next_token=token, **filters)
    except InvalidInput as exc:
        assert exc.field == "next_token"
    else:
        assert items == []


@pytest.mark.parametrize("index", ["c", "v", "d"])
def test_forged_tokens_on_both_stores_are_400s(stores, index):
    """The DynamoDB store turns the token's time into a date (the ``by_day``
    partition): a time no calendar holds must never get that far."""
    filters = {"c": {"campaign_id": "c1"}, "v": {"device_id": "d1"}, "d": {}}[index]
    for key in FORGED:
        with pytest.raises(InvalidInput):
            stores.deliveries.list_deliveries(limit=10, next_token=forged_page_token(key, index), **filters)
    with pytest.raises(InvalidInput) as exc:  # empty is not "the first page" (found by the contract fuzz run)
        stores.deliveries.list_deliveries(limit=10, next_token="", **filters)
    assert exc.value.field == "next_token"
    far = forged_page_token("9999999999.000000#dl_x", index)  # 2286: a date, an empty page
    assert stores.deliveries.list_deliveries(limit=10, next_token=far, **filters) == ([], None)
