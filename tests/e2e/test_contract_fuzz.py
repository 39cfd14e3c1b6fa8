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
  and event operations: a ping's unknown device registered → its id and
  secret into a ping, an event, a read, the erasure; a ping's deliveries →
  the delivery log → the ``push_opened`` event that reports one. The run
  must have followed the links ``MUST_FOLLOW`` names.

Deterministic: a fixed seed, derandomized, no example database. The module
runs after every other end-to-end test (``tests/e2e/conftest.py``): it leaves
arbitrary fences, devices and campaigns behind in the shared stack.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

import pytest
import requests
import schemathesis
from schemathesis.engine import Status, events, from_schema

from tools.fuzz import seed as seed_examples
from tools.fuzz import settings as fuzz_settings
from tools.localstack import LocalStack

pytestmark = pytest.mark.slow

#: Generated cases per operation and generation mode (valid, invalid) in the fuzzing phase.
MAX_EXAMPLES = 12
#: Operations whose coverage phase alone is 300-600 requests (every boundary of every field of a
#: campaign, an NWS alert, a FeatureCollection of fences): several minutes on a loaded machine,
#: so the bounded run gives them examples and generated cases only; ``make fuzz`` runs their
#: coverage phase too.
COVERAGE_IN_MAKE_FUZZ = ("putCampaign", "postWeatherAlerts", "importGeofences")
#: Stateful: scenarios, and calls per scenario at most.
SCENARIOS, MAX_STEPS = 40, 8
#: The operations of the register → ping → deliveries → events chain.
CHAIN = ("putDevice", "getDevice", "postPings", "listDeliveries", "postEvent", "deleteDevice")
#: Links the stateful run must have followed: a ping's unknown device into its registration,
#: and a ping's or the log's deliveries into the log or the opened event. (The registration's
#: own links — into a ping, an event, a read, the erasure — are in the document and followed
#: when schemathesis's scheduler picks them; with this seed it picks GetDevice and EraseDevice.)
MUST_FOLLOW = ("RegisterDevice", ("DeviceDeliveries", "OpenDelivery"))


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


def _record(run: Run, event: events.ScenarioFinished) -> None:
    rec = event.recorder
    run.seconds += event.elapsed_time
    for node in rec.cases.values():
        run.cases[(event.phase.value, node.value.operation.label)] += 1
        if node.transition is not None and node.is_transition_applied:
            run.followed[node.transition.id.split(" -> ")[-2].split("] ")[-1]] += 1  # "src -> [200] Name -> target"
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


def load(stack: LocalStack, *, only: tuple[str, ...] = (), **phases: bool) -> Any:
    """The served document as schemathesis's schema; ``only``: just these operations."""
    data = fuzz_settings(stack.base_url, stack.admin_key, max_examples=MAX_EXAMPLES)
    _phases(data, **phases)
    # Hypothesis's health checks judge the generator, not the API: "too slow" and "data too large"
    # fire for the fence import's FeatureCollections when the shared machine is loaded.
    data["suppress-health-check"] = ["too_slow", "data_too_large"]
    data["phases"]["stateful"] = {**data["phases"].get("stateful", {}), "max-steps": MAX_STEPS,
                                  "generation": {"max-examples": SCENARIOS}}
    data.setdefault("operations", []).append(
        {"include-operation-id": list(COVERAGE_IN_MAKE_FUZZ), "phases": {"coverage": {"enabled": False}}})
    config = schemathesis.Config.from_dict(data)
    if not only:
        return schemathesis.openapi.from_url(f"{stack.base_url}/v1/openapi.json", config=config)
    doc = requests.get(f"{stack.base_url}/v1/openapi.json", timeout=30).json()
    for path, item in list(doc["paths"].items()):
        kept = {m: op for m, op in item.items() if op["operationId"] in only}
        for op in kept.values():  # and only the links between them
            for answer in op["responses"].values():
                if "links" in answer:
                    answer["links"] = {k: v for k, v in answer["links"].items() if v["operationId"] in only}
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


@pytest.fixture(scope="module")
def chain_run(seeded: LocalStack) -> Run:
    return run_engine(load(seeded, only=CHAIN, examples=False, coverage=False, fuzzing=False, stateful=True))


def test_the_register_ping_deliveries_events_links_answer_as_documented(chain_run: Run) -> None:
    print(f"stateful: {sum(chain_run.cases.values())} calls in {chain_run.seconds:.0f} s, links {dict(chain_run.followed)}")
    assert not chain_run.errors, "\n".join(chain_run.errors)
    assert not chain_run.failures, f"{len(chain_run.failures)} failure(s):\n" + "\n".join(chain_run.failures)
    missing = [names for names in MUST_FOLLOW
               if not any(chain_run.followed[n] for n in ((names,) if isinstance(names, str) else names))]
    assert not missing, f"links never followed: {missing} (followed: {dict(chain_run.followed)})"
