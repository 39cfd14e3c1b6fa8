"""Hostile requests over real HTTP through the local stack: the harness
``make hostile`` uses for its second run, here with a small seeded sample.
What a client sees is judged — never a 5xx, every 4xx in the documented
error body, documented limits answered as documented — and every answer's
time is recorded (reported by ``make hostile``, not asserted here: the
machines running the suite are shared)."""

from __future__ import annotations

from tests import hostile, hostile_stack


def test_hostile_requests_over_http_never_5xx(stack) -> None:
    by_path = {r.name: r for r in hostile.ROUTES}
    world = hostile.World(admin_key=stack.admin_key, app_key=stack.app_key)
    # a few documented limits and malformed bodies, besides the generated sample
    extra = [r for r in hostile.catalogue(world, full=False) if r.kind.startswith(("malformed", "auth", "method", "deep root"))][::3]
    extra += [hostile.make(by_path["POST /v1/pings"], world, body=b"[" * 70 + b"]" * 70, kind="deep", expect=(400,)),
              # a 100 KB key: the HTTP server refuses the header line (431) in the documented body
              hostile.make(by_path["POST /v1/pings"], world, body=b"{}" * 100_000, role="key_huge", kind="auth", expect=(403,)),
              hostile.make(by_path["GET /v1/deliveries"], world, role="app_huge_secret", kind="auth", expect=(403,))]
    tally = hostile_stack.run_against(stack.base_url, stack.admin_key, stack.app_key, generated=40, seed_value=20260501,
                                      full=False, catalogue=False, extra=extra, slow_limit=None)
    assert tally.requests >= 40 + len(extra)
    assert not tally.server_errors, "\n".join(tally.server_errors[:5])
    assert not tally.bad_error_bodies, "\n".join(tally.bad_error_bodies[:5])
    assert not tally.unexpected, "\n".join(tally.unexpected[:5])
    assert tally.statuses[431] == 2
    assert len(tally.route_max) > 5 and tally.top(1)[0][0] > 0
