"""Enrollment of external applications: the one-time token, its record, the phases and the status.

A token is ``tw1.<base64url of namespace/name>.<base64url of 32 random bytes>``: it names
its Enrollment, so the server finds it with one read, and only the SHA-256 of the whole
token is ever stored in the Enrollment (the token itself only in the administrator's
Secret). Pure: the clock is a parameter and the token's randomness is handed in.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import functools
import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from trustwire import names
from trustwire.model import Enrollment, Subject
from trustwire.plan.checks import Verdict, evaluate
from trustwire.plan.conditions import Check, merge_conditions, passed, stalled, summarize, transitions, waiting
from trustwire.plan.material import DesiredObject
from trustwire.plan.reasons import PlannedEvent, Reason
from trustwire.times import parse_time, rfc3339

TOKEN_PREFIX = "tw1"  # noqa: S105 - a format marker
#: Longer than any token :func:`make_token` makes; a longer one is refused unread.
MAX_TOKEN_LENGTH = 1024
#: Random bytes in a token (256 bits: never guessed within a token's minutes).
TOKEN_BYTES = 32


class Phase(enum.StrEnum):
    TOKEN_ISSUED = "TokenIssued"  # noqa: S105 - a phase name
    ENROLLED = "Enrolled"
    EXPIRED = "Expired"
    REVOKED = "Revoked"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def make_token(namespace: str, name: str, secret: bytes) -> str:
    """The token naming Enrollment ``namespace/name`` with ``secret`` as its random part."""
    return f"{TOKEN_PREFIX}.{_b64(f'{namespace}/{name}'.encode())}.{_b64(secret)}"


def token_target(token: str) -> tuple[str, str] | None:
    """The (namespace, name) a token names, or None when it is no token of ours."""
    if len(token) > MAX_TOKEN_LENGTH:
        return None
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[2]:
        return None
    try:
        where = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    namespace, _, name = where.partition("/")
    return (namespace, name) if namespace and name and "/" not in name else None


def token_hash(token: str) -> str:
    """Lowercase hex SHA-256 of the whole token: all that status keeps of it."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class TokenRecord:
    """The outstanding token of an Enrollment, as ``status.token`` holds it."""

    sha256: str
    expires_at: datetime

    @classmethod
    def of(cls, token: str, now: datetime, ttl: timedelta) -> TokenRecord:
        return cls(token_hash(token), now + ttl)

    @classmethod
    def from_status(cls, value: object) -> TokenRecord | None:
        if not isinstance(value, dict) or not isinstance(value.get("sha256"), str):
            return None
        expires = parse_time(value.get("expiresAt"))
        return cls(value["sha256"], expires) if expires is not None else None

    def to_dict(self) -> dict[str, str]:
        return {"sha256": self.sha256, "expiresAt": rfc3339(self.expires_at)}


@dataclasses.dataclass(frozen=True)
class IssuedCertificate:
    """The application's current certificate, as the server records it in ``status.certificate``."""

    serial: str
    fingerprint: str
    not_after: datetime

    @classmethod
    def from_status(cls, value: object) -> IssuedCertificate | None:
        if not isinstance(value, dict):
            return None
        serial, fingerprint = value.get("serial"), value.get("fingerprint")
        not_after = parse_time(value.get("notAfter"))
        if not isinstance(serial, str) or not isinstance(fingerprint, str) or not_after is None:
            return None
        return cls(serial, fingerprint, not_after)


@dataclasses.dataclass(frozen=True)
class EnrollmentState:
    """What ``Enrollment.status`` says (never a token: only its hash)."""

    phase: Phase | None = None
    token: TokenRecord | None = None
    certificate: IssuedCertificate | None = None
    conditions: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_status(cls, status: object) -> EnrollmentState:
        d = status if isinstance(status, dict) else {}
        phase = d.get("phase")
        conditions = d.get("conditions")
        return cls(Phase(phase) if phase in set(Phase) else None, TokenRecord.from_status(d.get("token")),
                   IssuedCertificate.from_status(d.get("certificate")),
                   tuple(c for c in conditions if isinstance(c, Mapping)) if isinstance(conditions, list) else ())


