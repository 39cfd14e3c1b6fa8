"""Template authoring: every template error of a campaign at once, each
with its field and line, and warnings (never errors) for the variables a
template reads that nothing defines — at save and in preview."""

from __future__ import annotations

import pytest

from chalicelib.errors import InvalidInput
from chalicelib.push.campaigns import parse_campaign
from chalicelib.push.render import compile_template
from chalicelib.push.template_check import MAX_PROBLEMS, syntax_problems
from chalicelib.services import campaigns as campaign_service
from chalicelib.services.devices import register_device
from chalicelib.services.geofences import put_geofence

BASE = {
    "name": "Store visit",
    "trigger": {"type": "geofence_enter", "fence_ids": ["store-1"]},
    "message": {"title": "Welcome to {{ fence.name }}", "body": "Hi {{ first_name | default: 'there' }}"},
}


def body(**over):
    return {**BASE, **over}


def errors_of(exc: InvalidInput) -> list[tuple[str, int | None]]:
    return [(e["field"], e["line"]) for e in exc.errors or []]


# ------------------------------------------------------------------ all errors at once
def test_two_syntax_errors_in_one_body_are_both_reported_with_lines():
    with pytest.raises(InvalidInput) as exc:
        compile_template("Hi {{ first_name | }}\nand\n{% bogus %}", "message.body")
    assert errors_of(exc.value) == [("message.body", 1), ("message.body", 3)]
    assert exc.value.field == "message.body" and exc.value.message.startswith("template error on line 1:")
    assert "unexpected tag 'bogus'" in exc.value.errors[1]["message"]


def test_a_broken_block_opener_does_not_also_report_its_end_tag():
    problems, template = syntax_problems("{% if a == %}\nyes{% endif %}\n{{ x | }}", "message.body")
    assert [p["line"] for p in problems] == [1, 3] and template is None


def test_an_unclosed_block_is_reported_at_the_last_line():
    problems, _ = syntax_problems("{{ a | }}\n{% if b %}\nstill open", "message.body")
    assert [p["line"] for p in problems] == [1, 3]
    assert "the end of the template" in problems[1]["message"]


def test_unknown_filters_are_all_reported_with_syntax_errors():
    problems, _ = syntax_problems("{{ a b }}\n{{ c | nope }}\n{{ d | upcase | alsonot }}", "message.title")
    assert [(p["line"], p["message"].split(": ", 1)[1]) for p in problems] == [
        (1, "expected end of expression, found word"), (2, "unknown filter 'nope'"), (3, "unknown filter 'alsonot'")
    ]


def test_problems_per_template_are_capped():
    problems, _ = syntax_problems("\n".join("{{ a | }}" for _ in range(MAX_PROBLEMS + 15)), "message.body")
    assert len(problems) == MAX_PROBLEMS and [p["line"] for p in problems] == list(range(1, MAX_PROBLEMS + 1))


def test_a_valid_template_has_no_problems():
    problems, template = syntax_problems("{% if a %}{{ a | upcase }}{% endif %}", "message.body")
    assert problems == [] and template is not None


def test_every_template_of_a_campaign_is_checked_before_the_400():
    b = body(
        message={"title": "{{ t | }}", "body": "ok\n{% nope %}"},
        variants=[{"name": "v", "when": {"attribute": "tier", "equals": "gold"},
                   "message": {"title": "fine", "body": "a\nb\n{{ x | nofilter }}"}}],
        experiment={"arms": [{"name": "A", "weight": 1, "message": {"title": "{% if %}{% endif %}", "body": "x"}}]},
    )
    with pytest.raises(InvalidInput) as exc:
        parse_campaign("c1", b)
    assert errors_of(exc.value) == [
        ("message.title", 1), ("message.body", 2), ("variants[0].message.body", 3), ("experiment.arms[0].message.title", 1)
    ]
    assert exc.value.field == "message.title" and "and 3 more template errors" in exc.value.message
    assert exc.value.to_json()["error"]["field"] == "message.title" and len(exc.value.to_json()["errors"]) == 4


def test_one_template_error_keeps_the_single_error_message():
    with pytest.raises(InvalidInput) as exc:
        parse_campaign("c1", body(message={"title": "ok", "body": "line\n{{ x | }}"}))
    assert exc.value.message == "template error on line 2: expected word, found end of expression"
    assert errors_of(exc.value) == [("message.body", 2)]
    assert exc.value.to_json() == {"error": {"code": "invalid_input", "message": exc.value.message, "field": "message.body"}}


