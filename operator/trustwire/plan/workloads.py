"""Workload wiring as RFC 6902 JSON Patch ops computed from the observed object.

Why JSON Patch: the operator mounts an identity's Secrets into Deployments,
StatefulSets and DaemonSets that *other* writers own (Helm, Argo CD, Flux, people). On a
real API server a strategic merge patch merges ``containers``/``volumes``/``env`` by
``name``; a JSON merge patch (RFC 7386, and every PATCH in the test emulator) replaces a
list whole, so sending "our" containers list would silently drop a container another
writer added between our read and our write. RFC 6902 ops addressed at single
elements mean exactly the same everywhere, touch only what we own, and — with a ``test``
op pinning the ``name`` of every list element addressed by index — fail loudly instead
of hitting the wrong element when the list was reordered meanwhile (the API server
answers 422; the caller re-reads and retries).

What "wired" means (docs/design.md §3), for identity ``<id>`` in namespace ``<ns>``:

* pod volume ``trustwire``: projected, ``defaultMode: 0o440`` (288), sources = secret
  ``<id>-trustwire-credentials`` then secret ``<id>-trustwire-trust`` (keys never collide,
  so both land in one directory);
* in every selected container: volumeMount ``{name: trustwire, mountPath: <mountPath>,
  readOnly: true}`` and env ``{name: TRUSTWIRE_DIR, value: <mountPath>}``;
* pod-template annotation ``trustwire.io/material-hash: <hash>`` — a rollout happens
  exactly when the mounted material changes;
* workload annotation ``trustwire.io/wired-by: <ns>/<id>`` — who owns the wiring, for
  unwiring and conflict detection.

Selection: an empty ``containers`` list means every entry of ``spec.containers``;
``initContainers`` are wired only when named explicitly (an init container usually runs
before the material matters, and mounting key material into a third-party init image
nobody asked for is the wrong default). A name is looked up in ``containers`` first,
then in ``initContainers``. Containers that are no longer selected lose our mount and
env, so the object converges to the spec.

Decisions that keep resyncs free and unwiring exact:

* only needed ops: an up-to-date workload yields ``[]``; fields the API server adds by
  defaulting (e.g. ``optional`` on a projected source) are ignored when comparing;
* parents are created whole (``volumes``, ``volumeMounts``, ``env``, ``annotations``) when
  missing, and removed whole when our entry was their only content — so wire followed by
  unwire restores the original object (an explicitly empty list in the original, which
  a real API server does not store anyway, comes back absent);
* our env var is recognised as ours only when its value equals the mount path of the
  same container's ``trustwire`` mount; otherwise it is the user's and a conflict. If the
  mount cannot be added (another volume is mounted at the path), the env is skipped too,
  so our env never exists without our mount;
* conflicts are ``problems``, never ops: the conflicting part is left untouched, the rest
  is still wired (a workload wired by *another* identity is left entirely alone).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trustwire import names

__all__ = [
    "DEFAULT_MODE",
    "Wiring",
    "WiringResult",
    "material_hash",
    "pointer",
    "wiring_ops",
]

#: File mode of the projected files: owner and group may read, nobody writes.
DEFAULT_MODE = 0o440

_CREDENTIALS_SUFFIX = "-trustwire-credentials"
_TRUST_SUFFIX = "-trustwire-trust"
_POD_SPEC = ("spec", "template", "spec")
_POD_META = ("spec", "template", "metadata")


@dataclass(frozen=True)
class Wiring:
    """What one identity wants mounted into one workload."""

    identity: str
    namespace: str
    mount_path: str
    credentials_secret: str
    trust_secret: str
    containers: tuple[str, ...]
    material_hash: str

    @property
    def owner(self) -> str:
        return f"{self.namespace}/{self.identity}"


@dataclass(frozen=True)
class WiringResult:
    """Ops to send as one ``application/json-patch+json`` PATCH, and conflicts to report."""

    ops: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def material_hash(files: Mapping[str, bytes]) -> str:
    """Deterministic digest of mounted files: sha256 over sorted (name, bytes), length-framed.

    Every name and content is preceded by its length as 8 big-endian bytes, so no two
    different file sets share a byte stream (``{"a": b"bc"}`` vs ``{"ab": b"c"}``).
    """
    digest = hashlib.sha256(b"trustwire.material.v1\0")
    for name in sorted(files):
        for part in (name.encode("utf-8"), bytes(files[name])):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()[:32]


def pointer(*parts: str | int) -> str:
    """RFC 6901 JSON pointer: ``~`` becomes ``~0`` and ``/`` becomes ``~1`` in each part."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