@dataclasses.dataclass(frozen=True)
class TokenSecret:
    """The observed token Secret: whose it is, the token in it, and the request it answered."""

    managed: bool
    token: str | None
    url: str | None
    handled: str | None


@dataclasses.dataclass(frozen=True)
class EnrollmentInput:
    namespace: str
    name: str
    #: None when the spec does not parse (``spec_error`` says why)
    enrollment: Enrollment | None
    spec_error: str | None
    #: ``status`` as stored: the server's fields pass through the operator's writes
    status: Mapping[str, Any]
    #: the named identity: None when it does not exist; whether its spec.enrollment.enabled
    identity_enabled: bool | None
    secret: TokenSecret | None
    #: the ``trustwire.io/renew-token`` annotation, if set
    renew_request: str | None
    generation: int | None
    now: datetime
    #: ``--public-url`` of the operator: where ``trustwire serve`` is reached from outside
    public_url: str | None = None

    @functools.cached_property
    def state(self) -> EnrollmentState:
        return EnrollmentState.from_status(self.status)


@dataclasses.dataclass
class EnrollmentPlan:
    """What one pass does: the token Secret to write or delete, the status, the Events."""

    secret: DesiredObject | None
    delete_secret: bool
    status: dict[str, Any]
    events: list[PlannedEvent]
    wake_at: datetime | None


def _secret_name(e: EnrollmentInput) -> str:
    return f"{e.namespace}/{names.enrollment_token_secret(e.name)}"


# ---- checks that stop a pass: what a human must fix first --------------------------------
def spec_invalid(e: EnrollmentInput) -> Verdict | None:
    return Verdict(Reason.ENROLLMENT_INVALID, e.spec_error or "the spec is invalid") if e.enrollment is None else None


def identity_missing(e: EnrollmentInput) -> Verdict | None:
    if e.identity_enabled is not None or e.enrollment is None:
        return None
    return Verdict(Reason.ENROLLMENT_IDENTITY_NOT_FOUND,
                   f"spec.identity: ServiceIdentity {e.namespace}/{e.enrollment.identity} does not exist; name an "
                   "identity of this namespace with spec.enrollment.enabled: true")


def enrollment_not_enabled(e: EnrollmentInput) -> Verdict | None:
    if e.identity_enabled is not False or e.enrollment is None:
        return None
    return Verdict(Reason.ENROLLMENT_NOT_ENABLED,
                   f"spec.identity: ServiceIdentity {e.namespace}/{e.enrollment.identity} has no enrollment CA; "
                   "set its spec.enrollment.enabled: true")


def secret_not_ours(e: EnrollmentInput) -> Verdict | None:
    if e.secret is None or e.secret.managed:
        return None
    return Verdict(Reason.ENROLLMENT_NAME_CONFLICT,
                   f"Secret {_secret_name(e)} exists and is not managed by trustwire; the one-time token goes "
                   "there: rename or delete that Secret")


BLOCKERS = (spec_invalid, identity_missing, enrollment_not_enabled, secret_not_ours)


# ---- checks that issue a token ------------------------------------------------------------
def first_token(e: EnrollmentInput) -> Verdict | None:
    """Before the first token; and when its Secret is gone while the token is outstanding (the
    status is written before the Secret, so a pass cut off between the two leaves a token
    nobody holds)."""
    s = e.state
    lost = s.phase is Phase.TOKEN_ISSUED and e.secret is None
    if s.certificate is None and ((s.phase is None and s.token is None) or lost):
        return Verdict(Reason.TOKEN_ISSUED, f"one-time token issued into Secret {_secret_name(e)}")
    return None