def test_a_structural_error_comes_first_with_the_template_errors_after_it():
    with pytest.raises(InvalidInput) as exc:
        parse_campaign("c1", body(message={"title": "{{ a | }}", "body": "x"}, ttl_seconds=-1))
    assert exc.value.field == "ttl_seconds"
    assert errors_of(exc.value) == [("ttl_seconds", None), ("message.title", 1)]


def test_the_render_budget_error_is_still_reported_with_its_line():
    with pytest.raises(InvalidInput) as exc:
        parse_campaign("c1", body(message={"title": "t", "body": "x\n{% for i in (1..5000) %}{{ i }}{% endfor %}"}))
    assert exc.value.field == "message.body" and errors_of(exc.value) == [("message.body", 2)]
    assert "range" in exc.value.message


# ------------------------------------------------------------------ warnings at save
def save(mem_deps, **over):

    return campaign_service.put_campaign(mem_deps, "c1", body(**over))


def warned(out) -> list[tuple[str, str, int]]:
    return [(w["field"], w["variable"], w["line"]) for w in out["warnings"]]


def test_a_mistyped_variable_is_a_warning_at_save_not_an_error(mem_deps):
    out = save(mem_deps, message={"title": "Hi", "body": "Hello\nHi {{ firstname }}!"})
    assert out["version"] == 1 and mem_deps.campaigns.get_campaign("c1") is not None
    [w] = out["warnings"]
    assert (w["field"], w["variable"], w["line"]) == ("message.body", "firstname", 2)
    assert "device attribute 'firstname'" in w["message"] and w["message"].startswith("line 2:")


def test_documented_variables_and_their_keys_are_not_warned(mem_deps):
    out = save(mem_deps, message={
        "title": "{{ fence.name }} {{ fence.tags.size }} {{ fence.metadata.city }} {{ campaign.name }}",
        "body": "{{ local_time }} {{ local_date }} {{ local_weekday }} {{ attributes.first_name }} {{ now | date: '%Y' }}"
                "{% assign n = fence.id %}{{ n }}{% for t in fence.tags %}{{ t }}{{ forloop.index }}{% endfor %}",
        "deep_link": "shop://{{ fence.id | url_encode }}"})
    assert out["warnings"] == []


def test_a_wrong_key_of_a_documented_variable_is_warned_with_a_suggestion(mem_deps):
    out = save(mem_deps, message={"title": "{{ fence.nme }}", "body": "{{ weather.temprature_c }} {{ local_time.hour }}"})
    assert warned(out) == [("message.title", "fence.nme", 1), ("message.body", "weather.temprature_c", 1),
                           ("message.body", "local_time.hour", 1)]
    assert "did you mean 'name'" in out["warnings"][0]["message"]
    assert "did you mean 'temperature_c'" in out["warnings"][1]["message"]


def test_variables_the_campaign_never_sets_are_warned(mem_deps):
    out = save(mem_deps, message={"title": "{{ coupon.code }}", "body": "{{ alert.headline }} {{ arm }}"})
    assert warned(out) == [("message.title", "coupon.code", 1), ("message.body", "alert.headline", 1),
                           ("message.body", "arm", 1)]
    assert "no coupon" in out["warnings"][0]["message"]
    alert = save(mem_deps, trigger={"type": "weather_alert"},
                 message={"title": "{{ alert.event }}", "body": "{{ fence.name }} {{ weather.condition }}"})
    assert warned(alert) == [("message.body", "fence.name", 1), ("message.body", "weather.condition", 1)]


def test_variant_and_arm_templates_are_checked_and_tested_attributes_are_known(mem_deps):
    out = save(mem_deps, variants=[{"name": "gold", "when": {"attribute": "loyalty_tier", "exists": True},
                                    "message": {"title": "{{ loyalty_tier }}", "body": "{{ loyalty_teir }}"}}],
               experiment={"arms": [{"name": "A", "weight": 1, "message": {"title": "x", "body": "{{ arm }} {{ fence.naem }}"}}]})
    assert warned(out) == [("variants[0].message.body", "loyalty_teir", 1), ("experiment.arms[0].message.body", "fence.naem", 1)]
    assert "did you mean 'loyalty_tier'" in out["warnings"][0]["message"]


