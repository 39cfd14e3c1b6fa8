"""A request body's shape, read from its bytes before it is parsed.

``json.loads`` of a 5 MB body holding one 2.4-million-element array takes a
quarter of a second, of 1.6 million empty arrays a second, and walking the
result in Python several more; a hostile body costs nothing to send. So the
body's structure is measured first, with numpy over the bytes (tens of
milliseconds for 5 MB): how deep arrays and objects nest, and how many
entries the largest one holds. Too deep or too wide is a 400 before any
parsing, naming the array's path (``pings``, ``features[2].geometry``).

Only the structural characters outside strings count (a quote is a string's
edge unless an odd number of backslashes precede it). A body whose brackets
do not balance is left to the JSON parser, which names the error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from chalicelib.api.body_limits import MAX_ENTRIES, MAX_NESTING, may_exceed
from chalicelib.errors import InvalidInput

__all__ = ["MAX_ENTRIES", "MAX_NESTING", "Structure", "check_shape", "path_to", "structure"]

_QUOTE, _BACKSLASH = 0x22, 0x5C
_OPENERS = (0x5B, 0x7B)  # [ {
_CLOSERS = (0x5D, 0x7D)  # ] }
_COMMA, _COLON = 0x2C, 0x3A


@dataclass(frozen=True)
class Structure:
    """The structural characters outside strings: their byte offsets, the
    characters, and the nesting depth after each one."""

    raw: bytes
    quotes: np.ndarray  # offsets of the quotes that open or close strings
    pos: np.ndarray
    char: np.ndarray
    depth: np.ndarray


def _string_quotes(a: np.ndarray) -> np.ndarray:
    """Offsets of the quotes not escaped by an odd run of backslashes."""
    q = np.flatnonzero(a == _QUOTE)
    b = np.flatnonzero(a == _BACKSLASH)
    if not q.size or not b.size:
        return q
    breaks = np.flatnonzero(np.diff(b) != 1)
    starts = b[np.r_[0, breaks + 1]]
    ends = b[np.r_[breaks, b.size - 1]]
    k = np.minimum(np.searchsorted(ends, q - 1), ends.size - 1)
    run = np.where(ends[k] == q - 1, ends[k] - starts[k] + 1, 0)
    return q[run % 2 == 0]


_STEP = np.zeros(256, dtype=np.int8)
_STEP[list(_OPENERS)] = 1
_STEP[list(_CLOSERS)] = -1
_STRUCTURAL = np.zeros(256, dtype=bool)
_STRUCTURAL[[*_OPENERS, *_CLOSERS, _COMMA, _COLON]] = True


def structure(raw: bytes) -> Structure | None:
    """The body's structure, or None when its brackets do not balance."""
    a = np.frombuffer(raw, dtype=np.uint8)
    quotes = _string_quotes(a)
    mask = _STRUCTURAL[a]
    if quotes.size:
        edge = np.zeros(a.size, dtype=np.uint8)
        edge[quotes] = 1
        mask &= np.bitwise_xor.accumulate(edge) == 0  # outside strings (a closing quote itself is not structural)
    pos = np.flatnonzero(mask)
    char = a[pos]
    depth = np.cumsum(_STEP[char], dtype=np.int32)
    if depth.size and (depth.min() < 0 or depth[-1] != 0):
        return None
    return Structure(raw, quotes, pos, char, depth)


def _widest(s: Structure, at_least: int) -> tuple[int, int]:
    """(entries, token index) of the widest array or object among those
    with at least ``at_least`` entries (else (0, -1)); ties go to the
    shallowest, then the first. A container holds one more entry than it has
    commas (an empty one counts as one: only the largest matters here)."""
    is_comma = s.char == _COMMA
    is_open = _STEP[s.char] == 1
    per_depth = np.bincount(s.depth[is_comma], minlength=int(s.depth.max()) + 1)
    best = (0, -1)
    # only a depth with that many commas in all can hold such a container
    for d in np.flatnonzero(per_depth >= at_least - 1).tolist():
        if d == 0:
            continue
        # openers and commas at depth d, in body order: each comma belongs to the last opener before it
        at = np.flatnonzero((s.depth == d) & (is_comma | is_open))
        opens = ~is_comma[at]
        if not opens.any():
            continue
        counts = np.bincount((np.cumsum(opens) - 1)[~opens], minlength=int(opens.sum()))
        w = int(np.argmax(counts))
        if counts[w] + 1 > best[0]:
            best = (int(counts[w]) + 1, int(at[opens][w]))
    return best


def path_to(s: Structure, token: int) -> str:
    """The JSON path of the container opened at ``token`` (``pings``,
    ``features[2].geometry.coordinates[0]``; ``body`` for the whole body).
    Each level up is a few vectorised passes over the openers and commas
    (at most 64 levels)."""
    is_open = _STEP[s.char] == 1
    o_idx = np.flatnonzero(is_open)
    o_depth = s.depth[o_idx]
    c_idx = np.flatnonzero(s.char == _COMMA)
    c_depth = s.depth[c_idx]
    parts: list[str] = []
    d, i = int(s.depth[token]), token
    while d > 1:
        # the enclosing container: the last opener before i at depth d - 1
        before = o_idx[(o_depth == d - 1) & (o_idx < i)]
        parent = int(before[-1])
        if s.char[parent] == _OPENERS[0]:
            at_depth = c_idx[c_depth == d - 1]
            index = int(np.searchsorted(at_depth, i) - np.searchsorted(at_depth, parent))
            parts.append(f"[{index}]")
        else:
            parts.append("." + _key_before(s, i))
        i, d = parent, d - 1
    text = "".join(reversed(parts)).lstrip(".")
    return text or "body"


def _key_before(s: Structure, token: int) -> str:
    """The object key whose value starts at structural token ``token``: the
    string before the last colon ahead of it."""
    colon = int(s.pos[token - 1]) if token and s.char[token - 1] == _COLON else int(s.pos[token])
    k = int(np.searchsorted(s.quotes, colon)) - 1
    if k < 1:
        return "?"
    try:
        key = json.loads(s.raw[int(s.quotes[k - 1]): int(s.quotes[k]) + 1])
    except ValueError:
        return "?"
    return str(key)


def check_shape(raw: bytes, max_nesting: int = MAX_NESTING, max_entries: int = MAX_ENTRIES) -> None:
    """400 when arrays or objects nest deeper than ``max_nesting`` or one
    holds more than ``max_entries`` entries; nothing for a body the JSON
    parser will reject anyway."""
    if not may_exceed(raw, max_nesting, max_entries):
        return
    s = structure(raw)
    if s is None or not s.pos.size:
        return
    deepest = int(s.depth.max())
    if deepest > max_nesting:
        raise InvalidInput(f"JSON nested deeper than {max_nesting} levels", "body")
    if int(np.count_nonzero(s.char == _COMMA)) < max_entries:
        return  # fewer commas in all than one container may hold
    entries, token = _widest(s, max_entries + 1)
    if entries > max_entries:
        where = path_to(s, token)
        raise InvalidInput(f"more than {max_entries:,} entries in one array or object ({entries:,})", where)
