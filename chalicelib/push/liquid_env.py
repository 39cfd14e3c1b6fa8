"""The hardened python-liquid environment push texts are compiled and
rendered in: no partials (``include``/``render``), ``default`` that also
replaces whitespace-only strings, resource limits on loops, output, and
every value a filter takes or returns (``replace``/``join`` checked before
they run), and one **render budget** per template render. Pure (no I/O).

The render budget (:data:`RENDER_STEPS` steps) is shared by everything that
repeats or scales with its input, across the whole template, so sequential
loops and filters add up:

* each pass through a ``for``/``tablerow`` body costs the body's size (its
  nodes and expressions, :func:`block_weight`), at least 1;
* each filter call costs 1, plus one per item of an array, range or
  mapping, plus one per 100 characters of a string, that it takes or
  returns (the input is charged before the filter runs);
* a range literal ``(a..b)`` may have at most :data:`MAX_RANGE` items (its
  evaluation raises before anything iterates it; ``reversed`` would build
  the list first).

python-liquid's own limits stay on top: :attr:`PushTemplateEnvironment.loop_iteration_limit`
(per loop nest), ``output_stream_limit``, ``local_namespace_limit``,
``context_depth_limit``. A budget is opened by every render of a template of
this environment (:class:`PushTemplate`) and by the fast plan
(:mod:`chalicelib.push.render_plan`), which calls the same guarded filters,
so the fast path stops where python-liquid stops. What can be seen without
rendering is checked at save by :mod:`chalicelib.push.template_budget`.
"""

from __future__ import annotations

from contextvars import ContextVar
from functools import wraps
from typing import Any, Callable, Iterable, TextIO

from liquid import BoundTemplate, Environment, RenderContext
from liquid.ast import BlockNode, Node
from liquid.builtin.expressions.primitive import RangeLiteral
from liquid.builtin.filters.misc import default as _liquid_default
from liquid.builtin.tags.for_tag import ForNode
from liquid.builtin.tags.tablerow_tag import TablerowNode
from liquid.exceptions import FilterValueError, LiquidError, ResourceLimitError
from liquid.expression import Expression
from liquid.filter import liquid_filter

#: Limits on any one value a filter takes or returns.
MAX_TEXT = 20_000  # characters in a string
MAX_ITEMS = 20_000  # items in an array
MAX_LIST_TEXT = 100_000  # characters in all the strings of one array
MAX_INT_BITS = 10_000
#: Items in a range literal ``(a..b)``, and in a range a filter takes or returns.
MAX_RANGE = 1_000
#: Steps one render of one template may take (loop passes and filter work).
RENDER_STEPS = 10_000
#: Characters of a string that cost one step when a filter takes or returns it.
TEXT_PER_STEP = 100


# ---------------------------------------------------------------- the budget
class RenderBudgetError(ResourceLimitError):
    """The template used up its render budget, or built a range over :data:`MAX_RANGE`."""


class RenderBudget:
    """The steps one render has left; :meth:`charge` raises once they run out.

    ``with RenderBudget():`` makes it the running render's budget (the guarded
    filters and loop bodies charge it); nested renders each get their own."""

    __slots__ = ("left", "_token")

    def __init__(self, steps: int = RENDER_STEPS) -> None:
        self.left = steps

    def charge(self, steps: int, token: Any = None) -> None:
        self.left -= steps
        if self.left < 0:
            raise RenderBudgetError(
                f"render budget limit reached ({RENDER_STEPS:,} steps of loops and filters)", token=token
            )

    def __enter__(self) -> RenderBudget:
        self._token = _BUDGET.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _BUDGET.reset(self._token)


#: The budget of the render running in this thread (None: no render, nothing charged).
_BUDGET: ContextVar[RenderBudget | None] = ContextVar("hexcast_render_budget", default=None)


def charge(steps: int, token: Any = None) -> None:
    """Charge the running render's budget (nothing outside a render)."""
    budget = _BUDGET.get()
    if budget is not None:
        budget.charge(steps, token)


def expression_weight(expr: Expression) -> int:
    """Elements in an expression tree."""
    return 1 + sum(expression_weight(child) for child in expr.children())


def block_weight(node: Node, static_context: RenderContext) -> int:
    """The size of a node's subtree: its nodes and the elements of their expressions."""
    return (
        1
        + sum(expression_weight(e) for e in node.expressions())
        + sum(block_weight(child, static_context) for child in node.children(static_context, include_partials=False))
    )


