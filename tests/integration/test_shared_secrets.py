"""Shared secrets on the real control plane: a DataHub-style group (one system client id and
secret for the metadata service and all its callers), its template, rotation on demand."""

from __future__ import annotations

import base64

import pytest

from tests.integration.harness import Cluster, identity, ready_with_peers, relationship, until
from trustwire import names

pytestmark = pytest.mark.integration

NS = "datahub"
CALLERS = ("frontend", "actions")
MEMBERS = ("gms", *CALLERS)
GROUP = {"enabled": True, "group": "datahub-system", "clientId": "__datahub_system", "gracePeriod": "10s"}
ENV = ("{% set s = sharedSecrets['datahub-system'] %}"
       "DATAHUB_SYSTEM_CLIENT_ID={{ s.clientId }}\n"
       "DATAHUB_SYSTEM_CLIENT_SECRET={{ s.value }}\n")


async def _datahub(cluster: Cluster) -> None:
    await cluster.apply(identity("gms", NS, templates=[{"name": "datahub.env", "inline": ENV}]))
    for caller in CALLERS:
        await cluster.apply(identity(caller, NS))
        await cluster.apply(relationship(f"gms-{caller}", NS, ("gms", None), (caller, None), sharedSecret=GROUP))
    await cluster.wait_for("ServiceIdentity", NS, "gms", lambda b: ready_with_peers(b, 2), what="Ready with 2 peers")
    for caller in CALLERS:
        await cluster.wait_for("ServiceIdentity", NS, caller, lambda b: ready_with_peers(b, 1), what="Ready")
        await cluster.wait_condition("TrustRelationship", NS, f"gms-{caller}", "Ready")
    await cluster.settle()


async def _values(cluster: Cluster, file: str) -> dict[str, bytes | None]:
    return {m: (await cluster.data("Secret", NS, names.trust_secret(m))).get(file) for m in MEMBERS}


async def test_a_group_holds_one_printable_secret_and_a_template_renders_it(cluster: Cluster) -> None:
    await _datahub(cluster)
    values = await _values(cluster, "shared-datahub-system.key")
    (value,) = set(values.values())
    assert value is not None and value.isascii() and value.decode().isprintable()
    assert len(base64.urlsafe_b64decode(value + b"=")) == 32
    client_ids = await _values(cluster, "shared-datahub-system.client-id")
    assert set(client_ids.values()) == {b"__datahub_system"}
    env = (await cluster.data("Secret", NS, names.trust_secret("gms")))["datahub.env"].decode()
    assert env.splitlines() == ["DATAHUB_SYSTEM_CLIENT_ID=__datahub_system",
                                f"DATAHUB_SYSTEM_CLIENT_SECRET={value.decode()}"]
    group = await cluster.get("Secret", NS, names.shared_group_secret("datahub-system"))
    assert group is not None and not group["metadata"].get("ownerReferences")
    # the value is in the members' trust Secrets and the group's Secret only
    await cluster.apply(identity("outsider", NS))
    await cluster.wait_condition("ServiceIdentity", NS, "outsider", "Ready")
    outsider = await cluster.data("Secret", NS, names.trust_secret("outsider"))
    assert not [k for k in outsider if k.startswith("shared-")] and all(value not in v for v in outsider.values())
    for member in MEMBERS:
        public = await cluster.data("ConfigMap", NS, names.public_configmap(member))
        creds = await cluster.data("Secret", NS, names.credentials_secret(member))
        assert all(value not in v for v in (*public.values(), *creds.values())), member
    # kept while any relationship names the group, deleted with the last
    await cluster.delete("TrustRelationship", NS, "gms-frontend")
    await cluster.settle()
    assert await cluster.get("Secret", NS, names.shared_group_secret("datahub-system")) is not None
    assert (await _values(cluster, "shared-datahub-system.key"))["actions"] == value
    await cluster.delete("TrustRelationship", NS, "gms-actions")
    await cluster.wait_for("Secret", NS, names.shared_group_secret("datahub-system"), lambda b: b is None,
                           what="to be deleted with the group's last relationship")


async def test_rotation_on_demand_publishes_both_values_for_the_grace_then_drops_the_old(cluster: Cluster) -> None:
    await _datahub(cluster)
    (old,) = set((await _values(cluster, "shared-datahub-system.key")).values())
    rel = relationship("gms-frontend", NS, ("gms", None), ("frontend", None), sharedSecret=GROUP)
    rel["metadata"]["annotations"] = {names.ROTATE_ANNOTATION: "shared-secret:1"}
    await cluster.apply(rel)

    async def both() -> tuple[bytes, ...] | None:
        current = set((await _values(cluster, "shared-datahub-system.key")).values())
        previous = set((await _values(cluster, "shared-datahub-system.key.previous")).values())
        return (*current,) if len(current) == 1 and current != {old} and previous == {old} else None

    (new,) = await until(both, "every member holding the new value and the old one", timeout=30)
    events = await cluster.events_of(NS, "gms-frontend", "SharedSecretRotated")
    assert len(events) == 1 and events[0]["type"] == "Normal"
    assert new not in events[0]["message"].encode() and old not in events[0]["message"].encode()
    env = (await cluster.data("Secret", NS, names.trust_secret("gms")))["datahub.env"].decode()
    assert f"DATAHUB_SYSTEM_CLIENT_SECRET={new.decode()}" in env.splitlines()
    # the condition shows the grace period for as long as it lasts, not only on the pass that rotated
    cluster.controller.resync_all()
    await cluster.settle()
    await cluster.wait_condition("TrustRelationship", NS, "gms-frontend", "SharedSecretReady", reason="Rotated")

    async def dropped() -> bool | None:
        previous = await _values(cluster, "shared-datahub-system.key.previous")
        return True if set(previous.values()) == {None} else None

    await until(dropped, "the old value dropped from every member after the 10s grace", timeout=40)
    assert set((await _values(cluster, "shared-datahub-system.key")).values()) == {new}
    await cluster.wait_condition("TrustRelationship", NS, "gms-frontend", "SharedSecretReady", reason="Generated")
    # the same annotation value is handled: no second rotation
    cluster.controller.resync_all()
    await cluster.settle()
    assert set((await _values(cluster, "shared-datahub-system.key")).values()) == {new}
