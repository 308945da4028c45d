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
  exactly when the mounted material changes (not for ``rollout: InPlace``, whose pods keep
  running while the kubelet updates the files);
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

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trustwire import names
from trustwire.plan.wiring_containers import containers_of, select, unwire_container, wire_container
from trustwire.plan.wiring_json import (
    POD_META,
    POD_SPEC,
    Patch,
    add_to_list,
    drop_annotation,
    get,
    index_of,
    remove_from_list,
    set_annotation,
)

__all__ = [
    "DEFAULT_MODE",
    "Wiring",
    "WiringResult",
    "material_hash",
    "rollout_complete",
    "wiring_ops",
]

#: File mode of the projected files: owner and group may read, nobody writes.
DEFAULT_MODE = 0o440

#: What every identity's Secret names end with: the name of an identity is not always known.
_SECRET_SUFFIXES = (names.credentials_secret(""), *names.trust_secrets(""))


@dataclass(frozen=True)
class Wiring:
    """What one identity wants mounted into one workload."""

    identity: str
    namespace: str
    mount_path: str
    credentials_secret: str
    #: the trust Secret, then the Secrets of trust files split off (``names.trust_secrets``)
    trust_secrets: tuple[str, ...]
    containers: tuple[str, ...]
    #: the pod-template annotation that rolls the pods when the material changes; None for a
    #: workload that reloads the files in place (the annotation is then removed, if there)
    material_hash: str | None

    @property
    def owner(self) -> str:
        return f"{self.namespace}/{self.identity}"


@dataclass(frozen=True)
class WiringResult:
    """Ops to send as one ``application/json-patch+json`` PATCH, and conflicts to report."""

    ops: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Volumes:
    """The pod's ``volumes`` as observed (None when absent) and where our volume sits in it."""

    items: list[Any] | None
    index: int | None

    @property
    def ours(self) -> Mapping[str, Any] | None:
        return None if self.items is None or self.index is None else self.items[self.index]


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


def wiring_ops(workload: Mapping[str, Any], wiring: Wiring | None) -> WiringResult:
    """Ops that make ``workload`` wired as ``wiring`` says (``None``: remove our wiring).

    Returns no ops when nothing needs to change; conflicts go to ``problems``.
    """
    where = _describe(workload)
    raw_meta = workload.get("metadata")
    meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
    owner_raw = (meta.get("annotations") or {}).get(names.WIRED_BY_ANNOTATION)
    owner = str(owner_raw) if owner_raw is not None else None
    pod_spec = get(workload, POD_SPEC)
    if not isinstance(pod_spec, Mapping):
        return WiringResult([], [f"{where} has no spec.template.spec; cannot wire it"])
    if wiring is not None and owner is not None and owner != wiring.owner:
        return WiringResult([], [
            f"{where} is wired by {owner} (metadata.annotations[{names.WIRED_BY_ANNOTATION!r}]), "
            f"not by {wiring.owner}; leaving it untouched"
        ])
    raw_volumes = pod_spec.get("volumes")
    items = raw_volumes if isinstance(raw_volumes, list) else None
    volumes = _Volumes(items, index_of(items or [], names.VOLUME_NAME))
    patch = Patch()
    if volumes.ours is not None and not _is_our_volume(volumes.ours, wiring, owner):
        problem = (f"{where} has a volume {names.VOLUME_NAME!r} that is not trustwire's projected volume of "
                   "this identity's Secrets (spec.template.spec.volumes); leaving it and its mounts untouched")
        if wiring is None:  # our annotations are still ours to remove
            _drop_annotations(patch, workload, meta)
        return WiringResult(patch.ops, [problem])
    if wiring is None:
        return _unwire(patch, workload, meta, volumes)
    return _wire(patch, workload, meta, wiring, where, volumes)


def _unwire(patch: Patch, workload: Mapping[str, Any], meta: Mapping[str, Any], volumes: _Volumes) -> WiringResult:
    for container in containers_of(workload):
        unwire_container(patch, container)
    if volumes.items is not None and volumes.index is not None:
        remove_from_list(patch, volumes.items, (*POD_SPEC, "volumes"), volumes.index, [])
    _drop_annotations(patch, workload, meta)
    return WiringResult(patch.ops, [])


def _drop_annotations(patch: Patch, workload: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    drop_annotation(patch, POD_META, get(workload, POD_META), names.MATERIAL_HASH_ANNOTATION)
    drop_annotation(patch, ("metadata",), meta, names.WIRED_BY_ANNOTATION)


def _wire(patch: Patch, workload: Mapping[str, Any], meta: Mapping[str, Any], wiring: Wiring, where: str,
          volumes: _Volumes) -> WiringResult:
    containers = containers_of(workload)
    selected, problems = select(containers, wiring.containers, where)
    _wire_volume(patch, volumes, wiring)  # first: the mounts refer to it
    for container in containers:
        if container in selected:
            problems.extend(wire_container(patch, container, wiring.mount_path, where))
        else:
            unwire_container(patch, container)
    if wiring.material_hash is None:
        drop_annotation(patch, POD_META, get(workload, POD_META), names.MATERIAL_HASH_ANNOTATION)
    else:
        set_annotation(patch, POD_META, get(workload, POD_META), names.MATERIAL_HASH_ANNOTATION,
                       wiring.material_hash)
    set_annotation(patch, ("metadata",), workload.get("metadata"), names.WIRED_BY_ANNOTATION, wiring.owner)
    return WiringResult(_guarded(patch, meta), problems)


def _wire_volume(patch: Patch, volumes: _Volumes, wiring: Wiring) -> None:
    desired = {
        "name": names.VOLUME_NAME,
        "projected": {
            "defaultMode": DEFAULT_MODE,
            "sources": [
                {"secret": {"name": name}} for name in (wiring.credentials_secret, *wiring.trust_secrets)
            ],
        },
    }
    volume = volumes.ours
    if volume is None or volumes.index is None:
        add_to_list(patch, volumes.items, (*POD_SPEC, "volumes"), desired, [])
    elif not _volume_up_to_date(volume, wiring):
        patch.pin((*POD_SPEC, "volumes", volumes.index), names.VOLUME_NAME)
        patch.replace((*POD_SPEC, "volumes", volumes.index), desired)


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
    if wiring is not None:  # any of its trust Secrets: the split may have changed since the volume was set
        allowed = {wiring.credentials_secret, *names.trust_secrets(wiring.identity)}
    elif owner is not None and "/" in owner:
        identity = owner.split("/", 1)[1]
        allowed = {names.credentials_secret(identity), *names.trust_secrets(identity)}
    else:
        return all(s.endswith(_SECRET_SUFFIXES) for s in secrets)
    return set(secrets) <= allowed


def _guarded(patch: Patch, meta: Mapping[str, Any]) -> list[dict[str, Any]]:
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
        and _secret_names(volume) == [wiring.credentials_secret, *wiring.trust_secrets]
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
