"""Keys and device secrets at the service
layer, against the in-memory store: hashed API keys and rotation, a device
secret handed out once with only its hash stored, every app-key call for a
device needing it, and concurrent first registrations."""

from __future__ import annotations

import base64
import copy
import doctest
import threading

import pytest

from chalicelib import auth
from chalicelib.errors import Forbidden, NotFound
from chalicelib.services.devices import delete_device, register_device
from chalicelib.services.pings import handle_pings
from chalicelib.services import engagement
from chalicelib.settings import Settings
from chalicelib.ports import ConcurrentUpdate, Device

T0 = 1_790_000_000.0
BODY = {"platform": "android", "push_token": "tok-d1", "consent": {"push": True, "location": True}}


def register(deps, device_id="d1", *, role=auth.APP, secret=None, **changes):
    body = {**BODY, "push_token": f"tok-{device_id}", **changes}
    return register_device(deps, device_id, body, role=role, secret=secret)


def ping(deps, device_id="d1", *, role=auth.APP, secret=None, dt=0.0, n=1):
    pings = [{"device_id": device_id, "lat": 38.44, "lng": -122.7 + 0.001 * i, "timestamp": T0 - 100 + dt + i} for i in range(n)]
    body = pings[0] if n == 1 else {"pings": pings}
    return handle_pings(deps, body, role=role, secret=secret)


def event(deps, device_id="d1", *, role=auth.APP, secret=None):
    return engagement.post_event(deps, {"device_id": device_id, "type": "conversion"}, role=role, secret=secret)


def delete(deps, device_id="d1", *, role=auth.APP, secret=None):
    return delete_device(deps, device_id, role=role, secret=secret)


def reregister(deps, device_id="d1", *, role=auth.APP, secret=None):
    return register(deps, device_id, role=role, secret=secret, attributes={"first_name": "Mallory"})


# ------------------------------------------------------------------ API keys
def test_auth_module_examples_hold():
    assert doctest.testmod(auth).failed == 0


def test_hashed_keys_are_accepted_and_anything_else_refused():
    s = Settings.from_env({"HEXCAST_ADMIN_KEY_HASHES": auth.hash_token("adm-key"), "HEXCAST_APP_KEY_HASHES": auth.hash_token("app-key")})
    assert auth.role_for_key("adm-key", s.admin_key_hashes, s.app_key_hashes) == auth.ADMIN
    assert auth.role_for_key("app-key", s.admin_key_hashes, s.app_key_hashes) == auth.APP
    for wrong in ("nope", "adm-key ", "ADM-KEY", auth.hash_token("adm-key"), s.admin_key_hashes[0][7:]):
        assert auth.role_for_key(wrong, s.admin_key_hashes, s.app_key_hashes) is None, wrong


def test_plaintext_keys_are_hashed_at_load_and_not_kept():
    s = Settings.from_env({"HEXCAST_ADMIN_KEY": "plain-admin-key", "HEXCAST_APP_KEY": "plain-app-key"})
    assert s.admin_key_hashes == (auth.hash_token("plain-admin-key"),)
    assert s.app_key_hashes == (auth.hash_token("plain-app-key"),)
    assert "plain-" not in repr(s) and "plain-" not in repr(vars(s))


def test_two_keys_per_role_are_active_during_a_rotation():
    old, new = auth.hash_token("key-2025"), auth.hash_token("key-2026")
    rotating = Settings.from_env({"HEXCAST_ADMIN_KEY_HASHES": f"{old}, {new}"})
    assert auth.role_for_key("key-2025", rotating.admin_key_hashes, ()) == auth.ADMIN
    assert auth.role_for_key("key-2026", rotating.admin_key_hashes, ()) == auth.ADMIN
    rotated = Settings.from_env({"HEXCAST_ADMIN_KEY_HASHES": new})
    assert auth.role_for_key("key-2025", rotated.admin_key_hashes, ()) is None
    assert auth.role_for_key("key-2026", rotated.admin_key_hashes, ()) == auth.ADMIN
    with pytest.raises(ValueError, match="at most 2"):
        Settings.from_env({"HEXCAST_APP_KEY_HASHES": f"{old},{new}", "HEXCAST_APP_KEY": "a-third-one"})


def test_a_malformed_hash_is_refused_without_echoing_it():
    with pytest.raises(ValueError) as exc:
        Settings.from_env({"HEXCAST_ADMIN_KEY_HASHES": "pasted-a-real-key-here"})
    assert "HEXCAST_ADMIN_KEY_HASHES" in str(exc.value) and "pasted" not in str(exc.value)
    with pytest.raises(ValueError):
        Settings.from_env({"HEXCAST_APP_KEY_HASHES": "sha256:" + "0" * 63})


@pytest.mark.parametrize("key", ["adm-1", "adm-2", "app-1", "app-2", "unknown"])
def test_every_configured_hash_is_compared_whichever_matches(monkeypatch, key):
    admin = tuple(auth.hash_token(k) for k in ("adm-1", "adm-2"))
    app = tuple(auth.hash_token(k) for k in ("app-1", "app-2"))
    calls = []
    real = auth.hmac.compare_digest

    def counting(a, b):
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    auth.role_for_key(key, admin, app)
    assert len(calls) == 4  # no early exit: the time says nothing about which key


