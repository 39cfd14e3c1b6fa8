"""Schemathesis against the local stack, bounded (the long run is ``make fuzz``).

Two parts, both checked by what ``tools/fuzz.toml`` enables (no 5xx; status,
Content-Type and body as the document says; input the document forbids
answered 4xx; its exclusions are in that file, each with its reason):

* the engine ``schemathesis run`` drives, in this process, over every
  operation of ``GET /v1/openapi.json``: the document's examples, the
  coverage phase's boundary and invalid values (but see
  ``COVERAGE_IN_MAKE_FUZZ``), and 12 generated cases per operation, valid
  and invalid;
* schemathesis's stateful phase over the document's links
  (``tools/openapi_doc.py`` ``LINKS``) between the device, ping, delivery
  and event operations, twice (``register_first``: every scenario opens
  with a new device's registration): the "links" run over all of them,
  which must together with the other have followed every one (a
  registration → its ping, event, read, erasure; a ping's unknown device
  → its registration, a ping → its device, its delivery log, its push
  opened; the log → the push opened); the "chain" run over the path a new
  device takes, which must have followed register → ping → the delivery
  log → the push opened end to end in one scenario (``followed_chain``).

Deterministic: a fixed seed, derandomized, no example database. The module
runs after every other end-to-end test (``tests/e2e/conftest.py``): it leaves
arbitrary fences, devices and campaigns behind in the shared stack.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

import pytest
import requests
import schemathesis
from hypothesis.stateful import Bundle, initialize, precondition, rule
from schemathesis.engine import Status, events, from_schema
from schemathesis.engine.recorder import ScenarioRecorder
from schemathesis.generation.stateful.state_machine import StepInput, StepOutput, normalize_name

from tools.fuzz import seed as seed_examples
from tools.fuzz import settings as fuzz_settings
from tools.localstack import LocalStack
from tools.openapi_doc import EXAMPLES, LINKS

pytestmark = pytest.mark.slow

#: Generated cases per operation and generation mode (valid, invalid) in the fuzzing phase.
MAX_EXAMPLES = 12
#: Operations whose coverage phase alone is 300-600 requests (every boundary of every field of a
#: campaign, an NWS alert, a FeatureCollection of fences): several minutes on a loaded machine,
#: so the bounded run gives them examples and generated cases only; ``make fuzz`` runs their
#: coverage phase too.
COVERAGE_IN_MAKE_FUZZ = ("putCampaign", "postWeatherAlerts", "importGeofences")
#: Stateful: scenarios per run (two runs, below), and calls per scenario at most.
SCENARIOS, MAX_STEPS = 20, 8
#: The operations of the stateful runs: a device's registration, read and erasure, its pings, the
#: delivery log, events. The "links" run follows every link between them.
DEVICE_OPS = ("putDevice", "getDevice", "postPings", "listDeliveries", "postEvent", "deleteDevice")
#: The "chain" run follows what an app and its user do first: register → ping → the delivery log
#: → the push opened, so it leaves out the links that branch off that path (the device read, the
#: erasure, a conversion without a delivery). With them in, the scenarios' few steps spread over
#: eight links and the whole chain is rarely completed (in none of 40 scenarios with the fixed
#: seed; without them, in 13 of 20); an erasure also ends it (the later event is a 404 for the
#: unknown device). The "links" run follows them.
CHAIN = ("putDevice", "postPings", "listDeliveries", "postEvent")
OFF_CHAIN_LINKS = ("ReportConversion",)
#: Where the chain run's scenarios may start besides the registration (``register_first``): nowhere.
#: Schemathesis would also start from a listing of the whole delivery log, which leads only to the
#: opened event and takes the steps the chain needs; the "links" run starts there.
CHAIN_STARTS: tuple[str, ...] = ()
#: Query parameters the stateful runs send, where not all: the delivery log's filters the links set
#: (the device's) and its page size. A made-up ``next_token`` is a 400 by design (tokens are opaque
#: and signed) and a made-up ``status`` or ``campaign_id`` filter hides the device's delivery, so with
#: them the log would almost never hand a delivery on to the opened event. The fuzzing and coverage
#: phases above send every one of them.
STATEFUL_QUERY = {"listDeliveries": ("device_id", "limit")}
#: Device ids the scenarios register: new in every scenario of the session.
_SERIAL = itertools.count(1)


@dataclass
class Run:
    """What one engine run did and found."""

    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: (phase, operation label) → cases sent.
    cases: Counter = field(default_factory=Counter)
    stop_reason: str = ""
    #: Seconds the scenarios took, all together.
    seconds: float = 0.0
    #: Link name → times the stateful phase followed it.
    followed: Counter = field(default_factory=Counter)
    #: Complete register → ping → deliveries → event chains (``followed_chain``).
    chains: int = 0


def _link_followed(rec: ScenarioRecorder, case_id: str) -> str | None:
    """The name of the link that produced this case, when its values were used."""
    node = rec.cases[case_id]
    if node.transition is None or not node.is_transition_applied:
        return None
    return node.transition.id.split(" -> ")[-2].split("] ")[-1]  # "src -> [200] Name -> target"


def _answer(rec: ScenarioRecorder, case_id: str) -> Any:
    """The case's 2xx JSON answer ({} when it has no body), else None."""
    interaction = rec.interactions.get(case_id)
    if interaction is None or interaction.response is None or not 200 <= interaction.response.status_code < 300:
        return None
    return interaction.response.json() if interaction.response.content else {}


