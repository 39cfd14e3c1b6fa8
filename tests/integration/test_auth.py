"""Authentication over HTTP (chalice.test.Client over moto) and the device
secret in DynamoDB:

* every route × {no key, unknown key, app key, admin key} → 401 / 403 / its
  own answer, with the documented error body naming the header;
* hashed keys, two per role during a rotation;
* app-key calls for a device need its ``X-Device-Secret`` (missing, wrong
  or another device's → 403 and nothing written); admin keys need none;
* the secret is answered once, and only its hash is on the device item;
* of concurrent first registrations exactly one gets a secret — on the
  DynamoDB adapter as on the fake (same store contract)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import threading

import boto3
import pytest

from app import app as hexcast_app
from chalicelib import auth
from chalicelib.api import common
from chalicelib.services.deps import Deps
from chalicelib.errors import Forbidden
from tests.fake_push import FakePushGateway
from chalicelib.services.pings import handle_pings
from chalicelib.settings import get_settings
from chalicelib.store import dynamo_stores, memory_stores
from chalicelib.ports import ConcurrentUpdate, Device
from tests.conftest import ADMIN_KEY, APP_KEY, FakeClock, moto_app_client
from tests.unit.test_auth import _race_first_registrations

MOTO_ACCOUNT, MOTO_REGION = "123456789012", "us-east-1"
ADMIN_NEXT, APP_NEXT = "test-admin-key-2", "test-app-key-2"  # the keys being rotated in

CIRCLE = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-122.7, 38.44]},
          "properties": {"radius_m": 100, "name": "Shop", "tags": ["shop"]}}
DEVICE = {"platform": "android", "push_token": "tok-d1", "consent": {"push": True, "location": True}}
CAMPAIGN = {"name": "Hi", "trigger": {"type": "geofence_enter", "fence_ids": ["shop"]}, "message": {"title": "Hi", "body": "there"}}
PING = {"device_id": "d1", "lat": 38.44, "lng": -122.7, "accuracy_m": 5}
EVENT = {"device_id": "d1", "type": "conversion"}

OPEN = {("GET", "/v1/health"), ("GET", "/v1/openapi.json")}
APP_ROUTES = {("PUT", "/v1/devices/{device_id}"), ("DELETE", "/v1/devices/{device_id}"), ("POST", "/v1/pings"), ("POST", "/v1/events")}
#: Path parameters: existing things, except that a DELETE aims at nothing (404) so no row changes the shared world.
PARAMS = {"device_id": "d1", "fence_id": "shop", "campaign_id": "c1"}
DELETE_PARAMS = {"device_id": "nobody", "fence_id": "nowhere", "campaign_id": "nothing"}
BODIES = {
    ("PUT", "/v1/devices/{device_id}"): DEVICE,
    ("POST", "/v1/pings"): PING,
    ("POST", "/v1/events"): EVENT,
    ("PUT", "/v1/geofences/{fence_id}"): CIRCLE,
    ("POST", "/v1/geofences/import"): {"type": "FeatureCollection", "features": []},
    ("PUT", "/v1/campaigns/{campaign_id}"): CAMPAIGN,
    ("POST", "/v1/campaigns/{campaign_id}/preview"): {"device_id": "d1"},
    ("POST", "/v1/audience/estimate"): {"fence_id": "shop"},
    ("POST", "/v1/weather/conditions"): {"observations": []},
    ("POST", "/v1/weather/alerts"): {"type": "FeatureCollection", "features": []},
}
QUERIES = {("GET", "/v1/geofences/lookup"): "?lat=38.44&lng=-122.7"}

#: Every HTTP route of the app, read from the app itself: a new route is in this matrix (as admin-only) the day it exists.
ROUTES = sorted((m, p) for p, methods in hexcast_app.routes.items() for m in methods)


def concrete(method: str, template: str, admin: bool) -> tuple[str, str | None]:
    params = DELETE_PARAMS if method == "DELETE" and admin else PARAMS
    path = re.sub(r"\{(\w+)\}", lambda m: params.get(m.group(1), "x"), template) + QUERIES.get((method, template), "")
    body = BODIES.get((method, template), {} if method in ("PUT", "POST") else None)
    return path, None if body is None else json.dumps(body)


def headers(key: str | None = None, secret: str | None = None) -> dict:
    h = {"Content-Type": "application/json"}
    if key is not None:
        h["X-Api-Key"] = key
    if secret is not None:
        h["X-Device-Secret"] = secret
    return h


def body(resp):
    return json.loads(resp.body) if resp.body else None


def snapshot() -> dict:
    """Every item of every table, from moto's memory: the proof nothing was written."""
    from moto.dynamodb.models import dynamodb_backends

    tables = dynamodb_backends[MOTO_ACCOUNT][MOTO_REGION].tables
    return {name: sorted(json.dumps(i.to_json(), sort_keys=True, default=repr) for i in t.all_items()) for name, t in tables.items()}


