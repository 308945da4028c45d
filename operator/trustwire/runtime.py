"""Run one operator instance: the controller (leader election, watches, workers) and its
liveness endpoint.

Shared by ``trustwire run`` (a real cluster), ``trustwire demo`` (the embedded emulator)
and the integration tests, so all three run exactly the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from trustwire.controller.leader import LeaderElection
from trustwire.controller.reconciler import Controller
from trustwire.k8s.client import ApiConfig, Client
from trustwire.plan.packing import SECRET_DATA_LIMIT
from trustwire.plan.rotation import DEFAULT_PROPAGATION_DELAY
from trustwire.times import Clock, utcnow


@dataclass
class OperatorOptions:
    namespaces: Collection[str] = ()
    #: ``http://HOST:PORT/PATH`` answering 200 while the controller runs; None = no endpoint
    liveness_endpoint: str | None = None
    #: "namespace/name" of the Lease for leader election; None = single replica
    lease: str | None = None
    identity: str | None = None
    lease_seconds: float = 15.0
    renew_seconds: float = 5.0
    workers: int = 4
    resync_interval: float = 600.0
    propagation_delay: timedelta = DEFAULT_PROPAGATION_DELAY
    #: bytes one Secret may hold; only tests lower it, to split a hub's trust cheaply
    secret_budget: int = SECRET_DATA_LIMIT
    #: where ``trustwire serve`` is reached from outside, written into each token Secret as ``url``
    public_url: str | None = None
    clock: Clock = utcnow
    rng: random.Random = field(default_factory=random.Random)


@contextlib.asynccontextmanager
async def running_operator(config: ApiConfig, options: OperatorOptions | None = None) -> AsyncIterator[Controller]:
    """Start the controller (and the liveness endpoint); stop both on exit."""
    options = options or OperatorOptions()
    client = Client(config, user_agent=f"trustwire-operator/{options.identity}" if options.identity
                    else "trustwire-operator")
    controller = Controller(client, clock=options.clock, rng=options.rng, workers=options.workers,
                            resync_interval=options.resync_interval,
                            propagation_delay=options.propagation_delay,
                            namespaces=list(options.namespaces), secret_budget=options.secret_budget,
                            public_url=options.public_url)
    election: LeaderElection | None = None
    if options.lease:
        namespace, _, name = options.lease.rpartition("/")
        election = LeaderElection(client, namespace=namespace or "default", name=name, identity=options.identity,
                                  lease_seconds=options.lease_seconds, renew_seconds=options.renew_seconds)
    controller.election = election
    worker_task = asyncio.create_task(controller.run(election), name="trustwire-controller")
    liveness: asyncio.Server | None = None
    try:
        if options.liveness_endpoint:
            liveness = await serve_liveness(options.liveness_endpoint, worker_task)
        yield controller
    finally:
        # Our workers first (they may be mid-write), then hand the Lease over while the API
        # connection is certainly healthy.
        worker_task.cancel()
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await worker_task  # re-raises why the controller died, after the rest stops
        finally:
            if liveness is not None:
                liveness.close()
                await liveness.wait_closed()
            if election is not None:
                await election.release()
            await client.close()


async def serve_liveness(endpoint: str, controller: asyncio.Task[None]) -> asyncio.Server:
    """Serve ``endpoint`` (``http://0.0.0.0:8080/healthz``): 200 while ``controller`` runs —
    a standby waiting for the Lease included — and 503 once it has ended, so the kubelet
    restarts a replica whose controller died; 404 for any other path.

    A few lines of HTTP/1.0 on asyncio's server rather than a web framework: the kubelet
    sends one GET per period and reads only the status.
    """
    url = urlsplit(endpoint)
    path = url.path or "/"

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5.0):
                request = (await reader.readline()).split()
                while (await reader.readline()).strip():
                    pass  # headers: nothing in them changes the answer
            if len(request) < 2 or request[1].split(b"?")[0] != path.encode():
                status = b"404 Not Found"
            elif controller.done():
                status = b"503 Service Unavailable"
            else:
                status = b"200 OK"
            writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Type: text/plain\r\nContent-Length: "
                         + str(len(status) + 1).encode() + b"\r\nConnection: close\r\n\r\n" + status + b"\n")
            await writer.drain()
        except (TimeoutError, OSError, ValueError):
            pass  # a probe that hung up or sent garbage gets nothing
        finally:
            writer.close()

    return await asyncio.start_server(answer, url.hostname or "0.0.0.0", url.port or 80)  # noqa: S104 - a pod's probe
