"""What an identity's objects should contain, decided from its spec, what exists and the clock.

The controller gathers an :class:`IdentityObservation` (all I/O happens there) and
:func:`plan_identity` answers with an :class:`IdentityPlan`: the full desired content of the
CA, credentials and trust Secrets and of the public ConfigMap, the domain checks that
become status conditions, the typed status, the Events worth emitting and when to look again.

The composer wires the per-material planners together — :mod:`~trustwire.plan.ca`,
:mod:`~trustwire.plan.leaf`, :mod:`~trustwire.plan.jwt`, :mod:`~trustwire.plan.trust`
(with :mod:`~trustwire.plan.templates`) and :mod:`~trustwire.plan.publication` — in the
order their evidence needs: the CA before the leaf it signs, the trust Secret before the
CA's retirement (which waits for the mounted material to roll out).

The planners are *conservative*: material still good is kept, so a second pass over the
same observation plans exactly the same bytes and the controller writes nothing. Pure and
deterministic: the clock is ``obs.now``, fresh keys, passwords and serials come from the
injected :class:`~trustwire.plan.keys.KeySource`, template budgets from the injected timer.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from trustwire import names, pki
from trustwire.model import CASource, IdentityRef, ServiceIdentity
from trustwire.pki.keys import public_key_der
from trustwire.plan import ca as calife
from trustwire.plan import jwt as jwtkeys
from trustwire.plan import leaf as leaflife
from trustwire.plan import rotation as rot
from trustwire.plan import symmetric
from trustwire.plan.conditions import Check, Condition, ConditionStatus, stalled, waiting
from trustwire.plan.external import outsiders_of
from trustwire.plan.keys import SYSTEM_KEYS, KeySource
from trustwire.plan.material import (
    SECRET_OPAQUE,
    SECRET_TLS,
    CAMaterial,
    DesiredObject,
    StoredObject,
    clash,
    derived_annotations,
    stored_password,
    with_secret_template,
)
from trustwire.plan.packing import SECRET_DATA_LIMIT, pack
from trustwire.plan.publication import Publication, public_object
from trustwire.plan.reasons import PlannedEvent, fold_issued
from trustwire.plan.status import IdentityStatus, RotationStatus, TrustStatus
from trustwire.plan.templates import Timer
from trustwire.plan.trust import PeerLink, TrustContent, TrustInput, plan_trust
from trustwire.plan.workloads import material_hash

#: Lower bound of the next wake-up, so a tight loop can never start from a clock edge.
MIN_WAKE = timedelta(seconds=5)

__all__ = ["MIN_WAKE", "IdentityObservation", "IdentityPlan", "PeerLink", "Publication", "StoredObject",
           "plan_identity"]


@dataclasses.dataclass(frozen=True)
class IdentityObservation:
    identity: ServiceIdentity
    now: datetime
    ca: StoredObject | None = None
    byo_ca: StoredObject | None = None
    #: the enrollment CA Secret (read only when spec.enrollment.enabled)
    enrollment_ca: StoredObject | None = None
    credentials: StoredObject | None = None
    trust: StoredObject | None = None
    #: trust file → the Secret of its own it may live in (``names.trust_file_secret``), where one exists
    trust_files: Mapping[str, StoredObject] = dataclasses.field(default_factory=dict)
    public: StoredObject | None = None
    #: keystores.passwordSecretRef resolved: the password, or None when not configured
    user_password: str | None = None
    user_password_problem: str | None = None
    #: template name → source text (None when its ConfigMap/key is missing)
    template_sources: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    links: tuple[PeerLink, ...] = ()
    #: the enrolled applications its enrollment CA signed (``plan.enrollment.enrolled_entry``)
    enrolled: tuple[Mapping[str, Any], ...] = ()
    #: rotation evidence: what each peer reports holding, and what our own workloads run
    peer_states: Mapping[IdentityRef, rot.PeerState] = dataclasses.field(default_factory=dict)
    rolled_out_hash: str | None = None
    propagation_delay: timedelta = rot.DEFAULT_PROPAGATION_DELAY
    #: bytes one Secret may hold (tests lower it to split a hub's trust cheaply)
    secret_budget: int = SECRET_DATA_LIMIT
    #: peers whose first pass is about to run (queued, or running): what they publish soon
    imminent: frozenset[IdentityRef] = frozenset()


@dataclasses.dataclass
class IdentityPlan:
    objects: list[DesiredObject]
    checks: dict[str, Check]
    #: the planned part of the status (the controller adds workloads and conditions)
    status: IdentityStatus
    events: list[PlannedEvent]
    wake_at: datetime | None
    #: bytes of every file mounted at mountPath (credentials + trust), for the material hash
    mounted: dict[str, bytes]
    #: conditions outside the Ready summary (``Rotating``: reason = phase)
    extra_conditions: list[Condition] = dataclasses.field(default_factory=list)
    #: a rotation gate waits for what peers report in their status (their trust, rollouts)
    awaits_peers: bool = False
    #: the imminent peers the first trust Secret waits for (:func:`first_trust_waits_for`)
    awaited: frozenset[IdentityRef] = frozenset()
    #: the Secrets the trust files are in, as the projected volume lists them
    trust_secrets: tuple[str, ...] = ()
    #: our Secrets of single trust files no longer needed: deleted once workloads no longer project them
    obsolete: tuple[str, ...] = ()

    @property
    def ready_message(self) -> str:
        return f"{self.status.peer_count} peer(s); material issued and distributed"


@dataclasses.dataclass
class _Pass:
    """What the planners of one pass add up to, in the order the Secrets are written."""

    obs: IdentityObservation
    keys: KeySource
    checks: dict[str, Check] = dataclasses.field(default_factory=dict)
    events: list[PlannedEvent] = dataclasses.field(default_factory=list)
    deadlines: list[datetime] = dataclasses.field(default_factory=list)
    waits: list[rot.Gate] = dataclasses.field(default_factory=list)


def _ca(p: _Pass, rotate: bool) -> tuple[calife.CAStep | None, CAMaterial | None]:
    obs, ident, now = p.obs, p.obs.identity, p.obs.now
    if ident.ca.source is CASource.SECRET:
        material, p.checks["CAReady"] = calife.byo(ident, obs.byo_ca, now)
        p.deadlines += [pki.not_after(material.cert)] if material else []
        return None, material
    if (conflict := clash(obs.ca, "Secret", ident.namespace)) is not None:
        p.checks["CAReady"] = conflict
        return None, None
    consumers = [(lk.peer, obs.peer_states.get(lk.peer)) for lk in obs.links
                 if lk.relationship.mtls and lk.publication is not None and lk.relationship.external is None]
    outsiders = outsiders_of([lk.relationship for lk in obs.links])
    evidence = calife.CAEvidence(ident, obs.ca, rotate, consumers, obs.propagation_delay, outsiders)
    first = calife.observe(evidence, now, p.keys)
    step = calife.advance(first.state, evidence, now, p.keys)
    p.events += [*first.events, *step.events]
    p.waits += [step.wait] if step.wait else []
    p.checks["CAReady"] = calife.valid(step.state.active)
    p.deadlines.append(pki.not_after(step.state.active.cert))
    if step.state.phase is calife.CAPhase.IDLE:
        p.deadlines.append(calife.renewal_time(step.state.active.cert))  # when the next CA is prepared
    elif outsiders:  # when waiting for an outsider turns into a warning
        p.deadlines.append(calife.confirmation_warning_time(step.state.active.cert))
    return step, step.state.active


#: An enrollment CA retires only when it expires: certificates it signed for enrolled
#: applications stay valid that long, whatever the identity's own workloads run.
_UNTIL_EXPIRY = rot.Gate(False, "certificates it signed stay valid until it expires")


def _enrollment_ca(p: _Pass, rotate: bool) -> calife.CAState | None:
    """The identity's enrollment CA: the CA life cycle of :mod:`~trustwire.plan.ca` with no
    peers to wait for (only the identity's own workloads trust it)."""
    obs, ident, now = p.obs, p.obs.identity, p.obs.now
    if not ident.enrollment:
        return None
    if (conflict := clash(obs.enrollment_ca, "Secret", ident.namespace)) is not None:
        p.checks["EnrollmentCAReady"] = conflict
        return None
    evidence = calife.CAEvidence(ident, obs.enrollment_ca, rotate, (), obs.propagation_delay,
                                 role=calife.CARole.ENROLLMENT)
    first = calife.observe(evidence, now, p.keys)
    step = calife.advance(first.state, evidence, now, p.keys)
    step = calife.retire(step, _UNTIL_EXPIRY, now)
    p.events += [*first.events, *step.events]
    p.checks["EnrollmentCAReady"] = calife.valid(step.state.active)
    state = step.state
    p.deadlines += [pki.not_after(state.active.cert), calife.renewal_time(state.active.cert)]
    p.deadlines += [pki.not_after(state.previous)] if state.previous is not None else []
    p.deadlines += [step.wait.retry_at] if step.wait is not None and step.wait.retry_at is not None else []
    return state


def enrollment_bundle(state: calife.CAState) -> bytes:
    """What the identity's workloads trust for enrolled applications: every enrollment CA
    that signed, or will sign, a certificate still valid."""
    certs = [c for c in (state.active.cert, state.next.cert if state.next else None, state.previous) if c]
    return pki.certs_to_pem(certs)


def _leaf(p: _Pass, ca: CAMaterial | None, rotate: bool) -> tuple[leaflife.LeafOutput | None, pki.PrivateKey | None]:
    obs, ns = p.obs, p.obs.identity.namespace
    if (conflict := clash(obs.credentials, "Secret", ns)) is not None:
        p.checks["CertificateReady"] = conflict
    elif ca is None:
        p.checks["CertificateReady"] = waiting("CANotReady", "waiting for the CA (see CAReady)")
    elif obs.user_password_problem:
        p.checks["CertificateReady"] = stalled("KeystorePasswordMissing", obs.user_password_problem)
    else:
        inp = leaflife.LeafInput(obs.identity, ca, obs.credentials, obs.now, rotate)
        state, events = leaflife.advance(inp, p.keys)
        out = leaflife.credentials(inp, state, obs.user_password, p.keys)
        p.events += events
        p.checks["CertificateReady"] = out.check
        p.deadlines.append(out.renew_at)
        return out, state.key
    return None, None


def _jwt(p: _Pass, reserved: Sequence[pki.PrivateKey | None], writable: bool, rotate: bool) -> jwtkeys.JwtStep | None:
    obs, ident = p.obs, p.obs.identity
    if not ident.jwt.enabled or ident.jwt.hmac is not None or \
            clash(obs.credentials, "Secret", ident.namespace) is not None:
        return None
    me = IdentityRef(ident.namespace, ident.name)
    receivers = [(lk.peer, obs.peer_states.get(lk.peer)) for lk in obs.links
                 if lk.relationship.jwt and lk.relationship.sends_to(me) and lk.publication is not None
                 and lk.relationship.external is None]
    evidence = jwtkeys.JwtEvidence(ident, obs.credentials, frozenset(public_key_der(k) for k in reserved if k),
                                   rotate, receivers, obs.propagation_delay, writable)
    first = jwtkeys.observe(evidence, obs.now, p.keys)
    if first is None:
        return None
    step = jwtkeys.advance(first, evidence, obs.now, p.keys)
    p.events += step.events
    p.deadlines += jwtkeys.deadlines(ident, step.state)
    return step


def _hmac(p: _Pass, writable: bool, rotate: bool) -> symmetric.HmacStep | None:
    obs, ident = p.obs, p.obs.identity
    if not ident.jwt.enabled or ident.jwt.hmac is None or \
            clash(obs.credentials, "Secret", ident.namespace) is not None:
        return None
    step = symmetric.plan_hmac(ident, obs.credentials, p.keys, writable, rotate)
    p.events += step.events if step is not None else ()
    return step


def _credentials(ident: ServiceIdentity, leaf: leaflife.LeafOutput | None, jwt: jwtkeys.JwtStep | None,
                 hmac: symmetric.HmacStep | None, enrollment: calife.CAState | None,
                 ) -> tuple[dict[str, bytes], DesiredObject | None]:
    data = dict(leaf.data) if leaf else {}
    if leaf is not None and enrollment is not None:
        data[names.ENROLLMENT_CA_KEY] = enrollment_bundle(enrollment)
    annotations: dict[str, str] = {}
    if jwt is not None:
        jwt_data, annotations = jwtkeys.stored_content(jwt.state)
        data |= jwt_data
    if hmac is not None:
        data |= symmetric.stored_content(hmac)
    if leaf is None:
        return data, None
    annotations |= derived_annotations(leaf.records)
    return data, DesiredObject("Secret", names.credentials_secret(ident.name), data,
                               names.identity_labels(ident.name, "credentials"), annotations, type=SECRET_TLS)


def first_trust_waits_for(obs: IdentityObservation) -> frozenset[IdentityRef]:
    """The peers a trust Secret not written yet waits for: unpublished, with a first pass
    about to run. What they publish then goes into its first version, so it is written once,
    complete (and the workloads wired once), rather than written now and again per peer.
    The wait ends with their passes, published or not; a first status waits with it
    (:func:`trustwire.plan.outcome.first_status_may_wait`), a later one tells the wait."""
    if obs.trust is not None:
        return frozenset()
    return frozenset(lk.peer for lk in obs.links if lk.publication is None and lk.peer in obs.imminent)


@dataclasses.dataclass(frozen=True)
class _TrustObjects:
    """The trust Secrets to write, all that the projected volume lists, and ours to delete."""

    objects: list[DesiredObject]
    secrets: tuple[str, ...]
    obsolete: tuple[str, ...] = ()


def _trust(p: _Pass, ca: CAMaterial | None, jwt: jwtkeys.JwtStep | None,
           timer: Timer) -> tuple[TrustContent, _TrustObjects]:
    obs, ident = p.obs, p.obs.identity
    unwritten = _TrustObjects([], (names.trust_secret(ident.name),))
    if awaited := first_trust_waits_for(obs):
        peers = ", ".join(sorted(str(peer) for peer in awaited))
        trust = TrustContent({}, {}, [], set(), set(), {"TrustReady": waiting(
            "PeerPending", f"{peers} about to publish; the trust Secret is written with their material")})
        if ident.templates:
            trust.checks["TemplatesReady"] = waiting("TrustNotReady", "the trust Secret is not written yet")
        p.checks |= trust.checks
        return dataclasses.replace(trust, write=False), unwritten
    if (conflict := clash(obs.trust, "Secret", ident.namespace)) is not None:
        trust = TrustContent({}, {}, [], set(), set(), {"TrustReady": conflict})
        if ident.templates:
            trust.checks["TemplatesReady"] = waiting("TrustNotReady", "the trust Secret cannot be written")
        p.checks |= trust.checks
        return trust, unwritten
    password = obs.user_password or stored_password(obs.trust, "truststore.password") or p.keys.password()
    trust = plan_trust(TrustInput(ident, _stored_trust(obs), obs.links, ca, jwt.state.active if jwt else None,
                                  password, obs.template_sources, timer, obs.secret_budget, obs.enrolled))
    p.checks |= trust.checks
    laid_out = _trust_objects(obs, trust)
    if isinstance(laid_out, Check):
        p.checks["TrustReady"] = laid_out
        return trust, unwritten
    return trust, laid_out


def _own_files(obs: IdentityObservation) -> dict[str, StoredObject]:
    """The Secrets of single trust files that are ours: managed, and this identity's."""
    return {f: o for f, o in obs.trust_files.items() if o.managed and o.owner == obs.identity.name}


def _stored_trust(obs: IdentityObservation) -> StoredObject | None:
    """The trust Secret with the files its split Secrets hold: what the trust planner keeps and compares."""
    own = _own_files(obs)
    if obs.trust is None or not own:
        return obs.trust
    moved = {f: o.data[f] for f, o in own.items() if f in o.data}
    return dataclasses.replace(obs.trust, data={**obs.trust.data, **moved})


def _trust_objects(obs: IdentityObservation, trust: TrustContent) -> _TrustObjects | Check:
    """The trust files laid out in Secrets (:func:`~trustwire.plan.packing.pack`), or the clash that prevents it."""
    ident, own = obs.identity, _own_files(obs)
    primary = names.trust_secret(ident.name)
    if not trust.write:
        return _TrustObjects([], (primary, *(names.trust_file_secret(ident.name, f)
                                             for f in names.TRUST_SPLIT_KEYS if f in own)))
    packing = pack(trust.data, obs.secret_budget, own)
    assert packing is not None, "plan_trust keeps only what fits"
    for file in packing.alone:
        if (conflict := clash(obs.trust_files.get(file), "Secret", ident.namespace)) is not None:
            return conflict
    labels = names.identity_labels(ident.name, "trust")
    alone = [DesiredObject("Secret", names.trust_file_secret(ident.name, f), {f: v}, labels, type=SECRET_OPAQUE)
             for f, v in packing.alone.items()]
    shared = DesiredObject("Secret", primary, packing.shared, labels, derived_annotations(trust.records),
                           type=SECRET_OPAQUE)
    obsolete = tuple(names.trust_file_secret(ident.name, f) for f in names.TRUST_SPLIT_KEYS
                     if f in own and f not in packing.alone)
    # the files' own Secrets first: a file moving out is never missing from the volume's union
    return _TrustObjects([*alone, shared], (primary, *(o.name for o in alone)), obsolete)


def _retire(p: _Pass, step: calife.CAStep | None, mounted: Mapping[str, bytes]) -> calife.CAStep | None:
    """Retiring → Idle once the identity's own workloads run the material of the new CA."""
    if step is None or step.state.phase is not calife.CAPhase.RETIRING:
        return step
    obs = p.obs
    gate = rot.own_rollout_gate(has_workloads=obs.identity.restarts, reloads_in_place=obs.identity.reloads_in_place,
                                rolled_out_hash=obs.rolled_out_hash,
                                current_hash=material_hash(mounted) if mounted else None, now=obs.now,
                                since=step.state.since, delay=obs.propagation_delay)
    retired = calife.retire(calife.CAStep(step.state, ()), gate, obs.now)
    p.events += retired.events
    p.waits += [retired.wait] if retired.wait else []
    return retired


def _rotating(ca: calife.CAState | None, jwt: jwtkeys.JwtState | None, waits: Sequence[rot.Gate]) -> Condition:
    """``Rotating``: True with the phase as reason while a rotation is under way."""
    ca_phase = ca.phase if ca is not None else calife.CAPhase.IDLE
    phases = [f"CA {ca_phase}"] if ca_phase is not calife.CAPhase.IDLE else []
    phases += [f"JWT {jwtkeys.JwtPhase.PUBLISHING}"] if jwt is not None and jwt.next is not None else []
    phase = (ca_phase if ca_phase is not calife.CAPhase.IDLE else jwtkeys.JwtPhase.PUBLISHING) if phases \
        else calife.CAPhase.IDLE
    reason = next((g.reason for g in waits if g.reason is not None), str(phase)) if phases else str(phase)
    status = ConditionStatus.TRUE if phases else ConditionStatus.FALSE
    return Condition("Rotating", status, str(reason), "; ".join(phases + [g.message for g in waits]))


def _wake_at(now: datetime, deadlines: Sequence[datetime]) -> datetime | None:
    future = [d for d in deadlines if d > now]
    return max(min(future), now + MIN_WAKE) if future else None


def plan_identity(obs: IdentityObservation, *, rotate: str | None = None, keys: KeySource = SYSTEM_KEYS,
                  timer: Timer = time.monotonic) -> IdentityPlan:
    """Decide the desired objects, checks, status and Events for one identity (see module docstring)."""
    ident, p = obs.identity, _Pass(obs, keys)
    ca_step, ca = _ca(p, rotate == "ca")
    leaf, leaf_key = _leaf(p, ca, rotate == "certificate")
    jwt = _jwt(p, (ca.key if ca else None, leaf_key), leaf is not None, rotate == "jwt")
    p.waits += [jwt.wait] if jwt is not None and jwt.wait else []
    enrollment_ca = _enrollment_ca(p, rotate == "enrollment-ca")
    hmac = _hmac(p, leaf is not None, rotate == "jwt")
    creds_data, creds = _credentials(ident, leaf, jwt, hmac, enrollment_ca)
    trust, trust_objects = _trust(p, ca, jwt, timer)
    awaited = first_trust_waits_for(obs)
    mounted = {**creds_data, **trust.data} if leaf is not None and not awaited else {}
    ca_step = _retire(p, ca_step, mounted)
    ca_state = ca_step.state if ca_step is not None else None
    objects = [o for o in (calife.ca_object(ident, ca_state) if ca_state else None,
                           calife.ca_object(ident, enrollment_ca, calife.CARole.ENROLLMENT) if enrollment_ca else None,
                           creds) if o]
    objects += trust_objects.objects
    if (conflict := clash(obs.public, "ConfigMap", ident.namespace)) is not None:
        p.checks["CAReady"] = conflict
    elif ca is not None:
        own = [c for c in (ca.cert, *((ca_state.next.cert if ca_state.next else None, ca_state.previous)
                                      if ca_state else ())) if c is not None]
        objects.append(public_object(ident, own, jwt.state if jwt else None))
    template = ident.secret_template
    objects = [with_secret_template(o, dict(template.labels), dict(template.annotations)) for o in objects]
    ca_wait = ca_step.wait if ca_step is not None else None
    jwt_state, jwt_wait = (jwt.state, jwt.wait) if jwt is not None else (None, None)
    status = IdentityStatus(
        spiffe_id=ident.spiffe_id, issuer=ident.issuer, discovery_url=ident.discovery_url,
        ca=calife.ca_status(ident, ca) if ca else None,
        enrollment_ca=calife.ca_status(ident, enrollment_ca.active) if enrollment_ca else None,
        certificate=leaf.status if leaf else None,
        jwt=jwtkeys.jwt_status(ident, jwt_state) if jwt_state else symmetric.hmac_status(hmac) if hmac else None,
        peers=tuple(trust.peers_status),
        trust=TrustStatus(tuple(sorted(trust.trusted_cas)), tuple(sorted(trust.trusted_kids))),
        rotation=RotationStatus(calife.rotation_status(ca_state, ca_wait),
                                jwtkeys.rotation_status(jwt_state, jwt_wait)))
    p.deadlines += [g.retry_at for g in p.waits if g.retry_at is not None]
    return IdentityPlan(objects, p.checks, status, fold_issued(p.events), _wake_at(obs.now, p.deadlines), mounted,
                        [_rotating(ca_state, jwt_state, p.waits)], awaits_peers=bool(p.waits), awaited=awaited,
                        trust_secrets=trust_objects.secrets, obsolete=trust_objects.obsolete)
