"""Per-device coupon codes: ``PREFIX-XXXXXXXX``, derived, never stored as a secret.

The 8 characters are the first 40 bits of ``HMAC-SHA256(secret, campaign_id
\\x1f device_id)`` in Crockford base32: the same device gets the same code on
every retry of the same campaign (no coupon table needed, nothing to keep in
sync), and nobody without the secret can compute another device's code.
Pure: the secret is passed in.
"""

from __future__ import annotations

import hashlib
import functools
import hmac
from dataclasses import dataclass

#: Crockford's base32 alphabet: no I, L, O or U (nothing to misread).
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_CHARS = 8
#: Every pair of Crockford digits, by its 10-bit value.
_CROCKFORD_PAIRS = tuple(a + b for a in CROCKFORD for b in CROCKFORD)
#: What people type for what they meant (Crockford decoding rules).
_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})


@dataclass(frozen=True)
class CouponSpec:
    """A campaign's coupon: ``percent_off`` in (0, 100], ``prefix`` A-Z0-9
    (1-12, upper case), ``valid_hours`` in (0, 8760]."""

    percent_off: float
    prefix: str
    valid_hours: float

    def to_json(self) -> dict:
        return {"percent_off": self.percent_off, "prefix": self.prefix, "valid_hours": self.valid_hours}


@dataclass(frozen=True)
class Coupon:
    """One device's coupon for one campaign."""

    code: str
    percent_off: float
    expires_at: float  # epoch seconds
    valid_hours: float


@functools.lru_cache(maxsize=8)
def _keyed(secret: str):
    """The HMAC keyed once per secret; each code copies it (cheaper than re-keying)."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def coupon_tag(secret: str, campaign_id: str, device_id: str) -> str:
    """The 8-character Crockford base32 HMAC tag of (campaign, device).

    >>> coupon_tag("s3cret", "storm", "dev-1") == coupon_tag("s3cret", "storm", "dev-1")
    True
    >>> len(coupon_tag("s3cret", "storm", "dev-1"))
    8
    """
    if not secret:
        raise ValueError("the coupon secret is not configured")
    mac = _keyed(secret).copy()
    mac.update(f"{campaign_id}\x1f{device_id}".encode())
    digest = mac.digest()
    bits = int.from_bytes(digest[:5], "big")  # 40 bits: 8 digits, 4 pairs
    return "".join([_CROCKFORD_PAIRS[(bits >> shift) & 1023] for shift in (30, 20, 10, 0)])


def make_coupon(secret: str, campaign_id: str, spec: CouponSpec, device_id: str, issued_at: float) -> Coupon:
    """The device's coupon: ``f"{prefix}-{tag}"``, expiring ``valid_hours`` after ``issued_at``.

    Raises ValueError when ``secret`` is empty (a configuration error, not bad input).
    """
    code = f"{spec.prefix}-{coupon_tag(secret, campaign_id, device_id)}"
    return Coupon(code, spec.percent_off, issued_at + spec.valid_hours * 3600.0, spec.valid_hours)


def coupon_matches(secret: str, campaign_id: str, device_id: str, code) -> bool:
    """Whether ``code`` is this device's code for this campaign.

    Case-insensitive, tolerant of surrounding spaces and of Crockford's
    look-alikes (O for 0, I/L for 1); the prefix is not checked (it carries no
    secret). Compared in constant time.
    """
    if not isinstance(code, str) or len(code) > 64:
        return False
    tag = code.strip().upper().rpartition("-")[2].translate(_ALIASES)
    expected = coupon_tag(secret, campaign_id, device_id)
    return hmac.compare_digest(tag.encode(), expected.encode())
