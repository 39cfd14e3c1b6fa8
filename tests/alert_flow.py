"""Alerts through the intake and then the planner, in process: what a test
of the whole weather flow wants from one call."""

from __future__ import annotations

from typing import Any

from chalicelib.services import alert_planning, weather
from chalicelib.services.deps import Deps


def plan_queued(deps: Deps) -> int:
    """Plan every alert message the in-process queue holds (chunk messages
    stay queued for the test to drain); → how many were planned."""
    held = getattr(deps.queue, "messages", None)
    if held is None:
        return 0
    plans = [m for m in held if alert_planning.is_plan_message(m)]
    held[:] = [m for m in held if not alert_planning.is_plan_message(m)]
    for body in plans:
        alert_planning.plan_alert(deps, body)
    return len(plans)


def outcomes(deps: Deps, results: list[dict]) -> list[dict]:
    """The intake's answers, each accepted one merged with its record (what
    the planner made of it: ``processed``, ``unresolved_area`` …)."""
    ids = [r["id"] for r in results if r["status"] == "accepted"]
    records = deps.weather.get_alert_records(ids) if ids else {}
    out = []
    for r in results:
        rec = records.get(r["id"]) if r["status"] == "accepted" else None
        out.append({**r, **rec} if rec else r)
    return out


def post_and_plan(deps: Deps, body: Any) -> list[dict]:
    """POST the alerts, plan what was accepted; → the merged answers."""
    results = weather.post_alerts(deps, body)["alerts"]
    plan_queued(deps)
    return outcomes(deps, results)
