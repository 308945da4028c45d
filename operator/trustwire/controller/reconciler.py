"""The reconcile loop: gather → plan → apply → status, one identity or relationship at a time.

Watch events say which objects changed — the controller's own watches of identities,
relationships, the Secrets and ConfigMaps it writes and the workloads it wires
(:mod:`trustwire.controller.informer`). The controller works out who is *affected* (a peer's new CA
touches every identity trusting it), queues those keys, and a few workers reconcile them:

1. :meth:`Controller._gather_identity` — the one place that reads: the identity, its four
   objects, referenced Secrets/ConfigMaps, and each accepted peer's publication;
2. :func:`trustwire.plan.identity.plan_identity` — pure decisions;
3. :meth:`Controller._apply` — create what is missing, patch what differs, nothing else;
4. status written only when it changed, Events only for issuance and transitions.

Most watch events are echoes of the operator's own writes; those wake nobody (the pass
that wrote tells whoever reads what changed), so a pass runs for news only — README,
"Who a watch event wakes".

Writes follow the object order of the plan (CA before leaf before publication before
trust) so a crash between two writes always leaves a state the next pass adopts rather
than re-issues. A 409 on create means another writer got there first: the key is
re-queued and the next pass adopts what exists. Nothing here holds key material longer
than a pass, and nothing logs it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from trustwire import names
from trustwire.controller.backoff import Retry
from trustwire.controller.heap import HeapTrimmer
from trustwire.controller.intake import Key
from trustwire.controller.leader import LeaderElection
from trustwire.controller.queue import WorkQueue
from trustwire.controller.state import State
from trustwire.controller.workers import Workers
from trustwire.k8s.client import Client
from trustwire.k8s.errors import ApiError
from trustwire.k8s.resources import (
    CONFIGMAPS,
    EVENTS,
    IDENTITIES,
    RELATIONSHIPS,
    SECRETS,
    WORKLOADS,
    Resource,
    decode_data,
)
from trustwire.model import IdentityRef, ServiceIdentity, SpecError, TrustRelationship, parse_identity
from trustwire.plan import conditions as cond
from trustwire.plan.identity import (
    DesiredObject,
    IdentityObservation,
    IdentityPlan,
    PeerLink,
    Publication,
    StoredObject,
    plan_identity,
    publication_from_secrets,
)
from trustwire.plan.objects import merge_patch, object_body, object_patch
from trustwire.plan.relationship import acceptance, distribution, shared_secret_object
from trustwire.plan.rotation import DEFAULT_PROPAGATION_DELAY, PeerState
from trustwire.plan.workloads import Wiring, material_hash, rollout_complete, wiring_ops
from trustwire.times import Clock, utcnow

log = logging.getLogger("trustwire")


class Controller(Workers):
    def __init__(self, client: Client, *, clock: Clock = utcnow, rng: random.Random | None = None,
                 workers: int = 4, resync_interval: float = 600.0, jitter: float = 0.1,
                 propagation_delay: timedelta = DEFAULT_PROPAGATION_DELAY,
                 namespaces: Sequence[str] = ()) -> None:
        self.client = client
        #: served namespaces (empty: cluster-wide)
        self.namespaces: list[str | None] = list(namespaces)
        #: (plural, namespace) → resourceVersion of prime's listing, where _follow starts
        self._versions: dict[tuple[str, str | None], str | None] = {}
        self.propagation_delay = propagation_delay
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.state = State()
        self.queue: WorkQueue[Key] = WorkQueue()
        self.workers = workers
        self.resync_interval = resync_interval
        self.jitter = jitter
        self.reconciles: dict[str, int] = {}
        #: (kind, result) → count and total seconds, for metrics; result is "ok" or "error"
        self.reconcile_results: dict[tuple[str, str], int] = {}
        self.reconcile_seconds: dict[tuple[str, str], float] = {}
        #: last computed status per (kind, namespace, name), written or not, for metrics
        self.statuses: dict[Key, Mapping[str, Any]] = {}
        self.failures = 0
        self.last_error: str | None = None
        #: passes of a key that failed for good in a row (their retries back off)
        self.refusals: dict[Key, int] = {}
        self.election: LeaderElection | None = None
        #: called when the queue goes idle: returns the heap a burst of passes left behind
        self.trim_heap: Callable[[], object] = HeapTrimmer()

    # ==================================================================================
    # Identity
    # ==================================================================================
    async def reconcile_identity(self, ref: IdentityRef) -> None:
        body = await self.client.get(IDENTITIES, ref.namespace, ref.name)
        if body is None:
            self.state.drop_identity(ref)
            self.statuses.pop(("identity", ref.namespace, ref.name), None)
            return
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            await self._finalize_identity(ref, body)
            return
        if names.FINALIZER not in (meta.get("finalizers") or []):
            await self._add_finalizer(IDENTITIES, ref.namespace, ref.name, meta)
        now = self.clock()
        old_status: Mapping[str, Any] = body.get("status") or {}
        try:
            ident = parse_identity(body)
        except SpecError as exc:
            checks = {"SpecValid": cond.stalled("InvalidSpec", str(exc))}
            await self._write_status(IDENTITIES, ref.namespace, ref.name, body, checks, {}, now,
                                     ready_message="")
            return

        handled = (old_status.get("rotation") or {}).get("handledRequest")
        rotate = self._rotation_request(meta, handled)
        observation, raw = await self._gather_identity(ident, now, old_status)
        plan = await asyncio.to_thread(plan_identity, observation, rotate=rotate)
        self._await_evidence(ref, plan, observation)
        written: dict[str, Mapping[str, Any]] = {}
        try:
            await self._apply(ident.namespace, plan.objects, raw, owner=body, written=written)
        finally:  # also when a later write fails: the echoes of the earlier ones wake nobody
            self._announce_publication(ident, {**raw, **written}, written)
        checks = dict(plan.checks)
        extra: dict[str, Any] = dict(plan.status)
        workloads_check, workload_status = await self._wire_workloads(ident, plan, old_status)
        checks["WorkloadsReady"] = workloads_check
        extra["workloads"] = workload_status
        if plan.mounted:
            extra["materialHash"] = material_hash(plan.mounted)
            extra["rolledOut"] = all(w.get("rolledOut") for w in workload_status)
        extra["rotation"] = dict(extra.get("rotation") or {})
        if rotate is not None or handled:
            extra["rotation"]["handledRequest"] = (meta.get("annotations") or {}).get(names.ROTATE_ANNOTATION) \
                if rotate is not None else handled
        await self._write_status(IDENTITIES, ref.namespace, ref.name, body, checks, extra, now,
                                 ready_message=f"{len(plan.status.get('peers', []))} peer(s); "
                                               "material issued and distributed",
                                 extra_conditions=plan.extra_conditions)
        for event in plan.events:
            await self.post_event(body, event.type, event.reason, event.message)
        if plan.wake_at is not None:
            delay = (plan.wake_at - now).total_seconds()
            self.queue.add_after(("identity", ref.namespace, ref.name),
                                 delay * (1 + self.jitter * self.rng.random() / 10))

    def _rotation_request(self, meta: Mapping[str, Any], handled: str | None) -> str | None:
        value = (meta.get("annotations") or {}).get(names.ROTATE_ANNOTATION)
        if not value or value == handled:
            return None
        what = value.split(":", 1)[0].strip()
        return what if what in ("ca", "certificate", "jwt") else None

    async def _gather_identity(self, ident: ServiceIdentity, now: datetime, old_status: Mapping[str, Any],
                               ) -> tuple[IdentityObservation, dict[str, Mapping[str, Any] | None]]:
        ns = ident.namespace
        raw: dict[str, Mapping[str, Any] | None] = {}

        async def stored(resource: Resource, name: str) -> StoredObject | None:
            body = await self._read(resource, ns, name)
            raw[name] = body
            return _stored(resource, body)

        ca = await stored(SECRETS, names.ca_secret(ident.name)) if ident.ca.secret_name is None else None
        byo = None
        if ident.ca.secret_name is not None:
            byo = _stored(SECRETS, await self.client.get(SECRETS, ns, ident.ca.secret_name), require_managed=False)
        credentials = await stored(SECRETS, names.credentials_secret(ident.name))
        trust = await stored(SECRETS, names.trust_secret(ident.name))
        public = await stored(CONFIGMAPS, names.public_configmap(ident.name))

        password, password_problem = None, None
        ref = ident.keystores.password_secret
        if ref is not None:
            body = await self.client.get(SECRETS, ns, ref.name)
            value = decode_data(SECRETS, body).get(ref.key)
            if not value:
                password_problem = (f"spec.keystores.passwordSecretRef: Secret {ns}/{ref.name} "
                                    f"{'has no key ' + repr(ref.key) if body else 'does not exist'}")
            elif not all(0x20 <= b <= 0x7E for b in value.strip()):
                password_problem = (f"spec.keystores.passwordSecretRef: Secret {ns}/{ref.name} key {ref.key!r} "
                                    "must be printable ASCII")
            else:
                password = value.decode("ascii").strip()

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
            peer = rel.peer_of(me)
            assert peer is not None
            links.append(PeerLink(rel, peer, await self._publication(peer), await self._shared_secret(rel)))
        observation = IdentityObservation(
            identity=ident, now=now, ca=ca, byo_ca=byo, credentials=credentials, trust=trust, public=public,
            user_password=password, user_password_problem=password_problem, template_sources=sources,
            links=tuple(links), peer_states={lk.peer: s for lk in links if (s := self._peer_state(lk.peer))},
            rolled_out_hash=old_status.get("materialHash") if old_status.get("rolledOut") else None,
            propagation_delay=self.propagation_delay)
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

    def _peer_state(self, peer: IdentityRef) -> PeerState | None:
        """What the peer reports (in its own status) about the material it holds and runs."""
        body = self.state.identities.get(peer)
        entry = self.state.entries.get(peer)
        if body is None or entry is None:
            return None
        status = body.get("status") or {}
        trust = status.get("trust") or {}
        has_workloads = bool(entry.identity.workloads) if entry.identity is not None else False
        return PeerState(peer, frozenset(trust.get("caFingerprints") or ()), frozenset(trust.get("kids") or ()),
                         rolled_out=bool(status.get("rolledOut")), has_workloads=has_workloads)

    async def _publication(self, peer: IdentityRef) -> Publication | None:
        """The peer's public material from its own managed Secrets (cached until they change)."""
        if peer in self.state.publications:
            return self.state.publications.get(peer)
        epoch = self.state.publications.epoch(peer)
        ca = _stored(SECRETS, await self._read(SECRETS, peer.namespace, names.ca_secret(peer.name)))
        creds = _stored(SECRETS, await self._read(SECRETS, peer.namespace, names.credentials_secret(peer.name)))
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
                ref, publication_from_secrets(ref, ident, _stored(SECRETS, bodies[ca_name]),
                                              _stored(SECRETS, bodies.get(creds_name)))):
            return  # (a bring-your-own CA was not gathered: a CA Secret of ours may linger, so fetch)
        self._republished(ref)

    def _republished(self, ref: IdentityRef) -> None:
        """What ``ref`` publishes may have changed: its peers fetch it again, and look."""
        self.state.publications.forget(ref)
        for peer in self.state.peers_of(ref):
            self._enqueue_identity(peer)

    async def _shared_secret(self, rel: TrustRelationship) -> bytes | None:
        if not rel.shared_secret:
            return None
        body = await self._read(SECRETS, rel.namespace, names.shared_secret(rel.name))
        stored = _stored(SECRETS, body)
        if stored is None or not stored.managed:
            return None
        return stored.data.get("shared.key") or None

    async def _read(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        """One of our own Secrets or ConfigMaps, fresh from the API — or ``None`` without a
        request when the inventory knows no such object exists (a user's objects — a
        bring-your-own CA, a password Secret, a template — are always read)."""
        if not self.state.inventory.may_exist(resource.plural, namespace, name):
            return None
        return await self.client.get(resource, namespace, name)

    async def _apply(self, namespace: str, objects: list[DesiredObject],
                     raw: Mapping[str, Mapping[str, Any] | None], owner: Mapping[str, Any],
                     written: dict[str, Mapping[str, Any]]) -> None:
        """Create what is missing and patch what differs. Adds each write to ``written`` as it
        lands (the server's answer, by name; also remembered so that its watch echo wakes
        nobody), so a caller learns what was written even when a later write fails."""
        for desired in objects:
            resource = _resource(desired)
            observed = raw.get(desired.name) if desired.name in raw else \
                await self._read(resource, namespace, desired.name)
            result: Mapping[str, Any] | None = None
            if observed is None:
                try:
                    result = await self.client.create(resource, namespace, object_body(desired, namespace, owner))
                except ApiError as exc:
                    if exc.status == 409:  # the inventory missed it, so perhaps its siblings too:
                        for other in objects:  # the next pass reads them all (one may clash)
                            self.state.inventory.exists(_resource(other).plural, namespace, other.name)
                        raise Retry(f"{desired.kind} {namespace}/{desired.name} already exists; "
                                    "the next pass reads it") from None
                    raise
            elif not names.is_managed((observed.get("metadata") or {}).get("labels")):
                continue  # never touch what we do not manage (the plan reports the clash)
            elif (patch := object_patch(desired, observed)) is not None:
                result = await self.client.merge_patch(resource, namespace, desired.name, patch)
            if result is not None:
                self.state.wrote(resource.plural, result)
                written[desired.name] = result

    async def _wire_workloads(self, ident: ServiceIdentity, plan: IdentityPlan, old_status: Mapping[str, Any],
                              ) -> tuple[cond.Check, list[dict[str, Any]]]:
        ns = ident.namespace
        wanted = {(str(w.kind), w.name): w for w in ident.workloads}
        entries: list[dict[str, Any]] = []
        failures: list[cond.Check] = []
        # unwire workloads that left the spec
        for old in old_status.get("workloads") or []:
            if not isinstance(old, Mapping) or (old.get("kind"), old.get("name")) in wanted:
                continue
            resource = WORKLOADS.get(str(old.get("kind")))
            if resource is None:
                continue
            body = await self.client.get(resource, ns, str(old.get("name")))
            if body is not None and _wired_by(body) == f"{ns}/{ident.name}":
                result = wiring_ops(body, None)
                if result.ops:
                    await self._patch_workload(resource, ns, str(old.get("name")), result.ops)
        if not wanted:
            return cond.passed("NoWorkloads", "spec.workloads is empty"), []
        if not plan.mounted:
            return cond.waiting("MaterialNotReady", "waiting for the credentials (see CertificateReady)"), [
                {"kind": k, "name": n, "state": "Pending", "message": "material not ready", "rolledOut": False}
                for k, n in wanted]
        digest = material_hash(plan.mounted)
        previous = {(w.get("kind"), w.get("name")): w for w in old_status.get("workloads") or []
                    if isinstance(w, Mapping)}
        for (kind, name), ref in wanted.items():
            resource = WORKLOADS[kind]
            body = await self.client.get(resource, ns, name)
            if body is None:
                entries.append({"kind": kind, "name": name, "state": "NotFound",
                                "message": f"{kind} {ns}/{name} does not exist yet", "rolledOut": False})
                failures.append(cond.waiting("WorkloadNotFound", f"{kind} {ns}/{name} does not exist yet"))
                continue
            wiring = Wiring(identity=ident.name, namespace=ns, mount_path=ident.mount_path,
                            credentials_secret=names.credentials_secret(ident.name),
                            trust_secret=names.trust_secret(ident.name), containers=ref.containers,
                            material_hash=digest)
            result = wiring_ops(body, wiring)
            generation = int((body.get("metadata") or {}).get("generation") or 0)
            rollout_generation = int(previous.get((kind, name), {}).get("rolloutGeneration") or 0)
            if result.ops:
                patched = await self._patch_workload(resource, ns, name, result.ops)
                # A template change bumps the generation on a real API server; the rollout of
                # our change is complete only once the controller observed a newer generation.
                rollout_generation = max(int(((patched or {}).get("metadata") or {}).get("generation") or 0),
                                         generation + 1)
            done = not result.ops and rollout_complete(body, rollout_generation)
            entry: dict[str, Any] = {"kind": kind, "name": name, "rolloutGeneration": rollout_generation,
                                     "rolledOut": done}
            if result.problems:
                message = "; ".join(result.problems)
                entries.append(entry | {"state": "Conflict", "message": message})
                failures.append(cond.stalled("WorkloadConflict", message))
            else:
                entries.append(entry | {"state": "Wired", "message": ""})
        if failures:
            return failures[0], entries
        return cond.passed("Wired", f"{len(entries)} workload(s) wired"), entries

    async def _patch_workload(self, resource: Resource, namespace: str, name: str,
                              ops: list[dict[str, Any]]) -> dict[str, Any] | None:
        try:
            return await self.client.json_patch(resource, namespace, name, ops)
        except ApiError as exc:
            if exc.status in (409, 422) or exc.status >= 500:
                raise Retry(f"{resource.kind} {namespace}/{name} changed while being wired") from None
            raise

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
        for old in (body.get("status") or {}).get("workloads") or []:
            resource = WORKLOADS.get(str(old.get("kind"))) if isinstance(old, Mapping) else None
            if resource is None:
                continue
            workload = await self.client.get(resource, ns, str(old.get("name")))
            if workload is not None and _wired_by(workload) == f"{ns}/{ref.name}":
                result = wiring_ops(workload, None)
                if result.ops:
                    await self._patch_workload(resource, ns, str(old.get("name")), result.ops)
        doomed = [(SECRETS, names.credentials_secret(ref.name)), (SECRETS, names.trust_secret(ref.name)),
                  (CONFIGMAPS, names.public_configmap(ref.name))]
        delete_ca = ident is not None and str(ident.deletion_policy) == "Delete"
        if delete_ca:
            doomed.append((SECRETS, names.ca_secret(ref.name)))
        for resource, name in doomed:
            await self._delete_ours(resource, ns, name, names.IDENTITY_LABEL, ref.name)
        await self.post_event(body, "Normal", "Deleted",
                              "removed credentials, trust and public material"
                              + ("" if delete_ca else "; kept the CA Secret (deletionPolicy Retain)"))
        await self._remove_finalizer(IDENTITIES, ns, ref.name, meta)

    async def _add_finalizer(self, resource: Resource, namespace: str, name: str, meta: Mapping[str, Any]) -> None:
        current = list(meta.get("finalizers") or [])
        ops: list[dict[str, Any]]
        if current:
            ops = [{"op": "test", "path": "/metadata/finalizers", "value": current},
                   {"op": "add", "path": "/metadata/finalizers/-", "value": names.FINALIZER}]
        else:
            ops = [{"op": "add", "path": "/metadata/finalizers", "value": [names.FINALIZER]}]
        await self.client.json_patch(resource, namespace, name, ops)

    async def _remove_finalizer(self, resource: Resource, namespace: str, name: str, meta: Mapping[str, Any]) -> None:
        current = list(meta.get("finalizers") or [])
        index = current.index(names.FINALIZER)
        ops = [{"op": "test", "path": f"/metadata/finalizers/{index}", "value": names.FINALIZER},
               {"op": "remove", "path": f"/metadata/finalizers/{index}"}]
        try:
            await self.client.json_patch(resource, namespace, name, ops)
        except ApiError as exc:
            if exc.status >= 500 or exc.status in (409, 422):
                raise Retry("finalizers changed meanwhile") from None
            raise

    # ==================================================================================
    # Relationship
    # ==================================================================================
    async def reconcile_relationship(self, key: tuple[str, str]) -> None:
        namespace, name = key
        body = await self.client.get(RELATIONSHIPS, namespace, name)
        shared_name = names.shared_secret(name)
        if body is None:
            # Gone before its DELETED event was seen: whoever it named must drop the peer now
            # (the event, when it comes, finds nothing left to tell them).
            for ref in self.state.drop_relationship(key):
                self._enqueue_identity(ref)
            self.statuses.pop(("relationship", namespace, name), None)
            await self._delete_shared_secret(namespace, name)
            return
        self.state.put_relationship(body)
        record = self.state.relationships[key]
        now = self.clock()
        if record.parsed is None:
            assert record.error is not None
            checks = {"Accepted": cond.stalled("InvalidSpec", str(record.error))}
            await self._write_status(RELATIONSHIPS, namespace, name, body, checks, {}, now, ready_message="")
            return
        rel = record.parsed
        accepted = acceptance(rel, self.state.lookup)
        checks = {"Accepted": accepted}
        if accepted.ok and rel.shared_secret:
            observed = await self._read(SECRETS, namespace, shared_name)
            stored = _stored(SECRETS, observed)
            if stored is not None and not stored.managed:
                checks["SharedSecretReady"] = cond.stalled(
                    "NameConflict", f"Secret {namespace}/{shared_name} exists and is not managed by trustwire")
            else:
                desired = shared_secret_object(rel, stored, lambda: secrets.token_bytes(32))
                written: dict[str, Mapping[str, Any]] = {}
                await self._apply(namespace, [desired], {shared_name: observed}, owner=body, written=written)
                if written:
                    for ref in rel.between:  # they deliver it (the write's echo wakes nobody)
                        self._enqueue_identity(ref)
                checks["SharedSecretReady"] = cond.passed("Generated", "shared secret delivered to both sides")
        else:
            await self._delete_shared_secret(namespace, name)
        if accepted.ok:
            checks["Distributed"] = distribution(rel, self.state.lookup)
        await self._write_status(RELATIONSHIPS, namespace, name, body, checks,
                                 {"identities": [str(r) for r in rel.between]}, now,
                                 ready_message=f"{rel.between[0]} and {rel.between[1]} trust each other")

    async def _delete_shared_secret(self, namespace: str, relationship: str) -> None:
        """Delete the relationship's shared secret if one exists (a relationship without one
        costs no read: see :class:`Inventory`)."""
        await self._delete_ours(SECRETS, namespace, names.shared_secret(relationship),
                                names.RELATIONSHIP_LABEL, relationship)

    async def _delete_ours(self, resource: Resource, namespace: str, name: str, owner_label: str,
                           owner: str) -> None:
        """Delete one of our objects if it exists, is managed and belongs to ``owner`` (by
        ``owner_label``); anything else under that name is left alone."""
        existing = await self._read(resource, namespace, name)
        labels = ((existing or {}).get("metadata") or {}).get("labels") or {}
        if existing is not None and names.is_managed(labels) and labels.get(owner_label) == owner:
            await self.client.delete(resource, namespace, name)
            self.state.inventory.gone(resource.plural, namespace, name)

    # ==================================================================================
    # Status and events
    # ==================================================================================
    async def _write_status(self, resource: Resource, namespace: str, name: str, body: Mapping[str, Any],
                            checks: Mapping[str, cond.Check], extra: Mapping[str, Any], now: datetime,
                            *, ready_message: str,
                            extra_conditions: Sequence[cond.Condition] = ()) -> list[cond.Condition]:
        old: Mapping[str, Any] = body.get("status") or {}
        generation = (body.get("metadata") or {}).get("generation")
        conditions = [*cond.summarize(checks, ready_message=ready_message), *extra_conditions]
        new: dict[str, Any] = dict(extra)
        new["conditions"] = cond.merge_conditions(old.get("conditions"), conditions, now=now,
                                                  generation=generation)
        if generation is not None:
            new["observedGeneration"] = generation
        if not await self._store_status(resource, namespace, name, old, new):
            return []
        changed = cond.transitions(old.get("conditions"), conditions)
        for c in changed:
            if c.type == "Ready" and c.ok and old.get("conditions"):
                await self.post_event(body, "Normal", "Ready", c.message)
            elif not c.ok and c.type in checks and checks[c.type].stalled:
                # Warnings are for what a human must fix; states that resolve by themselves
                # (a peer not published yet, distribution in progress) show in conditions only
                await self.post_event(body, "Warning", c.reason, f"{c.type}: {c.message}")
        return changed

    async def _store_status(self, resource: Resource, namespace: str, name: str, old: Mapping[str, Any],
                            new: dict[str, Any]) -> bool:
        """Remember ``new`` for metrics and write it if it differs from ``old``; True if written."""
        self.statuses[(("identity" if resource is IDENTITIES else "relationship"), namespace, name)] = new
        patch = merge_patch(dict(old), new)
        if patch is None:
            return False
        await self.client.merge_patch(resource, namespace, name, {"status": patch}, subresource="status")
        return True

    async def _report_failure(self, key: Key, exc: Exception) -> None:
        """Best effort: a pass that failed for good says so in Ready/Stalled, so that neither
        ``kubectl wait --for=condition=Ready`` nor a dashboard trusts the last good status."""
        kind, namespace, name = key
        resource = IDENTITIES if kind == "identity" else RELATIONSHIPS
        if isinstance(exc, ApiError):  # what was refused, and why in the API's words (an admission policy's)
            check = cond.stalled("WriteRejected", f"the API server refused {exc.verb.upper()} {exc.path}: "
                                                  f"{exc.status} {exc.reason}"
                                                  + (f": {exc.api_message}" if exc.api_message else ""))
        else:
            check = cond.waiting("InternalError", f"{type(exc).__name__} while reconciling; retrying "
                                                  "(the operator log has the details)")
        try:
            body = await self.client.get(resource, namespace, name)
            if body is None:
                return
            old: Mapping[str, Any] = body.get("status") or {}
            conditions = cond.failed_pass(old.get("conditions"), "Applied", check, now=self.clock(),
                                          generation=(body.get("metadata") or {}).get("generation"))
            written = await self._store_status(resource, namespace, name, old, {**old, "conditions": conditions})
            if written and check.stalled:
                await self.post_event(body, "Warning", check.reason, f"Applied: {check.message}")
        except ApiError as report_error:
            log.info("could not report the failed pass on %s/%s: %s", namespace, name, report_error.status)

    async def post_event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        meta = body.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        stamp = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta.get('name')}.{secrets.token_hex(8)}", "namespace": namespace},
            "involvedObject": {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
                               "name": meta.get("name"), "namespace": namespace, "uid": meta.get("uid")},
            "type": type_, "reason": reason[:128], "message": message[:1024],
            "source": {"component": "trustwire"}, "reportingComponent": "trustwire",
            "reportingInstance": "trustwire", "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        }
        try:
            await self.client.create(EVENTS, namespace, event)
        except ApiError as exc:  # an Event is best effort; never fail a reconcile over one
            log.info("could not post event %s on %s/%s: %s", reason, namespace, meta.get("name"), exc.status)


def _resource(desired: DesiredObject) -> Resource:
    return SECRETS if desired.kind == "Secret" else CONFIGMAPS


def _stored(resource: Resource, body: Mapping[str, Any] | None, *, require_managed: bool = True) -> StoredObject | None:
    if body is None:
        return None
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    return StoredObject(
        name=str(meta.get("name")),
        managed=names.is_managed(labels) or not require_managed,
        owner=labels.get(names.IDENTITY_LABEL),
        data=decode_data(resource, body),
        annotations=dict(meta.get("annotations") or {}),
        type=body.get("type"),
    )


def _wired_by(body: Mapping[str, Any]) -> str | None:
    value = ((body.get("metadata") or {}).get("annotations") or {}).get(names.WIRED_BY_ANNOTATION)
    return str(value) if value else None
