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

from chalicelib.errors import InvalidInput

#: Arrays and objects nested deeper than this are refused.
MAX_NESTING = 64
#: No array or object in a body has more entries than this. The largest
#: valid ones: a ring of 10,001 positions, 10,000 H3 cells, an NWS feed's
#: few hundred alerts.
MAX_ENTRIES = 100_000

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


def structure(raw: bytes) -> Structure | None:
    """The body's structure, or None when its brackets do not balance."""
    a = np.frombuffer(raw, dtype=np.uint8)
    quotes = _string_quotes(a)
    mask = (a == _OPENERS[0]) | (a == _OPENERS[1]) | (a == _CLOSERS[0]) | (a == _CLOSERS[1]) | (a == _COMMA) | (a == _COLON)
    pos = np.flatnonzero(mask)
    if quotes.size:
        pos = pos[np.searchsorted(quotes, pos) % 2 == 0]  # an even number of quotes before: outside strings
    char = a[pos]
    step = np.isin(char, _OPENERS).astype(np.int64) - np.isin(char, _CLOSERS).astype(np.int64)
    depth = np.cumsum(step)
    if depth.size and (depth.min() < 0 or depth[-1] != 0):
        return None
    return Structure(raw, quotes, pos, char, depth)


def _widest(s: Structure) -> tuple[int, int]:
    """(entries of the widest array or object, its token index): a
    container holds one more entry than it has commas (an empty one counts
    as one: only the largest matters here)."""
    o_idx = np.flatnonzero(np.isin(s.char, _OPENERS))
    if not o_idx.size:
        return 0, -1
    c_idx = np.flatnonzero(s.char == _COMMA)
    if not c_idx.size:
        return 1, int(o_idx[0])
    # each comma belongs to the last opener at its depth before it: with
    # keys depth-major, that is the last opener key not above the comma's
    n = s.pos.size + 1
    o_key = s.depth[o_idx] * n + o_idx
    order = np.argsort(o_key, kind="stable")
    owner = order[np.searchsorted(o_key[order], s.depth[c_idx] * n + c_idx, side="right") - 1]
    counts = np.bincount(owner, minlength=o_idx.size)
    w = int(np.argmax(counts))
    return int(counts[w]) + 1, int(o_idx[w])


def path_to(s: Structure, token: int) -> str:
    """The JSON path of the container opened at ``token`` (``pings``,
    ``features[2].geometry.coordinates[0]``; ``body`` for the whole body)."""
    parts: list[str] = []
    d = int(s.depth[token])
    i = token
    while d > 1:
        # the enclosing container: the last opener before i at depth d - 1
        before = np.flatnonzero((s.depth[:i] == d - 1) & np.isin(s.char[:i], _OPENERS))
        parent = int(before[-1])
        seps = np.flatnonzero((s.depth[parent + 1: i] == d - 1) & (s.char[parent + 1: i] == _COMMA))
        if s.char[parent] == _OPENERS[0]:
            parts.append(f"[{seps.size}]")
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
    s = structure(raw)
    if s is None or not s.pos.size:
        return
    deepest = int(s.depth.max())
    if deepest > max_nesting:
        raise InvalidInput(f"JSON nested deeper than {max_nesting} levels", "body")
    entries, token = _widest(s)
    if entries > max_entries:
        where = path_to(s, token)
        raise InvalidInput(f"more than {max_entries:,} entries in one array or object ({entries:,})", where)
