"""What the operator remembers between watch events: our own resources and their indexes.

Kept: ServiceIdentities (a slim copy), TrustRelationships, each identity's *publication*
(what peers trust of it, derived from its own Secrets), the *names* of the managed Secrets
and ConfigMaps that exist and, per managed Secret or ConfigMap, a digest of what our last
write of it left on the server. Secrets themselves are never cached — they are read fresh
when an identity is reconciled, so memory does not grow with the Secrets in a cluster and
a reconcile never acts on a stale copy of key material.

The indexes answer "who is affected?" for each kind of event: which relationships name an
identity, which identities wire a workload or render a ConfigMap. The write digests answer
"is this event news?": the watch echo of our own write is not, and waking the writer
again for it was a third of all passes at scale.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from trustwire import names
from trustwire.controller.enrollments import EnrollmentCache
from trustwire.model import (
    ExternalIssuer,
    IdentityRef,
    SpecError,
    TrustRelationship,
    parse_identity,
    parse_relationship,
)
from trustwire.plan.issuers import IssuerKeys
from trustwire.plan.publication import Publication
from trustwire.plan.relationship import IdentityEntry, lenient_accept_from
from trustwire.plan.status import IdentityStatus

RelKey = tuple[str, str]
#: a queued pass: ("identity" | "relationship" | "enrollment", namespace, name)
Key = tuple[str, str, str]
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
    #: the relationships (``namespace/name``) that must be reconciled: those whose entry in
    #: status.peers came or went; ``None``: all of them (the spec or ``Stalled`` changed)
    relationships: frozenset[str] | None = None
    #: what its peers read (the spec, status.trust and status.rolledOut as rotation evidence);
    #: with ``own`` False only evidence changed, which only peers waiting on a gate read
    peers: bool = True


EVERYTHING = Change()


def _intent(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """The parts of an object a user writes: spec and metadata that carry meaning, not
    resourceVersion or managedFields (finalizers: :func:`_intent_changed`)."""
    meta = body.get("metadata") or {}
    return (body.get("spec"), meta.get("generation"), meta.get("labels"), meta.get("annotations"),
            meta.get("deletionTimestamp"))


def _intent_changed(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    """Whether someone changed what the object asks for. Our own finalizer appearing is the
    echo of the pass that added it — a pass already under way, not news; any other change
    of the finalizers (ours removed, someone else's) is."""
    if old is None or new is None or _intent(old) != _intent(new):
        return True
    before = list((old.get("metadata") or {}).get("finalizers") or [])
    after = list((new.get("metadata") or {}).get("finalizers") or [])
    return before != after and (names.FINALIZER in before or after != [*before, names.FINALIZER])


def _status(body: Mapping[str, Any]) -> IdentityStatus:
    return IdentityStatus.from_dict(body.get("status"))


def remembered(body: Mapping[str, Any], status: IdentityStatus | None = None) -> dict[str, Any]:
    """The part of an identity kept between events: what :func:`identity_change` compares and
    peers read (spec, meaningful metadata and :meth:`IdentityStatus.evidence`) — not the
    summaries and messages of a status that, for a hub, lists hundreds of peers."""
    meta = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"), "kind": body.get("kind"), "spec": body.get("spec"),
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "generation", "labels", "annotations",
                                          "deletionTimestamp", "finalizers") if k in meta},
        "status": (status or _status(body)).evidence().to_dict(),
    }


