"""Devices' budgets and shared push tokens, on both stores (the in-memory
twin and DynamoDB on moto): the profile's size in stored bytes is checked
before any side effect, an SNS endpoint is held by one device record at a
time (:class:`chalicelib.ports.EndpointClaim`), and a failed write leaves
no endpoint behind."""

from __future__ import annotations

import json

import pytest

from chalicelib import auth
from chalicelib.errors import PayloadTooLarge
from chalicelib.ports import ConcurrentUpdate, Device, EndpointClaim, EndpointHandover
from chalicelib.services import devices as svc
from chalicelib.services.delivery import CampaignCache
from chalicelib.services.deps import Deps
from chalicelib.store import memory_stores
from chalicelib.store.ddb import MAX_ITEM_BYTES, item_bytes
from chalicelib.store.devices import profile_bytes
from chalicelib.services.fence_cache import VersionCache
from tests.fake_push import FakePushGateway


@pytest.fixture(params=["memory", "dynamodb"])
def deps(request, settings, clock):
    if request.param == "memory":
        stores = memory_stores(clock=clock, region_shards=4)
    else:
        stores = request.getfixturevalue("dynamo_repos")
    return Deps.over(stores, settings, clock=clock, cache=VersionCache(),
                     push=FakePushGateway(one_endpoint_per_token=True), campaign_cache=CampaignCache(0))


def body(token="tok-shared", **changes):
    return {"platform": "android", "push_token": token, "consent": {"push": True, "location": True}, **changes}


def register(deps, device_id, token="tok-shared", **changes):
    return svc.register_device(deps, device_id, body(token, **changes), role=auth.ADMIN)


def raw_item(deps, device_id):
    table = deps.devices.table
    return table.get({"device_id": {"S": device_id}}, consistent=True)


# ---------------------------------------------------------------- shared tokens
def test_a_token_registered_again_under_another_id_moves_its_endpoint(deps):
    register(deps, "old-install")
    arn = deps.devices.get_device("old-install").endpoint_arn
    register(deps, "new-install")
    new, old = deps.devices.get_device("new-install"), deps.devices.get_device("old-install")
    assert new.endpoint_arn == arn and new.push_enabled
    # the old record no longer pushes to the phone the token now belongs to
    assert old.endpoint_arn is None and not old.push_enabled
    assert deps.devices.get_endpoint_claim(arn).owner == "new-install"


def test_deleting_one_of_two_records_of_a_token_keeps_the_endpoint_the_other_uses(deps):
    register(deps, "old-install")
    register(deps, "new-install")
    arn = deps.devices.get_device("new-install").endpoint_arn
    svc.delete_device(deps, "old-install")
    assert arn in deps.push.endpoints
    svc.delete_device(deps, "new-install")
    assert arn not in deps.push.endpoints
    assert deps.devices.get_endpoint_claim(arn) is None


def test_the_owner_deleted_first_takes_the_endpoint_and_its_claim(deps):
    register(deps, "a")
    arn = deps.devices.get_device("a").endpoint_arn
    svc.delete_device(deps, "a")
    assert arn not in deps.push.endpoints and deps.devices.get_endpoint_claim(arn) is None
    register(deps, "b")  # the same token: a new endpoint, claimed afresh
    assert deps.devices.get_endpoint_claim(deps.devices.get_device("b").endpoint_arn).owner == "b"


def test_a_new_token_releases_the_claim_on_the_old_endpoint_when_it_moves(deps):
    register(deps, "a", platform="android")
    first = deps.devices.get_device("a").endpoint_arn
    register(deps, "a", platform="ios")  # another platform application: another endpoint
    second = deps.devices.get_device("a").endpoint_arn
    assert second != first
    assert deps.devices.get_endpoint_claim(first) is None
    assert deps.devices.get_endpoint_claim(second).owner == "a"
    assert first not in deps.push.endpoints and second in deps.push.endpoints


def test_the_token_going_back_and_forth_leaves_one_owner(deps):
    for device_id in ("a", "b", "a", "b", "a"):
        register(deps, device_id)
    arn = deps.devices.get_device("a").endpoint_arn
    assert deps.devices.get_device("b").endpoint_arn is None
    assert deps.devices.get_endpoint_claim(arn).owner == "a"
    svc.delete_device(deps, "b")
    assert arn in deps.push.endpoints


# ---------------------------------------------------------------- nothing half-written
def test_a_failed_store_write_deletes_the_endpoint_it_created(deps, monkeypatch):
    def broken(device, **kw):
        raise RuntimeError("the database is down")

    monkeypatch.setattr(deps.devices, "save_profile", broken)
    with pytest.raises(RuntimeError):
        register(deps, "d1", token="tok-lonely")
    assert deps.push.creates == 1 and deps.push.endpoints == {}
    assert deps.devices.get_device("d1") is None