def test_device_secrets_are_32_random_bytes():
    a, b = auth.new_device_secret(), auth.new_device_secret()
    assert a != b and len(base64.urlsafe_b64decode(a + "=")) == 32
    assert auth.secret_matches(a, auth.hash_token(a)) and not auth.secret_matches(b, auth.hash_token(a))
    assert not auth.secret_matches(None, auth.hash_token(a)) and not auth.secret_matches(a, None)


# ------------------------------------------------------------------ device secrets
def test_a_new_device_gets_its_secret_once_and_only_the_hash_is_stored(mem_deps):
    first = register(mem_deps)
    secret = first["device_secret"]
    stored = mem_deps.devices.devices["d1"]
    assert stored.secret_hash == auth.hash_token(secret)
    assert secret not in repr(vars(stored))
    again = register(mem_deps, secret=secret)
    assert "device_secret" not in again and again["device_id"] == "d1"
    by_admin = register(mem_deps, role=auth.ADMIN, push_token="tok-new")
    assert "device_secret" not in by_admin
    assert mem_deps.devices.devices["d1"].secret_hash == auth.hash_token(secret)  # re-registrations keep it
    assert mem_deps.devices.devices["d1"].push_token == "tok-new"
    ping(mem_deps, secret=secret)  # still the device's secret


def test_an_admin_registration_of_a_new_device_hands_out_its_secret_too(mem_deps):
    secret = register(mem_deps, role=auth.ADMIN)["device_secret"]
    ping(mem_deps, secret=secret)


@pytest.fixture
def two_devices(mem_deps):
    """d1 and d2, each with its secret; d1 has a location."""
    secrets = {d: register(mem_deps, d)["device_secret"] for d in ("d1", "d2")}
    ping(mem_deps, "d1", secret=secrets["d1"])
    return mem_deps, secrets


CALLS = {"re-register": reregister, "ping": ping, "ping-batch": lambda *a, **k: ping(*a, n=3, **k), "event": event, "delete": delete}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize("presented", ["missing", "wrong", "other-device", "the-hash"])
def test_app_calls_without_the_devices_secret_are_403_and_change_nothing(two_devices, call, presented):
    deps, secrets = two_devices
    secret = {"missing": None, "wrong": "x" * 43, "other-device": secrets["d2"], "the-hash": auth.hash_token(secrets["d1"])}[presented]
    before = copy.deepcopy(deps.devices.devices), dict(deps.deliveries.deliveries)
    with pytest.raises(Forbidden) as exc:
        call(deps, "d1", secret=secret)
    assert exc.value.status == 403 and exc.value.code == "forbidden" and exc.value.field == "X-Device-Secret"
    assert (deps.devices.devices, dict(deps.deliveries.deliveries)) == before


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_app_calls_with_the_devices_secret_succeed(two_devices, call):
    deps, secrets = two_devices
    call(deps, "d1", secret=secrets["d1"], **({"dt": 10} if call is ping else {}))


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_admin_keys_need_no_device_secret(two_devices, call):
    deps, _ = two_devices
    call(deps, "d1", role=auth.ADMIN, **({"dt": 10} if call is ping else {}))


def test_an_app_key_batch_for_two_devices_is_403_even_with_a_secret(two_devices):
    deps, secrets = two_devices
    body = {"pings": [{"device_id": "d1", "lat": 1, "lng": 1}, {"device_id": "d2", "lat": 1, "lng": 1}]}
    before = copy.deepcopy(deps.devices.devices)
    with pytest.raises(Forbidden) as exc:
        handle_pings(deps, body, role=auth.APP, secret=secrets["d1"])
    assert exc.value.field == "pings" and deps.devices.devices == before
    out = handle_pings(deps, body, role=auth.ADMIN)  # an admin batch may mix devices
    assert [r["accepted"] for r in out["results"]] == [True, True]


def test_the_secret_is_checked_before_consent(mem_deps):
    secret = register(mem_deps, consent={"push": True, "location": False})["device_secret"]
    with pytest.raises(Forbidden) as exc:
        ping(mem_deps, secret="wrong")
    assert exc.value.field == "X-Device-Secret"
    with pytest.raises(Forbidden) as exc:
        ping(mem_deps, secret=secret)
    assert exc.value.field == "consent.location"


def test_an_unknown_device_is_403_for_an_app_key_as_a_foreign_one_is(mem_deps):
    """An app key cannot probe which device ids exist: an unknown id answers
    exactly as another device's id does; only the admin key sees the 404."""
    register(mem_deps, "other")
    for call in (ping, event, delete):
        for secret in ("anything", None):
            answers = []
            for device_id in ("ghost", "other"):
                with pytest.raises(Forbidden) as exc:
                    call(mem_deps, device_id, secret=secret)
                answers.append((exc.value.field, exc.value.message))
            assert answers[0] == answers[1] and answers[0][0] == "X-Device-Secret"
    with pytest.raises(Forbidden):
        handle_pings(mem_deps, {"pings": [{"device_id": "ghost", "lat": 1, "lng": 1}]}, role=auth.APP, secret="x")
    out = handle_pings(mem_deps, {"pings": [{"device_id": "ghost", "lat": 1, "lng": 1}]}, role=auth.ADMIN)
    assert out["results"][0]["reason"] == "unknown_device"
    for call in (event, delete):
        with pytest.raises(NotFound):
            call(mem_deps, "ghost", role=auth.ADMIN)


