"""The middleware every Lambda entry point runs through (``app.py`` registers
it for all event types): JSON logging configured on the first invocation,
the invocation's request id bound to every line it logs, and its metrics
counted and written (EMF) when it ends."""

from __future__ import annotations

import os
from typing import Any, Callable

from chalicelib import logs, metrics
from chalicelib.settings import get_settings


def request_id_of(event: Any) -> str:
    """API Gateway's request id; for an SQS event its (single) message's id;
    otherwise Lambda's ``aws_request_id``, a scheduled event's id, or a new one."""
    context = getattr(event, "context", None)
    if isinstance(context, dict) and context.get("requestId"):  # an HTTP Request
        return str(context["requestId"])
    raw = event.to_dict() if hasattr(event, "to_dict") else None
    records = raw.get("Records") if isinstance(raw, dict) else None
    if isinstance(records, list) and len(records) == 1 and isinstance(records[0], dict) and records[0].get("messageId"):
        return str(records[0]["messageId"])
    lambda_context = getattr(event, "lambda_context", None) or (None if isinstance(context, dict) else context)
    rid = getattr(lambda_context, "aws_request_id", None)
    if rid:
        return str(rid)
    if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"]:
        return raw["id"]
    return os.urandom(16).hex()


def _stage() -> str:
    return get_settings().stage


def _level() -> str:
    try:
        return get_settings().log_level
    except Exception:  # noqa: BLE001 — bad settings fail the route (logged), not the logging
        return "INFO"


def observe(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Chalice middleware (``app.register_middleware(observe, "all")``)."""
    logs.configure_once(_level())
    with logs.bound(request_id_of(event)), metrics.invocation(_stage):
        return get_response(event)