# --------------------------------------------------------------------------------------
# Small readers of the observed object.
# --------------------------------------------------------------------------------------


def _get(obj: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _list(obj: Any, path: Sequence[str]) -> list[Any]:
    value = _get(obj, path)
    return list(value) if isinstance(value, list) else []


def _index(items: Sequence[Any], name: str) -> int | None:
    for i, item in enumerate(items):
        if isinstance(item, Mapping) and item.get("name") == name:
            return i
    return None


def _describe(workload: Mapping[str, Any]) -> str:
    meta = workload.get("metadata") or {}
    kind = workload.get("kind") or "workload"
    namespace, name = meta.get("namespace"), meta.get("name", "<unnamed>")
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def _secret_names(volume: Mapping[str, Any]) -> list[str] | None:
    """Names of the secret sources of a projected volume; None if it is anything else."""
    projected = volume.get("projected")
    if not isinstance(projected, Mapping):
        return None
    result: list[str] = []
    for source in projected.get("sources") or []:
        secret = source.get("secret") if isinstance(source, Mapping) else None
        if not isinstance(secret, Mapping) or set(source) != {"secret"}:
            return None
        result.append(str(secret.get("name")))
    return result


def _is_our_volume(volume: Mapping[str, Any], wiring: Wiring | None, owner: str | None) -> bool:
    secrets = _secret_names(volume)
    if not secrets:
        return False
    if wiring is not None:
        allowed = {wiring.credentials_secret, wiring.trust_secret}
    elif owner is not None and "/" in owner:
        identity = owner.split("/", 1)[1]
        allowed = {identity + _CREDENTIALS_SUFFIX, identity + _TRUST_SUFFIX}
    else:
        return all(s.endswith((_CREDENTIALS_SUFFIX, _TRUST_SUFFIX)) for s in secrets)
    return set(secrets) <= allowed


# --------------------------------------------------------------------------------------
# Patch builder: remembers which tests it already emitted for the current state.
# --------------------------------------------------------------------------------------


class _Patch:
    def __init__(self) -> None:
        self.ops: list[dict[str, Any]] = []
        #: whether an op creates a list or map whole (see :func:`_guarded`)
        self.creates_whole = False

    def pin(self, path: tuple[str | int, ...], name: str) -> None:
        """``test`` that the list element at ``path`` is still named ``name``."""
        self.ops.append({"op": "test", "path": pointer(*path, "name"), "value": name})

    def add(self, path: tuple[str | int, ...], value: Any) -> None:
        self.ops.append({"op": "add", "path": pointer(*path), "value": copy.deepcopy(value)})

    def create(self, path: tuple[str | int, ...], value: Any) -> None:
        """``add`` a list or map that the observed object does not have."""
        self.creates_whole = True
        self.add(path, value)

    def replace(self, path: tuple[str | int, ...], value: Any) -> None:
        self.ops.append({"op": "replace", "path": pointer(*path), "value": copy.deepcopy(value)})

    def remove(self, path: tuple[str | int, ...]) -> None:
        self.ops.append({"op": "remove", "path": pointer(*path)})

    def test_value(self, path: tuple[str | int, ...], value: Any) -> None:
        self.ops.append({"op": "test", "path": pointer(*path), "value": copy.deepcopy(value)})


def _add_to_list(
    patch: _Patch,
    items: list[Any] | None,
    path: tuple[str | int, ...],
    entry: Any,
    pins: Sequence[tuple[tuple[str | int, ...], str]],
) -> None:
    """Append ``entry`` to the list at ``path`` (creating the list when it is absent)."""
    for pin_path, pin_name in pins:
        patch.pin(pin_path, pin_name)
    if items is None:
        patch.create(path, [entry])
    else:
        patch.add((*path, "-"), entry)


def _remove_from_list(
    patch: _Patch,
    items: list[Any],
    path: tuple[str | int, ...],
    index: int,
    pins: Sequence[tuple[tuple[str | int, ...], str]],
) -> None:
    """Remove element ``index``; remove the whole list when it was the only element."""
    for pin_path, pin_name in pins:
        patch.pin(pin_path, pin_name)
    if len(items) == 1:
        patch.test_value(path, items)
        patch.remove(path)
    else:
        patch.pin((*path, index), str(items[index].get("name")))
        patch.remove((*path, index))


def _set_annotation(patch: _Patch, meta_path: tuple[str, ...], meta: Any, key: str, value: str) -> None:
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


def _drop_annotation(patch: _Patch, meta_path: tuple[str, ...], meta: Any, key: str) -> None:
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    if not isinstance(annotations, Mapping) or key not in annotations:
        return
    if set(annotations) == {key}:
        patch.test_value((*meta_path, "annotations"), annotations)
        patch.remove((*meta_path, "annotations"))
    else:
        patch.test_value((*meta_path, "annotations", key), annotations[key])
        patch.remove((*meta_path, "annotations", key))


# --------------------------------------------------------------------------------------
# Containers.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Container:
    field: str  # "containers" | "initContainers"
    index: int
    body: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.body.get("name"))

    @property
    def path(self) -> tuple[str | int, ...]:
        return (*_POD_SPEC, self.field, self.index)

    @property
    def label(self) -> str:
        return f"{self.field}[{self.name!r}]"


