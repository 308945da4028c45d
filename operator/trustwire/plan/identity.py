"""What an identity's objects should contain, decided from its spec, what exists and the clock.

The controller gathers an :class:`IdentityObservation` (all I/O happens there) and this
module answers with an :class:`IdentityPlan`: the full desired content of the CA,
credentials and trust Secrets and of the public ConfigMap, the domain checks that become
status conditions, the Events worth emitting and when to look again.

The planner is *conservative*: existing material is kept whenever it is still good, so a
second pass over the same observation plans exactly the same bytes and the controller
writes nothing. Each decision to (re-)issue is a chain of small named checks returning a
reason; the first failing check is the reason reported in the Event. Outputs whose bytes
change on every serialization (PKCS#12 and JKS salts/IVs) are rebuilt only when what they
encode changed (:func:`_stable_output`), so a resync never rolls pods.

Pure: no I/O, no kopf, no kubernetes; ``now`` comes from the caller. Key generation uses
OS randomness through :mod:`trustwire.pki`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from trustwire import names, pki
from trustwire.model import (
    CASource,
    IdentityRef,
    KeystoreFormat,
    ServiceIdentity,
    TrustRelationship,
)
from trustwire.pki.keys import public_key_der
from trustwire.plan import rotation as rot
from trustwire.plan.conditions import TRUE, Check, Condition, passed, stalled, waiting
from trustwire.plan.workloads import material_hash
from trustwire.render import TemplateError, render_template

SECRET_TLS = "kubernetes.io/tls"  # noqa: S105 - Secret types, not passwords
CA_SINCE_ANNOTATION = "trustwire.io/ca-phase-since"
JWT_NEXT_ANNOTATION = "trustwire.io/jwt-next-issued-at"
JWT_PREVIOUS_ANNOTATION = "trustwire.io/jwt-previous"
JWT_PREVIOUS_UNTIL_ANNOTATION = "trustwire.io/jwt-previous-until"
SECRET_OPAQUE = "Opaque"  # noqa: S105
#: Lower bound of the next wake-up, so a tight loop can never start from a clock edge.
MIN_WAKE = timedelta(seconds=5)
#: Rendering time for all of one identity's templates together (not per template), so that
#: twenty template bombs cost one budget, not twenty.
TEMPLATE_BUDGET = 4.0
#: ...and for any single template, so one bomb does not starve the others.
TEMPLATE_BUDGET_EACH = 1.0
#: Kubernetes refuses a Secret whose data values add up to more than 1 MiB (``MaxSecretSize``).
SECRET_DATA_LIMIT = 1024 * 1024


# --------------------------------------------------------------------------------------
# Observation (input) and plan (output)
# --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StoredObject:
    """A Secret or ConfigMap as observed, data already decoded to bytes."""

    name: str
    managed: bool
    owner: str | None
    data: Mapping[str, bytes]
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    type: str | None = None

    def text(self, key: str) -> str | None:
        raw = self.data.get(key)
        return raw.decode("utf-8", "replace") if raw is not None else None


@dataclasses.dataclass(frozen=True)
class Publication:
    """What a peer publishes in its public ConfigMap."""

    ca_pem: bytes
    jwks: tuple[Mapping[str, str], ...]
    info: Mapping[str, Any]

    @property
    def revoked_kids(self) -> tuple[str, ...]:
        return tuple(str(k) for k in self.info.get("revokedKids", []))


@dataclasses.dataclass(frozen=True)
class PeerLink:
    relationship: TrustRelationship
    peer: IdentityRef
    publication: Publication | None
    shared_secret: bytes | None = None


@dataclasses.dataclass(frozen=True)
class IdentityObservation:
    identity: ServiceIdentity
    now: datetime
    ca: StoredObject | None = None
    byo_ca: StoredObject | None = None
    credentials: StoredObject | None = None
    trust: StoredObject | None = None
    public: StoredObject | None = None
    #: keystores.passwordSecretRef resolved: the password, or None when not configured
    user_password: str | None = None
    user_password_problem: str | None = None
    #: template name → source text (None when its ConfigMap/key is missing)
    template_sources: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    links: tuple[PeerLink, ...] = ()
    #: rotation evidence: what each peer reports holding, and what our own workloads run
    peer_states: Mapping[IdentityRef, rot.PeerState] = dataclasses.field(default_factory=dict)
    rolled_out_hash: str | None = None
    propagation_delay: timedelta = rot.DEFAULT_PROPAGATION_DELAY


@dataclasses.dataclass(frozen=True)
class DesiredObject:
    kind: str  # "Secret" | "ConfigMap"
    name: str
    data: Mapping[str, bytes]
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    type: str | None = None
    #: True for objects the identity's deletion should keep (the CA under Retain)
    owned: bool = True


@dataclasses.dataclass(frozen=True)
class PlannedEvent:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclasses.dataclass
class IdentityPlan:
    objects: list[DesiredObject]
    checks: dict[str, Check]
    status: dict[str, Any]
    events: list[PlannedEvent]
    wake_at: datetime | None
    #: bytes of every file mounted at mountPath (credentials + trust), for the material hash
    mounted: dict[str, bytes]
    #: conditions outside the Ready summary (``Rotating``: reason = phase)
    extra_conditions: list[Condition] = dataclasses.field(default_factory=list)
    #: a rotation gate waits for what peers report in their status (their trust, rollouts)
    awaits_peers: bool = False


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------
def _json(value: Any) -> bytes:
    """``json.dumps(value, indent=2, sort_keys=True)`` and a newline, byte for byte (stored
    files must not change between versions). The standard library indents in pure Python —
    its C encoder writes compact output only — which was ~4 % of the operator's CPU at
    scale; :func:`_indented` writes the plain types a plan holds and leaves the rest to it."""
    try:
        text = _indented(value, "\n")
    except _NotPlain:
        text = json.dumps(value, indent=2, sort_keys=True)
    return (text + "\n").encode()


class _NotPlain(Exception):
    pass


_json_string = json.encoder.encode_basestring_ascii  # what json.dumps uses (ensure_ascii)


def _indented(value: Any, newline: str) -> str:
    if isinstance(value, str):
        return _json_string(value)
    if value is None or value is True or value is False:
        return "null" if value is None else "true" if value else "false"
    if type(value) is int:
        return int.__repr__(value)
    inner = newline + "  "
    if isinstance(value, dict):
        if not value:
            return "{}"
        if not all(type(k) is str for k in value):
            raise _NotPlain
        return "{" + inner + ("," + inner).join(
            f"{_json_string(k)}: {_indented(value[k], inner)}" for k in sorted(value)) + newline + "}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        return "[" + inner + ("," + inner).join(_indented(v, inner) for v in value) + newline + "]"
    raise _NotPlain  # floats (json's own repr rules), other types (json's own errors)


def _bounded(items: Sequence[str], shown: int = 5) -> str:
    """A condition message naming a few items, not all of a hub's thousand."""
    head = "; ".join(items[:shown])
    return f"{head}; and {len(items) - shown} more" if len(items) > shown else head


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:32]


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _derived_records(obj: StoredObject | None) -> dict[str, str]:
    if obj is None:
        return {}
    try:
        value = json.loads(obj.annotations.get(names.DERIVED_ANNOTATION, "{}"))
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _stable_output(key: str, inputs: bytes, build: Callable[[], bytes], observed: StoredObject | None,
                   records: dict[str, str]) -> bytes:
    """Reuse the observed bytes of ``key`` if they were built from the same inputs and are intact.

    The record is ``<inputs digest>:<bytes digest>``; an edited file fails the second half,
    a changed key/chain/password the first, and both lead to a rebuild.
    """
    inputs_digest = _digest(inputs)
    previous = _derived_records(observed).get(key)
    existing = observed.data.get(key) if observed is not None else None
    if existing is not None and previous == f"{inputs_digest}:{_digest(existing)}":
        records[key] = previous
        return existing
    built = build()
    records[key] = f"{inputs_digest}:{_digest(built)}"
    return built


