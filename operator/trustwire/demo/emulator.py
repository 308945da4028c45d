"""The embedded Kubernetes API emulator (``kmock.KubernetesEmulator``) for the demo, tests
and benchmarks.

It serves real HTTP on loopback and keeps objects in memory. What it does *not* do
(docs/design.md §7) — list merging, generation, PUT, garbage collection, controllers — the
operator never relies on; tests play the missing controllers explicitly.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import attrs
import kmock

#: Every resource the operator discovers or watches, with discovery info.
RESOURCES: dict[str, dict[str, Any]] = {
    "trustwire.io/v1alpha1/serviceidentities": {
        "kind": "ServiceIdentity", "singular": "serviceidentity", "namespaced": True, "shortnames": ["sid"],
        "categories": ["trustwire"], "subresources": ["status"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    "trustwire.io/v1alpha1/trustrelationships": {
        "kind": "TrustRelationship", "singular": "trustrelationship", "namespaced": True, "shortnames": ["trust"],
        "categories": ["trustwire"], "subresources": ["status"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    "trustwire.io/v1alpha1/enrollments": {
        "kind": "Enrollment", "singular": "enrollment", "namespaced": True, "shortnames": ["enr"],
        "categories": ["trustwire"], "subresources": ["status"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    "v1/secrets": {"kind": "Secret", "singular": "secret", "namespaced": True,
                   "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    "v1/configmaps": {"kind": "ConfigMap", "singular": "configmap", "namespaced": True,
                      "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    "v1/events": {"kind": "Event", "singular": "event", "namespaced": True, "verbs": ["create", "list"]},
    "v1/namespaces": {"kind": "Namespace", "singular": "namespace", "namespaced": False,
                      "verbs": ["get", "list", "watch", "create"]},
    "apps/v1/deployments": {"kind": "Deployment", "singular": "deployment", "namespaced": True,
                            "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    "apps/v1/statefulsets": {"kind": "StatefulSet", "singular": "statefulset", "namespaced": True,
                             "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    "apps/v1/daemonsets": {"kind": "DaemonSet", "singular": "daemonset", "namespaced": True,
                           "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    "coordination.k8s.io/v1/leases": {"kind": "Lease", "singular": "lease", "namespaced": True,
                                      "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
    "apiextensions.k8s.io/v1/customresourcedefinitions": {
        "kind": "CustomResourceDefinition", "singular": "customresourcedefinition", "namespaced": False,
        "verbs": ["get", "list", "watch", "create"]},
}


@attrs.define(kw_only=True)
class RecordingEmulator(kmock.KubernetesEmulator):
    """The emulator with an O(1) request journal and a real API server's body limit.

    kmock keeps every request and, to route each new one, scans that log from the oldest
    entry, so a long run (the rotate demo, a benchmark, a whole integration test) slows
    down quadratically. Routing only ever needs the requests still in flight, so this
    subclass keeps kmock's own logs short and records every request in :attr:`journal`
    instead — iterate ``emulator.journal``, not ``emulator``, to read what happened. It
    reaches into kmock's ``_requests`` lists; ``tests/test_emulator.py`` fails if a kmock
    upgrade moves them.
    """

    journal: list[Any] = attrs.field(factory=list, init=False)

    async def __call__(self, raw_request: Any) -> Any:
        # aiohttp refuses request bodies over 1 MiB; kube-apiserver accepts up to 3 MiB and
        # judges a Secret by its decoded data (1 MiB), which the operator checks itself.
        raw_request._client_max_size = API_SERVER_BODY_LIMIT
        return await super().__call__(raw_request)

    async def _handle(self, request: Any) -> Any:
        self.journal.append(request)
        if len(self._requests) > _KEEP * 2:
            del self._requests[:-_KEEP]
            for reaction in self._walk(kmock.Reaction):
                del reaction._requests[:-_KEEP]
        return await super()._handle(request)


#: kube-apiserver's ``--max-request-body-bytes`` default (3 MiB).
API_SERVER_BODY_LIMIT = 3 * 1024 * 1024

#: How many recent requests kmock's own logs keep (enough for every request in flight).
_KEEP = 64


@dataclass
class RunningEmulator:
    emulator: RecordingEmulator
    url: str


@contextlib.asynccontextmanager
async def running_emulator() -> AsyncIterator[RunningEmulator]:
    """Serve the emulator on loopback with every resource the operator uses declared."""
    async with RecordingEmulator() as emulator, kmock.Server(emulator) as server:
        for key, info in RESOURCES.items():
            emulator.resources[key] = info  # type: ignore[assignment]
        yield RunningEmulator(emulator, str(server.url).rstrip("/"))
