"""Leader election with a ``coordination.k8s.io/v1`` Lease: exactly one replica writes.

Why a Lease of our own rather than a framework's peering: the controller acts on timers
(rotation deadlines, resyncs) as well as watch events, and it lists and watches what it
reconciles itself (:mod:`trustwire.controller.informer`). Here only the Lease holder
lists, watches and reconciles, and its workers and watches stop the moment the Lease is
lost; a standby only reads the Lease, and lists what it needs when it takes over.

Every change to the Lease is an RFC 6902 JSON patch whose ``test`` ops pin the holder and
renew time we read, so two replicas racing for an expired Lease cannot both win — on a
real API server and in the emulator alike (neither needs ``resourceVersion`` for this).

Expiry is judged like client-go does, without comparing clocks across machines: a
Lease is expired when *this* replica has seen the same holder and renew time for a full
lease duration on its own monotonic clock. (``renewTime`` is written for people and
tools; a replica whose wall clock is an hour off must neither steal a live Lease nor
hold on to a dead one.) So a new replica waits one lease duration before taking over
an abandoned Lease, and a graceful stop hands over at once by clearing the holder.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from trustwire.k8s.client import Client
from trustwire.k8s.errors import ApiError
from trustwire.k8s.resources import LEASES
from trustwire.times import rfc3339_micro

log = logging.getLogger("trustwire.leader")


def default_identity() -> str:
    return f"{socket.gethostname()}-{secrets.token_hex(3)}"


class LeaderElection:
    def __init__(self, client: Client, *, namespace: str, name: str = "trustwire", identity: str | None = None,
                 lease_seconds: float = 15.0, renew_seconds: float = 5.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.namespace, self.name = namespace, name
        self.identity = identity or default_identity()
        self.lease_seconds, self.renew_seconds = lease_seconds, renew_seconds
        self.clock = clock
        self.monotonic = monotonic
        #: the (holder, renewTime) last seen on the Lease, and when (monotonic) it was first seen
        self._seen: tuple[Any, Any] | None = None
        self._seen_at = 0.0
        self.leading = asyncio.Event()
        self.lost = asyncio.Event()
        self.transitions = 0

    async def run(self) -> None:
        """Try to acquire, then renew, forever; flips :attr:`leading` as it goes.

        Each attempt is bounded by a renew deadline (⅔ of the lease duration): a holder
        whose API calls hang steps down before any standby may consider the Lease expired.
        """
        deadline = self.lease_seconds * 2 / 3
        try:
            while True:
                try:
                    async with asyncio.timeout(deadline):
                        held = await self._attempt()
                except (ApiError, OSError, TimeoutError) as exc:
                    log.warning("lease %s/%s: %s", self.namespace, self.name, exc or "renewal timed out")
                    held = False
                self._set(held)
                await asyncio.sleep(self.renew_seconds if held else self.renew_seconds / 2)
        finally:
            self._set(False)

    async def release(self) -> None:
        """Give the Lease up (no holder) if we still hold it; best effort.

        Called by the runtime on a graceful stop, after the workers stopped, so a rolling
        update hands over at once instead of after a full lease duration."""
        try:
            async with asyncio.timeout(2):
                lease = await self.client.get(LEASES, self.namespace, self.name)
            spec = (lease or {}).get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            ops = [{"op": "test", "path": "/spec/holderIdentity", "value": self.identity},
                   {"op": "add", "path": "/spec/holderIdentity", "value": ""},
                   {"op": "add", "path": "/spec/renewTime", "value": rfc3339_micro(self.clock())}]
            async with asyncio.timeout(2):
                await self.client.json_patch(LEASES, self.namespace, self.name, ops)
            log.info("%s released lease %s/%s", self.identity, self.namespace, self.name)
        except (ApiError, OSError, TimeoutError, RuntimeError) as exc:
            log.warning("%s could not release lease %s/%s: %r", self.identity, self.namespace, self.name, exc)

    def _set(self, held: bool) -> None:
        if held and not self.leading.is_set():
            log.info("%s acquired lease %s/%s", self.identity, self.namespace, self.name)
            self.lost.clear()
            self.leading.set()
            self.transitions += 1
        elif not held and self.leading.is_set():
            log.warning("%s lost lease %s/%s", self.identity, self.namespace, self.name)
            self.leading.clear()
            self.lost.set()

    async def _attempt(self) -> bool:
        now = self.clock()
        lease = await self.client.get(LEASES, self.namespace, self.name)
        if lease is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace,
                                 "labels": {"app.kubernetes.io/managed-by": "trustwire"}},
                    "spec": self._spec(now, transitions=0, acquire=True)}
            try:
                await self.client.create(LEASES, self.namespace, body)
            except ApiError as exc:
                if exc.status == 409:
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        if (holder, spec.get("renewTime")) != self._seen:
            self._seen, self._seen_at = (holder, spec.get("renewTime")), self.monotonic()
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        expired = not holder or self.monotonic() >= self._seen_at + duration
        if holder != self.identity and not expired:
            return False
        acquire = holder != self.identity
        ops: list[dict[str, Any]] = [
            {"op": "test", "path": "/spec/holderIdentity", "value": holder},
            {"op": "test", "path": "/spec/renewTime", "value": spec.get("renewTime")},
        ]
        for key, value in self._spec(now, int(spec.get("leaseTransitions") or 0) + (1 if acquire else 0),
                                     acquire).items():
            ops.append({"op": "add", "path": f"/spec/{key}", "value": value})
        try:
            return await self.client.json_patch(LEASES, self.namespace, self.name, ops) is not None
        except ApiError as exc:
            if exc.status in (409, 422) or exc.status >= 500:
                return False  # somebody else changed the Lease first
            raise

    def _spec(self, now: datetime, transitions: int, acquire: bool) -> dict[str, Any]:
        spec: dict[str, Any] = {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_seconds),
                                "renewTime": rfc3339_micro(now), "leaseTransitions": transitions}
        if acquire:
            spec["acquireTime"] = rfc3339_micro(now)
        return spec
