"""The CA's life cycle: issue, repair, and rotation without a failed handshake.

Phases (see :mod:`trustwire.plan.rotation`)::

    Idle ──(a ROTATION_TRIGGERS check fires)──▶ Distributing ──(peers hold next)──▶ Retiring
      ▲                                                                              │
      └────────────────(own workloads rolled out, or the old CA expired)─────────────┘

:func:`advance` takes a pass from what is stored to issuance, rotation start and activation;
:func:`retire` ends a rotation once the identity's own mounted material is known. Both are
pure: fresh keys and serials come from the injected :class:`~trustwire.plan.keys.KeySource`.
The phase lives in the CA Secret itself (``next.*``, ``previous.crt``, the phase-since
annotation), so a restarted operator resumes it.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509

from trustwire import names, pki
from trustwire.model import IdentityRef, ServiceIdentity
from trustwire.plan import rotation as rot
from trustwire.plan.checks import Verdict, evaluate
from trustwire.plan.conditions import Check, passed, stalled, waiting
from trustwire.plan.keys import KeySource
from trustwire.plan.material import SECRET_TLS, CAMaterial, DesiredObject, StoredObject, load_ca, load_cert
from trustwire.plan.reasons import PlannedEvent, Reason
from trustwire.plan.status import CARotationStatus, CAStatus
from trustwire.times import parse_time, rfc3339


class CARole(enum.StrEnum):
    """Which CA of an identity: the one its peers trust, or the one that signs enrolled applications."""

    SERVICE = "ca"
    ENROLLMENT = "enrollment-ca"

    def secret_name(self, identity: str) -> str:
        return names.ca_secret(identity) if self is CARole.SERVICE else names.enrollment_ca_secret(identity)

    @property
    def label(self) -> str:
        return "CA" if self is CARole.SERVICE else "enrollment CA"


class CAPhase(enum.StrEnum):
    IDLE = rot.IDLE
    DISTRIBUTING = rot.DISTRIBUTING
    RETIRING = rot.RETIRING


@dataclasses.dataclass(frozen=True)
class CAState:
    active: CAMaterial
    since: datetime
    next: CAMaterial | None = None
    previous: x509.Certificate | None = None

    @property
    def phase(self) -> CAPhase:
        return CAPhase.DISTRIBUTING if self.next else CAPhase.RETIRING if self.previous else CAPhase.IDLE


@dataclasses.dataclass(frozen=True)
class CAEvidence:
    """What decides a step: the stored Secret, a rotate request, and who must hold the next CA."""

    identity: ServiceIdentity
    stored: StoredObject | None
    rotate: bool
    consumers: Sequence[tuple[IdentityRef, rot.PeerState | None]]
    propagation_delay: timedelta
    #: external members: they must confirm the next CA before it is used
    outsiders: Sequence[rot.Outsider] = ()
    role: CARole = CARole.SERVICE


@dataclasses.dataclass(frozen=True)
class CAStep:
    state: CAState
    events: tuple[PlannedEvent, ...] = ()
    #: the rotation gate that holds the phase, when one does
    wait: rot.Gate | None = None


def renewal_time(cert: x509.Certificate) -> datetime:
    """docs/design.md §5: prepare the next CA at ``notAfter - min(life/2, 30d)``."""
    start, end = pki.not_before(cert), pki.not_after(cert)
    return end - min((end - start) / 2, timedelta(days=30))


# --------------------------------------------------------------------------------------
# Named checks
# --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StoredCA:
    obj: StoredObject | None
    now: datetime


def ca_missing(s: StoredCA) -> Verdict | None:
    return Verdict(Reason.CA_ISSUED, "no CA yet") if s.obj is None else None


def ca_unloadable(s: StoredCA) -> Verdict | None:
    material, problem = load_ca(s.obj)
    return Verdict(Reason.CA_REPAIRED, f"the stored CA was unusable ({problem})") if material is None else None


def ca_invalid(s: StoredCA) -> Verdict | None:
    material, _ = load_ca(s.obj)
    problems = pki.check_ca(material.cert, material.key, now=s.now) if material is not None else []
    return Verdict(Reason.CA_REPAIRED, f"the stored CA was unusable ({'; '.join(problems)})") if problems else None


#: Why the stored CA cannot be kept (in priority order).
CA_REISSUE = (ca_missing, ca_unloadable, ca_invalid)


@dataclasses.dataclass(frozen=True)
class RotationInput:
    identity: ServiceIdentity
    ca: CAMaterial
    now: datetime
    rotate: bool


def rotation_requested(r: RotationInput) -> Verdict | None:
    return Verdict(Reason.CA_ROTATION_DISTRIBUTING,
                   f"requested with the {names.ROTATE_ANNOTATION} annotation") if r.rotate else None


def renewal_time_reached(r: RotationInput) -> Verdict | None:
    at = renewal_time(r.ca.cert)
    return Verdict(Reason.CA_ROTATION_DISTRIBUTING, f"renewal time {rfc3339(at)} reached") if r.now >= at else None


def key_algorithm_changed(r: RotationInput) -> Verdict | None:
    wanted = r.identity.ca.key_algorithm
    return None if pki.key_algorithm_of(r.ca.key) == wanted else \
        Verdict(Reason.CA_ROTATION_DISTRIBUTING, f"spec.ca.keyAlgorithm is now {wanted}")


#: Why an idle CA starts rotating.
ROTATION_TRIGGERS = (rotation_requested, renewal_time_reached, key_algorithm_changed)


# --------------------------------------------------------------------------------------
# The state machine
# --------------------------------------------------------------------------------------
def _issue(ident: ServiceIdentity, now: datetime, keys: KeySource, role: CARole) -> CAMaterial:
    key = keys.private_key(ident.ca.key_algorithm)
    cert = pki.create_ca(key, common_name=common_name(ident, role), now=now, lifetime=ident.ca.duration,
                         serial=keys.serial())
    return CAMaterial.of(cert, key)


def common_name(ident: ServiceIdentity, role: CARole = CARole.SERVICE) -> str:
    """``<name>.<namespace> trustwire CA`` (or ``enrollment CA``), shortened to the X.509 limit of 64."""
    suffix = f" trustwire {role.label}"
    return f"{ident.name}.{ident.namespace}"[: 64 - len(suffix)] + suffix


def observe(ev: CAEvidence, now: datetime, keys: KeySource) -> CAStep:
    """The stored CA and its phase, or a fresh CA when a CA_REISSUE check fires."""
    verdict = evaluate(CA_REISSUE, StoredCA(ev.stored, now))
    if verdict is not None:
        cert = _issue(ev.identity, now, keys, ev.role)
        return CAStep(CAState(cert, now), (PlannedEvent.of(
            verdict.reason, f"{ev.role.label} serial {pki.serial_hex(cert.cert)} issued: {verdict.message}"),))
    active, _ = load_ca(ev.stored)
    assert active is not None and ev.stored is not None
    upcoming, _ = load_ca(ev.stored, "next.crt", "next.key")
    since = parse_time(ev.stored.annotations.get(names.CA_SINCE_ANNOTATION)) or now
    return CAStep(CAState(active, since, upcoming, load_cert(ev.stored, "previous.crt")))


def advance(state: CAState, ev: CAEvidence, now: datetime, keys: KeySource) -> CAStep:
    """Idle → Distributing when a trigger fires; Distributing → Retiring once peers hold next."""
    events: list[PlannedEvent] = []
    verdict = evaluate(ROTATION_TRIGGERS, RotationInput(ev.identity, state.active, now, ev.rotate))
    if state.phase is CAPhase.IDLE and verdict is not None:
        upcoming = _issue(ev.identity, now, keys, ev.role)
        state = dataclasses.replace(state, next=upcoming, since=now)
        events.append(PlannedEvent.of(verdict.reason, f"next CA serial {pki.serial_hex(upcoming.cert)} prepared "
                                                      f"({verdict.message}); distributing it to every peer before use"))
    if state.phase is not CAPhase.DISTRIBUTING or state.next is None:
        return CAStep(state, tuple(events))
    upcoming_fp = pki.fingerprint_sha256(state.next.cert)
    gate = rot.both(rot.gate_with_outsiders(rot.distribution_gate(
        "CA", ev.consumers, upcoming_fp, "ca", now=now, since=state.since,
        delay=ev.propagation_delay), ev.consumers, now, state.since, ev.propagation_delay),
        rot.confirmation_gate(ev.outsiders, upcoming_fp))
    if not gate.met:
        overdue = confirmation_overdue(state, ev.outsiders, now)
        if overdue is None:
            return CAStep(state, tuple(events), gate)
        return CAStep(state, (*events, overdue), dataclasses.replace(gate, reason=overdue.reason))
    state = CAState(state.next, now, None, state.active.cert)
    events.append(PlannedEvent.of(Reason.CA_ROTATION_ACTIVATED,
                                  f"CA serial {pki.serial_hex(state.active.cert)} is now active ({gate.message}); "
                                  "re-issuing the certificate from it"))
    return CAStep(state, tuple(events))


def confirmation_warning_time(cert: x509.Certificate) -> datetime:
    """When waiting for an outsider turns into a warning: a quarter of the CA's life, at
    most a week, before the active CA expires (and its renewal time came earlier)."""
    start, end = pki.not_before(cert), pki.not_after(cert)
    return end - min((end - start) / 4, timedelta(days=7))


def confirmation_overdue(state: CAState, outsiders: Sequence[rot.Outsider], now: datetime) -> PlannedEvent | None:
    """A Warning while external peers have not confirmed the next CA and the active one nears expiry."""
    if state.next is None or now < confirmation_warning_time(state.active.cert):
        return None
    fingerprint = pki.fingerprint_sha256(state.next.cert)
    late = [o for o in outsiders if fingerprint not in o.confirmed]
    if not late:
        return None
    return PlannedEvent.of(Reason.EXTERNAL_CONFIRMATION_OVERDUE, (
        f"CA serial {pki.serial_hex(state.active.cert)} expires {rfc3339(pki.not_after(state.active.cert))} and "
        f"{', '.join(str(o) for o in late)} has not confirmed installing "
        f"the next CA (sha256 {fingerprint}); nothing is switched or removed until it does"))


def retire(step: CAStep, gate: rot.Gate, now: datetime) -> CAStep:
    """Retiring → Idle once ``gate`` (own workloads rolled out) is met or the old CA expired."""
    state, previous = step.state, step.state.previous
    if state.phase is not CAPhase.RETIRING or previous is None:
        return step
    if gate.met or pki.not_after(previous) <= now:
        event = PlannedEvent.of(Reason.CA_ROTATION_RETIRED,
                                f"CA serial {pki.serial_hex(previous)} retired from every trust bundle")
        return CAStep(dataclasses.replace(state, previous=None), (*step.events, event))
    return CAStep(state, step.events, gate)


def byo(ident: ServiceIdentity, stored: StoredObject | None, now: datetime) -> tuple[CAMaterial | None, Check]:
    """A bring-your-own CA from ``spec.ca.secretRef``: used as it is, never rotated."""
    ns, name = ident.namespace, ident.ca.secret_name
    if stored is None:
        return None, waiting("CASecretNotFound", f"spec.ca.secretRef.name: Secret {ns}/{name} does not exist")
    ca, problem = load_ca(stored)
    problems = [problem] if ca is None and problem else (pki.check_ca(ca.cert, ca.key, now=now) if ca else [])
    if problems or ca is None:
        return None, stalled("CASecretInvalid", f"spec.ca.secretRef.name: Secret {ns}/{name} "
                                                f"is not a usable CA: {'; '.join(problems)}")
    return ca, passed("Valid", f"using the CA from Secret {ns}/{name}")


# --------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------
def valid(ca: CAMaterial) -> Check:
    return passed("Valid", f"CA serial {pki.serial_hex(ca.cert)} valid until {rfc3339(pki.not_after(ca.cert))}")


def ca_object(ident: ServiceIdentity, state: CAState, role: CARole = CARole.SERVICE) -> DesiredObject:
    data = {"tls.crt": state.active.cert_pem, "tls.key": state.active.key_pem}
    if state.next is not None:
        data |= {"next.crt": state.next.cert_pem, "next.key": state.next.key_pem}
    if state.previous is not None:
        data["previous.crt"] = pki.cert_to_pem(state.previous)
    annotations = {names.CA_SINCE_ANNOTATION: rfc3339(state.since)} if state.phase is not CAPhase.IDLE else {}
    return DesiredObject("Secret", role.secret_name(ident.name), data, names.identity_labels(ident.name, role.value),
                         annotations, type=SECRET_TLS, owned=False)


def ca_status(ident: ServiceIdentity, ca: CAMaterial) -> CAStatus:
    cert = ca.cert
    return CAStatus(str(ident.ca.source), pki.serial_hex(cert), pki.fingerprint_sha256(cert),
                    rfc3339(pki.not_before(cert)), rfc3339(pki.not_after(cert)), rfc3339(renewal_time(cert)))


def rotation_status(state: CAState | None, wait: rot.Gate | None) -> CARotationStatus:
    if state is None or state.phase is CAPhase.IDLE:
        return CARotationStatus(CAPhase.IDLE.value, waiting_for=wait.message if wait else None)
    return CARotationStatus(
        state.phase.value, rfc3339(state.since),
        pki.fingerprint_sha256(state.next.cert) if state.next else None,
        pki.fingerprint_sha256(state.previous) if state.previous else None,
        wait.message if wait else None)
