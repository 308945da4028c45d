"""``trustwire demo --rotate``: the quickstart with short lifetimes, rotating everything
while a probe does mTLS and JWT both ways all the time.

The emulator runs no controllers, so :mod:`trustwire.demo.drill` plays the Deployment
controller and kubelet; each identity gets one CA rotation through the manual rotation
annotation, staggered so the two never overlap. Exit status 0 only if every rotation
completes and no probe fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from trustwire import names
from trustwire.demo.drill import (
    PodFiles,
    Probe,
    ProbeResult,
    RolloutSimulator,
    Side,
    SimulatedWorkload,
    TLSEndpoint,
)
from trustwire.demo.emulator import running_emulator
from trustwire.demo.run import (
    apply,
    custom_resources,
    default_examples,
    export_objects,
    jwt_audience,
    load_manifests,
    wait_ready,
)
from trustwire.k8s.client import ApiConfig, Client
from trustwire.k8s.resources import IDENTITIES
from trustwire.plan.status import IdentityStatus
from trustwire.runtime import OperatorOptions, running_operator

SHORT_LIFETIMES = {"ca": {"duration": "30m"}, "certificate": {"duration": "45s", "renewBefore": "30s"},
                   "jwt": {"rotationPeriod": "20s"}}

#: Seconds after the start at which the first identity's CA rotation is requested, and the
#: stagger between identities.
CA_ROTATION_AT, CA_ROTATION_STAGGER = 3, 12


def _short(docs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for doc in docs:
        doc = json.loads(json.dumps(doc))
        if doc["kind"] == "ServiceIdentity":
            doc["spec"] = {**doc.get("spec", {}), **SHORT_LIFETIMES}
        out.append(doc)
    return out


def _read_status(status: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """What the rotation demo follows of an identity: the CA fingerprint, JWT kid and leaf
    serial, and the one line that shows the rotation phases."""
    s = IdentityStatus.from_dict(status)
    ca = s.ca.fingerprint if s.ca else ""
    kid = s.jwt.kid if s.jwt else ""
    serial = s.certificate.serial if s.certificate else ""
    phases = (s.rotation.ca.phase, s.rotation.jwt.phase) if s.rotation else ("?", "?")
    line = f"CA {phases[0]}, JWT {phases[1]}, leaf {(serial or '?')[:8]}, kid {(kid or '?')[:8]}"
    return ca, kid, serial, line


@dataclasses.dataclass
class Tracker:
    """What the demo has seen of each identity: every CA, kid and leaf, and its last phase line."""

    idents: list[tuple[str, str]]
    console: Console
    start: float = dataclasses.field(default_factory=time.monotonic)
    seen: dict[str, str] = dataclasses.field(default_factory=dict)
    cas: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    kids: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    leaves: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    requested: set[str] = dataclasses.field(default_factory=set)

    def __post_init__(self) -> None:
        for _, n in self.idents:
            self.cas[n], self.kids[n], self.leaves[n] = set(), set(), set()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def say(self, ns: str, n: str, text: str) -> None:
        self.console.print(f"[dim]{self.elapsed():6.1f}s[/] {ns}/{n}: {text}")

    def record(self, ns: str, n: str, status: Mapping[str, Any]) -> None:
        ca, kid, serial, line = _read_status(status)
        self.cas[n].add(ca)
        self.kids[n].add(kid)
        self.leaves[n].add(serial)
        if self.seen.get(n) != line:
            self.seen[n] = line
            self.say(ns, n, line)

    def complete(self) -> bool:
        """Every identity has rotated its CA and JWT key at least once and renewed its leaf three times."""
        return all(len(self.cas[n]) >= 2 and len(self.kids[n]) >= 2 and len(self.leaves[n]) >= 4
                   for _, n in self.idents)

    def settled(self) -> bool:
        return self.complete() and all(s.startswith("CA Idle, JWT Idle") for s in self.seen.values())


async def _watch_rotations(client: Client, tracker: Tracker, time_limit: float) -> None:
    """Poll every identity until all rotations complete and settle, requesting one CA rotation each."""
    while tracker.elapsed() < time_limit:
        for i, (ns, n) in enumerate(tracker.idents):
            tracker.record(ns, n, (await client.get(IDENTITIES, ns, n) or {}).get("status") or {})
            if n not in tracker.requested and tracker.elapsed() > CA_ROTATION_AT + CA_ROTATION_STAGGER * i:
                tracker.requested.add(n)
                await client.merge_patch(IDENTITIES, ns, n, {"metadata": {"annotations": {
                    names.ROTATE_ANNOTATION: f"ca:{time.time():.0f}"}}})
                tracker.say(ns, n, "[bold]CA rotation requested[/]")
        if tracker.settled():
            return
        await asyncio.sleep(0.25)


@contextlib.asynccontextmanager
async def _simulated_pods(client: Client, docs: Sequence[Mapping[str, Any]], idents: list[tuple[str, str]],
                          root: Path) -> AsyncIterator[list[SimulatedWorkload]]:
    """Each identity's Deployment, rolled out by the simulator, once every pod has its first files."""
    workload_of = {(d["metadata"]["namespace"], d["metadata"]["name"]):
                   next(w["name"] for w in d["spec"]["workloads"] if w["kind"] == "Deployment")
                   for d in docs if d["kind"] == "ServiceIdentity"}
    workloads = [SimulatedWorkload(ns, workload_of[(ns, n)], n, PodFiles(root / ns / n),
                                   rollout_seconds=0.3 + 0.5 * i) for i, (ns, n) in enumerate(idents)]
    simulator = asyncio.create_task(RolloutSimulator(client, workloads).run())
    try:
        while any(w.rollouts == 0 for w in workloads):  # noqa: ASYNC110 - polling the simulator
            await asyncio.sleep(0.05)
        yield workloads
    finally:
        simulator.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await simulator


