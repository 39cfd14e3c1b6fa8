"""Liquid templates for push texts: one hardened python-liquid environment,
compile-at-save, and cheap rendering. Pure (no I/O).

- Templates are compiled when a campaign is saved (:func:`compile_template`);
  a syntax error or an unknown filter is an ``InvalidInput`` naming the field
  and the line (``template error on line 2: ...``).
- ``default`` also replaces whitespace-only strings (Liquid's does not).
- ``include`` / ``render`` are not available (no partials: a push text is
  one template), and resource limits stop a hostile template from looping or
  growing memory: loops, output size, assigned-variable size, and the size of
  anything a filter takes or returns (``replace``/``join`` are checked before
  they run, so ``{{ s | replace: "", big }}`` never allocates).
- Rendering never raises anything but :class:`RenderError`.

Fast path. Most push texts are text and ``{{ path.to.var | filter: literal
}}`` outputs, where python-liquid spends ~4-5 µs a template on its render
context and buffer and 1-2 µs an output walking its AST. So
:func:`compile_template` inspects python-liquid's own parse tree once: when
every node is a ``ContentNode`` or an ``OutputNode`` whose expression is a
plain ``FilteredExpression`` — a path of names (``a.b``, ``a["b"]``) or a
literal, then filters from :data:`FAST_FILTERS` (pure: no render context,
no clock) with literal arguments only — it keeps a flat plan
(:class:`_Plan`). Rendering the plan looks the names up in the context,
calls **python-liquid's own filter functions** from :data:`ENV` (with the
size guards above) with the parsed literal values, and turns each result
into text with python-liquid's ``to_liquid_string``, as ``OutputNode``
does. A name missing at the top level is python-liquid's
``env.undefined(...)``, built as ``RenderContext.get`` builds it.

Anything the plan cannot answer exactly is rendered by python-liquid: at
compile time, tags (``if``, ``for``, ``assign``, comments), index or
variable path segments (``items[0]``, ``a[b]``), variable filter arguments,
filters outside the allow-list (``date`` reads the clock), and the names
python-liquid resolves itself (``now``, ``today``, ``partial``); at render
time, a missing key or a path through a value that is not a dict (Liquid's
``size``/``first``/``last`` rules apply there), any exception (so an error
is python-liquid's, with its line), and output over the stream limit.
``tests/unit/test_render_fastpath.py`` checks plan == python-liquid on
random templates and contexts.

The plan reads python-liquid's parse tree and calls its internals
(``ContentNode``, ``FilteredExpression``, ``Path``, the literal classes,
``RenderContext``'s builtin names), which a new release may change without
notice. So it is built only on the release it was written and checked
against (:data:`LIQUID_FAST_PATH_VERSION`, the pin of ``requirements.txt``);
on any other release :data:`FAST_PATH` is False, a warning is logged once
at import, and every template renders through python-liquid (slower, same
text).

Measured (``tests/unit/test_render.py::bench``: the SPEC §3 example body
with ``default``, ``downcase`` and a coupon, a static title and deep link;
Python 3.11, one core): ~130,000 ``Campaign.render`` calls/s, ~7.5 µs each,
context included (~48,000/s, ~21 µs, through python-liquid's render). A
static title costs nothing (no Liquid run), and the costlier context values
(local clock, coupon, fence) are only computed when a template reads them.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from dataclasses import field as _field
from datetime import datetime
from functools import partial, wraps
from io import StringIO
from typing import Any, Callable, Mapping

import liquid
from liquid import Environment
from liquid.builtin.content import ContentNode
from liquid.builtin.expressions import FilteredExpression, KeywordArgument, Nil, Path, PositionalArgument
from liquid.builtin.expressions.primitive import FalseLiteral, FloatLiteral, IntegerLiteral, StringLiteral, TrueLiteral
from liquid.builtin.filters.misc import default as _liquid_default
from liquid.builtin.output import OutputNode
from liquid.context import RenderContext
from liquid.context import builtin as _liquid_builtin_names
from liquid.exceptions import FilterValueError, LiquidError, OutputStreamLimitError
from liquid.filter import liquid_filter
from liquid.stringify import to_liquid_string

from chalicelib.errors import InvalidInput
from chalicelib.push.quiet import resolve_zone
from chalicelib.timeutil import iso

TITLE_MAX = 200
BODY_MAX = 1500
DEEP_LINK_MAX = 2048
ELLIPSIS = "…"

#: Limits on any one value a filter takes or returns.
MAX_TEXT = 20_000  # characters in a string
MAX_ITEMS = 20_000  # items in an array or range
MAX_LIST_TEXT = 100_000  # characters in all the strings of one array
MAX_INT_BITS = 10_000

#: Context names that templates get from the campaign/trigger, never from device attributes.
RESERVED_NAMES = frozenset(
    {"attributes", "fence", "coupon", "alert", "weather", "local_time", "local_date", "local_weekday", "campaign", "arm"}
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class RenderError(Exception):
    """A template failed at render time, or rendered an empty title/body.

    ``field`` is the template's field (``variants[0].message.body``), ``line``
    its line when known.
    """

    def __init__(self, message: str, field: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.line = line


@dataclass(frozen=True)
class Rendered:
    """A rendered push text, ready for the gateway."""

    title: str
    body: str
    deep_link: str | None
    variant: str | None


# ---------------------------------------------------------------- environment
class PushTemplateEnvironment(Environment):
    """python-liquid, strict, no autoescape, with resource limits.

    Limits (python-liquid class attributes): at most 1,000 loop iterations
    (product over nested loops), 20,000 characters of output per template,
    ~50 kB of assigned values, 20 levels of block nesting.
    """

    loop_iteration_limit = 1_000
    output_stream_limit = 20_000
    local_namespace_limit = 50_000
    context_depth_limit = 10
    block_nesting_limit = 20

    def error(self, exc, msg=None, token=None) -> None:  # noqa: D102 - see Environment.error
        # Always strict. Keep the most precise position: some parser errors
        # carry a placeholder token without one, while the caller knows the
        # markup being parsed or rendered.
        if not isinstance(exc, LiquidError):
            exc = exc(msg, token=token)
        elif token is not None and token.start_index >= 0 and (exc.token is None or exc.token.start_index < 0):
            exc.token = token
        raise exc


def _size_error(what: str) -> FilterValueError:
    return FilterValueError(f"{what} is too large", token=None)


def _check_size(value: Any) -> None:
    """Raise when a filter's input or output is bigger than the limits."""
    kind = type(value)
    if kind is str:
        if len(value) > MAX_TEXT:
            raise _size_error("a string")
    elif kind is list or kind is tuple:
        if len(value) > MAX_ITEMS:
            raise _size_error("an array")
        if sum(len(x) for x in value if type(x) is str) > MAX_LIST_TEXT:
            raise _size_error("an array")
    elif kind is range:
        if value.stop - value.start > MAX_ITEMS:
            raise _size_error("a range")
    elif kind is int and value.bit_length() > MAX_INT_BITS:
        raise _size_error("a number")


