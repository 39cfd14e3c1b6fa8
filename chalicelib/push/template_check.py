"""Template authoring checks: every syntax error of a template at once,
each with its line, and warnings for the variables a template reads that
nothing defines. Pure (no I/O).

**All errors at once.** python-liquid stops at the first syntax error. To
find the next one, :func:`syntax_problems` replaces the markup the error is
in (the last ``{{ ... }}`` or ``{% ... %}`` starting before the error's
position) with a neutral stand-in of the same tag that keeps the block
structure (``{% if true %}`` for a broken ``{% if ... %}``, nothing for a
broken output or an unknown tag) and the same number of line breaks, and
parses again: so the lines stay right and a broken block opener does not
also report its ``end`` tag. At most :data:`MAX_PROBLEMS` per template; an
error without a position (an unclosed block at the end) ends the search.
Unknown filters of the template (or of what parses once the broken markup
is replaced) are reported too, each at its first use.

**Undefined variables.** A template reads the documented variables
(:data:`BUILTIN_KEYS`) and device attributes, which are free-form. At save
(:func:`variable_warnings`) every name the template reads from outside is
checked: a built-in name with a key it does not have (``fence.nme``), one
the campaign never sets (``coupon`` without a coupon, ``alert`` on a
geofence trigger, ``fence`` on an alert), and a name that is no built-in,
which can only be a device attribute, and renders empty for every device
without it (``firstname``, with "did you mean" when a built-in or a name
the campaign's variants test is close) — unless its output goes through
``default`` first, or a variant tests that attribute. In a preview
(:func:`undefined_in_context`) every path is looked up in the real
context of that device, so only what renders empty for it is listed.
Warnings never block a save: they are ``{"field", "message", "line",
"variable"}``.
"""

from __future__ import annotations

import difflib
import re
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterable, Iterator, Mapping

from liquid.exceptions import LiquidError

from chalicelib.errors import InvalidInput
from chalicelib.push.liquid_env import ENV

#: Template problems reported per template, at most.
MAX_PROBLEMS = 20
#: Characters re-parsed to look past first errors, per definition (a
#: 4,000-character body parses in ~10 ms on one core).
RECOVERY_CHARS = 60_000

#: The documented variables and their keys (None: free-form keys, or a
#: value without keys). Device attributes come on top, free-form.
BUILTIN_KEYS: dict[str, frozenset[str] | None] = {
    "attributes": None,
    "fence": frozenset({"id", "name", "tags", "metadata"}),
    "coupon": frozenset({"code", "percent_off", "expires_at", "valid_hours"}),
    "alert": frozenset(
        {"id", "event", "headline", "severity", "urgency", "certainty", "area_desc", "sender_name", "onset",
         "effective", "ends", "expires"}
    ),
    "weather": frozenset({"condition", "temperature_c", "precipitation_mm_h", "wind_kph", "observed_at"}),
    "campaign": frozenset({"id", "name"}),
    "local_time": frozenset(),
    "local_date": frozenset(),
    "local_weekday": frozenset(),
    "arm": frozenset(),
}
#: Keys with free-form keys below them (``fence.metadata.city``).
_FREE_BELOW = {("fence", "metadata")}
#: Names python-liquid itself resolves.
LIQUID_NAMES = frozenset({"now", "today", "forloop", "tablerowloop", "empty", "blank", "nil", "null", "true", "false"})
#: Liquid's properties of strings and arrays (``tags.size``, ``tags.first``).
_SPECIAL = frozenset({"size", "first", "last"})

#: A variable whose output goes through ``default`` first (``{{ first_name | default: "there" }}``).
_DEFAULTED = re.compile(r"""[\w.\[\]"' -]*?\|\s*default\b""")
_MARKUP = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_TAG_NAME = re.compile(r"\{%-?\s*(\w+)")
#: A stand-in for a broken tag that keeps the block structure.
_NEUTRAL = {
    "if": "{% if true %}", "elsif": "{% elsif true %}", "unless": "{% unless false %}", "case": "{% case 1 %}",
    "when": "{% when 1 %}", "for": "{% for _x in (1..1) %}", "tablerow": "{% tablerow _x in (1..1) %}",
    "capture": "{% capture _x %}", "else": "{% else %}",
}  # fmt: skip


# ---------------------------------------------------------------- errors
def describe(err: LiquidError) -> str:
    """The error's message, worded for an end of template it ran off."""
    message = str(err.message)
    if err.token is None or err.token.start_index < 0:
        # No position: the parser ran off the end of the template (an unclosed block).
        message = message.replace("found end of expression", "found the end of the template")
    return message


def error_line(err: LiquidError, source: str) -> int:
    """1-based line of a Liquid error; the last line when it has no position."""
    token = err.token
    if token is not None and token.start_index >= 0 and token.source:
        return token.source.count("\n", 0, token.start_index) + 1
    return source.count("\n") + 1


