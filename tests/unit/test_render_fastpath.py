"""The render fast path equals python-liquid (an oracle test).

``compile_template`` keeps a flat plan of a template made only of text and
``{{ name.key | filter: literal }}`` outputs (``chalicelib.push.render``'s
docstring). These tests draw templates from that grammar — text, outputs
with whitespace control, names that exist, are missing or nest, literals,
the fast filters (and a few that are not) with random literal arguments —
and random contexts (strings including empty, whitespace-only and
non-ASCII ones, ints, floats, None, booleans, lists, nested dicts, missing
keys), and check that the plan's text, when it gives one, is python-liquid's,
and that a render error is raised by both paths or by neither.

The plan is built only on the python-liquid release it was checked against;
the last tests check that guard (another release: python-liquid renders
everything, same text).
"""

from __future__ import annotations

import re
from pathlib import Path

import liquid
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from chalicelib.errors import InvalidInput
from chalicelib.push.coupons import Coupon
from chalicelib.push.model import FenceContext, Trigger
from chalicelib.push import render_plan as render
from chalicelib.push.render import RenderError, compile_template, template_context
from chalicelib.push.render_plan import FAST_FILTERS

REPO = Path(__file__).resolve().parents[2]
#: The tests that look at the plan itself need the pinned python-liquid.
needs_fast_path = pytest.mark.skipif(not render.FAST_PATH, reason="python-liquid is not the release the fast path was written for")

T0 = 1_768_537_800.0
COUPON = Coupon("VISIT-ABCD1234", 10, T0 + 72 * 3600, 72)
FENCE_TRIGGER = Trigger(
    "geofence_enter", "fence:store-1:enter:1", "store-1", T0, fence=FenceContext("store-1", "Main St", ("shop",), {"floor": "2"})
)

#: Names the contexts may hold (and may not: a missing name is drawn as often).
NAMES = ("name", "n", "x", "items", "user", "flag", "price", "first_name")
#: Paths the templates read: plain, nested, missing, Liquid's special keys.
PATHS = NAMES + (
    "missing",
    "user.name",
    "user.address.city",
    "user.missing",
    "user.size",
    "items.first",
    "items.size",
    "name.size",
    "missing.deeper",
    'user["name"]',
    "coupon.code",
    "coupon.percent_off",
    "coupon.expires_at",
    "fence.name",
    "fence.tags",
    "fence.metadata.floor",
    "local_time",
    "campaign.name",
    "attributes.name",
)
#: Outputs that never take the plan (python-liquid renders them).
SLOW_OUTPUTS = ("items[0]", "now | size", "partial", "x | date: '%Y'", "name | append: x", "user[name]")

TEXT = st.text(st.characters(blacklist_characters="{}", blacklist_categories=("Cs",)), max_size=12)
SAFE_STRING = st.text(st.characters(blacklist_characters="{}'\"\\", blacklist_categories=("Cs", "Cc")), max_size=8)

string_literals = SAFE_STRING.map(lambda s: f"'{s}'") | SAFE_STRING.map(lambda s: f'"{s}"')
small_ints = st.integers(-5, 30).map(str)
numbers = st.integers(-1000, 10**6).map(str) | st.floats(-1e4, 1e4, allow_nan=False).map(lambda f: f"{f:.3f}") | small_ints
literals = st.one_of(string_literals, numbers, st.sampled_from(["true", "false", "nil", "null"]))
#: Each fast filter's usual arguments: required, then optional (s string, n number, i small int, a any).
SIGNATURES = {
    **dict.fromkeys(
        "abs base64_decode base64_encode base64_url_safe_decode base64_url_safe_encode capitalize ceil compact downcase "
        "escape escape_once first floor last lstrip newline_to_br reverse rstrip size squish strip strip_html "
        "strip_newlines sum uniq upcase url_decode url_encode".split(),
        ("", ""),
    ),
    **dict.fromkeys("append prepend remove remove_first remove_last split concat".split(), ("s", "")),
    **dict.fromkeys("join sort sort_natural".split(), ("", "s")),
    **dict.fromkeys("map where reject find find_index has".split(), ("s", "a")),
    **dict.fromkeys("replace replace_first replace_last".split(), ("ss", "")),
    **dict.fromkeys("at_least at_most divided_by minus modulo plus times".split(), ("n", "")),
    "round": ("", "i"),
    "truncate": ("", "is"),
    "truncatewords": ("", "is"),
    "slice": ("i", "i"),
    "default": ("", "a"),
}
ARGUMENTS = {"s": string_literals, "n": numbers, "i": small_ints, "a": literals}


def test_every_fast_filter_has_a_signature():
    assert set(SIGNATURES) == FAST_FILTERS


