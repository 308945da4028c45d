"""The on-prem reverse-proxy example, both ways through a real nginx.

``examples/dgc-jobserver-mtls/onprem``: DGC sits behind an nginx sidecar; the Jobserver runs
on premises with its own CA, which the relationship names by its certificate only. The
material is trustwire's own: the identity pass (:func:`plan_identity`) issues DGC's leaf,
builds the trust bundle from the outsider's CA and renders the nginx configuration from the
example's template, with ``spec.mountPath`` pointing at a temp directory that holds the files
as a pod would mount them. Then, with real nginx:

* inbound, the Jobserver (Python ``ssl`` with its own leaf) → nginx → DGC's backend: 200 and
  the backend sees ``X-Client-Verify: SUCCESS`` for ``CN=jobserver``; a leaf from another CA,
  one from DGC's own CA and no certificate are refused;
* outbound, DGC's backend → nginx on its plain local port → ``openssl s_server`` playing the
  Jobserver (it trusts only what ``trustwire export`` gives it): 200, and s_server saw
  exactly DGC's leaf.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from trustwire import names, pki
from trustwire.model import parse_identity, parse_relationship
from trustwire.pki import KeyAlgorithm
from trustwire.plan.export import ExportFormat, export_files
from trustwire.plan.external import BundleInput, external_publication
from trustwire.plan.identity import IdentityObservation, PeerLink, plan_identity
from trustwire.plan.material import StoredObject

from .conftest import free_port, peer, require_tool, wait_for_port

pytestmark = pytest.mark.interop

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dgc-jobserver-mtls" / "onprem"
NGINX = "/usr/sbin/nginx"
ONPREM = "jobserver.onprem.example"
TIMEOUT = 10.0


def _docs() -> list[dict[str, Any]]:
    return [d for f in sorted(EXAMPLE.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


def _doc(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in _docs() if d["kind"] == kind and d["metadata"]["name"] == name)


class _Leaf:
    """A CA of its own and a leaf from it, written as files."""

    def __init__(self, directory: Path, name: str, dns: str, now: datetime) -> None:
        self.ca_key = pki.generate_private_key(KeyAlgorithm.ECDSAP256)
        self.ca = pki.create_ca(self.ca_key, common_name=f"{name} CA", now=now, lifetime=timedelta(days=30))
        key = pki.generate_private_key(KeyAlgorithm.ECDSAP256)
        self.leaf = pki.create_leaf(self.ca, self.ca_key, key.public_key(), common_name=name, dns_names=[dns],
                                    uri_sans=[], now=now, lifetime=timedelta(days=1))
        directory.mkdir(parents=True)
        self.cert, self.key = directory / "tls.crt", directory / "tls.key"
        self.cert.write_bytes(pki.certs_to_pem([self.leaf, self.ca]))
        self.key.write_bytes(pki.private_key_to_pem(key))


class _Backend(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({h: self.headers.get(h) for h in ("X-Client-Verify", "X-Client-Subject")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _mount(directory: Path, onprem_ca: bytes, now: datetime) -> tuple[dict[str, bytes], str]:
    """DGC's files as its pod mounts them, planned by trustwire from the example's objects."""
    body = _doc("ServiceIdentity", "dgc")
    body["spec"]["mountPath"] = str(directory)
    ident = parse_identity(body)
    rel = parse_relationship(_doc("TrustRelationship", "dgc-onprem-jobserver"))
    assert rel.external is not None and rel.external_ref is not None
    bundle = StoredObject("onprem-jobserver-ca", False, None, {"ca.crt": onprem_ca})
    publication, check = external_publication(BundleInput(rel.external, rel.namespace, bundle, now))
    assert check.ok, check.message
    template = _doc("ConfigMap", "dgc-nginx-template")["data"]["dgc-mtls.conf.j2"]
    plan = plan_identity(IdentityObservation(identity=ident, now=now, template_sources={"dgc-mtls.conf": template},
                                             links=(PeerLink(rel, rel.external_ref, publication),)))
    assert plan.checks["TemplatesReady"].ok, plan.checks["TemplatesReady"].message
    objects = {o.name: o.data for o in plan.objects}
    files = {**objects[names.credentials_secret("dgc")], **objects[names.trust_secret("dgc")]}
    directory.mkdir(parents=True)
    for name, content in files.items():
        (directory / name).write_bytes(content)
    public = objects[names.public_configmap("dgc")]
    exported = export_files("dgc", rel, public, ExportFormat.PEM, "unused")
    return files, exported["ca.crt"].decode()


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[dict[str, Any]]:
    nginx, openssl = require_tool("nginx", NGINX), require_tool("openssl")
    now = datetime.now(UTC) - timedelta(minutes=1)
    jobserver = _Leaf(tmp_path / "jobserver", "jobserver", ONPREM, now)
    stranger = _Leaf(tmp_path / "stranger", "stranger", "stranger.example", now)
    files, dgc_ca = _mount(tmp_path / "dgc", pki.cert_to_pem(jobserver.ca), now)
    (tmp_path / "jobserver-installed-ca.crt").write_text(dgc_ca)  # what the Jobserver installed

    backend = ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    inbound, outbound = free_port(), free_port()
    server = subprocess.Popen(
        [openssl, "s_server", "-accept", "127.0.0.1:0", "-www", "-cert", str(jobserver.cert), "-key",
         str(jobserver.key), "-CAfile", str(tmp_path / "jobserver-installed-ca.crt"), "-Verify", "1",
         "-verify_return_error"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        start_new_session=True)
    assert server.stdout is not None
    line = ""
    while not line.startswith("ACCEPT "):  # s_server binds port 0 and reports it: no port race
        line = server.stdout.readline().decode()
        assert line, "s_server exited before accepting"
    onprem_port = int(line.strip().rsplit(":", 1)[1])

    conf = files["dgc-mtls.conf"].decode()
    assert f"ssl_client_certificate  {tmp_path / 'dgc'}/trust-bundle.pem;" in conf
    conf = (conf.replace("listen 8443 ssl;", f"listen 127.0.0.1:{inbound} ssl;")
            .replace("listen 127.0.0.1:9080;", f"listen 127.0.0.1:{outbound};")
            .replace("127.0.0.1:8080", f"127.0.0.1:{backend.server_address[1]}")
            .replace(f"https://{ONPREM}:8443", f"https://127.0.0.1:{onprem_port}"))
    run = tmp_path / "nginx"
    run.mkdir()
    (run / "dgc-mtls.conf").write_text(conf)
    (run / "nginx.conf").write_text(
        f"daemon off;\nmaster_process off;\npid {run}/nginx.pid;\nerror_log {run}/error.log info;\n"
        "events { worker_connections 64; }\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {run}/body;\n  proxy_temp_path {run}/proxy;\n"
        f"  fastcgi_temp_path {run}/fastcgi;\n  uwsgi_temp_path {run}/uwsgi;\n  scgi_temp_path {run}/scgi;\n"
        f"  include {run}/dgc-mtls.conf;\n}}\n")
    cmd = [nginx, "-p", str(run), "-e", f"{run}/error.log", "-c", f"{run}/nginx.conf"]
    try:
        with peer(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL) as proc:
            try:
                wait_for_port(inbound, time.monotonic() + TIMEOUT, proc)
                wait_for_port(outbound, time.monotonic() + TIMEOUT, proc)
            except (RuntimeError, TimeoutError):
                raise AssertionError(f"nginx did not start: {(run / 'error.log').read_text()}") from None
            yield {"inbound": inbound, "outbound": outbound, "dgc_ca": dgc_ca, "jobserver": jobserver,
                   "stranger": stranger, "files": files, "dgc": tmp_path / "dgc"}
    finally:
        server.terminate()
        server.wait(timeout=10)
        backend.shutdown()
        backend.server_close()


def _https_get(port: int, ca_pem: str, cert: Path | None, key: Path | None) -> tuple[int, str]:
    context = ssl.create_default_context(cadata=ca_pem)
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw, \
            context.wrap_socket(raw, server_hostname="dgc.governance.svc") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: dgc.governance.svc\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode(errors="replace")


def test_the_onprem_jobserver_reaches_dgc_through_nginx(proxied: dict[str, Any]) -> None:
    jobserver: _Leaf = proxied["jobserver"]
    status, body = _https_get(proxied["inbound"], proxied["dgc_ca"], jobserver.cert, jobserver.key)
    assert status == 200, body
    seen = json.loads(body)
    assert seen["X-Client-Verify"] == "SUCCESS" and "CN=jobserver" in seen["X-Client-Subject"]


def test_nginx_refuses_everyone_but_the_onprem_jobserver(proxied: dict[str, Any]) -> None:
    stranger: _Leaf = proxied["stranger"]
    # a stranger's leaf, DGC's own leaf (its own CA is not in the trust bundle), no certificate
    for cert, key in ((stranger.cert, stranger.key), (proxied["dgc"] / "tls.crt", proxied["dgc"] / "tls.key"),
                      (None, None)):
        try:
            status, body = _https_get(proxied["inbound"], proxied["dgc_ca"], cert, key)
        except (ssl.SSLError, ConnectionError):
            assert cert is not None
            continue
        assert status == 400 and "SSL certificate" in body, (cert, status, body)


def test_dgc_reaches_the_onprem_jobserver_through_nginx(proxied: dict[str, Any]) -> None:
    with socket.create_connection(("127.0.0.1", proxied["outbound"]), timeout=TIMEOUT) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\nHost: jobserver\r\n\r\n")  # 1.0: no chunked encoding
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, page = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"200", data[:300]
    dgc_leaf = pki.load_certificates(proxied["files"]["tls.crt"])[0]
    # s_server -www shows the client certificate it verified: exactly DGC's leaf
    assert pki.cert_to_pem(dgc_leaf).decode() in page.decode(errors="replace").replace("\r", "")
