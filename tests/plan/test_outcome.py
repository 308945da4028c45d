"""trustwire.plan.outcome and the decisions it took over from the controller; the one password rule."""

from __future__ import annotations

import pytest

from trustwire.model import parse_identity
from trustwire.plan import conditions as cond
from trustwire.plan import outcome
from trustwire.plan.checks import Verdict, evaluate
from trustwire.plan.material import keystore_password
from trustwire.plan.reasons import PlannedEvent, Reason
from trustwire.plan.status import IdentityStatus, WorkloadStatus


@pytest.mark.parametrize(
    ("annotation", "handled", "wanted", "remembered"),
    [
        (None, None, None, None),
        ("ca", None, "ca", "ca"),
        ("ca", "ca", None, "ca"),  # acted on once
        ("jwt:2031-01-01", "jwt:2030", "jwt", "jwt:2031-01-01"),
        (" certificate :x", None, "certificate", " certificate :x"),
        ("everything", None, None, None),
        ("", "ca", None, "ca"),
    ],
)
def test_rotation_request(annotation: str | None, handled: str | None, wanted: str | None,
                          remembered: str | None) -> None:
    assert outcome.rotation_request(annotation, handled) == wanted
    assert outcome.handled_request(annotation, handled) == remembered


WIRED = WorkloadStatus("Deployment", "a", "Wired", "", True, 2)
MISSING = WorkloadStatus("Deployment", "b", "NotFound", "Deployment gov/b does not exist yet", False)
CONFLICT = WorkloadStatus("StatefulSet", "c", "Conflict", "volume trustwire is taken", False, 1)


@pytest.mark.parametrize(
    ("wanted", "mounted", "entries", "reason", "ok", "stalled"),
    [
        (False, True, [], "NoWorkloads", True, False),
        (True, False, [], "MaterialNotReady", False, False),
        (True, True, [WIRED], "Wired", True, False),
        (True, True, [WIRED, MISSING, CONFLICT], "WorkloadNotFound", False, False),
        (True, True, [CONFLICT, MISSING], "WorkloadConflict", False, True),
    ],
)
def test_workloads_ready(wanted: bool, mounted: bool, entries: list[WorkloadStatus], reason: str, ok: bool,
                         stalled: bool) -> None:
    check = outcome.workloads_ready(wanted, mounted, entries)
    assert (check.reason, check.ok, check.stalled) == (reason, ok, stalled)
    if reason == "Wired":
        assert check.message == "1 workload(s) wired"


@pytest.mark.parametrize(
    ("raw", "password"),
    [
        (b"changeit", "changeit"), (b"  with spaces inside \n", "with spaces inside"), (b"x", "x"),
        (b"", None), (None, None), (b"   ", None), (b"nul\x00byte", None), ("pässword".encode(), None),
    ],
)
def test_one_keystore_password_rule(raw: bytes | None, password: str | None) -> None:
    assert keystore_password(raw) == password


#: what a human must look at: repairs, an overdue outsider, and an Enrollment that cannot proceed
WARNINGS = {"CARepaired", "CertificateRepaired", "JwtKeyRepaired", "ExternalConfirmationOverdue", "TokenExpired",
            "IdentityNotFound", "EnrollmentNotEnabled", "NameConflict", "InvalidSpec", "CertificateExpired"}


@pytest.mark.parametrize("reason", list(Reason))
def test_each_reason_knows_its_event_type(reason: Reason) -> None:
    event = PlannedEvent.of(reason, "m")
    assert event.reason == reason.value
    assert event.type == ("Warning" if reason.value in WARNINGS else "Normal")


def test_the_evaluator_answers_with_the_first_check_that_fires() -> None:
    calls: list[str] = []

    def quiet(n: int) -> Verdict | None:
        calls.append("quiet")
        return None

    def fires(n: int) -> Verdict | None:
        calls.append("fires")
        return Verdict(Reason.CA_ISSUED, f"n={n}")

    assert evaluate((quiet, fires, fires), 3) == Verdict(Reason.CA_ISSUED, "n=3")
    assert calls == ["quiet", "fires"]
    assert evaluate((quiet,), 3) is None and evaluate((), 3) is None


@pytest.mark.parametrize(
    ("spec", "wired_before", "needed"),
    [
        ({}, [], False),  # everything it owns goes with it: the garbage collector is enough
        ({"workloads": [{"kind": "Deployment", "name": "a"}]}, [], True),  # to unwire them
        ({}, [WIRED], True),  # removed from the spec, still wired: the pass unwires, or deletion does
        ({"deletionPolicy": "Delete"}, [], True),  # the CA is kept unowned, so it is deleted by hand
        ({"deletionPolicy": "Retain"}, [], False),
    ],
)
def test_a_finalizer_only_where_deletion_needs_the_operator(
        spec: dict[str, object], wired_before: list[WorkloadStatus], needed: bool) -> None:
    body = {"apiVersion": "trustwire.io/v1alpha1", "kind": "ServiceIdentity",
            "metadata": {"name": "dgc", "namespace": "gov"}, "spec": spec}
    old = IdentityStatus(workloads=tuple(wired_before))
    assert outcome.needs_finalizer(parse_identity(body), old) is needed


PENDING = cond.waiting("PeerPending", "gov/b about to publish")
VALID = cond.passed("Valid")
CLASH = cond.stalled("NameConflict", "Secret gov/a-trustwire-trust exists and is not managed by trustwire")


@pytest.mark.parametrize(
    ("stored", "checks", "handled", "waits"),
    [
        (None, {"CAReady": VALID, "TrustReady": PENDING}, None, True),
        ({}, {"TrustReady": PENDING}, None, True),
        ({"observedGeneration": 1}, {"TrustReady": PENDING}, None, False),  # later changes are written at once
        (None, {"CAReady": VALID, "TrustReady": CLASH}, None, False),  # a human must see a stall now
        (None, {"TrustReady": PENDING}, "ca:1", False),  # a handled rotate request is state
    ],
)
def test_only_a_first_status_with_nothing_to_report_may_wait(
        stored: dict[str, object] | None, checks: dict[str, cond.Check], handled: str | None, waits: bool) -> None:
    assert outcome.first_status_may_wait(stored, checks, handled) is waits