def _usable_password(obj: StoredObject | None, key: str) -> str | None:
    """A stored password worth keeping: printable ASCII of sane length (ours are 32 URL-safe
    characters). Anything else — garbage, NUL bytes — is replaced rather than fed to the
    keystore writers."""
    raw = obj.data.get(key) if obj is not None else None
    if not raw or not 8 <= len(raw) <= 256 or not all(0x21 <= b <= 0x7E for b in raw):
        return None
    return raw.decode("ascii")


def _clash(obj: StoredObject | None, kind: str, namespace: str) -> Check | None:
    if obj is not None and not obj.managed:
        return stalled("NameConflict",
                       f"{kind} {namespace}/{obj.name} exists and is not managed by trustwire "
                       f"(no {names.MANAGED_BY}={names.MANAGER} label); it is left untouched — "
                       "rename or remove it to let trustwire create its own")
    return None


def _ca_common_name(ident: ServiceIdentity) -> str:
    """``<name>.<namespace> trustwire CA``, shortened to the X.509 limit of 64 characters."""
    suffix = " trustwire CA"
    return f"{ident.name}.{ident.namespace}"[: 64 - len(suffix)] + suffix


def renewal_time(cert: x509.Certificate, renew_before: timedelta) -> datetime:
    """When to renew: ``renewBefore`` ahead of expiry, or at 2/3 of a lifetime shorter than that."""
    start, end = pki.not_before(cert), pki.not_after(cert)
    life = end - start
    if renew_before >= life:
        return start + life * 2 / 3
    return end - renew_before


def ca_renewal_time(cert: x509.Certificate) -> datetime:
    """docs/design.md §5: prepare the next CA at ``notAfter - min(life/2, 30d)``."""
    start, end = pki.not_before(cert), pki.not_after(cert)
    return end - min((end - start) / 2, timedelta(days=30))


# --------------------------------------------------------------------------------------
# Material decisions: chains of named checks
# --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CAMaterial:
    cert: x509.Certificate
    key: pki.PrivateKey
    cert_pem: bytes
    key_pem: bytes


def _load_ca(obj: StoredObject | None) -> tuple[CAMaterial | None, str | None]:
    """Parse tls.crt/tls.key of a CA Secret; (None, problem) when unusable."""
    if obj is None:
        return None, "does not exist"
    crt, key = obj.data.get("tls.crt"), obj.data.get("tls.key")
    if not crt or not key:
        return None, "lacks tls.crt or tls.key"
    try:
        certs = pki.load_certificates(crt)
        private = pki.load_private_key(key)
    except pki.PKIError as exc:
        return None, str(exc)
    return CAMaterial(certs[0], private, pki.cert_to_pem(certs[0]), pki.private_key_to_pem(private)), None


def _ca_reissue_reason(identity: ServiceIdentity, obj: StoredObject | None, now: datetime) -> tuple[str, str] | None:
    if obj is None:
        return "Issued", "no CA yet"
    material, problem = _load_ca(obj)
    if material is None:
        return "Repaired", f"the stored CA was unusable ({problem})"
    problems = pki.check_ca(material.cert, material.key, now=now)
    if problems:
        return "Repaired", f"the stored CA was unusable ({'; '.join(problems)})"
    return None


def _leaf_reissue_reason(identity: ServiceIdentity, ca: CAMaterial, creds: StoredObject | None,
                         now: datetime, rotate: bool) -> tuple[str, str] | None:
    """None when the stored leaf is still good; else (event reason, why)."""
    if creds is None or ("tls.crt" not in creds.data and "tls.key" not in creds.data):
        return "Issued", "no certificate yet"
    if not creds.data.get("tls.crt") or not creds.data.get("tls.key"):
        return "Repaired", "tls.crt or tls.key was missing, empty or not valid base64"
    try:
        chain = pki.load_certificates(creds.data["tls.crt"])
        key = pki.load_private_key(creds.data["tls.key"])
    except pki.PKIError as exc:
        return "Repaired", f"the stored certificate or key was unusable ({exc})"
    leaf = chain[0]
    if not pki.public_key_matches(key, leaf):
        return "Repaired", "the stored key does not match the stored certificate"
    problems = pki.check_leaf(leaf, key, ca.cert, now=now, dns_names=identity.all_dns_names,
                              uri_sans=[identity.spiffe_id])
    if problems:
        return "Reissued", "; ".join(problems)
    if set(pki.dns_sans(leaf)) != set(identity.all_dns_names):
        return "Reissued", "the DNS names in the spec changed"
    if pki.key_algorithm_of(key) != identity.certificate.key_algorithm:
        return "Reissued", f"spec.certificate.keyAlgorithm is now {identity.certificate.key_algorithm}"
    if now >= renewal_time(leaf, identity.certificate.renew_before):
        return "Renewed", f"renewal time {_stamp(renewal_time(leaf, identity.certificate.renew_before))} reached"
    if rotate:
        return "Renewed", f"requested with the {names.ROTATE_ANNOTATION} annotation"
    return None


@dataclasses.dataclass(frozen=True)
class JwtMaterial:
    key: pki.PrivateKey
    key_pem: bytes
    public: dict[str, str]
    private: dict[str, str]
    kid: str
    issued_at: datetime
    algorithm: pki.JwtAlgorithm


def _jwt_algorithm(identity: ServiceIdentity | None, credentials: StoredObject, key_name: str,
                   key: pki.PrivateKey) -> pki.JwtAlgorithm | None:
    """The algorithm a stored JWT key is used with: the spec's, or — for the active key after
    ``spec.jwt.algorithm`` changed — the one it was issued for (``jwt.jwk``), so it keeps
    signing and stays published until its successor in the new algorithm is activated."""
    if identity is not None and pki.jwt_algorithm_accepts(identity.jwt.algorithm, key):
        return identity.jwt.algorithm
    if key_name != "jwt.key" and identity is not None:
        return None
    stored = _stored_jwt_algorithm(credentials)  # parsed only when the spec's does not fit
    return stored if stored is not None and pki.jwt_algorithm_accepts(stored, key) else None


