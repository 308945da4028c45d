"""What the controller writes, and how: our Secrets and ConfigMaps, finalizers, workload patches.

Only objects trustwire manages are ever patched or deleted; a create that finds the name
taken, or a patch that races another writer, ends the pass with :class:`Retry` so the next
pass reads what is there and adopts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from trustwire import names
from trustwire.controller.backoff import Retry
from trustwire.controller.queue import WorkQueue
from trustwire.controller.state import Key, State
from trustwire.k8s.client import Client
from trustwire.k8s.errors import ApiError
from trustwire.k8s.resources import CONFIGMAPS, SECRETS, Resource, decode_data
from trustwire.model import IdentityRef
from trustwire.plan.material import DesiredObject, StoredObject
from trustwire.plan.objects import object_body, object_patch


class Writes:
    """The controller's reads of its own objects and its writes (a mixin of ``Controller``)."""

    client: Client
    state: State
    queue: WorkQueue[Key]

    if TYPE_CHECKING:
        def _enqueue_identity(self, ref: IdentityRef) -> None: ...

    async def _read(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        """One of our own Secrets or ConfigMaps, fresh from the API — or ``None`` without a
        request when the inventory knows no such object exists (a user's objects — a
        bring-your-own CA, a password Secret, a template — are always read)."""
        if not self.state.inventory.may_exist(resource.plural, namespace, name):
            return None
        return await self.client.get(resource, namespace, name)

    async def _apply(self, namespace: str, objects: list[DesiredObject],
                     raw: Mapping[str, Mapping[str, Any] | None], owner: Mapping[str, Any],
                     written: dict[str, Mapping[str, Any]]) -> None:
        """Create what is missing and patch what differs. Adds each write to ``written`` as it
        lands (the server's answer, by name; also remembered so that its watch echo wakes
        nobody), so a caller learns what was written even when a later write fails."""
        for desired in objects:
            resource = _resource(desired)
            observed = raw.get(desired.name) if desired.name in raw else \
                await self._read(resource, namespace, desired.name)
            result: Mapping[str, Any] | None = None
            if observed is None:
                try:
                    result = await self.client.create(resource, namespace, object_body(desired, namespace, owner))
                except ApiError as exc:
                    if exc.status == 409:  # the inventory missed it, so perhaps its siblings too:
                        for other in objects:  # the next pass reads them all (one may clash)
                            self.state.inventory.exists(_resource(other).plural, namespace, other.name)
                        raise Retry(f"{desired.kind} {namespace}/{desired.name} already exists; "
                                    "the next pass reads it") from None
                    raise
            elif not names.is_managed((observed.get("metadata") or {}).get("labels")):
                continue  # never touch what we do not manage (the plan reports the clash)
            elif (patch := object_patch(desired, observed, owner)) is not None:
                result = await self.client.merge_patch(resource, namespace, desired.name, patch)
            if result is not None:
                self.state.wrote(resource.plural, result)
                written[desired.name] = result

    async def _patch_workload(self, resource: Resource, namespace: str, name: str,
                              ops: list[dict[str, Any]]) -> dict[str, Any] | None:
        try:
            return await self.client.json_patch(resource, namespace, name, ops)
        except ApiError as exc:
            if exc.status in (409, 422) or exc.status >= 500:
                raise Retry(f"{resource.kind} {namespace}/{name} changed while being wired") from None
            raise

    async def _add_finalizer(self, resource: Resource, namespace: str, name: str, meta: Mapping[str, Any]) -> None:
        current = list(meta.get("finalizers") or [])
        ops: list[dict[str, Any]]
        if current:
            ops = [{"op": "test", "path": "/metadata/finalizers", "value": current},
                   {"op": "add", "path": "/metadata/finalizers/-", "value": names.FINALIZER}]
        else:
            ops = [{"op": "add", "path": "/metadata/finalizers", "value": [names.FINALIZER]}]
        await self.client.json_patch(resource, namespace, name, ops)

    async def _remove_finalizer(self, resource: Resource, namespace: str, name: str, meta: Mapping[str, Any]) -> None:
        current = list(meta.get("finalizers") or [])
        index = current.index(names.FINALIZER)
        ops = [{"op": "test", "path": f"/metadata/finalizers/{index}", "value": names.FINALIZER},
               {"op": "remove", "path": f"/metadata/finalizers/{index}"}]
        try:
            await self.client.json_patch(resource, namespace, name, ops)
        except ApiError as exc:
            if exc.status >= 500 or exc.status in (409, 422):
                raise Retry("finalizers changed meanwhile") from None
            raise

    async def _delete_ours(self, resource: Resource, namespace: str, name: str, owner_label: str,
                           owner: str) -> None:
        """Delete one of our objects if it exists, is managed and belongs to ``owner`` (by
        ``owner_label``); anything else under that name is left alone."""
        existing = await self._read(resource, namespace, name)
        labels = ((existing or {}).get("metadata") or {}).get("labels") or {}
        if existing is not None and names.is_managed(labels) and labels.get(owner_label) == owner:
            await self.client.delete(resource, namespace, name)
            self.state.inventory.gone(resource.plural, namespace, name)


def _resource(desired: DesiredObject) -> Resource:
    return SECRETS if desired.kind == "Secret" else CONFIGMAPS


def stored_object(resource: Resource, body: Mapping[str, Any] | None, *,
                  require_managed: bool = True) -> StoredObject | None:
    """A Secret or ConfigMap as the planner sees it (data decoded), or None when absent."""
    if body is None:
        return None
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    return StoredObject(
        name=str(meta.get("name")),
        managed=names.is_managed(labels) or not require_managed,
        owner=labels.get(names.IDENTITY_LABEL),
        data=decode_data(resource, body),
        annotations=dict(meta.get("annotations") or {}),
        type=body.get("type"),
    )


def wired_by(body: Mapping[str, Any]) -> str | None:
    value = ((body.get("metadata") or {}).get("annotations") or {}).get(names.WIRED_BY_ANNOTATION)
    return str(value) if value else None

