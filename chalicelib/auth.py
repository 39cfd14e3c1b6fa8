"""Roles, API key hashes and device secrets (the README's "Security model").

API keys and device secrets are random tokens of 24-32 bytes, so a plain
SHA-256 is what stands between a leaked hash and the token: there is no
dictionary to run, and a salt or a slow hash (PBKDF2, scrypt) would only add
latency to every request. Only ``sha256:<hex>`` strings are kept: in the
settings for API keys, on the device item for device secrets. Comparisons
are constant-time and, for API keys, run over every configured hash.

Pure: no boto3, no ``os.environ``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Iterable

ADMIN = "admin"
APP = "app"

HASH_PREFIX = "sha256:"
_HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
#: Keys per role that may be active at once: the current one and, during a
#: rotation, the next (or the previous) one.
MAX_KEYS_PER_ROLE = 2
#: Random bytes of a device secret (43 URL-safe characters).
DEVICE_SECRET_BYTES = 32
#: The header an app-key request presents its device's secret in.
DEVICE_SECRET_HEADER = "X-Device-Secret"


def hash_token(token: str) -> str:
    """The stored form of an API key or a device secret.

    >>> hash_token("abc")
    'sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'
    """
    return HASH_PREFIX + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_key_hashes(value: str, name: str) -> tuple[str, ...]:
    """Comma-separated ``sha256:<64 hex>`` entries of the variable ``name``.
    A malformed entry is a ValueError that never echoes the entry (it might be
    a key pasted into the wrong variable).

    >>> parse_key_hashes(" SHA256:" + "A" * 64 + ",", "X")
    ('sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',)
    """
    out = []
    for i, raw in enumerate(v.strip() for v in value.split(",")):
        if not raw:
            continue
        entry = raw.lower()
        if not _HASH_RE.match(entry):
            raise ValueError(f"{name}: entry {i + 1} is not sha256:<64 hex digits> ({len(raw)} characters)")
        out.append(entry)
    return tuple(out)


def key_hashes(hashes: Iterable[str], plaintext: Iterable[str], name: str) -> tuple[str, ...]:
    """The active hashes of one role: the configured ones plus those of
    plaintext keys (the local stack's), de-duplicated, at most
    :data:`MAX_KEYS_PER_ROLE`."""
    out = list(dict.fromkeys([*hashes, *(hash_token(k) for k in plaintext)]))
    if len(out) > MAX_KEYS_PER_ROLE:
        raise ValueError(f"{name}: {len(out)} keys configured; at most {MAX_KEYS_PER_ROLE} may be active (rotation)")
    return tuple(out)


def _matches(digest: bytes, hashes: Iterable[str]) -> bool:
    ok = False
    for h in hashes:  # no early exit: the time does not say which one matched
        ok |= hmac.compare_digest(digest, h.encode())
    return ok


def role_for_key(key: str, admin_hashes: Iterable[str], app_hashes: Iterable[str]) -> str | None:
    """:data:`ADMIN`, :data:`APP` or None (unknown key); every configured
    hash of both roles is compared, in constant time."""
    digest = hash_token(key).encode()
    is_admin = _matches(digest, admin_hashes)
    is_app = _matches(digest, app_hashes)
    return ADMIN if is_admin else APP if is_app else None


def new_device_secret() -> str:
    """A fresh device secret: 32 random bytes, URL-safe base64."""
    return secrets.token_urlsafe(DEVICE_SECRET_BYTES)


def secret_matches(presented: str | None, stored_hash: str | None) -> bool:
    """Whether ``presented`` is the secret whose hash is stored (constant
    time; a device without a stored hash matches nothing)."""
    if not presented or not stored_hash:
        return False
    return hmac.compare_digest(hash_token(presented).encode(), stored_hash.encode())
