"""The operator's side of enrollment on the real control plane, under the chart's ServiceAccount:
the one-time token (only its hash in status), renew-token, expiry, revocation, refused specs,
a quiet steady state, and enrolled applications in their identity's peers.json.

The server's part (consuming tokens, issuing certificates) is simulated where needed by
writing the Enrollment's status as ``trustwire serve`` does: certificate set, token removed,
phase Enrolled.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
from typing import Any

import pytest

from tests.cluster.proxy import Fault, Recorded
from tests.integration.harness import Cluster, condition, enrollment, identity, until
from trustwire import names
from trustwire.k8s.resources import ENROLLMENTS, SECRETS
from trustwire.runtime import OperatorOptions

pytestmark = pytest.mark.integration

NS = "erp"
PUBLIC_URL = "https://enroll.example.com"
TOKEN_SECRET = names.enrollment_token_secret("sap")


@pytest.fixture
def operator_options() -> OperatorOptions:
    return OperatorOptions(workers=4, resync_interval=3600.0, public_url=PUBLIC_URL)


async def _connector(cluster: Cluster, enabled: bool = True) -> None:
    await cluster.apply(identity("connector", NS, enrollment={"enabled": enabled}))
    await cluster.wait_condition("ServiceIdentity", NS, "connector", "Ready")


async def _token(cluster: Cluster, previous: bytes | None = None) -> tuple[bytes, dict[str, Any]]:
    """The token in the Secret once status holds its hash (a different one than ``previous``)."""
    async def issued() -> tuple[bytes, dict[str, Any]] | None:
        data = await cluster.data("Secret", NS, TOKEN_SECRET)
        body = await cluster.get("Enrollment", NS, "sap") or {}
        token = data.get("token")
        sha = ((body.get("status") or {}).get("token") or {}).get("sha256")
        if token and token != previous and sha == hashlib.sha256(token).hexdigest():
            return token, body
        return None
    return await until(issued, "a token in the Secret whose hash status holds", timeout=30)


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)


async def test_a_token_is_issued_into_the_secret_and_only_its_hash_into_status(
        cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trustwire")
    await _connector(cluster)
    await cluster.apply(enrollment("sap", NS, "connector", "sap-prod", tokenTTL="15m"))
    token, body = await _token(cluster)
    assert token.startswith(b"tw1.") and len(token) <= 1024
    secret = await cluster.get("Secret", NS, TOKEN_SECRET)
    assert secret is not None and secret["type"] == "Opaque"
    assert secret["metadata"]["labels"] == {names.MANAGED_BY: names.MANAGER, names.ENROLLMENT_LABEL: "sap"}
    (owner,) = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Enrollment", "sap", body["metadata"]["uid"])
    assert (await cluster.data("Secret", NS, TOKEN_SECRET))["url"] == f"{PUBLIC_URL}/v1/info".encode()
    status = body["status"]
    assert status["phase"] == "TokenIssued" and status["observedGeneration"] == body["metadata"]["generation"]
    assert set(status["token"]) == {"sha256", "expiresAt"}
    assert condition(body, "Enrolled")["reason"] == "TokenIssued"  # type: ignore[index]
    assert condition(body, "Reconciling")["status"] == "True"  # type: ignore[index]
    events = await cluster.events(NS, "sap")
    assert [e["reason"] for e in events] == ["TokenIssued"]
    random_part = token.split(b".")[2]
    for where, text in (("status", json.dumps(status)), ("events", json.dumps(events)),
                        ("the operator's log", _logged(caplog))):
        assert token.decode() not in text and random_part.decode() not in text, f"the token is in {where}"


async def test_renew_token_replaces_the_token_once(cluster: Cluster) -> None:
    await _connector(cluster)
    await cluster.apply(enrollment("sap", NS, "connector"))
    first, body = await _token(cluster)
    await cluster.apply({**enrollment("sap", NS, "connector"),
                         "metadata": {"name": "sap", "namespace": NS,
                                      "annotations": {names.RENEW_TOKEN_ANNOTATION: "2026-03-01T12:00:00Z"}}})
    second, renewed = await _token(cluster, previous=first)
    assert renewed["status"]["token"]["sha256"] != body["status"]["token"]["sha256"]
    secret = await cluster.get("Secret", NS, TOKEN_SECRET)
    assert secret["metadata"]["annotations"][names.RENEW_TOKEN_HANDLED_ANNOTATION] == "2026-03-01T12:00:00Z"  # type: ignore[index]
    await cluster.settle()
    assert (await cluster.data("Secret", NS, TOKEN_SECRET))["token"] == second

    async def issued() -> list[str] | None:  # Events are posted after the writes they tell of
        reasons = [e["reason"] for e in await cluster.events(NS, "sap")]
        return reasons if len(reasons) >= 2 else None

    assert await until(issued, "two TokenIssued Events", timeout=10) == ["TokenIssued", "TokenIssued"]


async def test_an_unused_token_expires(cluster: Cluster) -> None:
    await _connector(cluster)
    await cluster.apply(enrollment("sap", NS, "connector", tokenTTL="10s"))
    await _token(cluster)
    body = await cluster.wait_condition("Enrollment", NS, "sap", "Stalled", reason="TokenExpired", timeout=30)
    assert body["status"]["phase"] == "Expired"
    assert "--renew-token" in condition(body, "Enrolled")["message"]  # type: ignore[index]
    warnings = await cluster.events_of(NS, "sap", "TokenExpired")
    assert [e["type"] for e in warnings] == ["Warning"]


async def test_revoked_deletes_the_token_secret_and_drops_the_token(cluster: Cluster) -> None:
    await _connector(cluster)
    await cluster.apply(enrollment("sap", NS, "connector"))
    await _token(cluster)
    await cluster.apply(enrollment("sap", NS, "connector", revoked=True))
    body = await cluster.wait_for("Enrollment", NS, "sap", lambda b: (b or {}).get("status", {}).get("phase")
                                  == "Revoked", what="to be Revoked")
    assert "token" not in body["status"]  # type: ignore[index]
    await cluster.wait_for("Secret", NS, TOKEN_SECRET, lambda b: b is None, what="to be deleted")
    assert condition(body, "Stalled")["reason"] == "Revoked"  # type: ignore[index]
    assert await cluster.events_of(NS, "sap", "Revoked")


@pytest.mark.parametrize(("enabled", "reason", "field"), [
    (None, "IdentityNotFound", "spec.identity: ServiceIdentity erp/connector does not exist"),
    (False, "EnrollmentNotEnabled", "spec.enrollment.enabled: true"),
])
async def test_a_bad_identity_stalls_naming_the_field_then_recovers(
        cluster: Cluster, enabled: bool | None, reason: str, field: str) -> None:
    if enabled is not None:
        await _connector(cluster, enabled)
    await cluster.apply(enrollment("sap", NS, "connector"))
    body = await cluster.wait_condition("Enrollment", NS, "sap", "Stalled", reason=reason)
    assert field in condition(body, "Enrolled")["message"]  # type: ignore[index]
    assert await cluster.get("Secret", NS, TOKEN_SECRET) is None
    posted = await cluster.events_of(NS, "sap", reason)
    assert [e["type"] for e in posted] == ["Warning"] and field in posted[0]["message"]
    await _connector(cluster)  # fixed: the identity's change wakes its Enrollment
    await _token(cluster)


async def test_a_secret_trustwire_does_not_manage_is_never_overwritten(cluster: Cluster) -> None:
    await _connector(cluster)
    theirs = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": TOKEN_SECRET, "namespace": NS},
              "data": {"token": "dGhlaXJz"}}
    await cluster.apply(theirs)
    await cluster.apply(enrollment("sap", NS, "connector"))
    body = await cluster.wait_condition("Enrollment", NS, "sap", "Stalled", reason="NameConflict")
    assert "not managed by trustwire" in condition(body, "Enrolled")["message"]  # type: ignore[index]
    assert "phase" not in body["status"] and "token" not in body["status"]
    assert (await cluster.data("Secret", NS, TOKEN_SECRET)) == {"token": b"theirs"}


async def test_a_resync_of_settled_enrollments_writes_nothing(cluster: Cluster) -> None:
    await _connector(cluster)
    await cluster.apply(enrollment("sap", NS, "connector"))
    await cluster.apply(enrollment("orphan", NS, "nobody"))
    await _token(cluster)
    await cluster.wait_condition("Enrollment", NS, "orphan", "Stalled", reason="IdentityNotFound")
    await cluster.settle()
    before = len(cluster.operator_writes())
    cluster.controller.resync_all()
    await cluster.settle()
    assert cluster.controller.reconciles.get("enrollment", 0) > 0
    assert [f"{r.method} {r.path}" for r in cluster.operator_writes()[before:]] == []


async def test_an_enrolled_application_shows_in_peers_json_until_revoked(cluster: Cluster) -> None:
    await _connector(cluster)
    await cluster.apply(enrollment("sap", NS, "connector", "sap-prod", subject={
        "commonName": "sap-prod", "organization": ["Acme"]}))
    await _token(cluster)
    certificate = {"serial": "5a1f03", "fingerprint": "sha256:" + "ab" * 32, "notAfter": "2099-01-01T00:00:00Z"}
    # what trustwire serve writes when it issues the certificate
    await cluster.client.merge_patch(ENROLLMENTS, NS, "sap", {"status": {
        "phase": "Enrolled", "token": None, "certificate": certificate, "renewals": 0}}, subresource="status")

    async def peers() -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = json.loads(
            (await cluster.data("Secret", NS, names.trust_secret("connector"))).get("peers.json", b"[]"))
        return listed

    expected = {"enrollment": "sap", "namespace": NS, "subject": "O=Acme,CN=sap-prod", "serial": "5a1f03",
                "fingerprint": "sha256:" + "ab" * 32, "notAfter": "2099-01-01T00:00:00Z"}
    await until(lambda: _has(peers, expected), "the enrolled application in peers.json", timeout=30)
    body = await cluster.wait_condition("Enrollment", NS, "sap", "Ready")
    assert condition(body, "Enrolled")["message"] == "certificate 5a1f03 valid until 2099-01-01T00:00:00Z"  # type: ignore[index]
    await cluster.apply(enrollment("sap", NS, "connector", "sap-prod", revoked=True, subject={
        "commonName": "sap-prod", "organization": ["Acme"]}))
    await until(lambda: _lacks(peers), "peers.json without the revoked application", timeout=30)
    assert (await cluster.get("Enrollment", NS, "sap"))["status"]["certificate"] == certificate  # type: ignore[index]
    assert await cluster.client.get(SECRETS, NS, TOKEN_SECRET) is None


async def _has(peers: Any, expected: dict[str, Any]) -> bool:
    return expected in await peers()


async def _lacks(peers: Any) -> bool:
    return not [p for p in await peers() if p.get("enrollment") == "sap"]


async def _cli(cluster: Cluster, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trustwire.cli", "enroll", *args, "--kubeconfig", str(cluster.plane.admin_kubeconfig),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_trustwire_enroll_prints_the_url_and_token_and_renews_it(cluster: Cluster) -> None:
    await _connector(cluster)
    await cluster.apply(enrollment("sap", NS, "connector"))
    code, out, err = await _cli(cluster, "sap", "-n", NS, "-o", "json")
    assert code == 0, err
    first = json.loads(out)
    token, body = await _token(cluster)
    assert first == {"enrollment": f"{NS}/sap", "url": f"{PUBLIC_URL}/v1/info", "token": token.decode(),
                     "expiresAt": body["status"]["token"]["expiresAt"]}
    code, out, err = await _cli(cluster, "sap", "-n", NS, "--renew-token")
    assert code == 0, err
    fresh, renewed = await _token(cluster, previous=token)
    assert out.splitlines() == [f"Connector URL: {PUBLIC_URL}/v1/info", f"Token:         {fresh.decode()}",
                                f"Expires:       {renewed['status']['token']['expiresAt']}"]
    assert (await _cli(cluster, "absent", "-n", NS))[0] == 3
    await cluster.apply(enrollment("sap", NS, "connector", revoked=True))
    await cluster.wait_condition("Enrollment", NS, "sap", "Stalled", reason="Revoked")
    code, out, err = await _cli(cluster, "sap", "-n", NS, "--renew-token", "--timeout", "5")
    assert (code, out) == (1, "") and "Revoked" in err


async def test_a_status_the_server_wrote_meanwhile_is_never_overwritten(cluster: Cluster) -> None:
    """The pass reads the Enrollment; before it writes, the server records a request
    (``lastSeen``): the operator's status write, conditional on the version it read, is
    refused (409), and the pass runs again on what the server wrote."""
    await _connector(cluster)
    path = f"/apis/trustwire.io/v1alpha1/namespaces/{NS}/enrollments/sap"
    read: list[Recorded] = []

    def hold_first_read(record: Recorded) -> Fault | None:
        operator = record.user_agent.startswith("trustwire-operator")
        if record.method == "GET" and record.path == path and operator and not read:
            read.append(record)
            return Fault(delay=2.0)
        return None

    cluster.proxy.fault = hold_first_read
    await cluster.apply(enrollment("sap", NS, "connector"))
    await until(lambda: read and read[0].status == 200, "the operator's read of the Enrollment")
    await cluster.client.merge_patch(ENROLLMENTS, NS, "sap", {"status": {"lastSeen": "2026-03-01T12:00:00Z"}},
                                     subresource="status")
    _, body = await _token(cluster)
    cluster.proxy.fault = None
    assert body["status"]["lastSeen"] == "2026-03-01T12:00:00Z"
    status_writes = [r.status for r in cluster.operator_writes() if r.path == f"{path}/status"]
    assert status_writes[0] == 409 and 200 in status_writes
    creates = [r for r in cluster.operator_writes() if r.method == "POST" and r.path.endswith("/secrets")
               and (r.data or {}).get("metadata", {}).get("name") == TOKEN_SECRET]
    assert len(creates) == 1
