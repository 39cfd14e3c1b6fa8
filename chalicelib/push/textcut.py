"""Cutting push text short without breaking a character. Pure (no I/O).

Python strings hold code points, so a cut never splits a UTF-8 sequence or
a UTF-16 surrogate pair; what it can split is a *grapheme* — a letter and
its combining marks, an emoji ZWJ sequence, a skin tone or variation
selector, a flag (two regional indicators, or a tag sequence). The cut
point is moved back to the start of the grapheme it falls in (a close
approximation of Unicode's extended grapheme clusters, without a
dependency).
"""

from __future__ import annotations

import unicodedata

ELLIPSIS = "…"
_ZWJ = "\u200d"


def attaches(ch: str) -> bool:
    """Whether ``ch`` belongs to the character before it.

    >>> attaches("\\u0301"), attaches("a"), attaches("\\U0001F3FD")
    (True, False, True)
    """
    code = ord(ch)
    return (
        unicodedata.combining(ch) != 0
        or code == 0x200D  # zero-width joiner
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0x1F3FB <= code <= 0x1F3FF  # skin tones
        or 0xE0020 <= code <= 0xE007F  # tag characters (flag sequences)
        or unicodedata.category(ch) in ("Mc", "Me")
    )


def _regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def grapheme_start(text: str, cut: int) -> int:
    """The largest index ``<= cut`` where ``text`` may be cut without
    splitting a grapheme (0 when there is none).

    >>> grapheme_start("ae\\u0301", 2), grapheme_start("ae\\u0301", 3)
    (1, 3)
    >>> flags = "\\U0001F1EB\\U0001F1F7\\U0001F1E9\\U0001F1EA"  # two flags
    >>> grapheme_start(flags, 3), grapheme_start(flags, 2)
    (2, 2)
    """
    cut = max(0, min(cut, len(text)))
    while 0 < cut < len(text) and (attaches(text[cut]) or text[cut - 1] == _ZWJ):
        cut -= 1
    if 0 < cut < len(text) and _regional(text[cut]) and _regional(text[cut - 1]):
        run = cut
        while run > 0 and _regional(text[run - 1]):
            run -= 1
        if (cut - run) % 2:  # inside a pair
            cut -= 1
    return cut


def shorten(text: str, keep: int) -> str:
    """``text`` cut to its first ``keep`` code points (moved back to a
    grapheme boundary), right-stripped, and ended with "…"; ``text`` itself
    when it is no longer than ``keep``.

    >>> shorten("abcdef", 3), shorten("abc", 3), shorten("ab cd", 3)
    ('abc…', 'abc', 'ab…')
    """
    if len(text) <= keep:
        return text
    return text[: grapheme_start(text, keep)].rstrip() + ELLIPSIS
