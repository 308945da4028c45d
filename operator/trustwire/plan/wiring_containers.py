"""Which containers of a workload are wired, and the mount and env ops for each.

An empty selection means every entry of ``spec.containers``; ``initContainers`` are wired
only when named, and a name is looked up in ``containers`` first. Our env var is ours only
while it equals the mount path of the same container's ``trustwire`` mount, so our env
never exists without our mount.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trustwire import names
from trustwire.plan.wiring_json import (
    POD_SPEC,
    Patch,
    Path,
    Pins,
    add_to_list,
    index_of,
    list_at,
    list_or_none,
    remove_from_list,
)


@dataclass(frozen=True)
class Container:
    field: str  # "containers" | "initContainers"
    index: int
    body: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.body.get("name"))

    @property
    def path(self) -> Path:
        return (*POD_SPEC, self.field, self.index)

    @property
    def label(self) -> str:
        return f"{self.field}[{self.name!r}]"

    @property
    def pins(self) -> Pins:
        return [(self.path, self.name)]


def containers_of(workload: Mapping[str, Any]) -> list[Container]:
    return [
        Container(kind, i, body)
        for kind in ("containers", "initContainers")
        for i, body in enumerate(list_at(workload, (*POD_SPEC, kind)))
        if isinstance(body, Mapping)
    ]


def select(containers: Sequence[Container], wanted: Sequence[str], where: str) -> tuple[list[Container], list[str]]:
    """The containers named in ``wanted`` (all of ``spec.containers`` when empty), and names not found."""
    if not wanted:
        return [c for c in containers if c.field == "containers"], []
    selected: list[Container] = []
    problems: list[str] = []
    for name in wanted:
        found = next((c for c in containers if c.field == "containers" and c.name == name), None)
        found = found or next((c for c in containers if c.name == name), None)
        if found is None:
            problems.append(
                f"{where} has no container named {name!r} "
                "(spec.template.spec.containers / initContainers)"
            )
        elif found not in selected:
            selected.append(found)
    return selected, problems


def _our_mount(container: Container) -> tuple[int, Mapping[str, Any]] | None:
    mounts = list_at(container.body, ("volumeMounts",))
    index = index_of(mounts, names.VOLUME_NAME)
    return None if index is None else (index, mounts[index])


def _our_env(container: Container) -> tuple[int, Mapping[str, Any]] | None:
    """TRUSTWIRE_DIR if it is ours: a plain value equal to this container's trustwire mount path."""
    env = list_at(container.body, ("env",))
    index = index_of(env, names.ENV_DIR)
    mount = _our_mount(container)
    if index is None or mount is None:
        return None
    entry = env[index]
    if "valueFrom" in entry or entry.get("value") != mount[1].get("mountPath"):
        return None
    return index, entry


def unwire_container(patch: Patch, container: Container) -> None:
    env = _our_env(container)
    if env is not None:
        remove_from_list(patch, list_at(container.body, ("env",)), (*container.path, "env"), env[0], container.pins)
    mount = _our_mount(container)
    if mount is not None:
        mounts = list_at(container.body, ("volumeMounts",))
        remove_from_list(patch, mounts, (*container.path, "volumeMounts"), mount[0], container.pins)


def wire_container(patch: Patch, container: Container, mount_path: str, where: str) -> list[str]:
    """Ops for our mount, then our env; a clash on the mount path leaves the container alone."""
    clash = _wire_mount(patch, container, mount_path, where)
    if clash:
        return [clash]
    conflict = _wire_env(patch, container, mount_path, where)
    return [conflict] if conflict else []


def _wire_mount(patch: Patch, container: Container, mount_path: str, where: str) -> str:
    """Add or fix our mount; returns the problem when another volume is mounted at the path."""
    desired = {"name": names.VOLUME_NAME, "mountPath": mount_path, "readOnly": True}
    mount = _our_mount(container)
    if mount is not None:
        index, current = mount
        wanted = {**current, **desired}
        for extra in ("subPath", "subPathExpr"):
            wanted.pop(extra, None)
        if dict(current) != wanted:
            patch.pin(container.path, container.name)
            patch.pin((*container.path, "volumeMounts", index), names.VOLUME_NAME)
            patch.replace((*container.path, "volumeMounts", index), wanted)
        return ""
    mounts = list_or_none(container.body, ("volumeMounts",))
    clash = next((m for m in mounts or [] if isinstance(m, Mapping) and m.get("mountPath") == mount_path), None)
    if clash is not None:
        return (f"{where}: {container.label} already mounts volume {clash.get('name')!r} at "
                f"{mount_path} (spec.template.spec.{container.field}[].volumeMounts); not wiring it")
    add_to_list(patch, mounts, (*container.path, "volumeMounts"), desired, container.pins)
    return ""


def _wire_env(patch: Patch, container: Container, mount_path: str, where: str) -> str:
    """Add or fix our env var; returns the problem when the user's own TRUSTWIRE_DIR differs."""
    desired = {"name": names.ENV_DIR, "value": mount_path}
    env = list_or_none(container.body, ("env",))
    index = index_of(env or [], names.ENV_DIR)
    ours = _our_env(container)
    if index is None:
        add_to_list(patch, env, (*container.path, "env"), desired, container.pins)
    elif ours is not None:
        if dict(ours[1]) != desired:
            patch.pin(container.path, container.name)
            patch.pin((*container.path, "env", index), names.ENV_DIR)
            patch.replace((*container.path, "env", index), desired)
    elif dict((env or [])[index]) != desired:
        return (f"{where}: {container.label} sets {names.ENV_DIR} to another value "
                f"(spec.template.spec.{container.field}[].env); leaving it as it is")
    return ""
