"""The controller's one watch stack: list every kind it serves, then watch each from where
its listing ended, for as long as this replica leads.

One stack for everything — identities, relationships, our Secrets and ConfigMaps, and the
workloads we wire — rather than a general operator framework's: nearly all watch events
are echoes of our own writes (about 12 per identity), and a per-event pipeline built for
stateful handlers (causes, per-object workers, loggers, handler kwargs) costs several
times the observer it calls; its change-detecting handlers write bookkeeping annotations
on every object, which a no-op resync must not make; and it keeps watching on a standby,
which must make no LIST or WATCH at all (docs/design.md).

Of our Secrets and ConfigMaps only the names are kept (:class:`Inventory`); of workloads
nothing: an event names who to wake, and the pass reads the workload itself.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

from trustwire import names
from trustwire.controller import backoff
from trustwire.controller.backoff import Failure
from trustwire.controller.intake import Intake
from trustwire.k8s.client import Client
from trustwire.k8s.errors import ApiError
from trustwire.k8s.resources import (
    CONFIGMAPS,
    DAEMONSETS,
    DEPLOYMENTS,
    ENROLLMENTS,
    IDENTITIES,
    RELATIONSHIPS,
    SECRETS,
    STATEFULSETS,
    Resource,
)
from trustwire.model import IdentityRef

log = logging.getLogger("trustwire")

Observer = Callable[[Mapping[str, Any], bool], None]
#: what the controller lists and watches, in listing order, with the label selector of the
#: listing: of Secrets and ConfigMaps only ours; workloads are the user's, all of them
FOLLOWED: dict[Resource, str | None] = {
    IDENTITIES: None, RELATIONSHIPS: None, ENROLLMENTS: None,
    SECRETS: names.MANAGED_SELECTOR, CONFIGMAPS: names.MANAGED_SELECTOR,
    DEPLOYMENTS: None, STATEFULSETS: None, DAEMONSETS: None,
}
_WORKLOADS = (DEPLOYMENTS, STATEFULSETS, DAEMONSETS)
#: What a refused listing most likely means, by status
_LISTING_HINTS = {403: " - is the chart's ClusterRole bound to the operator's ServiceAccount (RBAC)?",
                  404: " - are the trustwire CRDs installed?"}


def _where(namespace: str | None) -> str:
    return f" in {namespace}" if namespace else ""


class Informer(Intake):
    """Listing and watching for :class:`~trustwire.controller.reconciler.Controller`."""

    client: Client
    #: served namespaces (empty: cluster-wide)
    namespaces: list[str | None]
    #: (plural, namespace) → resourceVersion of prime's listing, where _follow starts
    _versions: dict[tuple[str, str | None], str | None]
    jitter: float
    rng: random.Random

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
        resourceVersion. Every caller resyncs every key next.

        Passes run while the pages arrive, so the inventory and the publications change in
        one step once the listing is complete: an inventory emptied first would tell those
        passes that no Secret exists, and a peer's material fetched from it would be kept."""
        identities: set[IdentityRef] = set()
        relationships: set[tuple[str, str]] = set()
        enrollments: set[tuple[str, str]] = set()
        stored: list[Mapping[str, Any]] = []
        version = None
        async for page in self.client.pages(resource, namespace, label_selector=FOLLOWED[resource]):
            for body in page.items:
                if resource is IDENTITIES:
                    identities.add(self.state.put_identity(body))
                elif resource is RELATIONSHIPS:
                    relationships.add(self.state.put_relationship(body)[0])
                elif resource is ENROLLMENTS:
                    self.state.enrollments.observed(body, deleted=False)
                    meta = body.get("metadata") or {}
                    enrollments.add((str(meta.get("namespace") or "default"), str(meta.get("name") or "")))
                elif resource in (SECRETS, CONFIGMAPS):
                    stored.append(body)
            version = page.resource_version
        if resource in (SECRETS, CONFIGMAPS):
            self.state.inventory.replace(resource.plural, namespace, stored)
        if resource is SECRETS:  # what changed in a watch gap is unknown: fetches in flight too
            self.state.publications.forget_namespace(namespace)
        if resource is IDENTITIES:
            for ref in [r for r in self.state.identities if namespace in (None, r.namespace) and r not in identities]:
                self.observe_identity(self.state.identities[ref], deleted=True)
        elif resource is RELATIONSHIPS:
            for key in [k for k in self.state.relationships if namespace in (None, k[0]) and k not in relationships]:
                self.observe_relationship(self.state.relationships[key].body, deleted=True)
        elif resource is ENROLLMENTS:
            records = self.state.enrollments.records
            for key in [k for k in records if namespace in (None, k[0]) and k not in enrollments]:
                self.observe_enrollment(records[key].body, deleted=True)
        log.debug("listed %s%s at resourceVersion %s", resource.plural, _where(namespace), version)
        return version

    def _observer(self, resource: Resource) -> Observer:
        if resource in _WORKLOADS:
            def observe(body: Mapping[str, Any], deleted: bool) -> None:
                self.observe_workload(resource.kind, body)
            return observe
        return {IDENTITIES: self.observe_identity, RELATIONSHIPS: self.observe_relationship,
                ENROLLMENTS: self.observe_enrollment, SECRETS: self.observe_secret,
                CONFIGMAPS: self.observe_configmap}[resource]

    async def _follow(self, resource: Resource, namespace: str | None) -> None:
        """Watch one kind in one served namespace, from where :meth:`prime` listed it, for as
        long as we lead; each event goes to its ``observe_*`` method.

        A watch the server ends is resumed from the last version seen; an expired version
        (410) is listed again and every key resynced (what changed in the gap is not
        known); any other failure is retried after a back-off.
        """
        observe = self._observer(resource)
        selector = None if resource is CONFIGMAPS else FOLLOWED[resource]  # templates: the user's ConfigMaps
        version = self._versions.get((resource.plural, namespace))
        failures = 0
        while True:
            log.debug("watching %s%s from resourceVersion %s", resource.plural, _where(namespace), version)
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
                    version = await self._relist(resource, namespace)
                    continue
                delay = backoff.delay(Failure.WATCH, failures)
                # a refusal (RBAC, a missing CRD) or an outage that lasts is for a human to see;
                # a dropped connection now and then is not
                level = logging.DEBUG if exc.retryable and failures < 2 else logging.WARNING
                log.log(level, "watch of %s%s failed (%s); watching again in %ss", resource.plural,
                        _where(namespace), exc, delay)
            except Exception as exc:  # a bug in an observer must not end the watch for good
                delay = backoff.delay(Failure.WATCH, failures)
                log.warning("watch of %s: %s in an observer; watching again in %ss", resource.plural,
                            type(exc).__name__, delay)
            failures += 1
            await asyncio.sleep(backoff.jittered(delay, self.jitter, self.rng))

    async def _relist(self, resource: Resource, namespace: str | None) -> str | None:
        """After a 410: list again and resync every key; where the next watch starts."""
        log.info("watch of %s%s expired; listing again", resource.plural, _where(namespace))
        try:
            version = await self._list(resource, namespace)
        except ApiError:
            version = None  # a watch from no version begins with every object, as ADDED
        self.resync_all()
        return version

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
                delay = backoff.delay(Failure.WATCH, failures)
                log.warning("cannot list what trustwire serves (%s)%s; listing again in %ss",
                            exc, _LISTING_HINTS.get(exc.status, ""), delay)
            failures += 1
            await asyncio.sleep(backoff.jittered(delay, self.jitter, self.rng))

    def _watches(self) -> list[asyncio.Task[None]]:
        """One watch task per kind and served namespace."""
        return [asyncio.create_task(self._follow(resource, ns), name=f"trustwire-watch-{resource.plural}")
                for ns in self.namespaces or [None] for resource in FOLLOWED]
