"""Issue 5: the operator SIGKILLed at every rotation phase boundary resumes the rotation from
the state it stored, with the same outcome, and never creates a second next-CA.

The operator is ``trustwire run`` as a process of its own, with the chart's ServiceAccount
token, through the journaling proxy; the test's own watch records every version of the CA
Secret the apiserver stored."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.harness import History, ProcessCluster, identity, relationship
from trustwire import names, pki
from trustwire.k8s.resources import IDENTITIES, SECRETS
from trustwire.plan import rotation as rot

pytestmark = pytest.mark.integration

OPTIONS = ("--standalone", "--propagation-delay", "1.5")


def _phase(body: dict[str, Any] | None) -> str | None:
    phase: str | None = (((body or {}).get("status") or {}).get("rotation") or {}).get("ca", {}).get("phase")
    return phase


def _fingerprint(b64: str) -> str:
    return pki.fingerprint_sha256(pki.load_certificates(base64.b64decode(b64))[0])


def _trusts_only(fingerprint: str) -> Callable[[dict[str, Any] | None], bool]:
    def check(body: dict[str, Any] | None) -> bool:
        bundle = base64.b64decode((body or {}).get("data", {}).get("trust-bundle.pem", ""))
        return bool(bundle) and {pki.fingerprint_sha256(c) for c in pki.load_certificates(bundle)} == {fingerprint}
    return check


async def test_sigkill_at_each_ca_phase_boundary(process_cluster: ProcessCluster) -> None:
    cluster = process_cluster
    operator = cluster.spawn(*OPTIONS)
    async with History(cluster.client, [SECRETS]) as history:
        await operator.start()
        await cluster.apply(identity("alpha", "team"))
        await cluster.apply(identity("beta", "team"))
        await cluster.apply(relationship("ab", "team", ("alpha", None), ("beta", None)))
        await cluster.wait_condition("TrustRelationship", "team", "ab", "Ready")
        first_ca = (await cluster.get("ServiceIdentity", "team", "alpha"))["status"]["ca"]["fingerprint"]  # type: ignore[index]
        await cluster.client.merge_patch(IDENTITIES, "team", "alpha",
                                         {"metadata": {"annotations": {names.ROTATE_ANNOTATION: "ca:kill"}}})
        phases_seen = []
        for wanted in (rot.DISTRIBUTING, rot.RETIRING, rot.IDLE):
            def reached(b: dict[str, Any] | None, w: str = wanted) -> bool:
                return _phase(b) == w and (w != rot.IDLE or b["status"]["ca"]["fingerprint"] != first_ca)  # type: ignore[index]

            await cluster.wait_for("ServiceIdentity", "team", "alpha", reached, timeout=40, what=f"to reach {wanted}")
            phases_seen.append(wanted)
            await operator.kill()  # right at the boundary, before anything else happens
            await operator.start()
        final = (await cluster.get("ServiceIdentity", "team", "alpha"))["status"]  # type: ignore[index]
        await cluster.wait_for("Secret", "team", names.trust_secret("beta"), _trusts_only(final["ca"]["fingerprint"]),
                               what="to trust exactly the new CA")
        await cluster.settle()
        await history.sync()

    assert phases_seen == [rot.DISTRIBUTING, rot.RETIRING, rot.IDLE]
    # exactly one next CA was ever prepared, and it is the one that became active
    versions = [v.get("data") or {} for v in history.of("secrets", "team", names.ca_secret("alpha"))]
    nexts = {_fingerprint(data["next.crt"]) for data in versions if "next.crt" in data}
    actives = [_fingerprint(data["tls.crt"]) for data in versions]
    assert len(nexts) == 1, "a restarted operator must not prepare a second next-CA"
    assert list(dict.fromkeys(actives)) == [first_ca, *nexts]
    assert final["ca"]["fingerprint"] in nexts
    assert final["rotation"]["ca"] == {"phase": rot.IDLE}
    assert operator.starts == 4
