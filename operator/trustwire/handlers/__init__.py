"""Thin kopf handlers: each watch event tells the controller what changed, nothing more.

Why only ``on.event`` handlers? kopf's change-detecting handlers (create/update/resume)
persist their progress and a "last handled configuration" in annotations on every
object — API writes that a no-op resync must not make. Watch events plus our own
level-triggered controller give the same guarantees with zero bookkeeping writes; our
own finalizer (``trustwire.io/finalizer``) covers deletion.

kopf watches the workloads we wire (Deployments, StatefulSets, DaemonSets): rare events.
Identities, relationships and the Secrets and ConfigMaps the operator writes are listed and
watched by the controller itself while it leads (``Controller._follow``): they are nearly
all of the watch events, and kopf's per-event pipeline cost several times the observer it
calls (docs/benchmarks.md, finding 10). kopf also runs the login, the liveness endpoint and
the ``reconciles`` probe.

A registry is built per operator instance (no module-level decorators), so several
operators can run in one process — tests do exactly that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from trustwire.controller.reconciler import Controller
from trustwire.k8s.client import LIST_PAGE_SIZE, WATCH_SECONDS, ApiConfig

Observer = Callable[[Mapping[str, Any], bool], None]


def _object(event: Mapping[str, Any]) -> Mapping[str, Any]:
    obj = event.get("object")
    return obj if isinstance(obj, Mapping) else {}


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's diff base is for change-detecting handlers, which we do not have (see above):
    it is never stored, yet kopf builds one for every watch event — a deep copy of every
    watched body, Secrets included (~3 % of the operator's CPU at 1,000 identities)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def build_registry(controller: Controller, config: ApiConfig, *,
                   configure: Callable[[kopf.OperatorSettings], None] | None = None) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        token = config.current_token()  # kopf logs in again after a 401: a rotated token is read
        return kopf.ConnectionInfo(
            server=config.server, token=token, scheme="Bearer" if token else None,
            ca_data=config.ca_data, certificate_data=config.cert_data, private_key_data=config.key_data,
            insecure=config.insecure or None, default_namespace=config.default_namespace)

    @kopf.on.startup(registry=registry)
    def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False  # our Events are deliberate; kopf's log-events could echo payloads
        settings.persistence.diffbase_storage = NoDiffBase()
        settings.watching.server_timeout = WATCH_SECONDS
        settings.watching.client_timeout = WATCH_SECONDS + 30
        settings.watching.chunk_size = LIST_PAGE_SIZE  # a paginated first LIST
        settings.networking.error_backoffs = [1, 2, 5, 10]
        settings.queueing.exit_timeout = 0.5  # our handlers are instant; do not hold up shutdown
        # kopf keeps a worker task per object alive this long after its last event (default
        # 5 s): after a start-up replay that is one idle task per watched object at once, and
        # the memory they pinned stayed fragmented (docs/benchmarks.md, finding 3).
        settings.queueing.idle_timeout = 0.5
        if configure is not None:
            configure(settings)

    def watch(group_version: tuple[str, ...], observe: Observer, **filters: Any) -> None:
        @kopf.on.event(*group_version, registry=registry, **filters)
        async def handler(event: Mapping[str, Any], type: str | None, **_: Any) -> None:
            # async on purpose: kopf runs sync handlers in a thread pool, but the
            # observers mutate the controller's caches and wake its asyncio queue,
            # which is only safe on the event loop's own thread.
            observe(_object(event), type == "DELETED")

    def workload_observer(kind: str) -> Observer:
        def observe(body: Mapping[str, Any], deleted: bool) -> None:
            controller.observe_workload(kind, body)
        return observe

    for kind, plural in (("Deployment", "deployments"), ("StatefulSet", "statefulsets"),
                         ("DaemonSet", "daemonsets")):
        watch(("apps", "v1", plural), workload_observer(kind))

    @kopf.on.probe(id="reconciles", registry=registry)
    async def reconciles(**_: Any) -> dict[str, int]:
        return dict(controller.reconciles)

    return registry


def quiet_kopf_logging() -> None:
    """kopf logs every event at INFO; keep our own logs readable."""
    logging.getLogger("kopf").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
