"""JSON logs (chalicelib/logs.py), EMF metrics (chalicelib/metrics.py) and
the middleware that binds them to each invocation (api/observability.py)."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
from chalice.app import CloudWatchEvent, Request, SQSEvent

from chalicelib import logs, metrics
from chalicelib.api.observability import observe, request_id_of
from chalicelib.services.delivery import Outcome


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def hexcast_logger():
    """The ``hexcast`` logger, restored after the test (configure changes it)."""
    logger = logging.getLogger(logs.ROOT)
    saved = (list(logger.handlers), logger.level, logger.propagate, logs._configured,
             logging.getLogger(logs.METRICS_LOGGER).level)
    yield logger
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]
    logs._configured = saved[3]
    logging.getLogger(logs.METRICS_LOGGER).setLevel(saved[4])


def record(msg="delivery", *args, level=logging.INFO, name="hexcast.push", exc_info=None, **extra) -> logging.LogRecord:
    r = logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)
    r.__dict__.update(extra)
    return r


# ---------------------------------------------------------------- the formatter
def test_a_line_is_one_json_object_with_time_level_logger_message_request_id_and_extras():
    with logs.bound("req-1"):
        line = logs.JsonFormatter().format(record("delivery %s", "dl_1", delivery_id="dl_1", status="sent", reason=None))
    assert "\n" not in line
    out = json.loads(line)
    assert out == {"time": out["time"], "level": "INFO", "logger": "hexcast.push", "message": "delivery dl_1",
                   "request_id": "req-1", "delivery_id": "dl_1", "status": "sent", "reason": None}
    assert out["time"].endswith("Z") and len(out["time"]) == 24


def test_sensitive_extras_are_redacted_at_any_depth():
    out = json.loads(logs.JsonFormatter().format(record(
        "ping", lat=40.7128, lng=-74.006, push_token="tok-1", device_secret="s", x_api_key="k",
        body={"pings": [{"lat": 1.5, "lng": 2.5, "device_id": "d1"}], "note": "at lat=40.7128"}, device_id="d1")))
    assert out["lat"] == out["lng"] == out["push_token"] == out["device_secret"] == out["x_api_key"] == "[redacted]"
    assert out["body"] == {"pings": [{"lat": "[redacted]", "lng": "[redacted]", "device_id": "d1"}], "note": "at lat=[redacted]"}
    assert out["device_id"] == "d1"


def test_message_and_exception_text_are_scrubbed():
    try:
        raise ValueError("bad ping at 40.712800, -74.006000 with token=tok-9")
    except ValueError:
        exc = sys.exc_info()
    out = json.loads(logs.JsonFormatter().format(record("ping lat=%s lng=%s", 40.7128, -74.006, level=logging.ERROR, exc_info=exc)))
    assert out["message"] == "ping lat=[redacted] lng=[redacted]"
    assert "40.7128" not in out["exception"] and "tok-9" not in out["exception"] and "ValueError" in out["exception"]


def test_without_redaction_the_raw_values_show():
    out = json.loads(logs.JsonFormatter(redaction=False).format(record("at %s", "lat=1.5", lat=1.5)))
    assert out["lat"] == 1.5 and out["message"] == "at lat=1.5"


def test_request_id_follows_work_into_a_context_thread_pool():
    seen = []
    pool = logs.ContextThreadPool(max_workers=2)
    try:
        with logs.bound("req-pool"):
            list(pool.map(lambda _: seen.append(logs.request_id()), range(4)))
        assert pool.submit(logs.request_id).result() is None  # outside: nothing bound
    finally:
        pool.shutdown()
    assert seen == ["req-pool"] * 4


def test_bound_generates_an_id_when_there_is_none():
    with logs.bound(None) as rid:
        assert rid and logs.request_id() == rid
    assert logs.request_id() is None


# ---------------------------------------------------------------- configure
def test_configure_replaces_chalices_handler_and_emits_json_at_the_configured_level(hexcast_logger, monkeypatch):
    from chalice import Chalice

    Chalice(app_name=logs.ROOT)  # what app.py does: hexcast at ERROR, a plain stdout handler, no propagation
    keep = ListHandler()
    hexcast_logger.addHandler(keep)
    assert not logging.getLogger("hexcast.services").isEnabledFor(logging.INFO)
    logs.configure("INFO")
    assert [type(h) for h in hexcast_logger.handlers if type(h) is logging.StreamHandler] == []
    assert keep in hexcast_logger.handlers and hexcast_logger.propagate is False
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)  # the handler looks stdout up per line
    with logs.bound("r-9"):
        logging.getLogger("hexcast.services").info("fence stored", extra={"fence_id": "f1"})
        logging.getLogger("hexcast.services").debug("not at INFO")
    (line,) = out.getvalue().splitlines()
    assert json.loads(line)["fence_id"] == "f1" and json.loads(line)["request_id"] == "r-9"
    logs.configure("WARNING")
    assert len([h for h in hexcast_logger.handlers if isinstance(h, logs.JsonHandler)]) == 1  # idempotent
    assert logging.getLogger(logs.METRICS_LOGGER).isEnabledFor(logging.INFO)  # EMF whatever the level


def test_configure_once_survives_a_chalice_app_created_later(hexcast_logger):
    from chalice import Chalice

    logs.configure("WARNING", metrics=False)  # a console tool, before the stack imports app.py
    Chalice(app_name=logs.ROOT)  # puts its plain handler and ERROR back
    logs.configure_once("INFO")  # the first invocation: what was configured is restored
    assert not any(type(h) is logging.StreamHandler for h in hexcast_logger.handlers)
    assert hexcast_logger.level == logging.WARNING
    assert not logging.getLogger(logs.METRICS_LOGGER).isEnabledFor(logging.INFO)


@pytest.mark.parametrize("name,level", [("INFO", logging.INFO), ("debug", logging.DEBUG), ("nonsense", logging.INFO), (30, 30)])
def test_level_names(name, level):
    assert logs.level_of(name) == level


# ---------------------------------------------------------------- metrics
def test_hooks_do_nothing_outside_an_invocation():
    metrics.pings([{"accepted": True, "events": [{"type": "enter"}]}])
    metrics.delivery("sent")
    metrics.fanout_lag(1.0, 2.0)
    assert metrics._current.get() is None


def test_an_invocation_writes_valid_emf_documents_once_at_its_end():
    handler = ListHandler()
    logger = logging.getLogger(logs.METRICS_LOGGER)
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        with metrics.invocation(lambda: "prod"):
            metrics.pings([{"accepted": True, "events": [{"type": "enter"}, {"type": "dwell"}]},
                           {"accepted": False, "events": []}, {"accepted": True, "events": [{"type": "enter"}]}])
            metrics.event("push_opened")
            metrics.delivery("sent")
            metrics.delivery("sent")
            metrics.delivery("suppressed", "quiet_hours")
            metrics.delivery("sent", duplicate=True)
            metrics.fanout_lag(100.0, 104.25)
            assert handler.records == []  # nothing before the end
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    docs = []
    for r in handler.records:
        doc = json.loads(logs.JsonFormatter().format(r))
        aws = doc["_aws"]
        assert isinstance(aws["Timestamp"], int)
        (directive,) = aws["CloudWatchMetrics"]
        assert directive["Namespace"] == "hexcast"
        (dims,) = directive["Dimensions"]
        assert dims[0] == "stage" and all(doc[d] for d in dims)  # every dimension is a top-level value
        assert all(m["Name"] in doc and m["Unit"] in ("Count", "Seconds") for m in directive["Metrics"])
        docs.append({k: v for k, v in doc.items() if k not in ("_aws", "time", "level", "logger", "message", "request_id")})
    assert sorted(docs, key=json.dumps) == sorted([
        {"stage": "prod", "pings_accepted": 2, "pings_rejected": 1, "delivery_duplicates": 1, "fanout_lag_s": [4.25]},
        {"stage": "prod", "type": "enter", "events": 2},
        {"stage": "prod", "type": "dwell", "events": 1},
        {"stage": "prod", "type": "push_opened", "events": 1},
        {"stage": "prod", "status": "sent", "reason": "-", "deliveries": 2},
        {"stage": "prod", "status": "suppressed", "reason": "quiet_hours", "deliveries": 1},
    ], key=json.dumps)


def test_counts_outcome_counts_what_decide_returns():
    decide = metrics.counts_outcome(lambda status, dup: Outcome("dl_1", status, None, duplicate=dup))
    with metrics.invocation(lambda: "t") as inv:
        decide("sent", False)
        decide("sent", True)
    assert inv.counts == {(("reason", "-"), ("status", "sent")): {"deliveries": 1}, (): {"delivery_duplicates": 1}}


def test_fanout_lag_ignores_messages_without_queued_at():
    with metrics.invocation(lambda: "t") as inv:
        metrics.fanout_lag(None, 5.0)
        metrics.fanout_lag("yesterday", 5.0)
        metrics.fanout_lag(10.0, 5.0)  # clock skew: never negative
    assert inv.values == {"fanout_lag_s": [0.0]}


# ---------------------------------------------------------------- request ids
class Ctx:
    aws_request_id = "lambda-req-1"


def http_request(request_id: str | None) -> Request:
    ctx = {"httpMethod": "GET", "resourcePath": "/v1/health", "path": "/v1/health"}
    if request_id:
        ctx["requestId"] = request_id
    event = {"multiValueQueryStringParameters": None, "headers": {}, "pathParameters": None, "requestContext": ctx,
             "stageVariables": None, "body": None, "isBase64Encoded": False}
    return Request(event, Ctx())


def test_request_id_is_api_gateways_then_lambdas():
    assert request_id_of(http_request("apigw-1")) == "apigw-1"
    assert request_id_of(http_request(None)) == "lambda-req-1"


def test_request_id_of_an_sqs_message_is_its_message_id():
    event = SQSEvent({"Records": [{"messageId": "m-1", "body": "{}", "receiptHandle": "r"}]}, Ctx())
    assert request_id_of(event) == "m-1"
    two = SQSEvent({"Records": [{"messageId": "m-1", "body": "", "receiptHandle": "r"},
                                {"messageId": "m-2", "body": "", "receiptHandle": "r"}]}, Ctx())
    assert request_id_of(two) == "lambda-req-1"


def test_request_id_of_a_scheduled_event_without_context_is_the_event_id():
    raw = {"version": "0", "account": "1", "region": "r", "detail": {}, "detail-type": "Scheduled Event",
           "source": "aws.events", "time": "2026-01-01T05:00:00Z", "id": "ev-1", "resources": []}
    assert request_id_of(CloudWatchEvent(raw, None)) == "ev-1"
    assert request_id_of(CloudWatchEvent(raw, Ctx())) == "lambda-req-1"


def test_the_middleware_binds_the_id_and_flushes_metrics(hexcast_logger, monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)

    def view(event):
        logging.getLogger("hexcast.api").info("inside", extra={"device_id": "d1"})
        metrics.pings([{"accepted": True, "events": []}])
        return "ok"

    assert observe(http_request("apigw-7"), view) == "ok"
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["inside", "metrics"]
    assert {line["request_id"] for line in lines} == {"apigw-7"}
    assert lines[1]["pings_accepted"] == 1