def _precheck_replace(val: Any, seq: Any = "", sub: Any = "", *_: Any) -> None:
    if type(val) is not str:
        return
    seq, sub = str(seq), str(sub)
    count = val.count(seq) if seq else len(val) + 1
    if len(val) + count * (len(sub) - len(seq)) > MAX_TEXT:
        raise _size_error("the result of replace")


def _precheck_join(val: Any, sep: Any = " ", *_: Any) -> None:
    if isinstance(val, (list, tuple, range)):
        total = sum(len(x) if type(x) is str else 24 for x in val) + len(str(sep)) * len(val)
        if total > MAX_TEXT:
            raise _size_error("the result of join")


_PRECHECKS: dict[str, Callable[..., None]] = {"replace": _precheck_replace, "join": _precheck_join}


def _guarded(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter with size checks on its arguments and its result."""
    precheck = _PRECHECKS.get(name)

    @wraps(func)  # keeps with_context / with_environment flags
    def guarded(val: Any, *args: Any, **kwargs: Any) -> Any:
        _check_size(val)
        for arg in args:
            _check_size(arg)
        if precheck is not None:
            precheck(val, *args)
        result = func(val, *args, **kwargs)
        _check_size(result)
        return result

    return guarded


@liquid_filter
def default(obj: Any, default_: object = "", *, allow_false: bool = False) -> Any:
    """Liquid's ``default`` (nil, false, empty → the default; ``allow_false: true``
    keeps false), and a whitespace-only string also takes the default.

    >>> default("  ", "there"), default("Ana", "there"), default(False, 1, allow_false=True)
    ('there', 'Ana', False)
    """
    if isinstance(obj, str) and obj.isspace():
        return default_
    return _liquid_default(obj, default_, allow_false=allow_false)


def build_environment() -> PushTemplateEnvironment:
    """The environment every campaign template is compiled in."""
    env = PushTemplateEnvironment(autoescape=False, strict_filters=True)
    for tag in ("include", "render"):
        env.tags.pop(tag, None)  # no partials: an unknown tag is a syntax error at save time
    env.add_filter("default", default)
    for name, func in list(env.filters.items()):
        env.add_filter(name, _guarded(name, func))
    return env


ENV = build_environment()


# ---------------------------------------------------------------- fast path
#: The python-liquid release the fast plan was written and checked against.
LIQUID_FAST_PATH_VERSION = "2.3.6"


def fast_path_supported(liquid_version: str) -> bool:
    """Whether the fast plan may be used with this python-liquid release."""
    return liquid_version == LIQUID_FAST_PATH_VERSION


#: Whether :func:`compile_template` builds fast plans (False: python-liquid
#: renders every template). Tests and benchmarks may switch it off.
FAST_PATH: bool = fast_path_supported(liquid.__version__)
if not FAST_PATH:
    logging.getLogger("hexcast.render").warning(
        "python-liquid %s is installed, the render fast path was written for %s: rendering with python-liquid only",
        liquid.__version__,
        LIQUID_FAST_PATH_VERSION,
    )

#: Filters a fast plan may call: pure functions of their input and arguments
#: (no render context, no clock), called as python-liquid calls them.
FAST_FILTERS = frozenset(
    {
        "abs", "append", "at_least", "at_most", "base64_decode", "base64_encode", "base64_url_safe_decode",
        "base64_url_safe_encode", "capitalize", "ceil", "compact", "concat", "default", "divided_by", "downcase",
        "escape", "escape_once", "find", "find_index", "first", "floor", "has", "join", "last", "lstrip", "map",
        "minus", "modulo", "newline_to_br", "plus", "prepend", "reject", "remove", "remove_first", "remove_last",
        "replace", "replace_first", "replace_last", "reverse", "round", "rstrip", "size", "slice", "sort",
        "sort_natural", "split", "squish", "strip", "strip_html", "strip_newlines", "sum", "times", "truncate",
        "truncatewords", "uniq", "upcase", "url_decode", "url_encode", "where",
    }
)  # fmt: skip
#: Literal expressions whose value is fixed at parse time (``autoescape`` is off).
_LITERALS = (StringLiteral, IntegerLiteral, FloatLiteral, TrueLiteral, FalseLiteral, Nil)


class _FallBack(Exception):
    """The plan cannot answer exactly: render with python-liquid."""


class _Output:
    """One ``{{ name.key... | filter: literal, ... }}`` (or a literal instead of a name)."""

    __slots__ = ("root", "keys", "value", "hint", "token", "filters")

    def __init__(self, root: str | None, keys: tuple[str, ...], value: Any, token: Any, filters: tuple) -> None:
        self.root = root  # None: ``value`` is a literal
        self.keys = keys
        self.value = value
        self.hint = f"{root!r} is undefined"  # as RenderContext.get words it
        self.token = token
        self.filters = filters  # ((function, positional args, keyword args), ...)

    def text(self, context: Mapping[str, Any]) -> str:
        """The output's text (as ``OutputNode.render_to_output`` writes it)."""
        if self.root is None:
            value = self.value
        else:
            try:
                value = context[self.root]
            except KeyError:
                value = ENV.undefined(self.root, hint=self.hint, token=self.token)
            else:
                for key in self.keys:  # else python-liquid decides (size/first/last, its Undefined)
                    if type(value) is not dict or key not in value:
                        raise _FallBack
                    value = value[key]
        for func, args, kwargs in self.filters:
            value = func(value, *args, **kwargs)
        return value if type(value) is str else to_liquid_string(value, False)