def followed_chain(rec: ScenarioRecorder, case_id: str) -> bool:
    """Whether this case is the ``push_opened`` event at the end of a chain the
    scenario followed through the document's links, each step answered 2xx:
    a registration → (PingDevice) a ping of that device, accepted, that
    caused a delivery → (DeviceDeliveries) the device's delivery log →
    (OpenDelivery) the event opening that delivery."""
    steps: list[tuple[Any, Any]] = []  # (case, its answer), from the event back
    node_id: str | None = case_id
    for label, link in (("POST /v1/events", "OpenDelivery"), ("GET /v1/deliveries", "DeviceDeliveries"),
                        ("POST /v1/pings", "PingDevice"), ("PUT /v1/devices/{device_id}", None)):
        if node_id is None or node_id not in rec.cases:
            return False
        node = rec.cases[node_id]
        answer = _answer(rec, node_id)
        if node.value.operation.label != label or answer is None or (link and _link_followed(rec, node_id) != link):
            return False
        steps.append((node.value, answer))
        node_id = node.parent_id
    (event, _), (_, log), (ping, pinged), (registration, registered) = steps
    device, delivery = registered["device_id"], event.body["delivery_id"]
    result = pinged["results"][0]
    return (registration.path_parameters["device_id"] == device == ping.body["device_id"] == event.body["device_id"]
            and result["accepted"] and delivery in result["deliveries"]
            and any(d["delivery_id"] == delivery and d["device_id"] == device for d in log["deliveries"]))


def _record(run: Run, event: events.ScenarioFinished) -> None:
    rec = event.recorder
    run.seconds += event.elapsed_time
    for node in rec.cases.values():
        run.cases[(event.phase.value, node.value.operation.label)] += 1
        if node.transition is not None and node.is_transition_applied:
            run.followed[node.transition.id.split(" -> ")[-2].split("] ")[-1]] += 1  # "src -> [200] Name -> target"
    run.chains += sum(1 for case_id in rec.cases if followed_chain(rec, case_id))
    for checks in rec.checks.values():
        for check in checks:
            if check.status == Status.FAILURE and check.failure_info is not None:
                failure = check.failure_info.failure
                run.failures.append(f"[{event.phase.value}] {failure.operation}: {check.name}: {failure.title}\n"
                                    f"    {failure.message[:600]}\n    {check.failure_info.code_sample[:1500]}")


def run_engine(schema: Any) -> Run:
    run = Run()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            _record(run, event)
        elif isinstance(event, events.NonFatalError):
            run.errors.append(f"{event.label}: {type(event.value).__name__}: {event.value}"[:1500])
        elif isinstance(event, events.FatalError):
            run.errors.append(f"engine: {type(event.exception).__name__}: {event.exception}"[:1500])
        elif isinstance(event, events.EngineFinished):
            run.stop_reason = event.stop_reason.value
    return run


def _phases(data: dict[str, Any], **enabled: bool) -> None:
    phases = data.setdefault("phases", {})
    for name, on in enabled.items():
        phases[name] = {**phases.get(name, {}), "enabled": on}


@pytest.fixture(scope="module")
def seeded(stack: LocalStack, log_scan: Any) -> Iterator[LocalStack]:
    """The stack with the fence, device and campaign the document's examples name.

    While this module runs, the log scan does not take the values of the
    requests it sends as sensitive: they are made up, and a made-up
    ``X-Device-Secret: request_id`` would be "leaked" by every log line. What
    the server answers (the secrets it issues) is still collected, and the
    whole log still scanned."""
    seed_examples(stack.base_url, stack.admin_key)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(log_scan.sensitive, "collect_request", lambda *args, **kwargs: None)
        yield stack


