"""The Enrollment's token format, its record in status, the phases and the status body."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from trustwire.model import SpecError, parse_enrollment
from trustwire.plan import enrollment as enr
from trustwire.plan.objects import merge_patch

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_token_names_its_enrollment_and_carries_256_random_bits() -> None:
    secret = secrets.token_bytes(enr.TOKEN_BYTES)
    token = enr.make_token("erp-ns", "sap-prod", secret)
    prefix, where, rand = token.split(".")
    assert prefix == "tw1"
    assert base64.urlsafe_b64decode(where + "=" * (-len(where) % 4)) == b"erp-ns/sap-prod"
    assert base64.urlsafe_b64decode(rand + "=" * (-len(rand) % 4)) == secret
    assert "=" not in token and len(token) <= enr.MAX_TOKEN_LENGTH
    assert enr.token_target(token) == ("erp-ns", "sap-prod")


def _b64(text: bytes) -> str:
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


@pytest.mark.parametrize("token", [
    "", "tw1", "tw1..", f"tw2.{_b64(b'ns/name')}.abc", f"tw1.{_b64(b'ns/name')}.",
    f"tw1.{_b64(b'nsname')}.abc", f"tw1.{_b64(b'/name')}.abc", f"tw1.{_b64(b'ns/')}.abc",
    f"tw1.{_b64(b'ns/a/b')}.abc", "tw1.!!!.abc", f"tw1.{_b64(bytes([0xff, 0xfe]))}.abc",
    f"tw1.{_b64(b'ns/name')}.abc.def", f"tw1.{_b64(b'ns/name')}." + "a" * 1100,
])
def test_what_is_no_token_of_ours_names_no_enrollment(token: str) -> None:
    assert enr.token_target(token) is None


def test_the_hash_is_lowercase_hex_sha256_of_the_whole_token() -> None:
    token = enr.make_token("ns", "app", bytes(range(32)))
    assert enr.token_hash(token) == hashlib.sha256(token.encode()).hexdigest()
    assert enr.token_hash(token) != enr.token_hash(enr.make_token("ns", "app", bytes(range(1, 33))))


def test_the_token_record_holds_the_hash_and_expiry_only() -> None:
    token = enr.make_token("ns", "app", bytes(32))
    record = enr.TokenRecord.of(token, NOW, timedelta(minutes=10))
    assert record.to_dict() == {"sha256": enr.token_hash(token), "expiresAt": "2026-03-01T12:10:00Z"}
    assert enr.TokenRecord.from_status(record.to_dict()) == record
    assert token not in str(record.to_dict())


@pytest.mark.parametrize("value", [None, "x", {}, {"sha256": 1, "expiresAt": "2026-03-01T12:10:00Z"},
                                   {"sha256": "ab"}, {"sha256": "ab", "expiresAt": "soon"}])
def test_an_unreadable_token_record_is_none(value: object) -> None:
    assert enr.TokenRecord.from_status(value) is None


SPEC = {"identity": "erp", "subject": {"commonName": "sap-prod", "organization": ["Acme"]}, "tokenTTL": "10m"}
CERT = {"serial": "5a1f", "fingerprint": "ab" * 32, "notAfter": "2026-03-31T12:00:00Z"}


def _input(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None, *,
           enabled: bool | None = True, secret: enr.TokenSecret | None = None, renew: str | None = None,
           now: datetime = NOW, public_url: str | None = "https://enroll.example.com/") -> enr.EnrollmentInput:
    body = {"apiVersion": "trustwire.io/v1alpha1", "kind": "Enrollment",
            "metadata": {"name": "sap", "namespace": "erp-ns"}, "spec": {**SPEC, **(spec or {})}}
    try:
        parsed, error = parse_enrollment(body), None
    except SpecError as exc:
        parsed, error = None, str(exc)
    return enr.EnrollmentInput("erp-ns", "sap", parsed, error, status or {}, enabled, secret, renew, 3, now,
                               public_url)


def _fresh() -> bytes:
    return bytes(range(32))


FIRST = enr.make_token("erp-ns", "sap", _fresh())


def _enrolled(plan: enr.EnrollmentPlan) -> dict[str, Any]:
    return next(c for c in plan.status["conditions"] if c["type"] == "Enrolled")


def _ready(plan: enr.EnrollmentPlan) -> dict[str, Any]:
    return {c["type"]: c["status"] for c in plan.status["conditions"] if c["type"] in ("Ready", "Reconciling",
                                                                                         "Stalled")}


def test_the_first_pass_issues_a_token_into_the_secret_and_only_its_hash_into_status() -> None:
    plan = enr.plan_enrollment(_input(), _fresh)
    assert plan.secret is not None and plan.secret.name == "sap-trustwire-enrollment-token"
    assert plan.secret.data == {"token": FIRST.encode(), "url": b"https://enroll.example.com/v1/info"}
    assert plan.secret.type == "Opaque" and plan.secret.labels["trustwire.io/enrollment"] == "sap"
    assert plan.status["phase"] == "TokenIssued"
    assert plan.status["token"] == {"sha256": enr.token_hash(FIRST), "expiresAt": "2026-03-01T12:10:00Z"}
    assert plan.status["observedGeneration"] == 3
    assert _enrolled(plan)["reason"] == "TokenIssued" and _ready(plan) == {
        "Ready": "False", "Reconciling": "True", "Stalled": "False"}
    assert [e.reason for e in plan.events] == ["TokenIssued"]
    assert FIRST not in repr(plan.status) + repr(plan.events)
    assert FIRST.split(".")[2] not in repr(plan.status) + repr(plan.events)
    assert plan.wake_at == NOW + timedelta(minutes=10)


def _settle(plan: enr.EnrollmentPlan, handled: str = "") -> tuple[dict[str, Any], enr.TokenSecret]:
    assert plan.secret is not None
    data = plan.secret.data
    return plan.status, enr.TokenSecret(True, data["token"].decode(), data.get("url", b"").decode() or None,
                                        handled)


def test_a_resync_that_changes_nothing_plans_no_write() -> None:
    status, secret = _settle(enr.plan_enrollment(_input(), _fresh))
    again = enr.plan_enrollment(_input(status=status, secret=secret, now=NOW + timedelta(minutes=1)), _fresh)
    assert again.secret is None and not again.delete_secret and not again.events
    assert merge_patch(status, again.status) is None


def test_a_new_renew_token_value_issues_a_fresh_token_once() -> None:
    status, secret = _settle(enr.plan_enrollment(_input(), _fresh))
    other = lambda: bytes(range(1, 33))  # noqa: E731
    renewed = enr.plan_enrollment(_input(status=status, secret=secret, renew="1"), other)
    assert renewed.secret is not None and renewed.secret.annotations == {"trustwire.io/renew-token-handled": "1"}
    token = renewed.secret.data["token"].decode()
    assert token != FIRST and renewed.status["token"]["sha256"] == enr.token_hash(token)
    assert [e.reason for e in renewed.events] == ["TokenIssued"]
    status, secret = _settle(renewed, handled="1")
    assert enr.plan_enrollment(_input(status=status, secret=secret, renew="1"), other).secret is None


def test_a_fresh_token_leaves_the_issued_certificate_and_enrolled_phase() -> None:
    status = {"phase": "Enrolled", "certificate": CERT, "renewals": 2, "lastSeen": "2026-03-01T11:00:00Z"}
    secret = enr.TokenSecret(True, FIRST, "https://enroll.example.com/v1/info", "")
    plan = enr.plan_enrollment(_input(status=status, secret=secret, renew="again"), _fresh)
    assert plan.status["certificate"] == CERT and plan.status["renewals"] == 2
    assert plan.status["lastSeen"] == "2026-03-01T11:00:00Z"
    assert plan.status["phase"] == "Enrolled" and "token" in plan.status
    assert _enrolled(plan) | {"lastTransitionTime": ""} == {
        "type": "Enrolled", "status": "True", "reason": "Enrolled", "observedGeneration": 3,
        "message": "certificate 5a1f valid until 2026-03-31T12:00:00Z", "lastTransitionTime": ""}
    assert plan.wake_at == NOW + timedelta(minutes=10)


def test_an_unused_token_expires_at_expires_at_with_one_event() -> None:
    status, secret = _settle(enr.plan_enrollment(_input(), _fresh))
    later = NOW + timedelta(minutes=10)
    plan = enr.plan_enrollment(_input(status=status, secret=secret, now=later), _fresh)
    assert plan.status["phase"] == "Expired" and plan.secret is None
    assert _enrolled(plan)["reason"] == "TokenExpired" and _ready(plan)["Stalled"] == "True"
    assert "--renew-token" in _enrolled(plan)["message"]
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "TokenExpired")]
    again = enr.plan_enrollment(_input(status=plan.status, secret=secret, now=later + timedelta(hours=1)), _fresh)
    assert not again.events and merge_patch(plan.status, again.status) is None and again.wake_at is None


def test_an_expired_certificate_expires_the_enrollment() -> None:
    plan = enr.plan_enrollment(
        _input(status={"phase": "Enrolled", "certificate": CERT}, now=datetime(2026, 4, 1, tzinfo=UTC)), _fresh)
    assert plan.status["phase"] == "Expired" and _enrolled(plan)["reason"] == "CertificateExpired"


def test_revoked_drops_the_token_deletes_the_secret_and_issues_nothing_again() -> None:
    status, secret = _settle(enr.plan_enrollment(_input(), _fresh))
    plan = enr.plan_enrollment(_input({"revoked": True}, status=status, secret=secret, renew="x"), _fresh)
    assert plan.delete_secret and plan.secret is None
    assert "token" not in plan.status and plan.status["phase"] == "Revoked"
    assert [(e.type, e.reason) for e in plan.events] == [("Normal", "Revoked")]
    assert _ready(plan) == {"Ready": "False", "Reconciling": "False", "Stalled": "True"}
    again = enr.plan_enrollment(_input({"revoked": True}, status=plan.status, secret=None, renew="x"), _fresh)
    assert not again.delete_secret and not again.events and merge_patch(plan.status, again.status) is None


@pytest.mark.parametrize(("case", "reason", "field"), [
    (dict(enabled=None), "IdentityNotFound", "spec.identity"),
    (dict(enabled=False), "EnrollmentNotEnabled", "spec.enrollment.enabled"),
    (dict(spec={"tokenTTL": "48h"}), "InvalidSpec", "spec.tokenTTL"),
    (dict(secret=enr.TokenSecret(False, None, None, None)), "NameConflict", "not managed by trustwire"),
])
def test_what_a_human_must_fix_stalls_names_the_field_and_issues_nothing(
        case: dict[str, Any], reason: str, field: str) -> None:
    plan = enr.plan_enrollment(_input(**case), _fresh)
    assert plan.secret is None and not plan.delete_secret and "token" not in plan.status
    assert "phase" not in plan.status
    assert _enrolled(plan)["reason"] == reason and field in _enrolled(plan)["message"]
    assert _ready(plan)["Stalled"] == "True"
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", reason)]
    again = enr.plan_enrollment(_input(**{**case, "status": plan.status}), _fresh)
    assert not again.events and merge_patch(plan.status, again.status) is None


def test_a_new_public_url_rewrites_the_url_and_keeps_the_token() -> None:
    status, secret = _settle(enr.plan_enrollment(_input(public_url=None), _fresh))
    assert secret.url is None
    plan = enr.plan_enrollment(_input(status=status, secret=secret, public_url="https://x.example"), _fresh)
    assert plan.secret is not None and plan.secret.data == {"token": FIRST.encode(),
                                                             "url": b"https://x.example/v1/info"}
    assert merge_patch(status, plan.status) is None and not plan.events


def test_an_enrolled_application_is_seen_by_its_identity_until_revoked_or_expired() -> None:
    enrolled = _input({"subject": {"commonName": "sap-prod", "organization": ["Acme"],
                                   "organizationalUnit": ["ERP"]}}).enrollment
    assert enrolled is not None
    status = {"phase": "Enrolled", "certificate": CERT}
    assert enr.enrolled_entry(enrolled, status, NOW) == {
        "enrollment": "sap", "namespace": "erp-ns", "subject": "OU=ERP,O=Acme,CN=sap-prod", "serial": "5a1f",
        "fingerprint": "ab" * 32, "notAfter": "2026-03-31T12:00:00Z"}
    assert enr.enrolled_entry(enrolled, status, datetime(2026, 4, 1, tzinfo=UTC)) is None
    assert enr.enrolled_entry(enrolled, {"phase": "TokenIssued"}, NOW) is None
    revoked = _input({"revoked": True}).enrollment
    assert revoked is not None and enr.enrolled_entry(revoked, status, NOW) is None


def test_a_token_whose_secret_is_gone_before_use_is_issued_again() -> None:
    status, _ = _settle(enr.plan_enrollment(_input(), _fresh))
    plan = enr.plan_enrollment(_input(status=status, secret=None), lambda: bytes(range(1, 33)))
    assert plan.secret is not None and plan.status["token"]["sha256"] == enr.token_hash(
        plan.secret.data["token"].decode()) != status["token"]["sha256"]
    consumed = {**status, "phase": "Enrolled", "certificate": CERT}
    consumed.pop("token")
    assert enr.plan_enrollment(_input(status=consumed, secret=None), _fresh).secret is None


def test_a_revocation_takes_effect_when_its_identity_is_gone() -> None:
    status, secret = _settle(enr.plan_enrollment(_input(), _fresh))
    plan = enr.plan_enrollment(_input({"revoked": True}, status=status, secret=secret, enabled=None), _fresh)
    assert plan.delete_secret and "token" not in plan.status and plan.status["phase"] == "Revoked"
