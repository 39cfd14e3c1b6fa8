"""Every payload fits its push service: APNs and FCM take 4 KB. Title and
body at their caps in multi-byte text are cut (on a grapheme, with "…")
until the platform's value in the SNS message fits, JSON escaping
included; a deep link that cannot fit is refused at save or at render."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.errors import InvalidInput
from chalicelib.push.campaigns import parse_campaign
from chalicelib.push.model import PushMessage
from chalicelib.push.payloads import (
    DEEP_LINK_MAX_BYTES,
    MESSAGE_KEYS,
    PAYLOAD_LIMITS,
    PLATFORMS,
    build_message,
    encoded_size,
    payload_size,
)
from chalicelib.push.render import BODY_MAX, TITLE_MAX, RenderError, render_message
from chalicelib.push.textcut import ELLIPSIS, grapheme_start
from tests.unit.test_pipeline import deps, record, setup, visit  # noqa: F401 - deps is a fixture

#: Texts that cost several bytes a character, and characters JSON escapes.
SCRIPTS = {
    "cjk": "東京は大雪です。配達が遅れる可能性があります。",
    "emoji": "😀👨‍👩‍👧‍👦🇫🇷🇩🇪👍🏽❤️",
    "arabic": "مَرْحَبًا بِكُمْ فِي الْمَتْجَرِ ",
    "devanagari": "नमस्ते दुकान में आपका स्वागत है ",
    "escapes": 'say "hi" \\ back\tslash\n\x01\x1f',
    "mixed": 'A "東" 😀 é\u0301 🇯🇵\\',
}


def at_cap(text: str, n: int) -> str:
    return (text * (n // len(text) + 1))[:n]


def link_at_cap(text: str) -> str:
    """A deep link of exactly (or just under) DEEP_LINK_MAX_BYTES."""
    link = "app://"
    for ch in at_cap(text, 4000):
        if encoded_size(link + ch) > DEEP_LINK_MAX_BYTES:
            break
        link += ch
    return link


def message(title: str, body: str, link: str | None) -> PushMessage:
    data = {"campaign_id": "c" * 128, "coupon_code": "ABCDEFGHIJKL-ABCD1234"}
    return PushMessage("dl_" + "a" * 26, title, body, link, 28 * 86400, data)


def decode(platform: str, built: str) -> tuple[dict, str, str, str]:
    """(the outer message, the service's value, title, body)."""
    outer = json.loads(built)
    value = outer[MESSAGE_KEYS[platform]]
    inner = json.loads(value)
    texts = inner["aps"]["alert"] if platform != "android" else inner["fcmV1Message"]["message"]["notification"]
    return outer, value, texts["title"], texts["body"]


def value_bytes(value: str) -> int:
    """Bytes of the value as the SNS message carries it (escaped, no quotes)."""
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8")) - 2


def assert_cut_from(text: str, original: str) -> None:
    """``text`` is ``original``, or a prefix of it cut on a grapheme, plus "…"."""
    if text == original:
        return
    assert text.endswith(ELLIPSIS)
    prefix = text[: -len(ELLIPSIS)]
    assert original.startswith(prefix)
    assert grapheme_start(original, len(prefix)) == len(prefix), "a grapheme was split"


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_caps_in_multibyte_text_fit_every_platform(platform, script):
    text = SCRIPTS[script]
    title, body, link = at_cap(text, TITLE_MAX), at_cap(text, BODY_MAX), link_at_cap(text)
    msg = message(title, body, link)
    limit = PAYLOAD_LIMITS[platform]

    outer, value, got_title, got_body = decode(platform, build_message(platform, msg))

    assert value_bytes(value) <= limit
    assert len(value.encode("utf-8")) <= limit  # what the push service receives
    assert_cut_from(got_title, title)
    assert_cut_from(got_body, body)
    assert outer["default"] == got_body
    inner = json.loads(value)
    custom = inner if platform != "android" else inner["fcmV1Message"]["message"]["data"]
    assert custom["deep_link"] == link and custom["campaign_id"] == "c" * 128  # never cut
    if payload_size(platform, msg) > limit:  # it was cut: cut no more than a grapheme or two short
        assert got_body != body and limit - value_bytes(value) <= 128
        assert got_body != ELLIPSIS


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_caps_used_to_be_over_the_limit(platform):
    """Without cutting these payloads are ~6 KB: the test above exercises the cut."""
    text = SCRIPTS["cjk"]
    msg = message(at_cap(text, TITLE_MAX), at_cap(text, BODY_MAX), link_at_cap(text))
    assert payload_size(platform, msg) > 1.4 * PAYLOAD_LIMITS[platform]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_message_that_fits_is_not_touched(platform):
    msg = message("東京 " * 20, "雪 😀 " * 100, "app://orders/42")
    _, _, title, body = decode(platform, build_message(platform, msg))
    assert (title, body) == (msg.title, msg.body)


_ALPHABET = st.sampled_from(list('ab "\\\n\x01é\u0301東😀\u200d👍🏽🇫🇷م\u064e ') + ["👨‍👩‍👧"])


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(PLATFORMS),
    st.lists(_ALPHABET, max_size=TITLE_MAX).map("".join),
    st.lists(_ALPHABET, max_size=BODY_MAX).map("".join),
    st.one_of(st.none(), st.lists(_ALPHABET, max_size=600).map(lambda cs: "app://" + "".join(cs))),
)
def test_any_text_fits_and_is_a_prefix(platform, title, body, link):
    if link is not None and encoded_size(link) > DEEP_LINK_MAX_BYTES:
        link = None  # refused before it gets here (test below)
    msg = message(title[:TITLE_MAX], body[:BODY_MAX], link)
    _, value, got_title, got_body = decode(platform, build_message(platform, msg))
    assert value_bytes(value) <= PAYLOAD_LIMITS[platform]
    assert_cut_from(got_title, msg.title)
    assert_cut_from(got_body, msg.body)