def problem(field: str, message: str, line: int | None) -> dict:
    """One entry of an error's ``errors`` list."""
    return {"code": "invalid_input", "message": message, "field": field, "line": line}


def _position(err: LiquidError) -> int | None:
    token = err.token
    if token is None or token.start_index < 0:
        return None
    return int(token.start_index)


def _stand_in(markup: str) -> str:
    """A neutral replacement for a broken markup, with its line breaks."""
    name = _TAG_NAME.match(markup)
    neutral = _NEUTRAL.get(name.group(1), "") if name and markup.startswith("{%") else ""
    if neutral == markup.strip():
        neutral = ""
    return neutral + "\n" * markup.count("\n")


def _replace_broken(source: str, at: int) -> str | None:
    """``source`` with the markup the error at ``at`` is in replaced, or
    None when there is none."""
    found = None
    for m in _MARKUP.finditer(source):
        if m.start() >= at:
            break
        found = m
    if found is None:
        return None
    return source[: found.start()] + _stand_in(found.group()) + source[found.end():]


def syntax_problems(source: str, field: str) -> tuple[list[dict], Any]:
    """``(problems, template)``: every syntax error and unknown filter of
    ``source`` (by line), and the parsed template (None when it does not
    parse). Looking past the first error re-parses the template, which
    costs about its length: at most :data:`MAX_PROBLEMS` parses, and
    :data:`RECOVERY_CHARS` characters re-parsed in all the templates of one
    definition (inside :func:`template_errors`; else this template's own).
    Past that budget, what was found is reported (always the first error)."""
    budget = _RECOVERY.get()
    if budget is None:
        budget = [RECOVERY_CHARS]
    problems: list[dict] = []
    text = source
    template = None
    parsed = None
    for attempt in range(MAX_PROBLEMS):
        if attempt:
            if budget[0] < len(text):
                break
            budget[0] -= len(text)
        try:
            parsed = ENV.from_string(text)
        except LiquidError as err:
            line = error_line(err, text)
            message = f"template error on line {line}: {describe(err)}"
            if any(p["message"] == message for p in problems):
                break  # the same error again (a limit, or the same mistake on one line): nothing new past it
            problems.append(problem(field, message, line))
            at = _position(err)
            text_next = _replace_broken(text, at) if at is not None else None
            if text_next is None or text_next == text:
                break
            text = text_next
        except Exception as err:  # noqa: BLE001 - any parser failure is a bad template
            problems.append(problem(field, f"template error: {err}", None))
            break
        else:
            if not problems:
                template = parsed
            break
    if parsed is not None:
        problems += [p for p in unknown_filters(parsed, text, field) if len(problems) < MAX_PROBLEMS]
    problems.sort(key=lambda p: p["line"] or 0)
    return problems, template


def unknown_filters(template: Any, source: str, field: str) -> list[dict]:
    """Each filter the environment does not have, at its first use."""
    try:
        used = template.analyze().filters
    except Exception:  # noqa: BLE001 - analysis is a bonus; rendering still reports errors
        return []
    out = []
    for name, spans in used.items():
        if name not in ENV.filters:
            line = source.count("\n", 0, spans[0].index) + 1 if spans else source.count("\n") + 1
            out.append(problem(field, f"template error on line {line}: unknown filter '{name}'", line))
    return out


# ---------------------------------------------------------------- a campaign's errors
#: The template errors of the definition being parsed (None: raise at once).
_COLLECTED: ContextVar[list[dict] | None] = ContextVar("hexcast_template_errors", default=None)
#: What is left of the definition's :data:`RECOVERY_CHARS` (None: outside one).
_RECOVERY: ContextVar[list[int] | None] = ContextVar("hexcast_template_recovery", default=None)
#: The parsed template of a template with errors (never rendered: :func:`template_errors` raises).
BROKEN = object()


def _entry(exc: InvalidInput) -> dict:
    return problem(exc.field or "", exc.message, None) | {"code": exc.code, "field": exc.field}


def keep_going(exc: InvalidInput) -> None:
    """Inside :func:`template_errors`: keep a template's errors and let
    validation go on; outside: raise ``exc``."""
    bucket = _COLLECTED.get()
    if bucket is None:
        raise exc
    bucket.extend(exc.errors or [_entry(exc)])


@contextmanager
def template_errors(order: tuple[str, ...]) -> Iterator[None]:
    """Collect the template errors (:func:`keep_going`) of one definition
    and raise them together at the end: the first as the error, every one
    in ``errors``, in the order of the top-level fields ``order``, by line
    within a field. An error that stops validation is raised as it is,
    with the template errors found before it after it in ``errors``."""
    collected: list[dict] = []
    token = _COLLECTED.set(collected)
    budget = _RECOVERY.set([RECOVERY_CHARS])
    try:
        yield
    except InvalidInput as exc:
        if collected and not exc.errors:
            exc.errors = [_entry(exc), *collected]
        raise
    finally:
        _COLLECTED.reset(token)
        _RECOVERY.reset(budget)
    if collected:

        def rank(p: dict) -> int:
            top = re.split(r"[.\[]", p.get("field") or "", maxsplit=1)[0]
            return order.index(top) if top in order else len(order)

        collected.sort(key=rank)
        first, more = collected[0], len(collected) - 1
        message = first["message"] if not more else f"{first['message']} (and {more} more template error{'s' * (more > 1)}: see errors)"
        raise InvalidInput(message, first["field"], errors=collected)


