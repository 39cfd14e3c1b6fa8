"""The hardened python-liquid environment push texts are compiled and
rendered in: no partials (``include``/``render``), ``default`` that also
replaces whitespace-only strings, and resource limits on loops, output, and
every value a filter takes or returns (``replace``/``join`` checked before
they run). Pure (no I/O)."""

from __future__ import annotations

from functools import wraps
from typing import Any, Callable

from liquid import Environment
from liquid.builtin.filters.misc import default as _liquid_default
from liquid.exceptions import FilterValueError, LiquidError
from liquid.filter import liquid_filter




#: Limits on any one value a filter takes or returns.
MAX_TEXT = 20_000  # characters in a string
MAX_ITEMS = 20_000  # items in an array or range
MAX_LIST_TEXT = 100_000  # characters in all the strings of one array
MAX_INT_BITS = 10_000


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