def token_renewal_requested(e: EnrollmentInput) -> Verdict | None:
    handled = e.secret.handled if e.secret is not None else None
    if e.renew_request and e.renew_request != handled:
        return Verdict(Reason.TOKEN_ISSUED, f"fresh one-time token issued into Secret {_secret_name(e)} "
                                            f"({names.RENEW_TOKEN_ANNOTATION}); it replaces the outstanding one")
    return None


ISSUE_CHECKS = (first_token, token_renewal_requested)


# ---- the phase, and the Enrolled condition it gives ---------------------------------------
def phase_of(revoked: bool, token: TokenRecord | None, certificate: IssuedCertificate | None,
             stored: Phase | None, now: datetime) -> Phase | None:
    """Revoked by spec; Enrolled while the certificate is valid; TokenIssued while a token is;
    Expired once what was issued ran out (None only before the first token)."""
    if revoked:
        return Phase.REVOKED
    if certificate is not None and certificate.not_after > now:
        return Phase.ENROLLED
    if token is not None and token.expires_at > now:
        return Phase.TOKEN_ISSUED
    if certificate is None and token is None and stored is None:
        return None
    return Phase.EXPIRED


def enrolled_check(e: EnrollmentInput, phase: Phase | None, token: TokenRecord | None) -> Check:
    how = f"run trustwire enroll {e.name} -n {e.namespace} --renew-token for a new one-time token"
    cert = e.state.certificate
    if phase is Phase.ENROLLED and cert is not None:
        return passed(str(Reason.ENROLLED), f"certificate {cert.serial} valid until {rfc3339(cert.not_after)}")
    if phase is Phase.TOKEN_ISSUED and token is not None:
        return waiting(str(Reason.TOKEN_ISSUED), f"one-time token in Secret {_secret_name(e)} valid until "
                                                 f"{rfc3339(token.expires_at)}; waiting for the application")
    if phase is Phase.REVOKED:
        return stalled(str(Reason.ENROLLMENT_REVOKED), "spec.revoked is true: trustwire serve refuses every request "
                                                       "of the application")
    if phase is Phase.EXPIRED and cert is not None:
        return stalled(str(Reason.ENROLLMENT_CERTIFICATE_EXPIRED),
                       f"certificate {cert.serial} expired at {rfc3339(cert.not_after)}; {how}")
    if phase is Phase.EXPIRED:
        when = f" at {rfc3339(token.expires_at)}" if token is not None else ""
        return stalled(str(Reason.TOKEN_EXPIRED), f"the one-time token expired{when} unused; {how}")
    return waiting(str(Reason.TOKEN_ISSUED), "no one-time token issued yet")


def status_body(old: Mapping[str, Any], phase: Phase | None, token: TokenRecord | None,
                conditions: list[dict[str, Any]], generation: int | None) -> dict[str, Any]:
    """The whole ``status``: the operator's fields over what the server wrote (certificate,
    renewals, lastSeen), which pass through untouched."""
    body = {k: v for k, v in old.items() if k not in ("phase", "token", "conditions", "observedGeneration")}
    if phase is not None:
        body["phase"] = str(phase)
    if token is not None:
        body["token"] = token.to_dict()
    body["conditions"] = conditions
    if generation is not None:
        body["observedGeneration"] = generation
    return body


def connector_url(public_url: str | None) -> str | None:
    return public_url.rstrip("/") + names.ENROLLMENT_INFO_PATH if public_url else None


def token_secret(e: EnrollmentInput, token: str, handled: str) -> DesiredObject:
    """The administrator's Secret: the one-time token and where to use it; owned by the Enrollment."""
    data = {names.ENROLLMENT_TOKEN_KEY: token.encode()}
    url = connector_url(e.public_url)
    if url is not None:
        data[names.ENROLLMENT_URL_KEY] = url.encode()
    return DesiredObject("Secret", names.enrollment_token_secret(e.name), data,
                         {names.MANAGED_BY: names.MANAGER, names.ENROLLMENT_LABEL: e.name},
                         {names.RENEW_TOKEN_HANDLED_ANNOTATION: handled}, "Opaque")


