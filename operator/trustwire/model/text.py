"""How a user value appears in a problem message: its JSON type, or a bounded quote."""

from __future__ import annotations

from typing import Any

from trustwire.model.limits import MAX_OWNER_NAME, MAX_QUOTED


def type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def quote(value: Any) -> str:
    """``repr`` of a user value for a message, cut to MAX_QUOTED characters (inputs can be 10 MB)."""
    if isinstance(value, str):
        if len(value) <= MAX_QUOTED:
            return repr(value)
        return f"{value[:MAX_QUOTED]!r}... ({len(value)} characters)"
    if isinstance(value, bool | int | float) or value is None:
        text = repr(value)
        return text if len(text) <= MAX_QUOTED else f"a number of {len(text)} digits"
    return type_name(value)


def owner_name_problem(name: str, label: str) -> str:
    return (f"is {len(name)} characters long; at most {MAX_OWNER_NAME} allowed: it is the value of the "
            f"{label} label, which the API limits to {MAX_OWNER_NAME} characters")
