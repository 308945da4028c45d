"""``trustwire demo``: the whole product on one machine, proving its own result.

It starts the embedded API emulator, runs the real operator against it over HTTP, applies
an examples directory (``examples/quickstart/`` by default; kinds the emulator does not
serve are skipped with a note) and waits (showing progress) until every identity and
relationship is Ready. Then it lays out each identity's files exactly as a wired pod sees
them, and *proves* what the directory declares (:mod:`trustwire.demo.scenario`): mTLS in
the directions each relationship allows, JWTs, shared secrets, rendered templates.
Exit status 0 only if every proof holds; the failing proofs are named otherwise.
``--output DIR`` keeps every object of the emulator as YAML and the mounted files, so
anyone can point their own tools at them.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from trustwire.demo.drill import mounted_files
from trustwire.demo.emulator import running_emulator
from trustwire.demo.proofs import Proof
from trustwire.demo.scenario import Scenario, proofs_for, scenario
from trustwire.demo.serve import serve_demo
from trustwire.k8s.client import ApiConfig, Client
from trustwire.k8s.resources import CONFIGMAPS, ENROLLMENTS, IDENTITIES, RELATIONSHIPS, SECRETS, WORKLOADS, Resource
from trustwire.model import IdentityRef
from trustwire.plan.status import IdentityStatus, RelationshipStatus
from trustwire.runtime import OperatorOptions, running_operator
from trustwire.times import utcnow

NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
KINDS: dict[str, Resource] = {
    "Namespace": NAMESPACES, "Secret": SECRETS, "ConfigMap": CONFIGMAPS,
    "ServiceIdentity": IDENTITIES, "TrustRelationship": RELATIONSHIPS, "Enrollment": ENROLLMENTS, **WORKLOADS,
}


def default_examples() -> Path:
    """``examples/quickstart``: the copy the wheel carries, else the one of the source tree."""
    packaged = Path(__file__).resolve().parent / "examples" / "quickstart"
    if packaged.is_dir():
        return packaged
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


async def apply(client: Client, docs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Create every object the emulator serves; a note for each one it does not (e.g. a Service)."""
    skipped: list[str] = []
    for doc in docs:
        if doc["kind"] == "Namespace":
            continue  # the emulator has implicit namespaces (its namespace endpoint is not served)
        resource = KINDS.get(doc["kind"])
        namespace = doc.get("metadata", {}).get("namespace")
        if resource is None:
            skipped.append(f"{doc['kind']} {namespace}/{doc.get('metadata', {}).get('name')}")
            continue
        body = dict(doc)
        body.setdefault("metadata", {})["generation"] = 1  # the emulator keeps no generation
        await client.create(resource, namespace, body)
    return skipped


def custom_resources(docs: Sequence[Mapping[str, Any]]) -> list[tuple[Resource, str, str]]:
    """The ServiceIdentities and TrustRelationships among ``docs``: what must become Ready."""
    return [(KINDS[d["kind"]], d["metadata"]["namespace"], d["metadata"]["name"])
            for d in docs if d["kind"] in ("ServiceIdentity", "TrustRelationship")]


def jwt_audience(docs: Sequence[Mapping[str, Any]]) -> str | None:
    """The JWT audience of the first TrustRelationship, which the proofs put into tokens."""
    return next((d["spec"].get("jwt", {}).get("audience") for d in docs if d["kind"] == "TrustRelationship"), None)


def _ready(body: Mapping[str, Any] | None) -> tuple[bool, str]:
    """Ready, and why, from either kind's status (both carry kstatus conditions)."""
    body = body or {}
    model = IdentityStatus if body.get("kind") == "ServiceIdentity" else RelationshipStatus
    ready = model.from_dict(body.get("status")).condition("Ready")
    if ready is None:
        return False, "no status yet"
    return ready.get("status") == "True", f"{ready.get('reason')}: {ready.get('message')}"


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
        st = IdentityStatus.from_dict(body.get("status"))
        ok, why = _ready(body)
        table.add_row("ServiceIdentity", f"{body['metadata']['namespace']}/{body['metadata']['name']}",
                      "[green]True[/]" if ok else "[red]False[/]", str(st.peer_count),
                      st.certificate.not_after if st.certificate else "-", st.jwt.kid[:16] if st.jwt else "-",
                      why.split(":")[0])
    for body in relationships:
        ok, why = _ready(body)
        table.add_row("TrustRelationship", f"{body['metadata']['namespace']}/{body['metadata']['name']}",
                      "[green]True[/]" if ok else "[red]False[/]", "2", "-", "-", why.split(":")[0])
    return table


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