def _containers(workload: Mapping[str, Any]) -> list[_Container]:
    return [
        _Container(kind, i, body)
        for kind in ("containers", "initContainers")
        for i, body in enumerate(_list(workload, (*_POD_SPEC, kind)))
        if isinstance(body, Mapping)
    ]


def _our_mount(container: _Container) -> tuple[int, Mapping[str, Any]] | None:
    mounts = _list(container.body, ("volumeMounts",))
    index = _index(mounts, names.VOLUME_NAME)
    return None if index is None else (index, mounts[index])


def _our_env(container: _Container) -> tuple[int, Mapping[str, Any]] | None:
    """TRUSTWIRE_DIR if it is ours: a plain value equal to this container's trustwire mount path."""
    env = _list(container.body, ("env",))
    index = _index(env, names.ENV_DIR)
    mount = _our_mount(container)
    if index is None or mount is None:
        return None
    entry = env[index]
    if "valueFrom" in entry or entry.get("value") != mount[1].get("mountPath"):
        return None
    return index, entry


def _unwire_container(patch: _Patch, container: _Container) -> None:
    pins = [(container.path, container.name)]
    env = _our_env(container)
    if env is not None:
        _remove_from_list(patch, _list(container.body, ("env",)), (*container.path, "env"), env[0], pins)
    mount = _our_mount(container)
    if mount is not None:
        mounts = _list(container.body, ("volumeMounts",))
        _remove_from_list(patch, mounts, (*container.path, "volumeMounts"), mount[0], pins)


