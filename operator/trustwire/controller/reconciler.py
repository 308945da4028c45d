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
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from trustwire import names
from trustwire.controller.heap import HeapTrimmer
from trustwire.controller.identity import IdentityReconciler
from trustwire.controller.leader import LeaderElection
from trustwire.controller.queue import WorkQueue
from trustwire.controller.relationship import RelationshipReconciler
from trustwire.controller.state import Key, State, identity_change, ref_of, relationship_change
from trustwire.controller.writes import Retry
from trustwire.k8s.client import (
    CONFIGMAPS,
    IDENTITIES,
    RELATIONSHIPS,
    SECRETS,
    ApiError,
    Client,
    Resource,
)
from trustwire.model import IdentityRef
from trustwire.plan.rotation import DEFAULT_PROPAGATION_DELAY

log = logging.getLogger("trustwire")

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


class Controller(IdentityReconciler, RelationshipReconciler):
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
