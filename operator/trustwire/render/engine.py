"""Render one template: compile it in a fresh sandbox, stream it under the output cap."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping
from typing import Any, cast

import jinja2

from trustwire.render.budget import MAX_OUTPUT_BYTES, MAX_SOURCE_BYTES, Budget
from trustwire.render.errors import TemplateError, line_from_traceback, reason
from trustwire.render.redact import redact
from trustwire.render.sandbox import SELF_VAR, Rewrite, Sandbox


def render_template(
    name: str,
    source: str,
    context: Mapping[str, Any],
    *,
    max_output_bytes: int = MAX_OUTPUT_BYTES,
    time_budget: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Render ``source`` (named ``name`` in errors) with ``context`` inside the sandbox.

    Raises :class:`TemplateError` for every failure; see the module docstring for the
    context contract, the filters and the bounds.
    """
    source_bytes = len(source.encode("utf-8"))
    if source_bytes > MAX_SOURCE_BYTES:
        raise TemplateError(
            name,
            None,
            f"source is {source_bytes} bytes, above the source size limit of {MAX_SOURCE_BYTES} bytes",
        )
    budget = Budget(max_output_bytes, time_budget, clock)
    # A filename no real Python module can have: it identifies this template's frames.
    filename = f"<trustwire template {name!r}>"
    variables = dict(context)
    identity = context.get("self", context.get("identity"))
    if identity is not None:
        variables[SELF_VAR] = identity
        variables.setdefault("identity", identity)
    chunks: list[str] = []
    try:
        env = Sandbox(budget)
        tree = Rewrite().visit(env.parse(source, name, filename))
        tree.set_environment(env)
        code = env.compile(tree, name, filename)
        template = env.template_class.from_code(env, code, env.make_globals(None))
        size = 0
        # Template.generate is a generator function; closing it stops the template at once.
        stream = cast(Generator[str, None, None], template.generate(variables))
        try:
            for chunk in stream:
                size += len(chunk.encode("utf-8"))
                if size > max_output_bytes:
                    raise TemplateError(
                        name, budget.line, f"output exceeds the output size limit of {max_output_bytes} bytes"
                    )
                budget.tick()
                chunks.append(chunk)
        finally:
            stream.close()
    except TemplateError:
        raise
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(name, exc.lineno, redact(reason(exc), context)) from None
    except Exception as exc:  # includes RecursionError and MemoryError
        line = line_from_traceback(exc, filename)
        raise TemplateError(name, line, redact(reason(exc), context)) from None
    return "".join(chunks)
