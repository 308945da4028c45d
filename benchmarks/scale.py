"""Scale and memory: N ServiceIdentities in a star or ring of TrustRelationships.

Separate processes, so that each number is charged to whom it belongs:

* the API (``--api``):

  - ``kmock`` (the default): the API emulator (``benchmarks/emulator_server.py``:
    ``kmock.KubernetesEmulator`` over HTTP on loopback, exactly as the demo starts it),
    which also counts every request by ``User-Agent`` — ``trustwire-operator`` (the
    operator, every list and watch included) and ``trustwire-bench`` (this driver, never
    counted as the operator's);
  - ``real``: the control plane of ``tests/cluster/controlplane.py`` (etcd, kube-apiserver,
    controller-manager, scheduler, kwok; ``build.sh`` builds it once) with the CRDs and the
    Helm chart installed, and in front of the apiserver the journaling proxy of
    ``tests/cluster/proxy.py`` in a process of its own (``emulator_server.py --proxy``),
    which counts the operator's requests with the same keys. The operator authenticates
    with a TokenRequest token of the chart's ServiceAccount, so the real RBAC authorizer
    judges every request; the driver talks to the apiserver directly, as cluster-admin.
    The apiserver's, etcd's and the proxy's CPU are reported apart;

* the operator, as a user runs it: ``python -m trustwire.cli run --server <url>`` (kmock)
  or ``--kubeconfig <file>`` (real) ``--standalone --liveness '' --metrics-port 0
  --workers 8 --resync 3600``; its CPU time (utime + stime, all threads) comes from
  ``/proc/<pid>/stat``, its memory from ``/proc/<pid>/status`` (``VmRSS`` now, ``VmHWM``
  peak);
* this driver, which applies the objects and follows them with one watch per kind
  (checking every ``--poll`` seconds, without a request) until every identity and
  relationship has ``Ready=True``.

One run:

1. start the API (a fresh one per run; on a real server namespace ``bench`` is created);
   optionally store M unrelated Secrets (~1 KB, no trustwire label);
2. start the operator, wait until its watches are open and its CPU is idle (baseline);
3. apply N identities (namespace ``bench``, no workloads) and the relationships — star:
   hub ``id-0`` ↔ every other ``id-i``; ring: ``id-i`` ↔ ``id-(i+1 mod N)`` (one for
   N = 2) — and wait until all are Ready: ``seconds_to_ready``, ``pair_ready_seconds``
   (the first relationship Ready, i.e. both sides hold each other's material),
   ``operator_cpu_seconds``, the API servers' CPU (``<server>_cpu_seconds``: ``emulator``,
   or ``apiserver``, ``etcd`` and ``proxy``), API reads/writes, RSS;
4. wait until the operator is quiet (``settle_writes``: writes after Ready);
5. steady state: there is no way to trigger a resync from outside, so the operator is
   stopped and started again with a short ``--resync`` (``--steady-resync``, default
   max(2 s, N/100 s)); the restart replays every object (a full resync from an empty
   memory) and ``--steady-periods`` (3) timed resyncs follow. ``steady_state_writes`` are
   the operator's writes over that whole phase; the number of identity passes
   seen is reported as ``steady_state_passes``.

The servers' CPU is reported over the same phases as the operator's: apply to Ready
(``<server>_cpu_seconds``), apply to quiet (``…_total``) and the steady state
(``steady_state_<server>_cpu_seconds``).

The crypto floor is ``benchmarks/crypto.py``'s ``crypto_floor_seconds(N)`` (wall clock) and
the same issuance timed in CPU seconds (``crypto_floor_cpu_seconds``, the unit of
``operator_cpu_seconds``); ``cpu_to_crypto_floor_cpu`` is the ratio of the two CPU times.

Unrelated Secrets: the operator asks for Secrets with ``labelSelector=app.kubernetes.io/
managed-by=trustwire``. A real API server applies it; kmock ignores it, so by default
every unrelated Secret reaches the operator's watch and is dropped there. ``--server-side-selectors``
makes the emulator apply the selector (and serve LISTs in ``limit`` pages), as a cluster
would; report both. A real API server always applies it (``--api real``).

Reported values are medians over ``--runs`` runs, except ``steady_state_writes``, which is
the maximum (one run with writes is a finding a median would hide); every run is in
``runs``. Usage::

    python benchmarks/scale.py --identities 100 --topology star
    python benchmarks/scale.py --identities 1000 --topology ring --runs 3 --json > ring-1000.json
    python benchmarks/scale.py --identities 100 --topology star --unrelated-secrets 10000
    python benchmarks/scale.py --identities 100 --unrelated-secrets 10000 --server-side-selectors
    python benchmarks/scale.py --identities 100 --topology ring --api real --runs 3 --json
    python benchmarks/scale.py --identities 100 --topology ring --against 720a53b --json   # A/B
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trustwire import names
from trustwire.k8s.client import ApiConfig, Client, load_config
from trustwire.k8s.errors import ApiError
from trustwire.k8s.resources import IDENTITIES, RELATIONSHIPS, SECRETS, Resource, decode_data
from trustwire.pki import KeyAlgorithm

try:  # from the repository root (python -m benchmarks.scale, tests)
    from benchmarks.crypto import crypto_floor_seconds, issue_identity, machine
except ModuleNotFoundError:  # as a script: benchmarks/ itself is sys.path[0]
    from crypto import crypto_floor_seconds, issue_identity, machine  # type: ignore[no-redef,import-not-found]

if TYPE_CHECKING:
    from tests.cluster.controlplane import ControlPlane

HERE = Path(__file__).resolve().parent
NAMESPACE = "bench"
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
#: unrelated Secrets: spread over this many namespaces ``unrelated-<k>``, of about this size
UNRELATED_NAMESPACES = 10
UNRELATED_BYTES = 1024
BENCH_AGENT = "trustwire-bench"
WATCHED = frozenset({"serviceidentities", "trustrelationships", "secrets", "configmaps",
                     "deployments", "statefulsets", "daemonsets"})
READS = frozenset({"FETCH", "LIST", "WATCH"})
FETCH = frozenset({"FETCH"})
WRITES = frozenset({"CREATE", "UPDATE", "DELETE"})
#: the operator's requests in the counts (``emulator_server.classify``); every other client is not counted
OPERATOR = "operator"
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: extra py-spy options, e.g. "--gil" (only the thread holding the GIL is sampled)
PY_SPY_EXTRA = os.environ.get("TRUSTWIRE_BENCH_PY_SPY_ARGS", "").split()


# ======================================================================================
# /proc
# ======================================================================================
def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


# ======================================================================================
# Processes
# ======================================================================================
class CountingServer:
    """``benchmarks/emulator_server.py`` as a child process, driven over stdin/stdout: the
    emulator, or (``--proxy``) the counting proxy in front of a real apiserver."""

    def __init__(self, process: asyncio.subprocess.Process, url: str) -> None:
        self.process = process
        self.url = url
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def start(cls, log: Path, flags: Sequence[str]) -> CountingServer:
        with log.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable, str(HERE / "emulator_server.py"), *flags, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=stderr, limit=64 * 1024 * 1024)
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
        if not line:
            raise RuntimeError(f"{HERE / 'emulator_server.py'} {' '.join(flags)} did not start; see {log}")
        return cls(process, json.loads(line)["url"])

    async def command(self, cmd: str, **args: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        async with self._lock:
            self.process.stdin.write(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
            await self.process.stdin.drain()
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout=300)
        if not line:
            raise RuntimeError("the counting server exited")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"counting server: {answer['error']}")
        return answer

    async def stats(self) -> Counts:
        return Counts.parse(await self.command("stats"))

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.command("quit"), timeout=5)
                await asyncio.wait_for(self.process.wait(), timeout=30)
        await _reap(self.process)


class Operator:
    """``python -m trustwire.cli run`` as a child process."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def start(cls, api: Api, *, workers: int, resync: float, log: Path, tree: Path | None = None) -> Operator:
        """``tree``: an ``operator/`` directory of another commit to run instead of ours
        (first on the module path, before the installed package)."""
        argv = [sys.executable, "-m", "trustwire.cli", "run", *api.operator_args(), "--standalone",
                "--liveness", "", "--metrics-port", "0", "--workers", str(workers), "--resync", str(resync)]
        env = dict(os.environ) | ({"PYTHONPATH": str(tree)} if tree is not None else {})
        with log.open("ab") as out:
            process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                           stdout=out, stderr=out, env=env)
        return cls(process, log)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def memory(self) -> tuple[float, float]:
        return memory_mb(self.pid)

    def check_alive(self) -> None:
        if self.process.returncode is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the operator exited with {self.process.returncode}:\n{tail}")

    async def stop(self) -> None:
        await _reap(self.process)


