"""Campaigns, the delivery log, events and audience estimates (SPEC §3)."""

from __future__ import annotations

from chalice import Blueprint, Rate, Response

from chalicelib.api.common import ADMIN, APP, device_secret, handled, json_body, json_response, parse_limit, query_params, require
from chalicelib.deps import get_deps
from chalicelib.services import campaigns, engagement

bp = Blueprint(__name__)


@bp.route("/v1/campaigns", methods=["GET"])
@handled
def list_campaigns():
    req = bp.current_request
    require(req, ADMIN)
    params = query_params(req)
    return json_response(campaigns.list_campaigns(get_deps(), parse_limit(params), params.get("next_token")))


@bp.route("/v1/campaigns/{campaign_id}", methods=["PUT"])
@handled
def put_campaign(campaign_id):
    req = bp.current_request
    require(req, ADMIN)
    return json_response(campaigns.put_campaign(get_deps(), campaign_id, json_body(req)))


@bp.route("/v1/campaigns/{campaign_id}", methods=["GET"])
@handled
def get_campaign(campaign_id):
    require(bp.current_request, ADMIN)
    return json_response(campaigns.get_campaign(get_deps(), campaign_id))


@bp.route("/v1/campaigns/{campaign_id}", methods=["DELETE"])
@handled
def delete_campaign(campaign_id):
    require(bp.current_request, ADMIN)
    campaigns.delete_campaign(get_deps(), campaign_id)
    return Response(body="", status_code=204)


@bp.route("/v1/campaigns/{campaign_id}/preview", methods=["POST"])
@handled
def preview_campaign(campaign_id):
    req = bp.current_request
    require(req, ADMIN)
    return json_response(campaigns.preview(get_deps(), campaign_id, json_body(req)))


@bp.route("/v1/campaigns/{campaign_id}/stats", methods=["GET"])
@handled
def campaign_stats(campaign_id):
    require(bp.current_request, ADMIN)
    return json_response(engagement.stats(get_deps(), campaign_id))


@bp.route("/v1/deliveries", methods=["GET"])
@handled
def list_deliveries():
    req = bp.current_request
    require(req, ADMIN)
    params = query_params(req)
    return json_response(engagement.list_deliveries(get_deps(), params, parse_limit(params)))


@bp.route("/v1/events", methods=["POST"])
@handled
def post_event():
    req = bp.current_request
    role = require(req, ADMIN, APP)
    return json_response(engagement.post_event(get_deps(), json_body(req), role=role, secret=device_secret(req)), 202)


@bp.route("/v1/audience/estimate", methods=["POST"])
@handled
def audience_estimate():
    req = bp.current_request
    require(req, ADMIN)
    return json_response(engagement.audience_estimate(get_deps(), json_body(req)))


@bp.schedule(Rate(1, unit=Rate.MINUTES), name="release_held")
def release_held(event):
    """Quiet hours in ``hold`` mode: send what is due now. Then the sweep:
    deliveries a dead invocation left ``pending`` (driven again) or
    ``publishing`` (``failed: interrupted``) for over 10 minutes."""
    deps = get_deps()
    counts = engagement.release_held(deps)
    return {"released": counts, "swept": engagement.sweep_open(deps)}