def test_a_device_from_before_secrets_is_the_admins_alone(mem_deps):
    mem_deps.devices.save_profile(Device("old", "android", "tok", consent={"push": False, "location": True}))
    for call in (reregister, ping, event, delete):
        with pytest.raises(Forbidden):
            call(mem_deps, "old", secret="guess")
    assert "device_secret" not in register(mem_deps, "old", role=auth.ADMIN)
    delete(mem_deps, "old", role=auth.ADMIN)
    assert "device_secret" in register(mem_deps, "old")  # the way back: admin delete, then register again


def test_after_an_admin_delete_the_old_secret_is_worthless(two_devices):
    deps, secrets = two_devices
    delete(deps, "d1", role=auth.ADMIN)
    fresh = register(deps, "d1")["device_secret"]
    assert fresh != secrets["d1"]
    with pytest.raises(Forbidden):
        ping(deps, "d1", secret=secrets["d1"])
    ping(deps, "d1", secret=fresh)


def test_a_ping_racing_a_delete_and_a_new_registration_never_lands_on_the_new_device(two_devices, monkeypatch):
    """The ping read the old device; before its conditional write, an admin
    deleted it and someone registered the id again. The write loses (the
    state version moved), the replay re-reads — and the old secret no
    longer matches: 403, the new device untouched."""
    deps, secrets = two_devices
    store = deps.devices
    real_save = store.save_state
    raced = {}

    def racing_save(device_id, expected, state, written_at, outbox=None):
        if not raced:
            delete(deps, "d1", role=auth.ADMIN)
            raced["secret"] = register(deps, "d1")["device_secret"]
        return real_save(device_id, expected, state, written_at, outbox)

    monkeypatch.setattr(store, "save_state", racing_save)
    deps.clock.now += deps.settings.last_seen_refresh_s  # the last-seen refresh is due: this ping writes
    with pytest.raises(Forbidden):
        ping(deps, "d1", secret=secrets["d1"], dt=50)
    assert raced, "the ping did not write: no race happened"
    assert store.devices["d1"].state is None
    assert store.devices["d1"].secret_hash == auth.hash_token(raced["secret"])


# ------------------------------------------------------------------ races
def test_a_creation_that_landed_though_its_retry_failed_still_answers_its_secret(mem_deps, monkeypatch):
    """The SDK retried the conditional create after a lost response; the retry
    found the id taken — by this very creation. The app must still get its
    secret, or it could never use the device."""
    real = mem_deps.devices.save_profile
    calls = []

    def lost_answer(device, *, create=None, **kw):
        calls.append(create)
        real(device, create=create, **kw)
        if len(calls) == 1:
            raise ConcurrentUpdate(device.device_id)
        return True

    monkeypatch.setattr(mem_deps.devices, "save_profile", lost_answer)
    answer = register(mem_deps)
    assert calls == [True]
    assert mem_deps.devices.devices["d1"].secret_hash == auth.hash_token(answer["device_secret"])
    ping(mem_deps, secret=answer["device_secret"])


def _race_first_registrations(deps, role, n=8):
    """``n`` threads register the same new id; all read "absent" before any
    writes (a barrier after each thread's first read)."""
    barrier = threading.Barrier(n)
    local = threading.local()
    real_get = deps.devices.get_device

    def get_device(device_id, consistent=False):
        found = real_get(device_id, consistent)
        if not getattr(local, "waited", False):
            local.waited = True
            barrier.wait(timeout=10)
        return found

    deps.devices.get_device = get_device
    answers: list = [None] * n

    def run(i):
        try:
            answers[i] = register(deps, "dup", role=role)
        except Forbidden as exc:
            answers[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    deps.devices.get_device = real_get
    return answers


@pytest.mark.parametrize("role", [auth.APP, auth.ADMIN])
def test_concurrent_first_registrations_hand_out_exactly_one_secret(mem_deps, role):
    answers = _race_first_registrations(mem_deps, role)
    secrets = [a["device_secret"] for a in answers if isinstance(a, dict) and "device_secret" in a]
    assert len(secrets) == 1
    assert mem_deps.devices.devices["dup"].secret_hash == auth.hash_token(secrets[0])
    losers = [a for a in answers if not (isinstance(a, dict) and "device_secret" in a)]
    if role == auth.APP:  # the public key without the winner's secret may not update its device
        assert len(losers) == 7 and all(isinstance(a, Forbidden) and a.field == "X-Device-Secret" for a in losers)
    else:  # an admin's registration turns into an update
        assert len(losers) == 7 and all(isinstance(a, dict) for a in losers)