async def _reap(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=15)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


# ======================================================================================
# The API: kmock, or a real control plane behind a counting proxy
# ======================================================================================
class Api(abc.ABC):
    """What differs between the APIs a run can use: how they start and stop, how the operator
    and the driver reach them, which processes serve them. Counting is the same for both: a
    :class:`CountingServer` sees every request of the operator."""

    #: the processes serving the API, by the name their CPU is reported under
    servers: tuple[str, ...] = ()

    def __init__(self, counter: CountingServer) -> None:
        self.counter = counter

    @abc.abstractmethod
    def operator_args(self) -> list[str]:
        """``trustwire run`` options that point the operator at the counting server."""

    @abc.abstractmethod
    def driver_config(self) -> ApiConfig:
        """How this driver reaches the API (its requests are never counted as the operator's)."""

    @abc.abstractmethod
    def server_pids(self) -> dict[str, int]:
        """Name (one of :attr:`servers`) → pid."""

    @abc.abstractmethod
    async def preload(self, count: int) -> float:
        """Store ``count`` unrelated Secrets; the seconds it took."""

    def server_cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.server_pids().items()}

    async def stats(self) -> Counts:
        return await self.counter.stats()

    async def stop(self) -> None:
        await self.counter.stop()


class KmockApi(Api):
    """kmock in ``emulator_server.py``, which serves and counts."""

    servers = ("emulator",)

    @classmethod
    async def start(cls, workdir: Path, index: int, opts: Options) -> KmockApi:
        flags = ["--label-selectors"] if opts.label_selectors else []
        return cls(await CountingServer.start(workdir / f"emulator-{index + 1}.log", flags))

    def operator_args(self) -> list[str]:
        return ["--server", self.counter.url]

    def driver_config(self) -> ApiConfig:
        return load_config(server=self.counter.url)

    def server_pids(self) -> dict[str, int]:
        return {"emulator": self.counter.pid}

    async def preload(self, count: int) -> float:
        loaded = await self.counter.command("preload", count=count, namespaces=UNRELATED_NAMESPACES,
                                            size=UNRELATED_BYTES)
        return float(loaded["seconds"])