def _load_jwt(identity: ServiceIdentity, creds: StoredObject | None,
              key_name: str) -> tuple[JwtMaterial | None, str | None]:
    """The JWT key stored under ``key_name`` (``jwt.key`` active, ``jwt-next.key`` published next)."""
    if creds is None or key_name not in creds.data:
        return None, "no JWT key yet"
    if not creds.data[key_name]:
        return None, f"the stored {key_name} was empty or not valid base64"
    try:
        key = pki.load_private_key(creds.data[key_name])
    except pki.PKIError as exc:
        return None, f"the stored JWT key was unusable ({exc})"
    algorithm = _jwt_algorithm(identity, creds, key_name, key)
    if algorithm is None:
        return None, f"spec.jwt.algorithm is now {identity.jwt.algorithm}"
    stamp = names.JWT_ISSUED_ANNOTATION if key_name == "jwt.key" else JWT_NEXT_ANNOTATION
    issued = parse_time(creds.annotations.get(stamp))
    if issued is None:
        return None, "the stored JWT key has no usable issue time"
    material = _jwt_material(algorithm, key, issued)
    if key_name == "jwt.key" and _witnesses_disagree(creds, material.kid):
        # jwt.kid and jwt.jwk are both derived from jwt.key: when *both* name another key,
        # jwt.key itself was replaced (one edited witness alone is simply restored)
        return None, "jwt.key matches neither jwt.kid nor jwt.jwk (the key was replaced or swapped)"
    return material, None


def _witnesses_disagree(creds: StoredObject, kid: str) -> bool:
    if "jwt.kid" not in creds.data or "jwt.jwk" not in creds.data:
        return False
    stored_kid = creds.data["jwt.kid"].decode("utf-8", "replace").strip()
    try:
        jwk_kid = json.loads(creds.data["jwt.jwk"]).get("kid")
    except (ValueError, AttributeError):
        jwk_kid = None
    return stored_kid != kid and jwk_kid != kid


def _previous_jwk(annotations: Mapping[str, str]) -> tuple[dict[str, str] | None, datetime | None]:
    """The retired public JWK still published during its grace period (public data only)."""
    until = parse_time(annotations.get(JWT_PREVIOUS_UNTIL_ANNOTATION))
    try:
        jwk = json.loads(annotations.get(JWT_PREVIOUS_ANNOTATION, "null"))
    except ValueError:
        return None, None
    if not isinstance(jwk, dict) or until is None:
        return None, None
    public = {str(k): str(v) for k, v in jwk.items() if k in pki.jwk.PUBLIC_MEMBERS}
    return public, until


def _own_jwks(active: JwtMaterial, upcoming: JwtMaterial | None,
              previous: Mapping[str, str] | None) -> list[dict[str, str]]:
    keys = [active.public]
    if upcoming is not None:
        keys.append(upcoming.public)
    if previous is not None and previous.get("kid") not in (active.kid, upcoming.kid if upcoming else None):
        keys.append(dict(previous))
    return keys


def _load_ca_pair(obj: StoredObject | None, crt: str, key: str) -> CAMaterial | None:
    if obj is None or not obj.data.get(crt) or not obj.data.get(key):
        return None
    material, _ = _load_ca(StoredObject(obj.name, obj.managed, obj.owner,
                                        {"tls.crt": obj.data[crt], "tls.key": obj.data[key]}))
    return material


def _load_cert(obj: StoredObject | None, key: str) -> x509.Certificate | None:
    if obj is None or not obj.data.get(key):
        return None
    try:
        return pki.load_certificates(obj.data[key])[0]
    except pki.PKIError:
        return None


def _ca_rotation_trigger(ident: ServiceIdentity, ca: CAMaterial, now: datetime, rotate: str | None) -> str | None:
    """Why the CA should start rotating, or None (chain of named checks)."""
    if rotate == "ca":
        return f"requested with the {names.ROTATE_ANNOTATION} annotation"
    if now >= ca_renewal_time(ca.cert):
        return f"renewal time {_stamp(ca_renewal_time(ca.cert))} reached"
    if pki.key_algorithm_of(ca.key) != ident.ca.key_algorithm:
        return f"spec.ca.keyAlgorithm is now {ident.ca.key_algorithm}"
    return None


def _gate_with_outsiders(gate: rot.Gate, consumers: Sequence[object], now: datetime, since: datetime,
                         delay: timedelta) -> rot.Gate:
    """With no in-cluster consumer, parties outside the cluster still read the public
    ConfigMap: give them the propagation delay before switching."""
    if consumers or not gate.met or now >= since + delay:
        return gate
    return rot.Gate(False, "no peers; waiting the propagation delay for outside consumers", since + delay)


def _jwt_material(algorithm: pki.JwtAlgorithm, key: pki.PrivateKey, issued: datetime) -> JwtMaterial:
    public = pki.public_jwk(key, algorithm)
    private = pki.private_jwk(key, algorithm)
    return JwtMaterial(key, pki.private_key_to_pem(key), public, private, public["kid"], issued, algorithm)


def parse_time(text: object) -> datetime | None:
    """An RFC 3339 timestamp as we write them; anything else (no zone, absurd year, garbage,
    not a string) is None. The one parser of timestamps for every layer."""
    if not isinstance(text, str) or not text or len(text) > 40:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None or not 2000 <= moment.year <= 9000:
        return None
    return moment