async def _rotate_while_probing(client: Client, docs: Sequence[Mapping[str, Any]], idents: list[tuple[str, str]],
                                console: Console, root: Path, time_limit: float) -> tuple[Tracker, ProbeResult]:
    async with _simulated_pods(client, docs, idents, root) as workloads:
        sides = [Side(n, f"{n}.{ns}.svc", w.pod, TLSEndpoint(w.pod))
                 for (ns, n), w in zip(idents, workloads, strict=True)]
        probe = Probe(sides[0], sides[1], audience=jwt_audience(docs))
        probe.start()
        tracker = Tracker(idents, console)
        try:
            await _watch_rotations(client, tracker, time_limit)
        finally:
            result = probe.stop()
            for side in sides:
                side.endpoint.close()
    return tracker, result


def _report(console: Console, tracker: Tracker, result: ProbeResult) -> int:
    for _, n in tracker.idents:
        console.print(f"{n}: {len(tracker.cas[n]) - 1} CA rotation(s), {len(tracker.leaves[n]) - 1} leaf renewal(s), "
                      f"{len(tracker.kids[n]) - 1} JWT rollover(s)")
    for failure in result.failures[:5]:
        console.print(f"[red]✗[/] {failure}")
    complete = tracker.complete()
    if not complete:
        console.print("[red]not every rotation completed within the time limit[/]")
    console.print(f"probes: {result.ok} ok, {result.failed} failed")
    return 0 if result.failed == 0 and complete and result.ok > 0 else 1


async def run_rotation_demo(*, output: Path | None, examples: Path | None = None, console: Console | None = None,
                            time_limit: float = 150.0) -> int:
    """The quickstart with short lifetimes: rotate everything while probing continuously."""
    console = console or Console()
    docs = _short(load_manifests(examples or default_examples()))
    idents = [(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs if d["kind"] == "ServiceIdentity"]
    console.print("[bold]trustwire demo --rotate[/]: short lifetimes, a simulated Deployment controller and "
                  "kubelet, and a probe doing mTLS + JWT both ways all the time")
    options = OperatorOptions(workers=4, propagation_delay=timedelta(seconds=2))
    with tempfile.TemporaryDirectory(prefix="trustwire-rotate-") as tmp:
        root = (output / "mounts") if output else Path(tmp)
        async with running_emulator() as emu:
            config = ApiConfig(server=emu.url)
            async with running_operator(config, options), Client(config) as client:
                await apply(client, docs)
                if not await wait_ready(client, custom_resources(docs), console):
                    return 1
                tracker, result = await _rotate_while_probing(client, docs, idents, console, root, time_limit)
                if output:
                    await export_objects(emu.emulator, output)
    return _report(console, tracker, result)
