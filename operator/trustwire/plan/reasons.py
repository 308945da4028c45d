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

    @property
    def event_type(self) -> str:
        return WARNING if self in _WARNINGS else NORMAL


_WARNINGS = frozenset({Reason.CA_REPAIRED, Reason.CERTIFICATE_REPAIRED, Reason.JWT_KEY_REPAIRED})


@dataclasses.dataclass(frozen=True)
class PlannedEvent:
    type: str  # Normal | Warning
    reason: str
    message: str

    @classmethod
    def of(cls, reason: Reason, message: str) -> PlannedEvent:
        return cls(reason.event_type, str(reason), message)