class RealApi(Api):
    """The control plane of ``tests/cluster/controlplane.py``; the operator reaches it through
    ``emulator_server.py --proxy`` with the chart ServiceAccount's token."""

    servers = ("apiserver", "etcd", "proxy")

    def __init__(self, counter: CountingServer, plane: ControlPlane, kubeconfig: Path) -> None:
        super().__init__(counter)
        self.plane = plane
        self.kubeconfig = kubeconfig

    @classmethod
    async def start(cls, workdir: Path, index: int, opts: Options) -> RealApi:
        plane, token = await asyncio.to_thread(start_control_plane, workdir / f"control-plane-{index + 1}")
        try:
            counter = await CountingServer.start(workdir / f"proxy-{index + 1}.log",
                                                 ["--proxy", plane.server, "--ca", str(plane.dir / "ca.crt")])
        except BaseException:
            await asyncio.to_thread(plane.stop)
            raise
        kubeconfig = plane.kubeconfig("trustwire-bench-operator", {"token": token}, server=counter.url)
        return cls(counter, plane, kubeconfig)

    def operator_args(self) -> list[str]:
        return ["--kubeconfig", str(self.kubeconfig)]

    def driver_config(self) -> ApiConfig:
        return ApiConfig(server=self.plane.server, ca_data=self.plane.ca.pem,
                         cert_data=(self.plane.dir / "admin.crt").read_bytes(),
                         key_data=(self.plane.dir / "admin.key").read_bytes())

    def server_pids(self) -> dict[str, int]:
        apiserver, etcd = (self.plane.processes[name].popen for name in ("kube-apiserver", "etcd"))
        assert apiserver is not None and etcd is not None  # started by start_control_plane
        return {"apiserver": apiserver.pid, "etcd": etcd.pid, "proxy": self.counter.pid}

    async def preload(self, count: int) -> float:
        started = time.monotonic()
        async with Client(self.driver_config(), user_agent=BENCH_AGENT, timeout=120.0) as client:
            for k in range(UNRELATED_NAMESPACES):
                await client.create(NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace",
                                                       "metadata": {"name": f"unrelated-{k}"}})
            await apply_all(client, [(SECRETS, unrelated_secret(i)) for i in range(count)])
        return round(time.monotonic() - started, 3)

    async def stop(self) -> None:
        try:
            await super().stop()
        finally:
            await asyncio.to_thread(self.plane.stop)


def start_control_plane(workdir: Path) -> tuple[ControlPlane, str]:
    """A running control plane with the CRDs, the chart and namespace ``bench``; and a token of
    the chart's ServiceAccount."""
    if str(HERE.parent) not in sys.path:  # as a script: tests/ is imported from the repository
        sys.path.insert(0, str(HERE.parent))
    from tests.cluster.controlplane import ControlPlane, binaries
    from tests.cluster.fixtures import install_chart, install_crds, service_account_of

    plane = ControlPlane(binaries(), workdir)
    try:
        plane.start()
        install_crds(plane)
        token = plane.service_account_token(*service_account_of(install_chart(plane)))
        plane.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": NAMESPACE}})
    except BaseException:
        plane.stop()
        raise
    return plane, token


APIS: dict[str, type[KmockApi] | type[RealApi]] = {"kmock": KmockApi, "real": RealApi}


# ======================================================================================
# Request counts
# ======================================================================================
@dataclass(frozen=True)
class Counts:
    """Cumulative request counts: (source, action, plural, subresource) → n."""

    by_key: Mapping[tuple[str, str, str, str], int] = field(default_factory=dict)
    objects: int = 0
    largest_write_bytes: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, answer: Mapping[str, Any]) -> Counts:
        return cls({(s, a, p, sub): int(n) for s, a, p, sub, n in answer["counts"]}, int(answer["objects"]),
                   dict(answer.get("largest_write_bytes") or {}))

    def __sub__(self, other: Counts) -> Counts:
        keys = set(self.by_key) | set(other.by_key)
        diff = {k: self.by_key.get(k, 0) - other.by_key.get(k, 0) for k in keys}
        return Counts({k: v for k, v in diff.items() if v}, self.objects, self.largest_write_bytes)

    def total(self, *, actions: frozenset[str] | None = None, plural: str | None = None) -> int:
        """The operator's requests (of these actions, on this resource)."""
        return sum(n for (s, a, p, _), n in self.by_key.items()
                   if s == OPERATOR and (actions is None or a in actions) and (plural is None or p == plural))

    def watching(self) -> set[str]:
        return {p for (s, a, p, _), n in self.by_key.items() if s == OPERATOR and a == "WATCH" and n}

    def breakdown(self) -> dict[str, int]:
        """The operator's requests: "ACTION plural[/sub]" → n."""
        return {f"{a} {p}{'/' + sub if sub else ''}": n
                for (s, a, p, sub), n in sorted(self.by_key.items()) if s == OPERATOR}