# --------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------
def plan_identity(obs: IdentityObservation, *, rotate: str | None = None) -> IdentityPlan:
    """Decide the desired objects and checks for one identity (see module docstring)."""
    ident, now, ns = obs.identity, obs.now, obs.identity.namespace
    objects: list[DesiredObject] = []
    events: list[PlannedEvent] = []
    checks: dict[str, Check] = {}
    status: dict[str, Any] = {"spiffeId": ident.spiffe_id, "issuer": ident.issuer}
    deadlines: list[datetime] = []

    # ---- CA -------------------------------------------------------------------------
    ca: CAMaterial | None = None
    ca_next: CAMaterial | None = None
    ca_previous: x509.Certificate | None = None
    ca_phase, ca_since = rot.IDLE, now
    rotation_waits: dict[str, rot.Gate] = {}
    if ident.ca.source is CASource.SECRET:
        byo = obs.byo_ca
        if byo is None:
            checks["CAReady"] = waiting("CASecretNotFound",
                                        f"spec.ca.secretRef.name: Secret {ns}/{ident.ca.secret_name} does not exist")
        else:
            ca, problem = _load_ca(byo)
            problems = [problem] if ca is None and problem else (
                pki.check_ca(ca.cert, ca.key, now=now) if ca is not None else [])
            if problems:
                ca = None
                checks["CAReady"] = stalled("CASecretInvalid",
                                            f"spec.ca.secretRef.name: Secret {ns}/{ident.ca.secret_name} "
                                            f"is not a usable CA: {'; '.join(problems)}")
            else:
                checks["CAReady"] = passed("Valid", f"using the CA from Secret {ns}/{ident.ca.secret_name}")
    else:
        clash = _clash(obs.ca, "Secret", ns)
        if clash:
            checks["CAReady"] = clash
        else:
            reason = _ca_reissue_reason(ident, obs.ca, now)
            if reason is None:
                ca, _ = _load_ca(obs.ca)
                ca_next = _load_ca_pair(obs.ca, "next.crt", "next.key")
                ca_previous = _load_cert(obs.ca, "previous.crt")
                ca_since = parse_time((obs.ca.annotations if obs.ca else {}).get(CA_SINCE_ANNOTATION)) or now
                ca_phase = rot.DISTRIBUTING if ca_next else rot.RETIRING if ca_previous else rot.IDLE
            else:
                key = pki.generate_private_key(ident.ca.key_algorithm)
                cert = pki.create_ca(key, common_name=_ca_common_name(ident), now=now,
                                     lifetime=ident.ca.duration)
                ca = CAMaterial(cert, key, pki.cert_to_pem(cert), pki.private_key_to_pem(key))
                events.append(PlannedEvent("Normal" if reason[0] == "Issued" else "Warning", f"CA{reason[0]}",
                                           f"CA serial {pki.serial_hex(cert)} issued: {reason[1]}"))
            assert ca is not None
            why = _ca_rotation_trigger(ident, ca, now, rotate)
            if ca_phase == rot.IDLE and why:
                key = pki.generate_private_key(ident.ca.key_algorithm)
                cert = pki.create_ca(key, common_name=_ca_common_name(ident), now=now,
                                     lifetime=ident.ca.duration)
                ca_next = CAMaterial(cert, key, pki.cert_to_pem(cert), pki.private_key_to_pem(key))
                ca_phase, ca_since = rot.DISTRIBUTING, now
                events.append(PlannedEvent("Normal", "CARotationDistributing",
                                           f"next CA serial {pki.serial_hex(cert)} prepared ({why}); "
                                           "distributing it to every peer before use"))
            if ca_phase == rot.DISTRIBUTING and ca_next is not None:
                consumers = [(lk.peer, obs.peer_states.get(lk.peer)) for lk in obs.links
                             if lk.relationship.mtls and lk.publication is not None]
                gate = _gate_with_outsiders(rot.distribution_gate(
                    "CA", consumers, pki.fingerprint_sha256(ca_next.cert), "ca", now=now, since=ca_since,
                    delay=obs.propagation_delay), consumers, now, ca_since, obs.propagation_delay)
                if gate.met:
                    ca_previous, ca, ca_next = ca.cert, ca_next, None
                    ca_phase, ca_since = rot.RETIRING, now
                    events.append(PlannedEvent("Normal", "CARotationActivated",
                                               f"CA serial {pki.serial_hex(ca.cert)} is now active ({gate.message}); "
                                               "re-issuing the certificate from it"))
                else:
                    rotation_waits["ca"] = gate
            checks["CAReady"] = passed("Valid", f"CA serial {pki.serial_hex(ca.cert)} valid until "
                                                f"{_stamp(pki.not_after(ca.cert))}")
    if ca is not None:
        status["ca"] = {
            "source": str(ident.ca.source),
            "serial": pki.serial_hex(ca.cert),
            "fingerprint": pki.fingerprint_sha256(ca.cert),
            "notBefore": _stamp(pki.not_before(ca.cert)),
            "notAfter": _stamp(pki.not_after(ca.cert)),
            "renewalTime": _stamp(ca_renewal_time(ca.cert)),
        }
        deadlines.append(pki.not_after(ca.cert))
        if ident.ca.source is CASource.SELF_SIGNED and ca_phase == rot.IDLE:
            deadlines.append(ca_renewal_time(ca.cert))  # when the next CA is prepared

    # ---- credentials: leaf, keystores, JWT --------------------------------------------
    creds_obs = obs.credentials
    creds_clash = _clash(creds_obs, "Secret", ns)
    creds_data: dict[str, bytes] = {}
    creds_records: dict[str, str] = {}
    creds_annotations: dict[str, str] = {}
    jwt: JwtMaterial | None = None
    leaf_key: pki.PrivateKey | None = None
    if creds_clash:
        checks["CertificateReady"] = creds_clash
    elif ca is None:
        checks["CertificateReady"] = waiting("CANotReady", "waiting for the CA (see CAReady)")
    elif obs.user_password_problem:
        checks["CertificateReady"] = stalled("KeystorePasswordMissing", obs.user_password_problem)
    else:
        reason = _leaf_reissue_reason(ident, ca, creds_obs, now, rotate == "certificate")
        if reason is None:
            assert creds_obs is not None
            chain = pki.load_certificates(creds_obs.data["tls.crt"])
            leaf, leaf_key = chain[0], pki.load_private_key(creds_obs.data["tls.key"])
        else:
            leaf_key = pki.generate_private_key(ident.certificate.key_algorithm)
            leaf = pki.create_leaf(ca.cert, ca.key, leaf_key.public_key(), common_name=ident.service_name,
                                   dns_names=ident.all_dns_names, uri_sans=[ident.spiffe_id], now=now,
                                   lifetime=ident.certificate.duration)
            events.append(PlannedEvent("Normal" if reason[0] != "Repaired" else "Warning", f"Certificate{reason[0]}",
                                       f"certificate serial {pki.serial_hex(leaf)} issued: {reason[1]}"))
        leaf_pem = pki.cert_to_pem(leaf)
        key_pem = pki.private_key_to_pem(leaf_key)
        creds_data["tls.crt"] = leaf_pem + ca.cert_pem
        creds_data["tls.key"] = key_pem
        creds_data["ca.crt"] = ca.cert_pem
        password = obs.user_password or _usable_password(creds_obs, "keystore.password") \
            or pki.random_password()
        creds_data["keystore.password"] = password.encode()
        chain_inputs = b"|".join([key_pem, leaf_pem, ca.cert_pem, password.encode(),
                                  b"legacy" if ident.keystores.legacy_pkcs12 else b"modern"])
        if KeystoreFormat.PKCS12 in ident.keystores.formats:
            creds_data["keystore.p12"] = _stable_output(
                "keystore.p12", chain_inputs,
                lambda: pki.pkcs12_keystore(leaf_key, leaf, [ca.cert], password,
                                            legacy=ident.keystores.legacy_pkcs12),
                creds_obs, creds_records)
        if KeystoreFormat.JKS in ident.keystores.formats:
            creds_data["keystore.jks"] = _stable_output(
                "keystore.jks", chain_inputs,
                lambda: pki.jks_keystore(leaf_key, leaf, [ca.cert], password), creds_obs, creds_records)
        renew_at = renewal_time(leaf, ident.certificate.renew_before)
        deadlines.append(renew_at)
        status["certificate"] = {
            "serial": pki.serial_hex(leaf),
            "fingerprint": pki.fingerprint_sha256(leaf),
            "notAfter": _stamp(pki.not_after(leaf)),
            "renewalTime": _stamp(renew_at),
            "dnsNames": list(ident.all_dns_names),
        }
        checks["CertificateReady"] = passed("Valid", f"certificate serial {pki.serial_hex(leaf)} valid until "
                                                     f"{_stamp(pki.not_after(leaf))}")

    jwt_next: JwtMaterial | None = None
    jwt_previous: dict[str, str] | None = None
    previous_until: datetime | None = None
    reserved_keys = {public_key_der(k) for k in (ca.key if ca else None, leaf_key) if k is not None}
    if ident.jwt.enabled and not creds_clash:
        jwt, problem = _load_jwt(ident, creds_obs, "jwt.key")
        jwt_next, _ = _load_jwt(ident, creds_obs, "jwt-next.key")
        annotations = creds_obs.annotations if creds_obs else {}
        jwt_previous, previous_until = _previous_jwk(annotations)
        jwt_reason: tuple[str, str] | None = None
        if jwt is not None and public_key_der(jwt.key) in reserved_keys:
            jwt, problem = None, "jwt.key is the same key as the CA or TLS key; a signing key must be its own"
        if jwt is None:
            kind = "Generated" if problem == "no JWT key yet" else \
                "Rotated" if (problem or "").startswith("spec.jwt.algorithm") else "Repaired"
            jwt_reason = (kind, problem or "")
        elif jwt.kid in ident.jwt.revoked_kids:
            jwt_reason = ("Rotated", f"the active key {jwt.kid} is listed in spec.jwt.revokedKids; replaced at once")
        if jwt_reason is not None and "tls.crt" not in creds_data:
            # The credentials Secret is not written this pass (no CA, no keystore password): a key
            # generated now would be stored nowhere and be a different one on every pass.
            jwt, jwt_next, jwt_previous = None, None, None
        elif jwt_reason is not None:
            jwt = _jwt_material(ident.jwt.algorithm, pki.generate_jwt_key(ident.jwt.algorithm), now)
            jwt_next, jwt_previous = None, None
            events.append(PlannedEvent("Normal" if jwt_reason[0] != "Repaired" else "Warning",
                                       f"JwtKey{jwt_reason[0]}",
                                       f"JWT key {jwt.kid} ({ident.jwt.algorithm}) generated: {jwt_reason[1]}"))
    if jwt is not None:
        if jwt_next is not None and jwt_next.kid in ident.jwt.revoked_kids:
            jwt_next = None
        if jwt_next is None and "tls.crt" in creds_data and (
                now >= jwt.issued_at + ident.jwt.rotation_period or rotate == "jwt"
                or jwt.algorithm != ident.jwt.algorithm):
            jwt_next = _jwt_material(ident.jwt.algorithm, pki.generate_jwt_key(ident.jwt.algorithm), now)
            why = f"spec.jwt.algorithm is now {ident.jwt.algorithm}" if jwt.algorithm != ident.jwt.algorithm \
                else "rotation requested" if rotate == "jwt" else "spec.jwt.rotationPeriod elapsed"
            events.append(PlannedEvent("Normal", "JwtKeyPublishing",
                                       f"next JWT key {jwt_next.kid} published to peers for verification ({why})"))
        if jwt_next is not None:
            me = IdentityRef(ns, ident.name)
            receivers = [(lk.peer, obs.peer_states.get(lk.peer)) for lk in obs.links
                         if lk.relationship.jwt and lk.relationship.sends_to(me) and lk.publication is not None]
            gate = _gate_with_outsiders(rot.distribution_gate(
                "JWT key", receivers, jwt_next.kid, "kid", now=now, since=jwt_next.issued_at,
                delay=obs.propagation_delay), receivers, now, jwt_next.issued_at, obs.propagation_delay)
            if gate.met:
                jwt_previous, previous_until = jwt.public, now + rot.jwt_grace(ident.jwt.rotation_period)
                jwt = dataclasses.replace(jwt_next, issued_at=now)
                jwt_next = None
                events.append(PlannedEvent("Normal", "JwtKeyActivated",
                                           f"JWT key {jwt.kid} now signs tokens ({gate.message}); the previous key "
                                           f"stays published until {_stamp(previous_until)}"))
            else:
                rotation_waits["jwt"] = gate
        if jwt_previous is not None and (previous_until is None or now >= previous_until
                                         or jwt_previous.get("kid") in ident.jwt.revoked_kids):
            jwt_previous = None
        creds_data["jwt.key"] = jwt.key_pem
        creds_data["jwt.jwk"] = _json(jwt.private)
        creds_data["jwt.kid"] = jwt.kid.encode()
        creds_annotations[names.JWT_ISSUED_ANNOTATION] = _stamp(jwt.issued_at)
        if jwt_next is not None:
            creds_data["jwt-next.key"] = jwt_next.key_pem
            creds_annotations[JWT_NEXT_ANNOTATION] = _stamp(jwt_next.issued_at)
        if jwt_previous is not None and previous_until is not None:
            creds_annotations[JWT_PREVIOUS_ANNOTATION] = json.dumps(jwt_previous, sort_keys=True)
            creds_annotations[JWT_PREVIOUS_UNTIL_ANNOTATION] = _stamp(previous_until)
            deadlines.append(previous_until)
        rotation_time = jwt.issued_at + ident.jwt.rotation_period
        deadlines.append(rotation_time)
        published = [j["kid"] for j in _own_jwks(jwt, jwt_next, jwt_previous)]
        status["jwt"] = {"kid": jwt.kid, "algorithm": str(jwt.algorithm), "publishedKids": published,
                         "rotationTime": _stamp(rotation_time)}

    if creds_data and "tls.crt" in creds_data:
        if creds_records:
            creds_annotations[names.DERIVED_ANNOTATION] = json.dumps(creds_records, sort_keys=True)
        objects.append(DesiredObject("Secret", names.credentials_secret(ident.name), creds_data,
                                     names.identity_labels(ident.name, "credentials"), creds_annotations,
                                     type=SECRET_TLS))

    # ---- trust: peers' CAs, JWKS, shared secrets, templates ---------------------------
    trust_obs = obs.trust
    trust_clash = _clash(trust_obs, "Secret", ns)
    if trust_clash:
        trust = TrustContent({}, {}, [], set(), set(), {"TrustReady": trust_clash})
        if ident.templates:
            trust.checks["TemplatesReady"] = waiting("TrustNotReady", "the trust Secret cannot be written")
    else:
        trust = _fitting_trust(obs, ca, jwt)
        annotations = {names.DERIVED_ANNOTATION: json.dumps(trust.records, sort_keys=True)} if trust.records else {}
        if trust.write:
            objects.append(DesiredObject("Secret", names.trust_secret(ident.name), trust.data,
                                         names.identity_labels(ident.name, "trust"), annotations,
                                         type=SECRET_OPAQUE))
    checks.update(trust.checks)
    trust_data, trusted_cas, trusted_kids = trust.data, trust.trusted_cas, trust.trusted_kids
    status["peers"] = trust.peers_status
    status["peerCount"] = len(trust.peers_status)
    mounted = {**creds_data, **trust_data} if "tls.crt" in creds_data else {}

    # ---- CA: retire, then the CA Secret and the public ConfigMap -------------------------
    if ca is not None and ca_phase == rot.RETIRING and ca_previous is not None:
        gate = rot.own_rollout_gate(has_workloads=bool(ident.workloads), rolled_out_hash=obs.rolled_out_hash,
                                    current_hash=material_hash(mounted) if mounted else None, now=now,
                                    since=ca_since, delay=obs.propagation_delay)
        if gate.met or pki.not_after(ca_previous) <= now:
            events.append(PlannedEvent("Normal", "CARotationRetired",
                                       f"CA serial {pki.serial_hex(ca_previous)} retired from every trust bundle"))
            ca_previous, ca_phase = None, rot.IDLE
        else:
            rotation_waits["ca"] = gate
    own_cas = [c for c in (ca.cert if ca else None, ca_next.cert if ca_next else None, ca_previous) if c]
    if ca is not None and ident.ca.source is CASource.SELF_SIGNED:
        ca_data = {"tls.crt": ca.cert_pem, "tls.key": ca.key_pem}
        ca_annotations: dict[str, str] = {}
        if ca_next is not None:
            ca_data |= {"next.crt": ca_next.cert_pem, "next.key": ca_next.key_pem}
        if ca_previous is not None:
            ca_data["previous.crt"] = pki.cert_to_pem(ca_previous)
        if ca_phase != rot.IDLE:
            ca_annotations[CA_SINCE_ANNOTATION] = _stamp(ca_since)
        objects.insert(0, DesiredObject("Secret", names.ca_secret(ident.name), ca_data,
                                        names.identity_labels(ident.name, "ca"), ca_annotations,
                                        type=SECRET_TLS, owned=False))
    public_clash = _clash(obs.public, "ConfigMap", ns)
    if public_clash:
        checks["CAReady"] = public_clash
    elif ca is not None:
        own_jwks = _own_jwks(jwt, jwt_next, jwt_previous) if jwt is not None else []
        info = {
            "name": ident.name, "namespace": ns, "serviceName": ident.service_name,
            "spiffeId": ident.spiffe_id, "issuer": ident.issuer,
            "caFingerprints": [pki.fingerprint_sha256(c) for c in own_cas],
            "kids": [j["kid"] for j in own_jwks], "revokedKids": list(ident.jwt.revoked_kids),
            "jwtAlgorithm": str(jwt.algorithm) if jwt is not None else None,
        }
        objects.append(DesiredObject("ConfigMap", names.public_configmap(ident.name), {
            "ca.crt": pki.certs_to_pem(own_cas), "jwks.json": _json(pki.jwks(own_jwks)),
            "identity.json": _json(info),
        }, names.identity_labels(ident.name, "public")))

    # ---- rotation status ------------------------------------------------------------------
    rotation: dict[str, Any] = {"ca": {"phase": ca_phase}, "jwt": {"phase": rot.PUBLISHING if jwt_next else rot.IDLE}}
    if ca_phase != rot.IDLE:
        rotation["ca"]["since"] = _stamp(ca_since)
        if ca_next is not None:
            rotation["ca"]["next"] = pki.fingerprint_sha256(ca_next.cert)
        if ca_previous is not None:
            rotation["ca"]["previous"] = pki.fingerprint_sha256(ca_previous)
    if jwt_next is not None:
        rotation["jwt"] |= {"since": _stamp(jwt_next.issued_at), "nextKid": jwt_next.kid}
    if jwt_previous is not None:
        rotation["jwt"]["previousKid"] = jwt_previous.get("kid")
    for what, gate in rotation_waits.items():
        rotation[what]["waitingFor"] = gate.message
        if gate.retry_at is not None:
            deadlines.append(gate.retry_at)
    status["rotation"] = rotation
    status["trust"] = {"caFingerprints": sorted(trusted_cas), "kids": sorted(trusted_kids)}
    phases = [f"CA {ca_phase}" for _ in [0] if ca_phase != rot.IDLE] + \
        [f"JWT {rot.PUBLISHING}" for _ in [0] if jwt_next is not None]
    rotating = Condition("Rotating", TRUE if phases else "False",
                         (ca_phase if ca_phase != rot.IDLE else rot.PUBLISHING) if phases else rot.IDLE,
                         "; ".join(phases + [g.message for g in rotation_waits.values()]))
    future = [d for d in deadlines if d > now]
    wake_at = max(min(future), now + MIN_WAKE) if future else None
    return IdentityPlan(objects, checks, status, events, wake_at, mounted, [rotating],
                        awaits_peers=bool(rotation_waits.keys() & {"ca", "jwt"}))