# ---------------------------------------------------------------- warnings
def _reads(template: Any) -> Iterable[tuple[str, list[Any], int]]:
    """(root name, path segments, index in the source) of every variable
    the template reads from outside (its own assigns and loop variables
    excluded)."""
    try:
        found = template.analyze().globals
    except Exception:  # noqa: BLE001 - analysis is a bonus
        return []
    out = []
    for root, variables in found.items():
        for var in variables:
            out.append((str(root), list(var.segments), int(var.span.index)))
    return out


def _warning(field: str, source: str, index: int, variable: str, message: str) -> dict:
    line = source.count("\n", 0, max(index, 0)) + 1
    return {"field": field, "message": f"line {line}: {message}", "line": line, "variable": variable}


def _path_text(segments: list[Any]) -> str:
    out = ""
    for seg in segments:
        if isinstance(seg, str):
            out += seg if not out else f".{seg}"
        elif isinstance(seg, int):
            out += f"[{seg}]"
        else:
            out += "[…]"
    return out


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


def variable_warnings(
    template: Any, source: str, field: str, *, unset: Mapping[str, str], attributes: Iterable[str] = ()
) -> list[dict]:
    """Warnings for the variables a compiled template reads (see the module
    docstring). ``unset``: built-in names the campaign never sets → why;
    ``attributes``: device attribute names the campaign itself tests
    (variants' ``when``), used for suggestions. One warning per variable."""
    if template is None:
        return []
    known_attrs = set(attributes)
    out: list[dict] = []
    seen: set[str] = set()
    for root, segments, index in _reads(template):
        text = _path_text(segments)
        if root in LIQUID_NAMES or text in seen:
            continue
        if root not in BUILTIN_KEYS and _DEFAULTED.match(source, index):
            continue  # an attribute with a default: its absence is planned for
        message = _static_message(root, segments, text, unset, known_attrs)
        if message is not None:
            seen.add(text)
            out.append(_warning(field, source, index, text, message))
    return out


def _static_message(root: str, segments: list[Any], text: str, unset: Mapping[str, str], attrs: set[str]) -> str | None:
    if root not in BUILTIN_KEYS:
        if root in attrs:
            return None
        hint = _suggest(root, [*BUILTIN_KEYS, *attrs])
        return (f"'{root}' is not a built-in variable: it is read from the device attribute '{root}' "
                f"and renders empty for a device without it{hint}")
    if root in unset:
        return f"'{text}' is never set: {unset[root]}, so it renders empty"
    keys = BUILTIN_KEYS[root]
    if keys is None or len(segments) < 2 or not isinstance(segments[1], str):
        return None
    key = segments[1]
    if key in keys or key in _SPECIAL:
        return None
    if not keys:
        return f"'{root}' is text: '{text}' renders empty"
    return f"'{root}' has no key '{key}' ({', '.join(sorted(keys))}){_suggest(key, keys)}"


def undefined_in_context(template: Any, source: str, field: str, context: Mapping[str, Any]) -> list[dict]:
    """Warnings for the paths that are undefined in ``context`` (what one
    render sees): each renders empty there. Paths through an index or a
    variable key are not followed."""
    if template is None:
        return []
    out: list[dict] = []
    seen: set[str] = set()
    for root, segments, index in _reads(template):
        if root in LIQUID_NAMES:
            continue
        missing = _missing_prefix(context, segments)
        if missing is None or missing in seen:
            continue
        seen.add(missing)
        if len(segments) == 1 or missing == root:
            hint = _suggest(root, [k for k in context if isinstance(k, str)] + list(BUILTIN_KEYS))
            message = f"'{root}' is undefined for this device and renders empty{hint}"
        else:
            message = f"'{missing}' is undefined for this device and renders empty"
        out.append(_warning(field, source, index, missing, message))
    return out


def _missing_prefix(context: Mapping[str, Any], segments: list[Any]) -> str | None:
    """The first prefix of the path that is not in ``context``, or None."""
    try:
        value: Any = context[segments[0]]
    except KeyError:
        return str(segments[0])
    for i, seg in enumerate(segments[1:], start=1):
        if not isinstance(seg, str):
            return None  # an index or a variable key: not followed
        if isinstance(value, Mapping):
            if seg not in value:
                return _path_text(segments[: i + 1])
            value = value[seg]
        elif seg in _SPECIAL and isinstance(value, (str, list, tuple)):
            return None
        else:
            return _path_text(segments[: i + 1])
    return None