@st.composite
def filters(draw) -> str:
    name = draw(st.sampled_from(sorted(FAST_FILTERS)))
    required, optional = SIGNATURES[name]
    if draw(st.integers(0, 9)) == 0:  # anything: mostly errors, on both paths
        args = draw(st.lists(literals, max_size=3))
    else:
        kinds = required + optional[: draw(st.integers(0, len(optional)))]
        args = [draw(ARGUMENTS[kind]) for kind in kinds]
    if name == "default" and draw(st.booleans()):
        args.append(f"allow_false: {draw(st.sampled_from(['true', 'false']))}")
    elif draw(st.integers(0, 30)) == 0:
        args.append(f"what: {draw(literals)}")  # an unknown keyword: a TypeError on both paths
    return f"{name}: {', '.join(args)}" if args else name


@st.composite
def outputs(draw) -> str:
    left = draw(st.one_of(st.sampled_from(PATHS), literals))
    chain = draw(st.lists(filters(), max_size=3))
    open_, close = draw(st.sampled_from(["{{", "{{-"])), draw(st.sampled_from(["}}", "-}}"]))
    return f"{open_} {' | '.join([left] + chain)} {close}"


@st.composite
def templates(draw, outputs=outputs()) -> str:
    parts = [draw(TEXT)]
    for _ in range(draw(st.integers(1, 4))):
        parts += [draw(outputs), draw(TEXT)]
    return "".join(parts)


strings = st.one_of(
    st.text(max_size=10),
    st.sampled_from(["", " ", "   ", "\t\n ", "\u00a0", "Ana", "ÉLODIE", "naïve café", "東京", "😀 ok", "a,b,c", "<b>x</b>"]),
)
scalars = st.one_of(
    strings,
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(("name", "address", "city", "size", "first", "missing")), inner, max_size=4),
    ),
    max_leaves=8,
)
contexts = st.dictionaries(st.sampled_from(NAMES), values, max_size=len(NAMES))


def outcome(render, context):
    try:
        return ("text", render(context))
    except RenderError as err:
        return ("error", err.message, err.line)


def check(source: str, context) -> None:
    try:
        tpl = compile_template(source, "message.body")
    except InvalidInput:  # python-liquid refuses it at save time: nothing to render
        event("refused at compile time")
        return
    fast, liquid = outcome(tpl.render, context), outcome(tpl.render_with_liquid, context)
    assert fast == liquid, source
    if tpl.plan is None:
        event("no plan: python-liquid")
        return
    text = tpl.plan.render(context)
    if liquid[0] == "error":
        assert text is None, source  # the plan never answers where python-liquid fails
        event("plan: error left to python-liquid")
    elif text is None:
        event("plan: fell back")
    else:
        assert text == liquid[1], source
        event("plan: answered")


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(templates(), contexts, st.booleans())
def test_fast_path_renders_what_python_liquid_renders(source, attributes, app_context):
    """Plain dict contexts, and the app's lazy ``TemplateGlobals`` (coupon,
    fence, local clock and campaign computed on first read)."""
    context = (
        template_context(attributes, FENCE_TRIGGER, coupon=COUPON, now=T0, arm="A", campaign={"id": "c", "name": "Camp"})
        if app_context
        else attributes
    )
    check(source, context)


@settings(max_examples=300, deadline=None)
@given(templates(st.one_of(outputs(), st.sampled_from(SLOW_OUTPUTS).map(lambda s: f"{{{{ {s} }}}}"))), contexts)
def test_templates_with_other_outputs_still_render_as_python_liquid_does(source, context):
    check(source, context)


# ------------------------------------------------------------------ which templates take the plan
@needs_fast_path
@pytest.mark.parametrize(
    "source",
    [
        "Hi {{ first_name | default: 'there' }}, you're at our {{ fence.name | downcase }} store.",
        "{{- coupon.code -}} / {{ 10 | times: 2.5 }} / {{ 'x' | append: 'y' }}",
        "{% raw %}{{ a }}{% endraw %}",  # python-liquid parses raw text as text
        "{{ user['name'] | upcase | truncate: 5, '' }}",
    ],
)
def test_text_and_plain_outputs_take_the_plan(source):
    assert compile_template(source, "message.body").plan is not None


@pytest.mark.parametrize(
    "source",
    [
        "{% if a %}x{% endif %}",
        "{% assign y = 1 %}{{ y }}",
        "{% comment %}x{% endcomment %}{{ a }}",
        "{{ items[0] }}",
        "{{ a[b] }}",
        "{{ a | append: b }}",
        "{{ a | date: '%Y' }}",
        "{{ (1..3) | join }}",
        "{{ now }}",
        "{{ today | size }}",
        "{{ partial }}",
    ],
)
def test_tags_index_paths_variable_arguments_and_builtin_names_use_python_liquid(source):
    assert compile_template(source, "message.body").plan is None