def load(stack: LocalStack, *, only: tuple[str, ...] = (), skip_links: tuple[str, ...] = (), **phases: bool) -> Any:
    """The served document as schemathesis's schema; ``only``: just these operations."""
    data = fuzz_settings(stack.base_url, stack.admin_key, max_examples=MAX_EXAMPLES)
    _phases(data, **phases)
    # Hypothesis's health checks judge the generator, not the API: "too slow" and "data too large"
    # fire for the fence import's FeatureCollections when the shared machine is loaded.
    data["suppress-health-check"] = ["too_slow", "data_too_large"]
    # The stateful phase follows the document's links only: the links schemathesis would infer from
    # field names (a device id in one answer, a device_id parameter elsewhere) are guesses the
    # document does not make, and would share the scenarios' few steps with them.
    data["phases"]["stateful"] = {**data["phases"].get("stateful", {}), "max-steps": MAX_STEPS,
                                  "generation": {"max-examples": SCENARIOS}, "inference": {"algorithms": []}}
    data.setdefault("operations", []).append(
        {"include-operation-id": list(COVERAGE_IN_MAKE_FUZZ), "phases": {"coverage": {"enabled": False}}})
    config = schemathesis.Config.from_dict(data)
    if not only:
        return schemathesis.openapi.from_url(f"{stack.base_url}/v1/openapi.json", config=config)
    doc = requests.get(f"{stack.base_url}/v1/openapi.json", timeout=30).json()
    for path, item in list(doc["paths"].items()):
        kept = {m: op for m, op in item.items() if op["operationId"] in only}
        for op in kept.values():  # and only the links between them
            if op["operationId"] in STATEFUL_QUERY:
                op["parameters"] = [p for p in op["parameters"]
                                    if p["in"] != "query" or p["name"] in STATEFUL_QUERY[op["operationId"]]]
            for answer in op["responses"].values():
                if "links" in answer:
                    answer["links"] = {k: v for k, v in answer["links"].items() if v["operationId"] in only and k not in skip_links}
        if kept:
            doc["paths"][path] = kept
        else:
            del doc["paths"][path]
    return schemathesis.openapi.from_dict(doc, config=config)


@pytest.fixture(scope="module")
def engine_run(seeded: LocalStack) -> Run:
    return run_engine(load(seeded, examples=True, coverage=True, fuzzing=True, stateful=False))


def test_every_operation_answers_as_documented(engine_run: Run) -> None:
    print(f"contract fuzz: {sum(engine_run.cases.values())} cases in {engine_run.seconds:.0f} s")
    assert not engine_run.errors, "\n".join(engine_run.errors)
    assert not engine_run.failures, f"{len(engine_run.failures)} failure(s):\n" + "\n".join(engine_run.failures)
    assert engine_run.stop_reason == "completed"


def test_every_operation_was_reached_by_every_phase(engine_run: Run, seeded: LocalStack) -> None:
    """A run that silently skips an operation (a schema it cannot generate
    from, a filter) cannot pass: each operation got generated cases, and
    the coverage phase's cases."""
    doc = load(seeded).raw_schema
    labels = {f"{m.upper()} {p}" for p, item in doc["paths"].items() for m in item if m in ("get", "put", "post", "delete")}
    # Every operation with an input to vary (not health and the document, which take none).
    fixed = {f"{m.upper()} {p}" for p, item in doc["paths"].items() for m, op in item.items()
             if m in ("get", "put", "post", "delete") and not (op.get("parameters") or op.get("requestBody"))}
    heavy = {f"{m.upper()} {p}" for p, item in doc["paths"].items() for m, op in item.items()
             if m in ("get", "put", "post", "delete") and op["operationId"] in COVERAGE_IN_MAKE_FUZZ}
    assert len(labels - fixed) >= 21
    for phase in ("coverage", "fuzzing"):
        missing = sorted(label for label in labels - fixed - (heavy if phase == "coverage" else set())
                         if engine_run.cases[(phase, label)] == 0)
        assert not missing, f"{phase}: no cases for {missing}"
    assert sum(engine_run.cases[("examples", label)] for label in labels) >= 15


def _stuck(machine: Any) -> bool:
    """No other rule (a link to follow, a start) can run now."""
    rules = machine._rules_strategy  # hypothesis's RuleStrategy: the rules, and whether one can run now
    return not any(rules.is_valid(r) for r in rules.rules if _stuck not in r.preconditions)


