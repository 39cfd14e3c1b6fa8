"""SNS mobile-push payloads (pure: no I/O, no boto3).

``Publish`` to a platform endpoint with ``MessageStructure="json"`` takes a
JSON object whose keys are ``default`` plus one key per push service, each
value being *a JSON document encoded as a string*:

* ``APNS`` / ``APNS_SANDBOX`` — Apple's payload: ``aps.alert.{title,body}``
  and our custom top-level keys (``delivery_id``, ``deep_link``, the
  message's ``data``).
* ``GCM`` — for FCM HTTP v1 the top-level key ``fcmV1Message`` holding an
  FCM ``message`` (``notification``, ``data``, ``android``). FCM ``data``
  values must all be strings.

The expiry goes in the message attribute SNS documents for the service
(``AWS.SNS.MOBILE.APNS.TTL``, ``AWS.SNS.MOBILE.APNS_SANDBOX.TTL``,
``AWS.SNS.MOBILE.FCM.TTL`` — "Using the Amazon SNS time to live message
attribute for mobile push notifications"); SNS subtracts the time a message
waited before handing it to the push service. For Android it is also set in
the FCM message itself (``android.ttl``).

**Size.** APNs and FCM take at most 4 KB (:data:`PAYLOAD_LIMITS`). A
payload is measured as the bytes of its value in the SNS message — UTF-8,
with the JSON escaping of the document *and* of the string that carries it
(a ``"`` in a title costs 4 bytes, an emoji 4, a CJK character 3), which is
never less than what the push service counts. A payload over its limit has
its body, then its title, cut on a grapheme boundary and ended with "…"
(:func:`fit_message`): the body keeps what the title leaves, but at least
half of the room. The deep link and the data are never cut: a deep link
takes at most :data:`DEEP_LINK_MAX_BYTES` (refused at save when static, a
``render_error`` when a template renders longer), and a message whose other
parts leave less than :data:`MIN_TEXT_ROOM` bytes for title and body is a
``ValueError`` (the gateway's ``failed: invalid_message``), never an
oversized publish.

>>> from chalicelib.push.model import PushMessage
>>> msg = PushMessage("dl_1", "Hi", "Body", ttl_seconds=60)
>>> sorted(json.loads(build_message("ios", msg)))
['APNS', 'default']
>>> ttl_attributes("android", 60)
{'AWS.SNS.MOBILE.FCM.TTL': {'DataType': 'String', 'StringValue': '60'}}
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import lru_cache
from json.encoder import encode_basestring as _json_string  # what _ENCODER writes a str with
from typing import Any

from chalicelib.push.model import PushMessage
from chalicelib.push.textcut import ELLIPSIS, grapheme_start

#: Our platform names → the key of the service's payload in the SNS message.
MESSAGE_KEYS = {"ios": "APNS", "ios_sandbox": "APNS_SANDBOX", "android": "GCM"}

#: Our platform names → the SNS TTL message attribute of the service.
TTL_ATTRIBUTES = {
    "ios": "AWS.SNS.MOBILE.APNS.TTL",
    "ios_sandbox": "AWS.SNS.MOBILE.APNS_SANDBOX.TTL",
    "android": "AWS.SNS.MOBILE.FCM.TTL",
}

PLATFORMS = tuple(MESSAGE_KEYS)

#: Our platform names → the most bytes the push service takes (APNs: 4,096
#: for a remote notification; FCM: 4,096 for a message).
PAYLOAD_LIMITS = {"ios": 4096, "ios_sandbox": 4096, "android": 4096}
#: The most a deep link may take in a payload (as :func:`encoded_size` counts).
DEEP_LINK_MAX_BYTES = 2048
#: The least room a payload must leave for its title and body together.
MIN_TEXT_ROOM = 128


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _dumps(value: Any) -> str:
    # Compact and UTF-8 as is: APNs and FCM limit payloads to 4 KB, and a
    # \uXXXX escape costs up to 12 bytes where UTF-8 needs 4.
    return _ENCODER.encode(value)


def _check_platform(platform: str) -> str:
    try:
        return MESSAGE_KEYS[platform]
    except KeyError:
        raise ValueError(f"unknown platform {platform!r}; expected one of {', '.join(PLATFORMS)}") from None


def _as_string(value: Any) -> str:
    """FCM ``data`` takes strings only."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return _dumps(value)


def custom_data(message: PushMessage) -> dict[str, Any]:
    """The app-level keys every platform carries: the message's ``data``,
    then ``delivery_id`` and ``deep_link`` (these two always win over a
    ``data`` key of the same name). ``None`` values are left out."""
    out = {k: v for k, v in message.data.items() if v is not None}
    out["delivery_id"] = message.delivery_id
    if message.deep_link:
        out["deep_link"] = message.deep_link
    else:
        out.pop("deep_link", None)
    return out


def apns_payload(message: PushMessage) -> dict[str, Any]:
    """Apple's payload: the alert under ``aps``, custom keys beside it."""
    custom = custom_data(message)
    custom.pop("aps", None)  # reserved by Apple
    return {"aps": {"alert": {"title": message.title, "body": message.body}, "sound": "default"}, **custom}


