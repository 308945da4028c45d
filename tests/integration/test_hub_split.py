"""A hub whose trust outgrows one Secret, on the real control plane: its trust files split
across Secrets that its pods' one projected volume shows as the usual files.

The operator runs with a small per-Secret budget, so a few dozen peers force the split
(the 1,000-peer hub's material is proven by tests/interop/test_hub_split.py and the
benchmark); the API server, RBAC, the garbage collector and the Deployment controller are real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jwcrypto import jwk as jwc_jwk
from jwcrypto import jwt as jwc_jwt

from tests.integration.harness import Cluster, deployment, identity, ready_with_peers, relationship, until
from tests.interop.conftest import now_utc, require_tool, run
from trustwire import names, pki
from trustwire.k8s.resources import SECRETS, decode_data
from trustwire.pki import JwtAlgorithm
from trustwire.runtime import OperatorOptions

pytestmark = pytest.mark.integration

NS = "gateway"
SPOKES = 24
#: ~2.1 KB per peer: two dozen peers need ~50 KB, and no single file exceeds ~17 KB
BUDGET = 24 * 1024


@pytest.fixture
def operator_options() -> OperatorOptions:
    return OperatorOptions(workers=4, resync_interval=3600.0, secret_budget=BUDGET)


async def trust_secrets(cluster: Cluster, ident: str) -> dict[str, dict[str, bytes]]:
    """Every trust Secret of ``ident`` that exists, by name, decoded."""
    found = {}
    for name in names.trust_secrets(ident):
        body = await cluster.client.get(SECRETS, NS, name)
        if body is not None:
            found[name] = decode_data(SECRETS, body)
    return found


async def projected_files(cluster: Cluster, workload: str) -> dict[str, bytes]:
    """What the pods' projected volume shows: the keys of each Secret it lists, in one directory."""
    deploy = await cluster.get("Deployment", NS, workload)
    assert deploy is not None
    volume = next(v for v in deploy["spec"]["template"]["spec"]["volumes"] if v["name"] == names.VOLUME_NAME)
    files: dict[str, bytes] = {}
    for source in volume["projected"]["sources"]:
        data = decode_data(SECRETS, await cluster.client.get(SECRETS, NS, source["secret"]["name"]))
        assert not files.keys() & data.keys(), "a file in two of the projected Secrets"
        files |= data
    return files


