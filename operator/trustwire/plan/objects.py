"""From desired content to the smallest write, or to none.

"A resync that changes nothing makes zero API writes" lives here: :func:`object_patch`
returns ``None`` when the observed object already says what we want, and otherwise a
JSON merge patch (RFC 7386) touching only our keys. Merge patches are used only for
maps (Secret/ConfigMap ``data``, labels, annotations, status): for maps RFC 7386 means
the same on a real API server and in the emulator. Lists we do not own entirely are
patched with RFC 6902 ops instead (see :mod:`trustwire.plan.workloads`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from trustwire import names
from trustwire.plan.material import DesiredObject, templated_keys


def merge_patch(old: Any, new: Any) -> Any:
    """The RFC 7386 patch that turns ``old`` into ``new`` (``None`` when they are equal)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        patch: dict[str, Any] = {}
        for key in old:
            if key not in new:
                patch[key] = None
        for key, value in new.items():
            if key not in old:
                patch[key] = value
            else:
                sub = merge_patch(old[key], value)
                if sub is not None:
                    patch[key] = sub
        return patch or None
    if _same(old, new):
        return None
    if isinstance(new, Mapping):
        return dict(new)
    return new


def _same(old: Any, new: Any) -> bool:
    """JSON equality: unlike Python's ``==``, ``true`` is not ``1`` and ``false`` is not ``0``."""
    if isinstance(old, bool) or isinstance(new, bool):
        return type(old) is type(new) and old == new
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return old.keys() == new.keys() and all(_same(old[k], new[k]) for k in old)
    if isinstance(old, list | tuple) and isinstance(new, list | tuple):
        return len(old) == len(new) and all(_same(a, b) for a, b in zip(old, new, strict=True))
    return bool(old == new)


def _encode(desired: DesiredObject) -> dict[str, str]:
    if desired.kind == "ConfigMap":
        return {k: v.decode("utf-8") for k, v in desired.data.items()}
    return {k: base64.b64encode(v).decode() for k, v in desired.data.items()}


def object_body(desired: DesiredObject, namespace: str,
                owner: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The full object to create."""
    metadata: dict[str, Any] = {"name": desired.name, "namespace": namespace, "labels": dict(desired.labels)}
    if desired.annotations:
        metadata["annotations"] = dict(desired.annotations)
    reference = _owner_reference(desired, owner)
    if reference is not None:
        metadata["ownerReferences"] = [reference]
    body: dict[str, Any] = {"apiVersion": "v1", "kind": desired.kind, "metadata": metadata,
                            "data": _encode(desired)}
    if desired.kind == "Secret" and desired.type:
        body["type"] = desired.type
    return body


def _owner_reference(desired: DesiredObject, owner: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The reference that lets the garbage collector delete ``desired`` with ``owner`` (the
    identity's or relationship's body as the API returned it)."""
    meta = (owner or {}).get("metadata") or {}
    if owner is None or not desired.owned or not meta.get("uid"):
        return None
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta.get("name"),
            "uid": meta.get("uid"), "controller": True, "blockOwnerDeletion": False}


def _owner_patch(desired: DesiredObject, observed_meta: Mapping[str, Any],
                 owner: Mapping[str, Any] | None) -> list[dict[str, Any]] | None:
    """New ownerReferences when an adopted object is not owned by ``owner``: left over from a
    deleted identity of the same name (or restored from a backup), it would otherwise be
    collected as an orphan under the new one. Other owners' references are kept."""
    reference = _owner_reference(desired, owner)
    if reference is None:
        return None
    current = [r for r in observed_meta.get("ownerReferences") or [] if isinstance(r, Mapping)]
    if any(r.get("uid") == reference["uid"] for r in current):
        return None
    return [reference, *(dict(r) for r in current if not r.get("controller"))]


def object_patch(desired: DesiredObject, observed: Mapping[str, Any],
                 owner: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """Merge patch from the observed managed object to the desired one, or None.

    Only our labels and annotations are compared (other writers may add theirs): trustwire's
    own, and those ``spec.secretTemplate`` added, which go when the template drops them;
    ``data`` is ours entirely, so keys we no longer want are removed.
    """
    meta = observed.get("metadata") or {}
    patch: dict[str, Any] = {}
    owners = _owner_patch(desired, meta, owner)
    if owners is not None:
        patch["metadata"] = {"ownerReferences": owners}
    observed_labels, observed_annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    labels: dict[str, Any] = {k: v for k, v in desired.labels.items() if observed_labels.get(k) != v}
    annotations: dict[str, Any] = {k: v for k, v in desired.annotations.items() if observed_annotations.get(k) != v}
    for key in observed_annotations:
        if key.startswith(f"{names.TRUSTWIRE_PREFIX}/") and key not in desired.annotations:
            annotations[key] = None
    templated_labels, templated_annotations = templated_keys(observed_annotations)
    labels |= {k: None for k in templated_labels - desired.labels.keys() if k in observed_labels}
    annotations |= {k: None for k in templated_annotations - desired.annotations.keys() if k in observed_annotations}
    if labels or annotations:
        patch.setdefault("metadata", {})
        if labels:
            patch["metadata"]["labels"] = labels
        if annotations:
            patch["metadata"]["annotations"] = annotations
    data = merge_patch(dict(observed.get("data") or {}), _encode(desired))
    if data is not None:
        patch["data"] = data
    return patch or None
