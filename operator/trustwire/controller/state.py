"""What the operator remembers between watch events: our own resources and their indexes.

Only objects trustwire owns or reads by contract are kept: ServiceIdentities,
TrustRelationships and the *public* ConfigMaps peers publish (small; what a star hub
reads for each of its N peers on every pass). Secrets are never cached — they are read
fresh when an identity is reconciled, so memory does not grow with the Secrets in a
cluster and a reconcile never acts on a stale copy of key material.

The indexes answer "who is affected?" for each kind of event: which relationships name an
identity, which identities wire a workload or render a ConfigMap.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from trustwire.model import IdentityRef, SpecError, TrustRelationship, parse_identity, parse_relationship
from trustwire.plan.identity import Publication
from trustwire.plan.relationship import IdentityEntry, lenient_accept_from

RelKey = tuple[str, str]
WorkloadKey = tuple[str, str, str]  # namespace, kind, name


def ref_of(body: Mapping[str, Any]) -> IdentityRef:
    meta = body.get("metadata") or {}
    return IdentityRef(str(meta.get("namespace") or "default"), str(meta.get("name") or ""))


@dataclasses.dataclass
class RelationshipRecord:
    body: Mapping[str, Any]
    parsed: TrustRelationship | None
    error: SpecError | None


@dataclasses.dataclass(frozen=True)
class Change:
    """Who must look again after an object changed.

    Most watch events of our own kinds are echoes of our own status writes; reconciling
    the object and all its peers again for each would multiply the passes (and at
    1,000 identities, the API reads) for nothing. Only what someone actually reads counts.
    """

    #: spec or metadata: the object itself must be reconciled
    own: bool = True
    #: what its relationships read (status.peers, Stalled): they must be reconciled
    relationships: bool = True
    #: what its peers read (the spec, status.trust and status.rolledOut as rotation evidence)
    peers: bool = True


EVERYTHING = Change()


def _intent(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """The parts of an object a user (or the operator's finalizer) writes: spec and metadata
    that carry meaning, not resourceVersion or managedFields."""
    meta = body.get("metadata") or {}
    return (body.get("spec"), meta.get("generation"), meta.get("labels"), meta.get("annotations"),
            meta.get("deletionTimestamp"), meta.get("finalizers"))


def _stalled_conditions(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [c for c in status.get("conditions") or []
            if isinstance(c, Mapping) and c.get("type") == "Stalled" and c.get("status") == "True"]


def _stalled_reason(status: Mapping[str, Any]) -> str | None:
    return next((str(c.get("reason")) for c in _stalled_conditions(status)), None)


def _distributed(status: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(str(p.get("relationship")) for p in status.get("peers") or [] if isinstance(p, Mapping))


def remembered(body: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an identity kept between events: what :func:`identity_change` compares and
    peers read (spec, meaningful metadata, ``status.trust``/``rolledOut``, the relationships
    in ``status.peers`` and a ``Stalled`` condition) — not the summaries and messages of a
    status that, for a hub, lists hundreds of peers."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    return {
        "apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "spec": body.get("spec"),
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "generation", "labels", "annotations",
                                          "deletionTimestamp", "finalizers") if k in meta},
        "status": {
            "trust": status.get("trust"), "rolledOut": status.get("rolledOut"),
            "peers": [{"relationship": r} for r in sorted(_distributed(status))],
            "conditions": _stalled_conditions(status),
        },
    }


def identity_change(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> Change:
    if old is None or new is None or _intent(old) != _intent(new):
        return EVERYTHING
    before, after = old.get("status") or {}, new.get("status") or {}
    return Change(
        own=False,
        relationships=(_distributed(before), _stalled_reason(before)) != (_distributed(after), _stalled_reason(after)),
        peers=(before.get("trust"), before.get("rolledOut")) != (after.get("trust"), after.get("rolledOut")),
    )


def relationship_change(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> Change:
    """A relationship's status is read by nobody; only its spec and metadata matter."""
    if old is None or new is None or _intent(old) != _intent(new):
        return EVERYTHING
    return Change(own=False, relationships=False, peers=False)


class State:
    def __init__(self) -> None:
        self.identities: dict[IdentityRef, Mapping[str, Any]] = {}
        self.entries: dict[IdentityRef, IdentityEntry] = {}
        self.relationships: dict[RelKey, RelationshipRecord] = {}
        self.rel_index: dict[IdentityRef, set[RelKey]] = defaultdict(set)
        self.publications: dict[IdentityRef, Publication] = {}
        self.workload_index: dict[WorkloadKey, set[IdentityRef]] = defaultdict(set)
        self.template_index: dict[tuple[str, str], set[IdentityRef]] = defaultdict(set)
        self._identity_keys: dict[IdentityRef, tuple[set[WorkloadKey], set[tuple[str, str]]]] = {}

    # ---- identities ----------------------------------------------------------------------
    def put_identity(self, body: Mapping[str, Any]) -> IdentityRef:
        ref = ref_of(body)
        self.drop_identity(ref)
        self.identities[ref] = remembered(body)
        meta = body.get("metadata") or {}
        try:
            parsed = parse_identity(body)
        except SpecError:
            parsed = None
        status = body.get("status") or {}
        self.entries[ref] = IdentityEntry(ref, parsed, lenient_accept_from(body),
                                          deleting=bool(meta.get("deletionTimestamp")),
                                          distributed=_distributed(status), stalled_reason=_stalled_reason(status))
        workloads: set[WorkloadKey] = set()
        templates: set[tuple[str, str]] = set()
        if parsed is not None:
            workloads = {(ref.namespace, str(w.kind), w.name) for w in parsed.workloads}
            templates = {(ref.namespace, t.config_map.name) for t in parsed.templates if t.config_map}
        for key in workloads:
            self.workload_index[key].add(ref)
        for ckey in templates:
            self.template_index[ckey].add(ref)
        self._identity_keys[ref] = (workloads, templates)
        return ref

    def drop_identity(self, ref: IdentityRef) -> None:
        self.identities.pop(ref, None)
        self.entries.pop(ref, None)
        workloads, templates = self._identity_keys.pop(ref, (set(), set()))
        for key in workloads:
            self.workload_index[key].discard(ref)
            if not self.workload_index[key]:
                del self.workload_index[key]
        for ckey in templates:
            self.template_index[ckey].discard(ref)
            if not self.template_index[ckey]:
                del self.template_index[ckey]

    def lookup(self, ref: IdentityRef) -> IdentityEntry | None:
        return self.entries.get(ref)

    # ---- relationships -------------------------------------------------------------------
    def put_relationship(self, body: Mapping[str, Any]) -> tuple[RelKey, set[IdentityRef]]:
        """Store a relationship; returns its key and every identity it names now or named before."""
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or "default"), str(meta.get("name") or ""))
        affected = self.drop_relationship(key)
        try:
            parsed, error = parse_relationship(body), None
        except SpecError as exc:
            parsed, error = None, exc
        self.relationships[key] = RelationshipRecord(body, parsed, error)
        if parsed is not None:
            for ref in parsed.between:
                self.rel_index[ref].add(key)
                affected.add(ref)
        return key, affected

    def drop_relationship(self, key: RelKey) -> set[IdentityRef]:
        record = self.relationships.pop(key, None)
        affected: set[IdentityRef] = set()
        if record is not None and record.parsed is not None:
            for ref in record.parsed.between:
                self.rel_index[ref].discard(key)
                if not self.rel_index[ref]:
                    del self.rel_index[ref]
                affected.add(ref)
        return affected

    def relationships_of(self, ref: IdentityRef) -> list[TrustRelationship]:
        out = []
        for key in sorted(self.rel_index.get(ref, ())):
            record = self.relationships.get(key)
            if record is not None and record.parsed is not None:
                out.append(record.parsed)
        return out

    def peers_of(self, ref: IdentityRef) -> set[IdentityRef]:
        out = set()
        for rel in self.relationships_of(ref):
            peer = rel.peer_of(ref)
            if peer is not None:
                out.add(peer)
        return out

    # ---- publications (derived from an identity's own Secrets; see plan.identity) ---------
    def forget_publication(self, ref: IdentityRef) -> None:
        self.publications.pop(ref, None)
