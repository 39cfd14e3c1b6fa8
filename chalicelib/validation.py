"""The one validation module: identifier patterns, finite numbers, bounded
strings and the lone-surrogate scan.

Identifiers are matched with :func:`re.fullmatch` (the patterns carry
``\\A``/``\\Z`` as well, so a stray ``.match`` elsewhere cannot accept a
prefix): ``$`` would also match before a trailing newline and let
``"shop\\n"`` through as a fence id.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from typing import Any, TypeGuard

from chalicelib.errors import InvalidInput

# ---------------------------------------------------------------- identifiers
#: Fence, device and campaign ids share one shape: 1-128 of letters, digits,
#: ``.``, ``_``, ``:``, ``-``, starting with a letter or digit.
_ID = r"\A[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}\Z"
FENCE_ID_RE = re.compile(_ID)
DEVICE_ID_RE = re.compile(_ID)
CAMPAIGN_ID_RE = re.compile(_ID)

_ID_RULE = "1-128 characters of letters, digits, '.', '_', ':' or '-', starting with a letter or digit"


def _is_id(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def is_fence_id(value: object) -> bool:
    return _is_id(FENCE_ID_RE, value)


def is_device_id(value: object) -> bool:
    return _is_id(DEVICE_ID_RE, value)


def is_campaign_id(value: object) -> bool:
    return _is_id(CAMPAIGN_ID_RE, value)


def validate_fence_id(value: Any, field_name: str = "fence_id") -> str:
    """A fence id as text; GeoJSON feature ids may be integers."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInput("fence id must be a string", field_name)
    text = str(value)
    if not is_fence_id(text):
        raise InvalidInput(f"fence id must be {_ID_RULE}", field_name)
    return text


def validate_device_id(value: Any, field_name: str = "device_id") -> str:
    if not is_device_id(value):
        raise InvalidInput(f"device_id must be {_ID_RULE}", field_name)
    return str(value)


def validate_campaign_id(value: Any, field_name: str = "campaign_id") -> str:
    if not is_campaign_id(value):
        raise InvalidInput(f"campaign id must be {_ID_RULE}", field_name)
    return str(value)


# ---------------------------------------------------------------- numbers
#: The smallest non-zero magnitude DynamoDB stores (a smaller number is refused
#: with "Number underflow": a 500 after validation had accepted it).
MIN_NONZERO_MAGNITUDE = 1e-130


def is_finite_number(v: Any) -> TypeGuard[int | float]:
    """A JSON number that is finite, fits a float and could be stored (not a
    bool, not 10**400, not a non-zero magnitude below 1e-130 such as 5e-324).

    >>> is_finite_number(1.5), is_finite_number(True), is_finite_number(10**400), is_finite_number(float("nan"))
    (True, False, False, False)
    >>> is_finite_number(0.0), is_finite_number(1e-130), is_finite_number(5e-324), is_finite_number(-1e-200)
    (True, True, False, False)
    """
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return abs(v) < 1e300
    return isinstance(v, float) and math.isfinite(v) and (v == 0.0 or abs(v) >= MIN_NONZERO_MAGNITUDE)


def number_field(obj: Mapping[str, Any], key: str, where: str, lo: float, hi: float, *, required: bool = True) -> float | None:
    """``obj[key]`` as a float within ``[lo, hi]`` (a JSON body's field);
    ``None`` when absent and not required. Errors name ``where.key``."""
    v = obj.get(key)
    if v is None:
        if required:
            raise InvalidInput(f"{key} is required", f"{where}.{key}")
        return None
    if not is_finite_number(v):
        raise InvalidInput(f"{key} must be a finite number", f"{where}.{key}")
    if not lo <= v <= hi:
        raise InvalidInput(f"{key} must be from {lo:g} to {hi:g}", f"{where}.{key}")
    return float(v)


def float_param(params: Mapping[str, str], name: str, lo: float, hi: float) -> float:
    """A required query-string parameter as a finite float within ``[lo, hi]``."""
    if name not in params:
        raise InvalidInput(f"{name} is required", name)
    try:
        value = float(params[name])
    except ValueError:
        raise InvalidInput(f"{name} must be a number", name) from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise InvalidInput(f"{name} must be a number from {lo:g} to {hi:g}", name)
    return value