# ======================================================================================
# Objects
# ======================================================================================
def identity_body(i: int) -> dict[str, Any]:
    return {"apiVersion": "trustwire.io/v1alpha1", "kind": "ServiceIdentity",
            "metadata": {"name": f"id-{i}", "namespace": NAMESPACE, "generation": 1},
            "spec": {"serviceName": f"id-{i}"}}


def relationship_pairs(n: int, topology: str) -> list[tuple[int, int]]:
    if n < 2:
        return []
    if topology == "star":
        return [(0, i) for i in range(1, n)]
    if n == 2:
        return [(0, 1)]
    return [(i, (i + 1) % n) for i in range(n)]


def relationship_body(a: int, b: int) -> dict[str, Any]:
    return {"apiVersion": "trustwire.io/v1alpha1", "kind": "TrustRelationship",
            "metadata": {"name": f"rel-{a}-{b}", "namespace": NAMESPACE, "generation": 1},
            "spec": {"between": [{"identity": f"id-{a}"}, {"identity": f"id-{b}"}]}}


def unrelated_secret(i: int) -> dict[str, Any]:
    """As ``emulator_server.py``'s ``preload`` stores them: no trustwire label."""
    payload = base64.b64encode(os.urandom(UNRELATED_BYTES * 3 // 4)).decode()
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": f"unrelated-{i}", "namespace": f"unrelated-{i % UNRELATED_NAMESPACES}",
                         "labels": {"app": "unrelated"}},
            "data": {"payload": payload}}


def is_ready(body: Mapping[str, Any]) -> bool:
    for condition in (body.get("status") or {}).get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def is_stalled(body: Mapping[str, Any]) -> bool:
    """``Stalled=True``: the operator says only a change of the input can help."""
    return any(isinstance(c, Mapping) and c.get("type") == "Stalled" and c.get("status") == "True"
               for c in (body.get("status") or {}).get("conditions") or [])


def not_ready_reason(body: Mapping[str, Any]) -> str:
    for condition in (body.get("status") or {}).get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return f"{condition.get('reason')}: {condition.get('message')}"
    return "no status"


async def apply_all(client: Client, bodies: Sequence[tuple[Any, Mapping[str, Any]]], concurrency: int = 8,
                    ) -> None:
    queue: asyncio.Queue[tuple[Any, Mapping[str, Any]]] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty():
            resource, body = queue.get_nowait()
            await client.create(resource, body["metadata"]["namespace"], body)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def trust_secret_size(config: ApiConfig) -> int | None:
    """Decoded data bytes of ``id-0``'s trust files (the hub of a star), over every Secret they
    are split across: Kubernetes caps each Secret's data at 1 MiB (1,048,576 bytes)."""
    async with Client(config, user_agent=BENCH_AGENT, timeout=120.0) as client:
        bodies = [await client.get(SECRETS, NAMESPACE, name) for name in names.trust_secrets("id-0")]
    if bodies[0] is None:
        return None
    return sum(len(v) for body in bodies for v in decode_data(SECRETS, body).values())


# ======================================================================================
# One run
# ======================================================================================
@dataclass
class Options:
    identities: int
    topology: str
    unrelated_secrets: int
    workers: int
    poll: float
    timeout: float
    steady_resync: float
    steady_periods: int
    keep_logs: Path | None
    verbose: bool
    py_spy: Path | None = None
    label_selectors: bool = False
    api: str = "kmock"
    #: another commit's operator/ tree (``--against``): the operator runs from there instead
    operator_tree: Path | None = None


@contextlib.asynccontextmanager
async def progress_display(console: Console | None, identities: int, relationships: int,
                           ) -> AsyncIterator[Callable[[int, int, str], None]]:
    if console is None:
        yield lambda _i, _r, _info: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[info]}"), console=console, transient=True) as progress:
        ids = progress.add_task("identities Ready   ", total=identities, info="")
        rels = progress.add_task("relationships Ready", total=relationships, info="")

        def update(ready_ids: int, ready_rels: int, info: str) -> None:
            progress.update(ids, completed=ready_ids, info=info)
            progress.update(rels, completed=ready_rels, info="")

        yield update


