"""Remove every context value, and every piece of a long one, from an error reason."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from trustwire.render.sandbox import SELF_VAR

_MAX_REASON_CHARS = 400
_REDACTED = "<redacted>"
# Values at least this long are treated as material: pieces of them are redacted too.
_LONG_VALUE_CHARS = 16
_WINDOW = 12
_SHORTEST_REDACTED_VALUE = 3


def _strings_in(value: Any, out: set[str], depth: int = 0) -> None:
    if depth > 32:
        return
    if isinstance(value, str):
        if len(value) >= _SHORTEST_REDACTED_VALUE:
            out.add(value)
    elif isinstance(value, bytes | bytearray):
        _strings_in(bytes(value).decode("utf-8", errors="replace"), out, depth + 1)
    elif isinstance(value, Mapping):
        for item in value.values():
            _strings_in(item, out, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _strings_in(item, out, depth + 1)


_QUOTED = re.compile(r"'([^']{8,})'|\"([^\"]{8,})\"")


def redact(message: str, context: Mapping[str, Any]) -> str:
    """Hide every context value (raw, ``repr``- or JSON-escaped) and every piece of a long one.

    Marks, on the message: each occurrence of a value of at least three characters
    (short values only as whole tokens, so a value ``sig`` does not eat "signature");
    each run of :data:`_WINDOW` characters found inside a long value (catches slices of
    a key); each quoted fragment of eight or more characters found inside a long value.
    Marked runs become ``<redacted>``. Errors are rare, so plain substring search is fine.
    """
    message = message.replace(SELF_VAR, "self")
    if len(message) > _MAX_REASON_CHARS:
        message = message[: _MAX_REASON_CHARS - 3] + "..."
    values: set[str] = set()
    _strings_in(context, values)
    forms = {form for value in values for form in (value, repr(value)[1:-1], json.dumps(value)[1:-1])}
    haystack = "\0".join(form for form in forms if len(form) >= _LONG_VALUE_CHARS)
    hidden = [False] * len(message)

    def mark(start: int, stop: int) -> None:
        hidden[start:stop] = [True] * (stop - start)

    for form in forms:
        if len(form) >= _LONG_VALUE_CHARS:
            pattern = re.escape(form)
        elif len(form) >= _SHORTEST_REDACTED_VALUE:
            pattern = rf"(?<![\w.-]){re.escape(form)}(?![\w.-])"
        else:
            continue
        for found in re.finditer(pattern, message):
            mark(found.start(), found.end())
    for start in range(len(message) - _WINDOW + 1):
        if message[start : start + _WINDOW] in haystack:
            mark(start, start + _WINDOW)
    for found in _QUOTED.finditer(message):
        group = 1 if found.group(1) is not None else 2
        if found.group(group) in haystack:
            mark(found.start(group), found.end(group))
    out: list[str] = []
    for i, char in enumerate(message):
        if not hidden[i]:
            out.append(char)
        elif i == 0 or not hidden[i - 1]:
            out.append(_REDACTED)
    return "".join(out)