@dataclasses.dataclass
class TrustContent:
    """The trust Secret's data for a set of peers, and what it tells status and peers."""

    data: dict[str, bytes]
    records: dict[str, str]
    peers_status: list[dict[str, Any]]
    trusted_cas: set[str]
    trusted_kids: set[str]
    #: TrustReady, and TemplatesReady when the identity has templates
    checks: dict[str, Check]
    #: False when the Secret must be left exactly as it is
    write: bool = True

    @property
    def size(self) -> int:
        return sum(len(value) for value in self.data.values())


def _fitting_trust(obs: IdentityObservation, ca: CAMaterial | None, jwt: JwtMaterial | None) -> TrustContent:
    """The trust Secret for every peer — or, when that outgrows what a Secret may hold, for
    the peers it already holds plus, in a fixed order, as many waiting peers as still fit
    (so removals and revocations take effect at once, nothing already trusted is lost, and
    the set only grows from pass to pass), reported as ``TrustTooLarge``."""
    ident, ns = obs.identity, obs.identity.namespace
    trust = _trust_content(obs, ca, jwt, obs.links)
    if trust.size <= SECRET_DATA_LIMIT:
        return trust
    held = _held_peers(obs.trust)
    kept = [link for link in obs.links if _link_key(link) in held]
    waiting_links = sorted((link for link in obs.links if _link_key(link) not in held), key=_link_order)
    fitting = _trust_content(obs, ca, jwt, kept)
    if fitting.size > SECRET_DATA_LIMIT:  # even those no longer fit: leave the Secret exactly as it is
        stored = dict(obs.trust.data) if obs.trust is not None else {}
        fitting = TrustContent(stored, {}, fitting.peers_status, *_trusted_in(stored), fitting.checks, write=False)
    elif waiting_links:
        per_peer = (trust.size - fitting.size) / len(waiting_links)
        count = min(len(waiting_links), int((SECRET_DATA_LIMIT - fitting.size) / max(per_peer, 1.0)))
        while count > 0:
            candidate = _trust_content(obs, ca, jwt, [*kept, *waiting_links[:count]])
            if candidate.size <= SECRET_DATA_LIMIT:
                fitting = candidate
                break
            count = min(count - 1, int(count * 0.97))
    trusted = len(fitting.peers_status)
    rendered = sum(len(trust.data.get(t.name, b"")) for t in ident.templates)
    fitting.checks["TrustReady"] = stalled(
        "TrustTooLarge",
        f"Secret {ns}/{names.trust_secret(ident.name)} would need {trust.size:,} bytes for {len(obs.links)} "
        f"peer(s) and {len(ident.templates)} template(s) ({rendered:,} bytes rendered); Kubernetes limits a "
        f"Secret to {SECRET_DATA_LIMIT:,} bytes (1 MiB). {trusted} peer(s) are trusted, "
        f"{len(obs.links) - trusted} wait. Split the peers across several identities, shorten the templates, "
        "or leave JKS out of spec.keystores.formats")
    return fitting


