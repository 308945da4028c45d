"""``trustwire demo``: the whole product on one machine, proving its own result.

It starts the embedded API emulator, runs the real operator against it over HTTP, applies
``examples/quickstart/`` and waits (showing progress) until both identities are Ready.
Then it lays out each identity's files exactly as a wired pod sees them, and *proves* the
result with :mod:`trustwire.proofs` — a mutual-TLS handshake each way and a JWT each way.
Exit status 0 only if every proof holds. ``--output DIR`` keeps every object of the
emulator as YAML and the mounted files, so anyone can point their own tools at them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from trustwire import names
from trustwire.controller.reconciler import utcnow
from trustwire.emulator import running_emulator
from trustwire.k8s.client import (
    CONFIGMAPS,
    IDENTITIES,
    RELATIONSHIPS,
    SECRETS,
    WORKLOADS,
    ApiConfig,
    Client,
    Resource,
    decode_data,
)
from trustwire.proofs import Proof, prove_jwt, prove_mtls
from trustwire.runtime import OperatorOptions, running_operator

NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
KINDS: dict[str, Resource] = {
    "Namespace": NAMESPACES, "Secret": SECRETS, "ConfigMap": CONFIGMAPS,
    "ServiceIdentity": IDENTITIES, "TrustRelationship": RELATIONSHIPS, **WORKLOADS,
}


def default_examples() -> Path:
    """``examples/quickstart`` of the source tree (the demo runs from a checkout)."""
    for base in (Path.cwd(), *Path(__file__).resolve().parents):
        candidate = base / "examples" / "quickstart"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("examples/quickstart not found; run from the trustwire checkout or pass --examples")


def load_manifests(directory: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


async def apply(client: Client, docs: Sequence[Mapping[str, Any]]) -> None:
    for doc in docs:
        if doc["kind"] == "Namespace":
            continue  # the emulator has implicit namespaces (its namespace endpoint is not served)
        resource = KINDS[doc["kind"]]
        namespace = doc.get("metadata", {}).get("namespace")
        body = dict(doc)
        body.setdefault("metadata", {})["generation"] = 1  # the emulator keeps no generation
        await client.create(resource, namespace, body)


def _ready(body: Mapping[str, Any] | None) -> tuple[bool, str]:
    for c in ((body or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True", f"{c.get('reason')}: {c.get('message')}"
    return False, "no status yet"


async def wait_ready(client: Client, refs: Sequence[tuple[Resource, str, str]], console: Console,
                     timeout: float = 45.0) -> bool:
    start = time.monotonic()
    with console.status("waiting for trustwire to issue and distribute material…") as spinner:
        while True:
            states = []
            for resource, ns, name in refs:
                ok, why = _ready(await client.get(resource, ns, name))
                states.append((f"{resource.kind} {ns}/{name}", ok, why))
            waiting = [s for s in states if not s[1]]
            if not waiting:
                console.print(f"[green]✓[/] all {len(states)} objects Ready after {time.monotonic() - start:.2f}s")
                return True
            spinner.update(f"waiting for {waiting[0][0]} ({waiting[0][2]}) — {time.monotonic() - start:.1f}s")
            if time.monotonic() - start > timeout:
                for what, _, why in waiting:
                    console.print(f"[red]✗[/] {what} not Ready: {why}")
                return False
            await asyncio.sleep(0.1)


def status_table(identities: Sequence[Mapping[str, Any]], relationships: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="trustwire")
    for col in ("Kind", "Namespace/Name", "Ready", "Peers", "Cert expires", "Kid", "Reason"):
        table.add_column(col)
    for body in identities:
        st = body.get("status") or {}
        ok, why = _ready(body)
        table.add_row("ServiceIdentity", f"{body['metadata']['namespace']}/{body['metadata']['name']}",
                      "[green]True[/]" if ok else "[red]False[/]", str(st.get("peerCount", 0)),
                      (st.get("certificate") or {}).get("notAfter", "-"), (st.get("jwt") or {}).get("kid", "-")[:16],
                      why.split(":")[0])
    for body in relationships:
        ok, why = _ready(body)
        table.add_row("TrustRelationship", f"{body['metadata']['namespace']}/{body['metadata']['name']}",
                      "[green]True[/]" if ok else "[red]False[/]", "2", "-", "-", why.split(":")[0])
    return table


async def mounted_files(client: Client, namespace: str, identity: str) -> dict[str, bytes]:
    """Exactly what the projected volume shows a pod: the union of the credentials and trust Secret keys."""
    files: dict[str, bytes] = {}
    for name in (names.credentials_secret(identity), names.trust_secret(identity)):
        files.update(decode_data(SECRETS, await client.get(SECRETS, namespace, name)))
    return files


def write_mount(directory: Path, files: Mapping[str, bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for key, value in files.items():
        path = directory / key
        path.write_bytes(value)
        path.chmod(0o440 if key.endswith((".key", ".password", ".p12", ".jks", ".jwk")) else 0o444)
    return directory


async def export_objects(emulator: Any, output: Path) -> int:
    """Every object in the emulator as ``objects/<namespace>/<Kind>/<name>.yaml``."""
    count = 0
    for (resource, namespace, name), obj in list(emulator.objects.items()):
        if obj.deleted:
            continue
        body = dict(obj.raw)
        kind = body.get("kind") or (resource.plural or "object")
        path = output / "objects" / (namespace or "_cluster") / str(kind) / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(json.loads(json.dumps(body)), sort_keys=False))
        count += 1
    return count


def run_proofs(dgc: Path, jobserver: Path, *, audience: str | None) -> list[Proof]:
    now = utcnow()
    return [
        prove_mtls(jobserver, dgc, server_hostname="jobserver.jobs.svc"),
        prove_mtls(dgc, jobserver, server_hostname="dgc.governance.svc"),
        prove_jwt(dgc, jobserver, audience=audience, now=now),
        prove_jwt(jobserver, dgc, audience=audience, now=now),
    ]


async def run_demo(*, output: Path | None, examples: Path | None = None, console: Console | None = None,
                   ready_timeout: float = 45.0) -> int:
    console = console or Console()
    examples = examples or default_examples()
    docs = load_manifests(examples)
    console.print(f"[bold]trustwire demo[/]: embedded API emulator + the real operator; applying {examples}")
    async with running_emulator() as emu:
        config = ApiConfig(server=emu.url)
        async with running_operator(config, OperatorOptions(workers=4)), Client(config) as client:
            await apply(client, docs)
            console.print(f"applied {len(docs)} objects from {examples.name}/")
            refs = [(KINDS[d["kind"]], d["metadata"]["namespace"], d["metadata"]["name"])
                    for d in docs if d["kind"] in ("ServiceIdentity", "TrustRelationship")]
            ready = await wait_ready(client, refs, console, timeout=ready_timeout)
            identities = [b for r, ns, n in refs if r is IDENTITIES if (b := await client.get(r, ns, n))]
            relationships = [b for r, ns, n in refs if r is RELATIONSHIPS if (b := await client.get(r, ns, n))]
            console.print(status_table(identities, relationships))
            audience = next((d["spec"].get("jwt", {}).get("audience") for d in docs
                             if d["kind"] == "TrustRelationship"), None)
            with tempfile.TemporaryDirectory(prefix="trustwire-demo-") as tmp:
                base = output / "mounts" if output else Path(tmp)
                dgc = write_mount(base / "governance" / "dgc", await mounted_files(client, "governance", "dgc"))
                jobserver = write_mount(base / "jobs" / "jobserver", await mounted_files(client, "jobs", "jobserver"))
                proofs = await asyncio.to_thread(run_proofs, dgc, jobserver, audience=audience)
            if output:
                count = await export_objects(emu.emulator, output)
                console.print(f"wrote {count} objects to {output / 'objects'} and mounts to {output / 'mounts'}")
    for proof in proofs:
        mark = "[green]✓[/]" if proof.ok else "[red]✗[/]"
        console.print(f"{mark} {proof.name}: {proof.detail}")
    failed = [p for p in proofs if not p.ok]
    if ready and not failed:
        console.print("[bold green]demo passed[/]: both services can authenticate each other with mTLS and JWT")
        return 0
    console.print(f"[bold red]demo failed[/]: {len(failed)} proof(s) failed" + ("" if ready else "; not Ready"))
    return 1


# ----------------------------------------------------------------------------------------
# trustwire demo --rotate
# ----------------------------------------------------------------------------------------
SHORT_LIFETIMES = {"ca": {"duration": "30m"}, "certificate": {"duration": "45s", "renewBefore": "30s"},
                   "jwt": {"rotationPeriod": "20s"}}


def _short(docs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for doc in docs:
        doc = json.loads(json.dumps(doc))
        if doc["kind"] == "ServiceIdentity":
            doc["spec"] = {**doc.get("spec", {}), **SHORT_LIFETIMES}
        out.append(doc)
    return out


def _phase_line(name: str, status: Mapping[str, Any]) -> str:
    rotation = status.get("rotation") or {}
    return (f"CA {rotation.get('ca', {}).get('phase', '?')}, JWT {rotation.get('jwt', {}).get('phase', '?')}, "
            f"leaf {(status.get('certificate') or {}).get('serial', '?')[:8]}, "
            f"kid {(status.get('jwt') or {}).get('kid', '?')[:8]}")


async def run_rotation_demo(*, output: Path | None, examples: Path | None = None, console: Console | None = None,
                            time_limit: float = 150.0) -> int:
    """The quickstart with short lifetimes: rotate everything while probing continuously."""
    from datetime import timedelta

    from trustwire.drill import PodFiles, Probe, RolloutSimulator, Side, SimulatedWorkload, TLSEndpoint

    console = console or Console()
    examples = examples or default_examples()
    docs = _short(load_manifests(examples))
    idents = [(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs if d["kind"] == "ServiceIdentity"]
    workload_of = {(d["metadata"]["namespace"], d["metadata"]["name"]):
                   next(w["name"] for w in d["spec"]["workloads"] if w["kind"] == "Deployment")
                   for d in docs if d["kind"] == "ServiceIdentity"}
    audience = next((d["spec"].get("jwt", {}).get("audience") for d in docs if d["kind"] == "TrustRelationship"), None)
    console.print("[bold]trustwire demo --rotate[/]: short lifetimes, a simulated Deployment controller and "
                  "kubelet, and a probe doing mTLS + JWT both ways all the time")
    options = OperatorOptions(workers=4, propagation_delay=timedelta(seconds=2))
    with tempfile.TemporaryDirectory(prefix="trustwire-rotate-") as tmp:
        root = (output / "mounts") if output else Path(tmp)
        async with running_emulator() as emu:
            config = ApiConfig(server=emu.url)
            async with running_operator(config, options), Client(config) as client:
                await apply(client, docs)
                refs = [(KINDS[d["kind"]], d["metadata"]["namespace"], d["metadata"]["name"])
                        for d in docs if d["kind"] in ("ServiceIdentity", "TrustRelationship")]
                if not await wait_ready(client, refs, console):
                    return 1
                workloads = [SimulatedWorkload(ns, workload_of[(ns, n)], n, PodFiles(root / ns / n),
                                               rollout_seconds=0.3 + 0.5 * i) for i, (ns, n) in enumerate(idents)]
                simulator = asyncio.create_task(RolloutSimulator(client, workloads).run())
                while any(w.rollouts == 0 for w in workloads):  # noqa: ASYNC110 - polling the simulator
                    await asyncio.sleep(0.05)
                sides = [Side(n, f"{n}.{ns}.svc", w.pod, TLSEndpoint(w.pod)) for (ns, n), w in zip(idents, workloads,
                                                                                                   strict=True)]
                probe = Probe(sides[0], sides[1], audience=audience)
                probe.start()
                start = time.monotonic()
                seen: dict[str, str] = {}
                cas: dict[str, set[str]] = {n: set() for _, n in idents}
                kids: dict[str, set[str]] = {n: set() for _, n in idents}
                leaves: dict[str, set[str]] = {n: set() for _, n in idents}
                requested: set[str] = set()
                try:
                    while time.monotonic() - start < time_limit:
                        for i, (ns, n) in enumerate(idents):
                            status = (await client.get(IDENTITIES, ns, n) or {}).get("status") or {}
                            cas[n].add((status.get("ca") or {}).get("fingerprint", ""))
                            kids[n].add((status.get("jwt") or {}).get("kid", ""))
                            leaves[n].add((status.get("certificate") or {}).get("serial", ""))
                            line = _phase_line(n, status)
                            if seen.get(n) != line:
                                seen[n] = line
                                console.print(f"[dim]{time.monotonic() - start:6.1f}s[/] {ns}/{n}: {line}")
                            # one CA rotation each, staggered, through the manual rotation annotation
                            if n not in requested and time.monotonic() - start > 3 + 12 * i:
                                requested.add(n)
                                await client.merge_patch(IDENTITIES, ns, n, {"metadata": {"annotations": {
                                    names.ROTATE_ANNOTATION: f"ca:{time.time():.0f}"}}})
                                console.print(f"[dim]{time.monotonic() - start:6.1f}s[/] {ns}/{n}: "
                                              "[bold]CA rotation requested[/]")
                        done = all(len(cas[n]) >= 2 and len(kids[n]) >= 2 and len(leaves[n]) >= 4
                                   for _, n in idents)
                        if done and all(s.startswith("CA Idle, JWT Idle") for s in seen.values()):
                            break
                        await asyncio.sleep(0.25)
                finally:
                    result = probe.stop()
                    simulator.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await simulator
                    for side in sides:
                        side.endpoint.close()
                if output:
                    await export_objects(emu.emulator, output)
    for _, n in idents:
        console.print(f"{n}: {len(cas[n]) - 1} CA rotation(s), {len(leaves[n]) - 1} leaf renewal(s), "
                      f"{len(kids[n]) - 1} JWT rollover(s)")
    for failure in result.failures[:5]:
        console.print(f"[red]✗[/] {failure}")
    complete = all(len(cas[n]) >= 2 and len(kids[n]) >= 2 and len(leaves[n]) >= 4 for _, n in idents)
    if not complete:
        console.print("[red]not every rotation completed within the time limit[/]")
    console.print(f"probes: {result.ok} ok, {result.failed} failed")
    return 0 if result.failed == 0 and complete and result.ok > 0 else 1
