"""Reading the observed workload, and building RFC 6902 ops that touch single elements.

Every op that addresses a list element by index is preceded by a ``test`` of that
element's ``name``, so a list reordered since our read makes the patch fail (422) instead
of changing the wrong element.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

Path = tuple[str | int, ...]
#: Pins: (path of a list element, the name it must still have).
Pins = Sequence[tuple[Path, str]]

POD_SPEC = ("spec", "template", "spec")
POD_META = ("spec", "template", "metadata")


def pointer(*parts: str | int) -> str:
    """RFC 6901 JSON pointer: ``~`` becomes ``~0`` and ``/`` becomes ``~1`` in each part."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def get(obj: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def list_at(obj: Any, path: Sequence[str]) -> list[Any]:
    value = get(obj, path)
    return list(value) if isinstance(value, list) else []


def list_or_none(obj: Any, path: Sequence[str]) -> list[Any] | None:
    """The list at ``path``, or None when it is absent (then adding to it creates it whole)."""
    value = get(obj, path)
    return value if isinstance(value, list) else None


def index_of(items: Sequence[Any], name: str) -> int | None:
    for i, item in enumerate(items):
        if isinstance(item, Mapping) and item.get("name") == name:
            return i
    return None


class Patch:
    """The ops of one PATCH, in order."""

    def __init__(self) -> None:
        self.ops: list[dict[str, Any]] = []
        #: whether an op creates a list or map whole (see ``workloads._guarded``)
        self.creates_whole = False

    def pin(self, path: Path, name: str) -> None:
        """``test`` that the list element at ``path`` is still named ``name``."""
        self.ops.append({"op": "test", "path": pointer(*path, "name"), "value": name})

    def add(self, path: Path, value: Any) -> None:
        self.ops.append({"op": "add", "path": pointer(*path), "value": copy.deepcopy(value)})

    def create(self, path: Path, value: Any) -> None:
        """``add`` a list or map that the observed object does not have."""
        self.creates_whole = True
        self.add(path, value)

    def replace(self, path: Path, value: Any) -> None:
        self.ops.append({"op": "replace", "path": pointer(*path), "value": copy.deepcopy(value)})

    def remove(self, path: Path) -> None:
        self.ops.append({"op": "remove", "path": pointer(*path)})

    def test_value(self, path: Path, value: Any) -> None:
        self.ops.append({"op": "test", "path": pointer(*path), "value": copy.deepcopy(value)})


def add_to_list(patch: Patch, items: list[Any] | None, path: Path, entry: Any, pins: Pins) -> None:
    """Append ``entry`` to the list at ``path`` (creating the list when it is absent)."""
    for pin_path, pin_name in pins:
        patch.pin(pin_path, pin_name)
    if items is None:
        patch.create(path, [entry])
    else:
        patch.add((*path, "-"), entry)


def remove_from_list(patch: Patch, items: list[Any], path: Path, index: int, pins: Pins) -> None:
    """Remove element ``index``; remove the whole list when it is the only element."""
    for pin_path, pin_name in pins:
        patch.pin(pin_path, pin_name)
    if len(items) == 1:
        patch.test_value(path, items)
        patch.remove(path)
    else:
        patch.pin((*path, index), str(items[index].get("name")))
        patch.remove((*path, index))


def set_annotation(patch: Patch, meta_path: tuple[str, ...], meta: Any, key: str, value: str) -> None:
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    if not isinstance(meta, Mapping):
        patch.create(meta_path, {"annotations": {key: value}})
    elif not isinstance(annotations, Mapping):
        patch.create((*meta_path, "annotations"), {key: value})
    elif key not in annotations:
        patch.add((*meta_path, "annotations", key), value)
    elif annotations[key] != value:
        patch.test_value((*meta_path, "annotations", key), annotations[key])
        patch.replace((*meta_path, "annotations", key), value)


def drop_annotation(patch: Patch, meta_path: tuple[str, ...], meta: Any, key: str) -> None:
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    if not isinstance(annotations, Mapping) or key not in annotations:
        return
    if set(annotations) == {key}:
        patch.test_value((*meta_path, "annotations"), annotations)
        patch.remove((*meta_path, "annotations"))
    else:
        patch.test_value((*meta_path, "annotations", key), annotations[key])
        patch.remove((*meta_path, "annotations", key))
