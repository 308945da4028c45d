"""The integration harness: the real operator (kopf + controller) against the kmock API
emulator over HTTP, plus the helpers tests need to act like a user and a cluster.

The emulator keeps no ``generation`` and runs no controllers, so :meth:`Cluster.apply`
sets and bumps ``metadata.generation`` itself and :meth:`Cluster.complete_rollout` plays
the Deployment controller where a test needs one. Requests are told apart by their
User-Agent: the operator's client says ``trustwire-operator``, the test's ``trustwire-tests``.
"""

from __future__ import annotations

import asyncio
import base64
import copy
from collections.abc import Callable, Mapping
from typing import Any

from trustwire import names
from trustwire.controller.reconciler import Controller
from trustwire.k8s.client import (
    CONFIGMAPS,
    IDENTITIES,
    RELATIONSHIPS,
    SECRETS,
    WORKLOADS,
    Client,
    Resource,
    decode_data,
)

KINDS: dict[str, Resource] = {"Secret": SECRETS, "ConfigMap": CONFIGMAPS, "ServiceIdentity": IDENTITIES,
                              "TrustRelationship": RELATIONSHIPS, **WORKLOADS}
WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}


class Cluster:
    def __init__(self, emulator: Any, client: Client, controller: Controller) -> None:
        self.emulator = emulator
        self.client = client
        self.controller = controller

    # ---- acting like a user ------------------------------------------------------------
    async def apply(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create, or replace the spec/metadata of, an object (bumping generation)."""
        resource = KINDS[body["kind"]]
        meta = body["metadata"]
        existing = await self.client.get(resource, meta.get("namespace"), meta["name"])
        if existing is None:
            new = copy.deepcopy(dict(body))
            new["metadata"].setdefault("generation", 1)
            return await self.client.create(resource, meta.get("namespace"), new)
        generation = int((existing.get("metadata") or {}).get("generation") or 1) + 1
        patch: dict[str, Any] = {"metadata": {"generation": generation}}
        for key in ("spec", "data", "stringData"):
            if key in body:
                patch[key] = _replacing(existing.get(key), body[key])
        for key in ("labels", "annotations"):
            if key in meta:
                patch["metadata"][key] = meta[key]
        result = await self.client.merge_patch(resource, meta.get("namespace"), meta["name"], patch)
        assert result is not None
        return result

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        await self.client.delete(KINDS[kind], namespace, name)

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.client.get(KINDS[kind], namespace, name)

    async def data(self, kind: str, namespace: str, name: str) -> dict[str, bytes]:
        return decode_data(KINDS[kind], await self.get(kind, namespace, name))

    async def patch_secret_data(self, namespace: str, name: str, data: Mapping[str, bytes]) -> None:
        encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
        await self.client.merge_patch(SECRETS, namespace, name, {"data": encoded})

    # ---- waiting -------------------------------------------------------------------------
    async def wait_for(self, kind: str, namespace: str, name: str,
                       predicate: Callable[[dict[str, Any] | None], bool], *, timeout: float = 20.0,
                       what: str = "") -> dict[str, Any] | None:
        deadline = asyncio.get_running_loop().time() + timeout
        body = None
        while asyncio.get_running_loop().time() < deadline:
            body = await self.get(kind, namespace, name)
            if predicate(body):
                return body
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {kind} {namespace}/{name} {what}; last: "
                             f"{(body or {}).get('status')}")

    async def wait_condition(self, kind: str, namespace: str, name: str, type_: str, status: str = "True",
                             reason: str | None = None, timeout: float = 20.0) -> dict[str, Any]:
        def ok(body: dict[str, Any] | None) -> bool:
            c = condition(body, type_)
            return c is not None and c["status"] == status and (reason is None or c["reason"] == reason)

        body = await self.wait_for(kind, namespace, name, ok, timeout=timeout,
                                   what=f"to have {type_}={status} {reason or ''}")
        assert body is not None
        return body

    async def settle(self, timeout: float = 20.0) -> None:
        """Until the controller has nothing queued or running (twice, to let watch events land)."""
        for _ in range(2):
            await asyncio.sleep(0.2)
            await self.controller.wait_idle(timeout)

    # ---- the request log -----------------------------------------------------------------
    def operator_requests(self) -> list[Any]:
        return [r for r in self.emulator.journal
                if str(r.headers.get("User-Agent", "")).startswith(("trustwire-operator", "kopf"))]

    def operator_writes(self) -> list[Any]:
        return [r for r in self.operator_requests() if getattr(r.method, "value", r.method) in WRITE_METHODS]

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        out = []
        for (resource, ns, _), obj in list(self.emulator.objects.items()):
            if resource.plural == "events" and ns == namespace and not obj.deleted:
                body = obj.raw
                if body.get("involvedObject", {}).get("name") == name:
                    out.append(dict(body))
        return out


def condition(body: Mapping[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for c in ((body or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def _replacing(old: Any, new: Any) -> Any:
    """A merge patch that makes ``old`` equal to ``new`` (nulls for removed keys)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = {k: None for k in old if k not in new}
        out.update({k: _replacing(old.get(k), v) if k in old else v for k, v in new.items()})
        return out
    return new


def identity(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "trustwire.io/v1alpha1", "kind": "ServiceIdentity",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def relationship(name: str, namespace: str, *between: tuple[str, str | None], **spec: Any) -> dict[str, Any]:
    items = [{"identity": i} | ({"namespace": ns} if ns else {}) for i, ns in between]
    return {"apiVersion": "trustwire.io/v1alpha1", "kind": "TrustRelationship",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"between": items, **spec}}


def deployment(name: str, namespace: str, containers: tuple[str, ...] = ("app",), kind: str = "Deployment",
               ) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": c, "image": f"example/{c}:1"}
                                                          for c in containers]}}}}


def managed_secret_names(identity_name: str) -> tuple[str, str, str]:
    return (names.ca_secret(identity_name), names.credentials_secret(identity_name),
            names.trust_secret(identity_name))