def device_item(device_id: str) -> dict:
    return boto3.client("dynamodb").get_item(TableName=get_settings().devices_table, Key={"device_id": {"S": device_id}}, ConsistentRead=True)["Item"]


@contextlib.contextmanager
def moto_app():
    """conftest's ``api``, with the keys as a deployed stage has them
    mid-rotation: two hashes per role, no plaintext anywhere."""
    with moto_app_client({
        "HEXCAST_ADMIN_KEY_HASHES": f"{auth.hash_token(ADMIN_KEY)},{auth.hash_token(ADMIN_NEXT)}",
        "HEXCAST_APP_KEY_HASHES": f"{auth.hash_token(APP_KEY)},{auth.hash_token(APP_NEXT)}",
        "HEXCAST_COUPON_SECRET": "test-coupon-secret", "HEXCAST_CAMPAIGN_CACHE_S": "0",
    }, unset=("HEXCAST_ADMIN_KEY", "HEXCAST_APP_KEY")) as client:
        yield client


class World:
    """d1 (registered with the app key: ``secret``), fence shop, campaign c1."""

    def __init__(self, api):
        self.api = api
        r = api.http.put("/v1/devices/d1", headers=headers(APP_KEY), body=json.dumps(DEVICE))
        assert r.status_code == 200, r.body
        self.secret = body(r)["device_secret"]
        self.other_secret = body(self.register("d9"))["device_secret"]  # another phone's
        assert api.http.put("/v1/geofences/shop", headers=headers(ADMIN_KEY), body=json.dumps(CIRCLE)).status_code == 200
        assert api.http.put("/v1/campaigns/c1", headers=headers(ADMIN_KEY), body=json.dumps(CAMPAIGN)).status_code == 200

    def call(self, method, path, key=None, secret=None, payload=None, raw=None):
        data = raw if raw is not None else (json.dumps(payload) if payload is not None else None)
        return getattr(self.api.http, method.lower())(path, headers=headers(key, secret), body=data)

    def register(self, device_id, key=APP_KEY, secret=None, **changes):
        return self.call("PUT", f"/v1/devices/{device_id}", key, secret, {**DEVICE, "push_token": f"tok-{device_id}", **changes})


@pytest.fixture(scope="class")
def world():
    """One World per test class, torn down before any function-scoped moto
    starts (the two never nest): each row of the class proves it wrote nothing."""
    with moto_app() as client:
        yield World(client)


@pytest.fixture
def fresh():
    """A world of its own, for tests that change it."""
    with moto_app() as client:
        yield World(client)


# ---------------------------------------------------------------- the matrix and the secrets, over HTTP
APP_CALLS = {
    "re-register": ("PUT", "/v1/devices/d1", {**DEVICE, "push_token": "tok-attacker", "consent": {"push": True, "location": False}}),
    "ping": ("POST", "/v1/pings", {**PING, "lat": 40.0}),
    "ping-batch": ("POST", "/v1/pings", {"pings": [{**PING, "lat": 40.0}, {**PING, "lat": 40.1}]}),
    "event": ("POST", "/v1/events", EVENT),
    "delete": ("DELETE", "/v1/devices/d1", None),
}


def test_the_matrix_knows_the_routes():
    assert OPEN | APP_ROUTES <= set(ROUTES) and len(ROUTES) >= 20


