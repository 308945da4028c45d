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
        self.identities[ref] = body
        meta = body.get("metadata") or {}
        try:
            parsed = parse_identity(body)
        except SpecError:
            parsed = None
        status = body.get("status") or {}
        distributed = frozenset(str(p.get("relationship")) for p in status.get("peers") or []
                                if isinstance(p, Mapping))
        stalled_reason = next((str(c.get("reason")) for c in status.get("conditions") or []
                               if isinstance(c, Mapping) and c.get("type") == "Stalled" and c.get("status") == "True"),
                              None)
        self.entries[ref] = IdentityEntry(ref, parsed, lenient_accept_from(body),
                                          deleting=bool(meta.get("deletionTimestamp")), distributed=distributed,
                                          stalled_reason=stalled_reason)
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
