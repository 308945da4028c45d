"""A hub past what one Secret holds at real size, on the real control plane: ~2.2 KB per peer,
so 520 peers need more than 1 MiB of trust files and the default budget splits them."""

from __future__ import annotations

import pytest

from tests.integration.harness import Cluster, deployment, identity, ready_with_peers, relationship
from tests.integration.test_hub_split import NS, projected_files, trust_secrets
from trustwire import names
from trustwire.k8s.resources import SECRETS, decode_data
from trustwire.plan.packing import SECRET_DATA_LIMIT

pytestmark = pytest.mark.integration

SPOKES = 520


async def test_a_hub_of_520_peers_is_ready_with_its_trust_split_and_the_usual_files(cluster: Cluster) -> None:
    await cluster.apply(deployment("hub", NS))
    await cluster.apply(identity("hub", NS, workloads=[{"kind": "Deployment", "name": "hub"}]))
    for i in range(SPOKES):
        await cluster.apply(identity(f"spoke-{i}", NS))
        await cluster.apply(relationship(f"hub-spoke-{i}", NS, ("hub", None), (f"spoke-{i}", None)))
    await cluster.wait_for("ServiceIdentity", NS, "hub", lambda b: ready_with_peers(b, SPOKES), timeout=600,
                           what=f"Ready with {SPOKES} peers")
    await cluster.settle(timeout=120)
    split = await trust_secrets(cluster, "hub")
    sizes = {name: sum(len(v) for v in data.values()) for name, data in split.items()}
    assert len(split) > 1 and sum(sizes.values()) > SECRET_DATA_LIMIT, sizes
    assert all(size <= SECRET_DATA_LIMIT for size in sizes.values()), sizes
    files = await projected_files(cluster, "hub")
    spoke_files = {**decode_data(SECRETS, await cluster.client.get(SECRETS, NS, names.credentials_secret("spoke-0"))),
                   **decode_data(SECRETS, await cluster.client.get(SECRETS, NS, names.trust_secret("spoke-0")))}
    assert set(files) == set(spoke_files)
    assert len(files["peers.json"]) > 0 and files["peers.json"].count(b'"relationship"') == SPOKES
