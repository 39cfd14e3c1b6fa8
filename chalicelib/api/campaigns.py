"""Campaigns, the delivery log, events and audience estimates."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, Rate

from chalicelib.api.common import ADMIN, APP, Call, route
from chalicelib.container import get_deps

bp = Blueprint(__name__)


@route(bp, "/v1/campaigns")
def list_campaigns(call: Call) -> Any:
    from chalicelib.services import campaigns

    return campaigns.list_campaigns(call.deps, call.limit(), call.query.get("next_token"))


@route(bp, "/v1/campaigns/{campaign_id}", methods=["PUT"])
def put_campaign(call: Call, campaign_id: str) -> Any:
    from chalicelib.services import campaigns

    return campaigns.put_campaign(call.deps, campaign_id, call.body())


@route(bp, "/v1/campaigns/{campaign_id}")
def get_campaign(call: Call, campaign_id: str) -> Any:
    from chalicelib.services import campaigns

    return campaigns.get_campaign(call.deps, campaign_id)


@route(bp, "/v1/campaigns/{campaign_id}", methods=["DELETE"])
def delete_campaign(call: Call, campaign_id: str) -> None:
    from chalicelib.services import campaigns

    campaigns.delete_campaign(call.deps, campaign_id)


@route(bp, "/v1/campaigns/{campaign_id}/preview", methods=["POST"])
def preview_campaign(call: Call, campaign_id: str) -> Any:
    from chalicelib.services import campaigns

    return campaigns.preview(call.deps, campaign_id, call.body())


@route(bp, "/v1/campaigns/{campaign_id}/stats")
def campaign_stats(call: Call, campaign_id: str) -> Any:
    from chalicelib.services import engagement

    return engagement.stats(call.deps, campaign_id)


@route(bp, "/v1/deliveries")
def list_deliveries(call: Call) -> Any:
    from chalicelib.services import engagement

    params = call.query
    return engagement.list_deliveries(call.deps, params, call.limit())


@route(bp, "/v1/events", methods=["POST"], roles=(ADMIN, APP), status=202)
def post_event(call: Call) -> Any:
    from chalicelib.services import engagement

    return engagement.post_event(call.deps, call.body(), role=call.role, secret=call.secret)


@route(bp, "/v1/audience/estimate", methods=["POST"])
def audience_estimate(call: Call) -> Any:
    from chalicelib.services import engagement

    return engagement.audience_estimate(call.deps, call.body())


@bp.schedule(Rate(1, unit=Rate.MINUTES), name="release_held")
def release_held(event: Any) -> dict[str, Any]:
    """Quiet hours in ``hold`` mode: send what is due now. Then the sweep:
    deliveries a dead invocation left ``pending`` (driven again) or
    ``publishing`` (``failed: interrupted``) for over 10 minutes."""
    from chalicelib.services import engagement

    deps = get_deps()
    counts = engagement.release_held(deps)
    return {"released": counts, "swept": engagement.sweep_open(deps)}
