"""The embedded Kubernetes API emulator (``kmock.KubernetesEmulator``) for the demo, tests
and benchmarks.

It serves real HTTP on loopback and keeps objects in memory. What it does *not* do
(DESIGN §7) — list merging, generation, PUT, garbage collection, controllers — the
operator never relies on; tests play the missing controllers explicitly.
"""

from __future__ import annotations

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
    "apiextensions.k8s.io/v1/customresourcedefinitions": {
        "kind": "CustomResourceDefinition", "singular": "customresourcedefinition", "namespaced": False,
        "verbs": ["get", "list", "watch", "create"]},
}


@dataclass
class RunningEmulator:
    emulator: kmock.KubernetesEmulator
    url: str


@contextlib.asynccontextmanager
async def running_emulator() -> AsyncIterator[RunningEmulator]:
    async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
        for key, info in RESOURCES.items():
            emulator.resources[key] = info
        yield RunningEmulator(emulator, str(server.url).rstrip("/"))
