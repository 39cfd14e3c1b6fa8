"""A request body's shape limits, and the byte-count test that shows most
bodies cannot pass them — so the numpy scan (:mod:`chalicelib.api.body_scan`),
and numpy itself, load only for a body that might."""

from __future__ import annotations

#: Arrays and objects nested deeper than this are refused.
MAX_NESTING = 64
#: No array or object in a body has more entries than this. The largest
#: valid ones: a ring of 10,001 positions, 10,000 H3 cells, an NWS feed's
#: few hundred alerts.
MAX_ENTRIES = 100_000


def may_exceed(raw: bytes, max_nesting: int = MAX_NESTING, max_entries: int = MAX_ENTRIES) -> bool:
    """False when neither limit can be passed: fewer openers than levels
    allowed and fewer commas than entries allowed (brackets and commas
    inside strings counted too: only ever too careful). A ping's small body
    skips the scan (~70 µs, eight times its parse)."""
    return raw.count(b"[") + raw.count(b"{") > max_nesting or raw.count(b",") >= max_entries