def test_an_attribute_with_a_default_is_not_warned_at_save_but_is_in_preview(mem_deps):
    out = save(mem_deps, message={"title": "Hi {{ firstname | default: 'there' }}", "body": "At {{ city|default }} {{ zip }}"})
    assert warned(out) == [("message.body", "zip", 1)]
    device(mem_deps, {"first_name": "Ana"})
    preview = campaign_service.preview(mem_deps, "c1", {"device_id": "d1"})
    assert preview["title"] == "Hi there"
    assert [w["variable"] for w in preview["warnings"]] == ["firstname", "city", "zip"]


def test_get_answers_without_warnings(mem_deps):
    save(mem_deps, message={"title": "t", "body": "{{ firstname }}"})
    assert "warnings" not in campaign_service.get_campaign(mem_deps, "c1")


# ------------------------------------------------------------------ warnings in preview
def device(mem_deps, attrs):
    put_geofence(mem_deps, "store-1", {"type": "Feature", "geometry": {"type": "Point", "coordinates": [-122.7, 38.44]},
                                       "properties": {"radius_m": 200, "name": "Main St store"}})
    register_device(mem_deps, "d1", {"platform": "ios", "push_token": "tok-d1", "attributes": attrs,
                                     "consent": {"push": True, "location": True}})


def test_preview_lists_what_is_undefined_for_that_device(mem_deps):
    device(mem_deps, {"first_name": "Ana"})
    save(mem_deps, message={"title": "Hi {{ first_name }}", "body": "Hi {{ firstname }}!\n{{ fence.name }} {{ weather.condition }}"})
    out = campaign_service.preview(mem_deps, "c1", {"device_id": "d1"})
    assert out["rendered"] is True and out["body"].startswith("Hi !")
    assert [(w["field"], w["variable"], w["line"]) for w in out["warnings"]] == [
        ("message.body", "firstname", 1), ("message.body", "weather", 2)
    ]
    assert "did you mean 'first_name'" in out["warnings"][0]["message"]
    with_weather = campaign_service.preview(mem_deps, "c1", {"device_id": "d1", "weather": {"condition": "snow"}})
    assert [w["variable"] for w in with_weather["warnings"]] == ["firstname"]


def test_preview_without_undefined_variables_has_no_warnings(mem_deps):
    device(mem_deps, {"first_name": "Ana"})
    save(mem_deps)
    out = campaign_service.preview(mem_deps, "c1", {"device_id": "d1"})
    assert out["warnings"] == [] and out["title"] == "Welcome to Main St store"


def test_preview_follows_keys_into_documented_variables(mem_deps):
    device(mem_deps, {"first_name": "Ana"})
    save(mem_deps, message={"title": "{{ fence.metadata.city }}", "body": "{{ campaign.name }} {{ fence.tags.size }}"})
    out = campaign_service.preview(mem_deps, "c1", {"device_id": "d1"})
    assert [(w["variable"], w["field"]) for w in out["warnings"]] == [("fence.metadata.city", "message.title")]


def test_the_checked_built_ins_are_the_names_the_render_context_reserves():
    from chalicelib.push.render import RESERVED_NAMES
    from chalicelib.push.template_check import BUILTIN_KEYS

    assert set(BUILTIN_KEYS) == RESERVED_NAMES


def test_looking_past_first_errors_has_a_budget_per_definition_and_every_template_keeps_its_first():
    from chalicelib.push.template_check import RECOVERY_CHARS

    broken = ("{{ a | }}\n" * 400)[:4000]
    variants = [{"name": f"v{i}", "when": {"attribute": "tier", "equals": i}, "message": {"title": "t", "body": broken}}
                for i in range(8)]
    with pytest.raises(InvalidInput) as exc:
        parse_campaign("c1", body(message={"title": "t", "body": broken}, variants=variants))
    fields = [f for f, _ in errors_of(exc.value)]
    assert set(fields) == {"message.body", *(f"variants[{i}].message.body" for i in range(8))}
    reparsed = (len(fields) - 9) * len(broken)  # every problem past a template's first is one more parse
    assert 0 < reparsed <= RECOVERY_CHARS
    # The same mistake again on one line, or a limit hit again, ends the search.
    assert len(syntax_problems("{{ a | }}" * 50, "message.body")[0]) == 1
    assert len(syntax_problems("{% if a %}" * 30 + "x", "message.body")[0]) == 1