class TestKeysAndSecrets:
    """Rows sharing one World: each proves it wrote nothing (or only what an admin may)."""

    @pytest.mark.parametrize("method, template", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
    @pytest.mark.parametrize("who", ["no-key", "unknown-key", "app-key", "admin-key", "next-admin-key"])
    def test_route_by_key(self, world, method, template, who):
        path, raw = concrete(method, template, admin=who.endswith("admin-key"))
        key = {"no-key": None, "unknown-key": "not-a-key", "app-key": APP_KEY, "admin-key": ADMIN_KEY, "next-admin-key": ADMIN_NEXT}[who]
        before = snapshot()
        r = world.call(method, path, key, raw=raw)
        err = (body(r) or {}).get("error") if r.status_code >= 400 else None

        if (method, template) in OPEN:
            assert r.status_code == 200, r.body
            return
        if who == "no-key":
            assert r.status_code == 401 and (err["code"], err["field"]) == ("unauthorized", "X-Api-Key"), r.body
        elif who == "unknown-key":
            assert r.status_code == 403 and (err["code"], err["field"]) == ("forbidden", "X-Api-Key"), r.body
        elif who == "app-key" and (method, template) not in APP_ROUTES:
            assert r.status_code == 403 and (err["code"], err["field"]) == ("forbidden", "X-Api-Key"), r.body
        elif who == "app-key":  # an app route for the existing d1, but no X-Device-Secret
            assert r.status_code == 403 and (err["code"], err["field"]) == ("forbidden", "X-Device-Secret"), r.body
        else:  # both admin keys of the rotation: past auth, whatever the route then answers
            assert r.status_code not in (401, 403) and r.status_code < 500, r.body
            return
        assert err["message"] and set(err) == {"code", "message", "field"}
        assert snapshot() == before  # a refused request writes nothing

    @pytest.mark.parametrize("key", [APP_KEY, APP_NEXT])
    def test_both_app_keys_of_a_rotation_reach_the_app_routes_with_the_secret(self, world, key):
        r = world.call("POST", "/v1/pings", key, world.secret, {**PING, "lng": -122.71})
        assert r.status_code == 200, r.body
        assert world.call("POST", "/v1/events", key, world.secret, EVENT).status_code == 202
        r = world.call("PUT", "/v1/devices/d1", key, world.secret, DEVICE)
        assert r.status_code == 200 and "device_secret" not in body(r)

    def test_after_a_rotation_the_retired_keys_are_refused(self, world, monkeypatch):
        s = get_settings()
        rotated = dataclasses.replace(s, admin_key_hashes=(auth.hash_token(ADMIN_NEXT),), app_key_hashes=(auth.hash_token(APP_NEXT),))
        monkeypatch.setattr(common, "get_settings", lambda: rotated)
        for old, new in ((ADMIN_KEY, ADMIN_NEXT), (APP_KEY, APP_NEXT)):
            r = world.call("POST", "/v1/pings", old, world.secret, PING)
            assert r.status_code == 403 and body(r)["error"]["field"] == "X-Api-Key"
            assert world.call("POST", "/v1/pings", new, world.secret, {**PING, "lng": -122.7001}).status_code == 200

    @pytest.mark.parametrize("call", APP_CALLS, ids=list(APP_CALLS))
    @pytest.mark.parametrize("presented", ["missing", "empty", "wrong", "other-device", "the-hash", "huge"])
    def test_an_app_call_without_the_devices_secret_is_403_and_writes_nothing(self, world, call, presented):
        method, path, payload = APP_CALLS[call]
        secret = {"missing": None, "empty": "", "wrong": "A" * 43, "other-device": world.other_secret,
                  "the-hash": auth.hash_token(world.secret), "huge": "s" * 8000}[presented]
        before = snapshot()
        r = world.call(method, path, APP_KEY, secret, payload)
        assert r.status_code == 403, r.body
        assert body(r)["error"]["code"] == "forbidden" and body(r)["error"]["field"] == "X-Device-Secret"
        assert snapshot() == before


def test_the_secret_is_answered_once_and_only_its_hash_is_stored(fresh):
    r = fresh.register("d7")
    assert r.status_code == 200
    secret = body(r)["device_secret"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)  # 32 random bytes, URL-safe
    item = device_item("d7")
    assert item["secret_hash"] == {"S": auth.hash_token(secret)}
    dumped = json.dumps(snapshot())
    assert secret not in dumped  # nowhere in any table, in any attribute
    # a second registration (the app re-installed the same profile) answers no secret and keeps the hash
    for key, sec in ((APP_KEY, secret), (ADMIN_KEY, None)):
        r = fresh.register("d7", key, sec, attributes={"first_name": "Ana"})
        assert r.status_code == 200 and "device_secret" not in body(r), r.body
        assert device_item("d7")["secret_hash"] == {"S": auth.hash_token(secret)}
    # the secret is not part of what an admin reads back either
    r = fresh.call("GET", "/v1/devices/d7", ADMIN_KEY)
    assert r.status_code == 200 and b"secret" not in r.body


def test_with_its_secret_an_app_does_everything_for_its_device(fresh):
    secret = fresh.secret
    assert fresh.call("POST", "/v1/pings", APP_KEY, secret, PING).status_code == 200
    assert fresh.call("POST", "/v1/pings", APP_KEY, secret, {"pings": [{**PING, "lng": -122.71}, {**PING, "lng": -122.72}]}).status_code == 200
    assert fresh.call("POST", "/v1/events", APP_KEY, secret, EVENT).status_code == 202
    assert fresh.call("PUT", "/v1/devices/d1", APP_KEY, secret, {**DEVICE, "push_token": "tok-rotated"}).status_code == 200
    assert fresh.call("DELETE", "/v1/devices/d1", APP_KEY, secret).status_code == 204
    assert fresh.call("GET", "/v1/devices/d1", ADMIN_KEY).status_code == 404
    # the id is free again: a new registration, a new secret; the old one is worthless
    r = fresh.register("d1")
    assert r.status_code == 200 and body(r)["device_secret"] != secret
    assert fresh.call("POST", "/v1/pings", APP_KEY, secret, PING).status_code == 403


def test_admin_keys_need_no_device_secret(fresh):
    assert fresh.call("PUT", "/v1/devices/d1", ADMIN_KEY, None, {**DEVICE, "push_token": "tok-admin"}).status_code == 200
    assert fresh.call("POST", "/v1/pings", ADMIN_KEY, None, PING).status_code == 200
    assert fresh.call("POST", "/v1/events", ADMIN_KEY, None, EVENT).status_code == 202
    fresh.register("d2")
    r = fresh.call("POST", "/v1/pings", ADMIN_KEY, None, {"pings": [PING, {**PING, "device_id": "d2"}]})
    assert r.status_code == 200 and [x["accepted"] for x in body(r)["results"]] == [True, True]
    assert fresh.call("DELETE", "/v1/devices/d1", ADMIN_KEY).status_code == 204


def test_an_app_key_request_touches_one_device(fresh):
    r = fresh.register("d2")
    before = snapshot()
    for secret in (fresh.secret, body(r)["device_secret"]):
        r = fresh.call("POST", "/v1/pings", APP_KEY, secret, {"pings": [PING, {**PING, "device_id": "d2"}]})
        assert r.status_code == 403 and body(r)["error"]["field"] == "pings"
    # the event's device must be the one whose secret is presented
    r = fresh.call("POST", "/v1/events", APP_KEY, fresh.secret, {**EVENT, "device_id": "d2"})
    assert r.status_code == 403 and body(r)["error"]["field"] == "X-Device-Secret"
    # and the path's: d1's secret does not delete or re-register d2
    assert fresh.call("DELETE", "/v1/devices/d2", APP_KEY, fresh.secret).status_code == 403
    assert fresh.call("PUT", "/v1/devices/d2", APP_KEY, fresh.secret, DEVICE).status_code == 403
    assert snapshot() == before


def test_an_app_key_cannot_tell_an_unknown_device_from_another_devices(fresh):
    """Unknown and foreign ids get the same 403 (status, field, message) with
    an app key, with and without a secret; the admin key gets the 404."""
    fresh.register("d2")
    for method, payload_for in (("POST /v1/pings", lambda d: {**PING, "device_id": d}),
                                ("POST /v1/events", lambda d: {**EVENT, "device_id": d}),
                                ("DELETE /v1/devices/{}", lambda d: None)):
        verb, path = method.split(" ")
        for secret in ("anything", None):
            answers = []
            for device_id in ("ghost", "d2"):
                r = fresh.call(verb, path.format(device_id), APP_KEY, secret, payload_for(device_id))
                answers.append((r.status_code, body(r)["error"]))
            assert answers[0] == answers[1] and answers[0][0] == 403, answers
            assert answers[0][1]["field"] == "X-Device-Secret"
    for verb, path, payload in (("POST", "/v1/events", {**EVENT, "device_id": "ghost"}),
                                ("DELETE", "/v1/devices/ghost", None)):
        r = fresh.call(verb, path, ADMIN_KEY, None, payload)
        assert r.status_code == 404 and body(r)["error"]["field"] == "device_id", r.body


# ---------------------------------------------------------------- the store contract and the race
@pytest.fixture(params=["memory", "dynamodb"])
def store(request):
    """The device repository: the in-memory twin, or DynamoDB on moto."""
    if request.param == "memory":
        return memory_stores(clock=FakeClock()).devices
    return request.getfixturevalue("dynamo_repos").devices


def _dev(secret_hash=None, token="tok"):
    return Device("d1", "android", token, consent={"push": True, "location": True}, secret_hash=secret_hash)


def test_creation_is_conditional_and_never_replaces_a_secret(store):
    h1, h2 = auth.hash_token("one"), auth.hash_token("two")
    assert store.save_profile(_dev(h1), create=True) is True
    with pytest.raises(ConcurrentUpdate):
        store.save_profile(_dev(h2, token="tok-2"), create=True)
    got = store.get_device("d1", consistent=True)
    assert (got.secret_hash, got.push_token) == (h1, "tok")  # the loser wrote nothing


def test_an_update_holds_only_while_the_checked_secret_is_stored(store):
    h1, h2 = auth.hash_token("one"), auth.hash_token("two")
    store.save_profile(_dev(h1), create=True)
    assert store.save_profile(_dev(h1, token="tok-2"), create=False) is False
    assert store.get_device("d1").push_token == "tok-2"
    for stale in (h2, None):
        with pytest.raises(ConcurrentUpdate):
            store.save_profile(_dev(stale, token="tok-3"), create=False)
    assert store.get_device("d1", consistent=True).secret_hash == h1 and store.get_device("d1").push_token == "tok-2"
    with pytest.raises(ConcurrentUpdate):
        store.save_profile(Device("gone", "android", "tok", secret_hash=h1), create=False)  # never creates
    assert store.get_device("gone") is None
    # the fixtures' upsert keeps a stored hash too
    store.save_profile(_dev(h2, token="tok-4"))
    assert store.get_device("d1", consistent=True).secret_hash == h1


def test_a_conditional_delete_takes_only_the_checked_device(store):
    h1 = auth.hash_token("one")
    store.save_profile(_dev(h1), create=True)
    with pytest.raises(ConcurrentUpdate):
        store.delete_device("d1", secret_hash=auth.hash_token("other"))
    assert store.get_device("d1") is not None
    assert store.delete_device("d1", secret_hash=h1) is True and store.get_device("d1") is None
    with pytest.raises(ConcurrentUpdate):
        store.delete_device("d1", secret_hash=h1)


class _AtomicWrites:
    """DynamoDB applies each request atomically; moto's in-process backend
    takes no lock (a transaction's new item is visible half-written), so
    this test serialises each call, as the local stack's emulator does. The
    race under test — between the service's read and its conditional
    write, two calls — stays open."""

    def __init__(self, client):
        self._client, self._lock = client, threading.Lock()

    def __getattr__(self, name):
        fn = getattr(self._client, name)
        if name.startswith(("can_", "get_paginator", "get_waiter")) or not callable(fn) or name == "meta":
            return fn

        def locked(**kwargs):
            with self._lock:
                return fn(**kwargs)

        return locked


@pytest.mark.parametrize("role", [auth.APP, auth.ADMIN])
def test_concurrent_first_registrations_in_dynamodb_hand_out_exactly_one_secret(moto_aws, role):
    clock = FakeClock()
    stores = dynamo_stores(_AtomicWrites(boto3.client("dynamodb")), get_settings(), clock=clock)
    deps = Deps.over(stores, get_settings(), clock=clock, push=FakePushGateway())
    answers = _race_first_registrations(deps, role)
    secrets = [a["device_secret"] for a in answers if isinstance(a, dict) and "device_secret" in a]
    assert len(secrets) == 1
    item = device_item("dup")
    assert item["secret_hash"] == {"S": auth.hash_token(secrets[0])} and secrets[0] not in json.dumps(item)
    losers = [a for a in answers if not (isinstance(a, dict) and "device_secret" in a)]
    assert len(losers) == 7
    if role == auth.APP:
        assert all(isinstance(a, Forbidden) and a.field == "X-Device-Secret" for a in losers)
    # the winner's secret works; the losers' registrations moved nothing of the winner's
    handle_pings(deps, {"device_id": "dup", "lat": 1.0, "lng": 1.0}, role=auth.APP, secret=secrets[0])