def test_data_that_leaves_no_room_is_refused_not_sent():
    msg = PushMessage("dl_1", "t", "b", None, None, {"note": "x" * 4000})
    for platform in PLATFORMS:
        with pytest.raises(ValueError, match="leaves .* bytes for title and body"):
            build_message(platform, msg)


# ------------------------------------------------------------------ the deep link's cap
def campaign_with_link(link: str) -> dict:
    return {"name": "n", "trigger": {"type": "geofence_enter", "fence_ids": ["f"]},
            "message": {"title": "t", "body": "b", "deep_link": link}}


def test_a_static_deep_link_over_the_cap_is_refused_at_save():
    ok = "app://" + "a" * 1994  # the template cap: 2,000 characters, 2,000 bytes
    parse_campaign("c1", campaign_with_link(ok))
    too_long = "app://" + "東" * 700  # 706 characters, 2,106 bytes
    with pytest.raises(InvalidInput) as exc:
        parse_campaign("c1", campaign_with_link(too_long))
    assert exc.value.field == "message.deep_link" and "2,106" in exc.value.message


def test_a_deep_link_template_rendering_over_the_cap_is_a_render_error():
    spec = parse_campaign("c1", campaign_with_link("app://{{ path }}")).message
    assert render_message(spec, {"path": "東" * 680}).deep_link is not None  # 2,046 bytes
    with pytest.raises(RenderError) as exc:
        render_message(spec, {"path": "東" * 700})
    assert exc.value.field == "message.deep_link"


def test_encoded_size_counts_what_the_sns_message_carries():
    for text in (*SCRIPTS.values(), "", "plain ascii"):
        inner = json.dumps({"k": text}, ensure_ascii=False, separators=(",", ":"))
        empty = json.dumps({"k": ""}, ensure_ascii=False, separators=(",", ":"))
        assert value_bytes(inner) - value_bytes(empty) == encoded_size(text)


def test_a_push_at_the_caps_is_sent_and_what_sns_gets_fits(deps):  # noqa: F811 - the pipeline's fixture
    """Through the pipeline: title, body and deep link at their caps in CJK
    are recorded ``sent``, and the SNS message built for the device fits."""
    cjk = SCRIPTS["cjk"]
    link = "app://" + "東" * 680  # 2,046 bytes
    setup(deps, message={"title": at_cap(cjk, 1000), "body": at_cap(cjk, 4000), "deep_link": link})
    d = record(deps, visit(deps)["deliveries"][0])
    assert d.status == "sent" and len(d.title) == TITLE_MAX and len(d.body) == BODY_MAX
    (_, platform, msg, _), = deps.push.published
    _, value, title, body = decode(platform, build_message(platform, msg))
    assert value_bytes(value) <= PAYLOAD_LIMITS[platform] < payload_size(platform, msg)
    assert_cut_from(title, d.title)
    assert_cut_from(body, d.body)