async def test_a_hub_beyond_one_secret_is_ready_split_and_its_pods_see_the_usual_files(
    cluster: Cluster, tmp_path: Path
) -> None:
    await cluster.apply(deployment("hub", NS))
    await cluster.apply(identity("hub", NS, workloads=[{"kind": "Deployment", "name": "hub"}],
                                 keystores={"formats": ["PKCS12", "JKS"]}))
    for i in range(SPOKES):
        await cluster.apply(identity(f"spoke-{i}", NS, keystores={"formats": ["PKCS12", "JKS"]}))
        await cluster.apply(relationship(f"hub-spoke-{i}", NS, ("hub", None), (f"spoke-{i}", None)))
    await cluster.wait_for("ServiceIdentity", NS, "hub", lambda b: ready_with_peers(b, SPOKES), timeout=120,
                           what=f"Ready with {SPOKES} peers")
    await cluster.settle()

    split = await trust_secrets(cluster, "hub")
    assert len(split) > 1, "the hub's trust needs more than one Secret"
    assert all(sum(len(v) for v in data.values()) <= BUDGET for data in split.values())
    for name in split:  # ours: labelled, owned by the identity
        body = await cluster.client.get(SECRETS, NS, name)
        assert body is not None and body["metadata"]["labels"][names.IDENTITY_LABEL] == "hub"
        assert [o["kind"] for o in body["metadata"]["ownerReferences"]] == ["ServiceIdentity"]
    # the pods see the same file names as an identity whose trust fits one Secret (a spoke's)
    files = await projected_files(cluster, "hub")
    spoke_files = {**decode_data(SECRETS, await cluster.client.get(SECRETS, NS, names.credentials_secret("spoke-0"))),
                   **decode_data(SECRETS, await cluster.client.get(SECRETS, NS, names.trust_secret("spoke-0")))}
    assert set(files) == set(spoke_files)
    hub = await cluster.get("ServiceIdentity", NS, "hub")
    assert hub is not None
    deploy = await cluster.get("Deployment", NS, "hub")
    assert deploy is not None
    assert deploy["spec"]["template"]["metadata"]["annotations"][names.MATERIAL_HASH_ANNOTATION] == \
        hub["status"]["materialHash"]

    # interop on the split material, as the pod reads it
    for file, value in files.items():
        (tmp_path / file).write_bytes(value)
    openssl = require_tool("openssl")
    spoke_leaf = tmp_path / "spoke-leaf.pem"
    spoke_leaf.write_bytes(spoke_files["tls.crt"])
    verified = run([openssl, "verify", "-CAfile", str(tmp_path / "trust-bundle.pem"), str(spoke_leaf)])
    assert verified.returncode == 0, verified.stdout + verified.stderr
    keytool = require_tool("keytool")
    for file, storetype in (("truststore.p12", "PKCS12"), ("truststore.jks", "JKS")):
        listed = run([keytool, "-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC", "-list", "-keystore",
                      str(tmp_path / file), "-storepass", files["truststore.password"].decode(),
                      "-storetype", storetype], timeout=120)
        assert listed.returncode == 0 and f"Your keystore contains {SPOKES} entries" in listed.stdout, listed.stdout
    keyset = jwc_jwk.JWKSet.from_json(files["peers.jwks"].decode())
    key = pki.load_private_key(spoke_files["jwt.key"])
    token = pki.sign_token(key, JwtAlgorithm.ES256, spoke_files["jwt.kid"].decode(), {"iss": "spoke-0", "aud": "hub"},
                           now=now_utc())
    claims = jwc_jwt.JWT(jwt=token, key=keyset, check_claims={"iss": "spoke-0", "aud": "hub", "exp": None}).claims
    assert json.loads(claims)["aud"] == "hub"

    # a resync of the converged hub writes nothing
    writes_before = len(cluster.operator_writes())
    for _ in range(3):
        cluster.controller.resync_all()
        await cluster.settle()
    writes = cluster.operator_writes()[writes_before:]
    assert writes == [], [f"{w.method} {w.path}" for w in writes]

    # most spokes leave: the trust fits one Secret again, the split Secrets go, the pods see the same names
    for i in range(4, SPOKES):
        await cluster.delete("TrustRelationship", NS, f"hub-spoke-{i}")
    await cluster.wait_for("ServiceIdentity", NS, "hub", lambda b: ready_with_peers(b, 4), timeout=60,
                           what="Ready with 4 peers")

    async def back_in_one() -> bool | None:
        return list(await trust_secrets(cluster, "hub")) == [names.trust_secret("hub")] or None

    await until(back_in_one, "the split trust Secrets to be deleted", timeout=30)
    await cluster.settle()
    assert set(await projected_files(cluster, "hub")) == set(spoke_files)

    # split again, then deleting the hub removes every trust Secret it had
    for i in range(4, SPOKES):
        await cluster.apply(relationship(f"hub-spoke-{i}", NS, ("hub", None), (f"spoke-{i}", None)))
    await cluster.wait_for("ServiceIdentity", NS, "hub", lambda b: ready_with_peers(b, SPOKES), timeout=120,
                           what=f"Ready with {SPOKES} peers again")
    assert len(await trust_secrets(cluster, "hub")) > 1
    await cluster.delete("ServiceIdentity", NS, "hub")

    async def all_gone() -> bool | None:
        return not await trust_secrets(cluster, "hub") or None

    await until(all_gone, "the hub's trust Secrets to be deleted", timeout=60)