@dataclass(frozen=True)
class _Plan:
    """A template's nodes as text and :class:`_Output` steps."""

    steps: tuple[str | _Output, ...]

    def render(self, context: Mapping[str, Any]) -> str | None:
        """The rendered text, or None when python-liquid must render it."""
        context = context or {}  # as RenderContext takes its globals
        try:
            text = "".join([step if type(step) is str else step.text(context) for step in self.steps])
        except Exception:  # noqa: BLE001 - _FallBack, or an error python-liquid reports in its own words
            return None
        return text if len(text) <= PushTemplateEnvironment.output_stream_limit else None


def fast_plan(template: Any) -> _Plan | None:
    """A flat plan of a parsed python-liquid template, or None when it has
    anything but text and plain outputs (see the module docstring), or
    when the fast path is off (:data:`FAST_PATH`)."""
    if not FAST_PATH or ENV.autoescape:
        return None
    # Names python-liquid resolves before or after the globals.
    taken = set(template.make_partial_namespace(False, {})) | set(_liquid_builtin_names)
    steps: list[str | _Output] = []
    for node in template.nodes:
        if type(node) is ContentNode:
            steps.append(node.text)
        elif type(node) is OutputNode and type(node.expression) is FilteredExpression:
            output = _plan_output(node.expression, taken)
            if output is None:
                return None
            steps.append(output)
        else:
            return None
    return _Plan(tuple(steps))