def register_first(schema: Any, *, other_starts: tuple[str, ...] | None = None) -> None:
    """Every stateful scenario of ``schema`` opens by registering a new
    device, as an app does on first launch, so its links can start there.

    Schemathesis starts scenarios only from operations that create without
    an id (POSTs) or list (GETs without path parameters); registration is a
    PUT to the device's id, reached only from a ping of an unknown device.
    A generated root would also not do: the same id drawn again meets the
    device it registered earlier, so a replayed scenario answers otherwise
    and Hypothesis rejects the run as flaky. So the first step of every
    scenario is this one, with the document's example registration and a
    device id no earlier step used; it is sent, recorded and checked like
    any other step, and its answer feeds the registration's links.

    ``other_starts``: of the operations schemathesis starts scenarios from,
    those (operationIds) kept; default all."""
    build = schema.build_state_machine
    operation = schema.find_operation_by_id("putDevice")

    def register(machine: Any) -> StepOutput | None:
        case = operation.Case(path_parameters={"device_id": f"fuzz-device-{next(_SERIAL)}"},
                              body=dict(EXAMPLES["putDevice"]))
        step = StepInput.initial(case)
        machine.recorder.record_case(case=case)
        machine.control.record_step(step, machine.recorder)
        output: StepOutput | None = machine._step(step)
        return output

    # The answer goes to the bundle its status names, whatever the target.
    @initialize(target=Bundle("registration"))
    def register_device(machine: Any) -> StepOutput | None:
        return register(machine)

    # Later in a scenario too (another device), when no link can be followed and no other start
    # is allowed: so a scenario never runs out of steps to take.
    @precondition(_stuck)
    @rule(target=Bundle("registration"))
    def register_another_device(machine: Any) -> StepOutput | None:
        return register(machine)

    def build_state_machine(**kwargs: Any) -> type:
        machine: Any = build(**kwargs)
        dropped = {label for label in machine._root_labels if other_starts is not None
                   and schema.find_operation_by_label(label).definition.raw["operationId"] not in other_starts}
        rules = {normalize_name(f"RANDOM -> {label}") for label in dropped}
        assert rules <= machine.root_rules, (rules, machine.root_rules)
        return type("RegisterFirst", (machine,), {
            "register_device": register_device, "register_another_device": register_another_device,
            # A root rule left out: its attribute is no longer a rule, its label no longer a root.
            **dict.fromkeys(rules), "_root_labels": machine._root_labels - dropped})

    schema.build_state_machine = build_state_machine


def stateful_run(stack: LocalStack, operations: tuple[str, ...], skip_links: tuple[str, ...] = (),
                 other_starts: tuple[str, ...] | None = None) -> Run:
    # The example fence, device and campaign as the document's examples say, again: the run above
    # fuzzed PUTs and DELETEs on their ids, and the linked ping must land in the store fence whose
    # campaign sends it a push.
    seed_examples(stack.base_url, stack.admin_key)
    schema = load(stack, only=operations, skip_links=skip_links, examples=False, coverage=False, fuzzing=False,
                  stateful=True)
    register_first(schema, other_starts=other_starts)
    return run_engine(schema)


@pytest.fixture(scope="module")
def links_run(seeded: LocalStack) -> Run:
    return stateful_run(seeded, DEVICE_OPS)


@pytest.fixture(scope="module")
def chain_run(seeded: LocalStack, links_run: Run) -> Run:
    return stateful_run(seeded, CHAIN, OFF_CHAIN_LINKS, CHAIN_STARTS)


def _check(name: str, run: Run) -> None:
    print(f"stateful, {name}: {sum(run.cases.values())} calls in {run.seconds:.0f} s, links {dict(run.followed)}, "
          f"{run.chains} chain(s)")
    assert not run.errors, "\n".join(run.errors)
    assert not run.failures, f"{len(run.failures)} failure(s):\n" + "\n".join(run.failures)


def test_the_device_ping_delivery_event_links_answer_as_documented(links_run: Run, chain_run: Run) -> None:
    """Between the device, ping, delivery and event operations, every link
    of the document was followed, and every answer was as documented."""
    _check("links", links_run)
    _check("chain", chain_run)
    links = {name for op in DEVICE_OPS for name, link in LINKS.get(op, {}).items() if link["operationId"] in DEVICE_OPS}
    assert len(links) >= 8
    missing = sorted(name for name in links if not links_run.followed[name] + chain_run.followed[name])
    assert not missing, f"links never followed: {missing} (links: {dict(links_run.followed)}, chain: {dict(chain_run.followed)})"


def test_the_stateful_run_followed_register_ping_deliveries_event(chain_run: Run) -> None:
    """At least one scenario registered a device, pinged it inside the
    example fence, read its delivery from the log and reported it opened,
    each step through the document's links (``followed_chain``)."""
    assert chain_run.chains, f"no register → ping → deliveries → event chain followed (links: {dict(chain_run.followed)})"
