"""Fast path. Most push texts are text and ``{{ path.to.var | filter: literal
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
is python-liquid's, with its line), and output over the stream limit. The
plan renders inside a render budget of its own and calls the same guarded
filters, so a template whose filters use up the budget falls back, and
python-liquid stops it with the same error: the fast path never renders
what the budget refuses.
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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any, Mapping

import liquid
from liquid.builtin.content import ContentNode
from liquid.builtin.expressions import FilteredExpression, KeywordArgument, Nil, Path, PositionalArgument
from liquid.builtin.expressions.primitive import FalseLiteral, FloatLiteral, IntegerLiteral, StringLiteral, TrueLiteral
from liquid.builtin.output import OutputNode
from liquid.context import builtin as _liquid_builtin_names
from liquid.stringify import to_liquid_string

from chalicelib.push.liquid_env import ENV, PushTemplateEnvironment, RenderBudget

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
            with RenderBudget():  # the same filters, charged as python-liquid's render charges them
                text = "".join([step if isinstance(step, str) else step.text(context) for step in self.steps])
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
    root: str | None
    keys: tuple[str, ...]
    if type(left) in _LITERALS:
        root, keys, value = None, (), _literal_value(left)
    elif type(left) is Path and all(type(s) is str for s in left.path) and left.path[0] not in taken:
        names = [str(s) for s in left.path]
        root, keys, value = names[0], tuple(names[1:]), None
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


