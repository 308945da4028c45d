"""Kubeconfigs as managed clusters hand them out, against the real control plane.

* An exec credential plugin (EKS, GKE, AKS all use one) whose credentials end: here it
  issues client certificates, signed by the cluster CA, that expire seconds later; the real
  apiserver refuses an expired certificate. The operator and the client keep working past
  the first credential's end because they run the plugin again.
* ``proxy-url`` and ``tls-server-name``: the API server is reachable only through an HTTP
  proxy (``CONNECT``), under a name its certificate does not carry; the kubeconfig names
  the proxy and the name to check. kubectl reads the same file the same way.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.cluster.controlplane import ControlPlane
from tests.integration.harness import NAMESPACES, identity, until
from trustwire.k8s.client import Client
from trustwire.k8s.config import from_kubeconfig
from trustwire.k8s.errors import ApiError
from trustwire.k8s.resources import IDENTITIES
from trustwire.runtime import OperatorOptions, running_operator

pytestmark = pytest.mark.integration

NS = "kubeconfig"
LIFETIME = 4  # seconds each credential of the plugin is valid

_PLUGIN = """
import datetime as dt, json, sys
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
ca_cert = x509.load_pem_x509_certificate(Path(sys.argv[1]).read_bytes())
ca_key = serialization.load_pem_private_key(Path(sys.argv[2]).read_bytes(), None)
log = Path(sys.argv[3])
key = ec.generate_private_key(ec.SECP256R1())
now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
end = now + dt.timedelta(seconds=int(sys.argv[4]))
cert = (x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "exec-user"),
                                 x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(end)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256()))
with log.open("a") as f:
    f.write(end.isoformat() + "\\n")
pem = cert.public_bytes(serialization.Encoding.PEM).decode()
key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
json.dump({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
           "status": {"clientCertificateData": pem, "clientKeyData": key_pem,
                      "expirationTimestamp": end.strftime("%Y-%m-%dT%H:%M:%SZ")}}, sys.stdout)
"""


def _kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": cluster}], "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    return path


@pytest.fixture
def exec_kubeconfig(control_plane: ControlPlane, tmp_path: Path) -> tuple[Path, Path]:
    """A kubeconfig whose user is the plugin above, and the plugin's log (one line per run)."""
    key = tmp_path / "ca.key"
    key.write_bytes(control_plane.ca.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    plugin, log = tmp_path / "plugin.py", tmp_path / "runs"
    plugin.write_text(_PLUGIN)
    cluster = {"server": control_plane.server,
               "certificate-authority-data": base64.b64encode(control_plane.ca.pem).decode()}
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                     "args": [str(plugin), str(control_plane.dir / "ca.crt"), str(key), str(log), str(LIFETIME)],
                     "interactiveMode": "Never"}}
    return _kubeconfig(tmp_path / "exec.kubeconfig", cluster, user), log


async def test_the_operator_keeps_working_past_the_end_of_its_first_exec_credential(
        exec_kubeconfig: tuple[Path, Path], admin: Client) -> None:
    path, log = exec_kubeconfig
    config = from_kubeconfig(str(path), None)
    assert config.expires is not None and config.cert_data is not None
    await admin.create(NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    try:
        async with running_operator(config, OperatorOptions(workers=2, resync_interval=3600.0)):
            await asyncio.sleep(max(0.0, config.expires.timestamp() - time.time()) + 1)
            # the first certificate has ended: the apiserver refuses it now
            async with Client(dataclasses.replace(config, renew=None), retries=0) as stale:
                with pytest.raises(ApiError) as refused:
                    await stale.get(NAMESPACES, None, NS)
                assert refused.value.status == 401
            await admin.create(IDENTITIES, NS, identity("late", NS))

            async def ready() -> bool:
                body = await admin.get(IDENTITIES, NS, "late") or {}
                return any(c.get("type") == "Ready" and c.get("status") == "True"
                           for c in body.get("status", {}).get("conditions", []))

            await until(ready, "the identity applied after the first credential ended to be Ready", timeout=60)
        assert len(log.read_text().splitlines()) >= 2, "the plugin ran again"
    finally:
        await admin.delete(NAMESPACES, None, NS)


async def test_the_cli_and_a_client_renew_an_exec_credential_that_ended(
        exec_kubeconfig: tuple[Path, Path]) -> None:
    path, log = exec_kubeconfig
    async with Client(from_kubeconfig(str(path), None), retries=0) as client:
        assert await client.get(NAMESPACES, None, "default") is not None
        await asyncio.sleep(LIFETIME + 1)
        assert await client.get(NAMESPACES, None, "default") is not None
    assert len(log.read_text().splitlines()) == 2, "one run at load, one once the first had ended"
    status = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trustwire.cli", "status", "-A", "-o", "json", "--kubeconfig", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(status.communicate(), 60)
    assert status.returncode in (0, 1), err.decode()  # judged, not refused (3)
    assert isinstance(json.loads(out), list)


# ---- proxy-url and tls-server-name -----------------------------------------------------------
@dataclass
class ConnectProxy:
    """An HTTP proxy on loopback that tunnels every ``CONNECT`` to one address, whatever
    authority it names, and records the authorities asked for."""

    target: tuple[str, int]
    url: str = ""
    asked: list[str] = field(default_factory=list)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, authority, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            if method != "CONNECT":
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            self.asked.append(authority)
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def connect_proxy(target: tuple[str, int]) -> AsyncIterator[ConnectProxy]:
    proxy = ConnectProxy(target)
    server = await asyncio.start_server(proxy._serve, "127.0.0.1", 0)
    proxy.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield proxy


@pytest.mark.parametrize("tls_server_name", ["kubernetes.default.svc", None])
async def test_a_server_behind_a_proxy_under_a_name_its_certificate_lacks(
        control_plane: ControlPlane, tmp_path: Path, tls_server_name: str | None) -> None:
    """``api.trustwire.test`` resolves nowhere and is not in the apiserver's certificate:
    only the proxy reaches the server, and only ``tls-server-name`` makes its certificate
    acceptable. Without it the handshake is refused, and the CLI says so."""
    cluster = {"server": f"https://api.trustwire.test:{control_plane.api_port}",
               "certificate-authority-data": base64.b64encode(control_plane.ca.pem).decode()}
    admin = json.loads(control_plane.admin_kubeconfig.read_text())["users"][0]["user"]
    async with connect_proxy(("127.0.0.1", control_plane.api_port)) as proxy:
        cluster["proxy-url"] = proxy.url
        if tls_server_name:
            cluster["tls-server-name"] = tls_server_name
        path = _kubeconfig(tmp_path / "proxied.kubeconfig", cluster, admin)
        run = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "trustwire.cli", "status", "-A", "-o", "json", "--kubeconfig", str(path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(run.communicate(), 60)
        kubectl = await asyncio.to_thread(control_plane.kubectl, "get", "ns", "default", "-o", "name",
                                          kubeconfig=path, check=False)
    assert proxy.asked and set(proxy.asked) == {f"api.trustwire.test:{control_plane.api_port}"}
    if tls_server_name:
        assert run.returncode in (0, 1), err.decode()
        assert isinstance(json.loads(out), list)
        assert kubectl.stdout.strip() == "namespace/default", "kubectl reads the kubeconfig the same way"
    else:
        assert run.returncode == 3 and out == b""
        assert "TLS handshake failed" in err.decode(), err.decode()
        assert kubectl.returncode != 0 and "certificate" in kubectl.stderr