# ------------------------------------------------------------------ default's whitespace rule
@needs_fast_path
@pytest.mark.parametrize("value", ["", " ", "   ", "\t\n ", "\u00a0", None, False, [], "MISSING"])
def test_default_takes_blank_values_on_both_paths(value):
    tpl = compile_template("{{ first_name | default: 'there' }}", "message.title")
    context = {} if value == "MISSING" else {"first_name": value}
    assert tpl.plan.render(context) == "there"
    assert tpl.render_with_liquid(context) == "there"


@needs_fast_path
def test_default_keeps_real_values_on_both_paths():
    tpl = compile_template("{{ first_name | default: 'there' }}", "message.title")
    for value, text in ((" Ana ", " Ana "), (0, "0"), (True, "true"), (["a", "b"], "ab")):
        assert tpl.plan.render({"first_name": value}) == text == tpl.render_with_liquid({"first_name": value})


# ------------------------------------------------------------------ fallbacks
@needs_fast_path
def test_errors_are_python_liquids_with_their_line():
    tpl = compile_template("ok\n{{ n | divided_by: 0 }}", "message.body")
    assert tpl.plan is not None and tpl.plan.render({"n": 1}) is None
    with pytest.raises(RenderError) as exc:
        tpl.render({"n": 1})
    assert exc.value.line == 2 and exc.value.message.startswith("message.body: template error on line 2")


@needs_fast_path
def test_output_over_the_stream_limit_is_python_liquids_error():
    tpl = compile_template("{{ s }}{{ s }}", "message.body")
    assert tpl.plan.render({"s": "x" * 10_000}) == "x" * 20_000
    assert tpl.plan.render({"s": "x" * 10_001}) is None
    with pytest.raises(RenderError, match="limit"):
        tpl.render({"s": "x" * 10_001})


@needs_fast_path
def test_a_missing_or_non_dict_parent_falls_back_and_python_liquid_decides():
    tpl = compile_template("{{ user.name }}|{{ items.size }}", "message.body")
    assert tpl.plan.render({"user": {"name": "Ana"}, "items": {"size": 3}}) == "Ana|3"
    for context in ({"user": {}, "items": {}}, {"user": "Ana", "items": [1, 2]}):
        assert tpl.plan.render(context) is None
        assert tpl.render(context) == tpl.render_with_liquid(context)
    assert tpl.render({"user": {}, "items": [1, 2]}) == "|2"


@needs_fast_path
def test_size_guards_hold_on_the_fast_path():
    tpl = compile_template('{{ s | replace: "", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" }}', "message.body")
    assert tpl.plan is not None and tpl.plan.render({"s": "abc" * 200}) is None
    with pytest.raises(RenderError, match="too large"):
        tpl.render({"s": "abc" * 200})


# ------------------------------------------------------------------ the version guard
def test_the_fast_path_is_pinned_to_the_python_liquid_of_requirements():
    pins = re.findall(r"^python-liquid==(\S+)", (REPO / "requirements.txt").read_text(), re.M)
    assert pins == [render.LIQUID_FAST_PATH_VERSION]
    assert render.FAST_PATH is render.fast_path_supported(liquid.__version__)


@pytest.mark.parametrize("version", ["2.3.5", "2.3.7", "2.4.0", "3.0.0", "2.3.6rc1", ""])
def test_another_python_liquid_release_is_not_supported(version):
    assert not render.fast_path_supported(version)
    assert render.fast_path_supported(render.LIQUID_FAST_PATH_VERSION)


SOURCES = (
    "Hi {{ first_name | default: 'there' }}, you're at our {{ fence.name | downcase }} store.",
    "{{- coupon.code -}} / {{ 10 | times: 2.5 }} / {{ 'x' | append: 'y' }}",
    "{{ user.name }}|{{ items.size }}",
    "ok\n{{ n | divided_by: 0 }}",
)
CONTEXTS = ({}, {"first_name": " ", "n": 1, "user": {"name": "Ana"}, "items": [1, 2]}, {"first_name": "Bo", "items": {"size": 3}})


@pytest.mark.parametrize("source", SOURCES)
def test_with_the_fast_path_off_python_liquid_renders_the_same_text(source, monkeypatch):
    def outcomes(tpl):
        return [outcome(tpl.render, context) for context in CONTEXTS]

    on = compile_template(source, "message.body")
    monkeypatch.setattr(render, "FAST_PATH", False)
    off = compile_template(source, "message.body")
    assert off.plan is None
    assert outcomes(off) == outcomes(on) == [outcome(on.render_with_liquid, c) for c in CONTEXTS]
