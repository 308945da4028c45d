"""Who an Enrollment's watch event wakes: its own pass, and the identity whose peers.json shows it."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from trustwire.controller.enrollments import EnrollmentCache
from trustwire.model import IdentityRef

CONNECTOR, OTHER = IdentityRef("erp", "connector"), IdentityRef("erp", "other")
CERT = {"serial": "0a", "fingerprint": "ab" * 32, "notAfter": "2099-01-01T00:00:00Z"}


def _body(identity: str = "connector", **status: Any) -> dict[str, Any]:
    return {"apiVersion": "trustwire.io/v1alpha1", "kind": "Enrollment",
            "metadata": {"name": "sap", "namespace": "erp", "generation": 1, "resourceVersion": "1"},
            "spec": {"identity": identity, "subject": {"commonName": "sap"}}, "status": status}


def _changed(body: dict[str, Any], **status: Any) -> dict[str, Any]:
    new = copy.deepcopy(body)
    new["status"].update(status)
    new["metadata"]["resourceVersion"] = "2"
    return new


ISSUED = _body(phase="TokenIssued", token={"sha256": "cd" * 32, "expiresAt": "2099-01-01T00:00:00Z"})


@pytest.mark.parametrize(("before", "after", "own", "woken"), [
    (None, ISSUED, True, {CONNECTOR}),  # new
    (ISSUED, _changed(ISSUED, conditions=[{"type": "Ready", "status": "False"}]), False, set()),  # our own echo
    (ISSUED, _changed(ISSUED, lastSeen="2026-01-01T00:00:00Z"), False, set()),  # the server's lastSeen
    (ISSUED, _changed(ISSUED, phase="Enrolled", token=None, certificate=CERT), True, {CONNECTOR}),  # enrolled
    (ISSUED, _body("other", **ISSUED["status"]), True, {CONNECTOR, OTHER}),  # moved to another identity
])
def test_who_an_event_wakes(before: dict[str, Any] | None, after: dict[str, Any], own: bool,
                            woken: set[IdentityRef]) -> None:
    cache = EnrollmentCache()
    if before is not None:
        cache.observed(before, deleted=False)
    assert cache.observed(after, deleted=False) == (own, woken)


def test_a_deletion_wakes_its_identity_and_forgets_it() -> None:
    cache = EnrollmentCache()
    cache.observed(_changed(ISSUED, phase="Enrolled", certificate=CERT), deleted=False)
    assert cache.observed(ISSUED, deleted=True) == (True, {CONNECTOR})
    assert cache.of(CONNECTOR) == [] and cache.enrolled(CONNECTOR, datetime(2026, 1, 1, tzinfo=UTC)) == []


def test_the_identity_sees_only_valid_unrevoked_applications() -> None:
    cache = EnrollmentCache()
    cache.observed(_changed(ISSUED, phase="Enrolled", certificate=CERT), deleted=False)
    (entry,) = cache.enrolled(CONNECTOR, datetime(2026, 1, 1, tzinfo=UTC))
    assert (entry["enrollment"], entry["serial"]) == ("sap", "0a")
    assert cache.enrolled(CONNECTOR, datetime(2099, 1, 1, tzinfo=UTC)) == []
    assert cache.enrolled(OTHER, datetime(2026, 1, 1, tzinfo=UTC)) == []
