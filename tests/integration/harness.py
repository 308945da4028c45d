"""The integration harness: the real operator (its controller) against the real control
plane (``tests/cluster``), plus the helpers tests need to act like a user.

The operator authenticates with the chart's ServiceAccount token and talks to the apiserver
through :class:`tests.cluster.proxy.ApiProxy`, whose journal is the record of every request it
made (told apart by User-Agent: ``trustwire-operator``, or ``trustwire-operator/<identity>``).
The tests act as cluster admin with their own client (User-Agent ``trustwire-tests``, field
manager ``kubectl``), directly against the apiserver. The real controllers roll workloads out
and kwok marks their pods Ready.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import inspect
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, overload

from tests.cluster.controlplane import ControlPlane, ControlPlaneError
from tests.cluster.proxy import ApiProxy, Recorded
from trustwire import names
from trustwire.controller.reconciler import Controller
from trustwire.k8s.client import Client
from trustwire.k8s.errors import ApiError
from trustwire.k8s.resources import (
    CONFIGMAPS,
    ENROLLMENTS,
    EVENTS,
    IDENTITIES,
    RELATIONSHIPS,
    SECRETS,
    WORKLOADS,
    Resource,
    decode_data,
)

T = TypeVar("T")

NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
KINDS: dict[str, Resource] = {"Secret": SECRETS, "ConfigMap": CONFIGMAPS, "ServiceIdentity": IDENTITIES,
                              "TrustRelationship": RELATIONSHIPS, "Enrollment": ENROLLMENTS, "Namespace": NAMESPACES,
                              **WORKLOADS}
WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}
#: the operator's User-Agent, or its prefix (``trustwire-operator/<identity>`` with ``--identity``)
OPERATOR_AGENT = "trustwire-operator"


class Cluster:
    def __init__(self, plane: ControlPlane, client: Client, controller: Controller, proxy: ApiProxy) -> None:
        self.plane = plane
        self.client = client
        self.controller = controller
        self.proxy = proxy
        #: namespaces this test created (deleted, and waited for, when it ends)
        self.namespaces: set[str] = set()
        #: ids of the journal's records made while the apiserver restarted (:meth:`restart_apiserver`)
        self.unready: set[int] = set()

    # ---- acting like a user ------------------------------------------------------------
    async def ensure_namespace(self, namespace: str) -> None:
        if namespace in self.namespaces:
            return
        try:
            await self.client.create(NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace",
                                                        "metadata": {"name": namespace}})
        except ApiError as exc:
            if exc.status != 409:
                raise
        self.namespaces.add(namespace)

    async def apply(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create, or replace the spec/data/labels/annotations of, an object."""
        resource = KINDS[body["kind"]]
        meta = body["metadata"]
        namespace = meta.get("namespace")
        if namespace:
            await self.ensure_namespace(namespace)
        existing = await self.client.get(resource, namespace, meta["name"])
        if existing is None:
            return await self.client.create(resource, namespace, copy.deepcopy(dict(body)))
        patch: dict[str, Any] = {"metadata": {}}
        for key in ("spec", "data", "stringData"):
            if key in body:
                patch[key] = _replacing(existing.get(key), body[key])
        for key in ("labels", "annotations"):
            if key in meta:
                patch["metadata"][key] = meta[key]
        result = await self.client.merge_patch(resource, namespace, meta["name"], patch)
        assert result is not None
        return result

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        await self.client.delete(KINDS[kind], namespace, name)

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.client.get(KINDS[kind], namespace, name)

    async def data(self, kind: str, namespace: str, name: str) -> dict[str, bytes]:
        return decode_data(KINDS[kind], await self.get(kind, namespace, name))

    async def patch_secret_data(self, namespace: str, name: str, data: Mapping[str, bytes]) -> None:
        encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
        await self.client.merge_patch(SECRETS, namespace, name, {"data": encoded})

    async def restart_apiserver(self, down_seconds: float = 0.0) -> None:
        """Kill the apiserver (SIGKILL, as when it crashes: a graceful stop takes 15 s here)
        and start it again, in a thread (the operator shares this event loop). It serves
        before it is ready, and until its RBAC caches are filled it refuses everyone (403):
        the requests of that window are no verdict on the chart's RBAC (:attr:`unready`)."""
        first = len(self.proxy.journal)
        await asyncio.to_thread(self.plane.processes["kube-apiserver"].stop, sig=signal.SIGKILL)
        await asyncio.to_thread(self.plane.restart_apiserver, down_seconds)
        self.unready |= {id(r) for r in self.proxy.journal[first:]}

    # ---- waiting -------------------------------------------------------------------------
    async def wait_for(self, kind: str, namespace: str, name: str,
                       predicate: Callable[[dict[str, Any] | None], bool], *, timeout: float = 30.0,
                       what: str = "") -> dict[str, Any] | None:
        last: list[dict[str, Any] | None] = [None]

        async def matching() -> tuple[dict[str, Any] | None] | None:
            last[0] = await self.get(kind, namespace, name)
            return (last[0],) if predicate(last[0]) else None

        found: tuple[dict[str, Any] | None] = await until(matching, lambda: f"{kind} {namespace}/{name} {what}; "
                                              f"last: {(last[0] or {}).get('status')}", timeout=timeout)
        return found[0]

    async def wait_condition(self, kind: str, namespace: str, name: str, type_: str, status: str = "True",
                             reason: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        def ok(body: dict[str, Any] | None) -> bool:
            c = condition(body, type_)
            return c is not None and c["status"] == status and (reason is None or c["reason"] == reason)

        body = await self.wait_for(kind, namespace, name, ok, timeout=timeout,
                                   what=f"to have {type_}={status} {reason or ''}")
        assert body is not None
        return body

    async def settle(self, timeout: float = 30.0) -> None:
        """Until the controller has nothing queued or running (twice, to let watch events land)."""
        for _ in range(2):
            await asyncio.sleep(0.3)
            await self.controller.wait_idle(timeout)

    # ---- the request log -----------------------------------------------------------------
    def operator_requests(self) -> list[Recorded]:
        return self.proxy.requests_by(OPERATOR_AGENT)

    def operator_writes(self) -> list[Recorded]:
        return [r for r in self.operator_requests() if r.method in WRITE_METHODS]

    async def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return [e for e in await self.client.list(EVENTS, namespace)
                if (e.get("involvedObject") or {}).get("name") == name]

    async def events_of(self, namespace: str, name: str, reason: str, timeout: float = 15.0) -> list[dict[str, Any]]:
        """The Events of ``reason`` about the object, once there is one: the operator posts an
        Event after the writes it tells of, so a test that saw the status waits for it."""
        async def posted() -> list[dict[str, Any]] | None:
            return [e for e in await self.events(namespace, name) if e["reason"] == reason] or None

        found: list[dict[str, Any]] = await until(posted, f"a {reason} Event about {namespace}/{name}", timeout=timeout)
        return found


def condition(body: Mapping[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for c in ((body or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def ready_with_peers(body: Mapping[str, Any] | None, peers: int) -> bool:
    """Ready, and its status counts ``peers`` peers (an identity can be Ready before its
    relationships reach it)."""
    ready = condition(body, "Ready")
    return ready is not None and ready["status"] == "True" and ((body or {}).get("status") or {}).get(
        "peerCount") == peers


def _replacing(old: Any, new: Any) -> Any:
    """A merge patch that makes ``old`` equal to ``new`` (nulls for removed keys)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = {k: None for k in old if k not in new}
        out.update({k: _replacing(old.get(k), v) if k in old else v for k, v in new.items()})
        return out
    return new


def identity(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "trustwire.io/v1alpha1", "kind": "ServiceIdentity",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def relationship(name: str, namespace: str, *between: tuple[str, str | None], **spec: Any) -> dict[str, Any]:
    items = [{"identity": i} | ({"namespace": ns} if ns else {}) for i, ns in between]
    return {"apiVersion": "trustwire.io/v1alpha1", "kind": "TrustRelationship",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"between": items, **spec}}


def enrollment(name: str, namespace: str, identity_name: str, common_name: str | None = None,
               **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "trustwire.io/v1alpha1", "kind": "Enrollment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"identity": identity_name, "subject": {"commonName": common_name or name}, **spec}}


def deployment(name: str, namespace: str, containers: tuple[str, ...] = ("app",), kind: str = "Deployment",
               ) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": c, "image": f"example/{c}:1"}
                                                          for c in containers]}}}}


def managed_secret_names(identity_name: str) -> tuple[str, str, str]:
    return (names.ca_secret(identity_name), names.credentials_secret(identity_name),
            names.trust_secret(identity_name))


# ---- the operator as a real process ----------------------------------------------------
REPO = Path(__file__).resolve().parents[2]


class OperatorProcess:
    """``trustwire run`` as a process of its own, so it can die the hard way (SIGKILL).

    It authenticates with what ``kubeconfig`` holds (the chart's ServiceAccount token) and
    talks to the journaling proxy; its requests carry ``trustwire-operator/<identity>``
    (``trustwire-operator`` without one), so each replica's are told apart. Each start
    writes a log of its own under ``log_dir``."""

    def __init__(self, kubeconfig: Path, proxy: ApiProxy, log_dir: Path, *args: str,
                 identity: str | None = None) -> None:
        self.kubeconfig, self.proxy, self.log_dir = kubeconfig, proxy, log_dir
        self.args, self.identity = args, identity
        self.agent = f"trustwire-operator/{identity}" if identity else "trustwire-operator"
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        #: where this start's requests begin in the proxy journal
        self.since = 0

    @property
    def log(self) -> Path:
        return self.log_dir / f"operator-{self.identity or 'standalone'}-{self.starts}.log"

    async def start(self) -> None:
        self.starts += 1
        self.since = len(self.proxy.journal)
        identity = ["--identity", self.identity] if self.identity else []
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "trustwire.cli", "run", "--kubeconfig", str(self.kubeconfig),
                "--liveness", "", "--metrics-port", "0", *identity, *self.args,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT, cwd=str(REPO))

    def requests(self) -> list[Recorded]:
        """This start's requests (not an earlier start's, nor another replica's)."""
        return [r for r in self.proxy.journal[self.since:] if r.user_agent == self.agent]

    async def wait_request(self, predicate: Callable[[Recorded], bool], what: str, timeout: float = 30.0) -> None:
        """Until this start has made a request that ``predicate`` accepts."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if any(predicate(r) for r in self.requests()):
                return
            if self.proc is None or self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        code = self.proc.returncode if self.proc is not None else None
        raise AssertionError(f"{self.agent} never {what} (exit code {code}); its log {self.log}:\n{_tail(self.log)}")

    def kill_now(self) -> None:
        """SIGKILL, synchronously (from inside a proxy hook: the request at hand is the last)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def kill(self) -> None:
        self.kill_now()
        if self.proc is not None:
            await self.proc.wait()
        self.proc = None

    async def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (how a rolling update stops a pod) and the exit code; SIGKILL past ``timeout``."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
        return proc.returncode


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ---- every version of an object, as the API served them ---------------------------------
Key = tuple[str, str, str]  # (plural, namespace, name)


class History:
    """Every version of every object of some kinds, recorded by the test's own watches
    (cluster-wide, as admin, straight to the apiserver) from before the operator acts.

    A deletion is recorded as ``None``. A watch the server ends is resumed from the last
    version seen, so no version is missed; a 410 (the version is gone) would leave a gap and
    is recorded in :attr:`gaps`, which :meth:`sync` refuses."""

    def __init__(self, client: Client, resources: Sequence[Resource]) -> None:
        self.client, self.resources = client, tuple(resources)
        self.versions: dict[Key, list[dict[str, Any] | None]] = {}
        self.gaps: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> History:
        for resource in self.resources:
            version = None
            async for page in self.client.pages(resource):
                for body in page.items:
                    self._record(resource, body, deleted=False)
                version = page.resource_version
            self._tasks.append(asyncio.create_task(self._watch(resource, version), name=f"history-{resource.plural}"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _record(self, resource: Resource, body: Mapping[str, Any], deleted: bool) -> None:
        meta = body.get("metadata") or {}
        versions = self.versions.setdefault((resource.plural, meta.get("namespace") or "", meta["name"]), [])
        if deleted:
            versions.append(None)
        elif not versions or versions[-1] is None or \
                versions[-1]["metadata"]["resourceVersion"] != meta.get("resourceVersion"):
            versions.append(dict(body))

    async def _watch(self, resource: Resource, version: str | None) -> None:
        while True:
            try:
                async for event in self.client.watch(resource, resource_version=version, timeout_seconds=60):
                    body = event.get("object") or {}
                    version = (body.get("metadata") or {}).get("resourceVersion") or version
                    if event.get("type") != "BOOKMARK":
                        self._record(resource, body, event.get("type") == "DELETED")
            except ApiError as exc:
                if exc.status == 410:
                    self.gaps.append(f"{resource.plural}: {exc}")
                    version = None
                await asyncio.sleep(0.2)

    async def sync(self, timeout: float = 10.0) -> None:
        """Until every object the API serves now has its current version recorded."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            behind = [f"{r.plural} {b['metadata'].get('namespace')}/{b['metadata']['name']}"
                      for r in self.resources for b in await self.client.list(r) if not self._has(r, b)]
            assert not self.gaps, f"the history has gaps: {self.gaps}"
            if not behind:
                return
            assert asyncio.get_running_loop().time() < deadline, f"the history's watches lag behind: {behind}"
            await asyncio.sleep(0.1)

    def _has(self, resource: Resource, body: Mapping[str, Any]) -> bool:
        meta = body["metadata"]
        versions = self.versions.get((resource.plural, meta.get("namespace") or "", meta["name"])) or [None]
        return versions[-1] is not None and versions[-1]["metadata"]["resourceVersion"] == meta["resourceVersion"]

    def of(self, plural: str, namespace: str, name: str) -> list[dict[str, Any]]:
        """The versions of one object, oldest first (deletions left out)."""
        return [v for v in self.versions.get((plural, namespace, name), []) if v is not None]


class ProcessCluster(Cluster):
    """A :class:`Cluster` whose operators are processes the test starts, kills and restarts
    (:meth:`spawn`) instead of one in-process controller."""

    def __init__(self, plane: ControlPlane, client: Client, proxy: ApiProxy, kubeconfig: Path,
                 log_dir: Path) -> None:
        super().__init__(plane, client, None, proxy)  # type: ignore[arg-type]  # no controller in this process
        self.kubeconfig, self.log_dir = kubeconfig, log_dir
        self.processes: list[OperatorProcess] = []

    def spawn(self, *args: str, identity: str | None = None) -> OperatorProcess:
        """An operator process (not started yet) with ``trustwire run`` options ``args``."""
        process = OperatorProcess(self.kubeconfig, self.proxy, self.log_dir, *args, identity=identity)
        self.processes.append(process)
        return process

    async def settle(self, timeout: float = 30.0, quiet: float = 1.5) -> None:
        """Until the operators have written nothing for ``quiet`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last, since = -1, loop.time()
        while loop.time() < deadline:
            writes = len(self.operator_writes())
            if writes != last:
                last, since = writes, loop.time()
            elif loop.time() - since >= quiet:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the operators never went quiet for {quiet} s within {timeout} s")


# ---- admission policies ------------------------------------------------------------------
ADMISSION_V1 = "/apis/admissionregistration.k8s.io/v1"


def refused_dry_run(plane: ControlPlane, method: str, path: str, body: Any = None) -> bool:
    """Whether the admin's dry run of a request is refused (an admission policy in force).
    An object that is gone (404) is refused by nobody."""
    try:
        plane.request(method, f"{path}?dryRun=All", body)
    except ControlPlaneError as exc:
        return exc.status != 404
    return False


@contextlib.asynccontextmanager
async def denying_policy(plane: ControlPlane, name: str, namespace: str, rules: list[dict[str, Any]],
                         expression: str, message: str, enforced: Callable[[], bool],
                         timeout: float = 30.0) -> AsyncIterator[None]:
    """A ValidatingAdmissionPolicy and its ``Deny`` binding, limited to ``namespace``, that
    refuses the requests ``rules`` match unless the CEL ``expression`` holds, saying
    ``message`` (422 Invalid). The apiserver loads policies asynchronously: in force once
    ``enforced()`` (a dry run, run in a thread) says so; removed, and out of force, on exit."""
    policy = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
              "metadata": {"name": name},
              "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": rules},
                       "validations": [{"expression": expression, "message": message}]}}
    binding = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
               "metadata": {"name": name},
               "spec": {"policyName": name, "validationActions": ["Deny"],
                        "matchResources": {"namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": namespace}}}}}
    await asyncio.to_thread(plane.request, "POST", f"{ADMISSION_V1}/validatingadmissionpolicies", policy)
    await asyncio.to_thread(plane.request, "POST", f"{ADMISSION_V1}/validatingadmissionpolicybindings", binding)
    try:
        await until(lambda: asyncio.to_thread(enforced), f"policy {name} in force", timeout=timeout, interval=0.2)
        yield
    finally:
        for kind in ("validatingadmissionpolicybindings", "validatingadmissionpolicies"):
            await asyncio.to_thread(plane.request, "DELETE", f"{ADMISSION_V1}/{kind}/{name}")
        async def lifted() -> bool:
            return not await asyncio.to_thread(enforced)
        await until(lifted, f"policy {name} out of force", timeout=timeout, interval=0.2)


@overload
async def until(check: Callable[[], Awaitable[T | None]], what: str | Callable[[], str], *,
                timeout: float = 20.0, interval: float = 0.1) -> T: ...
@overload
async def until(check: Callable[[], T | None], what: str | Callable[[], str], *,
                timeout: float = 20.0, interval: float = 0.1) -> T: ...
async def until(check: Callable[[], Any], what: str | Callable[[], str], *,
                timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll ``check`` (plain or async) until it returns something true, and return that.

    The one way the integration tests wait. At the deadline it fails naming ``what``; give a
    function instead of a text to show the evidence as it stands then (what is left, the
    last status), which is what one needs to read a failure in CI.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        value = await result if inspect.isawaitable(result) else result
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what() if callable(what) else what}")
        await asyncio.sleep(interval)
