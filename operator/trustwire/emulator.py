"""The embedded Kubernetes API emulator (``kmock.KubernetesEmulator``) for the demo, tests
and benchmarks.

It serves real HTTP on loopback and keeps objects in memory. What it does *not* do
(DESIGN §7) — list merging, generation, PUT, garbage collection, controllers — the
operator never relies on; tests play the missing controllers explicitly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

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


@dataclass
class RunningEmulator:
    emulator: kmock.KubernetesEmulator
    url: str


def trim_request_log(emulator: kmock.KubernetesEmulator) -> int:
    """Forget the emulator's request log; returns how many requests were dropped.

    kmock keeps every request for assertions and re-scans that log while routing each new
    request, so a long run (``demo --rotate``, benchmarks) slows down quadratically. This
    reaches into kmock's internals (``_requests`` of the root and of each reaction); the
    test ``tests/test_emulator.py`` catches it if a kmock upgrade moves them.
    """
    dropped = len(emulator._requests)
    emulator._requests.clear()
    for reaction in emulator._walk(kmock.Reaction):
        reaction._requests.clear()
    return dropped


@contextlib.asynccontextmanager
async def running_emulator(*, trim_every: float | None = None) -> AsyncIterator[RunningEmulator]:
    """Serve the emulator on loopback; ``trim_every`` seconds, forget its request log."""
    async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
        for key, info in RESOURCES.items():
            emulator.resources[key] = info  # type: ignore[assignment]

        async def trim() -> None:
            while trim_every:
                await asyncio.sleep(trim_every)
                trim_request_log(emulator)

        task = asyncio.create_task(trim())
        try:
            yield RunningEmulator(emulator, str(server.url).rstrip("/"))
        finally:
            task.cancel()
