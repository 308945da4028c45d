"""``spec.secretTemplate`` on the real control plane: the user's labels and annotations reach
every Secret of the identity (and only Secrets), a key dropped from the template leaves the
Secrets while keys other writers set stay, and nothing rolls: labels are not mounted."""

from __future__ import annotations

import pytest

from tests.integration.harness import Cluster, identity, until
from trustwire import names
from trustwire.k8s.resources import SECRETS

pytestmark = pytest.mark.integration

NS = "templated"
SECRETS_OF = (names.ca_secret("app"), names.credentials_secret("app"), names.trust_secret("app"))


async def _metadata(cluster: Cluster, name: str) -> tuple[dict[str, str], dict[str, str]]:
    body = await cluster.get("Secret", NS, name)
    assert body is not None, name
    return body["metadata"].get("labels") or {}, body["metadata"].get("annotations") or {}


async def test_template_labels_and_annotations_come_and_go_with_the_spec(cluster: Cluster) -> None:
    template = {"labels": {"velero.io/backup": "daily", "team": "payments"},
                "annotations": {"policies.kyverno.io/exempt": "true"}}
    await cluster.apply(identity("app", NS, secretTemplate=template))
    await cluster.wait_condition("ServiceIdentity", NS, "app", "Ready")
    for name in SECRETS_OF:
        labels, annotations = await _metadata(cluster, name)
        assert labels["velero.io/backup"] == "daily" and labels["team"] == "payments", name
        assert labels[names.MANAGED_BY] == names.MANAGER and labels[names.IDENTITY_LABEL] == "app", name
        assert annotations["policies.kyverno.io/exempt"] == "true", name
    public = await cluster.get("ConfigMap", NS, names.public_configmap("app"))
    assert public is not None and "velero.io/backup" not in (public["metadata"].get("labels") or {})

    # someone else labels a Secret too; then the template drops a label and the annotation
    await cluster.client.merge_patch(SECRETS, NS, names.trust_secret("app"),
                                     {"metadata": {"labels": {"owner": "someone-else"}}})
    await cluster.settle()
    writes_before = len(cluster.operator_writes())
    await cluster.apply(identity("app", NS, secretTemplate={"labels": {"team": "payments"}}))

    async def dropped() -> bool:
        for name in SECRETS_OF:
            labels, annotations = await _metadata(cluster, name)
            if "velero.io/backup" in labels or "policies.kyverno.io/exempt" in annotations:
                return False
        return True

    await until(dropped, "the dropped template keys to leave every Secret")
    await cluster.settle()
    for name in SECRETS_OF:
        labels, _ = await _metadata(cluster, name)
        assert labels["team"] == "payments" and labels[names.MANAGED_BY] == names.MANAGER, name
    labels, _ = await _metadata(cluster, names.trust_secret("app"))
    assert labels["owner"] == "someone-else", "another writer's label is never ours to remove"
    writes = [w for w in cluster.operator_writes()[writes_before:] if "/secrets/" in w.path]
    assert len(writes) == len(SECRETS_OF), [f"{w.method} {w.path}" for w in writes]  # one patch each, no more
    creds = await cluster.data("Secret", NS, names.credentials_secret("app"))
    assert creds["tls.crt"], "material is kept: only metadata changed"
