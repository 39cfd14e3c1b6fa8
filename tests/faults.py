"""Fault injection for the service layer, seeded, and the two measured
scenarios of RELIABILITY.md ("Fault injection"):

* :class:`FaultyRepo` wraps any repository (:func:`faulty_stores` wraps
  each one of a bundle): DynamoDB throttling (:class:`~chalicelib.errors.Unavailable`
  before a call runs, as :class:`chalicelib.store.table.Table` raises it
  once botocore's retries give up),
  conditional-check races (another writer moves the device before
  ``save_state``; another worker claims the delivery first and dies) and
  crashes before or after a call (the call's effect stays, its answer is
  lost: a Lambda timeout);
* :class:`FaultyGateway` wraps the :class:`FakePushGateway`: SNS throttling
  (1 .. max attempts of one publish; the gateway retries, and records
  ``failed: throttled`` when it runs out), ``EndpointDisabled`` and crashes
  before or after the publish (after: SNS accepted it, nobody recorded it);
* :func:`invoke` runs one request or message as AWS does: a crash or a 503
  aborts the whole invocation and the caller (the app's retry, SQS's
  redelivery, the next scheduled run) runs it again;
* :func:`storm` — a weather alert's fan-out through an SQS-like queue that
  delivers each message 1-3 times, concurrently, sometimes after a crash
  mid-chunk; :func:`ping_replay` — devices walking in and out of fences,
  requests retried after crashes, duplicated later and raced by a twin;
  :func:`concurrent_pairs` — two different pings of one device at once.

Each scenario runs the same inputs once without faults (the oracle) and
once with them, then the scheduled sweep (``release_held`` +
``sweep_open``) until no record is left open, and counts: every oracle
(campaign, device, trigger key) has exactly one record in a final status
(``sent``, ``suppressed``/``failed`` with a reason), none is extra, and no
delivery id was published more than once.

A crash is a :class:`BaseException`, so no ``except Exception`` in the app
sees it — as with a Lambda that times out. Every fault is decided by an RNG
seeded per invocation attempt (``seed:label:attempt``), so a scenario's
fault schedule does not depend on thread timing; only same-device races
(twins, redelivered chunks run at once) are left to the scheduler.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any

from chalicelib.services.fence_cache import VersionCache
from chalicelib.services.deps import Deps
from chalicelib.errors import Unavailable
from chalicelib.services import delivery
from chalicelib.services import campaigns as campaign_service
from chalicelib.services import engagement
from tests.fake_push import FakePushGateway
from chalicelib.push.model import FINAL_STATUSES, PENDING, PUBLISHING, SENT, Delivery
from chalicelib.services.devices import register_device
from chalicelib.services.geofences import put_geofence
from chalicelib.services.pings import handle_pings
from chalicelib.services.delivery import STALE_OPEN_S, CampaignCache
from chalicelib.settings import Settings
from chalicelib.services import fanout as fanout_service
from chalicelib.services import alert_planning, weather
from chalicelib.store import Stores, memory_stores
from chalicelib.weather.area import AreaResolver

T0 = 1_790_000_000.0  # 2026-09-21 13:33 UTC
#: What the scenarios inject (the rest of a tally is what the app did about it).
FAULT_KINDS = ("ddb_throttle", "state_race", "claim_race", "sns_throttle", "endpoint_disabled", "crash",
               "sqs_redelivery", "ping_twin_raced", "ping_duplicate_late")


class Crash(BaseException):
    """The invocation dies here (a Lambda timeout, an out-of-memory kill):
    not an ``Exception``, so no handler in the app runs."""


@dataclass(frozen=True)
class Rates:
    """Probability of each fault: ``ddb_throttle`` per store call,
    ``state_race`` per ``save_state``, ``claim_race`` per
    ``claim_delivery``, ``sns_throttle`` and ``endpoint_disabled`` per
    publish, ``crash`` per invocation attempt (it then dies at a random
    store or SNS call, before or after the call runs) and ``crash_chunk``
    per attempt of a fan-out message (a long invocation: more time to time
    out)."""

    ddb_throttle: float = 0.0
    state_race: float = 0.0
    claim_race: float = 0.0
    sns_throttle: float = 0.0
    endpoint_disabled: float = 0.0
    crash: float = 0.0
    crash_chunk: float = 0.0

    @classmethod
    def none(cls) -> Rates:
        return cls()

    @classmethod
    def default(cls) -> Rates:
        """The soak's rates: every kind often enough to be counted in the
        thousands, rarely enough that invocations still finish."""
        return cls(ddb_throttle=0.003, state_race=0.05, claim_race=0.003, sns_throttle=0.05,
                   endpoint_disabled=0.002, crash=0.05, crash_chunk=0.2)

    @classmethod
    def harsh(cls) -> Rates:
        """The tests' rates: small runs that still see every kind many times."""
        return cls(ddb_throttle=0.01, state_race=0.15, claim_race=0.02, sns_throttle=0.15,
                   endpoint_disabled=0.01, crash=0.15, crash_chunk=0.3)


