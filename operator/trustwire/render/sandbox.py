"""The sandboxed environment whose hooks enforce one render's :class:`Budget`.

The hooks are the public sandbox API (``call``, ``call_binop`` with ``intercepted_binops``,
``getattr``, ``getitem``) plus a rewrite of the parsed template that routes every ``for``
iterable, every output expression and every ``~`` concatenation through an internal filter
whose name cannot be written in a template.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

from jinja2 import StrictUndefined, nodes, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from trustwire.render.budget import WORK_FACTOR, Budget
from trustwire.render.errors import BoundExceeded
from trustwire.render.filters import OWN_FILTERS
from trustwire.render.prechecks import check_join, check_percent_format, precheck_filter, precheck_method

# Internal names. Filter names contain ':' so a template cannot spell them; the
# variable name is a valid identifier (the compiler turns it into a Python local).
SELF_VAR = "_trustwire_self"
_ITER_FILTER = "trustwire:iter"
_EMIT_FILTER = "trustwire:emit"
_CONCAT_FILTER = "trustwire:concat"


def _guard_filter(budget: Budget, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter: clock check, amplifier pre-checks, bounded result.

    ``functools.wraps`` copies ``jinja_pass_arg``, so filters that receive the context,
    eval context or environment keep receiving it as their first argument; the value
    comes right after it.
    """
    skip = 0 if getattr(func, "jinja_pass_arg", None) is None else 1  # set by pass_context & co.
    what = f"filter {name!r}"

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget.tick()
        if len(args) > skip:
            value = precheck_filter(budget, name, args[skip], args[skip + 1 :], kwargs)
            args = (*args[:skip], value, *args[skip + 1 :])
        return budget.check_result(what, func(*args, **kwargs))

    return guarded


class Sandbox(ImmutableSandboxedEnvironment):
    """Immutable sandbox whose hooks enforce one render's :class:`Budget`."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, budget: Budget) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            loader=None,
        )
        self.budget = budget
        self.globals.pop("lipsum", None)
        self.filters.update(OWN_FILTERS)
        self.filters = {name: _guard_filter(budget, name, func) for name, func in self.filters.items()}
        self.filters[_ITER_FILTER] = _iter_filter(budget)
        self.filters[_EMIT_FILTER] = _emit_filter(budget)
        self.filters[_CONCAT_FILTER] = _concat_filter(budget)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = __self.budget
        budget.tick()
        args = precheck_method(budget, __obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        return budget.check_result("call result", result)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = self.budget
        budget.tick()
        what = f"'{operator}'"
        if operator == "*":
            seq, times = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(times, int) and not isinstance(times, bool):
                if isinstance(seq, str | bytes | list | tuple):
                    unit = budget.deep_size(seq, budget.max_bytes)
                    budget.check_size(what, unit * max(0, times))
                elif isinstance(seq, int) and not isinstance(seq, bool):
                    budget.check_size(what, (seq.bit_length() + times.bit_length()) // 8)
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                budget.check_size(what, int(right * math.log2(abs(left)) // 8))
        elif operator == "+":
            if isinstance(left, str | bytes | list | tuple) and type(left) is type(right):
                budget.check_size(
                    what,
                    budget.deep_size(left, budget.max_bytes) + budget.deep_size(right, budget.max_bytes),
                )
        elif operator == "%" and isinstance(left, str):
            check_percent_format(budget, left, right)
        result = super().call_binop(context, operator, left, right)
        return budget.check_result(what, result)

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.budget.tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.budget.tick()
        return super().getitem(obj, argument)


# The internal filters below are inserted by Rewrite. They receive the context only so
# that Jinja never constant-folds them at compile time.


def _iter_filter(budget: Budget) -> Callable[..., Any]:
    @pass_context
    def iterate(_context: Context, iterable: Any, line: int) -> Iterator[Any]:
        budget.line = line
        budget.tick()
        for item in iterable:
            budget.tick()
            yield item

    return iterate


def _emit_filter(budget: Budget) -> Callable[..., Any]:
    @pass_context
    def emit(_context: Context, value: Any, line: int) -> str:
        budget.line = line
        budget.tick()
        text = value if isinstance(value, str) else None
        if text is None:
            budget.check_flat("output expression", value)
            text = str(value)
        budget.work += len(text)
        if budget.work > budget.work_limit:
            raise BoundExceeded(
                f"templates emitted more than {budget.work_limit} characters in total, counting text "
                f"captured by macros and blocks (work limit: {WORK_FACTOR} x the output size limit of "
                f"{budget.max_bytes} bytes)"
            )
        return text

    return emit


def _concat_filter(budget: Budget) -> Callable[..., Any]:
    @pass_context
    def concat(_context: Context, values: list[Any]) -> str:
        budget.tick()
        check_join(budget, "'~'", "", values)
        return "".join(str(v) for v in values)

    return concat


class Rewrite(NodeTransformer):
    """Route ``self``, loops, outputs and ``~`` through the sandbox's bookkeeping."""

    def visit_Name(self, node: nodes.Name) -> nodes.Node:
        if node.name == "self":
            node.name = SELF_VAR
        return node

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _internal_filter(node.iter, _ITER_FILTER, node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(
            nodes.List(node.nodes, lineno=node.lineno), _CONCAT_FILTER, [], [], None, None, lineno=node.lineno
        )

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [
            _internal_filter(
                nodes.Const(child.data, lineno=child.lineno)
                if isinstance(child, nodes.TemplateData)
                else child,
                _EMIT_FILTER,
                child.lineno,
            )
            for child in node.nodes
        ]
        return node


def _internal_filter(node: nodes.Node, name: str, line: int) -> nodes.Filter:
    return nodes.Filter(node, name, [nodes.Const(line, lineno=line)], [], None, None, lineno=line)