def test_a_failed_store_write_keeps_an_endpoint_another_device_holds(deps, monkeypatch):
    register(deps, "holder")
    arn = deps.devices.get_device("holder").endpoint_arn
    real = deps.devices.save_profile
    monkeypatch.setattr(deps.devices, "save_profile", lambda device, **kw: (_ for _ in ()).throw(RuntimeError("down")))
    with pytest.raises(RuntimeError):
        register(deps, "newcomer")
    monkeypatch.setattr(deps.devices, "save_profile", real)
    assert arn in deps.push.endpoints
    assert deps.devices.get_device("holder").endpoint_arn == arn
    assert deps.devices.get_device("newcomer") is None


# ---------------------------------------------------------------- the stored size
DOCUMENTED_MAX = {f"k{i:02d}" + "n" * 61: "v" * 1024 for i in range(64)}


def test_the_documented_maximum_in_ascii_is_stored(deps):
    register(deps, "big", attributes=DOCUMENTED_MAX, user_id="u" * 256, token="t" * 4096)
    got = deps.devices.get_device("big")
    assert got.attributes == DOCUMENTED_MAX
    if hasattr(deps.devices, "table"):
        item = raw_item(deps, "big")
        assert item_bytes(item) <= svc.MAX_PROFILE_BYTES < MAX_ITEM_BYTES


@pytest.mark.parametrize("char", ["é", "中", "😀"])
def test_multibyte_attributes_at_the_documented_counts_are_413_before_any_side_effect(deps, char):
    attrs = {f"{char}{i:02d}" + char * 61: char * 1024 for i in range(64)}
    with pytest.raises(PayloadTooLarge) as exc:
        register(deps, "mb", attributes=attrs)
    assert exc.value.field == "attributes"
    assert deps.push.creates == 0 and deps.devices.get_device("mb") is None


def test_multibyte_text_within_the_byte_budget_is_stored_as_utf8(deps):
    attrs = {f"k{i}": "😀" * 300 for i in range(64)}  # 76.8 KB as UTF-8; 4x that as \\u escapes
    register(deps, "emoji", attributes=attrs)
    assert deps.devices.get_device("emoji").attributes == attrs
    if hasattr(deps.devices, "table"):
        assert item_bytes(raw_item(deps, "emoji")) < svc.MAX_PROFILE_BYTES


def test_profile_bytes_counts_what_dynamodb_stores(dynamo_repos):
    device = Device("d1", "ios", "t" * 100, user_id="ü" * 50, attributes={"名前": "太郎", "n": 1.5, "b": True},
                    consent={"push": True, "location": False}, endpoint_arn="arn:aws:sns:x", secret_hash="sha256:" + "0" * 64,
                    created_at="2026-01-01T00:00:00Z", updated_at="2026-01-01T00:00:00Z")
    dynamo_repos.devices.save_profile(device, create=True)
    stored = dynamo_repos.devices.table.get({"device_id": {"S": "d1"}}, consistent=True)
    assert item_bytes(stored) == profile_bytes(device)
    assert json.loads(stored["attrs"]["S"]) == device.attributes and "太郎" in stored["attrs"]["S"]


# ---------------------------------------------------------------- the store contract
@pytest.fixture(params=["memory", "dynamodb"])
def devices(request, clock):
    if request.param == "memory":
        return memory_stores(clock=clock).devices
    return request.getfixturevalue("dynamo_repos").devices


def dev(device_id, arn=None, **kw):
    return Device(device_id, "android", "tok", consent={"push": True, "location": True}, endpoint_arn=arn,
                  push_enabled=arn is not None, **kw)


def test_contract_a_profile_write_takes_the_claim(devices):
    devices.save_profile(dev("a", "arn:1"), create=True, handover=EndpointHandover())
    assert devices.get_endpoint_claim("arn:1") == EndpointClaim("arn:1", "a", 1)
    # held already: only checked, so concurrent updates of one device never conflict over it
    for _ in range(2):
        devices.save_profile(dev("a", "arn:1"), create=False, handover=EndpointHandover(seen=EndpointClaim("arn:1", "a", 1)))
    assert devices.get_endpoint_claim("arn:1") == EndpointClaim("arn:1", "a", 1)


def test_contract_a_claim_lost_meanwhile_fails_the_holders_update(devices):
    devices.save_profile(dev("a", "arn:1"), create=True, handover=EndpointHandover())
    held = devices.get_endpoint_claim("arn:1")
    devices.save_profile(dev("b", "arn:1"), create=True, handover=EndpointHandover(seen=held, displace=True))
    with pytest.raises(ConcurrentUpdate):  # "a" read its claim before "b" took it
        devices.save_profile(dev("a", "arn:1", user_id="late"), create=False, handover=EndpointHandover(seen=held))
    a = devices.get_device("a")
    assert a.endpoint_arn is None and a.user_id is None


def test_contract_a_stale_claim_writes_nothing(devices):
    devices.save_profile(dev("a", "arn:1"), create=True, handover=EndpointHandover())
    for seen in (None, EndpointClaim("arn:1", "a", 7), EndpointClaim("arn:1", "z", 1)):
        with pytest.raises(ConcurrentUpdate):
            devices.save_profile(dev("b", "arn:1"), create=True, handover=EndpointHandover(seen=seen))
        assert devices.get_device("b") is None
        assert devices.get_endpoint_claim("arn:1") == EndpointClaim("arn:1", "a", 1)