def plan_enrollment(e: EnrollmentInput, fresh: Callable[[], bytes]) -> EnrollmentPlan:
    """One pass over an Enrollment: ``fresh`` gives a new token's random bytes."""
    # a revocation needs nothing of the identity: it takes effect whatever else is wrong
    blocker = None if e.enrollment is not None and e.enrollment.revoked else evaluate(BLOCKERS, e)
    if blocker is not None:
        check = stalled(str(blocker.reason), blocker.message)
        return _finish(e, e.state.phase, e.state.token, check, None, False, [], None)
    enr = e.enrollment
    assert enr is not None
    token, secret, events = e.state.token, None, []
    issue = None if enr.revoked else evaluate(ISSUE_CHECKS, e)
    if issue is not None:
        fresh_token = make_token(e.namespace, e.name, fresh())
        token = TokenRecord.of(fresh_token, e.now, enr.token_ttl)
        secret = token_secret(e, fresh_token, e.renew_request or "")
        events.append(PlannedEvent.of(issue.reason, f"{issue.message}, valid until {rfc3339(token.expires_at)}"))
    elif not enr.revoked and e.secret is not None and e.secret.token and e.secret.url != connector_url(e.public_url):
        secret = token_secret(e, e.secret.token, e.secret.handled or "")  # the public URL changed
    if enr.revoked:
        token = None
    phase = phase_of(enr.revoked, token, e.state.certificate, e.state.phase, e.now)
    check = enrolled_check(e, phase, token)
    wake = [t for t in (token.expires_at if token else None,
                        e.state.certificate.not_after if e.state.certificate else None) if t and t > e.now]
    return _finish(e, phase, token, check, secret, enr.revoked and e.secret is not None, events,
                   min(wake) if wake else None)


def _finish(e: EnrollmentInput, phase: Phase | None, token: TokenRecord | None, check: Check,
            secret: DesiredObject | None, delete_secret: bool, events: list[PlannedEvent],
            wake_at: datetime | None) -> EnrollmentPlan:
    """The status of the Enrolled ``check``, and an Event when that condition changed to a
    state a human reads: revoked, expired, or refused spec."""
    summary = summarize({"Enrolled": check}, ready_message="the application is enrolled")
    conditions = merge_conditions(e.state.conditions, summary, now=e.now, generation=e.generation)
    enrolled = next(c for c in summary if c.type == "Enrolled")
    if check.stalled and transitions(e.state.conditions, [enrolled]):
        events.append(PlannedEvent.of(Reason(check.reason), check.message))
    return EnrollmentPlan(secret, delete_secret, status_body(e.status, phase, token, conditions, e.generation),
                          events, wake_at)


def subject_name(subject: Subject) -> x509.Name:
    """``spec.subject`` as an X.509 name, in the order the issued certificate holds it: CN,
    then each O, then each OU."""
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, subject.common_name)]
    attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in subject.organization]
    attributes += [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, u) for u in subject.organizational_unit]
    return x509.Name(attributes)


def subject_text(subject: Subject) -> str:
    """The subject as RFC 4514 writes it (``O=Acme,CN=erp``: Java's ``getName()`` and Go's
    ``String()`` give the same)."""
    return subject_name(subject).rfc4514_string()


def enrolled_entry(enr: Enrollment, status: Mapping[str, Any], now: datetime) -> dict[str, Any] | None:
    """What the identity's workloads see of an enrolled application (``peers.json``, templates'
    ``enrolled``): only while it holds a valid certificate and is not revoked."""
    cert = IssuedCertificate.from_status(status.get("certificate"))
    if enr.revoked or cert is None or cert.not_after <= now:
        return None
    return {"enrollment": enr.name, "namespace": enr.namespace, "subject": subject_text(enr.subject),
            "serial": cert.serial, "fingerprint": cert.fingerprint, "notAfter": rfc3339(cert.not_after)}
