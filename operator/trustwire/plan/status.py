"""The status of a ServiceIdentity and of a TrustRelationship, as typed values.

Built in one place (the plan, completed by :func:`identity_status`) and read through
:meth:`IdentityStatus.from_dict`, so no other module spells its keys. :meth:`to_dict`
writes exactly the JSON shape the CRD schema, ``kubectl`` printer columns, kstatus and
dashboards read; :meth:`from_dict` reads what any version wrote, skipping what it cannot
understand instead of failing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

Json = dict[str, Any]


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _maps(value: object) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list | tuple) else []


def _strs(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _optional(**fields: Any) -> Json:
    return {k: v for k, v in fields.items() if v is not None}


@dataclasses.dataclass(frozen=True)
class CAStatus:
    source: str
    serial: str
    fingerprint: str
    not_before: str
    not_after: str
    renewal_time: str

    def to_dict(self) -> Json:
        return {"source": self.source, "serial": self.serial, "fingerprint": self.fingerprint,
                "notBefore": self.not_before, "notAfter": self.not_after, "renewalTime": self.renewal_time}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CAStatus:
        return cls(str(d.get("source", "")), str(d.get("serial", "")), str(d.get("fingerprint", "")),
                   str(d.get("notBefore", "")), str(d.get("notAfter", "")), str(d.get("renewalTime", "")))


@dataclasses.dataclass(frozen=True)
class CertificateStatus:
    serial: str
    fingerprint: str
    not_after: str
    renewal_time: str
    dns_names: tuple[str, ...]

    def to_dict(self) -> Json:
        return {"serial": self.serial, "fingerprint": self.fingerprint, "notAfter": self.not_after,
                "renewalTime": self.renewal_time, "dnsNames": list(self.dns_names)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CertificateStatus:
        return cls(str(d.get("serial", "")), str(d.get("fingerprint", "")), str(d.get("notAfter", "")),
                   str(d.get("renewalTime", "")), _strs(d.get("dnsNames")))


@dataclasses.dataclass(frozen=True)
class JwtStatus:
    kid: str
    algorithm: str
    published_kids: tuple[str, ...]
    #: None for a symmetric key, which is replaced only on demand
    rotation_time: str | None

    def to_dict(self) -> Json:
        return {"kid": self.kid, "algorithm": self.algorithm, "publishedKids": list(self.published_kids),
                **_optional(rotationTime=self.rotation_time)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JwtStatus:
        return cls(str(d.get("kid", "")), str(d.get("algorithm", "")), _strs(d.get("publishedKids")),
                   _opt_str(d.get("rotationTime")))


@dataclasses.dataclass(frozen=True)
class PeerStatus:
    identity: str
    namespace: str
    relationship: str
    mtls: bool
    jwt: bool
    shared_secret: bool

    def to_dict(self) -> Json:
        return {"identity": self.identity, "namespace": self.namespace, "relationship": self.relationship,
                "mtls": self.mtls, "jwt": self.jwt, "sharedSecret": self.shared_secret}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PeerStatus:
        return cls(str(d.get("identity", "")), str(d.get("namespace", "")), str(d.get("relationship", "")),
                   bool(d.get("mtls")), bool(d.get("jwt")), bool(d.get("sharedSecret")))


@dataclasses.dataclass(frozen=True)
class TrustStatus:
    """What the trust Secret really holds: peers read it as rotation evidence."""

    ca_fingerprints: tuple[str, ...]
    kids: tuple[str, ...]

    def to_dict(self) -> Json:
        return {"caFingerprints": list(self.ca_fingerprints), "kids": list(self.kids)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrustStatus:
        return cls(_strs(d.get("caFingerprints")), _strs(d.get("kids")))


@dataclasses.dataclass(frozen=True)
class CARotationStatus:
    phase: str
    since: str | None = None
    next: str | None = None
    previous: str | None = None
    waiting_for: str | None = None

    def to_dict(self) -> Json:
        return _optional(phase=self.phase, since=self.since, next=self.next, previous=self.previous,
                         waitingFor=self.waiting_for)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CARotationStatus:
        return cls(str(d.get("phase", "Idle")), _opt_str(d.get("since")), _opt_str(d.get("next")),
                   _opt_str(d.get("previous")), _opt_str(d.get("waitingFor")))


@dataclasses.dataclass(frozen=True)
class JwtRotationStatus:
    phase: str
    since: str | None = None
    next_kid: str | None = None
    previous_kid: str | None = None
    waiting_for: str | None = None

    def to_dict(self) -> Json:
        return _optional(phase=self.phase, since=self.since, nextKid=self.next_kid,
                         previousKid=self.previous_kid, waitingFor=self.waiting_for)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JwtRotationStatus:
        return cls(str(d.get("phase", "Idle")), _opt_str(d.get("since")), _opt_str(d.get("nextKid")),
                   _opt_str(d.get("previousKid")), _opt_str(d.get("waitingFor")))


@dataclasses.dataclass(frozen=True)
class RotationStatus:
    ca: CARotationStatus
    jwt: JwtRotationStatus
    #: the value of the rotate annotation last acted on, so it is acted on once
    handled_request: str | None = None

    def to_dict(self) -> Json:
        return _optional(ca=self.ca.to_dict(), jwt=self.jwt.to_dict(), handledRequest=self.handled_request)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RotationStatus:
        return cls(CARotationStatus.from_dict(_map(d.get("ca"))), JwtRotationStatus.from_dict(_map(d.get("jwt"))),
                   _opt_str(d.get("handledRequest")))


@dataclasses.dataclass(frozen=True)
class WorkloadStatus:
    kind: str
    name: str
    state: str  # Pending | NotFound | Wired | Conflict
    message: str
    rolled_out: bool
    #: the generation whose rollout carries our wiring (Wired and Conflict only)
    rollout_generation: int | None = None

    def to_dict(self) -> Json:
        return _optional(kind=self.kind, name=self.name, rolloutGeneration=self.rollout_generation,
                         state=self.state, message=self.message, rolledOut=self.rolled_out)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WorkloadStatus:
        generation = d.get("rolloutGeneration")
        return cls(str(d.get("kind", "")), str(d.get("name", "")), str(d.get("state", "")),
                   str(d.get("message", "")), bool(d.get("rolledOut")),
                   int(generation) if isinstance(generation, int) else None)


@dataclasses.dataclass(frozen=True)
class IdentityStatus:
    """``ServiceIdentity.status``. Absent parts are ``None`` and absent from the JSON."""

    spiffe_id: str | None = None
    issuer: str | None = None
    discovery_url: str | None = None
    ca: CAStatus | None = None
    enrollment_ca: CAStatus | None = None
    certificate: CertificateStatus | None = None
    jwt: JwtStatus | None = None
    peers: tuple[PeerStatus, ...] | None = None
    trust: TrustStatus | None = None
    rotation: RotationStatus | None = None
    workloads: tuple[WorkloadStatus, ...] | None = None
    material_hash: str | None = None
    rolled_out: bool | None = None
    conditions: tuple[Mapping[str, Any], ...] = ()
    observed_generation: int | None = None

    @property
    def peer_count(self) -> int:
        return len(self.peers or ())

    def to_dict(self) -> Json:
        out = _optional(spiffeId=self.spiffe_id, issuer=self.issuer, discoveryUrl=self.discovery_url,
                        ca=self.ca.to_dict() if self.ca else None,
                        enrollmentCA=self.enrollment_ca.to_dict() if self.enrollment_ca else None,
                        certificate=self.certificate.to_dict() if self.certificate else None,
                        jwt=self.jwt.to_dict() if self.jwt else None)
        if self.peers is not None:
            out |= {"peers": [p.to_dict() for p in self.peers], "peerCount": len(self.peers)}
        out |= _optional(rotation=self.rotation.to_dict() if self.rotation else None,
                         trust=self.trust.to_dict() if self.trust else None)
        if self.workloads is not None:
            out["workloads"] = [w.to_dict() for w in self.workloads]
        out |= _optional(materialHash=self.material_hash, rolledOut=self.rolled_out)
        out["conditions"] = [dict(c) for c in self.conditions]
        return out | _optional(observedGeneration=self.observed_generation)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> IdentityStatus:
        d = _map(d)
        peers, workloads, rotation = d.get("peers"), d.get("workloads"), d.get("rotation")
        generation, rolled_out = d.get("observedGeneration"), d.get("rolledOut")
        return cls(
            spiffe_id=_opt_str(d.get("spiffeId")), issuer=_opt_str(d.get("issuer")),
            discovery_url=_opt_str(d.get("discoveryUrl")),
            ca=CAStatus.from_dict(d["ca"]) if isinstance(d.get("ca"), Mapping) else None,
            enrollment_ca=CAStatus.from_dict(d["enrollmentCA"]) if isinstance(d.get("enrollmentCA"), Mapping) else None,
            certificate=CertificateStatus.from_dict(d["certificate"])
            if isinstance(d.get("certificate"), Mapping) else None,
            jwt=JwtStatus.from_dict(d["jwt"]) if isinstance(d.get("jwt"), Mapping) else None,
            peers=tuple(PeerStatus.from_dict(p) for p in _maps(peers)) if isinstance(peers, list) else None,
            trust=TrustStatus.from_dict(d["trust"]) if isinstance(d.get("trust"), Mapping) else None,
            rotation=RotationStatus.from_dict(rotation) if isinstance(rotation, Mapping) else None,
            workloads=tuple(WorkloadStatus.from_dict(w) for w in _maps(workloads))
            if isinstance(workloads, list) else None,
            material_hash=_opt_str(d.get("materialHash")),
            rolled_out=rolled_out if isinstance(rolled_out, bool) else None,
            conditions=tuple(_maps(d.get("conditions"))),
            observed_generation=generation if isinstance(generation, int) else None,
        )

    def condition(self, type_: str) -> Mapping[str, Any] | None:
        return next((c for c in self.conditions if c.get("type") == type_), None)

    @property
    def stalled_reason(self) -> str | None:
        """The reason of a ``Stalled=True`` condition: a human must act."""
        stall = self.condition("Stalled")
        return str(stall.get("reason")) if stall is not None and stall.get("status") == "True" else None

    @property
    def distributed(self) -> frozenset[str]:
        """``ns/name`` of every relationship whose peer this identity trusts."""
        return frozenset(p.relationship for p in self.peers or ())

    def evidence(self) -> IdentityStatus:
        """The part peers and relationships read — what the trust Secret holds, whether the
        workloads run it, which relationships are distributed and a ``Stalled`` condition —
        slim enough to keep for every identity (a hub's full status lists hundreds of peers)."""
        peers = tuple(PeerStatus("", "", r, False, False, False) for r in sorted(self.distributed))
        stalls = tuple(c for c in self.conditions if c.get("type") == "Stalled" and c.get("status") == "True")
        return IdentityStatus(peers=peers, trust=self.trust, rolled_out=self.rolled_out, conditions=stalls)


@dataclasses.dataclass(frozen=True)
class IssuerStatus:
    """``status.issuer`` of a relationship with an external issuer: what its last good fetch got."""

    url: str
    #: RFC 3339 time of the last successful fetch (kept through failures)
    last_fetch_time: str | None
    kids: tuple[str, ...]

    def to_dict(self) -> Json:
        return {"url": self.url, "kids": list(self.kids)} | _optional(lastFetchTime=self.last_fetch_time)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IssuerStatus:
        fetched = d.get("lastFetchTime")
        return cls(str(d.get("url", "")), fetched if isinstance(fetched, str) else None, _strs(d.get("kids")))


@dataclasses.dataclass(frozen=True)
class RelationshipStatus:
    """``TrustRelationship.status``."""

    identities: tuple[str, ...] | None = None
    conditions: tuple[Mapping[str, Any], ...] = ()
    observed_generation: int | None = None
    issuer: IssuerStatus | None = None

    def to_dict(self) -> Json:
        out: Json = {"identities": list(self.identities)} if self.identities is not None else {}
        out["conditions"] = [dict(c) for c in self.conditions]
        out |= {"issuer": self.issuer.to_dict()} if self.issuer is not None else {}
        return out | _optional(observedGeneration=self.observed_generation)

    def condition(self, type_: str) -> Mapping[str, Any] | None:
        return next((c for c in self.conditions if c.get("type") == type_), None)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> RelationshipStatus:
        d = _map(d)
        identities, generation, issuer = d.get("identities"), d.get("observedGeneration"), d.get("issuer")
        return cls(_strs(identities) if isinstance(identities, list) else None, tuple(_maps(d.get("conditions"))),
                   generation if isinstance(generation, int) else None,
                   IssuerStatus.from_dict(issuer) if isinstance(issuer, Mapping) else None)


def with_conditions(old: Mapping[str, Any], conditions: Sequence[Mapping[str, Any]]) -> Json:
    """A stored status with new conditions and everything else as it was (a pass that could
    not finish knows nothing newer about the rest)."""
    return {**old, "conditions": [dict(c) for c in conditions]}