def test_contract_displacing_clears_the_previous_holders_endpoint(devices):
    devices.save_profile(dev("a", "arn:1"), create=True, handover=EndpointHandover())
    seen = devices.get_endpoint_claim("arn:1")
    devices.save_profile(dev("b", "arn:1"), create=True, handover=EndpointHandover(seen=seen, displace=True))
    a = devices.get_device("a")
    assert a.endpoint_arn is None and not a.push_enabled
    assert devices.get_endpoint_claim("arn:1") == EndpointClaim("arn:1", "b", 2)


def test_contract_displacing_a_holder_that_moved_on_writes_nothing(devices):
    devices.save_profile(dev("a", "arn:1"), create=True, handover=EndpointHandover())
    seen = devices.get_endpoint_claim("arn:1")
    devices.set_push_state("a", "arn:9", True)  # "a" no longer uses arn:1 (as the condition sees it)
    with pytest.raises(ConcurrentUpdate):
        devices.save_profile(dev("b", "arn:1"), create=True, handover=EndpointHandover(seen=seen, displace=True))
    assert devices.get_device("b") is None and devices.get_device("a").endpoint_arn == "arn:9"


def test_contract_release_removes_the_old_claim_with_the_profile(devices):
    devices.save_profile(dev("a", "arn:1"), create=True, handover=EndpointHandover())
    old = devices.get_endpoint_claim("arn:1")
    devices.save_profile(dev("a", "arn:2"), create=False, handover=EndpointHandover(release=old))
    assert devices.get_endpoint_claim("arn:1") is None
    assert devices.get_endpoint_claim("arn:2").owner == "a"


def test_contract_delete_releases_the_claim_or_nothing(devices):
    devices.save_profile(dev("a", "arn:1"), create=True, handover=EndpointHandover())
    claim = devices.get_endpoint_claim("arn:1")
    with pytest.raises(ConcurrentUpdate):
        devices.delete_device("a", release=EndpointClaim("arn:1", "a", 5))
    assert devices.get_device("a") is not None and devices.get_endpoint_claim("arn:1") == claim
    assert devices.delete_device("a", release=claim) is True
    assert devices.get_device("a") is None and devices.get_endpoint_claim("arn:1") is None


def test_contract_claims_are_not_devices(devices):
    devices.save_profile(dev("a", "arn:1"), create=True, handover=EndpointHandover())
    assert set(devices.get_devices(["a", "claim"])) == {"a"}
    assert devices.expire_locations(written_before=1e12) == (0, True)


# ---------------------------------------------------------------- with SNS's own semantics (moto)
def test_shared_token_on_dynamodb_and_sns(dynamo_repos, clock):
    """The real SNS gateway on moto: SNS hands the second registration of a
    token the first one's endpoint; deleting the first record keeps it."""
    import boto3

    from chalicelib.push.sns import SnsGateway
    from chalicelib.settings import get_settings

    sns = boto3.client("sns")
    deps = Deps.over(dynamo_repos, get_settings(), clock=clock, cache=VersionCache(),
                     push=SnsGateway(sns, get_settings(), sleep=lambda s: None), campaign_cache=CampaignCache(0))
    register(deps, "old-install")
    register(deps, "new-install")
    arn = deps.devices.get_device("new-install").endpoint_arn
    assert arn is not None and deps.devices.get_device("old-install").endpoint_arn is None
    svc.delete_device(deps, "old-install")
    assert sns.get_endpoint_attributes(EndpointArn=arn)["Attributes"]["Enabled"] == "true"
    svc.delete_device(deps, "new-install")
    with pytest.raises(sns.exceptions.NotFoundException):
        sns.get_endpoint_attributes(EndpointArn=arn)


@pytest.mark.parametrize("reasons, expect", [
    ([{"Code": "None"}, {"Code": "ConditionalCheckFailed"}], "lost"),
    ([{"Code": "TransactionConflict"}], "lost"),
    ([{"Code": "ThrottlingError"}], "unavailable"),
    ([{"Code": "ValidationError"}], "raised"),
])
def test_a_cancelled_transaction_is_a_lost_race_throttling_or_an_error(reasons, expect):
    from botocore.exceptions import ClientError

    from chalicelib.errors import Unavailable
    from chalicelib.retry import RetryPolicy
    from chalicelib.store.table import Table

    class Cancelling:
        def transact_write_items(self, **kw):
            raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                               "CancellationReasons": reasons}, "TransactWriteItems")

    table = Table(Cancelling(), "t", pool=None, retry=RetryPolicy(0, 0, 0, clock=lambda: 0.0, sleep=lambda s: None))  # type: ignore[arg-type]
    if expect == "lost":
        assert table.transact_if([]) is False
    elif expect == "unavailable":
        with pytest.raises(Unavailable):
            table.transact_if([])
    else:
        with pytest.raises(ClientError):
            table.transact_if([])
