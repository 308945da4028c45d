"""The reconcile loop: gather → plan → apply → status, one identity or relationship at a time.

Watch events say which objects changed — the controller's own watches of identities,
relationships and the Secrets and ConfigMaps it writes (:meth:`Controller._follow`), kopf's
of the workloads it wires. The controller works out who is *affected* (a peer's new CA
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
import contextlib
import functools
import logging
import random
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from trustwire import names
from trustwire.controller.heap import HeapTrimmer
from trustwire.controller.leader import LeaderElection
from trustwire.controller.queue import WorkQueue
from trustwire.controller.state import State, identity_change, ref_of, relationship_change
from trustwire.k8s.client import (
    CONFIGMAPS,
    EVENTS,
    IDENTITIES,
    RELATIONSHIPS,
    SECRETS,
    WORKLOADS,
    ApiError,
    Client,
    Resource,
    decode_data,
)
from trustwire.model import IdentityRef, ServiceIdentity, SpecError, TrustRelationship, parse_identity
from trustwire.plan import conditions as cond
from trustwire.plan import outcome
from trustwire.plan.identity import IdentityObservation, IdentityPlan, PeerLink, plan_identity
from trustwire.plan.material import DesiredObject, StoredObject, keystore_password
from trustwire.plan.objects import merge_patch, object_body, object_patch
from trustwire.plan.publication import Publication, publication_from_secrets
from trustwire.plan.relationship import acceptance, distribution, shared_secret_object
from trustwire.plan.rotation import DEFAULT_PROPAGATION_DELAY, PeerState
from trustwire.plan.status import IdentityStatus, RelationshipStatus, TrustStatus, WorkloadStatus, with_conditions
from trustwire.plan.workloads import Wiring, material_hash, rollout_complete, wiring_ops
from trustwire.times import rfc3339

log = logging.getLogger("trustwire")

Key = tuple[str, str, str]  # ("identity" | "relationship", namespace, name)
#: makes a status from its stored conditions and the observed generation
StatusBuilder = Callable[[list[dict[str, Any]], int | None], IdentityStatus | RelationshipStatus]
#: seconds between attempts to re-open a failing watch (kopf's networking back-offs)
WATCH_BACKOFF = (1.0, 2.0, 5.0, 10.0)
#: what the controller lists and watches itself (:meth:`Controller._follow`), in listing
#: order, with the label selector of the listing: of Secrets and ConfigMaps only ours
FOLLOWED: dict[Resource, str | None] = {IDENTITIES: None, RELATIONSHIPS: None,
                                        SECRETS: names.MANAGED_SELECTOR, CONFIGMAPS: names.MANAGED_SELECTOR}
Clock = Callable[[], datetime]
#: What a refused listing most likely means, by status
_LISTING_HINTS = {403: " - is the chart's ClusterRole bound to the operator's ServiceAccount (RBAC)?",
                  404: " - are the trustwire CRDs installed?"}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Retry(Exception):
    """The pass could not finish (a conflict or a transient error); try again soon."""


class Controller:
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
    # Event intake (from _follow, and kopf's handlers for workloads; cheap, synchronous, never raises)
    # ==================================================================================
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
        for ref in self.state.template_index.get((namespace, str(meta.get("name"))), set()):
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

    # ==================================================================================
    # Workers
    # ==================================================================================
    async def run(self, election: LeaderElection | None = None) -> None:
        """Reconcile forever; with an election, only while holding the Lease.

        On acquiring the Lease the caches are listed afresh and watched from there (a
        follower watches nothing), and everything is resynced; on losing it the workers and
        watches are cancelled at once, mid-pass if need be — every pass is idempotent, so
        the next leader simply redoes it.
        """
        if election is None:
            await self._work()
            return
        elector = asyncio.create_task(election.run(), name="trustwire-leader-election")
        try:
            while True:
                await election.leading.wait()
                work = asyncio.create_task(self._work())
                lost = asyncio.create_task(election.lost.wait())
                await asyncio.wait({work, lost}, return_when=asyncio.FIRST_COMPLETED)
                work.cancel()
                lost.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
                if work.done() and not work.cancelled() and work.exception():
                    raise work.exception()  # type: ignore[misc]
        finally:
            elector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await elector

    async def prime(self) -> None:
        """Fill the caches with one LIST per kind before any reconcile (a "cache sync"), and
        note where each listing ended, for :meth:`_follow` to watch on from.

        Nothing is reconciled before every kind is listed: an identity reconciled before its
        relationships arrived would drop its peers, and a relationship reconciled before its
        identities arrived would report IdentityNotFound — writes, Events and rollouts
        caused by our own start-up. Of our Secrets and ConfigMaps only the names are kept
        (:class:`Inventory`), a page at a time.
        """
        self._versions.clear()
        for ns in self.namespaces or [None]:
            for resource in FOLLOWED:
                self._versions[resource.plural, ns] = await self._list(resource, ns)
            self.state.inventory.listed(ns)
        self.resync_all()

    async def _list(self, resource: Resource, namespace: str | None) -> str | None:
        """One kind in ``namespace`` (``None``: all) into the caches, replacing what they
        held of it — an identity or relationship gone since the caches last saw it goes
        through its observer as if its DELETED event had come. Returns the listing's
        resourceVersion. Every caller resyncs every key next."""
        if resource in (SECRETS, CONFIGMAPS):
            self.state.inventory.forget(resource.plural, namespace)
        identities: set[IdentityRef] = set()
        relationships: set[tuple[str, str]] = set()
        version = None
        async for page in self.client.pages(resource, namespace, label_selector=FOLLOWED[resource]):
            for body in page.items:
                if resource is IDENTITIES:
                    identities.add(self.state.put_identity(body))
                elif resource is RELATIONSHIPS:
                    relationships.add(self.state.put_relationship(body)[0])
                else:
                    self.state.inventory.observed(resource.plural, body, deleted=False)
            version = page.resource_version
        if resource is IDENTITIES:
            for ref in [r for r in self.state.identities if namespace in (None, r.namespace) and r not in identities]:
                self.observe_identity(self.state.identities[ref], deleted=True)
        elif resource is RELATIONSHIPS:
            for key in [k for k in self.state.relationships if namespace in (None, k[0]) and k not in relationships]:
                self.observe_relationship(self.state.relationships[key].body, deleted=True)
        return version

    async def _follow(self, resource: Resource, namespace: str | None) -> None:
        """Watch one kind in one served namespace, from where :meth:`prime` listed it, for as
        long as we lead; each event goes to its ``observe_*`` method.

        Not through kopf's handlers (which watch only the workloads): identities,
        relationships, and our Secrets and ConfigMaps are nearly all of the operator's watch
        events — about 12 per identity, most of them echoes of our own writes — and kopf's
        per-event pipeline (causes, per-object workers, loggers, handler kwargs: made for
        stateful handlers) cost ~0.2 ms each, several times the observer it calls
        (docs/benchmarks.md, finding 10). A watch the server ends is resumed from the last
        version seen; an expired version (410) is listed again and every key resynced (what
        changed in the gap is not known); any other failure is retried after a back-off.
        """
        observe = {IDENTITIES: self.observe_identity, RELATIONSHIPS: self.observe_relationship,
                   SECRETS: self.observe_secret, CONFIGMAPS: self.observe_configmap}[resource]
        selector = None if resource is CONFIGMAPS else FOLLOWED[resource]  # templates: the user's ConfigMaps
        version = self._versions.get((resource.plural, namespace))
        failures = 0
        while True:
            try:
                async for event in self.client.watch(resource, namespace, label_selector=selector,
                                                     resource_version=version):
                    failures = 0
                    body = event.get("object")
                    if not isinstance(body, Mapping):
                        continue
                    version = str((body.get("metadata") or {}).get("resourceVersion") or "") or version
                    if event.get("type") != "BOOKMARK":
                        observe(body, event.get("type") == "DELETED")
                continue  # the server ended the watch (its timeout): on from where it stopped
            except ApiError as exc:
                if exc.status == 410:
                    log.info("watch of %s%s expired; listing again", resource.plural,
                             f" in {namespace}" if namespace else "")
                    try:
                        version = await self._list(resource, namespace)
                    except ApiError:
                        version = None  # a watch from no version begins with every object, as ADDED
                    self.resync_all()
                    continue
                delay = WATCH_BACKOFF[min(failures, len(WATCH_BACKOFF) - 1)]
                # a refusal (RBAC, a missing CRD) or an outage that lasts is for a human to see;
                # a dropped connection now and then is not
                level = logging.DEBUG if exc.retryable and failures < 2 else logging.WARNING
                log.log(level, "watch of %s%s failed (%s); watching again in %ss", resource.plural,
                        f" in {namespace}" if namespace else "", exc, delay)
            except Exception as exc:  # a bug in an observer must not end the watch for good
                delay = WATCH_BACKOFF[min(failures, len(WATCH_BACKOFF) - 1)]
                log.warning("watch of %s: %s in an observer; watching again in %ss", resource.plural,
                            type(exc).__name__, delay)
            failures += 1
            await asyncio.sleep(delay * (1 + self.jitter * self.rng.random()))

    async def _prime_until_listed(self) -> None:
        """:meth:`prime`, again after a back-off for as long as a listing is refused: CRDs not
        installed yet (404) or RBAC not bound yet (403) are for a human to fix, and once they
        are, the operator carries on without a restart."""
        failures = 0
        while True:
            try:
                await self.prime()
                return
            except ApiError as exc:
                delay = WATCH_BACKOFF[min(failures, len(WATCH_BACKOFF) - 1)]
                log.warning("cannot list what trustwire serves (%s)%s; listing again in %ss",
                            exc, _LISTING_HINTS.get(exc.status, ""), delay)
            failures += 1
            await asyncio.sleep(delay * (1 + self.jitter * self.rng.random()))

    async def _work(self) -> None:
        await self._prime_until_listed()
        tasks = [asyncio.create_task(self._worker(i), name=f"trustwire-worker-{i}") for i in range(self.workers)]
        tasks.append(asyncio.create_task(self._resync_loop(), name="trustwire-resync"))
        tasks += [asyncio.create_task(self._follow(resource, ns), name=f"trustwire-watch-{resource.plural}")
                  for ns in self.namespaces or [None] for resource in FOLLOWED]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.resync_interval * (1 + self.jitter * self.rng.random()))
            self.resync_all()

    async def _worker(self, index: int) -> None:
        while True:
            key = await self.queue.get()
            started = asyncio.get_running_loop().time()
            result = "error"
            try:
                await self.reconcile(key)
                self.refusals.pop(key, None)
                result = "ok"
            except asyncio.CancelledError:
                self.queue.add(key)  # not finished: whoever works next must redo it
                raise
            except Exception as exc:  # a bug or an outage must not kill the worker
                if isinstance(exc, ApiError) and exc.namespace_terminating:
                    # The namespace's deletion removes this object too, and that event brings
                    # the key back for the finalizer; a retry now could only be refused again.
                    log.debug("reconcile of %s %s/%s: its namespace is being deleted", *key)
                else:
                    await self._failed(key, exc)
            finally:
                stat = (key[0], result)
                self.reconcile_results[stat] = self.reconcile_results.get(stat, 0) + 1
                self.reconcile_seconds[stat] = (self.reconcile_seconds.get(stat, 0.0)
                                                + asyncio.get_running_loop().time() - started)
                self.queue.done(key)
                if self.queue.idle:
                    self.trim_heap()

    async def _failed(self, key: Key, exc: Exception) -> None:
        """A pass failed: count it, log it, try again later, and say so in status unless transient."""
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        delay = _retry_delay(exc)
        if not _transient(exc):
            # Soon at first (a refusal may pass: an apiserver that restarts refuses everyone
            # until its RBAC caches are filled), then doubling up to the delay for good.
            count = self.refusals.get(key, 0)
            self.refusals[key] = count + 1
            delay = min(delay, TRANSIENT_RETRY * 2 ** min(count, 16))
        log.warning("reconcile of %s %s/%s failed (%s); retrying in %.0fs",
                    key[0], key[1], key[2], self.last_error, delay)
        self.queue.add_after(key, delay * (1 + self.jitter * self.rng.random()))
        if not _transient(exc):
            await self._report_failure(key, exc)

    async def reconcile(self, key: Key) -> None:
        kind, namespace, name = key
        self.reconciles[kind] = self.reconciles.get(kind, 0) + 1
        if kind == "identity":
            await self.reconcile_identity(IdentityRef(namespace, name))
        else:
            await self.reconcile_relationship((namespace, name))

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """For the demo and tests: until no key is queued or being processed."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.queue.idle:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the controller did not settle")
            await asyncio.sleep(0.05)

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
        old_status = IdentityStatus.from_dict(body.get("status"))
        try:
            ident = parse_identity(body)
        except SpecError as exc:
            checks = {"SpecValid": cond.stalled("InvalidSpec", str(exc))}
            await self._write_status(IDENTITIES, ref.namespace, ref.name, body, checks, now, outcome.invalid_status,
                                     ready_message="")
            return

        handled = old_status.rotation.handled_request if old_status.rotation else None
        annotation = (meta.get("annotations") or {}).get(names.ROTATE_ANNOTATION)
        observation, raw = await self._gather_identity(ident, now, old_status)
        plan = await asyncio.to_thread(plan_identity, observation, rotate=outcome.rotation_request(annotation, handled))
        self._await_evidence(ref, plan, observation)
        written: dict[str, Mapping[str, Any]] = {}
        try:
            await self._apply(ident.namespace, plan.objects, raw, owner=body, written=written)
        finally:  # also when a later write fails: the echoes of the earlier ones wake nobody
            self._announce_publication(ident, {**raw, **written}, written)
        workloads = await self._wire_workloads(ident, plan, old_status)
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
            peer = rel.peer_of(me)
            assert peer is not None
            links.append(PeerLink(rel, peer, await self._publication(peer), await self._shared_secret(rel)))
        observation = IdentityObservation(
            identity=ident, now=now, ca=ca, byo_ca=byo, credentials=credentials, trust=trust, public=public,
            user_password=password, user_password_problem=password_problem, template_sources=sources,
            links=tuple(links), peer_states={lk.peer: s for lk in links if (s := self._peer_state(lk.peer))},
            rolled_out_hash=old_status.material_hash if old_status.rolled_out else None,
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
        status = IdentityStatus.from_dict(body.get("status"))
        trust = status.trust or TrustStatus((), ())
        has_workloads = bool(entry.identity.workloads) if entry.identity is not None else False
        return PeerState(peer, frozenset(trust.ca_fingerprints), frozenset(trust.kids),
                         rolled_out=bool(status.rolled_out), has_workloads=has_workloads)

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

    async def _wire_workloads(self, ident: ServiceIdentity, plan: IdentityPlan, old_status: IdentityStatus,
                              ) -> list[WorkloadStatus]:
        """Unwire workloads that left the spec, wire the wanted ones; what each one is now."""
        ns = ident.namespace
        wanted = {(str(w.kind), w.name): w for w in ident.workloads}
        previous = {(w.kind, w.name): w for w in old_status.workloads or ()}
        for kind, name in [key for key in previous if key not in wanted]:
            resource = WORKLOADS.get(kind)
            body = await self.client.get(resource, ns, name) if resource is not None else None
            if resource is not None and body is not None and _wired_by(body) == f"{ns}/{ident.name}":
                result = wiring_ops(body, None)
                if result.ops:
                    await self._patch_workload(resource, ns, name, result.ops)
        if not wanted or not plan.mounted:
            return outcome.pending_workloads(list(wanted))
        digest = material_hash(plan.mounted)
        entries: list[WorkloadStatus] = []
        for (kind, name), ref in wanted.items():
            old = previous.get((kind, name))
            entries.append(await self._wire_one(ident, kind, name, ref.containers, digest,
                                                old.rollout_generation or 0 if old else 0))
        return entries

    async def _wire_one(self, ident: ServiceIdentity, kind: str, name: str, containers: tuple[str, ...],
                        digest: str, rollout_generation: int) -> WorkloadStatus:
        ns, resource = ident.namespace, WORKLOADS[kind]
        body = await self.client.get(resource, ns, name)
        if body is None:
            return WorkloadStatus(kind, name, "NotFound", f"{kind} {ns}/{name} does not exist yet", False)
        wiring = Wiring(identity=ident.name, namespace=ns, mount_path=ident.mount_path,
                        credentials_secret=names.credentials_secret(ident.name),
                        trust_secret=names.trust_secret(ident.name), containers=containers,
                        material_hash=digest)
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
        for old in IdentityStatus.from_dict(body.get("status")).workloads or ():
            resource = WORKLOADS.get(old.kind)
            if resource is None:
                continue
            workload = await self.client.get(resource, ns, old.name)
            if workload is not None and _wired_by(workload) == f"{ns}/{ref.name}":
                result = wiring_ops(workload, None)
                if result.ops:
                    await self._patch_workload(resource, ns, old.name, result.ops)
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
            await self._write_status(RELATIONSHIPS, namespace, name, body, checks, now,
                                     functools.partial(outcome.relationship_status, None), ready_message="")
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
        await self._write_status(RELATIONSHIPS, namespace, name, body, checks, now,
                                 functools.partial(outcome.relationship_status, [str(r) for r in rel.between]),
                                 ready_message=outcome.relationship_ready(rel))

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
                            checks: Mapping[str, cond.Check], now: datetime, build: StatusBuilder,
                            *, ready_message: str,
                            extra_conditions: Sequence[cond.Condition] = ()) -> list[cond.Condition]:
        """Write the status ``build`` makes of the summarized conditions, if it changed; post
        Events for a recovery and for what a human must fix."""
        old: Mapping[str, Any] = body.get("status") or {}
        generation = (body.get("metadata") or {}).get("generation")
        conditions, stored = outcome.conditions_of(checks, ready_message=ready_message, old=old.get("conditions"),
                                                   now=now, generation=generation, extra=extra_conditions)
        new = build(stored, generation if isinstance(generation, int) else None).to_dict()
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
            written = await self._store_status(resource, namespace, name, old, with_conditions(old, conditions))
            if written and check.stalled:
                await self.post_event(body, "Warning", check.reason, f"Applied: {check.message}")
        except ApiError as report_error:
            log.info("could not report the failed pass on %s/%s: %s", namespace, name, report_error.status)

    async def post_event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        meta = body.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        stamp = rfc3339(self.clock())
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


def _transient(exc: Exception) -> bool:
    """Conflicts, outages and objects that vanished mid-pass resolve within seconds."""
    return isinstance(exc, Retry) or (isinstance(exc, ApiError) and (exc.retryable or exc.status in (404, 410)))


#: seconds before a pass that failed for a transient reason is tried again
TRANSIENT_RETRY = 2.0


def _retry_delay(exc: Exception) -> float:
    """Seconds until a failed pass is tried again, at most (a watch event brings it back sooner)."""
    if _transient(exc):
        return TRANSIENT_RETRY
    if isinstance(exc, ApiError):  # refused as sent (forbidden, too large, invalid): a change is what helps
        return 300.0
    return 10.0


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
