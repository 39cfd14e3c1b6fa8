"""The render budget, checked when a campaign is saved, as far as it can be
seen without rendering. Pure (no I/O).

:mod:`chalicelib.push.liquid_env` enforces the budget while a template
renders; this module reads the parsed template and refuses, at save, what
would break it whatever the device:

* a range literal ``(a..b)`` with literal bounds over :data:`MAX_RANGE` items;
* loops whose literal lengths nest past python-liquid's
  ``loop_iteration_limit`` (product over a nest);
* a template whose loops and filters need more than :data:`RENDER_STEPS`
  steps on what is known before rendering: loops over range literals (with
  literal ``limit``/``offset``), filters over range or string literals.

Anything else counts as the least it could cost (a loop over a variable
counts as one pass, a filter of a variable one step), and every branch of an
``if`` counts as taken: a lower bound, so the check never refuses a template
that could render within the budget on every path that contains it. The
render enforces the rest.
"""

from __future__ import annotations

from typing import Any

from liquid import BoundTemplate, RenderContext
from liquid.ast import Node
from liquid.builtin.expressions import FilteredExpression
from liquid.builtin.expressions.loop import LoopExpression
from liquid.builtin.expressions.primitive import FloatLiteral, IntegerLiteral, RangeLiteral, StringLiteral
from liquid.builtin.tags.for_tag import ForNode
from liquid.builtin.tags.tablerow_tag import TablerowNode
from liquid.expression import Expression
from liquid.limits import to_int

from chalicelib.push.liquid_env import (
    MAX_RANGE,
    RENDER_STEPS,
    TEXT_PER_STEP,
    PushTemplateEnvironment,
    RenderBudgetError,
    block_weight,
)

_NUMBERS = (IntegerLiteral, FloatLiteral, StringLiteral)


def _literal_int(expr: Expression | None) -> int | None:
    if expr is None or type(expr) not in _NUMBERS:
        return None
    try:
        return to_int(expr.value)  # type: ignore[attr-defined]
    except (ValueError, TypeError):
        return None


def range_size(expr: RangeLiteral) -> int | None:
    """Items in a range literal with literal bounds (python-liquid's rule), else None."""
    start, stop = _literal_int(expr.start), _literal_int(expr.stop)
    if start is None or stop is None:
        return None
    return max(0, stop - start + 1)


def loop_passes(expr: LoopExpression) -> int | None:
    """Passes of a ``for``/``tablerow`` known before rendering, else None
    (the slice python-liquid's ``LoopExpression`` takes)."""
    iterable = expr.iterable
    if isinstance(iterable, RangeLiteral):
        length = range_size(iterable)
    elif type(iterable) is StringLiteral:
        length = 1 if iterable.value else 0
    else:
        length = None
    if length is None:
        return None
    offset: int | None = 0
    if expr.offset is not None:
        offset = _literal_int(expr.offset) if type(expr.offset) is not StringLiteral or expr.offset.value != "continue" else None
    limit = _literal_int(expr.limit)
    if offset is None or (expr.limit is not None and limit is None):
        return None
    start = min(max(offset, 0), length)
    stop = None if limit is None else limit + start
    return max(min(stop or length, length) - start, 0)


class _Estimate:
    """A walk over the parse tree adding up the steps it can see."""

    def __init__(self, template: BoundTemplate) -> None:
        self.static_context = RenderContext(template)
        self.steps = 0

    def add(self, steps: int, construct: str, token: Any) -> None:
        self.steps += steps
        if self.steps > RENDER_STEPS:
            raise RenderBudgetError(
                f"render budget exceeded: '{construct}' brings the loops and filters to at least "
                f"{self.steps:,} steps (at most {RENDER_STEPS:,})",
                token=token,
            )

    def node(self, node: Node, passes: int) -> None:
        for top in node.expressions():
            self.expression(top, passes)
        children = list(node.children(self.static_context, include_partials=False))
        if isinstance(node, (ForNode, TablerowNode)):
            known = loop_passes(node.expression)
            inner = passes * (1 if known is None else known)
            limit = PushTemplateEnvironment.loop_iteration_limit
            if limit is not None and inner > limit:
                raise RenderBudgetError(
                    f"'{node.token.value} {node.expression}' runs {inner:,} passes inside its loops (at most {limit:,})",
                    token=node.token,
                )
            weight = getattr(node.block, "weight", None) or max(1, block_weight(node.block, self.static_context) - 1)
            self.add(inner * weight, f"{node.token.value} {node.expression}", node.token)
            for child in node.block.nodes:
                self.node(child, inner)
            children = [c for c in children if c is not node.block]
        for child in children:
            self.node(child, passes)

    def expression(self, expr: Expression, passes: int) -> None:
        if isinstance(expr, RangeLiteral):
            size = range_size(expr)
            if size is not None and size > MAX_RANGE:
                raise RenderBudgetError(
                    f"the range {expr} has {size:,} items; a range has at most {MAX_RANGE:,}", token=expr.token
                )
        for child in expr.children():
            self.expression(child, passes)
        filters = getattr(expr, "filters", None)
        if isinstance(expr, FilteredExpression) and filters:
            self.add(passes * (len(filters) + _literal_cost(expr.left)), str(expr), expr.token)
        elif filters:  # a ternary's trailing filters
            self.add(passes * len(filters), str(expr), expr.token)


def _literal_cost(expr: Expression) -> int:
    if isinstance(expr, RangeLiteral):
        return range_size(expr) or 0
    if type(expr) is StringLiteral:
        return len(expr.value) // TEXT_PER_STEP
    return 0


def check_budget(template: BoundTemplate) -> None:
    """Raise :class:`RenderBudgetError` (with the token of the construct) when
    the template cannot render within the budget, as far as can be seen."""
    estimate = _Estimate(template)
    for node in template.nodes:
        estimate.node(node, 1)