def _wire_container(patch: _Patch, container: _Container, wiring: Wiring, where: str) -> list[str]:
    problems: list[str] = []
    pins = [(container.path, container.name)]
    desired_mount = {"name": names.VOLUME_NAME, "mountPath": wiring.mount_path, "readOnly": True}
    desired_env = {"name": names.ENV_DIR, "value": wiring.mount_path}
    mounts_raw = _get(container.body, ("volumeMounts",))
    mounts = mounts_raw if isinstance(mounts_raw, list) else None
    env_raw = _get(container.body, ("env",))
    env = env_raw if isinstance(env_raw, list) else None
    mount = _our_mount(container)
    our_env = _our_env(container)

    # The mount.
    if mount is None:
        clash = next(
            (m for m in mounts or [] if isinstance(m, Mapping) and m.get("mountPath") == wiring.mount_path),
            None,
        )
        if clash is not None:
            problems.append(
                f"{where}: {container.label} already mounts volume {clash.get('name')!r} at "
                f"{wiring.mount_path} (spec.template.spec.{container.field}[].volumeMounts); not wiring it"
            )
            return problems
        _add_to_list(patch, mounts, (*container.path, "volumeMounts"), desired_mount, pins)
    else:
        index, current = mount
        wanted = {**current, **desired_mount}
        for extra in ("subPath", "subPathExpr"):
            wanted.pop(extra, None)
        if dict(current) != wanted:
            patch.pin(container.path, container.name)
            patch.pin((*container.path, "volumeMounts", index), names.VOLUME_NAME)
            patch.replace((*container.path, "volumeMounts", index), wanted)

    # The env var.
    env_index = _index(env or [], names.ENV_DIR)
    if env_index is None:
        _add_to_list(patch, env, (*container.path, "env"), desired_env, pins)
    elif our_env is not None:
        if dict(our_env[1]) != desired_env:
            patch.pin(container.path, container.name)
            patch.pin((*container.path, "env", env_index), names.ENV_DIR)
            patch.replace((*container.path, "env", env_index), desired_env)
    elif dict((env or [])[env_index]) != desired_env:
        problems.append(
            f"{where}: {container.label} sets {names.ENV_DIR} to another value "
            f"(spec.template.spec.{container.field}[].env); leaving it as it is"
        )
    return problems


# --------------------------------------------------------------------------------------
# Entry point.
# --------------------------------------------------------------------------------------


def wiring_ops(workload: Mapping[str, Any], wiring: Wiring | None) -> WiringResult:
    """Ops that make ``workload`` wired as ``wiring`` says (``None``: remove our wiring).

    Returns no ops when nothing needs to change; conflicts go to ``problems``.
    """
    where = _describe(workload)
    raw_meta = workload.get("metadata")
    meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
    owner_raw = (meta.get("annotations") or {}).get(names.WIRED_BY_ANNOTATION)
    owner = str(owner_raw) if owner_raw is not None else None
    pod_spec = _get(workload, _POD_SPEC)
    if not isinstance(pod_spec, Mapping):
        return WiringResult([], [f"{where} has no spec.template.spec; cannot wire it"])

    if wiring is not None and owner is not None and owner != wiring.owner:
        return WiringResult(
            [],
            [
                f"{where} is wired by {owner} (metadata.annotations[{names.WIRED_BY_ANNOTATION!r}]), "
                f"not by {wiring.owner}; leaving it untouched"
            ],
        )

    patch = _Patch()
    problems: list[str] = []
    volumes_raw = pod_spec.get("volumes")
    volumes = volumes_raw if isinstance(volumes_raw, list) else None
    volume_index = _index(volumes or [], names.VOLUME_NAME)
    volume = (volumes or [])[volume_index] if volume_index is not None else None
    volume_is_ours = volume is not None and _is_our_volume(volume, wiring, owner)
    if volume is not None and not volume_is_ours:
        problems.append(
            f"{where} has a volume {names.VOLUME_NAME!r} that is not trustwire's projected volume of "
            "this identity's Secrets (spec.template.spec.volumes); leaving it and its mounts untouched"
        )
        if wiring is None:  # our annotations are still ours to remove
            _drop_annotation(patch, _POD_META, _get(workload, _POD_META), names.MATERIAL_HASH_ANNOTATION)
            _drop_annotation(patch, ("metadata",), meta, names.WIRED_BY_ANNOTATION)
        return WiringResult(patch.ops, problems)

    containers = _containers(workload)
    if wiring is None:
        for container in containers:
            _unwire_container(patch, container)
        if volumes is not None and volume_index is not None:
            _remove_from_list(patch, volumes, (*_POD_SPEC, "volumes"), volume_index, [])
        _drop_annotation(patch, _POD_META, _get(workload, _POD_META), names.MATERIAL_HASH_ANNOTATION)
        _drop_annotation(patch, ("metadata",), meta, names.WIRED_BY_ANNOTATION)
        return WiringResult(patch.ops, problems)

    # Which containers.
    selected: list[_Container] = []
    if wiring.containers:
        for name in wiring.containers:
            found = next((c for c in containers if c.field == "containers" and c.name == name), None)
            found = found or next((c for c in containers if c.name == name), None)
            if found is None:
                problems.append(
                    f"{where} has no container named {name!r} "
                    "(spec.template.spec.containers / initContainers)"
                )
            elif found not in selected:
                selected.append(found)
    else:
        selected = [c for c in containers if c.field == "containers"]

    # The volume first: mounts refer to it.
    desired_volume = {
        "name": names.VOLUME_NAME,
        "projected": {
            "defaultMode": DEFAULT_MODE,
            "sources": [
                {"secret": {"name": wiring.credentials_secret}},
                {"secret": {"name": wiring.trust_secret}},
            ],
        },
    }
    if volume is None or volume_index is None:
        _add_to_list(patch, volumes, (*_POD_SPEC, "volumes"), desired_volume, [])
    elif not _volume_up_to_date(volume, wiring):
        patch.pin((*_POD_SPEC, "volumes", volume_index), names.VOLUME_NAME)
        patch.replace((*_POD_SPEC, "volumes", volume_index), desired_volume)

    for container in containers:
        if container in selected:
            problems.extend(_wire_container(patch, container, wiring, where))
        else:
            _unwire_container(patch, container)

    _set_annotation(
        patch, _POD_META, _get(workload, _POD_META), names.MATERIAL_HASH_ANNOTATION, wiring.material_hash
    )
    _set_annotation(patch, ("metadata",), workload.get("metadata"), names.WIRED_BY_ANNOTATION, wiring.owner)
    return WiringResult(_guarded(patch, meta), problems)


