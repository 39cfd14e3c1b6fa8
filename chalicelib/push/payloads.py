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

>>> from chalicelib.push.model import PushMessage
>>> msg = PushMessage("dl_1", "Hi", "Body", ttl_seconds=60)
>>> sorted(json.loads(build_message("ios", msg)))
['APNS', 'default']
>>> ttl_attributes("android", 60)
{'AWS.SNS.MOBILE.FCM.TTL': {'DataType': 'String', 'StringValue': '60'}}
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring as _json_string  # what _ENCODER writes a str with
from typing import Any

from chalicelib.push.model import PushMessage

#: Our platform names → the key of the service's payload in the SNS message.
MESSAGE_KEYS = {"ios": "APNS", "ios_sandbox": "APNS_SANDBOX", "android": "GCM"}

#: Our platform names → the SNS TTL message attribute of the service.
TTL_ATTRIBUTES = {
    "ios": "AWS.SNS.MOBILE.APNS.TTL",
    "ios_sandbox": "AWS.SNS.MOBILE.APNS_SANDBOX.TTL",
    "android": "AWS.SNS.MOBILE.FCM.TTL",
}

PLATFORMS = tuple(MESSAGE_KEYS)


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
    body) and the key of the device's push service only.

    Raises ``ValueError`` for an unknown platform or a negative TTL.
    """
    key = _check_platform(platform)
    payload = _dumps(fcm_v1_payload(message) if key == "GCM" else apns_payload(message))
    if type(message.body) is not str:
        return _dumps({"default": message.body, key: payload})
    # The text _dumps gives that dict, written out: two strings need none of
    # the generic encoder's set-up (~1 µs of the ~5 µs a message costs).
    return f'{{"default":{_json_string(message.body)},"{key}":{_json_string(payload)}}}'


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
