"""The integration harness: the real operator (kopf + controller) against the real control
plane (``tests/cluster``), plus the helpers tests need to act like a user.

The operator authenticates with the chart's ServiceAccount token and talks to the apiserver
through :class:`tests.cluster.proxy.ApiProxy`, whose journal is the record of every request it
made (told apart by User-Agent: ``trustwire-operator`` and ``kopf``). The tests act as cluster
admin with their own client (User-Agent ``trustwire-tests``, field manager ``kubectl``), directly
against the apiserver. The real controllers roll workloads out and kwok marks their pods Ready.
"""

from __future__ import annotations

import asyncio
import base64
import copy
from collections.abc import Callable, Mapping
from typing import Any

from tests.cluster.controlplane import ControlPlane
from tests.cluster.proxy import ApiProxy, Recorded
from trustwire import names
from trustwire.controller.reconciler import Controller
from trustwire.k8s.client import (
    CONFIGMAPS,
    EVENTS,
    IDENTITIES,
    RELATIONSHIPS,
    SECRETS,
    WORKLOADS,
    ApiError,
    Client,
    Resource,
    decode_data,
)

NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
KINDS: dict[str, Resource] = {"Secret": SECRETS, "ConfigMap": CONFIGMAPS, "ServiceIdentity": IDENTITIES,
                              "TrustRelationship": RELATIONSHIPS, "Namespace": NAMESPACES, **WORKLOADS}
WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}
OPERATOR_AGENTS = ("trustwire-operator", "kopf")


class Cluster:
    def __init__(self, plane: ControlPlane, client: Client, controller: Controller, proxy: ApiProxy) -> None:
        self.plane = plane
        self.client = client
        self.controller = controller
        self.proxy = proxy
        #: namespaces this test created (deleted, and waited for, when it ends)
        self.namespaces: set[str] = set()

    # ---- acting like a user ------------------------------------------------------------
    async def ensure_namespace(self, namespace: str) -> None:
        if namespace in self.namespaces:
            return
        try:
            await self.client.create(NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace",
                                                        "metadata": {"name": namespace}})
        except ApiError as exc:
            if exc.status != 409:
                raise
        self.namespaces.add(namespace)

    async def apply(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create, or replace the spec/data/labels/annotations of, an object."""
        resource = KINDS[body["kind"]]
        meta = body["metadata"]
        namespace = meta.get("namespace")
        if namespace:
            await self.ensure_namespace(namespace)
        existing = await self.client.get(resource, namespace, meta["name"])
        if existing is None:
            return await self.client.create(resource, namespace, copy.deepcopy(dict(body)))
        patch: dict[str, Any] = {"metadata": {}}
        for key in ("spec", "data", "stringData"):
            if key in body:
                patch[key] = _replacing(existing.get(key), body[key])
        for key in ("labels", "annotations"):
            if key in meta:
                patch["metadata"][key] = meta[key]
        result = await self.client.merge_patch(resource, namespace, meta["name"], patch)
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
                       predicate: Callable[[dict[str, Any] | None], bool], *, timeout: float = 30.0,
                       what: str = "") -> dict[str, Any] | None:
        deadline = asyncio.get_running_loop().time() + timeout
        body = None
        while asyncio.get_running_loop().time() < deadline:
            body = await self.get(kind, namespace, name)
            if predicate(body):
                return body
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {kind} {namespace}/{name} {what}; last: "
                             f"{(body or {}).get('status')}")

    async def wait_condition(self, kind: str, namespace: str, name: str, type_: str, status: str = "True",
                             reason: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        def ok(body: dict[str, Any] | None) -> bool:
            c = condition(body, type_)
            return c is not None and c["status"] == status and (reason is None or c["reason"] == reason)

        body = await self.wait_for(kind, namespace, name, ok, timeout=timeout,
                                   what=f"to have {type_}={status} {reason or ''}")
        assert body is not None
        return body

    async def settle(self, timeout: float = 30.0) -> None:
        """Until the controller has nothing queued or running (twice, to let watch events land)."""
        for _ in range(2):
            await asyncio.sleep(0.3)
            await self.controller.wait_idle(timeout)

    # ---- the request log -----------------------------------------------------------------
    def operator_requests(self) -> list[Recorded]:
        return self.proxy.requests_by(*OPERATOR_AGENTS)

    def operator_writes(self) -> list[Recorded]:
        return [r for r in self.operator_requests() if r.method in WRITE_METHODS]

    async def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return [e for e in await self.client.list(EVENTS, namespace)
                if (e.get("involvedObject") or {}).get("name") == name]


def condition(body: Mapping[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for c in ((body or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def ready_with_peers(body: Mapping[str, Any] | None, peers: int) -> bool:
    """Ready, and its status counts ``peers`` peers (an identity can be Ready before its
    relationships reach it)."""
    ready = condition(body, "Ready")
    return ready is not None and ready["status"] == "True" and ((body or {}).get("status") or {}).get(
        "peerCount") == peers


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
