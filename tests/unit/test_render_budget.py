"""One render budget per template: loops and filters add up across the
whole template, range literals are capped, what is visible is refused at
save (400 naming the field and the construct), the rest stops at render
(``render_error`` for that device only), the fast path included.

No timings: each test counts the budget steps charged, or checks which
limit fired and what was (not) rendered."""

from __future__ import annotations

import pytest

from chalicelib.errors import InvalidInput
from chalicelib.push.campaigns import parse_campaign
from chalicelib.push.liquid_env import MAX_RANGE, RENDER_STEPS, RenderBudget
from chalicelib.push.render import RenderError, compile_template
from chalicelib.services import campaigns as campaign_service
from chalicelib.timeutil import iso
from tests.unit.test_pipeline import campaign, deps, record, register, setup, visit  # noqa: F401 - deps is a fixture

#: A short template that took 40+ s per render before the budget.
EXAMPLE = "{% for i in (1..1000) %}{% assign n = (1..20000) | sort | reverse | sort | size %}{% endfor %}"
#: The same work with sizes the save cannot see.
EXAMPLE_HIDDEN = "{% for i in (1..m) %}{% assign n = (1..m) | sort | reverse | sort | size %}{% endfor %}"


@pytest.fixture
def charged(monkeypatch):
    """Every step charged to any budget, in order."""
    steps: list[int] = []
    original = RenderBudget.charge

    def charge(self, n, token=None):
        steps.append(n)
        return original(self, n, token)

    monkeypatch.setattr(RenderBudget, "charge", charge)
    return steps


def body(source: str) -> dict:
    return {"name": "n", "trigger": {"type": "geofence_enter", "fence_ids": ["f"]}, "message": {"title": "t", "body": source}}


# ------------------------------------------------------------------ at save
def test_the_example_is_refused_at_save_naming_the_field_and_the_range(charged):
    with pytest.raises(InvalidInput) as exc:
        parse_campaign("c1", body(EXAMPLE))
    assert exc.value.field == "message.body"
    assert "(1..20000)" in exc.value.message and f"at most {MAX_RANGE:,}" in exc.value.message
    assert charged == []  # refused from the parse tree: nothing rendered


@pytest.mark.parametrize(
    ("source", "construct"),
    [
        ("{{ (1..5000) | size }}", "the range (1..5000) has 5,000 items"),
        ("{% for i in (1..5000) limit: 3 %}x{% endfor %}", "the range (1..5000)"),
        ("{% for i in (1..1000) %}{% assign n = (1..1000) | sort | size %}{% endfor %}", "'(1..1000) | sort | size'"),
        ("{% for i in (1..1000) %}x{% endfor %}" * 11, "'for i in (1..1000)' brings the loops and filters to at least 11,000"),
        ("{% for i in (1..100) %}\n{% for j in (1..100) %}x{% endfor %}{% endfor %}", "'for j in (1..100)' runs 10,000 passes"),
        ("{% tablerow i in (1..1000) %}{{ i }}{{ i }}{{ i }}{{ i }}{% endtablerow %}", "'tablerow i in (1..1000)'"),
    ],
)
def test_what_the_parse_tree_shows_is_refused_at_save(source, construct):
    with pytest.raises(InvalidInput) as exc:
        compile_template(source, "variants[0].message.body")
    assert exc.value.field == "variants[0].message.body"
    assert construct in exc.value.message and exc.value.message.startswith("template error on line ")


def test_the_line_of_the_construct_is_named():
    with pytest.raises(InvalidInput, match=r"^template error on line 3: the range \(1\.\.2000\)"):
        compile_template("Hi\n{{ name }}\n{% assign r = (1..2000) %}", "message.body")


def test_put_campaign_answers_400_and_stores_nothing(mem_deps):
    with pytest.raises(InvalidInput) as exc:
        campaign_service.put_campaign(mem_deps, "c1", {**body("ok"), "variants": [
            {"name": "v", "when": {"attribute": "a", "exists": True}, "message": {"title": "t", "body": EXAMPLE}}]})
    assert exc.value.field == "variants[0].message.body"
    assert mem_deps.campaigns.list_campaigns() == []


def test_ten_loops_of_a_thousand_fit_exactly():
    """The budget is inclusive: 10 x 1,000 one-step passes is 10,000 steps."""
    tpl = compile_template("{% for i in (1..1000) %}x{% endfor %}" * 10, "message.body")
    assert tpl.render({}) == "x" * 10_000


# ------------------------------------------------------------------ at render
def test_the_hidden_example_passes_the_save_and_stops_at_render(charged):
    tpl = compile_template(EXAMPLE_HIDDEN, "message.body")
    with pytest.raises(RenderError, match=r"render budget limit reached") as exc:
        tpl.render({"m": 1000})
    assert exc.value.field == "message.body" and exc.value.line == 1
    # the loop stopped within its third pass: 1,000 steps of sort input, then sort output...
    assert sum(charged) <= RENDER_STEPS + max(charged)
    assert charged.count(1001) <= 10  # a handful of filter calls over (1..1000), not 4,000


