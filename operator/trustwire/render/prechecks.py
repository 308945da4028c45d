"""Pre-checks for operations whose result can be far larger than their inputs.

Each check runs before the operation allocates and raises through the :class:`Budget`
when the result would pass a bound.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterable, Iterator
from typing import Any

from jinja2.exceptions import SecurityError

from trustwire.render.budget import Budget

_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMAT_FIELD = re.compile(r"\{[^{}]*\}")
_DIGITS = re.compile(r"\d+")
_NESTED_FIELD = re.compile(r"\{[^{}]*:[^{}]*\{")


def _ints_in(args: Iterable[Any]) -> Iterator[int]:
    for arg in args:
        if isinstance(arg, bool):
            continue
        if isinstance(arg, int):
            yield arg
        elif isinstance(arg, tuple | list):
            yield from (a for a in arg if isinstance(a, int) and not isinstance(a, bool))
        elif isinstance(arg, dict):
            yield from (a for a in arg.values() if isinstance(a, int) and not isinstance(a, bool))


def check_int_args(budget: Budget, what: str, args: Iterable[Any]) -> None:
    for number in _ints_in(args):
        if abs(number) > budget.max_bytes:
            budget.too_big(what, abs(number))


def check_percent_format(budget: Budget, fmt: str, args: Any) -> None:
    for match in _PERCENT_SPEC.finditer(fmt):
        for group in match.groups():
            if group is None:
                continue
            if group == "*":
                check_int_args(budget, "'%' formatting", [args])
            elif int(group) > budget.max_bytes:
                budget.too_big("'%' formatting", int(group))


def _check_brace_format(budget: Budget, fmt: str, args: Iterable[Any]) -> None:
    for match in _FORMAT_FIELD.finditer(fmt):
        _, _, spec = match.group(0)[1:-1].partition(":")
        for digits in _DIGITS.findall(spec):
            if int(digits) > budget.max_bytes:
                budget.too_big("str.format", int(digits))
    # Nested fields ("{:{}}") take their width from an argument; only then are the
    # arguments widths (formatting 3600000 itself is fine).
    if _NESTED_FIELD.search(fmt):
        check_int_args(budget, "str.format", args)


def check_replace(budget: Budget, what: str, text: Any, old: Any, new: Any, count: Any) -> None:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    budget.check_size(what, len(text) + hits * max(0, len(new) - len(old)))


def check_join(budget: Budget, what: str, sep: Any, items: list[Any]) -> None:
    sep_len = len(sep) if isinstance(sep, str) else 0
    total = sep_len * max(0, len(items) - 1)
    for item in items:
        total += budget.deep_size(item, budget.max_bytes)
        if total > budget.max_bytes:
            budget.too_big(what, total)


_STR_WIDTH_METHODS = frozenset({"ljust", "rjust", "center", "zfill"})
_REFUSED_METHODS = frozenset({"translate"})  # a table can map each character to a large string


def precheck_method(
    budget: Budget, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """Pre-check calls of amplifying ``str`` methods; returns possibly materialized args."""
    bound = getattr(func, "__wrapped__", func)  # the sandbox wraps str.format
    owner = getattr(bound, "__self__", None)
    name = getattr(bound, "__name__", "")
    if not isinstance(owner, str | bytes) or not isinstance(
        bound, types.BuiltinMethodType | types.MethodType
    ):
        return args
    what = f"{type(owner).__name__}.{name}"
    if name in _REFUSED_METHODS:
        raise SecurityError(f"{what} is not available in templates")
    if name in _STR_WIDTH_METHODS:
        check_int_args(budget, what, args[:1] or list(kwargs.values()))
    elif name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
        if isinstance(tabsize, int):
            budget.check_size(what, len(owner) + max(0, tabsize) * tabs)
    elif name == "replace" and isinstance(owner, str):
        check_replace(budget, what, owner, *(*args, None, None, -1)[:3])
    elif name == "join":
        if args:
            items = list(budget.materialize(what, args[0]))
            check_join(budget, what, owner, items)
            return (items, *args[1:])
    elif name in ("format", "format_map") and isinstance(owner, str):
        _check_brace_format(budget, owner, list(args) + list(kwargs.values()))
    return args


# Filters whose first argument after the value is a count of things to produce.
_WIDTH_FILTERS = frozenset({"center", "batch", "slice"})
# Filters that consume their whole input: a lazy input is materialized under the bound first.
_CONSUMING_FILTERS = frozenset(
    {"join", "list", "sum", "unique", "sort", "reverse", "batch", "slice", "string", "tojson", "pprint"}
)


def precheck_filter(
    budget: Budget, name: str, value: Any, rest: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Refuse amplifying filter calls before they run; returns the (materialized) value."""
    what = f"filter {name!r}"
    if name in _CONSUMING_FILTERS:
        value = budget.materialize(what, value)
    if name in _WIDTH_FILTERS:
        check_int_args(budget, what, list(rest[:1]) + list(kwargs.values()))
    if name == "join" and "attribute" not in kwargs and len(rest) < 2:
        # (with attribute=, the items are whole objects; the joined text is checked afterwards)
        sep = rest[0] if rest else kwargs.get("d", "")
        check_join(budget, what, sep, list(value) if isinstance(value, list | tuple) else [])
    elif name == "replace" and isinstance(value, str):
        old, new, count = (*rest, None, None, None)[:3]
        check_replace(
            budget, what, value, kwargs.get("old", old), kwargs.get("new", new), kwargs.get("count", count)
        )
    elif name == "indent" and isinstance(value, str):
        width = rest[0] if rest else kwargs.get("width", 4)
        if isinstance(width, int) and not isinstance(width, bool):
            check_int_args(budget, what, [width])
            width = " " * width
        if isinstance(width, str):
            budget.check_size(what, len(value) + len(width) * (value.count("\n") + 1))
    elif name == "wordwrap" and isinstance(value, str):
        width = rest[0] if rest else kwargs.get("width", 79)
        wrap = rest[2] if len(rest) > 2 else kwargs.get("wrapstring", "\n")
        if isinstance(width, int) and isinstance(wrap, str):
            budget.check_size(what, len(value) + (len(value) // max(1, width) + 1) * len(wrap))
    elif name == "format" and isinstance(value, str):
        check_percent_format(budget, value, rest or tuple(kwargs.values()))
    return value