class View:
    """The driver's copy of identities and relationships in ``bench``, kept by watches: a LIST
    per poll would be charged to the API server's (or the emulator's) CPU."""

    def __init__(self) -> None:
        self.bodies: dict[str, dict[str, dict[str, Any]]] = {IDENTITIES.plural: {}, RELATIONSHIPS.plural: {}}

    def current(self, resource: Resource) -> list[dict[str, Any]]:
        return list(self.bodies[resource.plural].values())

    async def follow(self, client: Client, resource: Resource, console: Console | None) -> None:
        """Watch without a resourceVersion, again whenever the stream ends: each watch begins
        with every existing object (ADDED), on kube-apiserver and on kmock alike."""
        bodies = self.bodies[resource.plural]
        while True:
            try:
                async for event in client.watch(resource, NAMESPACE):
                    body = event.get("object") or {}
                    name = (body.get("metadata") or {}).get("name")
                    if event.get("type") in ("ADDED", "MODIFIED") and name:
                        bodies[name] = body
                    elif event.get("type") == "DELETED" and name:
                        bodies.pop(name, None)
            except ApiError as exc:  # a dropped stream or a busy server: watch again
                if console is not None:
                    console.print(f"watch of {resource.plural} ended: {exc}")
                await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def watched(client: Client, console: Console | None) -> AsyncIterator[View]:
    view = View()
    tasks = [asyncio.create_task(view.follow(client, r, console)) for r in (IDENTITIES, RELATIONSHIPS)]
    try:
        yield view
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def wait_until(predicate: Callable[[], Any], *, limit: float, interval: float, what: str) -> Any:
    deadline = time.monotonic() + limit
    while True:
        result = await predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {limit:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


async def wait_started(api: Api, operator: Operator, *, limit: float = 120.0) -> None:
    """Until the operator watches every resource it follows (:data:`WATCHED`: its own kinds,
    its Secrets and ConfigMaps, the workload kinds) and its CPU has gone idle."""

    async def watching() -> bool:
        operator.check_alive()
        return (await api.stats()).watching() >= WATCHED

    await wait_until(watching, limit=limit, interval=0.2, what="the operator's watches")
    await wait_idle_cpu(operator, limit=limit)


async def wait_idle_cpu(operator: Operator, *, limit: float, window: float = 1.0, budget: float = 0.03,
                        ) -> None:
    deadline = time.monotonic() + limit
    last = operator.cpu()
    while time.monotonic() < deadline:
        await asyncio.sleep(window)
        operator.check_alive()
        now = operator.cpu()
        if now - last < budget:
            return
        last = now


async def wait_quiet(api: Api, *, limit: float, quiet_for: float = 1.0) -> Counts:
    """Until the operator sent no request for ``quiet_for`` seconds."""
    deadline = time.monotonic() + limit
    stats = await api.stats()
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        now = await api.stats()
        if now.total() != stats.total():
            stats, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_for:
            return now
    return stats


async def one_run(opts: Options, index: int, console: Console | None, workdir: Path) -> dict[str, Any]:
    n = opts.identities
    pairs = relationship_pairs(n, opts.topology)
    result: dict[str, Any] = {"run": index + 1}
    started = time.monotonic()
    api = await APIS[opts.api].start(workdir, index, opts)
    result["api_startup_seconds"] = round(time.monotonic() - started, 3)
    operator: Operator | None = None
    try:
        if opts.unrelated_secrets:
            result["preload_seconds"] = await api.preload(opts.unrelated_secrets)

        # ---- start the operator; baseline once it watches everything and idles ----------
        started = time.monotonic()
        operator = await Operator.start(api, workers=opts.workers, resync=3600,
                                        log=workdir / f"operator-{index + 1}.log", tree=opts.operator_tree)
        await wait_started(api, operator)
        result["operator_startup_seconds"] = round(time.monotonic() - started, 3)
        cpu0 = operator.cpu()
        servers0 = api.server_cpu()
        result["operator_startup_cpu_seconds"] = round(cpu0, 3)
        result["operator_baseline_rss_mb"] = round(operator.memory()[0], 1)
        counts0 = await api.stats()
        profiler = await start_py_spy(opts.py_spy, operator.pid, f"run-{index + 1}") if opts.py_spy else None

        # ---- apply and wait until everything is Ready ------------------------------------
        async with Client(api.driver_config(), user_agent=BENCH_AGENT, timeout=120.0) as client, \
                watched(client, console if opts.verbose else None) as view:
            t0 = time.monotonic()
            await apply_all(client, [(IDENTITIES, identity_body(i)) for i in range(n)])
            await apply_all(client, [(RELATIONSHIPS, relationship_body(a, b)) for a, b in pairs])
            result["apply_seconds"] = round(time.monotonic() - t0, 3)
            pair_ready: float | None = None
            peak_rss = 0.0
            ready = False
            waiting: list[str] = []
            async with progress_display(console, n, len(pairs)) as update:
                while True:
                    operator.check_alive()
                    sids, rels = view.current(IDENTITIES), view.current(RELATIONSHIPS)
                    elapsed = time.monotonic() - t0
                    ready_ids = sum(1 for b in sids if is_ready(b))
                    ready_rels = sum(1 for b in rels if is_ready(b))
                    if pair_ready is None and (ready_rels or (not pairs and ready_ids)):
                        pair_ready = elapsed
                    rss, _ = operator.memory()
                    peak_rss = max(peak_rss, rss)
                    update(ready_ids, ready_rels,
                           f"operator CPU {operator.cpu() - cpu0:.1f}s  RSS {rss:.0f} MB")
                    if ready_ids == n and ready_rels == len(pairs) and len(sids) == n:
                        ready = True
                        break
                    pending = [b for b in [*sids, *rels] if not is_ready(b)]
                    # everything still pending is Stalled (e.g. a hub whose trust Secret would
                    # outgrow 1 MiB): waiting longer cannot help, so report it now
                    stuck = len(sids) == n and len(rels) == len(pairs) and all(map(is_stalled, pending))
                    if elapsed > opts.timeout or stuck:
                        waiting = [f"{b['kind']} {b['metadata']['name']}: {not_ready_reason(b)[:300]}"
                                   for b in pending][:10]
                        result["stalled"] = len(pending) if stuck else 0
                        result["seconds_to_stalled"] = round(elapsed, 3) if stuck else None
                        break
                    await asyncio.sleep(opts.poll)
            t_ready = time.monotonic() - t0
        cpu_ready = operator.cpu()
        servers_ready = api.server_cpu()
        if profiler is not None:
            await stop_py_spy(profiler)
        rss, hwm = operator.memory()
        counts_ready = await api.stats()
        until_ready = counts_ready - counts0
        result.update({
            "ready": ready,
            "seconds_to_ready": round(t_ready, 3) if ready else None,
            "pair_ready_seconds": round(pair_ready, 3) if pair_ready is not None else None,
            "operator_cpu_seconds": round(cpu_ready - cpu0, 3),
            **cpu_used(servers0, servers_ready, "{}_cpu_seconds"),
            "api_reads": until_ready.total(actions=READS),
            "api_writes": until_ready.total(actions=WRITES),
            "api_requests": until_ready.breakdown(),
            "operator_rss_mb": round(rss, 1),
            "operator_peak_rss_mb": round(max(hwm, peak_rss), 1),
            "largest_write_bytes": dict(counts_ready.largest_write_bytes),
            "trust_secret_data_bytes": await trust_secret_size(api.driver_config()),
        })
        if not ready:
            result["not_ready"] = waiting
            return result

        # ---- the tail of convergence: until the operator stops sending requests -----------
        counts_quiet = await wait_quiet(api, limit=120)
        settle = counts_quiet - counts_ready
        result["settle_writes"] = settle.total(actions=WRITES)
        result["settle_requests"] = settle.breakdown()
        result["operator_cpu_seconds_total"] = round(operator.cpu() - cpu0, 3)
        result.update(cpu_used(servers0, api.server_cpu(), "{}_cpu_seconds_total"))
        result["operator_rss_mb_settled"] = round(operator.memory()[0], 1)
        await operator.stop()

        # ---- steady state: restart (a full resync from scratch) + timed resyncs ---------
        counts_b0 = await api.stats()
        servers_b0 = api.server_cpu()
        operator = await Operator.start(api, workers=opts.workers, resync=opts.steady_resync,
                                        log=workdir / f"operator-{index + 1}-steady.log", tree=opts.operator_tree)
        restart = time.monotonic()
        wanted = (opts.steady_periods + 1) * n

        async def resynced() -> bool:
            assert operator is not None
            operator.check_alive()
            fetched = ((await api.stats()) - counts_b0).total(actions=FETCH, plural="serviceidentities")
            return fetched >= wanted

        try:
            await wait_until(resynced, interval=0.25, what=f"{opts.steady_periods} resyncs after a restart",
                             limit=opts.timeout + (opts.steady_periods + 2) * opts.steady_resync * 1.2)
        except TimeoutError as exc:  # report what was seen; the pass count shows how far it got
            result["steady_state_error"] = str(exc)
        counts_b1 = await wait_quiet(api, limit=max(10.0, opts.steady_resync / 2),
                                     quiet_for=min(1.0, opts.steady_resync / 3))
        steady = counts_b1 - counts_b0
        fetched = steady.total(actions=FETCH, plural="serviceidentities")
        result.update({
            "steady_state_writes": steady.total(actions=WRITES),
            "steady_state_reads": steady.total(actions=READS),
            "steady_state_passes": round(fetched / n, 2) if n else 0,
            "steady_state_seconds": round(time.monotonic() - restart, 3),
            "steady_state_cpu_seconds": round(operator.cpu(), 3),
            **cpu_used(servers_b0, api.server_cpu(), "steady_state_{}_cpu_seconds"),
            "steady_state_requests": steady.breakdown(),
            "restarted_operator_rss_mb": round(operator.memory()[0], 1),
            "restarted_operator_peak_rss_mb": round(operator.memory()[1], 1),
        })
        return result
    finally:
        if operator is not None:
            await operator.stop()
        await api.stop()


def cpu_used(before: Mapping[str, float], after: Mapping[str, float], key: str) -> dict[str, float]:
    """Each server's CPU seconds between two readings, under ``key.format(name)``."""
    return {key.format(name): round(after[name] - before[name], 3) for name in after}


async def start_py_spy(directory: Path, pid: int, name: str) -> asyncio.subprocess.Process:
    """Sample the operator (all threads, without pausing it) until :func:`stop_py_spy`."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return await asyncio.create_subprocess_exec(
        exe, "record", "--pid", str(pid), "--rate", "100", "--nonblocking", "--format", "raw", *PY_SPY_EXTRA,
        "-o", str(directory / f"{name}.txt"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)


async def stop_py_spy(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(process.wait(), timeout=60)
    except TimeoutError:
        process.kill()
        await process.wait()


# ======================================================================================
# Summary
# ======================================================================================
MEDIAN_FIELDS = ("seconds_to_ready", "pair_ready_seconds", "apply_seconds", "operator_cpu_seconds",
                 "operator_cpu_seconds_total", "api_reads", "api_writes",
                 "settle_writes", "operator_rss_mb", "operator_peak_rss_mb", "operator_rss_mb_settled",
                 "operator_baseline_rss_mb", "operator_startup_cpu_seconds", "steady_state_reads",
                 "steady_state_passes", "steady_state_seconds", "steady_state_cpu_seconds",
                 "restarted_operator_rss_mb", "restarted_operator_peak_rss_mb", "preload_seconds",
                 "trust_secret_data_bytes", "api_startup_seconds")
#: per API server (``{}``: its name), over the phases of the operator's CPU figures
SERVER_FIELDS = ("{}_cpu_seconds", "{}_cpu_seconds_total", "steady_state_{}_cpu_seconds")


def server_fields(api: str) -> list[str]:
    return [key.format(name) for name in APIS[api].servers for key in SERVER_FIELDS]


def crypto_floor_cpu_seconds(identities: int, sample: int = 50) -> float:
    """As :func:`crypto_floor_seconds`, timed in CPU seconds (``time.process_time``) rather than
    wall-clock seconds: the same unit as ``operator_cpu_seconds``, and not inflated when other
    processes compete for the cores."""
    n = max(1, min(identities, sample))
    totals = [sum(issue_identity(KeyAlgorithm.ECDSAP256, clock=time.process_time).values()) for _ in range(n)]
    return statistics.fmean(totals) * identities


def summarize(opts: Options, runs: list[dict[str, Any]], floors: tuple[float, float], info: Mapping[str, Any],
              ) -> dict[str, Any]:
    def median(key: str) -> float | int | None:
        values = [r[key] for r in runs if r.get(key) is not None]
        if not values:
            return None
        value = statistics.median(values)
        return round(value, 3) if isinstance(value, float) else value

    summary: dict[str, Any] = {
        "identities": opts.identities,
        "relationships": len(relationship_pairs(opts.identities, opts.topology)),
        "topology": opts.topology,
        "api": opts.api,
        "unrelated_secrets": opts.unrelated_secrets,
        "server_side_selectors": opts.label_selectors,
        "runs_completed": sum(1 for r in runs if r.get("ready")),
        "runs_requested": len(runs),
        "workers": opts.workers,
        "crypto_floor_seconds": round(floors[0], 3),
        "crypto_floor_cpu_seconds": round(floors[1], 3),
    }
    for key in (*MEDIAN_FIELDS, *server_fields(opts.api)):
        summary[key] = median(key)
    cpu = summary["operator_cpu_seconds"]
    summary["cpu_to_crypto_floor"] = round(cpu / floors[0], 2) if cpu is not None and floors[0] else None
    summary["cpu_to_crypto_floor_cpu"] = round(cpu / floors[1], 2) if cpu is not None and floors[1] else None
    writes = [r["steady_state_writes"] for r in runs if r.get("steady_state_writes") is not None]
    summary["steady_state_writes"] = max(writes) if writes else None
    summary["steady_resync_seconds"] = opts.steady_resync
    summary["machine"] = dict(info)
    summary["runs"] = runs
    return summary


def summary_table(summary: Mapping[str, Any]) -> Table:
    table = Table(title="trustwire scale", title_justify="left",
                  caption=f"{summary['identities']} identities, {summary['topology']}, {summary['api']} API, "
                          f"{summary['unrelated_secrets']} unrelated Secrets; medians of "
                          f"{summary['runs_completed']}/{summary['runs_requested']} runs "
                          "(steady_state_writes: maximum)", caption_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("relationships", "seconds_to_ready", "pair_ready_seconds", "apply_seconds",
                "operator_cpu_seconds", "crypto_floor_seconds", "crypto_floor_cpu_seconds", "cpu_to_crypto_floor",
                "cpu_to_crypto_floor_cpu", *(f"{name}_cpu_seconds" for name in APIS[summary["api"]].servers),
                "api_reads", "api_writes", "settle_writes", "steady_state_writes", "steady_state_passes",
                "operator_baseline_rss_mb", "operator_rss_mb", "operator_peak_rss_mb",
                "restarted_operator_rss_mb", "restarted_operator_peak_rss_mb"):
        table.add_row(key, str(summary.get(key)))
    return table


def _short(commit: str) -> str:
    done = subprocess.run(["git", "rev-parse", "--short", commit], cwd=HERE.parent, capture_output=True, text=True,
                          check=False)
    return done.stdout.strip() or commit


def source_version() -> str:
    """The checkout's commit, "+dirty" if operator/ has uncommitted changes."""
    root = HERE.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "operator"], cwd=root, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--identities", "-n", type=int, required=True, help="number of ServiceIdentities")
    parser.add_argument("--topology", choices=("star", "ring"), default="star")
    parser.add_argument("--unrelated-secrets", type=int, default=0, metavar="M",
                        help="unrelated Secrets (~1 KB, no trustwire label) stored before the operator "
                             "starts")
    parser.add_argument("--server-side-selectors", action="store_true",
                        help="let the emulator honour labelSelector on LIST/WATCH and limit/continue "
                             "pagination on LIST, as a real API server does (kmock ignores both)")
    parser.add_argument("--api", choices=tuple(APIS), default="kmock",
                        help="kmock: the emulator (default); real: the control plane of tests/cluster "
                             "(built by its build.sh), the operator with the chart's ServiceAccount token "
                             "behind a counting proxy")
    parser.add_argument("--runs", type=int, default=3, help="runs to take medians over (default 3)")
    parser.add_argument("--json", action="store_true", help="print one JSON object, no progress display")
    parser.add_argument("--workers", type=int, default=8, help="operator --workers (default 8)")
    parser.add_argument("--poll", type=float, default=None,
                        help="seconds between readiness checks of the watched objects "
                             "(default: N/1000 clamped to 0.05..1)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds to wait for Ready per run")
    parser.add_argument("--steady-resync", type=float, default=None,
                        help="--resync of the restarted operator (default: max(2, N/100) seconds)")
    parser.add_argument("--steady-periods", type=int, default=3, help="resyncs to observe after the restart")
    parser.add_argument("--keep-logs", type=Path,
                        help="keep the API's (emulator, proxy, control plane) and operator's logs in this directory")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="sample the operator with py-spy from baseline to Ready "
                             "(collapsed stacks in DIR)")
    parser.add_argument("--against", metavar="COMMIT",
                        help="A/B: alternate runs of this checkout's operator (a) and COMMIT's (b), the same "
                             "driver and API for both, and report each side's medians")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.identities < 1:
        parser.error("--identities must be >= 1")
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    if args.server_side_selectors and args.api != "kmock":
        parser.error("--server-side-selectors is kmock's: a real API server always applies label selectors")
    return args


