"""Filters offered to templates besides Jinja's built-ins (see the package docstring)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any


def _b64encode(value: Any) -> str:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes | bytearray):
        raise TypeError(f"b64encode expects text or bytes, not {type(value).__name__}")
    return base64.b64encode(bytes(value)).decode("ascii")


def _b64decode(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("ascii", errors="replace")
    if not isinstance(value, str):
        raise TypeError(f"b64decode expects text, not {type(value).__name__}")
    try:
        raw = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("b64decode: input is not valid base64") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("b64decode: decoded data is not UTF-8 text") from None


def _tojson(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


#: What a ``.properties`` value needs escaped (``java.util.Properties.load`` reads it back).
_VALUE_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}
#: ...and what a key (or text that may be either) needs besides: separators and comment marks.
_KEY_ESCAPES = {**_VALUE_ESCAPES, "=": "\\=", ":": "\\:", "#": "\\#", "!": "\\!"}


def _escape(value: Any, escapes: dict[str, str], name: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        raise TypeError(f"{name} expects text, not {type(value).__name__}")
    out: list[str] = []
    leading = True
    for char in value:
        if leading and char == " ":
            out.append("\\ ")
            continue
        leading = False
        escaped = escapes.get(char)
        if escaped is not None:
            out.append(escaped)
        elif " " <= char <= "~":
            out.append(char)
        else:
            encoded = char.encode("utf-16-be")
            out.extend(
                f"\\u{int.from_bytes(encoded[i : i + 2], 'big'):04X}" for i in range(0, len(encoded), 2)
            )
    return "".join(out)


def _properties_escape(value: Any) -> str:
    return _escape(value, _KEY_ESCAPES, "properties_escape")


def _properties_value(value: Any) -> str:
    """Escapes only what a value needs, so JSON in a value stays readable (``{"kty":"EC"}``)."""
    return _escape(value, _VALUE_ESCAPES, "properties_value")


def _without(value: Any, *keys: Any) -> dict[str, Any]:
    """A copy of a mapping without ``keys`` (e.g. a JWK without ``use``); the context stays immutable."""
    if not isinstance(value, Mapping):
        raise TypeError(f"without expects a mapping, not {type(value).__name__}")
    return {k: v for k, v in value.items() if k not in keys}


def _pem_oneline(value: Any, separator: str = "\\n") -> str:
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("ascii", errors="replace")
    if not isinstance(value, str):
        raise TypeError(f"pem_oneline expects PEM text, not {type(value).__name__}")
    if not isinstance(separator, str):
        raise TypeError("pem_oneline separator must be text")
    return separator.join(line.strip() for line in value.strip().splitlines() if line.strip())


OWN_FILTERS: dict[str, Callable[..., Any]] = {
    "b64encode": _b64encode,
    "b64decode": _b64decode,
    "tojson": _tojson,
    "properties_escape": _properties_escape,
    "properties_value": _properties_value,
    "without": _without,
    "pem_oneline": _pem_oneline,
}
