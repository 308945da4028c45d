"""Why something was issued or changed: the Event reasons users, dashboards and tests read.

Each member is the exact ``reason`` of an Event and knows its Event type, so the type of an
Event follows from what happened and never from the wording of its message. A repair is a
``Warning`` (something damaged or replaced our material); everything else is ``Normal``.
"""

from __future__ import annotations

import dataclasses
import enum

NORMAL = "Normal"
WARNING = "Warning"


class Reason(enum.StrEnum):
    #: a pass that issues more than one of CA, certificate and JWT key (an identity's first)
    ISSUED = "Issued"
    CA_ISSUED = "CAIssued"
    CA_REPAIRED = "CARepaired"
    CERTIFICATE_ISSUED = "CertificateIssued"
    CERTIFICATE_RENEWED = "CertificateRenewed"
    CERTIFICATE_REISSUED = "CertificateReissued"
    CERTIFICATE_REPAIRED = "CertificateRepaired"
    JWT_KEY_GENERATED = "JwtKeyGenerated"
    JWT_KEY_ROTATED = "JwtKeyRotated"
    JWT_KEY_REPAIRED = "JwtKeyRepaired"
    JWT_KEY_PUBLISHING = "JwtKeyPublishing"
    JWT_KEY_ACTIVATED = "JwtKeyActivated"
    CA_ROTATION_DISTRIBUTING = "CARotationDistributing"
    CA_ROTATION_ACTIVATED = "CARotationActivated"
    CA_ROTATION_RETIRED = "CARotationRetired"
    EXTERNAL_CA_NOT_FOUND = "ExternalCANotFound"
    EXTERNAL_CA_INVALID = "ExternalCAInvalid"
    EXTERNAL_CONFIRMATION_OVERDUE = "ExternalConfirmationOverdue"
    #: a server does not publish an identity as an OpenID Connect issuer
    ISSUER_NOT_SERVED = "IssuerNotServed"
    #: an external issuer's keys were fetched and are trusted
    ISSUER_ACCEPTED = "Accepted"
    #: an external issuer's key ids differ from the previous fetch
    ISSUER_KEYS_CHANGED = "IssuerKeysChanged"
    #: an external issuer could not be reached (connection, TLS, timeout, status, redirect, size)
    ISSUER_UNREACHABLE = "IssuerUnreachable"
    #: an external issuer answered with a document or JWKS that is refused
    ISSUER_INVALID = "IssuerInvalid"
    SHARED_SECRET_ROTATED = "SharedSecretRotated"  # noqa: S105 - an Event reason
    #: enrollment of external applications, as the operator sees it (Events on the Enrollment)
    TOKEN_ISSUED = "TokenIssued"  # noqa: S105 - an Event reason
    ENROLLED = "Enrolled"
    ENROLLMENT_RENEWED = "Renewed"
    TOKEN_EXPIRED = "TokenExpired"  # noqa: S105 - an Event reason
    ENROLLMENT_REVOKED = "Revoked"
    ENROLLMENT_IDENTITY_NOT_FOUND = "IdentityNotFound"
    ENROLLMENT_NOT_ENABLED = "EnrollmentNotEnabled"
    ENROLLMENT_NAME_CONFLICT = "NameConflict"
    ENROLLMENT_INVALID = "InvalidSpec"
    ENROLLMENT_CERTIFICATE_EXPIRED = "CertificateExpired"
    #: trustwire serve's enrollment refusals (the ``error.reason`` of a 4xx answer)
    TOKEN_MISSING = "TokenMissing"  # noqa: S105 - a refusal reason
    TOKEN_INVALID = "TokenInvalid"  # noqa: S105 - a refusal reason
    TOKEN_ALREADY_USED = "TokenAlreadyUsed"  # noqa: S105 - a refusal reason
    CSR_UNREADABLE = "CSRUnreadable"
    CSR_SIGNATURE_INVALID = "CSRSignatureInvalid"
    CSR_KEY_NOT_ALLOWED = "KeyNotAllowed"
    CSR_SUBJECT_MISMATCH = "SubjectMismatch"
    CSR_CA_REQUESTED = "CARequested"
    CSR_SANS_NOT_ALLOWED = "SANsNotAllowed"
    CLIENT_CERTIFICATE_REQUIRED = "ClientCertificateRequired"
    CERTIFICATE_NOT_ISSUED_HERE = "CertificateNotIssuedHere"
    CERTIFICATE_NOT_CURRENT = "CertificateNotCurrent"

    @property
    def event_type(self) -> str:
        return WARNING if self in _WARNINGS else NORMAL


_WARNINGS = frozenset({Reason.CA_REPAIRED, Reason.CERTIFICATE_REPAIRED, Reason.JWT_KEY_REPAIRED,
                       Reason.EXTERNAL_CONFIRMATION_OVERDUE,
                       Reason.TOKEN_EXPIRED, Reason.ENROLLMENT_IDENTITY_NOT_FOUND,
                       Reason.ENROLLMENT_NOT_ENABLED, Reason.ENROLLMENT_NAME_CONFLICT, Reason.ENROLLMENT_INVALID,
                       Reason.ENROLLMENT_CERTIFICATE_EXPIRED})
#: first issuances: several of them in one pass become one ``Issued`` Event
_FIRST = frozenset({Reason.CA_ISSUED, Reason.CERTIFICATE_ISSUED, Reason.JWT_KEY_GENERATED})


@dataclasses.dataclass(frozen=True)
class PlannedEvent:
    type: str  # Normal | Warning
    reason: str
    message: str

    @classmethod
    def of(cls, reason: Reason, message: str) -> PlannedEvent:
        return cls(reason.event_type, str(reason), message)


def fold_issued(events: list[PlannedEvent]) -> list[PlannedEvent]:
    """One ``Issued`` Event, naming each, for the first issuances of one pass when there are
    several (each Event is an API write, and a new identity's pass issues all three at once);
    a lone one, a renewal, a re-issue or a repair keeps its own reason."""
    first = [e for e in events if e.reason in _FIRST]
    if len(first) < 2:
        return events
    at = events.index(first[0])
    rest = [e for e in events if e.reason not in _FIRST]
    folded = PlannedEvent.of(Reason.ISSUED, "; ".join(e.message for e in first))
    return [*rest[:at], folded, *rest[at:]]
