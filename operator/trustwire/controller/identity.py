"""One ServiceIdentity's pass: gather → plan → apply → wire → status.

:meth:`IdentityReconciler._gather_identity` is the one place that reads (the identity's
objects, referenced Secrets and ConfigMaps, each accepted peer's publication);
:func:`~trustwire.plan.identity.plan_identity` decides; :meth:`~Writes._apply` writes in
the plan's object order (CA before leaf before publication before trust), so a crash
between two writes leaves a state the next pass adopts rather than re-issues.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from trustwire import names
from trustwire.controller.status import StatusWriter
from trustwire.controller.writes import stored_object, wired_by
from trustwire.k8s.resources import CONFIGMAPS, IDENTITIES, SECRETS, WORKLOADS, Resource, decode_data
from trustwire.model import (
    IdentityRef,
    RolloutMode,
    ServiceIdentity,
    SpecError,
    TrustRelationship,
    WorkloadRef,
    parse_identity,
)
from trustwire.plan import conditions as cond
from trustwire.plan import outcome, shared
from trustwire.plan.identity import IdentityObservation, IdentityPlan, PeerLink, plan_identity
from trustwire.plan.issuers import issuer_publication
from trustwire.plan.material import StoredObject, keystore_password
from trustwire.plan.publication import Publication, publication_from_secrets
from trustwire.plan.relationship import acceptance
from trustwire.plan.rotation import PeerState
from trustwire.plan.shared import SharedValue
from trustwire.plan.status import IdentityStatus, TrustStatus, WorkloadStatus
from trustwire.plan.workloads import Wiring, material_hash, rollout_complete, wiring_ops


class IdentityReconciler(StatusWriter):
    propagation_delay: timedelta
    secret_budget: int
    jitter: float
    rng: random.Random

    async def reconcile_identity(self, ref: IdentityRef) -> None:
        try:
            await self._identity_pass(ref)
        finally:  # whoever held back its first trust Secret for this pass looks again
            self.state.passed.add(ref)
            for waiter in self.state.first_trust_waiters.pop(ref, set()):
                self._enqueue_identity(waiter)

    async def _identity_pass(self, ref: IdentityRef) -> None:
        body = await self.client.get(IDENTITIES, ref.namespace, ref.name)
        if body is None:
            self.state.drop_identity(ref)
            self.statuses.pop(("identity", ref.namespace, ref.name), None)
            return
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            await self._finalize_identity(ref, body)
            return
        now = self.clock()
        old_status = IdentityStatus.from_dict(body.get("status"))
        try:
            ident = parse_identity(body)
        except SpecError as exc:
            checks = {"SpecValid": cond.stalled("InvalidSpec", str(exc))}
            await self._write_status(IDENTITIES, ref.namespace, ref.name, body, checks, now, outcome.invalid_status,
                                     ready_message="")
            return
        if names.FINALIZER not in (meta.get("finalizers") or []) and outcome.needs_finalizer(ident, old_status):
            await self._add_finalizer(IDENTITIES, ref.namespace, ref.name, meta)

        handled = old_status.rotation.handled_request if old_status.rotation else None
        annotation = (meta.get("annotations") or {}).get(names.ROTATE_ANNOTATION)
        observation, raw = await self._gather_identity(ident, now, old_status)
        plan = await asyncio.to_thread(plan_identity, observation, rotate=outcome.rotation_request(annotation, handled))
        self._await_evidence(ref, plan, observation)
        self._await_first_publications(ref, plan.awaited)
        written: dict[str, Mapping[str, Any]] = {}
        try:
            await self._apply(ident.namespace, plan.objects, raw, owner=body, written=written)
        finally:  # also when a later write fails: the echoes of the earlier ones wake nobody
            self._announce_publication(ident, {**raw, **written}, written)
        workloads = await self._wire_workloads(ident, plan, old_status)
        for name in plan.obsolete:  # after the workloads stopped projecting it
            await self._delete_ours(SECRETS, ident.namespace, name, names.IDENTITY_LABEL, ident.name)
        checks = {**plan.checks, "WorkloadsReady": outcome.workloads_ready(
            bool(ident.workloads), bool(plan.mounted), workloads)}
        remembered = outcome.handled_request(annotation, handled)
        await self._write_status(
            IDENTITIES, ref.namespace, ref.name, body, checks, now,
            lambda conditions, generation: outcome.identity_status(plan, workloads, remembered, conditions, generation),
            ready_message=plan.ready_message, extra_conditions=plan.extra_conditions)
        for event in plan.events:
            await self.post_event(body, event.type, event.reason, event.message)
        if plan.wake_at is not None:
            delay = (plan.wake_at - now).total_seconds()
            self.queue.add_after(("identity", ref.namespace, ref.name),
                                 delay * (1 + self.jitter * self.rng.random() / 10))

    async def _gather_identity(self, ident: ServiceIdentity, now: datetime, old_status: IdentityStatus,
                               ) -> tuple[IdentityObservation, dict[str, Mapping[str, Any] | None]]:
        ns = ident.namespace
        raw: dict[str, Mapping[str, Any] | None] = {}

        async def stored(resource: Resource, name: str) -> StoredObject | None:
            body = await self._read(resource, ns, name)
            raw[name] = body
            return stored_object(resource, body)

        ca = await stored(SECRETS, names.ca_secret(ident.name)) if ident.ca.secret_name is None else None
        enrollment_ca = await stored(SECRETS, names.enrollment_ca_secret(ident.name)) if ident.enrollment else None
        byo = None
        if ident.ca.secret_name is not None:
            byo = stored_object(SECRETS, await self.client.get(SECRETS, ns, ident.ca.secret_name),
                                require_managed=False)
        credentials = await stored(SECRETS, names.credentials_secret(ident.name))
        trust = await stored(SECRETS, names.trust_secret(ident.name))
        trust_files = {f: part for f in names.TRUST_SPLIT_KEYS  # the inventory answers most of these
                       if (part := await stored(SECRETS, names.trust_file_secret(ident.name, f))) is not None}
        public = await stored(CONFIGMAPS, names.public_configmap(ident.name))

        password, password_problem = None, None
        ref = ident.keystores.password_secret
        if ref is not None:
            body = await self.client.get(SECRETS, ns, ref.name)
            value = decode_data(SECRETS, body).get(ref.key)
            password = keystore_password(value)
            if not value:
                password_problem = (f"spec.keystores.passwordSecretRef: Secret {ns}/{ref.name} "
                                    f"{'has no key ' + repr(ref.key) if body else 'does not exist'}")
            elif password is None:
                password_problem = (f"spec.keystores.passwordSecretRef: Secret {ns}/{ref.name} key {ref.key!r} "
                                    "must be printable ASCII")

        sources: dict[str, str | None] = {}
        for tpl in ident.templates:
            if tpl.inline is not None:
                sources[tpl.name] = tpl.inline
            elif tpl.config_map is not None:
                cm = await self.client.get(CONFIGMAPS, ns, tpl.config_map.name)
                data = decode_data(CONFIGMAPS, cm)
                value = data.get(tpl.config_map.key)
                sources[tpl.name] = value.decode("utf-8", "replace") if value is not None else None

        me = IdentityRef(ns, ident.name)
        links: list[PeerLink] = []
        for rel in self.state.relationships_of(me):
            if not acceptance(rel, self.state.lookup).ok:
                continue
            if rel.issuer is not None:
                kept = await self._read(CONFIGMAPS, rel.namespace, names.issuer_configmap(rel.name))
                links.append(PeerLink(rel, IdentityRef(rel.namespace, rel.name),
                                      issuer_publication(rel, stored_object(CONFIGMAPS, kept))))
                continue
            if rel.external is not None:
                publication, _ = await self.external_bundle(rel, now)
                links.append(PeerLink(rel, IdentityRef(rel.namespace, rel.external.name), publication))
                continue
            peer = rel.peer_of(me)
            assert peer is not None
            links.append(PeerLink(rel, peer, await self._publication(peer), await self._shared_secret(rel, now)))
        inside = [lk for lk in links if not lk.relationship.outside]
        observation = IdentityObservation(
            identity=ident, now=now, ca=ca, byo_ca=byo, enrollment_ca=enrollment_ca, credentials=credentials,
            trust=trust, trust_files=trust_files, public=public,
            user_password=password, user_password_problem=password_problem, template_sources=sources,
            links=tuple(links), enrolled=tuple(self.state.enrollments.enrolled(me, now)) if ident.enrollment else (),
            peer_states={lk.peer: s for lk in inside if (s := self._peer_state(lk.peer))},
            rolled_out_hash=old_status.material_hash if old_status.rolled_out else None,
            imminent=self._imminent(inside),
            propagation_delay=self.propagation_delay, secret_budget=self.secret_budget)
        return observation, raw

    def _await_evidence(self, ref: IdentityRef, plan: IdentityPlan, observation: IdentityObservation) -> None:
        """Peers' status changes (their trust, their rollouts) wake only identities waiting on a
        rotation gate; the rest never read them. A change that arrived while this pass ran,
        after it gathered, is caught here — later ones find ``ref`` marked as waiting."""
        if not plan.awaits_peers:
            self.state.awaiting_peers.discard(ref)
            return
        self.state.awaiting_peers.add(ref)
        if any(self._peer_state(lk.peer) != observation.peer_states.get(lk.peer) for lk in observation.links):
            self.queue.add(("identity", ref.namespace, ref.name))

    def _await_first_publications(self, ref: IdentityRef, awaited: frozenset[IdentityRef]) -> None:
        """The plan holds ``ref``'s first trust Secret back for these peers' first passes: each
        of them wakes ``ref`` when it ends (one that publishes wakes it anyway; one that
        cannot must not leave it waiting). A pass that ended while this one ran is caught here."""
        for peer in awaited:
            self.state.first_trust_waiters.setdefault(peer, set()).add(ref)
        if any(peer in self.state.passed for peer in awaited):
            self.queue.add(("identity", ref.namespace, ref.name))

    def _imminent(self, links: Sequence[PeerLink]) -> frozenset[IdentityRef]:
        """Peers whose first pass in this process is queued or running."""
        return frozenset(lk.peer for lk in links if lk.peer not in self.state.passed
                         and self.queue.due(("identity", lk.peer.namespace, lk.peer.name)))

    def _peer_state(self, peer: IdentityRef) -> PeerState | None:
        """What the peer reports (in its own status) about the material it holds and runs."""
        body = self.state.identities.get(peer)
        entry = self.state.entries.get(peer)
        if body is None or entry is None:
            return None
        status = IdentityStatus.from_dict(body.get("status"))
        trust = status.trust or TrustStatus((), ())
        ident = entry.identity
        return PeerState(peer, frozenset(trust.ca_fingerprints), frozenset(trust.kids),
                         rolled_out=bool(status.rolled_out), has_workloads=ident is not None and ident.restarts,
                         reloads_in_place=ident is not None and ident.reloads_in_place)

    async def _publication(self, peer: IdentityRef) -> Publication | None:
        """The peer's public material from its own managed Secrets (cached until they change)."""
        if peer in self.state.publications:
            return self.state.publications.get(peer)
        epoch = self.state.publications.epoch(peer)
        ca = stored_object(SECRETS, await self._read(SECRETS, peer.namespace, names.ca_secret(peer.name)))
        creds = stored_object(SECRETS,
                              await self._read(SECRETS, peer.namespace, names.credentials_secret(peer.name)))
        entry = self.state.entries.get(peer)
        publication = publication_from_secrets(peer, entry.identity if entry else None, ca, creds)
        if not self.state.publications.fetched(peer, epoch, publication):
            self._republished(peer)  # readers disagree on what it publishes: all look again
        return publication

    def _announce_publication(self, ident: ServiceIdentity, bodies: Mapping[str, Mapping[str, Any] | None],
                              written: Mapping[str, Any]) -> None:
        """After a pass wrote the identity's CA or credentials Secret: unless readers already
        hold what they now publish (a renewed leaf publishes nothing new), make them fetch it
        again and wake them — the watch echo of the write wakes nobody."""
        ref = IdentityRef(ident.namespace, ident.name)
        ca_name, creds_name = names.ca_secret(ident.name), names.credentials_secret(ident.name)
        if ca_name not in written and creds_name not in written:
            return
        if ca_name in bodies and ref in self.state.publications and self.state.publications.unchanged(
                ref, publication_from_secrets(ref, ident, stored_object(SECRETS, bodies[ca_name]),
                                              stored_object(SECRETS, bodies.get(creds_name)))):
            return  # (a bring-your-own CA was not gathered: a CA Secret of ours may linger, so fetch)
        self._republished(ref)

    def _republished(self, ref: IdentityRef) -> None:
        """What ``ref`` publishes may have changed: its peers fetch it again, and look."""
        self.state.publications.forget(ref)
        for peer in self.state.peers_of(ref):
            self._enqueue_identity(peer)

    async def _shared_secret(self, rel: TrustRelationship, now: datetime) -> SharedValue | None:
        if rel.shared_secret is None:
            return None
        body = await self._read(SECRETS, rel.namespace, shared.secret_name(rel))
        return shared.stored_value(stored_object(SECRETS, body), now)

    async def _wire_workloads(self, ident: ServiceIdentity, plan: IdentityPlan, old_status: IdentityStatus,
                              ) -> list[WorkloadStatus]:
        """Unwire workloads that left the spec, wire the wanted ones; what each one is now."""
        ns = ident.namespace
        wanted = {(str(w.kind), w.name): w for w in ident.workloads}
        previous = {(w.kind, w.name): w for w in old_status.workloads or ()}
        for kind, name in [key for key in previous if key not in wanted]:
            resource = WORKLOADS.get(kind)
            body = await self.client.get(resource, ns, name) if resource is not None else None
            if resource is not None and body is not None and wired_by(body) == f"{ns}/{ident.name}":
                result = wiring_ops(body, None)
                if result.ops:
                    await self._patch_workload(resource, ns, name, result.ops)
        if not wanted or not plan.mounted:
            return outcome.pending_workloads(list(wanted))
        digest = material_hash(plan.mounted)
        entries: list[WorkloadStatus] = []
        for (kind, name), ref in wanted.items():
            old = previous.get((kind, name))
            entries.append(await self._wire_one(ident, ref, digest, plan.trust_secrets,
                                                old.rollout_generation or 0 if old else 0))
        return entries

    async def _wire_one(self, ident: ServiceIdentity, ref: WorkloadRef, digest: str, trust_secrets: tuple[str, ...],
                        rollout_generation: int) -> WorkloadStatus:
        ns, kind, name, resource = ident.namespace, str(ref.kind), ref.name, WORKLOADS[ref.kind]
        body = await self.client.get(resource, ns, name)
        if body is None:
            return WorkloadStatus(kind, name, "NotFound", f"{kind} {ns}/{name} does not exist yet", False)
        wiring = Wiring(identity=ident.name, namespace=ns, mount_path=ident.mount_path,
                        credentials_secret=names.credentials_secret(ident.name),
                        trust_secrets=trust_secrets, containers=ref.containers,
                        material_hash=digest if ref.rollout is RolloutMode.RESTART else None)
        result = wiring_ops(body, wiring)
        generation = int((body.get("metadata") or {}).get("generation") or 0)
        if result.ops:
            patched = await self._patch_workload(resource, ns, name, result.ops)
            # A template change bumps the generation on a real API server; the rollout of
            # our change is complete only once the controller observed a newer generation.
            rollout_generation = max(int(((patched or {}).get("metadata") or {}).get("generation") or 0),
                                     generation + 1)
        done = not result.ops and rollout_complete(body, rollout_generation)
        if result.problems:
            return WorkloadStatus(kind, name, "Conflict", "; ".join(result.problems), done, rollout_generation)
        return WorkloadStatus(kind, name, "Wired", "", done, rollout_generation)

    async def _finalize_identity(self, ref: IdentityRef, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        if names.FINALIZER not in (meta.get("finalizers") or []):
            return
        try:
            ident: ServiceIdentity | None = parse_identity(body)
        except SpecError:
            ident = None
        ns = ref.namespace
        # unwire every workload we wired (from status, which survives spec edits)
        for old in IdentityStatus.from_dict(body.get("status")).workloads or ():
            resource = WORKLOADS.get(old.kind)
            if resource is None:
                continue
            workload = await self.client.get(resource, ns, old.name)
            if workload is not None and wired_by(workload) == f"{ns}/{ref.name}":
                result = wiring_ops(workload, None)
                if result.ops:
                    await self._patch_workload(resource, ns, old.name, result.ops)
        doomed = [(SECRETS, names.credentials_secret(ref.name)), *((SECRETS, n) for n in names.trust_secrets(ref.name)),
                  (CONFIGMAPS, names.public_configmap(ref.name))]
        delete_ca = ident is not None and str(ident.deletion_policy) == "Delete"
        if delete_ca:
            doomed += [(SECRETS, names.ca_secret(ref.name)), (SECRETS, names.enrollment_ca_secret(ref.name))]
        for resource, name in doomed:
            await self._delete_ours(resource, ns, name, names.IDENTITY_LABEL, ref.name)
        await self.post_event(body, "Normal", "Deleted",
                              "removed credentials, trust and public material"
                              + ("" if delete_ca else "; kept the CA Secret (deletionPolicy Retain)"))
        await self._remove_finalizer(IDENTITIES, ns, ref.name, meta)