# ---------------------------------------------------------------- strings
def bounded_string(value: Any, lo: int, hi: int) -> TypeGuard[str]:
    """A string of ``lo``..``hi`` characters."""
    return isinstance(value, str) and lo <= len(value) <= hi


def is_unicode(text: str) -> bool:
    """Encodable as UTF-8: no lone UTF-16 surrogate (``"\\ud800"``)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def lone_surrogate_path(value: Any) -> str | None:
    """The path of the first string holding a lone UTF-16 surrogate (for a
    bad key, the object holding it; ``"body"`` at the top), or None. JSON's
    ``\\ud800`` escape is valid JSON but no UTF-8 text: DynamoDB and SNS
    would refuse it later, after the request was accepted."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, at = stack.pop()
        if isinstance(item, str):
            if not is_unicode(item):
                return at or "body"
        elif isinstance(item, dict):
            for key, child in item.items():
                if not is_unicode(str(key)):
                    return at or "body"
                stack.append((child, f"{at}.{key}" if at else str(key)))
        elif isinstance(item, list):
            stack.extend((child, f"{at}[{i}]") for i, child in enumerate(item))
    return None


# ---------------------------------------------------------------- JSON fields
def field_at(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key


def known_fields(obj: Mapping[str, Any], allowed: Collection[str], where: str = "") -> None:
    """The one rule for unknown fields: a key of ``obj`` not in ``allowed``
    is a 400 naming it (``pings[3].ts``), never silently ignored — a typo
    (``"ts"`` for ``"timestamp"``) would otherwise change what the request
    means. Free-form maps (device ``attributes``, fence ``metadata``) and
    foreign GeoJSON are not checked with it (README "Limits and behaviour")."""
    for key in obj:
        if key not in allowed:
            raise InvalidInput(
                f"unknown field '{key}' (allowed: {', '.join(sorted(allowed))})", field_at(where, str(key))
            )


def json_object(value: Any, where: str, allowed: tuple[str, ...]) -> dict:
    """A JSON object with only ``allowed`` keys (:func:`known_fields`)."""
    if not isinstance(value, dict):
        raise InvalidInput("must be a JSON object", where or None)
    known_fields(value, allowed, where)
    return value


def json_number(value: Any, where: str) -> int | float:
    """A finite JSON number (not a bool); integral values come back as int."""
    if not is_finite_number(value):
        raise InvalidInput("must be a finite number", where)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def json_integer(value: Any, where: str) -> int:
    if not is_finite_number(value) or (isinstance(value, float) and not value.is_integer()):
        raise InvalidInput("must be an integer", where)
    return int(value)


def json_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput("must be true or false", where)
    return value


def json_text(value: Any, where: str, max_len: int, what: str = "a string") -> str:
    """A non-blank string of at most ``max_len`` characters, stripped."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"must be {what} (not empty)", where)
    text = value.strip()
    if len(text) > max_len:
        raise InvalidInput(f"must be at most {max_len} characters", where)
    return text


def json_list(value: Any, where: str, max_items: int, *, allow_empty: bool = False) -> list:
    if not isinstance(value, list):
        raise InvalidInput("must be a list", where)
    if not value and not allow_empty:
        raise InvalidInput("must not be empty", where)
    if len(value) > max_items:
        raise InvalidInput(f"must have at most {max_items} entries", where)
    return value


def dedupe(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


__all__ = [
    "json_text",
    "json_object",
    "known_fields",
    "json_number",
    "json_list",
    "json_integer",
    "json_bool",
    "field_at",
    "dedupe",
    "CAMPAIGN_ID_RE",
    "DEVICE_ID_RE",
    "FENCE_ID_RE",
    "MIN_NONZERO_MAGNITUDE",
    "bounded_string",
    "float_param",
    "is_campaign_id",
    "is_device_id",
    "is_fence_id",
    "is_finite_number",
    "is_unicode",
    "lone_surrogate_path",
    "number_field",
    "validate_campaign_id",
    "validate_device_id",
    "validate_fence_id",
]