def fcm_v1_payload(message: PushMessage) -> dict[str, Any]:
    """The ``fcmV1Message`` document SNS expects under ``GCM`` for FCM HTTP v1."""
    fcm_message: dict[str, Any] = {
        "notification": {"title": message.title, "body": message.body},
        "data": {k: _as_string(v) for k, v in custom_data(message).items()},
    }
    if message.ttl_seconds is not None:
        fcm_message["android"] = {"ttl": f"{_check_ttl(message.ttl_seconds)}s"}
    return {"fcmV1Message": {"message": fcm_message}}


def build_message(platform: str, message: PushMessage) -> str:
    """The SNS ``Message`` (for ``MessageStructure="json"``): ``default`` (the
    body) and the key of the device's push service only, title and body cut
    to fit the service's limit (:func:`fit_message`).

    Raises ``ValueError`` for an unknown platform, a negative TTL, or a
    message that cannot fit (its deep link or data leave no room).
    """
    key = _check_platform(platform)
    message, value = _fitted(key, PAYLOAD_LIMITS[platform], message)
    if type(message.body) is not str:
        return _dumps({"default": message.body, key: json.loads(value)})
    # The text _dumps gives that dict, written out: two strings need none of
    # the generic encoder's set-up (~1 µs of the ~5 µs a message costs).
    return f'{{"default":{_json_string(message.body)},"{key}":{value}}}'


def fit_message(platform: str, message: PushMessage) -> PushMessage:
    """``message`` with its body, then its title, cut (on a grapheme, ending
    with "…") so that the platform's payload fits :data:`PAYLOAD_LIMITS`;
    ``message`` itself when it fits. ``ValueError`` when it cannot fit."""
    return _fitted(_check_platform(platform), PAYLOAD_LIMITS[platform], message)[0]


def payload_size(platform: str, message: PushMessage) -> int:
    """Bytes the platform's payload takes in the SNS message, as built (unfitted)."""
    return _size(_service_value(_check_platform(platform), message))


def _service_value(key: str, message: PushMessage) -> str:
    """The service's payload as the JSON string literal the SNS message holds."""
    return _json_string(_dumps(fcm_v1_payload(message) if key == "GCM" else apns_payload(message)))


def _size(literal: str) -> int:
    """UTF-8 bytes of a JSON string literal's content (without its quotes)."""
    if literal.isascii():
        return len(literal) - 2
    return len(literal.encode("utf-8", "surrogatepass")) - 2


@lru_cache(maxsize=4096)
def _char_size(ch: str) -> int:
    return _size(_json_string(_json_string(ch)[1:-1]))


def encoded_size(text: str) -> int:
    """Bytes ``text`` takes inside a payload in the SNS message: UTF-8, escaped
    for the payload document and again for the string that carries it.

    >>> encoded_size("abc"), encoded_size("東京"), encoded_size('say "hi"'), encoded_size("😀")
    (3, 6, 14, 4)
    """
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return len(text)
    return sum(_char_size(ch) for ch in text)


def cut_to_size(text: str, room: int) -> str:
    """``text`` when it takes at most ``room`` bytes (:func:`encoded_size`),
    else its longest prefix that fits with "…" after it, cut on a grapheme
    boundary and right-stripped ("…" alone when no character fits).

    >>> cut_to_size("東京は晴れ", 11), cut_to_size("abc", 3)
    ('東京…', 'abc')
    """
    if encoded_size(text) <= room:
        return text
    left = room - encoded_size(ELLIPSIS)
    cut = 0
    for ch in text:
        left -= _char_size(ch)
        if left < 0:
            break
        cut += 1
    return text[: grapheme_start(text, cut)].rstrip() + ELLIPSIS


def _fitted(key: str, limit: int, message: PushMessage) -> tuple[PushMessage, str]:
    """(the message fitted to ``limit``, its service value)."""
    value = _service_value(key, message)
    if _size(value) <= limit or type(message.title) is not str or type(message.body) is not str:
        if _size(value) > limit:
            raise ValueError(f"the {key} payload takes {_size(value):,} bytes, over {limit:,}")
        return message, value
    room = limit - _size(_service_value(key, replace(message, title="", body="")))
    if room < MIN_TEXT_ROOM:
        raise ValueError(
            f"the {key} payload leaves {room:,} bytes for title and body (at least {MIN_TEXT_ROOM}): "
            "its deep link or data are too large"
        )
    body = cut_to_size(message.body, max(room - encoded_size(message.title), room // 2))
    title = cut_to_size(message.title, room - encoded_size(body))
    fitted = replace(message, title=title, body=body)
    value = _service_value(key, fitted)
    if _size(value) > limit:  # pragma: no cover - the sizes above are exact
        raise ValueError(f"the {key} payload takes {_size(value):,} bytes, over {limit:,}")
    return fitted, value


def _check_ttl(ttl_seconds: int) -> int:
    ttl = int(ttl_seconds)
    if ttl != ttl_seconds or ttl < 0:
        raise ValueError(f"ttl_seconds must be a whole number >= 0, got {ttl_seconds!r}")
    return ttl


def ttl_attributes(platform: str, ttl_seconds: int | None) -> dict[str, dict[str, str]]:
    """``MessageAttributes`` for ``Publish``: the service's TTL attribute when
    ``ttl_seconds`` is set (``0`` is meaningful to APNs and FCM: deliver now
    or never), otherwise none."""
    _check_platform(platform)
    if ttl_seconds is None:
        return {}
    return {TTL_ATTRIBUTES[platform]: {"DataType": "String", "StringValue": str(_check_ttl(ttl_seconds))}}
