"""Liquid templates for push texts: one hardened python-liquid environment,
compile-at-save, and cheap rendering. Pure (no I/O).

- Templates are compiled when a campaign is saved (:func:`compile_template`);
  a syntax error or an unknown filter is an ``InvalidInput`` naming the field
  and the line (``template error on line 2: ...``).
- ``default`` also replaces whitespace-only strings (Liquid's does not).
- ``include`` / ``render`` are not available (no partials: a push text is
  one template), and resource limits stop a hostile template from looping or
  growing memory: one render budget per render for loop passes and filter
  work across the whole template, range literals of at most 1,000 items,
  output size, assigned-variable size, and the size of anything a filter
  takes or returns (``replace``/``join`` are checked before they run, so
  ``{{ s | replace: "", big }}`` never allocates). What the parse tree shows
  is refused at save (:func:`~chalicelib.push.template_budget.check_budget`).
- Rendering never raises anything but :class:`RenderError`.
- A deep link takes at most ``DEEP_LINK_MAX_BYTES`` in the push payload
  (a static one is checked at save, :func:`check_deep_link_size`); title
  and body are cut further to fit the payload when it is built
  (:func:`chalicelib.push.payloads.fit_message`).

The flat plan that renders most push texts without python-liquid's render
context is :mod:`chalicelib.push.render_plan`; the hardened environment
is :mod:`chalicelib.push.liquid_env`.

Measured (``tests/unit/test_render.py::bench``: the README's example body
with ``default``, ``downcase`` and a coupon, a static title and deep link;
Python 3.11, one core): ~130,000 ``Campaign.render`` calls/s, ~7.5 µs each,
context included (~48,000/s, ~21 µs, through python-liquid's render). A
static title costs nothing (no Liquid run), and the costlier context values
(local clock, coupon, fence) are only computed when a template reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as _field
from datetime import datetime
from io import StringIO
from typing import Any, Mapping

from liquid.context import RenderContext
from liquid.exceptions import LiquidError, OutputStreamLimitError

from chalicelib.errors import InvalidInput
from chalicelib.push.liquid_env import ENV, PushTemplateEnvironment
from chalicelib.push.model import RenderError  # noqa: F401 (re-exported; defined apart from Liquid)
from chalicelib.push.payloads import DEEP_LINK_MAX_BYTES, encoded_size
from chalicelib.push.quiet import resolve_zone
from chalicelib.push.render_plan import _Plan, fast_plan
from chalicelib.push.template_budget import check_budget
from chalicelib.push.template_check import describe, error_line, problem, syntax_problems
from chalicelib.push.textcut import ELLIPSIS, shorten  # noqa: F401 - ELLIPSIS: what texts are cut with
from chalicelib.timeutil import iso

TITLE_MAX = 200
BODY_MAX = 1500

#: Context names that templates get from the campaign/trigger, never from device attributes.
RESERVED_NAMES = frozenset(
    {"attributes", "fence", "coupon", "alert", "weather", "local_time", "local_date", "local_weekday", "campaign", "arm"}
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Rendered:
    """A rendered push text, ready for the gateway."""

    title: str
    body: str
    deep_link: str | None
    variant: str | None


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
            line = error_line(err, self.source)
            raise RenderError(f"{self.field}: template error on line {line}: {describe(err)}", self.field, line) from None
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


def compile_template(source: str, field_name: str) -> CompiledTemplate:
    """Compile a Liquid template; InvalidInput naming the field and the
    line of the first error, with every error of the template in ``errors``
    (:func:`~chalicelib.push.template_check.syntax_problems`).

    >>> compile_template("Hi {{ first_name }}", "message.title").render({"first_name": "Ana"})
    'Hi Ana'
    """
    if "{{" not in source and "{%" not in source:
        return CompiledTemplate(source, field_name, None)
    problems, template = syntax_problems(source, field_name)
    if problems:
        raise InvalidInput(problems[0]["message"], field_name, errors=problems)
    try:
        check_budget(template)
    except LiquidError as err:
        line = error_line(err, source)
        message = f"template error on line {line}: {describe(err)}"
        raise InvalidInput(message, field_name, errors=[problem(field_name, message, line)]) from None
    return CompiledTemplate(source, field_name, template, fast_plan(template))


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
    a character from its combining marks, an emoji sequence or a flag.

    >>> finish_text("  hello  ", 10), finish_text("abcdefghijkl", 5)
    ('hello', 'abcd…')
    """
    text = text.strip()
    if len(text) <= limit:
        return text
    return shorten(text, limit - 1)


def check_deep_link_size(link: CompiledTemplate) -> None:
    """A static deep link that cannot fit a payload is refused at save
    (a template is checked when it renders)."""
    if link.template is None:
        size = encoded_size(link.source.strip())
        if size > DEEP_LINK_MAX_BYTES:
            raise InvalidInput(
                f"a deep link takes at most {DEEP_LINK_MAX_BYTES:,} bytes in the push payload "
                f"(UTF-8, JSON-escaped); this one takes {size:,}",
                link.field,
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
        if deep_link is not None and encoded_size(deep_link) > DEEP_LINK_MAX_BYTES:
            field_name = link.field
            raise RenderError(
                f"{field_name}: the deep link takes more than {DEEP_LINK_MAX_BYTES:,} bytes in the push payload", field_name
            )
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
    _now: float
    _tz: Any
    _fallback_tz: str | None
    _coupon: Any
    _fence: Any

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