class Faults:
    """The dice (one seeded RNG per invocation attempt, per thread) and the tally."""

    def __init__(self, seed: int, rates: Rates) -> None:
        self.seed = seed
        self.rates = rates
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._local = threading.local()

    @contextmanager
    def attempt(self, label: str, crash_within: int, crash_rate: float | None = None) -> Iterator[None]:
        """Faults are armed only inside an invocation attempt (setup, checks
        and the oracle run unarmed). A crash, when the dice say so, comes at
        one of the attempt's first ``crash_within`` calls (none when it
        makes fewer)."""
        local = self._local
        saved = (getattr(local, "rng", None), getattr(local, "calls", 0), getattr(local, "crash_at", None))
        local.rng = rng = random.Random(f"{self.seed}:{label}")
        local.calls = 0
        rate = self.rates.crash if crash_rate is None else crash_rate
        local.crash_at = 1 + rng.randrange(crash_within) if rng.random() < rate else None
        try:
            yield
        finally:
            local.rng, local.calls, local.crash_at = saved

    def crash_here(self) -> bool:
        """Count a store or SNS call of the attempt; True at its crash point."""
        local = self._local
        if getattr(local, "rng", None) is None:
            return False
        local.calls += 1
        if local.calls != local.crash_at:
            return False
        self.count("crash")
        return True

    def roll(self, kind: str) -> bool:
        rng = getattr(self._local, "rng", None)
        rate = getattr(self.rates, kind)
        if rng is None or rate <= 0.0 or rng.random() >= rate:
            return False
        self.count(kind)
        return True

    def pick(self, n: int) -> int:
        rng = getattr(self._local, "rng", None)
        return rng.randrange(n) if rng is not None else 0

    def count(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self.counts[kind] += n


def _state_race(inner: Any, faults: Faults, args: tuple) -> None:
    """Another request wrote the device first: its version moves on."""
    if faults.roll("state_race"):
        cur = inner.devices.get(args[0])
        if cur is not None:
            inner.save_state(cur.device_id, cur.state_version, cur.state, cur.written_at)


def _claim_race(inner: Any, faults: Faults, args: tuple) -> None:
    """Another worker claimed the same delivery first, then died."""
    if faults.roll("claim_race"):
        d: Delivery = args[0]
        inner.claim_delivery(Delivery.from_dict(d.to_dict()))
    faults.count("claims")


#: Races injected before a call, by method name: (hook(inner, faults, args)).
RACES: dict[str, Callable[[Any, Faults, tuple], None]] = {"save_state": _state_race, "claim_delivery": _claim_race}
#: Calls paused by ``jitter_s`` (a ping's device reads and writes).
JITTERED = frozenset({"get_devices", "save_state", "get_device"})


class FaultyRepo:
    """Every public method of ``inner`` — any repository — with faults
    injected around it:
    throttling, the races of :data:`RACES`, crashes before or after the
    call. ``jitter_s``: a random pause before the :data:`JITTERED` calls, so
    that concurrent requests really interleave (without it the GIL runs a
    short request to its end before switching)."""

    def __init__(self, inner: Any, faults: Faults, jitter_s: float = 0.0) -> None:
        self.inner = inner
        self.faults = faults
        self.jitter_s = jitter_s

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name.startswith("_") or not callable(attr):
            return attr
        faults, inner = self.faults, self.inner
        jitter = self.jitter_s if name in JITTERED else 0.0
        race = RACES.get(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if jitter:
                time.sleep(faults.pick(1000) * jitter / 1000)
            if faults.roll("ddb_throttle"):
                raise Unavailable("injected: the database is throttling; retry shortly")
            if race is not None:
                race(inner, faults, args)
            crash = faults.crash_here()
            if crash and faults.pick(2) == 0:
                faults.count("crash_store_before")
                raise Crash(f"before {name}")
            out = attr(*args, **kwargs)
            if crash:
                faults.count("crash_store_after")
                raise Crash(f"after {name}")
            return out

        setattr(self, name, call)  # later lookups skip __getattr__
        return call


def faulty_stores(stores: Stores, faults: Faults, jitter_s: float = 0.0) -> Stores:
    """Each repository of ``stores`` wrapped in a :class:`FaultyRepo`."""
    return Stores(**{f.name: FaultyRepo(getattr(stores, f.name), faults, jitter_s) for f in dataclass_fields(Stores)})


class FaultyGateway:
    """The fake SNS with throttling, disabled endpoints and crashes."""

    def __init__(self, inner: FakePushGateway, faults: Faults) -> None:
        self.inner = inner
        self.faults = faults
        self._lock = threading.Lock()  # an injected throttle is this publish's own

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def publish(self, endpoint_arn: str, platform: str, message) -> str:
        f = self.faults
        with self._lock:
            if f.roll("sns_throttle"):
                n = 1 + f.pick(self.inner.max_attempts)
                f.count("sns_throttled_attempts", n)
                if n == self.inner.max_attempts:
                    f.count("sns_throttle_exhausted")
                self.inner.fail_next(n, "throttle")
            if f.roll("endpoint_disabled") and endpoint_arn in self.inner.endpoints:
                self.inner.disable(endpoint_arn)
            crash = f.crash_here()
            if crash and f.pick(2) == 0:
                f.count("crash_sns_before")
                raise Crash("before publish")
            out = self.inner.publish(endpoint_arn, platform, message)
            if crash:
                f.count("crash_sns_after")
                raise Crash("after publish: SNS accepted it")
            return out


def invoke(faults: Faults, label: str, fn: Callable[[], Any], *, retry_kind: str, crash_within: int = 30,
           crash_rate: float | None = None, attempts: int = 200) -> Any:
    """One request or message as AWS runs it: attempt after attempt until
    one completes (a crash or a 503 aborts the attempt)."""
    for n in range(attempts):
        with faults.attempt(f"{label}:{n}", crash_within, crash_rate):
            try:
                return fn()
            except Crash:
                faults.count(retry_kind)
            except Unavailable:
                faults.count(retry_kind)
    raise AssertionError(f"{label}: still failing after {attempts} attempts")


# ---------------------------------------------------------------- worlds
class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ListQueue:
    """The fan-out queue: keeps what was sent; the scenario delivers it."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self._lock = threading.Lock()

    def send(self, name: str, bodies) -> int:
        bodies = list(bodies)
        with self._lock:
            self.messages.extend(bodies)
        return len(bodies)


@dataclass
class World:
    deps: Deps  # over the repositories of ``stores``, each wrapped in a FaultyRepo
    stores: Stores  # the real in-memory twins (checks read them directly)
    push: FakePushGateway
    faults: Faults
    clock: Clock


def make_world(seed: int, rates: Rates, *, chunk: int = 50, jitter_s: float = 0.0) -> World:
    settings = Settings(stage="test", coupon_secret="fault-injection-secret", campaign_cache_s=1e9,
                        region_shards=4, fanout_chunk=chunk)
    faults = Faults(seed, rates)
    clock = Clock(T0)
    stores, push = memory_stores(clock=clock, region_shards=4), FakePushGateway()
    deps = Deps.over(faulty_stores(stores, faults, jitter_s), settings, clock=clock, cache=VersionCache(),
                     push=FaultyGateway(push, faults), campaign_cache=CampaignCache(1e9),
                     resolver=AreaResolver(None, None), queue=ListQueue(), sleep=lambda s: None)
    return World(deps, stores, push, faults, clock)


def _register(deps: Deps, device_id: str, rng: random.Random, consent: dict | None = None) -> None:
    register_device(deps, device_id, {
        "platform": rng.choice(["ios", "android"]), "push_token": f"tok-{device_id}",
        "attributes": {"first_name": rng.choice(["Ana", "Bo", "Cy", "  ", ""]), "tier": rng.choice(["gold", "basic"])},
        "consent": consent or {"push": True, "location": True}})


def settle(world: World, max_rounds: int = 40) -> Counter:
    """The scheduled function, every STALE_OPEN_S + 1 min, until nothing is
    left open (a crashed sweep is simply run again)."""
    swept: Counter = Counter()
    for r in range(max_rounds):
        if not open_records(world.stores):
            return swept
        world.clock.now += STALE_OPEN_S + 60.0

        def run() -> dict:
            engagement.release_held(world.deps)
            return engagement.sweep_open(world.deps)

        swept.update(invoke(world.faults, f"sweep:{r}", run, retry_kind="retry_sweep", crash_within=2000))
    assert not open_records(world.stores), "records still open after the sweeps"
    return swept


def records(stores: Stores) -> dict[str, Delivery]:
    """Every delivery record of the in-memory twin, by delivery id."""
    return stores.deliveries.deliveries  # type: ignore[attr-defined]


def open_records(stores: Stores) -> list[Delivery]:
    return [d for d in records(stores).values() if d.status in (PENDING, PUBLISHING)]


# ---------------------------------------------------------------- the report
@dataclass
class Report:
    name: str
    expected: int = 0  # (campaign, device, trigger key) of the oracle run
    records: int = 0
    publishes: int = 0
    duplicates: int = 0  # delivery ids published more than once
    lost: int = 0  # expected, but no record
    extra: int = 0  # a record the oracle has not
    not_final: int = 0  # pending / publishing / held, or failed/suppressed without a reason
    sent_unpublished: int = 0  # "sent" without a publish (never expected)
    published_interrupted: int = 0  # published once, recorded failed: interrupted (SNS accepted, the Lambda died)
    decisions: int = 0  # claims attempted (retries and duplicates included)
    statuses: Counter = field(default_factory=Counter)
    differs_from_oracle: Counter = field(default_factory=Counter)  # final status ≠ the oracle's, by oracle→ours
    faults: Counter = field(default_factory=Counter)  # injected, by kind
    effects: Counter = field(default_factory=Counter)  # retries and what the gateway absorbed
    swept: Counter = field(default_factory=Counter)
    inputs: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.lost or self.extra or self.not_final or self.sent_unpublished)

    def lines(self) -> list[str]:
        out = [f"{self.name}: {', '.join(f'{k} {v:,}' for k, v in self.inputs.items())} ({self.seconds:.1f} s)"]
        out.append(f"  expected (campaign, device, trigger) {self.expected:,}; decisions {self.decisions:,}; "
                   f"records {self.records:,}; SNS publishes {self.publishes:,}")
        out.append(f"  duplicates {self.duplicates}, lost {self.lost}, extra {self.extra}, not final {self.not_final}, "
                   f"sent without a publish {self.sent_unpublished}")
        out.append("  final statuses: " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.statuses.items())))
        out.append(f"  published but recorded failed: interrupted {self.published_interrupted:,}; "
                   "status differs from the fault-free run: "
                   + (", ".join(f"{k} {v:,}" for k, v in sorted(self.differs_from_oracle.items())) or "none"))
        out.append("  faults injected: " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.faults.items())))
        out.append("  retries and effects: " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.effects.items())))
        out.append("  sweep: " + (", ".join(f"{k} {v:,}" for k, v in sorted(self.swept.items())) or "nothing to do"))
        return out


def injected(counts: Counter) -> Counter:
    """The injected kinds of a tally (crashes also by where they hit)."""
    return Counter({k: v for k, v in counts.items() if k in FAULT_KINDS or k.startswith("crash_")})


def compare(name: str, oracle: World, world: World, swept: Counter, inputs: dict, started: float) -> Report:
    want = records(oracle.stores)
    got = records(world.stores)
    published = Counter(m.delivery_id for _, _, m, _ in world.push.published)
    counts = world.faults.counts
    rep = Report(name, expected=len(want), records=len(got), publishes=sum(published.values()), swept=swept,
                 inputs=inputs, decisions=counts["claims"], faults=injected(counts),
                 effects=Counter({k: v for k, v in counts.items() if k not in FAULT_KINDS and not k.startswith("crash_")
                                  and k != "claims"}))
    rep.duplicates = sum(1 for n in published.values() if n > 1)
    rep.lost = sum(1 for did in want if did not in got)
    rep.extra = sum(1 for did in got if did not in want)
    for did, d in got.items():
        final = d.status in FINAL_STATUSES and (d.status == SENT or d.reason)
        rep.not_final += not final
        rep.statuses[d.status if d.status == SENT else f"{d.status}:{d.reason}"] += 1
        if d.status == SENT and published[did] != 1:
            rep.sent_unpublished += 1
        if d.reason == delivery.INTERRUPTED and published[did]:
            rep.published_interrupted += 1
        w = want.get(did)
        if w is not None and (w.status, w.reason) != (d.status, d.reason):
            rep.differs_from_oracle[f"{w.status}:{w.reason or ''} -> {d.status}:{d.reason or ''}".replace(": ", " ")] += 1
    rep.seconds = time.perf_counter() - started
    return rep


# ---------------------------------------------------------------- scenario (a): the storm
BOX = (35.0, -98.0, 35.6, -97.2)  # lat0, lng0, lat1, lng1 of the warning polygon


def storm_alert() -> dict:
    lat0, lng0, lat1, lng1 = BOX
    ring = [[lng0, lat0], [lng1, lat0], [lng1, lat1], [lng0, lat1], [lng0, lat0]]
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": {
        "id": "urn:oid:2.49.0.1.840.0.fault.storm.1", "event": "Severe Thunderstorm Warning", "status": "Actual",
        "messageType": "Alert", "severity": "Severe", "urgency": "Immediate", "certainty": "Observed",
        "sent": "2026-09-21T13:00:00Z", "effective": "2026-09-21T13:00:00Z", "onset": "2026-09-21T13:30:00Z",
        "expires": "2026-09-22T06:00:00Z", "ends": "2026-09-22T06:00:00Z",
        "headline": "Severe Thunderstorm Warning issued", "areaDesc": "Somewhere, OK", "senderName": "NWS Norman OK",
        "response": "Shelter", "geocode": {"SAME": [], "UGC": []}, "affectedZones": [], "references": [],
        "parameters": {"VTEC": ["/O.NEW.KOUN.SV.W.0042.260921T1300Z-260922T0600Z/"]}}}


STORM_CAMPAIGNS = {
    "storm-all": {
        "name": "Storm delay notice", "trigger": {"type": "weather_alert"},
        "message": {"title": "{{ alert.event }}", "body": "Hi {{ first_name | default: 'there' }}, "
                    "a {{ alert.event | downcase }} may delay your order: {{ coupon.percent_off }}% off {{ coupon.code }}"},
        "coupon": {"percent_off": 10, "prefix": "STORM", "valid_hours": 72},
        "experiment": {"arms": [{"name": "A", "weight": 1}, {"name": "B", "weight": 1}], "control_percent": 10},
    },
    "storm-recent": {
        "name": "Shelter reminder", "trigger": {"type": "weather_alert", "min_severity": "Severe"},
        "audience": {"max_location_age_hours": 6},
        "message": {"title": "Take shelter", "body": "{{ alert.headline }} ({{ alert.area_desc }})"},
        "limits": {"per_device_per_day": 3},
    },
}


def _storm_setup(world: World, n_devices: int, seed: int) -> None:
    rng = random.Random(f"{seed}:storm-setup")
    deps = world.deps
    for cid, body in STORM_CAMPAIGNS.items():
        campaign_service.put_campaign(deps, cid, body)
    lat0, lng0, lat1, lng1 = BOX
    for i in range(n_devices):
        did = f"s{i:06d}"
        roll = rng.random()  # a few opt-outs: no location (not placed), no push (not targeted)
        consent = {"push": True, "location": False} if roll < 0.03 else {"push": False, "location": True} if roll < 0.05 else None
        _register(deps, did, rng, consent)
        inside = rng.random() < 0.9
        lat = rng.uniform(lat0 + 0.001, lat1 - 0.001) if inside else rng.uniform(lat1 + 0.05, lat1 + 0.5)
        lng = rng.uniform(lng0 + 0.001, lng1 - 0.001)
        age = rng.uniform(60, 12 * 3600)  # minutes to 12 h ago
        try:
            handle_pings(deps, {"device_id": did, "lat": lat, "lng": lng, "timestamp": T0 - age, "accuracy_m": 20})
        except Exception:  # noqa: BLE001 — no location consent: 403, not placed
            pass


def storm(seed: int, n_devices: int, rates: Rates, *, workers: int = 4, redelivery: float = 0.3, chunk: int = 50) -> Report:
    """Scenario (a). Each fan-out message is delivered 1 + k times (k ≤ 2
    with probability ``redelivery``), the copies shuffled and run by
    ``workers`` threads (copies of one message may run at once); every
    copy is retried until it completes, as SQS redelivers a message whose
    invocation failed."""
    started = time.perf_counter()
    oracle = make_world(seed, Rates.none(), chunk=chunk)
    world = make_world(seed, rates, chunk=chunk)
    for w in (oracle, world):
        _storm_setup(w, n_devices, seed)
    alert = storm_alert()

    # The oracle: one post, each message once, in order.
    weather.post_alerts(oracle.deps, alert)
    alert_planning.drain(oracle.deps, oracle.deps.queue)

    f = world.faults
    invoke(f, "alert", lambda: weather.post_alerts(world.deps, alert), retry_kind="retry_alert", crash_within=200)
    rng = random.Random(f"{seed}:sqs")
    plans = [m for m in world.deps.queue.messages if alert_planning.is_plan_message(m)]
    for i, body in enumerate(plans):  # the planner: crashes, then SQS delivers it again (and again)
        for k in range(1 + (rng.choice((1, 2)) if rng.random() < redelivery else 0)):
            f.count("sqs_redelivery", k > 0)
            invoke(f, f"plan{i}.{k}", lambda: alert_planning.plan_alert(world.deps, body),
                   retry_kind="sqs_redelivery_after_failure", crash_within=200)
    chunks = [m for m in world.deps.queue.messages if not alert_planning.is_plan_message(m)]
    work: list[tuple[str, str]] = []
    for i, body in enumerate(chunks):
        extra = rng.choice((1, 2)) if rng.random() < redelivery else 0
        f.count("sqs_redelivery", extra)
        work += [(f"msg{i}.{k}", body) for k in range(1 + extra)]
    rng.shuffle(work)

    def deliver(item: tuple[str, str]) -> None:
        label, body = item
        invoke(f, label, lambda: fanout_service.send_chunk(world.deps, body), retry_kind="sqs_redelivery_after_failure",
               crash_within=4 * chunk, crash_rate=rates.crash_chunk)  # ~4 calls per decision of one campaign

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(deliver, work))
    swept = settle(world)
    inputs = {"devices": n_devices, "campaigns": len(STORM_CAMPAIGNS), "fan-out messages": len(chunks),
              "deliveries of them": len(work)}
    return compare("storm fan-out", oracle, world, swept, inputs, started)


# ---------------------------------------------------------------- scenario (b): the ping replay
HOME = (38.44, -122.70)
FENCE_GRID = 4  # 4 x 4 fences, ~1.1 km apart
FENCE_RADIUS_M = 150.0
PING_CAMPAIGNS = {
    "enter-shop": {
        "name": "Welcome", "trigger": {"type": "geofence_enter", "fence_tags": ["shop"]},
        "message": {"title": "Welcome to {{ fence.name }}", "body": "Hi {{ first_name | default: 'there' }}: {{ coupon.code }}"},
        "coupon": {"percent_off": 15, "prefix": "HI", "valid_hours": 24},
    },
    "exit-any": {
        "name": "Come back", "trigger": {"type": "geofence_exit", "fence_tags": ["zone"]},
        "message": {"title": "Thanks for visiting {{ fence.name }}", "body": "See you soon"},
        "limits": {"per_device_per_day": 40},
    },
    "dwell-shop": {
        "name": "Still here?", "trigger": {"type": "geofence_dwell", "fence_tags": ["shop"]},
        "message": {"title": "Browsing {{ fence.name }}?", "body": "Ask us anything"},
    },
}


def _fence_centres() -> list[tuple[str, float, float]]:
    out = []
    for i in range(FENCE_GRID):
        for j in range(FENCE_GRID):
            out.append((f"f{i}{j}", HOME[0] + i * 0.01, HOME[1] + j * 0.0125))
    return out


def _ping_setup(world: World, n_devices: int, seed: int) -> None:
    rng = random.Random(f"{seed}:ping-setup")
    deps = world.deps
    for n, (fid, lat, lng) in enumerate(_fence_centres()):
        tags = ["zone", "shop"] if n % 2 == 0 else ["zone"]
        props = {"radius_m": FENCE_RADIUS_M, "name": f"Store {fid}", "tags": tags}
        if n % 3 == 0:
            props["dwell_minutes"] = 5
        put_geofence(deps, fid, {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lng, lat]},
                                          "properties": props})
    for cid, body in PING_CAMPAIGNS.items():
        campaign_service.put_campaign(deps, cid, body)
    for i in range(n_devices):
        _register(deps, f"p{i:06d}", rng)


def walks(seed: int, n_devices: int, per_device: int) -> list[list[dict]]:
    """Each device's pings: stay, or move to a fence (inside) or between
    fences (outside every exit buffer), every 2-9 minutes."""
    rng = random.Random(f"{seed}:walks")
    centres = _fence_centres()
    out = []
    for i in range(n_devices):
        did = f"p{i:06d}"
        t = T0 + rng.uniform(0, 60)
        lat, lng = HOME[0] - 0.005, HOME[1] - 0.006
        pings = []
        for _ in range(per_device):
            r = rng.random()
            if r < 0.45:
                _, clat, clng = rng.choice(centres)
                lat, lng = clat + rng.uniform(-0.0006, 0.0006), clng + rng.uniform(-0.0006, 0.0006)  # ≤ ~80 m
            elif r < 0.75:
                _, clat, clng = rng.choice(centres)
                lat, lng = clat + 0.005, clng + 0.006  # ~700 m from every centre
            pings.append({"device_id": did, "lat": round(lat, 6), "lng": round(lng, 6), "timestamp": round(t, 3),
                          "accuracy_m": rng.choice((5, 10, 25))})
            t += rng.uniform(120, 540)
        out.append(pings)
    return out


def _requests(rng: random.Random, round_pings: list[dict], batch_share: float) -> list[dict]:
    """One round's pings as request bodies: single pings, and admin batches
    of up to 20 devices."""
    singles, batch, out = [], [], []
    for p in round_pings:
        (batch if rng.random() < batch_share else singles).append(p)
    out += singles
    for k in range(0, len(batch), 20):
        out.append({"pings": batch[k:k + 20]})
    rng.shuffle(out)
    return out


def ping_replay(seed: int, n_devices: int, per_device: int, rates: Rates, *, workers: int = 8,
                twin: float = 0.03, duplicate: float = 0.03, batch_share: float = 0.3, jitter_s: float = 0.0005) -> Report:
    """Scenario (b). Round r posts every device's r-th ping (so each
    device's pings arrive in order); requests run on ``workers`` threads,
    each retried until it completes. A share of requests is raced by a
    twin (the same body at the same moment: a client retry racing the
    original) and a share is posted again a round later (a late duplicate)."""
    started = time.perf_counter()
    oracle = make_world(seed, Rates.none())
    world = make_world(seed, rates, jitter_s=jitter_s)
    for w in (oracle, world):
        _ping_setup(w, n_devices, seed)
    tracks = walks(seed, n_devices, per_device)
    rng = random.Random(f"{seed}:requests")
    f = world.faults
    late: list[dict] = []
    n_requests = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for r in range(per_device):
            round_pings = [t[r] for t in tracks]
            now = max(p["timestamp"] for p in round_pings) + 1.0
            oracle.clock.now = world.clock.now = now
            for p in round_pings:
                handle_pings(oracle.deps, dict(p))
            bodies = _requests(rng, round_pings, batch_share)
            jobs: list[tuple[str, dict, bool]] = [(f"r{r}.late{k}", b, False) for k, b in enumerate(late)]
            late = []
            for k, body in enumerate(bodies):
                roll = rng.random()
                jobs.append((f"r{r}.q{k}", body, roll < twin))
                if twin <= roll < twin + duplicate:
                    late.append(body)
            f.count("ping_twin_raced", sum(1 for j in jobs if j[2]))
            f.count("ping_duplicate_late", len(late))
            n_requests += len(jobs)

            def run(job: tuple[str, dict, bool]) -> None:
                label, body, raced = job
                if not raced:
                    invoke(f, label, lambda: handle_pings(world.deps, body), retry_kind="ping_retry")
                    return
                gate = threading.Barrier(2)

                def twin_run(side: str) -> None:
                    gate.wait()
                    invoke(f, f"{label}.{side}", lambda: handle_pings(world.deps, body), retry_kind="ping_retry")

                t = threading.Thread(target=twin_run, args=("b",))
                t.start()
                twin_run("a")
                t.join()

            list(pool.map(run, jobs))
    for body in late:  # the last round's late duplicates
        invoke(f, "final.late", lambda body=body: handle_pings(world.deps, body), retry_kind="ping_retry")
    swept = settle(world)
    inputs = {"devices": n_devices, "pings": n_devices * per_device, "requests": n_requests,
              "fences": FENCE_GRID * FENCE_GRID, "campaigns": len(PING_CAMPAIGNS)}
    return compare("ping replay", oracle, world, swept, inputs, started)


# ---------------------------------------------------------------- two different pings at once
@dataclass
class PairsReport:
    devices: int
    matched_in_order: int = 0  # the result of "p1 then p2"
    matched_reversed: int = 0  # "p2 then p1" (p1 then arrives late and is ignored)
    matched_neither: int = 0  # a lost enter or exit (or a spurious one)
    publishes_duplicated: int = 0
    enters: int = 0
    exits: int = 0
    faults: Counter = field(default_factory=Counter)
    effects: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.matched_neither == 0 and self.publishes_duplicated == 0

    def lines(self) -> list[str]:
        return [f"concurrent pings: {self.devices:,} devices, each sent two different pings at the same moment "
                f"({self.seconds:.1f} s)",
                f"  outcome = 'p1 then p2' {self.matched_in_order:,}, = 'p2 then p1' {self.matched_reversed:,}, "
                f"= neither (an enter or exit lost) {self.matched_neither}; duplicates {self.publishes_duplicated}",
                f"  enters {self.enters:,}, exits {self.exits:,} recorded",
                "  faults injected: " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.faults.items())),
                "  retries and effects: " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.effects.items()))]


def _pair_pings(seed: int, n_devices: int) -> list[tuple[dict, dict, dict]]:
    """(p0, p1, p2) per device: p0 inside fence A (an enter); p1 inside
    fence B (exit A, enter B); p2 a minute later, outside both (exit B)."""
    rng = random.Random(f"{seed}:pairs")
    centres = _fence_centres()
    out = []
    for i in range(n_devices):
        did = f"p{i:06d}"
        (_, alat, alng), (_, blat, blng) = rng.sample(centres, 2)
        t = T0 + 600 + rng.uniform(0, 30)
        p0 = {"device_id": did, "lat": alat, "lng": alng, "timestamp": t, "accuracy_m": 5}
        p1 = {"device_id": did, "lat": blat, "lng": blng, "timestamp": t + 300, "accuracy_m": 5}
        p2 = {"device_id": did, "lat": blat + 0.005, "lng": blng + 0.006, "timestamp": t + 360, "accuracy_m": 5}
        out.append((p0, p1, p2))
    return out


def concurrent_pairs(seed: int, n_devices: int, rates: Rates, *, workers: int = 8, jitter_s: float = 0.002) -> PairsReport:
    """Two different pings of one device at the same moment (p1 and p2,
    barrier-released threads), under faults. Either may commit first: the
    outcome must be exactly that of one serial order — computed by two
    fault-free oracles — never a mix that lost an enter or an exit."""
    started = time.perf_counter()
    pairs = _pair_pings(seed, n_devices)
    worlds = {name: make_world(seed, Rates.none()) for name in ("p1p2", "p2p1")}
    worlds["faulty"] = make_world(seed, rates, jitter_s=jitter_s)
    for w in worlds.values():
        _ping_setup(w, n_devices, seed)
        w.clock.now = T0 + 1200
        for p0, _, _ in pairs:
            handle_pings(w.deps, dict(p0))
    for p0, p1, p2 in pairs:
        handle_pings(worlds["p1p2"].deps, dict(p1))
        handle_pings(worlds["p1p2"].deps, dict(p2))
        handle_pings(worlds["p2p1"].deps, dict(p2))
        handle_pings(worlds["p2p1"].deps, dict(p1))
    world = worlds["faulty"]
    f = world.faults

    def run(k: int) -> None:
        _, p1, p2 = pairs[k]
        gate = threading.Barrier(2)

        def one(side: str, body: dict) -> None:
            gate.wait()
            invoke(f, f"pair{k}.{side}", lambda: handle_pings(world.deps, dict(body)), retry_kind="ping_retry")

        first, second = (("p1", p1), ("p2", p2)) if k % 2 else (("p2", p2), ("p1", p1))
        t = threading.Thread(target=one, args=first)
        t.start()
        one(*second)
        t.join()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(run, range(len(pairs))))
    settle(world)

    def by_device(w: World) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for d in records(w.stores).values():
            out.setdefault(d.device_id, set()).add(d.delivery_id)
        return out

    def inside(w: World, did: str) -> tuple:
        st = w.stores.devices.devices[did].state  # type: ignore[attr-defined]
        return tuple(sorted((f, v.enter_ts) for f, v in st.inside.items())) if st else ()

    a, b, got = by_device(worlds["p1p2"]), by_device(worlds["p2p1"]), by_device(world)
    rep = PairsReport(n_devices, faults=injected(f.counts),
                      effects=Counter({k: v for k, v in f.counts.items()
                                       if k not in FAULT_KINDS and not k.startswith("crash_") and k != "claims"}))
    for p0, _, _ in pairs:
        did = p0["device_id"]
        mine = (got.get(did, set()), inside(world, did))
        if mine == (a.get(did, set()), inside(worlds["p1p2"], did)):
            rep.matched_in_order += 1
        elif mine == (b.get(did, set()), inside(worlds["p2p1"], did)):
            rep.matched_reversed += 1
        else:
            rep.matched_neither += 1
    published = Counter(m.delivery_id for _, _, m, _ in world.push.published)
    rep.publishes_duplicated = sum(1 for n in published.values() if n > 1)
    for d in records(world.stores).values():
        rep.enters += d.trigger_type == "geofence_enter"
        rep.exits += d.trigger_type == "geofence_exit"
    rep.seconds = time.perf_counter() - started
    return rep
