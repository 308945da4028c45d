"""A rotation drill: real TLS endpoints and JWT verifiers fed exactly as pods are, probed
continuously while the operator rotates everything.

The emulator runs no controllers and no kubelet, so this module plays them:

* :class:`PodFiles` — a pod's view of its projected volume: a directory whose ``..data``
  symlink is swapped atomically to a new version, as the kubelet does;
* :class:`RolloutSimulator` — the Deployment controller + kubelet: when a Deployment's pod
  template changes (our ``trustwire.io/material-hash``), it bumps ``metadata.generation``
  (the API server's job), waits a per-workload rollout time, refreshes the pod's files from
  the Secrets *at that moment* and only then reports the rollout complete in
  ``status`` — the evidence the operator's rotation gates wait for;
* :class:`TLSEndpoint` — a TLS server on loopback requiring client certificates, which
  reloads its material whenever its pod's files change;
* :class:`Probe` — mutual-TLS handshakes and JWT sign/verify in both directions, counted.

Used by ``trustwire demo --rotate`` and by the zero-downtime tests; the same harness with
the distribution gate disabled records failures, which proves the probe sees outages.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from trustwire import names, pki
from trustwire.k8s.client import Client
from trustwire.k8s.resources import DEPLOYMENTS, SECRETS, decode_data
from trustwire.times import utcnow


class PodFiles:
    """A directory updated like a kubelet updates a projected volume (atomic symlink swap)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._version = 0
        self._lock = threading.Lock()

    @property
    def current(self) -> Path:
        """The current version's directory, resolved once: reading two files through the
        ``..data`` link could straddle a swap and pair a new key with an old certificate."""
        return (self.root / "..data").resolve()

    def update(self, files: Mapping[str, bytes]) -> None:
        with self._lock:
            self._version += 1
            version_dir = self.root / f"..v{self._version}"
            version_dir.mkdir()
            for key, value in files.items():
                (version_dir / key).write_bytes(value)
            tmp = self.root / "..data_tmp"
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(version_dir.name)
            os.replace(tmp, self.root / "..data")


async def mounted_files(client: Client, namespace: str, identity: str) -> dict[str, bytes]:
    """Exactly what the projected volume shows a pod: the union of the credentials and trust Secrets' keys."""
    files: dict[str, bytes] = {}
    for name in (names.credentials_secret(identity), *names.trust_secrets(identity)):
        files.update(decode_data(SECRETS, await client.get(SECRETS, namespace, name)))
    return files


@dataclasses.dataclass
class SimulatedWorkload:
    namespace: str
    deployment: str
    identity: str
    pod: PodFiles
    rollout_seconds: float
    rolled_hash: str | None = None
    rollouts: int = 0


