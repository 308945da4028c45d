"""``trustwire serve``'s enrollment endpoints on the real control plane, with the operator running.

The application is nothing but ``openssl req`` and ``curl``: it takes the token the operator
put into the token Secret, enrols, proves its certificate in an mTLS handshake with
``openssl s_server`` serving the identity's mounted material (client certificates required
from ``enrollment-ca.crt``), renews over mTLS and is refused once revoked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.controlplane import ControlPlane
from tests.cluster.fixtures import render_chart
from tests.cluster.proxy import Fault, Recorded
from tests.integration.harness import Cluster, enrollment, identity, until
from trustwire import names, pki
from trustwire.k8s.client import ApiConfig, Client
from trustwire.k8s.resources import ENROLLMENTS
from trustwire.server.context import ServerContext
from trustwire.server.run import TlsMaterial, serving, tls_context

pytestmark = pytest.mark.integration

SERVE_AGENT = "trustwire-serve-test"


@pytest.fixture(scope="session")
def serve_access(control_plane: ControlPlane) -> str:
    """The token of the chart's serve ServiceAccount, its RBAC applied as the chart renders it."""
    objects = [o for o in render_chart({"serve": {"enabled": True, "tlsSecret": "serve-tls"}})
               if (o["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "serve"
               and o["kind"] not in ("Deployment", "Service")]
    control_plane.kubectl("apply", "--server-side", "--field-manager=helm", "-f", "-",
                          input=yaml.safe_dump_all(objects))
    (account,) = [o for o in objects if o["kind"] == "ServiceAccount"]
    return control_plane.service_account_token(account["metadata"]["namespace"], account["metadata"]["name"])


@pytest.fixture
async def serve_client(cluster: Cluster, serve_access: str) -> AsyncIterator[Client]:
    """What the serve pod has: its ServiceAccount's token, through the journaling proxy, so every
    request the server makes is judged by the real RBAC authorizer (and none may be refused)."""
    async with Client(ApiConfig(server=cluster.proxy.url, token=serve_access), user_agent=SERVE_AGENT) as client:
        yield client
    refused = [f"{r.method} {r.path}" for r in cluster.proxy.requests_by(SERVE_AGENT) if r.status == 403]
    assert not refused, f"the chart's serve RBAC refused the server: {refused}"

NS = "erp"
HOST = "trust.example.test"


@pytest.fixture
def server_tls(tmp_path: Path) -> tuple[TlsMaterial, Path]:
    """The server's own certificate for HOST, and the CA file clients verify it with."""
    now = datetime.now(UTC)
    ca_key, key = pki.generate_private_key(pki.KeyAlgorithm.ECDSAP256), pki.generate_private_key(
        pki.KeyAlgorithm.ECDSAP256)
    ca = pki.create_ca(ca_key, common_name="serve test CA", now=now, lifetime=timedelta(days=1))
    leaf = pki.create_leaf(ca, ca_key, key.public_key(), common_name=HOST, dns_names=[HOST], uri_sans=[], now=now,
                           lifetime=timedelta(days=1))
    (tmp_path / "server-ca.crt").write_bytes(pki.cert_to_pem(ca))
    return TlsMaterial(pki.cert_to_pem(leaf), pki.private_key_to_pem(key)), tmp_path / "server-ca.crt"


@contextlib.asynccontextmanager
async def _server(client: Client, material: TlsMaterial, ahead: timedelta = timedelta(0)) -> AsyncIterator[str]:
    """The server on loopback; ``ahead`` sets its clock that far in the future."""
    ctx = ServerContext(client=client, clock=lambda: datetime.now(UTC) + ahead, public_url=None,
                        tls=tls_context(material))
    async with serving(ctx, "127.0.0.1", 0) as port:
        yield f"https://{HOST}:{port}"


async def _run(*argv: str, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE if stdin else None,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin)
    return proc.returncode or 0, out, err


class App:
    """The enrolling application: openssl for its key and CSR, curl for every request."""

    def __init__(self, base: str, server_ca: Path, work: Path) -> None:
        self.base, self.server_ca, self.work = base, server_ca, work
        self.port = base.rsplit(":", 1)[1]

    async def csr(self, subject: str, *extra: str, name: str = "app") -> str:
        key, csr = self.work / f"{name}.key", self.work / f"{name}.csr"
        rc, _, err = await _run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                                "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", subject, *extra)
        assert rc == 0, err.decode()
        return csr.read_text()

    async def curl(self, method: str, path: str, *, token: str | None = None, body: bytes | None = None,
                   cert: str | None = None, handshake: bool = True) -> tuple[int, dict[str, Any]]:
        """``handshake=False``: a refused TLS handshake answers status 0 instead of failing."""
        argv = ["curl", "-sS", "-X", method, "--cacert", str(self.server_ca),
                "--resolve", f"{HOST}:{self.port}:127.0.0.1", "-w", "\n%{http_code}", "-o", "-"]
        if token is not None:
            argv += ["-H", f"Authorization: Bearer {token}"]
        if cert is not None:
            argv += ["--cert", str(self.work / f"{cert}.crt"), "--key", str(self.work / f"{cert}.key")]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
        rc, out, err = await _run(*argv, self.base + path, stdin=body)
        if rc != 0 and not handshake:
            return 0, {}
        assert rc == 0, err.decode()
        text, _, code = out.decode().rpartition("\n")
        return int(code), json.loads(text) if text else {}

    async def enrol(self, token: str, csr: str, name: str = "app") -> tuple[int, dict[str, Any]]:
        status, answer = await self.curl("POST", "/v1/certificates", token=token,
                                         body=json.dumps({"csr": csr}).encode())
        if status == 201:
            (self.work / f"{name}.crt").write_text(answer["chain"])
        return status, answer


async def _setup(cluster: Cluster, name: str = "sap", **spec: Any) -> str:
    await cluster.ensure_namespace(NS)
    if await cluster.get("ServiceIdentity", NS, "connector") is None:
        await cluster.apply(identity("connector", NS, enrollment={"enabled": True}))
        await cluster.wait_condition("ServiceIdentity", NS, "connector", "Ready")
    await cluster.apply(enrollment(name, NS, "connector", "sap-prod", subject={"commonName": "sap-prod",
                                                                              "organization": ["Acme"]}, **spec))

    async def token() -> str | None:
        data = await cluster.data("Secret", NS, names.enrollment_token_secret(name))
        return data["token"].decode() if data.get("token") else None
    return await until(token, "the token Secret", timeout=30)


SUBJECT = "/O=Acme/CN=sap-prod"


async def _handshake(cluster: Cluster, app: App, cert: str) -> tuple[int, str]:
    """curl with the application's certificate against openssl s_server serving the identity's
    mounted material and requiring a client certificate that chains to enrollment-ca.crt."""
    data = await cluster.data("Secret", NS, names.credentials_secret("connector"))
    for key in ("tls.crt", "tls.key", names.ENROLLMENT_CA_KEY, "ca.crt"):
        (app.work / f"identity-{key}").write_bytes(data[key])
    leaf = pki.load_certificates(data["tls.crt"])[0]
    host = pki.dns_sans(leaf)[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = await asyncio.create_subprocess_exec(
        "openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-www", "-naccept", "1",
        "-cert", str(app.work / "identity-tls.crt"), "-key", str(app.work / "identity-tls.key"),
        "-CAfile", str(app.work / f"identity-{names.ENROLLMENT_CA_KEY}"), "-Verify", "1", "-verify_return_error",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        await asyncio.sleep(0.5)
        rc, out, err = await _run("curl", "-sS", "--cacert", str(app.work / "identity-ca.crt"),
                                  "--resolve", f"{host}:{port}:127.0.0.1", "--cert", str(app.work / f"{cert}.crt"),
                                  "--key", str(app.work / f"{cert}.key"), f"https://{host}:{port}/")
        return rc, (out + err).decode(errors="replace")
    finally:
        with contextlib.suppress(ProcessLookupError):
            server.kill()
        await server.wait()


async def test_an_application_enrols_handshakes_renews_and_is_refused_once_revoked(
        cluster: Cluster, serve_client: Client, server_tls: tuple[TlsMaterial, Path], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trustwire")
    token = await _setup(cluster)
    async with _server(serve_client, server_tls[0]) as base:
        app = App(base, server_tls[1], tmp_path)
        status, info = await app.curl("GET", "/v1/info", token=token)
        assert status == 200, info
        assert info["subject"]["dn"] == "O=Acme,CN=sap-prod" and info["token"] != token
        assert info["urls"]["renewals"] == f"{base}/v1/renewals"
        assert (await app.curl("GET", "/v1/info", token=token))[1]["error"]["reason"] == "TokenInvalid"

        status, issued = await app.enrol(info["token"], await app.csr(SUBJECT))
        assert status == 201, issued
        body = await cluster.get("Enrollment", NS, "sap") or {}
        assert body["status"]["phase"] == "Enrolled" and "token" not in body["status"]
        assert body["status"]["certificate"]["serial"] == issued["serial"]
        assert body["status"]["certificate"]["fingerprint"].startswith("sha256:")
        reused = await app.enrol(info["token"], await app.csr(SUBJECT, name="again"), name="again")
        assert reused == (401, {"error": {"reason": "TokenInvalid", "message": reused[1]["error"]["message"]}})

        async def mounted() -> bool:
            data = await cluster.data("Secret", NS, names.credentials_secret("connector"))
            return issued["ca"].encode().strip() in data.get(names.ENROLLMENT_CA_KEY, b"")
        await until(mounted, "the enrollment CA mounted for the identity", timeout=30)
        rc, said = await _handshake(cluster, app, "app")
        assert rc == 0 and "sap-prod" in said, said

        def status_writes() -> int:
            return sum(1 for r in cluster.proxy.requests_by(SERVE_AGENT)
                       if r.method == "PATCH" and r.path.endswith("/enrollments/sap/status"))
        before = status_writes()
        for _ in range(3):
            status, managed = await app.curl("GET", "/v1/management/info", cert="app")
            assert status == 200 and managed["enrollment"] == "sap", managed
        assert status_writes() == before, "lastSeen was written at issuance: not again within the minute"
        assert (await app.curl("GET", "/v1/management/info"))[1]["error"]["reason"] == "ClientCertificateRequired"

        status, renewed = await app.curl("POST", "/v1/renewals", cert="app",
                                         body=json.dumps({"csr": await app.csr(SUBJECT, name="next")}).encode())
        assert status == 201 and renewed["serial"] != issued["serial"], renewed
        (tmp_path / "next.crt").write_text(renewed["chain"])
        body = await cluster.get("Enrollment", NS, "sap") or {}
        assert body["status"]["certificate"]["serial"] == renewed["serial"] and body["status"]["renewals"] == 1
        old = await app.curl("POST", "/v1/renewals", cert="app",
                             body=json.dumps({"csr": await app.csr(SUBJECT, name="x")}).encode())
        assert old[0] == 403 and old[1]["error"]["reason"] == "CertificateNotCurrent"

        async with _server(serve_client, server_tls[0]) as fresh:  # a replica that issued nothing
            other = App(fresh, server_tls[1], tmp_path)

            async def answered() -> dict[str, Any] | None:
                status, managed = await other.curl("GET", "/v1/management/info", cert="next", handshake=False)
                return managed if status == 200 else None
            managed = await until(answered, "a fresh replica that learnt the enrollment CA", timeout=15)
            assert managed["certificate"]["serial"] == renewed["serial"]

        await cluster.client.merge_patch(ENROLLMENTS, NS, "sap", {"spec": {"revoked": True}})
        refused = await app.curl("GET", "/v1/management/info", cert="next")
        assert refused[0] == 403 and refused[1]["error"]["reason"] == "Revoked", refused
        events = [e["reason"] for e in await cluster.events(NS, "sap")]
        assert "Enrolled" in events and "Renewed" in events
        logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
        assert "enrol" in logged.lower()
        for secret in (token, info["token"], issued["certificate"].splitlines()[1]):
            assert secret not in logged
        written = {(r.method, r.path.rsplit("/", 1)[-1]) for r in cluster.proxy.requests_by(SERVE_AGENT)}
        assert ("PATCH", "status") in written, "the server wrote through its own ServiceAccount"


@pytest.mark.parametrize(("case", "subject", "extra", "reason"), [
    ("another subject", "/O=Acme/CN=crm", (), "SubjectMismatch"),
    ("CA=true", SUBJECT, ("-addext", "basicConstraints=critical,CA:TRUE"), "CARequested"),
    ("a SAN", SUBJECT, ("-addext", "subjectAltName=DNS:sap.example.com"), "SANsNotAllowed"),
])
async def test_a_refused_csr_issues_nothing_and_keeps_the_token(
        cluster: Cluster, serve_client: Client, server_tls: tuple[TlsMaterial, Path], tmp_path: Path, case: str,
        subject: str, extra: tuple[str, ...], reason: str) -> None:
    token = await _setup(cluster)
    async with _server(serve_client, server_tls[0]) as base:
        app = App(base, server_tls[1], tmp_path)
        status, answer = await app.enrol(token, await app.csr(subject, *extra))
        assert (status, answer["error"]["reason"]) == (400, reason), case
        body = await cluster.get("Enrollment", NS, "sap") or {}
        assert "certificate" not in body["status"]
        assert (await app.enrol(token, await app.csr(SUBJECT)))[0] == 201


async def test_an_expired_token_and_a_huge_body_are_refused(
        cluster: Cluster, serve_client: Client, server_tls: tuple[TlsMaterial, Path], tmp_path: Path) -> None:
    token = await _setup(cluster, tokenTTL="10m")
    async with _server(serve_client, server_tls[0], ahead=timedelta(minutes=11)) as base:
        app = App(base, server_tls[1], tmp_path)
        status, answer = await app.curl("GET", "/v1/info", token=token)
        assert (status, answer["error"]["reason"]) == (401, "TokenExpired"), answer
    async with _server(serve_client, server_tls[0]) as base:
        app = App(base, server_tls[1], tmp_path)
        huge = json.dumps({"csr": "A" * (2 * 1024 * 1024)}).encode()
        status, answer = await app.curl("POST", "/v1/certificates", token=token, body=huge)
        assert (status, answer["error"]["reason"]) == (413, "BodyTooLarge")
        assert (await app.enrol(token, await app.csr(SUBJECT)))[0] == 201, "a refused body leaves the token"


async def test_two_servers_racing_one_token_issue_exactly_one_certificate(
        cluster: Cluster, serve_client: Client, server_tls: tuple[TlsMaterial, Path], tmp_path: Path) -> None:
    token = await _setup(cluster)
    async with _server(serve_client, server_tls[0]) as one, _server(serve_client, server_tls[0]) as two:
        apps = [App(base, server_tls[1], tmp_path / str(i)) for i, base in enumerate((one, two))]
        for app in apps:
            app.work.mkdir()
        csrs = [await app.csr(SUBJECT) for app in apps]

        def hold_reads(r: Recorded) -> Fault | None:
            # both replicas read the Enrollment before either writes: the API server decides
            reading = r.method == "GET" and r.path.endswith("/enrollments/sap") and r.user_agent == SERVE_AGENT
            return Fault(delay=1.0) if reading else None
        cluster.proxy.fault = hold_reads
        results = await asyncio.gather(*(app.enrol(token, csr) for app, csr in zip(apps, csrs, strict=True)))
        statuses = sorted(status for status, _ in results)
        assert statuses == [201, 401], results
        loser = next(answer for status, answer in results if status == 401)
        assert loser["error"]["reason"] == "TokenAlreadyUsed", loser
        conflicts = [r for r in cluster.proxy.requests_by(SERVE_AGENT) if r.method == "PATCH" and r.status == 409]
        assert conflicts, "the loser's conditional status write met a 409"
        winner = next(answer for status, answer in results if status == 201)
        body = await cluster.get("Enrollment", NS, "sap") or {}
        assert body["status"]["certificate"]["serial"] == winner["serial"]
