"""Typed reads of one spec field each, collecting every problem so a user fixes them all at once."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, TypeVar

from trustwire.model.durations import format_duration, parse_duration
from trustwire.model.errors import SpecError
from trustwire.model.limits import MAX_DURATION, MAX_LIST_ITEMS, MAX_NAME_LENGTH, MAX_QUOTED, MIN_DURATION
from trustwire.model.text import quote, type_name

_E = TypeVar("_E", bound=enum.StrEnum)


class Reader:
    """Collects every problem in one pass so a user fixes them all at once."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def unknown(self, obj: Mapping[str, Any], fields: Mapping[str, Any], path: str) -> None:
        for key in obj:
            if key not in fields:
                allowed = ", ".join(sorted(fields))
                shown = key if isinstance(key, str) and len(key) <= MAX_QUOTED else quote(key)
                self.fail(f"{path}.{shown}", f"unknown field; allowed fields are {allowed}")

    def section(self, parent: Mapping[str, Any], key: str, path: str,
                fields: Mapping[str, Any]) -> Mapping[str, Any]:
        """The object at ``path.key``, with its undeclared fields reported."""
        body = self.obj(parent, key, path)
        self.unknown(body, fields, f"{path}.{key}")
        return body

    def element(self, item: Any, path: str, fields: Mapping[str, Any],
                expected: str = "an object") -> Mapping[str, Any] | None:
        """A list item that must be an object, with its undeclared fields reported; None if it is not one."""
        if not isinstance(item, Mapping):
            self.fail(path, f"must be {expected}, got {type_name(item)}")
            return None
        self.unknown(item, fields, path)
        return item

    def raise_problems(self) -> None:
        if self.problems:
            raise SpecError(self.problems)

    def obj(self, parent: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = parent.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(f"{path}.{key}", f"must be an object, got {type_name(value)}")
            return {}
        return value

    def string(self, parent: Mapping[str, Any], key: str, path: str, default: str | None = None,
            *, max_length: int = MAX_NAME_LENGTH) -> str | None:
        value = parent.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            self.fail(f"{path}.{key}", f"must be a string, got {type_name(value)}")
            return default
        if len(value) > max_length:
            self.fail(f"{path}.{key}", f"is {len(value)} characters long; at most {max_length} allowed")
            return default
        return value

    def boolean(self, parent: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = parent.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(f"{path}.{key}", f"must be true or false, got {type_name(value)}")
            return default
        return value

    def array(self, parent: Mapping[str, Any], key: str, path: str, max_items: int) -> list[Any]:
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(f"{path}.{key}", f"must be a list, got {type_name(value)}")
            return []
        if len(value) > max_items:
            self.fail(f"{path}.{key}", f"has {len(value)} items; at most {max_items} allowed")
            return []
        return value

    def strings(self, parent: Mapping[str, Any], key: str, path: str,
                max_items: int = MAX_LIST_ITEMS) -> tuple[str, ...]:
        out: list[str] = []
        for i, item in enumerate(self.array(parent, key, path, max_items)):
            if not isinstance(item, str) or not item:
                self.fail(f"{path}.{key}[{i}]", f"must be a non-empty string, got {type_name(item)}")
            elif len(item) > MAX_NAME_LENGTH:
                self.fail(f"{path}.{key}[{i}]", f"is longer than {MAX_NAME_LENGTH} characters")
            else:
                out.append(item)
        return tuple(out)

    def enum(self, parent: Mapping[str, Any], key: str, path: str, kind: type[_E], default: _E) -> _E:
        value = parent.get(key)
        if value is None:
            return default
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(m.value for m in kind)
            self.fail(f"{path}.{key}", f"{quote(value)} is not supported; allowed values are {allowed}")
            return default

    def duration(self, parent: Mapping[str, Any], key: str, path: str, default: timedelta) -> timedelta:
        value = parent.get(key)
        if value is None:
            return default
        try:
            parsed = parse_duration(value)
        except ValueError as exc:
            self.fail(f"{path}.{key}", str(exc))
            return default
        if not MIN_DURATION <= parsed <= MAX_DURATION:
            self.fail(f"{path}.{key}", f"{quote(value)} is out of range; allowed from "
                                       f"{format_duration(MIN_DURATION)} to {format_duration(MAX_DURATION)}")
            return default
        return parsed



def metadata(body: Mapping[str, Any]) -> tuple[str, str]:
    """Namespace (``default`` when absent, as the API defaults it) and name of a body."""
    meta = body.get("metadata")
    if not isinstance(meta, Mapping):
        meta = {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")
