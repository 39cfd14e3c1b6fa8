"""A real alert chain arriving in any order: intake and planning interleaved
at random, messages posted twice (one request or two), queue messages
delivered twice. Whatever happens: each message is planned at most once, a
device gets at most one push per lineage, nothing pushes once the cancel is
taken, and without a cancel everyone inside the final area is reached.

The chain is built from a real NWS Update (a Flash Flood Warning polygon
and its two ``references``): the messages it references are rebuilt with
their real ids and times — an Alert, then an Update referencing it — over a
growing part of the real polygon, as NWS references every earlier message
of a chain. The cancel references only the last message."""

from __future__ import annotations

import collections
import copy

import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely import affinity

from chalicelib.services import alert_planning, weather
from chalicelib.services import campaigns as campaign_service
from chalicelib.weather.fanout import InlineQueue
from tests.unit.test_weather_service import STORM_CAMPAIGN, anchor, brute_force, grid, make_deps, place, sample, sent_to

REAL = sample("flash_flood_warning_polygon_update")
POLYGON = shapely.geometry.shape(REAL["feature"]["geometry"])
POINTS = grid(47.42, -122.28, 47.47, -122.20, 7)


def _message(alert_id: str, sent: str, kind: str, refs: list[dict], scale: float) -> dict:
    f = copy.deepcopy(REAL["feature"])
    shape = affinity.scale(POLYGON, scale, scale, origin="centroid")
    f["geometry"] = shapely.geometry.mapping(shape)
    f["id"] = f"https://api.weather.gov/alerts/{alert_id}"
    f["properties"].update(id=alert_id, sent=sent, messageType=kind, references=refs)
    return f


def chain(with_cancel: bool) -> list[dict]:
    """[Alert, Update, the real Update, (Cancel of the last only)]."""
    props = REAL["feature"]["properties"]
    refs = sorted(props["references"], key=lambda r: r["sent"])
    out = []
    for i, ref in enumerate(refs):
        out.append(_message(ref["identifier"], ref["sent"], "Alert" if i == 0 else "Update", refs[:i], 0.5 + 0.2 * i))
    out.append(copy.deepcopy(REAL["feature"]))
    if with_cancel:
        last = {"identifier": props["id"], "sent": props["sent"], "@id": REAL["feature"]["id"]}
        out.append(_message(props["id"] + ".cancel", props["sent"], "Cancel", [last], 1.0))
    return out


@st.composite
def schedules(draw):
    """Steps: ("post", [message indexes]) or ("plan", queue position, redeliver?)."""
    with_cancel = draw(st.booleans())
    n = 4 if with_cancel else 3
    order = draw(st.permutations(range(n)))
    posts = []
    for i in order:
        copies = draw(st.sampled_from([[i], [i], [i, i]]))  # twice in one request
        posts.append(copies)
        if draw(st.integers(0, 4)) == 0:
            posts.append([i])  # posted again later
    steps: list[tuple] = [("post", p) for p in posts]
    for _ in range(draw(st.integers(0, 8))):  # planning and sending interleaved with the posts
        steps.insert(draw(st.integers(0, len(steps))), ("plan", draw(st.integers(0, 20)), draw(st.booleans())))
    return with_cancel, steps


@settings(max_examples=60, deadline=None)
@given(schedules())
def test_any_arrival_order_plans_once_pushes_once_and_respects_the_cancel(schedule):
    with_cancel, steps = schedule
    messages = chain(with_cancel)
    deps = make_deps(anchor(REAL), queue=True)
    campaign_service.put_campaign(deps, "storm", STORM_CAMPAIGN)
    place(deps, POINTS)
    queue: InlineQueue = deps.queue  # type: ignore[assignment]
    planned: collections.Counter[str] = collections.Counter()
    real_plan = alert_planning._plan

    def counting(d, alert, now, until):
        planned[alert.id] += 1
        return real_plan(d, alert, now, until)

    alert_planning._plan = counting  # type: ignore[assignment]
    try:
        cancelled_at = None  # pushes published once the cancel was taken and linked
        posted: set[int] = set()
        for step in steps:
            if step[0] == "post":
                body = {"type": "FeatureCollection", "features": [messages[i] for i in step[1]]}
                weather.post_alerts(deps, body)
                posted.update(step[1])
                # The cancel names only the last message: it is known to end
                # the chain once both have arrived.
                if with_cancel and {2, 3} <= posted and cancelled_at is None:
                    cancelled_at = len(deps.push.published)
            elif queue.messages:
                pos = step[1] % len(queue.messages)
                body = queue.messages[pos] if step[2] else queue.messages.pop(pos)  # redelivered: stays queued
                _consume(deps, body)
        while queue.messages:  # SQS delivers everything left
            _consume(deps, queue.messages.pop(0))
    finally:
        alert_planning._plan = real_plan  # type: ignore[assignment]

    assert all(n == 1 for n in planned.values()), planned
    pushed = collections.Counter(sent_to(deps))
    assert all(n == 1 for n in pushed.values()), pushed  # one lineage: one push per device
    if with_cancel:
        assert cancelled_at is not None and len(deps.push.published) == cancelled_at
    else:
        inside = brute_force(POLYGON, POINTS)
        assert inside and set(pushed) == inside


def _consume(deps, body: str) -> None:
    if alert_planning.is_plan_message(body):
        alert_planning.plan_alert(deps, body)
    else:
        from chalicelib.services import fanout

        fanout.send_chunk(deps, body)