def _link_order(link: PeerLink) -> tuple[str, str, str]:
    return str(link.peer), link.relationship.namespace, link.relationship.name


def _link_key(link: PeerLink) -> tuple[str, str, str]:
    rel = link.relationship
    return link.peer.namespace, link.peer.name, f"{rel.namespace}/{rel.name}"


def _held_peers(trust: StoredObject | None) -> set[tuple[str, str, str]]:
    """(namespace, identity, relationship) of every peer in a stored ``peers.json``."""
    try:
        entries = json.loads(trust.data.get("peers.json", b"[]")) if trust is not None else []
    except ValueError:
        return set()
    if not isinstance(entries, list):
        return set()
    return {(str(e.get("namespace")), str(e.get("identity")), str(e.get("relationship")))
            for e in entries if isinstance(e, dict)}


def _trusted_in(data: Mapping[str, bytes]) -> tuple[set[str], set[str]]:
    """CA fingerprints and kids a stored trust Secret really holds."""
    try:
        cas = {pki.fingerprint_sha256(c) for c in pki.load_certificates(data.get("trust-bundle.pem", b""))}
    except pki.PKIError:
        cas = set()
    try:
        keys = json.loads(data.get("peers.jwks", b"{}")).get("keys", [])
        kids = {str(k.get("kid")) for k in keys if isinstance(k, dict)}
    except (ValueError, AttributeError):
        kids = set()
    return cas, kids