def test_a_range_over_the_cap_stops_when_built(charged):
    tpl = compile_template("{% for i in (1..n) reversed %}{{ i }}{% endfor %}", "message.body")
    with pytest.raises(RenderError, match=r"a range has at most 1,000 items, \(1\.\.1000000000\) has 1,000,000,000"):
        tpl.render({"n": 10**9})  # reversed would have built the whole list first
    assert charged == []
    assert compile_template("{% for i in (1..n) reversed %}{{ i }}{% endfor %}", "b").render({"n": 3}) == "321"


@pytest.mark.parametrize("loops", [10, 11])
def test_sequential_loops_that_each_fit_add_up(loops, charged):
    tpl = compile_template("{% for i in (1..n) %}x{% endfor %}" * loops, "message.body")
    if loops == 10:
        assert tpl.render({"n": 1000}) == "x" * 10_000
        assert sum(charged) == RENDER_STEPS
    else:
        with pytest.raises(RenderError, match="render budget limit reached"):
            tpl.render({"n": 1000})
        assert sum(charged) == RENDER_STEPS + 1  # stopped at the first pass over


def test_a_heavy_loop_body_costs_its_size_on_every_pass(charged):
    """90 ifs in a body: each pass costs the body's nodes and expressions,
    so 1,000 passes (within the loop limit) no longer run."""
    heavy = "{% if a == 1 %}x{% elsif b == 2 %}y{% endif %}" * 90
    tpl = compile_template("{% for i in (1..n) %}" + heavy + "{% endfor %}", "message.body")
    with pytest.raises(RenderError, match="render budget limit reached"):
        tpl.render({"n": 1000})
    assert 0 < len(charged) < 20 and min(charged) > 500


def test_each_render_gets_a_fresh_budget():
    tpl = compile_template("{% for i in (1..n) %}x{% endfor %}", "message.body")
    for _ in range(12):  # 12 x 1,000 steps in all, 1,000 per render
        assert tpl.render({"n": 1000}) == "x" * 1000


def test_normal_templates_take_a_few_steps(charged):
    tpl = compile_template(
        "Hi {{ first_name | default: 'there' | capitalize }}, {% for t in tags %}{{ t | upcase }} {% endfor %}", "message.body"
    )
    assert tpl.render({"first_name": "ana", "tags": ["a", "b"]}) == "Hi Ana, A B "
    assert sum(charged) < 20


# ------------------------------------------------------------------ the fast path
def test_the_fast_path_never_renders_what_the_budget_refuses(charged):
    src = '{{ s | split: "" | sort | sort | reverse | join: "" | size }}'
    tpl = compile_template(src, "message.body")
    if tpl.plan is None:  # another python-liquid release: no fast path to compare
        pytest.skip("no fast plan on this python-liquid release")
    small, big = {"s": "x" * 100}, {"s": "x" * 3000}
    assert tpl.plan.render(small) == tpl.render_with_liquid(small) == "100"
    assert tpl.plan.render(big) is None  # the plan ran out of budget: python-liquid decides
    with pytest.raises(RenderError, match="render budget limit reached"):
        tpl.render_with_liquid(big)
    with pytest.raises(RenderError, match="render budget limit reached"):
        tpl.render(big)


# ------------------------------------------------------------------ the pipeline and preview
def test_render_error_for_that_device_only(deps):
    hidden = "{% for i in (1..n) %}{% assign s = (1..n) | sort | size %}{% endfor %}done {{ n }}"
    setup(deps, message={"title": "Hi", "body": hidden}, attrs={"n": 1000})
    register(deps, "d2", attrs={"n": 5})
    d1 = record(deps, visit(deps)["deliveries"][0])
    d2 = record(deps, visit(deps, device_id="d2")["deliveries"][0])
    assert (d1.status, d1.reason) == ("suppressed", "render_error")
    assert (d2.status, d2.body) == ("sent", "done 5")
    assert [m.delivery_id for _, _, m, _ in deps.push.published] == [d2.delivery_id]


def test_preview_of_a_budget_breaking_render_reports_the_error(deps):
    setup(deps, message={"title": "Hi", "body": EXAMPLE_HIDDEN + "x"}, attrs={"m": 1000})
    out = campaign_service.preview(deps, "c1", {"device_id": "d1"})
    assert out["rendered"] is False and "message.body" in out["error"] and "render budget limit reached" in out["error"]
    assert deps.push.published == []


def test_preview_of_a_stored_campaign_the_budget_refuses_is_a_400(deps, charged):
    """A campaign stored before the budget existed no longer compiles."""
    setup(deps)
    deps.campaigns.put_campaign("old", campaign(message={"title": "t", "body": EXAMPLE}), iso(deps.clock()))
    with pytest.raises(InvalidInput) as exc:
        campaign_service.preview(deps, "old", {"device_id": "d1"})
    assert exc.value.field == "message.body" and "(1..20000)" in exc.value.message
    assert charged == []
