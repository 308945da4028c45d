"""What one API request costs the operator: CPU per request of trustwire's own client.

Why: at 1,000 identities the operator makes ~26,000 requests until everything is Ready
(``scale.py``, ``api_requests``). Whether fewer requests or cheaper crypto is the lever
depends on what a request costs, which a whole-operator profile smears over the event
loop, the HTTP client and the kernel. Here the client (:class:`trustwire.k8s.client.Client`, the
one the operator uses) sends requests one after another to the API emulator in a process
of its own (``emulator_server.py``, as ``scale.py`` runs it), and this process's CPU time
(user + system, all threads) is divided by the number of requests.

Kinds measured, each the shape of a request the operator makes on every pass:

* ``get-missing`` — a GET answered 404 (an object not created yet);
* ``get-secret`` — a GET of a Secret with ~4 KB of data (a credentials Secret's size);
* ``create-event`` — a POST of an Event;
* ``patch-status`` — a JSON merge PATCH of a status subresource-sized body.

Reproduce (from the repository root, with the project installed)::

    python benchmarks/api_requests.py                    # table: median of 5 runs of 2,000 each
    python benchmarks/api_requests.py --runs 7 --json    # raw runs and medians
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from trustwire.k8s.client import ApiConfig, Client
from trustwire.k8s.resources import CONFIGMAPS, EVENTS, SECRETS

try:  # from the repository root (python -m benchmarks.api_requests, tests)
    from benchmarks.crypto import machine
    from benchmarks.scale import CountingServer
except ModuleNotFoundError:  # as a script: benchmarks/ itself is sys.path[0]
    from crypto import machine  # type: ignore[no-redef,import-not-found]
    from scale import CountingServer  # type: ignore[no-redef,import-not-found]

NAMESPACE = "bench"
KINDS = ("get-missing", "get-secret", "create-event", "patch-status")
Request = Callable[[int], Awaitable[Any]]


def requests_of(client: Client) -> dict[str, Request]:
    """One request of each kind; ``i`` makes names unique where the server needs them to be."""
    event = {"apiVersion": "v1", "kind": "Event", "type": "Normal", "reason": "Issued", "message": "m" * 120,
             "involvedObject": {"kind": "ServiceIdentity", "name": "id-0", "namespace": NAMESPACE}}
    status = {"data": {"status": json.dumps({"conditions": [{"type": "Ready", "status": "True"}] * 5})}}
    return {
        "get-missing": lambda i: client.get(SECRETS, NAMESPACE, "missing"),
        "get-secret": lambda i: client.get(SECRETS, NAMESPACE, "credentials"),
        "create-event": lambda i: client.create(EVENTS, NAMESPACE, {**event, "metadata": {"name": f"e.{i}"}}),
        "patch-status": lambda i: client.merge_patch(CONFIGMAPS, NAMESPACE, "status", status),
    }


async def measure(count: int, runs: int) -> dict[str, list[float]]:
    """Milliseconds of this process's CPU per request, per kind, one value per run."""
    results: dict[str, list[float]] = {kind: [] for kind in KINDS}
    with tempfile.TemporaryDirectory() as tmp:
        emulator = await CountingServer.start(Path(tmp) / "emulator.log", [])
        try:
            async with Client(ApiConfig(server=emulator.url), user_agent="trustwire-bench") as client:
                await client.create(SECRETS, NAMESPACE, {
                    "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "credentials"},
                    "data": {"keystore.p12": base64.b64encode(bytes(3000)).decode()}})
                await client.create(CONFIGMAPS, NAMESPACE, {"apiVersion": "v1", "kind": "ConfigMap",
                                                            "metadata": {"name": "status"}})
                requests = requests_of(client)
                serial = 0
                for _ in range(runs):
                    for kind in KINDS:
                        send = requests[kind]
                        for _ in range(min(count, 100)):  # warm the connection and the code paths
                            serial += 1
                            await send(serial)
                        started = time.process_time()
                        for _ in range(count):
                            serial += 1
                            await send(serial)
                        results[kind].append((time.process_time() - started) / count * 1000)
        finally:
            await emulator.stop()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=2000, help="requests per kind and run (default 2,000)")
    parser.add_argument("--runs", type=int, default=5, help="runs (default 5); medians are reported")
    parser.add_argument("--json", action="store_true", help="print raw runs and medians as JSON")
    args = parser.parse_args(argv)
    if args.count < 1 or args.runs < 1:
        parser.error("--count and --runs must be >= 1")
    results = asyncio.run(measure(args.count, args.runs))
    medians = {kind: round(statistics.median(values), 4) for kind, values in results.items()}
    if args.json:
        json.dump({"machine": machine(), "count": args.count, "runs": args.runs,
                   "cpu_ms_per_request": results, "median_cpu_ms_per_request": medians}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"CPU per request of trustwire's client, median of {args.runs} runs of {args.count:,}:")
    for kind, value in medians.items():
        print(f"  {kind:<14} {value:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