def _trust_content(obs: IdentityObservation, ca: CAMaterial | None, jwt: JwtMaterial | None,
                   links: Sequence[PeerLink]) -> TrustContent:
    """Peers' CAs, JWKS, shared secrets and rendered templates for ``links``."""
    ident, ns, trust_obs = obs.identity, obs.identity.namespace, obs.trust
    checks: dict[str, Check] = {}
    trust_data: dict[str, bytes] = {}
    trust_records: dict[str, str] = {}
    peers_status: list[dict[str, Any]] = []
    peers_context: list[dict[str, Any]] = []
    pending: list[str] = []
    bundle: dict[str, x509.Certificate] = {}
    peer_keys: dict[str, Mapping[str, str]] = {}
    peers_json: list[dict[str, Any]] = []
    short_names = [link.peer.name for link in links]
    for link in sorted(links, key=_link_order):
        rel, pub = link.relationship, link.publication
        me = IdentityRef(ns, ident.name)
        direction = "both" if rel.initiator is None else ("outbound" if rel.initiator == me else "inbound")
        entry_status = {"identity": link.peer.name, "namespace": link.peer.namespace,
                        "relationship": f"{rel.namespace}/{rel.name}", "mtls": rel.mtls, "jwt": rel.jwt,
                        "sharedSecret": rel.shared_secret}
        if pub is None:
            pending.append(f"{link.peer} has not published its material yet")
            continue
        secret_file = None
        if rel.shared_secret:
            if link.shared_secret is None:
                pending.append(f"the shared secret of relationship {rel.namespace}/{rel.name} is not ready")
                continue
            key_name = link.peer.name if short_names.count(link.peer.name) == 1 else \
                f"{link.peer.namespace}.{link.peer.name}"
            secret_file = f"shared-{key_name}.key"
            trust_data[secret_file] = link.shared_secret
        ca_fingerprints: list[str] = []
        ca_pem = b""
        if rel.mtls:
            try:
                peer_cas = pki.load_certificates(pub.ca_pem)
            except pki.PKIError:
                pending.append(f"{link.peer} publishes an unreadable CA")
                continue
            for cert in peer_cas:
                bundle[pki.fingerprint_sha256(cert)] = cert
                ca_fingerprints.append(pki.fingerprint_sha256(cert))
            ca_pem = pki.certs_to_pem(peer_cas)
        revoked = set(pub.revoked_kids)
        peer_jwks = [dict(j) for j in pub.jwks if j.get("kid") not in revoked]
        accepts_tokens = rel.jwt and rel.sends_to(link.peer)
        if accepts_tokens:
            for j in peer_jwks:
                peer_keys[str(j["kid"])] = j
        kids = [str(j["kid"]) for j in peer_jwks] if rel.jwt else []
        entry = {
            "identity": link.peer.name, "namespace": link.peer.namespace,
            "relationship": f"{rel.namespace}/{rel.name}", "direction": direction,
            "mtls": rel.mtls, "jwt": rel.jwt, "kids": kids if accepts_tokens else [],
            "roles": list(rel.roles), "audience": rel.audience, "scopes": list(rel.scopes),
            "revoked": bool(revoked) and not peer_jwks, "revokedKids": sorted(revoked),
            "issuer": str(pub.info.get("issuer", "")), "spiffeId": str(pub.info.get("spiffeId", "")),
            "caFingerprints": ca_fingerprints, "sharedSecretFile": secret_file,
        }
        peers_json.append(entry)
        peers_status.append(entry_status)
        peers_context.append({**entry, "jwks": peer_jwks if accepts_tokens else [],
                              "caPem": ca_pem.decode(),
                              "caFingerprint": ca_fingerprints[0] if ca_fingerprints else "",
                              "sharedSecretFile": f"{ident.mount_path}/{secret_file}" if secret_file else None})
    bundle_certs = [bundle[fp] for fp in sorted(bundle)]
    trust_data["trust-bundle.pem"] = pki.certs_to_pem(bundle_certs) if bundle_certs else b""
    trust_password = obs.user_password or _usable_password(trust_obs, "truststore.password") \
        or pki.random_password()
    trust_data["truststore.password"] = trust_password.encode()
    bundle_inputs = b"|".join([trust_data["trust-bundle.pem"], trust_password.encode(),
                               b"legacy" if ident.keystores.legacy_pkcs12 else b"modern"])
    # A truststore exists only with something to trust: PKCS#12 cannot be empty, and an
    # identity without mTLS peers should not pretend to trust anyone (README: "Files").
    if bundle_certs and KeystoreFormat.PKCS12 in ident.keystores.formats:
        trust_data["truststore.p12"] = _stable_output(
            "truststore.p12", bundle_inputs,
            lambda: pki.pkcs12_truststore(bundle_certs, trust_password, legacy=ident.keystores.legacy_pkcs12),
            trust_obs, trust_records)
    if bundle_certs and KeystoreFormat.JKS in ident.keystores.formats:
        trust_data["truststore.jks"] = _stable_output(
            "truststore.jks", bundle_inputs, lambda: pki.jks_truststore(bundle_certs, trust_password),
            trust_obs, trust_records)
    trust_data["peers.jwks"] = _json(pki.jwks([peer_keys[k] for k in sorted(peer_keys)]))
    trust_data["peers.json"] = _json(peers_json)
    checks["TrustReady"] = (waiting("PeerPending", _bounded(pending)) if pending else
                            passed("Distributed", f"{len(peers_json)} peer(s) trusted"))

    # ---- templates ---------------------------------------------------------------------
    if ident.templates:
        context = _template_context(ident, ca, jwt, peers_context)
        render_started = time.monotonic()
        failures: list[Check] = []
        for tpl in ident.templates:
            source = obs.template_sources.get(tpl.name)
            if source is None:
                ref = tpl.config_map
                where = f"ConfigMap {ns}/{ref.name} key {ref.key}" if ref else "inline source"
                failures.append(waiting("TemplateSourceMissing",
                                        f"template {tpl.name!r}: {where} does not exist"))
                old = trust_obs.data.get(tpl.name) if trust_obs else None
                if old is not None:
                    trust_data[tpl.name] = old
                continue
            remaining = TEMPLATE_BUDGET - (time.monotonic() - render_started)
            try:
                if remaining <= 0:
                    raise TemplateError(tpl.name, None, f"the identity's {TEMPLATE_BUDGET:.0f}s rendering "
                                                       "budget for all its templates is used up")
                trust_data[tpl.name] = render_template(
                    tpl.name, source, context, time_budget=min(remaining, TEMPLATE_BUDGET_EACH)).encode()
            except TemplateError as exc:
                failures.append(stalled("TemplateError", str(exc)))
                old = trust_obs.data.get(tpl.name) if trust_obs else None
                if old is not None:  # keep the last good output in place
                    trust_data[tpl.name] = old
        checks["TemplatesReady"] = failures[0] if failures else passed(
            "Rendered", f"{len(ident.templates)} template(s) rendered")

    return TrustContent(trust_data, trust_records, peers_status, set(bundle), set(peer_keys), checks)


