"""Render failures, and the reason a failure reports (never a value from the context)."""

from __future__ import annotations

from typing import Any

import jinja2
from jinja2.exceptions import SecurityError


class TemplateError(Exception):
    """A template could not be rendered; ``str()`` says which template, where and why.

    The reason never contains values from the render context.
    """

    def __init__(self, template: str, line: int | None, reason: str) -> None:
        self.template = template
        self.line = line
        self.reason = reason
        where = f"template {template!r}" + (f" line {line}" if line is not None else "")
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (TemplateError, (self.template, self.line, self.reason))


class BoundExceeded(Exception):
    """Raised inside the sandbox when a bound is hit; becomes :class:`TemplateError`."""


def line_from_traceback(exc: BaseException, filename: str) -> int | None:
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def reason(exc: BaseException) -> str:
    if isinstance(exc, BoundExceeded):
        return str(exc)
    if isinstance(exc, RecursionError):
        return "recursion too deep (Python recursion limit)"
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, OverflowError) and "MAX_RANGE" in str(exc):
        return f"range too big: {exc} (range limit)"
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"syntax error: {exc.message}"
    if isinstance(exc, SecurityError):
        return f"not allowed in the sandbox: {exc}"
    if isinstance(exc, jinja2.UndefinedError):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
