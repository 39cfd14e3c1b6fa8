"""Campaign use cases: create or replace, read, delete, list, and preview
the message one device would get. Each takes parsed JSON plus ``Deps`` and
returns plain data; errors are :mod:`chalicelib.errors` (the API maps them
to HTTP statuses)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from chalicelib.errors import InvalidInput, NotFound
from chalicelib.push.campaigns import Campaign, parse_campaign
from chalicelib.push.model import GEOFENCE_TRIGGERS, CampaignRecord, FenceContext, Trigger
from chalicelib.push.render import CompiledTemplate, RenderError
from chalicelib.push.template_check import undefined_in_context, variable_warnings
from chalicelib.services.devices import device_or_404
from chalicelib.services.delivery import coupon_for
from chalicelib.timeutil import iso
from chalicelib.validation import CAMPAIGN_ID_RE, FENCE_ID_RE, known_fields, lone_surrogate_path, validate_campaign_id, validate_device_id

if TYPE_CHECKING:
    from chalicelib.services.deps import Deps

log = logging.getLogger("hexcast.push")


def put_campaign(deps: Deps, campaign_id: str, body: Any) -> dict:
    campaign_id = validate_campaign_id(campaign_id)
    if not isinstance(body, dict):  # named "body" like every other route (parse_campaign says None)
        raise InvalidInput("the campaign must be a JSON object", "body")
    bad_text = lone_surrogate_path(body)
    if bad_text is not None:
        raise InvalidInput("text must be valid Unicode (a lone UTF-16 surrogate such as \\ud800 cannot be sent)", bad_text)
    campaign = parse_campaign(campaign_id, body)
    if campaign.coupon is not None and not deps.settings.coupon_secret:
        raise InvalidInput("coupons need HEXCAST_COUPON_SECRET configured for this stage", "coupon")
    rec = deps.campaigns.put_campaign(campaign_id, campaign.definition(), iso(deps.clock()))
    deps.campaign_cache.invalidate()
    log.info("campaign stored", extra={"campaign_id": campaign_id, "version": rec.version})
    return {**_campaign_json(rec), "warnings": template_warnings(campaign)}


def _unset_names(campaign: Campaign) -> dict[str, str]:
    """Built-in variables this campaign never sets → why."""
    unset = {}
    if campaign.coupon is None:
        unset["coupon"] = "the campaign has no coupon"
    if campaign.experiment is None:
        unset["arm"] = "the campaign has no experiment"
    if campaign.trigger.type in GEOFENCE_TRIGGERS:
        unset["alert"] = "only weather_alert campaigns have an alert"
    else:
        unset["fence"] = "a weather_alert push has no fence"
        unset["weather"] = "a weather_alert push carries no weather conditions"
    return unset


def _templates(campaign: Campaign) -> list[CompiledTemplate]:
    out = []
    for message in campaign.messages():
        out += [message.title, message.body]
        if message.deep_link is not None:
            out.append(message.deep_link)
    return out


def template_warnings(campaign: Campaign) -> list[dict]:
    """``[{"field", "message", "line", "variable"}]``: the variables the
    campaign's templates read that nothing defines for it (see
    :func:`~chalicelib.push.template_check.variable_warnings`)."""
    unset = _unset_names(campaign)
    tested = [v.when.attribute for v in campaign.variants]
    out: list[dict] = []
    for tpl in _templates(campaign):
        out += variable_warnings(tpl.template, tpl.source, tpl.field, unset=unset, attributes=tested)
    return out


def _campaign_json(rec: CampaignRecord) -> dict:
    return {"id": rec.campaign_id, **rec.definition, "version": rec.version, "created_at": rec.created_at, "updated_at": rec.updated_at}


def campaign_or_404(deps: Deps, campaign_id: str) -> CampaignRecord:
    """The stored campaign, or 404 naming ``campaign_id`` (also for a malformed id)."""
    rec = deps.campaigns.get_campaign(campaign_id) if isinstance(campaign_id, str) and CAMPAIGN_ID_RE.fullmatch(campaign_id) else None
    if rec is None:
        raise NotFound(f"no campaign {campaign_id!r}", "campaign_id")
    return rec


def get_campaign(deps: Deps, campaign_id: str) -> dict:
    return _campaign_json(campaign_or_404(deps, campaign_id))


def delete_campaign(deps: Deps, campaign_id: str) -> None:
    campaign_or_404(deps, campaign_id)
    deps.campaigns.delete_campaign(campaign_id)
    deps.campaign_cache.invalidate()


def list_campaigns(deps: Deps, limit: int = 100, next_token: str | None = None) -> dict:
    """By id; ``next_token`` is the last id of the previous page."""
    if next_token is not None and not CAMPAIGN_ID_RE.fullmatch(next_token):
        raise InvalidInput("next_token is not valid", "next_token")
    recs = sorted(deps.campaigns.list_campaigns(), key=lambda r: r.campaign_id)
    if next_token is not None:
        recs = [r for r in recs if r.campaign_id > next_token]
    page = recs[:limit]
    token = page[-1].campaign_id if len(recs) > limit else None
    return {"campaigns": [_campaign_json(r) for r in page], "next_token": token}


# ---------------------------------------------------------------- preview
def _sample_trigger(deps: Deps, campaign: Campaign, body: dict) -> Trigger:
    now = deps.clock()
    t = campaign.trigger
    if t.type == "weather_alert":
        alert = body.get("alert")
        if alert is not None and not isinstance(alert, dict):
            raise InvalidInput("alert must be an object", "alert")
        alert = dict(alert or {})
        alert.setdefault("event", t.events[0] if t.events else "Winter Storm Warning")
        alert.setdefault("severity", t.min_severity or "Moderate")
        alert.setdefault("headline", f"{alert['event']} (preview)")
        alert.setdefault("area_desc", "Preview County")
        return Trigger("weather_alert", "preview", "preview", now, alert=alert)
    fence_id = body.get("fence_id")
    if fence_id is None:
        fence_id = t.fence_ids[0] if t.fence_ids else None
    if fence_id is None and t.fence_tags:
        recs, _ = deps.fences.list_fences(t.fence_tags[0], 1, None)
        fence_id = recs[0].fence_id if recs else None
    rec = None
    if fence_id is not None:
        if not isinstance(fence_id, str) or not FENCE_ID_RE.fullmatch(fence_id):
            raise InvalidInput("fence_id must be a valid fence id", "fence_id")
        rec = deps.fences.get_fence(fence_id)
        if rec is None and "fence_id" in body:
            raise NotFound(f"no geofence {fence_id!r}", "fence_id")
    if rec is not None:
        fence = FenceContext(rec.fence_id, rec.name, tuple(rec.tags), dict(rec.feature.get("properties", {}).get("metadata") or {}))
    else:
        fence = FenceContext(fence_id or "preview", fence_id or "Preview fence", tuple(t.fence_tags))
    weather = body.get("weather")
    if weather is not None and not isinstance(weather, dict):
        raise InvalidInput("weather must be an object", "weather")
    event = t.type.removeprefix("geofence_")
    trig = Trigger.geofence(event, fence, now, now)
    return Trigger(trig.type, trig.key, trig.ref, now, fence=fence, weather=weather)


def preview(deps: Deps, campaign_id: str, body: Any) -> dict:
    """The message a device would get now, rendered but never claimed or sent."""
    rec = campaign_or_404(deps, campaign_id)
    if not isinstance(body, dict):
        raise InvalidInput("expected a JSON object {\"device_id\"}", "body")
    known_fields(body, ("device_id", "fence_id", "alert", "weather"))  # alert, weather: sample variables, free-form
    device_id = validate_device_id(body.get("device_id"))
    device = device_or_404(deps, device_id)
    campaign = parse_campaign(rec.campaign_id, rec.definition)
    trigger = _sample_trigger(deps, campaign, body)
    now = deps.clock()
    arm = campaign.assign_arm(device_id)
    coupon = coupon_for(deps, campaign, device_id, now)
    out: dict[str, Any] = {"campaign_id": campaign.campaign_id, "device_id": device_id, "arm": arm}
    render_arm = arm if arm != "control" else None
    out["warnings"] = _preview_warnings(campaign, device.attributes, trigger, coupon, now, render_arm)
    try:
        msg = campaign.render(device.attributes, trigger, coupon=coupon, now=now, arm=render_arm)
    except RenderError as exc:
        out.update(rendered=False, error=str(exc))
        return out
    out.update(rendered=True, title=msg.title, body=msg.body, deep_link=msg.deep_link, variant=msg.variant)
    if coupon:
        out["coupon"] = {"code": coupon.code, "percent_off": coupon.percent_off, "expires_at": iso(coupon.expires_at)}
    if arm == "control":
        out["note"] = "this device is in the control group: it would be recorded, not sent"
    return out


def _preview_warnings(campaign: Campaign, attributes: dict, trigger: Trigger, coupon: Any, now: float,
                      arm: str | None) -> list[dict]:
    """The variables the message this device gets reads and that are
    undefined for it (they render empty)."""
    message, base, _ = campaign.choose_message(attributes, arm)
    link = message.deep_link or base.deep_link or campaign.message.deep_link
    context = campaign.context(attributes, trigger, coupon=coupon, now=now, arm=arm).resolved()
    out: list[dict] = []
    for tpl in (message.title, message.body, link):
        if tpl is not None:
            out += undefined_in_context(tpl.template, tpl.source, tpl.field, context)
    return out
