"""Run one operator instance: kopf (watches, login, liveness, peering) + the controller.

Shared by ``trustwire run`` (a real cluster), ``trustwire demo`` (the embedded emulator)
and the integration tests, so all three run exactly the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from datetime import timedelta

import kopf

from trustwire.controller.leader import LeaderElection
from trustwire.controller.reconciler import Clock, Controller, utcnow
from trustwire.handlers import build_registry
from trustwire.k8s.client import ApiConfig, Client
from trustwire.plan.rotation import DEFAULT_PROPAGATION_DELAY


@dataclass
class OperatorOptions:
    clusterwide: bool = True
    namespaces: Collection[str] = ()
    liveness_endpoint: str | None = None
    #: "namespace/name" of the Lease for leader election; None = single replica
    lease: str | None = None
    identity: str | None = None
    lease_seconds: float = 15.0
    renew_seconds: float = 5.0
    workers: int = 4
    resync_interval: float = 600.0
    propagation_delay: timedelta = DEFAULT_PROPAGATION_DELAY
    clock: Clock = utcnow
    rng: random.Random = field(default_factory=random.Random)


@contextlib.asynccontextmanager
async def running_operator(config: ApiConfig, options: OperatorOptions | None = None,
                           *, configure: Callable[[kopf.OperatorSettings], None] | None = None,
                           ) -> AsyncIterator[Controller]:
    """Start kopf and the controller workers; stop both on exit."""
    options = options or OperatorOptions()
    client = Client(config, user_agent=f"trustwire-operator/{options.identity}" if options.identity
                    else "trustwire-operator")
    controller = Controller(client, clock=options.clock, rng=options.rng, workers=options.workers,
                            resync_interval=options.resync_interval,
                            propagation_delay=options.propagation_delay,
                            namespaces=list(options.namespaces))
    registry = build_registry(controller, config, configure=configure)
    stop = asyncio.Event()
    ready = asyncio.Event()
    kopf_task = asyncio.create_task(kopf.operator(
        registry=registry, clusterwide=options.clusterwide and not options.namespaces,
        namespaces=list(options.namespaces), standalone=True,  # HA is our Lease, not kopf peering
        liveness_endpoint=options.liveness_endpoint, stop_flag=stop, ready_flag=ready,
    ), name="kopf")
    election: LeaderElection | None = None
    if options.lease:
        namespace, _, name = options.lease.rpartition("/")
        election = LeaderElection(client, namespace=namespace or "default", name=name, identity=options.identity,
                                  lease_seconds=options.lease_seconds, renew_seconds=options.renew_seconds)
    controller.election = election
    worker_task = asyncio.create_task(controller.run(election), name="trustwire-controller")
    try:
        done, _ = await asyncio.wait({kopf_task, asyncio.create_task(ready.wait())},
                                     return_when=asyncio.FIRST_COMPLETED)
        if kopf_task in done:
            kopf_task.result()  # re-raise why kopf could not start
        yield controller
    finally:
        # Our workers first (they may be mid-write), then hand the Lease over while the API
        # connection is certainly healthy, then kopf.
        worker_task.cancel()
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await worker_task  # re-raises why the controller died, after the rest stops
        finally:
            await _stop(election, stop, kopf_task, client)


async def _stop(election: LeaderElection | None, stop: asyncio.Event, kopf_task: asyncio.Task[None],
                client: Client) -> None:
    if election is not None:
        await election.release()
    stop.set()
    # kopf drains gracefully on the stop flag; watch streams on an idle server can hold
    # that for seconds, and nothing of ours runs inside kopf, so do not wait long.
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(asyncio.shield(kopf_task), timeout=0.2)
    kopf_task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(kopf_task, timeout=5.0)
    await client.close()
