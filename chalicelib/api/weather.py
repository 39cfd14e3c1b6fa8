"""Weather: NWS alerts (GeoJSON) or CAP 1.2 alerts (XML) and conditions in (admin key), what became of an
alert, the scheduled feed poller, the alert planner and the fan-out sender
(both SQS consumers, each a function of its own)."""

from __future__ import annotations

import logging
from typing import Any

from chalice import Blueprint, Rate

from chalicelib.api.common import MAX_BODY_BYTES, Call, media_type, route
from chalicelib.container import get_weather_deps
from chalicelib.errors import PayloadTooLarge
from chalicelib.settings import alert_queue_name
from chalicelib.weather import fanout

bp = Blueprint(__name__)
log = logging.getLogger("hexcast.weather")


@route(bp, "/v1/weather/alerts", methods=["POST"], status=202)
def post_alerts(call: Call) -> Any:
    from chalicelib.services import cap_alerts, weather

    if media_type(call.request) in cap_alerts.CAP_MEDIA_TYPES:
        return cap_alerts.post_cap(call.deps, _xml_body(call))
    return weather.post_alerts(call.deps, call.body())


def _xml_body(call: Call) -> bytes:
    """The raw body of a CAP request: 413 over the body limit (parsed by the
    hardened XML parser, never here)."""
    raw = call.request.raw_body or b""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body is over {MAX_BODY_BYTES // (1024 * 1024)} MiB", "body")
    return raw


@route(bp, "/v1/weather/alerts/{alert_id}", methods=["GET"])
def get_alert(call: Call, alert_id: str) -> Any:
    from chalicelib.services import weather

    return weather.get_alert(call.deps, alert_id)


@route(bp, "/v1/weather/conditions", methods=["POST"], status=202)
def post_conditions(call: Call) -> Any:
    from chalicelib.services import weather

    return weather.post_conditions(call.deps, call.body())


@bp.schedule(Rate(2, unit=Rate.MINUTES), name="poll_weather")
def poll_weather(event: Any) -> dict[str, Any]:
    """Fetch the configured alert feed; errors are logged and retried next tick."""
    from chalicelib.services import weather

    result = weather.poll_feed(get_weather_deps())
    return {"status": result.status, "alerts": result.alerts, "reason": result.reason}


@bp.on_sqs_message(queue=alert_queue_name(), batch_size=1, name="plan_alerts")
def plan_alerts(event: Any) -> None:
    """One accepted alert per invocation: its area, the devices inside and
    their fan-out chunks. A poison alert reaches the dead-letter queue by
    itself; the others go on."""
    from chalicelib.services import alert_planning

    deps = get_weather_deps()
    for body in fanout.sqs_records(event):
        alert_planning.plan_alert(deps, body)


@bp.on_sqs_message(queue=fanout.QUEUE_NAME, batch_size=1, name="send_fanout")
def send_fanout(event: Any) -> None:
    """One fan-out chunk per invocation: a failure is retried alone and a
    poison message reaches the dead-letter queue by itself."""
    from chalicelib.services import fanout as fanout_service

    deps = get_weather_deps()
    for body in fanout.sqs_records(event):
        fanout_service.send_chunk(deps, body)