def _guarded(patch: _Patch, meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ops, pinned to the version of the workload they were computed from when one of
    them creates a list or map whole: an ``add`` replaces a member that exists (RFC 6902), so
    another writer's ``env``, ``volumes`` or annotations that appeared since our read would
    be lost; pinned, the patch fails (422) and is computed again from a fresh read."""
    version = meta.get("resourceVersion")
    if not patch.creates_whole or not version:
        return patch.ops
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": version}, *patch.ops]


def _volume_up_to_date(volume: Mapping[str, Any], wiring: Wiring) -> bool:
    """Compare only what we set; fields the API server defaults are not a difference."""
    projected = volume.get("projected") or {}
    return (
        set(volume) == {"name", "projected"}
        and projected.get("defaultMode") == DEFAULT_MODE
        and _secret_names(volume) == [wiring.credentials_secret, wiring.trust_secret]
        and all(
            set(source["secret"]) <= {"name", "optional"} and not source["secret"].get("optional")
            for source in projected.get("sources") or []
        )
    )


def rollout_complete(workload: Mapping[str, Any], min_generation: int) -> bool:
    """Whether the workload controller has rolled out every replica of generation ≥ ``min_generation``.

    The evidence rotation gates wait on (Linkerd-style): ``status.observedGeneration``
    caught up with the generation our patch produced, and every replica is updated and
    available. Deployment, StatefulSet and DaemonSet report this in different fields.
    """
    status = workload.get("status") or {}
    observed = status.get("observedGeneration")
    if not isinstance(observed, int) or observed < min_generation:
        return False
    if workload.get("kind") == "DaemonSet":
        desired = status.get("desiredNumberScheduled", 0)
        return bool(status.get("updatedNumberScheduled", 0) == desired == status.get("numberAvailable", 0))
    spec = workload.get("spec") or {}
    replicas = spec.get("replicas", 1)
    if workload.get("kind") == "StatefulSet" and status.get("updateRevision") != status.get("currentRevision"):
        return False
    return bool(status.get("updatedReplicas", 0) == replicas and status.get("availableReplicas", 0) == replicas
                and status.get("replicas", replicas) == replicas)
