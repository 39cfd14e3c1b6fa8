"""Weather: NWS alerts and conditions in (admin key), the scheduled feed
poller, and the SQS fan-out sender (SPEC §3 "Weather")."""

from __future__ import annotations

import logging

from chalice import Blueprint, Rate

from chalicelib.api.common import ADMIN, handled, json_body, json_response, require
from chalicelib.deps import get_deps
from chalicelib.services import fanout as fanout_service
from chalicelib.services import weather
from chalicelib.weather import fanout

bp = Blueprint(__name__)
log = logging.getLogger("hexcast.weather")


@bp.route("/v1/weather/alerts", methods=["POST"])
@handled
def post_alerts():
    req = bp.current_request
    require(req, ADMIN)
    return json_response(weather.post_alerts(get_deps(), json_body(req)), 202)


@bp.route("/v1/weather/conditions", methods=["POST"])
@handled
def post_conditions():
    req = bp.current_request
    require(req, ADMIN)
    return json_response(weather.post_conditions(get_deps(), json_body(req)), 202)


@bp.schedule(Rate(2, unit=Rate.MINUTES), name="poll_weather")
def poll_weather(event):
    """Fetch the configured alert feed; errors are logged and retried next tick."""
    result = weather.poll_feed(get_deps())
    return {"status": result.status, "alerts": result.alerts, "reason": result.reason}


@bp.on_sqs_message(queue=fanout.QUEUE_NAME, batch_size=1, name="send_fanout")
def send_fanout(event):
    """One fan-out chunk per invocation: a failure is retried alone and a
    poison message reaches the dead-letter queue by itself."""
    deps = get_deps()
    for body in fanout.sqs_records(event):
        fanout_service.send_chunk(deps, body)
