"""A coalescing, delayed work queue of object keys.

Watch events arrive in bursts (a start-up replay, a peer that changes and touches N
identities); reconciling once per burst is enough because every pass recomputes the full
desired state (level-triggered). So a key is queued at most once, a key being processed
is never processed concurrently, and a key re-added while processing runs once more
afterwards. Delayed adds implement "wake me at my next deadline" without fixed polling.

The clock is injected (``loop.time`` by default) for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._ready: list[K] = []
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._delayed: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._counter = itertools.count()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._queued) + len(self._due)

    @property
    def idle(self) -> bool:
        return not self._queued and not self._active

    def due(self, key: K) -> bool:
        """Whether ``key`` is queued or being processed (not merely delayed)."""
        return key in self._queued or key in self._active

    def add(self, key: K) -> None:
        if key in self._active:
            self._dirty.add(key)
            return
        if key not in self._queued:
            self._queued.add(key)
            self._ready.append(key)
            self._changed.set()

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` in ``delay`` seconds (keeps the earliest of several requests)."""
        if delay <= 0:
            self.add(key)
            return
        due = asyncio.get_running_loop().time() + delay
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        heapq.heappush(self._delayed, (due, next(self._counter), key))
        if len(self._delayed) > 2 * len(self._due) + 64:
            # Superseded requests stay in the heap until popped; every pass re-arms a wake-up
            # (usually a bit earlier), so drop them before they pile up.
            self._delayed = [entry for entry in self._delayed if self._due.get(entry[2]) == entry[0]]
            heapq.heapify(self._delayed)
        self._changed.set()

    def _promote(self) -> float | None:
        now = asyncio.get_running_loop().time()
        while self._delayed and self._delayed[0][0] <= now:
            due, _, key = heapq.heappop(self._delayed)
            if self._due.get(key) == due:
                del self._due[key]
                self.add(key)
        return self._delayed[0][0] - now if self._delayed else None

    async def get(self) -> K:
        while True:
            wait = self._promote()
            if self._ready:
                key = self._ready.pop(0)
                self._queued.discard(key)
                self._active.add(key)
                return key
            self._changed.clear()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
            # that arrives as the event is set, and a cancelled worker would then wait here
            # forever (a hung shutdown; tests/controller/test_queue.py shows it).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._changed.wait()

    def done(self, key: K) -> None:
        self._active.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)