async def run_all(sides: Mapping[str, Options], runs: int, console: Console | None,
                  workdir: Path) -> dict[str, list[dict[str, Any]]]:
    """``runs`` runs of each side, interleaved (a, b, a, b, …) so both meet the same machine."""
    results: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for index in range(runs):
        for side, opts in sides.items():
            if console is not None:
                label = f" ({side})" if len(sides) > 1 else ""
                console.print(f"run {index + 1}/{runs}{label}: {opts.identities} identities, {opts.topology}, "
                              f"{opts.api} API, {opts.unrelated_secrets} unrelated Secrets")
            result = await one_run(opts, index, console, workdir / side)
            results[side].append(result)
            if console is not None:
                console.print(f"  ready={result.get('ready')} in {result.get('seconds_to_ready')}s, operator CPU "
                              f"{result.get('operator_cpu_seconds')}s, RSS {result.get('operator_rss_mb')} MB, "
                              f"steady-state writes {result.get('steady_state_writes')}")
            if not result.get("ready"):
                return results
    return results


@contextlib.contextmanager
def exported_operator(commit: str) -> Iterator[Path]:
    """``operator/`` of ``commit`` in a temporary directory (what ``PYTHONPATH`` points at)."""
    with tempfile.TemporaryDirectory(prefix="trustwire-ab-") as tmp:
        archive = subprocess.run(["git", "archive", commit, "operator"], cwd=HERE.parent, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp) / "operator"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    n = args.identities
    opts = Options(
        identities=n, topology=args.topology, unrelated_secrets=args.unrelated_secrets, workers=args.workers,
        poll=args.poll if args.poll is not None else min(1.0, max(0.05, n / 1000)),
        timeout=args.timeout,
        steady_resync=args.steady_resync if args.steady_resync is not None else max(2.0, n / 100),
        steady_periods=args.steady_periods, keep_logs=args.keep_logs, verbose=args.verbose,
        py_spy=args.py_spy, label_selectors=args.server_side_selectors, api=args.api)
    console = None if args.json else Console(stderr=True)
    if args.py_spy:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = dict(machine())
    info["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    info["trustwire_commit"] = source_version()
    if console is not None:
        console.print(f"crypto floor for {n} identities …")
    floors = (crypto_floor_seconds(n, sample=50), crypto_floor_cpu_seconds(n))
    with contextlib.ExitStack() as stack:
        sides = {"a": opts}
        if args.against:
            tree = stack.enter_context(exported_operator(args.against))
            sides["b"] = replace(opts, operator_tree=tree)
        if args.keep_logs:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            workdir = args.keep_logs
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="trustwire-scale-")))
        for side in sides:
            (workdir / side).mkdir(parents=True, exist_ok=True)
        results = asyncio.run(run_all(sides, args.runs, console, workdir))
    commits = {"a": info["trustwire_commit"], "b": _short(args.against) if args.against else None}
    summaries = {side: summarize(sides[side], runs, floors, info | {"trustwire_commit": commits[side]})
                 for side, runs in results.items()}
    if args.json:
        json.dump(summaries["a"] if not args.against else summaries, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        assert console is not None
        for summary in summaries.values():
            Console().print(summary_table(summary))
    return 0 if all(r.get("ready") for runs in results.values() for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
