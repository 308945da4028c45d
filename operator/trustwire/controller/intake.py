"""Who a watch event wakes: each ``observe_*`` works out which keys an event affects and
queues them (cheap, synchronous, never raises).

A peer's new CA touches every identity trusting it; an echo of the operator's own write
wakes nobody, because the pass that wrote it already told whoever reads it (README, "Who a
watch event wakes").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from trustwire import names
from trustwire.controller.queue import WorkQueue
from trustwire.controller.state import Key, State, identity_change, ref_of, relationship_change
from trustwire.k8s.resources import CONFIGMAPS, SECRETS
from trustwire.model import IdentityRef


class Intake:
    """The event intake of :class:`~trustwire.controller.reconciler.Controller`."""

    state: State
    queue: WorkQueue[Key]

    if TYPE_CHECKING:
        def _republished(self, ref: IdentityRef) -> None: ...

    def observe_identity(self, body: Mapping[str, Any], deleted: bool) -> None:
        ref = ref_of(body)
        change = identity_change(self.state.identities.get(ref), None if deleted else body)
        if change.own:
            self.state.publications.forget(ref)  # issuer and revoked kids come from the spec
        before = self.state.peers_of(ref)
        if deleted:
            self.state.drop_identity(ref)
        else:
            self.state.put_identity(body)
        if change.own:
            self._enqueue_identity(ref)
            for key in self.state.enrollments.of(ref):  # its enrollment CA may have come or gone
                self.queue.add(("enrollment", *key))
        for key in self.state.rel_index.get(ref, set()):
            if change.relationships is None or f"{key[0]}/{key[1]}" in change.relationships:
                self.queue.add(("relationship", *key))
        if change.peers:
            for peer in before | self.state.peers_of(ref):
                if change.own or peer in self.state.awaiting_peers:
                    self._enqueue_identity(peer)

    def observe_relationship(self, body: Mapping[str, Any], deleted: bool) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or "default"), str(meta.get("name") or ""))
        record = self.state.relationships.get(key)
        change = relationship_change(record.body if record else None, None if deleted else body)
        if deleted:
            affected = self.state.drop_relationship(key)
        else:
            _, affected = self.state.put_relationship(body)
        if change.own:
            self.queue.add(("relationship", *key))
            for ref in affected:
                self._enqueue_identity(ref)

    def observe_enrollment(self, body: Mapping[str, Any], deleted: bool) -> None:
        own, identities = self.state.enrollments.observed(body, deleted)
        meta = body.get("metadata") or {}
        if own and not deleted:
            self.queue.add(("enrollment", str(meta.get("namespace") or "default"), str(meta.get("name") or "")))
        for ref in identities:  # what its workloads see of the application changed
            self._enqueue_identity(ref)

    def observe_secret(self, body: Mapping[str, Any], deleted: bool) -> None:
        self.state.inventory.observed(SECRETS.plural, body, deleted)
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        if not names.is_managed(labels):
            return
        namespace = str(meta.get("namespace") or "default")
        if self.state.is_echo(SECRETS.plural, body, deleted):
            return  # our own write: the pass that made it already told whoever reads it
        if labels.get(names.IDENTITY_LABEL):
            owner = IdentityRef(namespace, labels[names.IDENTITY_LABEL])
            self._enqueue_identity(owner)
            if labels.get(names.ROLE_LABEL) in ("ca", "credentials"):  # what peers trust comes from these two
                self._republished(owner)
        if labels.get(names.SHARED_GROUP_LABEL):  # a group's Secret changed by someone else
            for member in self.state.group_members(namespace, labels[names.SHARED_GROUP_LABEL]):
                self.queue.add(("relationship", namespace, member.name))
        if labels.get(names.ENROLLMENT_LABEL):  # the token Secret, edited or deleted by someone
            self.queue.add(("enrollment", namespace, labels[names.ENROLLMENT_LABEL]))
        if labels.get(names.RELATIONSHIP_LABEL):
            key = (namespace, labels[names.RELATIONSHIP_LABEL])
            self.queue.add(("relationship", *key))
            record = self.state.relationships.get(key)
            if record is not None and record.parsed is not None:
                for ref in record.parsed.between:
                    self._enqueue_identity(ref)

    def observe_configmap(self, body: Mapping[str, Any], deleted: bool) -> None:
        self.state.inventory.observed(CONFIGMAPS.plural, body, deleted)
        meta = body.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        labels = meta.get("labels") or {}
        if names.is_managed(labels) and labels.get(names.ROLE_LABEL) == "public" \
                and not self.state.is_echo(CONFIGMAPS.plural, body, deleted):
            self._enqueue_identity(IdentityRef(namespace, str(labels.get(names.IDENTITY_LABEL))))  # restore edits
        if names.is_managed(labels) and labels.get(names.ROLE_LABEL) == "issuer" \
                and not self.state.is_echo(CONFIGMAPS.plural, body, deleted):  # an issuer's kept keys, edited
            self.queue.add(("relationship", namespace, str(labels.get(names.RELATIONSHIP_LABEL))))
        for ref in self.state.template_index.get((namespace, str(meta.get("name"))), set()):
            self._enqueue_identity(ref)
        for key in self.state.bundle_index.get((namespace, str(meta.get("name"))), set()):
            self.queue.add(("relationship", *key))  # an external member's CA bundle
            record = self.state.relationships.get(key)
            for ref in record.parsed.between if record is not None and record.parsed is not None else ():
                self._enqueue_identity(ref)

    def observe_workload(self, kind: str, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or "default"), kind, str(meta.get("name")))
        for ref in self.state.workload_index.get(key, set()):
            self._enqueue_identity(ref)
        wired_by = (meta.get("annotations") or {}).get(names.WIRED_BY_ANNOTATION)
        if wired_by and "/" in wired_by:
            ns, name = wired_by.split("/", 1)
            self._enqueue_identity(IdentityRef(ns, name))

    def _enqueue_identity(self, ref: IdentityRef) -> None:
        if ref in self.state.identities:
            self.queue.add(("identity", ref.namespace, ref.name))

    def resync_all(self) -> None:
        for ref in list(self.state.identities):
            self.queue.add(("identity", ref.namespace, ref.name))
        for key in list(self.state.relationships):
            self.queue.add(("relationship", *key))
        for key in list(self.state.enrollments.records):
            self.queue.add(("enrollment", *key))
