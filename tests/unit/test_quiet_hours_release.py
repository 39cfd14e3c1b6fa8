"""A push held by quiet hours is rendered when it is released, not when it
was decided: ``local_time``, the weather at the device, the coupon's expiry
and the device's attributes are those of the release. Fake clock only."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from chalicelib.push.model import HELD, Trigger
from chalicelib.services import engagement
from chalicelib.services.delivery_sweep import release_held
from chalicelib.services.weather import post_conditions
from chalicelib.timeutil import iso
from tests.unit.test_pipeline import INSIDE, T0, deps, record, register, setup, visit  # noqa: F401 - deps: fixture

QUIET = {"start": "21:00", "end": "08:00", "mode": "hold"}
TOKYO = {"first_name": "Ana", "timezone": "Asia/Tokyo"}  # T0 is 21:00 in Tokyo


def held(deps, device_id="d1"):
    d = record(deps, visit(deps, start=-60, device_id=device_id)["deliveries"][0])
    assert (d.status, d.reason) == (HELD, "quiet_hours")
    return d


def test_local_time_is_the_time_of_release(deps):
    setup(deps, attrs=TOKYO, quiet_hours=QUIET,
          message={"title": "Hi {{ first_name }}", "body": "Sent at {{ local_time }} on {{ local_weekday }}"})
    d = held(deps)
    assert d.title is None and d.body is None  # the trigger is kept, not a text rendered at 21:00
    assert d.release_at == datetime(2026, 7, 16, 8, 0, tzinfo=ZoneInfo("Asia/Tokyo")).timestamp()
    deps.clock.now = d.release_at + 30
    assert release_held(deps) == {"sent": 1}
    out = record(deps, d.delivery_id)
    assert (out.status, out.body) == ("sent", "Sent at 08:00 on Thursday")
    assert deps.push.published[-1][2].body == "Sent at 08:00 on Thursday"
    assert out.held_context is None and out.release_at is None


def test_weather_and_coupon_are_those_of_the_release(deps):
    setup(deps, attrs=TOKYO, quiet_hours=QUIET,
          message={"title": "{{ fence.name }}", "body": "{{ weather.condition | default: 'no weather' }} {{ coupon.expires_at }}"})
    d = held(deps)
    release = d.release_at + 30
    deps.clock.now = release
    post_conditions(deps, {"observations": [{"lat": INSIDE[0], "lng": INSIDE[1], "observed_at": iso(release - 60),
                                             "temperature_c": 3.0, "condition": "snow"}]})
    deps.clock.now = release
    assert release_held(deps) == {"sent": 1}
    out = record(deps, d.delivery_id)
    assert out.title == "Main St store"  # the fence kept with the trigger
    assert out.body == f"snow {iso(release + 72 * 3600)}"  # valid_hours counts from the release
    assert out.coupon_expires_at == release + 72 * 3600 and out.coupon_code.startswith("VISIT-")


def test_without_weather_at_release_the_kept_trigger_renders(deps):
    setup(deps, attrs=TOKYO, quiet_hours=QUIET, message={"title": "t", "body": "{{ weather.condition | default: 'no weather' }}"})
    d = held(deps)
    deps.clock.now = d.release_at + 30
    assert release_held(deps) == {"sent": 1}
    assert record(deps, d.delivery_id).body == "no weather"


def test_a_render_error_at_release_suppresses_that_device_only(deps):
    setup(deps, attrs={**TOKYO, "n": "2"}, quiet_hours=QUIET,
          message={"title": "Hi", "body": "Half of ten: {{ 10 | divided_by: n }}"})
    register(deps, "d2", attrs={**TOKYO, "n": "5"})
    broken, fine = held(deps), held(deps, "d2")
    # The attribute changes while the push is held: it no longer renders.
    register(deps, "d1", attrs={**TOKYO, "n": "0"})
    deps.clock.now = broken.release_at + 30
    assert release_held(deps) == {"render_error": 1, "sent": 1}
    assert (record(deps, broken.delivery_id).status, record(deps, broken.delivery_id).reason) == ("suppressed", "render_error")
    assert record(deps, fine.delivery_id).body == "Half of ten: 2"
    assert len(deps.push.published) == 1
    assert engagement.stats(deps, "c1")["suppressed"]["render_error"] == 1


def test_released_exactly_once(deps):
    setup(deps, attrs=TOKYO, quiet_hours=QUIET, message={"title": "t", "body": "{{ local_time }}"})
    d = held(deps)
    deps.clock.now = d.release_at + 30
    assert release_held(deps) == {"sent": 1}
    assert release_held(deps) == {}
    deps.clock.now += 3600
    assert release_held(deps) == {}
    assert len(deps.push.published) == 1


def test_a_record_held_with_its_text_goes_out_as_it_is(deps):
    # Held before pushes were rendered at release: the text is the record's.
    setup(deps, attrs=TOKYO, quiet_hours=QUIET)
    d = held(deps)
    deps.deliveries.update_delivery(d.delivery_id, {"held_context": None, "title": "Kept", "body": "kept text"},
                                    expect_status=HELD)
    deps.clock.now = d.release_at + 30
    assert release_held(deps) == {"sent": 1}
    assert (record(deps, d.delivery_id).title, record(deps, d.delivery_id).body) == ("Kept", "kept text")


def test_an_unreadable_kept_trigger_is_a_render_error(deps):
    setup(deps, attrs=TOKYO, quiet_hours=QUIET)
    d = held(deps)
    deps.deliveries.update_delivery(d.delivery_id, {"held_context": "[1, 2"}, expect_status=HELD)
    deps.clock.now = d.release_at + 30
    assert release_held(deps) == {"render_error": 1}
    assert deps.push.published == []


def test_trigger_snapshot_round_trips():
    from chalicelib.push.model import FenceContext

    fence = FenceContext("f1", "Shop", ("a", "b"), {"city": "Santa Rosa"})
    t = Trigger("geofence_enter", "fence:f1:enter:1.000", "f1", 12.5, fence=fence, weather={"condition": "rain"}, ends_at=99.0)
    assert Trigger.from_snapshot(t.type, t.key, t.ref, t.snapshot()) == t
    a = Trigger("weather_alert", "alert:x", "x", 3.0, alert={"event": "Winter Storm Warning"}, needs_location=True)
    assert Trigger.from_snapshot(a.type, a.key, a.ref, a.snapshot()) == a