#: Called with every identity's mount directory before the proofs run (tests break material on purpose).
MountHook = Callable[[Mapping[IdentityRef, Path]], None]


async def _write_mounts(client: Client, refs: Sequence[IdentityRef], base: Path) -> dict[IdentityRef, Path]:
    return {ref: write_mount(base / ref.namespace / ref.name, await mounted_files(client, ref.namespace, ref.name))
            for ref in refs}


async def _prove(client: Client, plan: Scenario, output: Path | None, hook: MountHook | None) -> list[Proof]:
    with tempfile.TemporaryDirectory(prefix="trustwire-demo-") as tmp:
        mounts = await _write_mounts(client, list(plan.identities), output / "mounts" if output else Path(tmp))
        if hook is not None:
            hook(mounts)
        return await asyncio.to_thread(proofs_for, plan, mounts, utcnow())


async def _show_status(client: Client, refs: Sequence[tuple[Resource, str, str]], console: Console) -> None:
    identities = [b for r, ns, n in refs if r is IDENTITIES if (b := await client.get(r, ns, n))]
    relationships = [b for r, ns, n in refs if r is RELATIONSHIPS if (b := await client.get(r, ns, n))]
    console.print(status_table(identities, relationships))


def _verdict(proofs: Sequence[Proof], ready: bool, console: Console) -> int:
    for proof in proofs:
        mark = "[green]✓[/]" if proof.ok else "[red]✗[/]"
        console.print(f"{mark} {proof.name}: {proof.detail}")
    failed = [p.name for p in proofs if not p.ok]
    if ready and proofs and not failed:
        console.print(f"[bold green]demo passed[/]: all {len(proofs)} proofs hold")
        return 0
    why = [f"{len(failed)} proof(s) failed: {'; '.join(failed)}"] if failed else []
    why += [] if ready else ["not Ready"]
    why += [] if proofs else ["the examples declare nothing to prove"]
    console.print(f"[bold red]demo failed[/]: {'; '.join(why)}")
    return 1


async def _forever() -> None:
    await asyncio.Event().wait()


async def run_demo(*, output: Path | None, examples: Path | None = None, console: Console | None = None,
                   ready_timeout: float = 45.0, before_proofs: MountHook | None = None,
                   serve: Path | None = None, hold: Callable[[], Awaitable[None]] = _forever) -> int:
    console = console or Console()
    examples = examples or default_examples()
    docs = load_manifests(examples)
    plan = scenario(docs)
    console.print(f"[bold]trustwire demo[/]: embedded API emulator + the real operator; applying {examples}")
    async with running_emulator() as emu:
        config = ApiConfig(server=emu.url)
        async with running_operator(config, OperatorOptions(workers=4)), Client(config) as client:
            skipped = await apply(client, docs)
            console.print(f"applied {len(docs) - len(skipped)} objects from {examples.name}/")
            for note in skipped:
                console.print(f"[yellow]skipped[/] {note}: the emulator does not serve this kind")
            refs = custom_resources(docs)
            ready = await wait_ready(client, refs, console, timeout=ready_timeout)
            await _show_status(client, refs, console)
            proofs = await _prove(client, plan, output, before_proofs)
            if output:
                count = await export_objects(emu.emulator, output)
                console.print(f"wrote {count} objects to {output / 'objects'} and mounts to {output / 'mounts'}")
            code = _verdict(proofs, ready, console)  # shown before serving, which lasts until Ctrl-C
            if serve and code == 0:
                console.print(f"serving; endpoints in {serve / 'endpoints.json'} (Ctrl-C stops)")
                await serve_demo(client, emu.url, docs, serve, hold)
    return code
