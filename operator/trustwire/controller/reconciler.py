"""The controller: one object that watches, queues and reconciles, assembled from its parts.

Watch events say which objects changed (:mod:`~trustwire.controller.informer` lists and
watches everything the operator reads, workloads included, while it leads). The intake
(:mod:`~trustwire.controller.intake`) works out who is *affected* — a peer's new CA touches
every identity trusting it; an echo of our own write wakes nobody — and queues those keys;
a few workers (:mod:`~trustwire.controller.workers`) run one pass per key:

1. gather (:mod:`~trustwire.controller.identity`) — the one place that reads: the identity,
   its four objects, referenced Secrets/ConfigMaps, and each accepted peer's publication;
2. :func:`trustwire.plan.identity.plan_identity` — pure decisions;
3. apply (:mod:`~trustwire.controller.writes`) — create what is missing, patch what
   differs, never touch what is not ours;
4. status (:mod:`~trustwire.controller.status`) written only when it changed, Events only
   for issuance, transitions and what a human must fix.

Writes follow the plan's object order (CA, credentials, publication, trust), so a crash
between two writes leaves a state the next pass adopts rather than re-issues. Nothing here
holds key material longer than a pass, and nothing logs it (docs/design.md §6).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from trustwire.controller.enrollment import EnrollmentReconciler
from trustwire.controller.heap import HeapTrimmer
from trustwire.controller.identity import IdentityReconciler
from trustwire.controller.leader import LeaderElection
from trustwire.controller.queue import WorkQueue
from trustwire.controller.relationship import RelationshipReconciler
from trustwire.controller.state import Key, State
from trustwire.controller.workers import Workers
from trustwire.k8s.client import Client
from trustwire.plan.packing import SECRET_DATA_LIMIT
from trustwire.plan.rotation import DEFAULT_PROPAGATION_DELAY
from trustwire.times import Clock, utcnow


class Controller(Workers, IdentityReconciler, RelationshipReconciler, EnrollmentReconciler):
    def __init__(self, client: Client, *, clock: Clock = utcnow, rng: random.Random | None = None,
                 workers: int = 4, resync_interval: float = 600.0, jitter: float = 0.1,
                 propagation_delay: timedelta = DEFAULT_PROPAGATION_DELAY,
                 namespaces: Sequence[str] = (), secret_budget: int = SECRET_DATA_LIMIT,
                 public_url: str | None = None) -> None:
        self.client = client
        #: served namespaces (empty: cluster-wide)
        self.namespaces: list[str | None] = list(namespaces)
        #: (plural, namespace) → resourceVersion of prime's listing, where the watch starts
        self._versions: dict[tuple[str, str | None], str | None] = {}
        self.propagation_delay = propagation_delay
        #: bytes one Secret may hold (tests lower it to split a hub's trust cheaply)
        self.secret_budget = secret_budget
        self.public_url = public_url
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
        self.reconcile_buckets: dict[tuple[str, str], list[int]] = {}
        #: last computed status per (kind, namespace, name), written or not, for metrics
        self.statuses: dict[Key, Mapping[str, Any]] = {}
        self.failures = 0
        self.last_error: str | None = None
        #: passes of a key that failed for good in a row (their retries back off)
        self.refusals: dict[Key, int] = {}
        self.election: LeaderElection | None = None
        #: called when the queue goes idle: returns the heap a burst of passes left behind
        self.trim_heap: Callable[[], object] = HeapTrimmer()
