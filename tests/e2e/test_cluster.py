"""Opt-in end-to-end suite against a real cluster: set KUBECONFIG to run it.

It installs the CRDs from ``crds/`` (if absent), runs the operator in-process against the
cluster, applies two identities in two fresh namespaces with consent and a relationship,
and checks what the emulator cannot: generation bookkeeping, strategic list semantics on
the real API server (our RFC 6902 patches), status pruning by the structural schema.
Everything it creates is deleted afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from pathlib import Path

import pytest
import yaml

from trustwire import names
from trustwire.k8s.client import Client, load_config
from trustwire.k8s.resources import IDENTITIES, RELATIONSHIPS, SECRETS, Resource, decode_data
from trustwire.runtime import OperatorOptions, running_operator

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not os.environ.get("KUBECONFIG"),
                       reason="e2e: no KUBECONFIG set, so there is no real cluster to run against"),
]
CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
                namespaced=False)
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)


async def _ready(client: Client, resource: Resource, namespace: str, name: str, timeout: float = 60) -> dict:  # type: ignore[type-arg]
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        body = await client.get(resource, namespace, name)
        for c in ((body or {}).get("status") or {}).get("conditions") or []:
            if c["type"] == "Ready" and c["status"] == "True" and body is not None:
                return body
        await asyncio.sleep(0.5)
    raise AssertionError(f"{resource.kind} {namespace}/{name} not Ready: {(body or {}).get('status')}")


async def test_pair_across_namespaces_on_a_real_cluster() -> None:
    config = load_config()
    suffix = secrets.token_hex(3)
    ns_a, ns_b = f"tw-e2e-a-{suffix}", f"tw-e2e-b-{suffix}"
    async with Client(config, user_agent="trustwire-e2e") as client:
        for path in sorted((Path(__file__).parents[2] / "crds").glob("trustwire.io_*.yaml")):
            crd = yaml.safe_load(path.read_text())
            if await client.get(CRDS, None, crd["metadata"]["name"]) is None:
                await client.create(CRDS, None, crd)
        await asyncio.sleep(3)  # let the API server start serving the new kinds
        for ns in (ns_a, ns_b):
            await client.create(NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        try:
            async with running_operator(config, OperatorOptions(namespaces=(ns_a, ns_b))):
                sid = {"apiVersion": "trustwire.io/v1alpha1", "kind": "ServiceIdentity"}
                await client.create(IDENTITIES, ns_a, sid | {"metadata": {"name": "alpha", "namespace": ns_a},
                                                             "spec": {}})
                await client.create(IDENTITIES, ns_b, sid | {"metadata": {"name": "beta", "namespace": ns_b},
                                                             "spec": {"acceptFrom": {"namespaces": [ns_a]}}})
                await client.create(RELATIONSHIPS, ns_a, {
                    "apiVersion": "trustwire.io/v1alpha1", "kind": "TrustRelationship",
                    "metadata": {"name": "ab", "namespace": ns_a},
                    "spec": {"between": [{"identity": "alpha"}, {"identity": "beta", "namespace": ns_b}]}})
                alpha = await _ready(client, IDENTITIES, ns_a, "alpha")
                await _ready(client, IDENTITIES, ns_b, "beta")
                await _ready(client, RELATIONSHIPS, ns_a, "ab")
                assert alpha["status"]["observedGeneration"] == alpha["metadata"]["generation"]
                assert "trust" in alpha["status"] and "rolledOut" in alpha["status"], "status fields survived pruning"
                trust = decode_data(SECRETS, await client.get(SECRETS, ns_a, names.trust_secret("alpha")))
                assert [p["identity"] for p in json.loads(trust["peers.json"])] == ["beta"]
        finally:
            for ns in (ns_a, ns_b):
                await client.delete(NAMESPACES, None, ns)
