"""The controller's workers: while this replica leads, list and watch (:class:`Informer`),
take keys off the queue, reconcile each, and retry a failed pass by :mod:`backoff`'s policy.

With an election nothing runs until the Lease is held — no LIST, no WATCH, no pass — and
everything stops the moment it is lost, mid-pass if need be: every pass is idempotent, so
the next leader simply redoes it.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from trustwire.controller import backoff
from trustwire.controller.backoff import Failure
from trustwire.controller.informer import Informer
from trustwire.controller.leader import LeaderElection
from trustwire.controller.state import Key
from trustwire.k8s.errors import ApiError
from trustwire.model import IdentityRef

log = logging.getLogger("trustwire")

#: Upper bounds (seconds) of the reconcile-duration histogram: a pass with nothing to write
#: takes well under a millisecond, one that issues material or waits on the API takes seconds.
RECONCILE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Workers(Informer):
    """The run loop of :class:`~trustwire.controller.reconciler.Controller`."""

    workers: int
    resync_interval: float
    reconciles: dict[str, int]
    #: (kind, result) → count and total seconds, for metrics; result is "ok" or "error"
    reconcile_results: dict[tuple[str, str], int]
    reconcile_seconds: dict[tuple[str, str], float]
    #: (kind, result) → passes per bucket of :data:`RECONCILE_BUCKETS` (not cumulative; the last
    #: entry counts passes longer than every bound)
    reconcile_buckets: dict[tuple[str, str], list[int]]
    reconcile_bounds: tuple[float, ...] = RECONCILE_BUCKETS
    failures: int
    last_error: str | None
    #: passes of a key that failed for good in a row (their retries back off)
    refusals: dict[Key, int]
    trim_heap: Callable[[], object]

    if TYPE_CHECKING:
        async def reconcile_identity(self, ref: IdentityRef) -> None: ...

        async def reconcile_relationship(self, key: tuple[str, str]) -> None: ...

        async def reconcile_enrollment(self, key: tuple[str, str]) -> None: ...

        async def _report_failure(self, key: Key, exc: Exception) -> None: ...

    async def run(self, election: LeaderElection | None = None) -> None:
        """Reconcile forever; with an election, only while holding the Lease.

        On acquiring the Lease the caches are listed afresh and watched from there (a
        follower watches nothing), and everything is resynced; on losing it the workers and
        watches are cancelled at once.
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

    async def _work(self) -> None:
        await self._prime_until_listed()
        tasks = [asyncio.create_task(self._worker(i), name=f"trustwire-worker-{i}") for i in range(self.workers)]
        tasks.append(asyncio.create_task(self._resync_loop(), name="trustwire-resync"))
        tasks += self._watches()
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(backoff.jittered(self.resync_interval, self.jitter, self.rng))
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
                self._count_pass((key[0], result), asyncio.get_running_loop().time() - started)
                self.queue.done(key)
                if self.queue.idle:
                    self.trim_heap()

    def _count_pass(self, stat: tuple[str, str], seconds: float) -> None:
        """Count one finished pass for the metrics: its result and how long it took."""
        self.reconcile_results[stat] = self.reconcile_results.get(stat, 0) + 1
        self.reconcile_seconds[stat] = self.reconcile_seconds.get(stat, 0.0) + seconds
        buckets = self.reconcile_buckets.setdefault(stat, [0] * (len(self.reconcile_bounds) + 1))
        buckets[bisect.bisect_left(self.reconcile_bounds, seconds)] += 1

    async def _failed(self, key: Key, exc: Exception) -> None:
        """A pass failed: count it, log it, try again later, and say so in status unless transient."""
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        failure = backoff.classify(exc)
        count = 0
        if failure is not Failure.TRANSIENT:
            count = self.refusals.get(key, 0)
            self.refusals[key] = count + 1
        delay = backoff.delay(failure, count)
        log.warning("reconcile of %s %s/%s failed (%s); retrying in %.0fs",
                    key[0], key[1], key[2], self.last_error, delay)
        self.queue.add_after(key, backoff.jittered(delay, self.jitter, self.rng))
        if failure is not Failure.TRANSIENT:
            await self._report_failure(key, exc)

    async def reconcile(self, key: Key) -> None:
        kind, namespace, name = key
        self.reconciles[kind] = self.reconciles.get(kind, 0) + 1
        if kind == "identity":
            await self.reconcile_identity(IdentityRef(namespace, name))
        elif kind == "enrollment":
            await self.reconcile_enrollment((namespace, name))
        else:
            await self.reconcile_relationship((namespace, name))

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """For the demo and tests: until no key is queued or being processed."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.queue.idle:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the controller did not settle")
            await asyncio.sleep(0.05)