def _plan_output(expr: FilteredExpression, taken: set[str]) -> _Output | None:
    left = expr.left
    if type(left) in _LITERALS:
        root, keys, value = None, (), _literal_value(left)
    elif type(left) is Path and all(type(s) is str for s in left.path) and left.path[0] not in taken:
        root, keys, value = left.path[0], tuple(left.path[1:]), None
    else:
        return None
    filters = []
    for f in expr.filters or ():
        func = ENV.filters.get(f.name)
        if f.name not in FAST_FILTERS or func is None or getattr(func, "with_context", False):
            return None
        if getattr(func, "with_environment", False):
            func = partial(func, environment=ENV)  # as RenderContext.filter binds it
        args, kwargs = [], {}
        for arg in f.args:
            if type(arg.value) not in _LITERALS:
                return None
            if type(arg) is KeywordArgument:
                kwargs[arg.name] = _literal_value(arg.value)
            elif type(arg) is PositionalArgument:
                args.append(_literal_value(arg.value))
            else:
                return None
        filters.append((func, tuple(args), kwargs))
    return _Output(root, keys, value, left.token, tuple(filters))


def _literal_value(expr: Any) -> Any:
    return None if type(expr) is Nil else expr.value


# ---------------------------------------------------------------- compiling
@dataclass(frozen=True)
class CompiledTemplate:
    """A template compiled once. Equal when the sources are equal."""

    source: str
    field: str = _field(default="", compare=False)
    template: Any = _field(default=None, compare=False, repr=False)  # None: static text
    plan: _Plan | None = _field(default=None, compare=False, repr=False)  # None: python-liquid renders it

    def render(self, context: Mapping[str, Any]) -> str:
        """Render with ``context`` (a dict of globals). Raises RenderError only."""
        if self.template is None:
            return self.source
        if self.plan is not None:
            text = self.plan.render(context)
            if text is not None:
                return text
        return self.render_with_liquid(context)

    def render_with_liquid(self, context: Mapping[str, Any]) -> str:
        """Render through python-liquid's AST (what the fast plan must equal)."""
        try:
            buf = _CappedBuffer()
            self.template.render_with_context(RenderContext(self.template, globals=context), buf)
            return buf.getvalue()
        except LiquidError as err:
            line = _error_line(err, self.source)
            raise RenderError(f"{self.field}: template error on line {line}: {_describe(err)}", self.field, line) from None
        except Exception as err:  # noqa: BLE001 - a template must never crash the pipeline
            raise RenderError(f"{self.field}: template error: {type(err).__name__}: {err}", self.field) from None