def identity_change(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> Change:
    if old is None or new is None or _intent_changed(old, new):
        return EVERYTHING
    before, after = _status(old), _status(new)
    return Change(
        own=False,
        relationships=None if before.stalled_reason != after.stalled_reason
        else before.distributed ^ after.distributed,
        peers=(before.trust, before.rolled_out) != (after.trust, after.rolled_out),
    )


def relationship_change(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> Change:
    """A relationship's status is read by nobody; only its spec and metadata matter."""
    if old is None or new is None or _intent_changed(old, new):
        return EVERYTHING
    return Change(own=False, relationships=frozenset(), peers=False)


class State:
    def __init__(self) -> None:
        self.identities: dict[IdentityRef, Mapping[str, Any]] = {}
        self.entries: dict[IdentityRef, IdentityEntry] = {}
        self.relationships: dict[RelKey, RelationshipRecord] = {}
        self.rel_index: dict[IdentityRef, set[RelKey]] = defaultdict(set)
        self.publications = PublicationCache()
        #: (plural, namespace, name) → digest of what our own last write of it returned
        self.written: dict[tuple[str, str, str], bytes] = {}
        #: identities whose last pass waits on a rotation gate fed by peers' status
        self.awaiting_peers: set[IdentityRef] = set()
        #: identities that had a pass in this process; and whose first trust Secret waits for
        #: whose pass (peer → waiters)
        self.passed: set[IdentityRef] = set()
        self.first_trust_waiters: dict[IdentityRef, set[IdentityRef]] = {}
        #: which managed Secrets and ConfigMaps exist (names only)
        self.inventory = Inventory()
        self.enrollments = EnrollmentCache()
        self.workload_index: dict[WorkloadKey, set[IdentityRef]] = defaultdict(set)
        self.template_index: dict[tuple[str, str], set[IdentityRef]] = defaultdict(set)
        #: (namespace, name) of an external member's CA bundle → its relationships (ConfigMaps are
        #: watched; a Secret bundle, unlabelled, is read again on every pass)
        self.bundle_index: dict[tuple[str, str], set[RelKey]] = defaultdict(set)
        self._identity_keys: dict[IdentityRef, tuple[set[WorkloadKey], set[tuple[str, str]]]] = {}
        #: what the last fetch of each relationship's external issuer got, for which member and
        #: CA bundle (the keys also live in its ConfigMap, the fetch time in its status, so a
        #: restart loses only the time of the next fetch, which is then at once)
        self.issuers: dict[RelKey, tuple[ExternalIssuer, bytes, IssuerKeys]] = {}
        #: (namespace, group) a relationship stopped naming: its Secret goes once no member is left
        self.former_groups: set[tuple[str, str]] = set()

    # ---- identities ----------------------------------------------------------------------
    def put_identity(self, body: Mapping[str, Any]) -> IdentityRef:
        ref = ref_of(body)
        known, entry = self.identities.get(ref), self.entries.get(ref)
        if known is not None and entry is not None and not _intent_changed(known, body):
            # a status echo (most events): the parsed spec and the indexes stand
            status = _status(body)
            self.identities[ref] = remembered(body, status)
            self.entries[ref] = dataclasses.replace(entry, distributed=status.distributed,
                                                    stalled_reason=status.stalled_reason)
            return ref
        self.drop_identity(ref)
        status = _status(body)
        self.identities[ref] = remembered(body, status)
        meta = body.get("metadata") or {}
        try:
            parsed = parse_identity(body)
        except SpecError:
            parsed = None
        self.entries[ref] = IdentityEntry(ref, parsed, lenient_accept_from(body),
                                          deleting=bool(meta.get("deletionTimestamp")),
                                          distributed=status.distributed, stalled_reason=status.stalled_reason)
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
        self.awaiting_peers.discard(ref)
        self.passed.discard(ref)
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
            if parsed.external is not None:
                self.bundle_index[(parsed.namespace, parsed.external.ca_bundle.name)].add(key)
            if parsed.issuer is not None:
                self.bundle_index[(parsed.namespace, parsed.issuer.ca_bundle.name)].add(key)
        return key, affected

    def drop_relationship(self, key: RelKey) -> set[IdentityRef]:
        record = self.relationships.pop(key, None)
        affected: set[IdentityRef] = set()
        if record is not None and record.parsed is not None and record.parsed.shared_secret is not None \
                and record.parsed.shared_secret.group:
            self.former_groups.add((key[0], record.parsed.shared_secret.group))
        if record is not None and record.parsed is not None:
            for ref in record.parsed.between:
                self.rel_index[ref].discard(key)
                if not self.rel_index[ref]:
                    del self.rel_index[ref]
                affected.add(ref)
            for outsider in (record.parsed.external, record.parsed.issuer):
                if outsider is None:
                    continue
                bundle = (record.parsed.namespace, outsider.ca_bundle.name)
                self.bundle_index[bundle].discard(key)
                if not self.bundle_index[bundle]:
                    del self.bundle_index[bundle]
        return affected

    def relationships_of(self, ref: IdentityRef) -> list[TrustRelationship]:
        out = []
        for key in sorted(self.rel_index.get(ref, ())):
            record = self.relationships.get(key)
            if record is not None and record.parsed is not None:
                out.append(record.parsed)
        return out

    def group_members(self, namespace: str, group: str) -> list[TrustRelationship]:
        """The relationships of ``namespace`` that share ``group``'s secret."""
        return [record.parsed for (ns, _), record in sorted(self.relationships.items())
                if ns == namespace and record.parsed is not None and record.parsed.shared_secret is not None
                and record.parsed.shared_secret.group == group]

    def peers_of(self, ref: IdentityRef) -> set[IdentityRef]:
        out = set()
        for rel in self.relationships_of(ref):
            peer = rel.peer_of(ref)
            if peer is not None:
                out.add(peer)
        return out

    # ---- our own writes -------------------------------------------------------------------
    def wrote(self, plural: str, body: Mapping[str, Any]) -> None:
        """Remember what our write of a Secret or ConfigMap left on the server (its response)."""
        key = _written_key(plural, body)
        self.written[key] = content_digest(body)
        self.inventory.exists(*key)

    def is_echo(self, plural: str, body: Mapping[str, Any], deleted: bool) -> bool:
        """Whether a watch event only reports our own last write of this object, unchanged.

        Any other content — a user's edit, a restart's replay (nothing remembered yet),
        an older write of ours arriving late — is news, and so is every deletion.
        """
        key = _written_key(plural, body)
        if deleted:
            self.written.pop(key, None)
            return False
        digest = self.written.get(key)
        return digest is not None and digest == content_digest(body)


def _written_key(plural: str, body: Mapping[str, Any]) -> tuple[str, str, str]:
    ref = ref_of(body)
    return plural, ref.namespace, ref.name


def content_digest(body: Mapping[str, Any]) -> bytes:
    """The parts of a Secret or ConfigMap a pass reads: type, data, labels and annotations
    (not resourceVersion, managedFields or timestamps, which every write changes)."""
    meta = body.get("metadata") or {}
    parts = [body.get("type"), body.get("data"), body.get("binaryData"), meta.get("labels"),
             meta.get("annotations"), meta.get("deletionTimestamp")]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).digest()[:16]


class Inventory:
    """Which managed Secrets and ConfigMaps exist — names only, never contents — so that a
    pass need not ask the API about objects that are not there.

    A new identity's first pass used to GET its three Secrets and its ConfigMap, and each
    peer's two Secrets, only to be told 404: at 1,000 identities about 6,400 of 17,500
    reads. The names come from one labelled LIST per served namespace before the first
    pass (:meth:`listed`), then from the watch and from our own writes.

    Only "absent" is acted on, and it is never trusted for safety: creation is atomic, so
    an object that exists after all (created a moment ago by someone else, its watch event
    still on the way; or not ours and so not labelled, and never watched) makes our create
    fail with 409 — the caller then marks it and the other objects of that pass
    :meth:`exists`, and the next pass reads them all. A name kept after its object is gone
    costs one read that answers 404. A namespace whose Secrets were never listed is
    unknown: everything in it may exist.
    """

    def __init__(self) -> None:
        self._names: set[tuple[str, str, str]] = set()
        #: namespaces listed; ``None`` in it: all of them (a cluster-wide operator)
        self._listed: set[str | None] = set()

    def may_exist(self, plural: str, namespace: str, name: str) -> bool:
        if (plural, namespace, name) in self._names:
            return True
        return None not in self._listed and namespace not in self._listed

    def exists(self, plural: str, namespace: str, name: str) -> None:
        self._names.add((plural, namespace, name))

    def gone(self, plural: str, namespace: str, name: str) -> None:
        self._names.discard((plural, namespace, name))

    def observed(self, plural: str, body: Mapping[str, Any], deleted: bool) -> None:
        """A watch event: a managed object exists, any deleted object is gone. An event of an
        object without our label changes nothing: a real API server's labelled watch never
        sends one (an object that loses our label arrives as DELETED), and kmock's, which
        ignores the selector, sends the user's own objects. Either way, a create of that
        name meets the object and is refused."""
        key = _written_key(plural, body)
        if deleted:
            self.gone(*key)
        elif names.is_managed((body.get("metadata") or {}).get("labels")):
            self.exists(*key)

    def replace(self, plural: str, namespace: str | None, listed: Iterable[Mapping[str, Any]]) -> None:
        """What a new listing of ``plural`` (``namespace`` ``None``: everywhere) found, in place
        of what was known: names of objects deleted while no watch was looking must not
        outlive it."""
        self._names = {key for key in self._names
                       if key[0] != plural or (namespace is not None and key[1] != namespace)}
        for body in listed:
            self.observed(plural, body, deleted=False)

    def listed(self, namespace: str | None) -> None:
        """Every managed object of ``namespace`` (``None``: of the cluster) has been seen."""
        self._listed.add(namespace)


_UNKNOWN = object()


class PublicationCache:
    """Each identity's publication (:func:`trustwire.plan.publication.publication_from_secrets`),
    kept until its Secrets or spec change; ``None`` (nothing published yet) is kept too.

    Three parties race here: a reader fetching a peer's Secrets, the peer's own pass that
    has just written them, and a watch event saying someone else changed them. Each change
    forgets and bumps the identity's epoch, and a fetch is kept only if no change happened
    while it was in flight — otherwise a reader could cache material already replaced, and
    since the echo of our own write wakes nobody, nothing would correct it before the next
    resync. The writer never stores what it computed: its view (what it read at the start
    of its pass, plus what it wrote) may already be older than what a reader fetched. And
    two readers' fetches of one epoch that disagree (one landed between the peer's writes)
    drop the entry and wake every reader, since the writer's "readers already hold this"
    check could otherwise leave the one holding the other answer uninformed.
    """

    def __init__(self) -> None:
        self._known: dict[IdentityRef, Publication | None] = {}
        self._epochs: dict[IdentityRef, int] = {}

    def __contains__(self, ref: object) -> bool:
        return ref in self._known

    def get(self, ref: IdentityRef) -> Publication | None:
        return self._known.get(ref)

    def epoch(self, ref: IdentityRef) -> int:
        return self._epochs.get(ref, 0)

    def fetched(self, ref: IdentityRef, epoch: int, publication: Publication | None) -> bool:
        """Keep what a reader fetched, unless it changed since the fetch began (``epoch``).

        False when two fetches of the same epoch disagree (the first read "not published
        yet" between the peer's writes, the second the finished material, or the other way
        round when the slower fetch lands last): a reader may be holding either, and the
        writer's :meth:`unchanged` check would then wrongly clear it. The entry is forgotten
        and the caller must make every reader fetch again.
        """
        if self.epoch(ref) != epoch:
            return True  # whoever changed it has already made the readers look again
        known = self._known.get(ref, _UNKNOWN)
        if known is not _UNKNOWN and known != publication:
            self.forget(ref)
            return False
        self._known[ref] = publication
        return True

    def forget(self, ref: IdentityRef) -> None:
        """Its Secrets or spec changed in a way we did not write: readers fetch again."""
        self._known.pop(ref, None)
        self._epochs[ref] = self.epoch(ref) + 1

    def forget_namespace(self, namespace: str | None) -> None:
        """After a relist of Secrets in ``namespace`` (``None``: all): a Secret may have changed
        in the gap without an event, so every publication there is fetched again — fetches in
        flight included (their epoch moves on)."""
        for ref in [r for r in {*self._known, *self._epochs} if namespace in (None, r.namespace)]:
            self.forget(ref)

    def unchanged(self, ref: IdentityRef, publication: Publication | None) -> bool:
        """Whether readers already hold exactly ``publication`` (say, after a leaf renewal)."""
        return self._known.get(ref, _UNKNOWN) == publication
