"""A real Kubernetes control plane on 127.0.0.1, from the binaries ``build.sh`` makes.

etcd → kube-apiserver (RBAC authorizer, the default admission chain) → kube-controller-manager
(workload, garbage-collector, namespace, service-account and RBAC-aggregation controllers) →
kube-scheduler → kwok, which keeps fake Nodes Ready and marks the pods scheduled onto them
Running and Ready, so Deployments, StatefulSets and DaemonSets really roll out without a
kubelet. Every component is a process of its own (its own process group, its log under
``WORKDIR/logs``), bound to loopback on a free port.

Used by ``up.py`` (a cluster to try trustwire on) and by the tests' session fixture. Only the
standard library and ``cryptography``: the harness must not lean on the code it tests.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent
SERVICE_CIDR = "10.96.0.0/16"
#: kwok's pod addresses: they exist only as status fields, nothing ever dials them
POD_CIDR = "10.244.0.0/16"
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
CONTROLLERS = ",".join([
    "deployment-controller", "replicaset-controller", "statefulset-controller", "daemonset-controller",
    "garbage-collector-controller", "namespace-controller",
    "serviceaccount-controller", "serviceaccount-token-controller", "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller", "disruption-controller", "pod-garbage-collector-controller",
])
#: Where :func:`binaries` looks first: a directory holding a complete build.
BIN_ENV = "TESTCLUSTER_BIN"


class ControlPlaneError(RuntimeError):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        #: the HTTP status of a refused :meth:`ControlPlane.request`
        self.status = status


def binaries() -> Path:
    """The directory of a complete build: ``$TESTCLUSTER_BIN``, else what ``build.sh`` prints
    (at once when its cache entry exists). Without either, :class:`ControlPlaneError` says why.
    """
    if os.environ.get(BIN_ENV):
        return Path(os.environ[BIN_ENV])
    if shutil.which("go") is None:
        raise ControlPlaneError(f"no Go toolchain and ${BIN_ENV} unset: cannot build the control plane "
                                f"(tests/cluster/build.sh needs Go >= 1.24)")
    done = subprocess.run(["bash", str(HERE / "build.sh")], stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise ControlPlaneError(f"tests/cluster/build.sh failed (exit {done.returncode}); see its output above")
    return Path(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


# ---- PKI ----------------------------------------------------------------------------------
def _pem_key(key: Any) -> bytes:
    return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))


class _CA:
    """The cluster CA: serves the apiserver's certificate and signs client certificates."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trustwire-testcluster-ca")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, common_name: str, groups: Sequence[str] = (), *, server: bool = False) -> tuple[bytes, bytes]:
        """A certificate and PKCS#8 key; for clients the apiserver reads CN as user, O as groups."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        subject += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        now = dt.datetime.now(dt.UTC)
        builder = (x509.CertificateBuilder().subject_name(x509.Name(subject)).issuer_name(self.cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage(
                       [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.DNSName("kubernetes.default.svc"),
                 x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


# ---- processes ----------------------------------------------------------------------------
class _Process:
    def __init__(self, name: str, argv: list[str], logs: Path) -> None:
        self.name, self.argv = name, argv
        self.log_path = logs / f"{name}.log"
        self._log: IO[bytes] | None = None
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)

    def check_alive(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            code = None if self.popen is None else self.popen.returncode
            raise ControlPlaneError(f"{self.name} exited ({code}):\n{_tail(self.log_path)}")

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
        """Signal this process's own group (never anyone else's), then reap it."""
        if self.popen is not None and self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None


def _wait(what: str, probe: Callable[[], bool], timeout: float, processes: Sequence[_Process]) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        for process in processes:
            process.check_alive()
        try:
            if probe():
                return
        except (OSError, ValueError, ControlPlaneError) as exc:
            last = exc
        time.sleep(0.2)
    tails = "\n".join(f"==== {p.name} ====\n{_tail(p.log_path)}" for p in processes)
    raise ControlPlaneError(f"timed out after {timeout:.0f}s waiting for {what} ({last!r})\n{tails}")


# ---- the control plane --------------------------------------------------------------------
class ControlPlane:
    """Start with :meth:`start`, stop with :meth:`stop`; ``admin_kubeconfig`` is cluster-admin."""

    def __init__(self, bindir: Path, workdir: Path) -> None:
        self.bin, self.dir = bindir, workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.etcd_port, self.peer_port, self.api_port = free_port(), free_port(), free_port()
        self.server = f"https://127.0.0.1:{self.api_port}"
        self.ca = _CA()
        self.processes: dict[str, _Process] = {}
        self.admin_kubeconfig = workdir / "admin.kubeconfig"
        self.startup_seconds = 0.0

    # ---- files
    def _write(self, name: str, data: bytes, mode: int = 0o600) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        path.chmod(mode)
        return path

    def kubeconfig(self, name: str, user: Mapping[str, str], *, server: str | None = None) -> Path:
        """A kubeconfig file for ``user`` (its ``users[].user`` fields) against this cluster."""
        config = {"apiVersion": "v1", "kind": "Config", "current-context": name,
                  "clusters": [{"name": "testcluster", "cluster": {
                      "server": server or self.server,
                      "certificate-authority-data": base64.b64encode(self.ca.pem).decode()}}],
                  "users": [{"name": name, "user": dict(user)}],
                  "contexts": [{"name": name, "context": {"cluster": "testcluster", "user": name}}]}
        return self._write(f"{name}.kubeconfig", json.dumps(config, indent=2).encode())

    def _pki(self) -> None:
        self._write("ca.crt", self.ca.pem, 0o644)
        cert, key = self.ca.issue("kube-apiserver", server=True)
        self._write("apiserver.crt", cert, 0o644)
        self._write("apiserver.key", key)
        signing = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._write("sa.key", _pem_key(signing))
        self._write("sa.pub", signing.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
        cert, key = self.ca.issue("trustwire-testcluster-admin", ["system:masters"])
        self._admin_cert, self._admin_key = self._write("admin.crt", cert), self._write("admin.key", key)
        self.kubeconfig("admin", {"client-certificate-data": base64.b64encode(cert).decode(),
                                  "client-key-data": base64.b64encode(key).decode()})

    def user_kubeconfig(self, user: str, groups: Sequence[str] = ()) -> Path:
        """Any user and groups, authenticated by a client certificate (CN=user, O=groups)."""
        cert, key = self.ca.issue(user, groups)
        return self.kubeconfig(f"user-{user}", {"client-certificate-data": base64.b64encode(cert).decode(),
                                                "client-key-data": base64.b64encode(key).decode()})

    # ---- the admin's requests
    def _ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.dir / "ca.crt"))
        context.load_cert_chain(str(self._admin_cert), str(self._admin_key))
        return context

    def request(self, method: str, path: str, body: Any = None, *,
                content_type: str = "application/json") -> Any:
        """One admin request; JSON in and out. A 404 on GET is None; other errors raise."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, data=data, method=method,  # noqa: S310 - https
                                         headers={"Content-Type": content_type, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self._ssl(), timeout=30) as answer:  # noqa: S310
                raw = answer.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and method == "GET":
                return None
            raise ControlPlaneError(f"{method} {path}: {exc.code} {exc.read()[:500]!r}", status=exc.code) from None
        return json.loads(raw) if raw else None

    def kubectl(self, *args: str, input: str | None = None, kubeconfig: Path | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the kubectl built with the control plane (admin unless ``kubeconfig`` says otherwise)."""
        done = subprocess.run([str(self.bin / "kubectl"), f"--kubeconfig={kubeconfig or self.admin_kubeconfig}",
                               *args], input=input, capture_output=True, text=True, timeout=120, check=False)
        if check and done.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
        return done

    def service_account_token(self, namespace: str, name: str, seconds: int = 86400) -> str:
        """A bound token for a ServiceAccount, from the TokenRequest API."""
        answer = self.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                              {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                               "spec": {"expirationSeconds": seconds}})
        return str(answer["status"]["token"])

    # ---- start and stop
    def _add(self, name: str, argv: list[str]) -> _Process:
        process = _Process(name, argv, self.logs)
        self.processes[name] = process
        process.start()
        return process

    def _apiserver_argv(self) -> list[str]:
        d = self.dir
        return [
            str(self.bin / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1", f"--secure-port={self.api_port}",
            # A loopback address is invalid in the kubernetes Endpoints; with no reconciler
            # nothing writes it, and no host address or default route is needed.
            "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
            f"--cert-dir={d / 'apiserver-certs'}",
            f"--tls-cert-file={d / 'apiserver.crt'}", f"--tls-private-key-file={d / 'apiserver.key'}",
            f"--client-ca-file={d / 'ca.crt'}", "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={d / 'sa.pub'}", f"--service-account-signing-key-file={d / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--allow-privileged=true",
            # No node-lifecycle controller runs to lift the not-ready taint this plugin puts on
            # every new Node; kwok reports the Nodes Ready itself.
            "--disable-admission-plugins=TaintNodesByCondition",
            "--profiling=false", "--v=1",
        ]

    def start(self) -> ControlPlane:
        began = time.monotonic()
        self._pki()
        etcd_url, peer_url = f"http://127.0.0.1:{self.etcd_port}", f"http://127.0.0.1:{self.peer_port}"
        etcd = self._add("etcd", [
            str(self.bin / "etcd"), "--name=default", f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}", "--unsafe-no-fsync=true",
            "--auto-compaction-mode=periodic", "--auto-compaction-retention=5m", "--log-level=warn"])
        _wait("etcd /health", lambda: json.loads(urllib.request.urlopen(  # noqa: S310 - loopback http
            f"{etcd_url}/health", timeout=2).read()).get("health") == "true", 30, [etcd])
        self._add("kube-apiserver", self._apiserver_argv())
        self.wait_apiserver()
        kc = str(self.admin_kubeconfig)
        common = [f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
                  "--bind-address=127.0.0.1", "--leader-elect=false", "--kube-api-qps=200", "--kube-api-burst=400",
                  "--v=1"]
        self._add("kube-controller-manager", [
            str(self.bin / "kube-controller-manager"), *common, f"--secure-port={free_port()}",
            "--use-service-account-credentials=false", f"--controllers={CONTROLLERS}",
            f"--root-ca-file={self.dir / 'ca.crt'}", f"--service-account-private-key-file={self.dir / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10", "--concurrent-gc-syncs=20", "--concurrent-namespace-syncs=10"])
        self._add("kube-scheduler", [str(self.bin / "kube-scheduler"), *common, f"--secure-port={free_port()}"])
        self._add("kwok", [
            str(self.bin / "kwok"), f"--kubeconfig={kc}", f"--config={self.bin / 'kwok-stages.yaml'}",
            "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
            f"--cidr={POD_CIDR}", "--node-ip=10.255.0.1", "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{free_port()}"])
        self.add_node("kwok-node-0")
        self.startup_seconds = time.monotonic() - began
        return self

    def wait_apiserver(self, timeout: float = 120.0) -> None:
        def ready() -> bool:
            with urllib.request.urlopen(f"{self.server}/readyz", context=self._ssl(), timeout=3) as answer:  # noqa: S310
                return bool(answer.status == 200)
        _wait("kube-apiserver /readyz", ready, timeout, [self.processes["etcd"], self.processes["kube-apiserver"]])

    def restart_apiserver(self, down_seconds: float = 0.0) -> None:
        """Stop the apiserver (clients see connections refused), then start it again."""
        self.processes["kube-apiserver"].stop()
        time.sleep(down_seconds)
        self._add("kube-apiserver", self._apiserver_argv())
        self.wait_apiserver()

    def add_node(self, name: str) -> None:
        """A fake Node that kwok reports Ready (no taints: workloads under test carry no tolerations)."""
        capacity = {"cpu": "64", "memory": "256Gi", "pods": "1000"}
        self.request("POST", "/api/v1/nodes", {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {FAKE_NODE_ANNOTATION: "fake"},
                         "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                    "kubernetes.io/arch": "amd64", "type": "kwok"}},
            "status": {"allocatable": capacity, "capacity": capacity}})

        def ready() -> bool:
            node = self.request("GET", f"/api/v1/nodes/{name}") or {}
            return any(c.get("type") == "Ready" and c.get("status") == "True"
                       for c in (node.get("status") or {}).get("conditions") or [])
        _wait(f"node {name} Ready (kwok)", ready, 60, list(self.processes.values()))

    def check_alive(self) -> None:
        for process in self.processes.values():
            process.check_alive()

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()

    def __enter__(self) -> ControlPlane:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