class _CappedBuffer(StringIO):
    """An output buffer that stops at ``output_stream_limit`` characters
    (python-liquid's own counts UTF-8 bytes, encoding every write)."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def write(self, text: str) -> int:
        self.size += len(text)
        if self.size > PushTemplateEnvironment.output_stream_limit:
            raise OutputStreamLimitError("output stream limit reached", token=None)
        return super().write(text)


def _describe(err: LiquidError) -> str:
    message = str(err.message)
    if err.token is None or err.token.start_index < 0:
        # No position: the parser ran off the end of the template (an unclosed block).
        message = message.replace("found end of expression", "found the end of the template")
    return message


def _error_line(err: LiquidError, source: str) -> int:
    """1-based line of a Liquid error; the last line when it has no position."""
    token = err.token
    if token is not None and token.start_index >= 0 and token.source:
        return token.source.count("\n", 0, token.start_index) + 1
    return source.count("\n") + 1


def compile_template(source: str, field_name: str) -> CompiledTemplate:
    """Compile a Liquid template; InvalidInput naming the field and line on error.

    >>> compile_template("Hi {{ first_name }}", "message.title").render({"first_name": "Ana"})
    'Hi Ana'
    """
    if "{{" not in source and "{%" not in source:
        return CompiledTemplate(source, field_name, None)
    try:
        template = ENV.from_string(source)
    except LiquidError as err:
        line = _error_line(err, source)
        raise InvalidInput(f"template error on line {line}: {_describe(err)}", field_name) from None
    except Exception as err:  # noqa: BLE001 - any parser failure is a bad template
        raise InvalidInput(f"template error: {err}", field_name) from None
    _check_filters(template, source, field_name)
    return CompiledTemplate(source, field_name, template, fast_plan(template))


def _check_filters(template: Any, source: str, field_name: str) -> None:
    """Unknown filters fail at save time, not at send time."""
    try:
        used = template.analyze().filters
    except Exception:  # noqa: BLE001 - analysis is a bonus; rendering still reports errors
        return
    for name, spans in used.items():
        if name not in ENV.filters:
            line = source.count("\n", 0, spans[0].index) + 1 if spans else source.count("\n") + 1
            raise InvalidInput(f"template error on line {line}: unknown filter '{name}'", field_name)


# ---------------------------------------------------------------- messages
@dataclass(frozen=True)
class MessageSpec:
    """A message: compiled title and body, optional deep link (a template too)."""

    title: CompiledTemplate
    body: CompiledTemplate
    deep_link: CompiledTemplate | None = None

    def to_json(self) -> dict:
        out = {"title": self.title.source, "body": self.body.source}
        if self.deep_link is not None:
            out["deep_link"] = self.deep_link.source
        return out


def finish_text(text: str, limit: int) -> str:
    """Strip, then cap at ``limit`` characters ending with "…", never splitting
    a character from its combining marks or an emoji sequence.

    >>> finish_text("  hello  ", 10), finish_text("abcdefghijkl", 5)
    ('hello', 'abcd…')
    """
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = limit - 1
    while cut > 0 and (_attaches(text[cut]) or text[cut - 1] == "\u200d"):
        cut -= 1
    return text[:cut].rstrip() + ELLIPSIS


def _attaches(ch: str) -> bool:
    """Whether ``ch`` belongs to the character before it."""
    code = ord(ch)
    return (
        unicodedata.combining(ch) != 0
        or code == 0x200D  # zero-width joiner
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0x1F3FB <= code <= 0x1F3FF  # skin tones
        or 0xE0020 <= code <= 0xE007F  # tag characters (flag sequences)
        or unicodedata.category(ch) in ("Mc", "Me")
    )


def render_message(
    message: MessageSpec,
    context: Mapping[str, Any],
    variant: str | None = None,
    fallback_link: CompiledTemplate | None = None,
) -> Rendered:
    """Render a message; RenderError on a template failure or an empty title/body.

    ``fallback_link`` is used when the message has no deep link of its own (a
    variant inherits the base message's link). A link that renders empty is None.
    """
    title = finish_text(message.title.render(context), TITLE_MAX)
    if not title:
        raise RenderError(f"{message.title.field}: the title rendered empty", message.title.field)
    body = finish_text(message.body.render(context), BODY_MAX)
    if not body:
        raise RenderError(f"{message.body.field}: the body rendered empty", message.body.field)
    link = message.deep_link if message.deep_link is not None else fallback_link
    deep_link = None
    if link is not None:
        deep_link = link.render(context).strip() or None
        if deep_link is not None and len(deep_link) > DEEP_LINK_MAX:
            field_name = link.field
            raise RenderError(f"{field_name}: the deep link is longer than {DEEP_LINK_MAX} characters", field_name)
    return Rendered(title, body, deep_link, variant)


# ---------------------------------------------------------------- context
def local_clock(now: float, tz_name: Any, fallback_tz: str | None) -> tuple[str, str, str]:
    """``("HH:MM", "YYYY-MM-DD", "Monday")`` at ``now`` in the device's zone
    (else the fallback zone, else UTC; invalid names fall through).

    >>> local_clock(1768537800.0, "America/Chicago", None)
    ('22:30', '2026-01-15', 'Thursday')
    """
    local = datetime.fromtimestamp(now, resolve_zone(tz_name, fallback_tz))
    return (
        f"{local.hour:02d}:{local.minute:02d}",
        f"{local.year:04d}-{local.month:02d}-{local.day:02d}",
        WEEKDAYS[local.weekday()],
    )


def coupon_context(coupon: Any) -> dict:
    """``coupon.*`` in templates (``coupon`` is a :class:`~chalicelib.push.coupons.Coupon`)."""
    return {
        "code": coupon.code,
        "percent_off": coupon.percent_off,
        "expires_at": iso(coupon.expires_at),
        "valid_hours": coupon.valid_hours,
    }


class TemplateGlobals(dict):
    """The globals of one render: a dict, whose costlier reserved values
    (``local_*``, ``coupon``, ``fence``) are computed on first lookup only
    (python-liquid reads globals with ``mapping[key]``, which reaches
    ``__missing__``). Most templates use one or two of them."""

    __slots__ = ("_now", "_tz", "_fallback_tz", "_coupon", "_fence")

    def __missing__(self, key: str) -> Any:
        if key in _CLOCK_NAMES:
            self["local_time"], self["local_date"], self["local_weekday"] = local_clock(
                self._now, self._tz, self._fallback_tz
            )
            return dict.__getitem__(self, key)
        if key == "coupon" and self._coupon is not None:
            value = self["coupon"] = coupon_context(self._coupon)
            return value
        if key == "fence" and self._fence is not None:
            value = self["fence"] = self._fence.to_liquid()
            return value
        raise KeyError(key)

    def resolved(self) -> dict:
        """A plain dict with every lazy value computed (for previews and tests)."""
        for key in ("local_time", "coupon", "fence"):
            try:
                self[key]
            except KeyError:
                pass
        return dict(self)


_CLOCK_NAMES = frozenset({"local_time", "local_date", "local_weekday"})


def template_context(
    attributes: Mapping[str, Any],
    trigger: Any,
    *,
    coupon: Any,
    now: float,
    arm: str | None,
    campaign: Mapping[str, Any],
    fallback_tz: str | None = None,
) -> TemplateGlobals:
    """The globals a template sees.

    Every device attribute at top level, then the reserved names (which win
    over attributes of the same name, present or not): ``attributes``,
    ``fence``, ``coupon``, ``alert``, ``weather`` (absent when the trigger
    has none), ``local_time``/``local_date``/``local_weekday`` (in the
    device's ``timezone`` attribute, else ``fallback_tz``, else UTC),
    ``campaign`` and ``arm``.
    """
    if RESERVED_NAMES.isdisjoint(attributes):
        ctx = TemplateGlobals(attributes)
    else:
        ctx = TemplateGlobals((k, v) for k, v in attributes.items() if k not in RESERVED_NAMES)
    ctx._now, ctx._tz, ctx._fallback_tz, ctx._coupon = now, attributes.get("timezone"), fallback_tz, coupon
    ctx._fence = None
    ctx["attributes"] = attributes
    ctx["campaign"] = campaign
    if arm is not None:
        ctx["arm"] = arm
    if trigger is not None:
        ctx._fence = trigger.fence
        if trigger.alert is not None:
            ctx["alert"] = trigger.alert
        if trigger.weather is not None:
            ctx["weather"] = trigger.weather
    return ctx