class _ChargedBlock(BlockNode):
    """A loop body that charges its weight to the budget on every pass."""

    __slots__ = ("weight", "loop_token")

    def __init__(self, block: BlockNode, weight: int, loop_token: Any) -> None:
        super().__init__(block.token, block.nodes)
        self.weight = max(1, weight - 1)  # the block node itself is free
        self.loop_token = loop_token

    def render(self, context: RenderContext, buffer: TextIO) -> int:
        charge(self.weight, self.loop_token)
        return super().render(context, buffer)

    async def render_async(self, context: RenderContext, buffer: TextIO) -> int:
        charge(self.weight, self.loop_token)
        return await super().render_async(context, buffer)


class _CappedRange(RangeLiteral):
    """``(a..b)`` that refuses to build more than :data:`MAX_RANGE` items."""

    __slots__ = ()

    def _make_range(self, start: Any, stop: Any) -> range:
        made = super()._make_range(start, stop)
        if len(made) > MAX_RANGE:
            raise RenderBudgetError(
                f"a range has at most {MAX_RANGE:,} items, ({made.start}..{made.stop - 1}) has {len(made):,}: range limit reached",
                token=self.token,
            )
        return made


def _expressions(expr: Expression) -> Iterable[Expression]:
    yield expr
    for child in expr.children():
        yield from _expressions(child)


def _harden(node: Node, static_context: RenderContext) -> None:
    """Cap every range literal, and charge every loop body, under ``node``."""
    for top in node.expressions():
        for expr in _expressions(top):
            if type(expr) is RangeLiteral:
                expr.__class__ = _CappedRange  # same layout: the parsed literal, capped
    if isinstance(node, (ForNode, TablerowNode)) and type(node.block) is not _ChargedBlock:
        node.block = _ChargedBlock(node.block, block_weight(node.block, static_context), node.token)
    for child in node.children(static_context, include_partials=False):
        _harden(child, static_context)


class PushTemplate(BoundTemplate):
    """A template of :class:`PushTemplateEnvironment`: hardened once when
    parsed, and every render runs inside a fresh :class:`RenderBudget`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        static_context = RenderContext(self)
        for node in self.nodes:
            _harden(node, static_context)

    def render_with_context(self, context: RenderContext, buffer: TextIO, *args: Any, **kwargs: Any) -> None:
        with RenderBudget():
            super().render_with_context(context, buffer, *args, **kwargs)

    async def render_with_context_async(self, context: RenderContext, buffer: TextIO, *args: Any, **kwargs: Any) -> None:
        with RenderBudget():
            await super().render_with_context_async(context, buffer, *args, **kwargs)


# ---------------------------------------------------------------- environment
class PushTemplateEnvironment(Environment):
    """python-liquid, strict, no autoescape, with resource limits.

    Limits (python-liquid class attributes): at most 1,000 loop iterations
    (product over nested loops), 20,000 characters of output per template,
    ~50 kB of assigned values, 20 levels of block nesting; and the render
    budget above, across the whole template.
    """

    template_class = PushTemplate

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


def _check_size(value: Any) -> int:
    """Raise when a filter's input or output is bigger than the limits;
    else → its cost in budget steps (items, or characters / 100)."""
    kind = type(value)
    if kind is str:
        if len(value) > MAX_TEXT:
            raise _size_error("a string")
        return len(value) // TEXT_PER_STEP
    if kind is list or kind is tuple:
        if len(value) > MAX_ITEMS:
            raise _size_error("an array")
        if sum(len(x) for x in value if type(x) is str) > MAX_LIST_TEXT:
            raise _size_error("an array")
        return len(value)
    if kind is range:
        if len(value) > MAX_RANGE:
            raise _size_error("a range")
        return len(value)
    if kind is dict:
        return len(value)
    if kind is int and value.bit_length() > MAX_INT_BITS:
        raise _size_error("a number")
    return 0


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
    """Wrap a filter with size checks on its arguments and its result, and
    charge the render budget for both (the arguments before it runs)."""
    precheck = _PRECHECKS.get(name)

    @wraps(func)  # keeps with_context / with_environment flags
    def guarded(val: Any, *args: Any, **kwargs: Any) -> Any:
        steps = 1 + _check_size(val)
        for arg in args:
            steps += _check_size(arg)
        budget = _BUDGET.get()
        if budget is not None:
            budget.charge(steps)
        if precheck is not None:
            precheck(val, *args)
        result = func(val, *args, **kwargs)
        steps = _check_size(result)
        if steps and budget is not None:
            budget.charge(steps)
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


