"""The resources the operator reads and writes, and how their ``data`` is encoded."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


SECRETS = Resource("", "v1", "secrets", "Secret")
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap")
EVENTS = Resource("", "v1", "events", "Event")
IDENTITIES = Resource("trustwire.io", "v1alpha1", "serviceidentities", "ServiceIdentity")
RELATIONSHIPS = Resource("trustwire.io", "v1alpha1", "trustrelationships", "TrustRelationship")
ENROLLMENTS = Resource("trustwire.io", "v1alpha1", "enrollments", "Enrollment")
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
STATEFULSETS = Resource("apps", "v1", "statefulsets", "StatefulSet")
DAEMONSETS = Resource("apps", "v1", "daemonsets", "DaemonSet")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
WORKLOADS = {r.kind: r for r in (DEPLOYMENTS, STATEFULSETS, DAEMONSETS)}


def decode_data(resource: Resource, body: Mapping[str, Any] | None) -> dict[str, bytes]:
    """A Secret's base64 ``data`` or a ConfigMap's text ``data``, as bytes."""
    if not body:
        return {}
    if resource is CONFIGMAPS:
        return {k: str(v).encode() for k, v in (body.get("data") or {}).items()}
    out: dict[str, bytes] = {}
    for key, value in (body.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(value or "", validate=True)
        except (ValueError, TypeError):
            out[key] = b""  # undecodable: treated as corrupt, and repaired by the planner
    return out


def encode_secret_data(data: Mapping[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode() for k, v in data.items()}