def publication_from_secrets(ref: IdentityRef, identity: ServiceIdentity | None, ca: StoredObject | None,
                             credentials: StoredObject | None) -> Publication | None:
    """What a peer trusts about ``ref``, derived from ``ref``'s own managed Secrets and spec.

    Never from its public ConfigMap: that is output for parties outside the cluster, and
    whoever may edit ConfigMaps in a namespace must not be able to push a CA or a JWT key
    into every peer's trust. Only Secrets trustwire manages for ``ref`` count.
    """
    def ours(obj: StoredObject | None) -> bool:
        return obj is not None and obj.managed and obj.owner == ref.name

    if not ours(credentials):
        return None
    assert credentials is not None
    cas: list[x509.Certificate] = []
    sources = [(ca, field) for field in ("tls.crt", "next.crt", "previous.crt")] if ours(ca) else \
        [(credentials, "ca.crt")]  # a bring-your-own CA has no CA Secret of ours
    for obj, field in sources:
        cert = _load_cert(obj, field)
        if cert is not None and pki.is_ca(cert):
            cas.append(cert)
    if not cas:
        return None
    revoked = set(identity.jwt.revoked_kids) if identity is not None else set()
    keys: list[Mapping[str, str]] = []
    if identity is None or identity.jwt.enabled:
        for key_name in ("jwt.key", "jwt-next.key"):
            try:
                key = pki.load_private_key(credentials.data[key_name]) if credentials.data.get(key_name) else None
                algorithm = _jwt_algorithm(identity, credentials, key_name, key) if key is not None else None
                if key is not None and algorithm is not None:
                    keys.append(pki.public_jwk(key, algorithm))
            except pki.PKIError:
                continue
        previous, _ = _previous_jwk(credentials.annotations)
        if previous is not None and "kid" in previous:
            keys.append(previous)
    info: dict[str, Any] = {"name": ref.name, "namespace": ref.namespace, "revokedKids": sorted(revoked)}
    if identity is not None:
        info |= {"issuer": identity.issuer, "spiffeId": identity.spiffe_id}
    jwks = tuple(k for k in keys if k.get("kid") not in revoked)
    return Publication(pki.certs_to_pem(cas), jwks, info)


def _stored_jwt_algorithm(credentials: StoredObject) -> pki.JwtAlgorithm | None:
    try:
        return pki.JwtAlgorithm(json.loads(credentials.data.get("jwt.jwk", b"{}")).get("alg"))
    except (ValueError, AttributeError):
        return None


def _template_context(ident: ServiceIdentity, ca: CAMaterial | None, jwt: JwtMaterial | None,
                      peers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    d = ident.mount_path
    me = {
        "name": ident.name, "namespace": ident.namespace, "serviceName": ident.service_name,
        "spiffeId": ident.spiffe_id, "issuer": ident.issuer,
        "kid": jwt.kid if jwt else None, "jwk": jwt.public if jwt else None,
        "jwtPrivateKeyPem": jwt.key_pem.decode() if jwt else None,
        "caFingerprint": pki.fingerprint_sha256(ca.cert) if ca else None,
        "caPem": ca.cert_pem.decode() if ca else None,
        "files": {
            "dir": d, "cert": f"{d}/tls.crt", "key": f"{d}/tls.key", "ca": f"{d}/ca.crt",
            "keystore": f"{d}/keystore.p12", "keystorePassword": f"{d}/keystore.password",
            "truststore": f"{d}/truststore.p12", "truststorePassword": f"{d}/truststore.password",
            "trustBundle": f"{d}/trust-bundle.pem", "jwtKey": f"{d}/jwt.key", "jwtJwk": f"{d}/jwt.jwk",
            "jwtKid": f"{d}/jwt.kid", "peersJwks": f"{d}/peers.jwks", "peersJson": f"{d}/peers.json",
        },
    }
    return {"self": me, "identity": me, "peers": list(peers)}
