"""The byte-level shape check agrees with the parsed JSON: nesting depth,
the widest array or object and its path, whatever the strings hold
(brackets, commas, quotes, backslashes, escapes) and however the JSON is
spaced."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.api import body_scan
from chalicelib.errors import InvalidInput

TRICKY = st.text(alphabet=st.sampled_from(list('ab[]{},:"\\ é😀\n')), max_size=6)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False), TRICKY)
VALUES = st.recursive(
    SCALARS,
    lambda kids: st.one_of(st.lists(kids, max_size=6), st.dictionaries(TRICKY, kids, max_size=5)),
    max_leaves=40,
)


def _field(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key


def reference(value: Any) -> tuple[int, tuple[int, int, int, str] | None]:
    """(container depth, the widest container as (-entries, depth, order, path)):
    ties go to the shallowest, then the first in the body. An empty
    container counts as one entry, as the scan counts it."""
    best: tuple[int, int, int, str] | None = None
    deepest = 0
    order = 0

    def walk(v: Any, depth: int, path: str) -> None:
        nonlocal best, deepest, order
        if not isinstance(v, (list, dict)):
            return
        deepest = max(deepest, depth)
        mine = (-max(len(v), 1), depth, order, path or "body")
        order += 1
        if best is None or mine < best:
            best = mine
        items = enumerate(v) if isinstance(v, list) else v.items()
        for k, child in items:
            walk(child, depth + 1, _field(path, k))

    walk(value, 1, "")
    return deepest, best


@settings(max_examples=300, deadline=None)
@given(value=VALUES, ascii_only=st.booleans(), spaced=st.booleans())
def test_the_scan_agrees_with_the_parsed_json(value, ascii_only, spaced):
    raw = json.dumps(value, ensure_ascii=ascii_only, indent=1 if spaced else None).encode()
    deepest, best = reference(value)
    s = body_scan.structure(raw)
    assert s is not None
    assert (int(s.depth.max()) if s.depth.size else 0) == deepest
    if best is None:
        return
    entries = -best[0]
    body_scan.check_shape(raw, max_entries=entries)  # at the limit: fine
    with pytest.raises(InvalidInput) as exc:
        body_scan.check_shape(raw, max_entries=entries - 1)
    assert exc.value.field == best[3]
    if deepest > 1:
        with pytest.raises(InvalidInput) as exc:
            body_scan.check_shape(raw, max_nesting=deepest - 1)
        assert exc.value.field == "body"


@pytest.mark.parametrize("raw, field", [
    (b'{"pings": [' + b",".join([b"0"] * 2_400_000) + b"]}", "pings"),
    (b'{"a": {"b\\"[": [1, {"c": [' + b",".join([b'"x,]"'] * 100_001) + b"]}]}}", 'a.b"[[1].c'),
    (b"[" + b",".join([b"[]"] * 100_001) + b"]", "body"),
])
def test_huge_arrays_are_named(raw, field):
    with pytest.raises(InvalidInput) as exc:
        body_scan.check_shape(raw)
    assert exc.value.field == field and "100,000" in exc.value.message


def test_deep_nesting_is_refused_before_parsing():
    with pytest.raises(InvalidInput) as exc:
        body_scan.check_shape(b"[" * 1_000_000 + b"]" * 1_000_000)
    assert exc.value.field == "body" and "64" in exc.value.message
    body_scan.check_shape(b"[" * 64 + b"]" * 64)


@pytest.mark.parametrize("raw", [b"", b"1", b'"[[["', b"[[[", b"]]]", b'{"a": [1, 2}', b"\xff\xfe[\x00", b'"\\\\"]'])
def test_malformed_bodies_are_left_to_the_parser(raw):
    body_scan.check_shape(raw)  # no error here: json.loads names what is wrong


def test_a_wide_array_deep_inside_a_large_body_is_named():
    filler = b'"f": [' + b",".join([b"1"] * 50_000) + b"], "
    inner = b"[" + b",".join([b"0"] * 100_001) + b"]"
    raw = b'{' + filler + b'"a": ' + b'{"b": [' * 30 + inner + b"]}" * 30 + b"}"
    with pytest.raises(InvalidInput) as exc:
        body_scan.check_shape(raw)
    assert exc.value.field == "a" + ".b[0]" * 30
