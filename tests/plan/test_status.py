"""trustwire.plan.status: to_dict writes the status shape readers rely on; from_dict reads it back
and tolerates what it does not understand."""

from __future__ import annotations

from typing import Any

import pytest

from trustwire.plan.status import (
    CARotationStatus,
    IdentityStatus,
    JwtRotationStatus,
    PeerStatus,
    RelationshipStatus,
    RotationStatus,
    TrustStatus,
    WorkloadStatus,
    with_conditions,
)

FULL: dict[str, Any] = {
    "spiffeId": "spiffe://cluster.local/ns/gov/sid/dgc", "issuer": "https://dgc.example",
    "ca": {"source": "SelfSigned", "serial": "ab", "fingerprint": "f1", "notBefore": "2031-01-01T00:00:00Z",
           "notAfter": "2032-01-01T00:00:00Z", "renewalTime": "2031-12-02T00:00:00Z"},
    "certificate": {"serial": "cd", "fingerprint": "f2", "notAfter": "2031-02-01T00:00:00Z",
                    "renewalTime": "2031-01-21T00:00:00Z", "dnsNames": ["dgc", "dgc.gov"]},
    "jwt": {"kid": "k1", "algorithm": "ES256", "publishedKids": ["k1", "k2"], "rotationTime": "2031-02-01T00:00:00Z"},
    "peers": [{"identity": "jobserver", "namespace": "jobs", "relationship": "gov/r", "mtls": True, "jwt": False,
               "sharedSecret": False}],
    "peerCount": 1,
    "rotation": {"ca": {"phase": "Distributing", "since": "2031-01-01T00:00:00Z", "next": "f3",
                        "waitingFor": "jobs/jobserver does not trust the next CA yet"},
                 "jwt": {"phase": "Publishing", "since": "2031-01-01T00:00:00Z", "nextKid": "k2"},
                 "handledRequest": "ca:1"},
    "trust": {"caFingerprints": ["f9"], "kids": ["k9"]},
    "workloads": [{"kind": "Deployment", "name": "web", "rolloutGeneration": 3, "state": "Wired", "message": "",
                   "rolledOut": True},
                  {"kind": "Deployment", "name": "gone", "state": "NotFound", "message": "x", "rolledOut": False}],
    "materialHash": "0123", "rolledOut": True,
    "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                    "lastTransitionTime": "2031-01-01T00:00:00Z"}],
    "observedGeneration": 4,
}


def test_a_full_status_reads_and_writes_back_exactly() -> None:
    status = IdentityStatus.from_dict(FULL)
    assert status.to_dict() == FULL
    assert status.peer_count == 1 and status.distributed == frozenset({"gov/r"})
    assert status.rotation is not None and status.rotation.handled_request == "ca:1"


def test_absent_parts_stay_absent() -> None:
    assert IdentityStatus().to_dict() == {"conditions": []}
    assert IdentityStatus(conditions=({"type": "Ready"},), observed_generation=2).to_dict() == {
        "conditions": [{"type": "Ready"}], "observedGeneration": 2}
    rotation = RotationStatus(CARotationStatus("Idle"), JwtRotationStatus("Idle"))
    assert rotation.to_dict() == {"ca": {"phase": "Idle"}, "jwt": {"phase": "Idle"}}
    assert WorkloadStatus("Deployment", "w", "Pending", "material not ready", False).to_dict() == {
        "kind": "Deployment", "name": "w", "state": "Pending", "message": "material not ready", "rolledOut": False}


@pytest.mark.parametrize("garbage", [None, {}, {"peers": "many", "trust": [], "rolledOut": "yes",
                                                "conditions": [1, "x"], "rotation": 7, "observedGeneration": "2"}])
def test_from_dict_tolerates_what_it_cannot_read(garbage: Any) -> None:
    status = IdentityStatus.from_dict(garbage)
    assert (status.peers, status.trust, status.rolled_out, status.rotation) == (None, None, None, None)
    assert status.conditions == () and status.observed_generation is None and status.stalled_reason is None


def test_evidence_keeps_what_peers_read() -> None:
    stalled = {"type": "Stalled", "status": "True", "reason": "TrustTooLarge"}
    status = IdentityStatus.from_dict({**FULL, "conditions": [*FULL["conditions"], stalled]})
    evidence = status.evidence()
    assert evidence.trust == TrustStatus(("f9",), ("k9",)) and evidence.rolled_out is True
    assert evidence.distributed == status.distributed and evidence.stalled_reason == "TrustTooLarge"
    assert evidence.ca is None and evidence.workloads is None


def test_relationship_status_and_a_failed_pass() -> None:
    rel = RelationshipStatus(("gov/dgc", "jobs/jobserver"), ({"type": "Ready"},), 1)
    assert rel.to_dict() == {"identities": ["gov/dgc", "jobs/jobserver"], "conditions": [{"type": "Ready"}],
                             "observedGeneration": 1}
    assert RelationshipStatus.from_dict(rel.to_dict()) == rel
    assert with_conditions(FULL, [{"type": "Ready", "status": "False"}])["peers"] == FULL["peers"]
    assert PeerStatus.from_dict(FULL["peers"][0]).to_dict() == FULL["peers"][0]