class RolloutSimulator:
    """Plays the Deployment controller and the kubelet for a few Deployments."""

    def __init__(self, client: Client, workloads: list[SimulatedWorkload], *, interval: float = 0.05) -> None:
        self.client = client
        self.workloads = workloads
        self.interval = interval
        self._busy: set[str] = set()
        self._pending: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Until cancelled; cancelling also abandons rollouts in flight."""
        try:
            while True:
                for workload in self.workloads:
                    if workload.deployment not in self._busy:
                        await self._check(workload)
                await asyncio.sleep(self.interval)
        finally:
            for task in self._pending:
                task.cancel()

    async def _check(self, w: SimulatedWorkload) -> None:
        body = await self.client.get(DEPLOYMENTS, w.namespace, w.deployment)
        if body is None:
            return
        template = (body.get("spec") or {}).get("template") or {}
        wanted = ((template.get("metadata") or {}).get("annotations") or {}).get(names.MATERIAL_HASH_ANNOTATION)
        if wanted is None or wanted == w.rolled_hash:
            return
        self._busy.add(w.deployment)
        generation = int((body.get("metadata") or {}).get("generation") or 1) + 1
        await self.client.merge_patch(DEPLOYMENTS, w.namespace, w.deployment, {
            "metadata": {"generation": generation},
            "status": {"observedGeneration": generation - 1, "replicas": 1, "updatedReplicas": 0,
                       "availableReplicas": 1}})
        task = asyncio.create_task(self._finish(w, wanted, generation))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _finish(self, w: SimulatedWorkload, wanted: str, generation: int) -> None:
        try:
            await asyncio.sleep(w.rollout_seconds)
            files = await mounted_files(self.client, w.namespace, w.identity)
            w.pod.update(files)  # new pods start with the Secrets as they are now
            w.rolled_hash = wanted
            w.rollouts += 1
            await self.client.merge_patch(DEPLOYMENTS, w.namespace, w.deployment, {"status": {
                "observedGeneration": generation, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}})
        finally:
            self._busy.discard(w.deployment)


def _context(directory: Path, *, server: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_cert_chain(directory / "tls.crt", directory / "tls.key")
    ctx.load_verify_locations(cadata=(directory / "trust-bundle.pem").read_text() or None)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = not server
    return ctx


class TLSEndpoint:
    """A mutual-TLS server that reloads its material when its pod's files change."""

    def __init__(self, pod: PodFiles) -> None:
        self.pod = pod
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._ctx: tuple[str, ssl.SSLContext] | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _context(self) -> ssl.SSLContext:
        current = self.pod.current
        if self._ctx is None or self._ctx[0] != current.name:
            self._ctx = (current.name, _context(current, server=True))
        return self._ctx[1]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(2.0)
            try:
                with self._context().wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


@dataclasses.dataclass
class ProbeResult:
    ok: int = 0
    failed: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)

    def record(self, name: str, error: str | None) -> None:
        if error is None:
            self.ok += 1
        else:
            self.failed += 1
            if len(self.failures) < 20:
                self.failures.append(f"{name}: {error}")


@dataclasses.dataclass
class Side:
    name: str
    hostname: str
    pod: PodFiles
    endpoint: TLSEndpoint


def handshake(client: Side, server: Side) -> str | None:
    try:
        ctx = _context(client.pod.current, server=False)
        with socket.create_connection(("127.0.0.1", server.endpoint.port), timeout=2) as raw, \
                ctx.wrap_socket(raw, server_hostname=server.hostname) as tls:
            return None if tls.recv(2) == b"ok" else "no reply (server refused the client)"
    except (ssl.SSLError, OSError) as exc:
        return str(exc)[:200]


def token_check(signer: Side, verifier: Side, audience: str | None) -> str | None:
    now = utcnow()
    try:
        d = signer.pod.current
        key = pki.load_private_key((d / "jwt.key").read_bytes())
        kid = (d / "jwt.kid").read_text().strip()
        alg = pki.JwtAlgorithm(json.loads((d / "jwt.jwk").read_text())["alg"])
        v = verifier.pod.current
        peers = json.loads((v / "peers.json").read_text())
        issuer = next((p["issuer"] for p in peers if p["identity"] == signer.name), None)
        token = pki.sign_token(key, alg, kid, {"iss": issuer or "?", **({"aud": audience} if audience else {})},
                               now=now)
        jwks = json.loads((v / "peers.jwks").read_text())
        pki.verify_token(token, jwks, issuer=issuer, audience=audience, now=now)
    except (OSError, ValueError, KeyError, pki.PKIError, pki.TokenError) as exc:
        return str(exc)[:200]
    return None


class Probe:
    """Continuous mTLS handshakes and JWT verifications both ways, in a thread."""

    def __init__(self, a: Side, b: Side, *, audience: str | None, interval: float = 0.02) -> None:
        self.a, self.b, self.audience, self.interval = a, b, audience, interval
        self.result = ProbeResult()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for client, server in ((self.a, self.b), (self.b, self.a)):
                self.result.record(f"mTLS {client.name}->{server.name}", handshake(client, server))
                self.result.record(f"JWT {client.name}->{server.name}", token_check(client, server, self.audience))
            time.sleep(self.interval)

    def stop(self) -> ProbeResult:
        self._stop.set()
        self._thread.join(5)
        return self.result
