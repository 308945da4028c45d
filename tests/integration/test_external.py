"""Issue 18, on-prem acceptance: a relationship member outside the cluster, known by its CA only.

``openssl s_server`` plays the on-premises Jobserver: its own CA, whose key trustwire never
sees (the relationship names a ConfigMap with the CA certificate only). DGC's side is what
its pod mounts — the credentials and trust Secrets as files. The outsider installs what
``trustwire export`` writes and confirms it with ``trustwire confirm``; a CA rotation of DGC
waits for that confirmation, and a continuous probe both ways sees no failure across it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import selectors
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Cluster, condition, identity, relationship, until
from tests.interop.conftest import require_tool, stop
from trustwire import names, pki
from trustwire.demo.drill import PodFiles, ProbeResult, TLSEndpoint
from trustwire.k8s.client import Client
from trustwire.k8s.errors import ApiError
from trustwire.k8s.resources import IDENTITIES, SECRETS, decode_data
from trustwire.pki import KeyAlgorithm
from trustwire.plan import rotation as rot
from trustwire.runtime import OperatorOptions
from trustwire.times import utcnow

pytestmark = pytest.mark.integration

NS = "gov"
REL = "dgc-onprem"
DGC_HOST = "dgc.gov.svc"
ONPREM_HOST = "jobserver.onprem.example"


@pytest.fixture
def operator_options() -> OperatorOptions:
    return OperatorOptions(workers=2, resync_interval=3600.0, propagation_delay=timedelta(seconds=2))


@pytest.fixture
def onprem(tmp_path: Path) -> dict[str, Path]:
    """The on-prem Jobserver's own CA and server/client leaf; the key never leaves this test."""
    now = utcnow()
    ca_key = pki.generate_private_key(KeyAlgorithm.ECDSAP256)
    ca = pki.create_ca(ca_key, common_name="onprem Jobserver CA", now=now - timedelta(minutes=5),
                       lifetime=timedelta(days=30))
    key = pki.generate_private_key(KeyAlgorithm.ECDSAP256)
    leaf = pki.create_leaf(ca, ca_key, key.public_key(), common_name="jobserver", dns_names=[ONPREM_HOST],
                           uri_sans=[], now=now - timedelta(minutes=5), lifetime=timedelta(days=7))
    root = tmp_path / "onprem"
    root.mkdir()
    files = {"ca.crt": pki.cert_to_pem(ca), "tls.crt": pki.cert_to_pem(leaf) + pki.cert_to_pem(ca),
             "tls.key": pki.private_key_to_pem(key)}
    for name, content in files.items():
        (root / name).write_bytes(content)
    return {name: root / name for name in files}


def external_relationship(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "trustwire.io/v1alpha1", "kind": "TrustRelationship",
            "metadata": {"name": REL, "namespace": NS},
            "spec": {"between": [{"identity": "dgc"}, {"external": {
                "name": "onprem-jobserver", "caBundleRef": {"kind": "ConfigMap", "name": "onprem-ca"}}}], **spec}}


def ca_configmap(pem: bytes) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "onprem-ca", "namespace": NS},
            "data": {"ca.crt": pem.decode()}}


async def cli(kubeconfig: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trustwire.cli", *args, "--kubeconfig", str(kubeconfig),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == code, (args, out.decode(), err.decode())
    return subprocess.CompletedProcess(list(args), process.returncode, out.decode(), err.decode())


class SServer:
    """``openssl s_server -www`` as the on-prem Jobserver: its own leaf, trusting the CA
    file the outsider installed (read once at start, as a real server does)."""

    def __init__(self, openssl: str, own: dict[str, Path], trusts: Path) -> None:
        self.proc = subprocess.Popen(
            [openssl, "s_server", "-accept", "127.0.0.1:0", "-www", "-cert", str(own["tls.crt"]),
             "-key", str(own["tls.key"]), "-CAfile", str(trusts), "-Verify", "1", "-verify_return_error"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
        self.port = self._accept_port()

    def _accept_port(self) -> int:
        assert self.proc.stdout is not None
        buffer, deadline = b"", time.monotonic() + 20
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(timeout=0.1):
                buffer += self.proc.stdout.read1(4096)  # type: ignore[attr-defined]
                for line in buffer.decode(errors="replace").splitlines():
                    if line.startswith("ACCEPT ") and ":" in line:
                        threading.Thread(target=self._drain, daemon=True).start()
                        return int(line.rsplit(":", 1)[1])
        raise TimeoutError(f"s_server did not report its port: {buffer!r}")

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        with contextlib.suppress(ValueError, OSError):
            while self.proc.stdout.read1(65536):  # type: ignore[attr-defined]
                pass

    def close(self) -> None:
        stop(self.proc)


def dgc_to_onprem(pod: PodFiles, port: int) -> str | None:
    """DGC's pod (its mounted files) calls the Jobserver: the Jobserver must accept its leaf."""
    try:
        d = pod.current
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_cert_chain(d / "tls.crt", d / "tls.key")
        ctx.load_verify_locations(cadata=(d / "trust-bundle.pem").read_text())
        with socket.create_connection(("127.0.0.1", port), timeout=3) as raw, \
                ctx.wrap_socket(raw, server_hostname=ONPREM_HOST) as tls:
            tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
            page = b""
            while chunk := tls.recv(65536):
                page += chunk
        return None if page.startswith(b"HTTP/1.0 200") else f"unexpected reply {page[:60]!r}"
    except (ssl.SSLError, OSError) as exc:
        return str(exc)[:200]


def onprem_to_dgc(openssl: str, own: dict[str, Path], trusts: Path, port: int) -> str | None:
    """The Jobserver (``openssl s_client`` with its own leaf) calls DGC's server."""
    result = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", DGC_HOST, "-verify_hostname", DGC_HOST,
         "-CAfile", str(trusts), "-verify_return_error", "-cert", str(own["tls.crt"]), "-key", str(own["tls.key"]),
         "-quiet"], input=b"", capture_output=True, timeout=20, check=False)
    out = result.stdout.decode(errors="replace")
    # -quiet prints only what the server sends; -verify_return_error stops before any data when
    # DGC's certificate does not verify. DGC's server writes "ok" only after accepting the
    # client certificate (and closes without close_notify: s_client then exits 1 on the EOF)
    if out.strip() == "ok":
        return None
    return f"s_client exit {result.returncode}: {result.stderr.decode(errors='replace')[-200:]}"


class Installed:
    """The CA file the outsider installed, and the s_server that uses it (replaced without a gap)."""

    def __init__(self, openssl: str, own: dict[str, Path], export_dir: Path) -> None:
        self.openssl, self.own = openssl, own
        self.trusts = export_dir / "ca.crt"
        self.server = SServer(openssl, own, self.trusts)

    def install(self, export_dir: Path) -> None:
        """Start a server on the new export, then retire the old one (a rolling restart)."""
        fresh = SServer(self.openssl, self.own, export_dir / "ca.crt")
        old, self.server, self.trusts = self.server, fresh, export_dir / "ca.crt"
        time.sleep(0.3)  # a probe that picked the old port finishes first
        old.close()


class BothWays:
    """A continuous probe: DGC → Jobserver and Jobserver → DGC, in a thread."""

    def __init__(self, pod: PodFiles, dgc: TLSEndpoint, installed: Installed) -> None:
        self.pod, self.dgc, self.installed = pod, dgc, installed
        self.result = ProbeResult()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.result.record("mTLS dgc->onprem", dgc_to_onprem(self.pod, self.installed.server.port))
            self.result.record("mTLS onprem->dgc", onprem_to_dgc(self.installed.openssl, self.installed.own,
                                                                  self.installed.trusts, self.dgc.port))
            time.sleep(0.05)

    def stop(self) -> ProbeResult:
        self._stop.set()
        self._thread.join(30)
        return self.result


async def follow_pod(client: Client, pod: PodFiles) -> None:
    """What a kubelet does for DGC's pod: its files follow the credentials and trust Secrets."""
    wanted = (names.credentials_secret("dgc"), names.trust_secret("dgc"))
    held: dict[str, dict[str, bytes]] = {}
    mounted: dict[str, bytes] | None = None
    while True:
        for name in wanted:
            body = await client.get(SECRETS, NS, name)
            if body is not None:
                held[name] = decode_data(SECRETS, body)
        files = {**held.get(wanted[0], {}), **held.get(wanted[1], {})}
        if len(held) == 2 and files != mounted:
            pod.update(files)
            mounted = files
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def both_ways(cluster: Cluster, openssl: str, onprem: dict[str, Path], exported: Path,
                    tmp_path: Path) -> AsyncIterator[tuple[PodFiles, Installed, BothWays]]:
    """DGC's pod (following its Secrets), the outsider on ``exported``, and the probe between them."""
    pod = PodFiles(tmp_path / "dgc-pod")
    follower = asyncio.create_task(follow_pod(cluster.client, pod))
    await until(lambda: (pod.root / "..data").exists(), "DGC's pod files", timeout=20)
    dgc_server = TLSEndpoint(pod)
    installed = Installed(openssl, onprem, exported)
    probe = BothWays(pod, dgc_server, installed)
    try:
        yield pod, installed, probe
    finally:
        probe.stop()
        dgc_server.close()
        installed.server.close()
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower


def ca_status(body: dict[str, Any] | None) -> dict[str, Any]:
    return ((body or {}).get("status") or {}).get("ca") or {}


def ca_rotation(body: dict[str, Any] | None) -> dict[str, Any]:
    return (((body or {}).get("status") or {}).get("rotation") or {}).get("ca") or {}


async def test_onprem_peer_with_its_own_ca_mtls_both_ways_across_a_confirmed_rotation(
        cluster: Cluster, onprem: dict[str, Path], tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    kubeconfig = cluster.plane.admin_kubeconfig
    await cluster.ensure_namespace(NS)
    await cluster.apply(ca_configmap(onprem["ca.crt"].read_bytes()))
    await cluster.apply(identity("dgc", NS, serviceName="dgc"))
    await cluster.apply(external_relationship(jwt={"enabled": False}))
    await cluster.wait_condition("TrustRelationship", NS, REL, "Ready")
    await cluster.wait_condition("ServiceIdentity", NS, "dgc", "Ready")

    # the in-cluster side trusts exactly the outsider's CA, and names it in peers.json
    trust = await cluster.data("Secret", NS, names.trust_secret("dgc"))
    onprem_ca = pki.load_certificates(onprem["ca.crt"].read_bytes())[0]
    assert trust["trust-bundle.pem"] == pki.cert_to_pem(onprem_ca)
    [entry] = json.loads(trust["peers.json"])
    assert (entry["identity"], entry["external"], entry["caFingerprints"]) == (
        "onprem-jobserver", True, [pki.fingerprint_sha256(onprem_ca)])
    assert b"PRIVATE KEY" not in b"".join(trust.values())

    first = tmp_path / "export-1"
    await cli(kubeconfig, "export", "dgc", "-n", NS, "--for", REL, "--format", "pem", "-o", str(first))
    manifest = (first / "MANIFEST.txt").read_text()
    dgc_ca = ca_status(await cluster.get("ServiceIdentity", NS, "dgc"))["fingerprint"]
    assert dgc_ca in manifest and f"trustwire confirm {REL} -n {NS}" in manifest
    assert [pki.fingerprint_sha256(c) for c in pki.load_certificates((first / "ca.crt").read_bytes())] == [dgc_ca]

    await cli(kubeconfig, "confirm", REL, "-n", NS)  # by default: every CA DGC publishes now
    annotations = ((await cluster.get("TrustRelationship", NS, REL)) or {})["metadata"]["annotations"]
    assert annotations[names.EXTERNAL_CONFIRMED_ANNOTATION] == dgc_ca
    async with both_ways(cluster, openssl, onprem, first, tmp_path) as (pod, installed, probe):
        await until(lambda: probe.result.ok >= 4, "first handshakes both ways", timeout=30)
        assert probe.result.failed == 0, probe.result.failures

        await cluster.client.merge_patch(IDENTITIES, NS, "dgc",
                                         {"metadata": {"annotations": {names.ROTATE_ANNOTATION: "ca:1"}}})
        body = await cluster.wait_for(
            "ServiceIdentity", NS, "dgc",
            lambda b: (c := condition(b, "Rotating")) is not None and c["reason"] == rot.AWAITING_CONFIRMATION,
            timeout=30, what="to wait for the outsider's confirmation")
        message = condition(body, "Rotating")["message"]  # type: ignore[index]
        assert "external peer onprem-jobserver" in message and f"trustwire confirm {REL} -n {NS}" in message
        # without the confirmation nothing switches, long past the propagation delay
        await asyncio.sleep(8)
        body = await cluster.get("ServiceIdentity", NS, "dgc")
        assert ca_rotation(body)["phase"] == rot.DISTRIBUTING and ca_status(body)["fingerprint"] == dgc_ca
        upcoming = ca_rotation(body)["next"]
        # the outsider installs the new export (active + next CA), then confirms it
        second = tmp_path / "export-2"
        await cli(kubeconfig, "export", "dgc", "-n", NS, "--for", REL, "--format", "pem", "-o", str(second))
        exported = {pki.fingerprint_sha256(c) for c in pki.load_certificates((second / "ca.crt").read_bytes())}
        assert exported == {dgc_ca, upcoming}
        installed.install(second)
        await cli(kubeconfig, "confirm", REL, "-n", NS, "--from", str(second))
        annotations = ((await cluster.get("TrustRelationship", NS, REL)) or {})["metadata"]["annotations"]
        assert annotations[names.EXTERNAL_CONFIRMED_ANNOTATION] == ",".join(sorted(exported))
        await cluster.wait_for("ServiceIdentity", NS, "dgc",
                               lambda b: ca_status(b).get("fingerprint") == upcoming
                               and ca_rotation(b).get("phase") == rot.IDLE, timeout=60, what="to finish the rotation")
        done = probe.result.ok
        await until(lambda: probe.result.ok >= done + 6, "handshakes on the new CA", timeout=30)
    result = probe.result
    # DGC's pod now presents a leaf of the new CA, and the outsider accepted it
    leaf = pki.load_certificates((pod.current / "tls.crt").read_bytes())[0]
    new_ca = next(c for c in pki.load_certificates((second / "ca.crt").read_bytes())
                  if pki.fingerprint_sha256(c) == upcoming)
    assert pki.is_signed_by(leaf, new_ca)
    assert result.ok > 20
    assert result.failed == 0, result.failures


async def test_probe_sees_the_outage_when_the_confirmation_is_skipped(
        cluster: Cluster, onprem: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The negative control: switching to the next CA before the outsider installed it breaks
    the connection, so the probe above can fail and its zero means something."""
    openssl = require_tool("openssl")
    kubeconfig = cluster.plane.admin_kubeconfig
    monkeypatch.setattr(rot, "confirmation_gate", lambda *a, **k: rot.Gate(True, "skipped"))
    await cluster.ensure_namespace(NS)
    await cluster.apply(ca_configmap(onprem["ca.crt"].read_bytes()))
    await cluster.apply(identity("dgc", NS, serviceName="dgc"))
    await cluster.apply(external_relationship(jwt={"enabled": False}))
    await cluster.wait_condition("TrustRelationship", NS, REL, "Ready")
    exported = tmp_path / "export"
    await cli(kubeconfig, "export", "dgc", "-n", NS, "--for", REL, "-o", str(exported))
    async with both_ways(cluster, openssl, onprem, exported, tmp_path) as (_, _, probe):
        await until(lambda: probe.result.ok >= 4, "first handshakes both ways", timeout=30)
        before = ca_status(await cluster.get("ServiceIdentity", NS, "dgc"))["fingerprint"]
        await cluster.client.merge_patch(IDENTITIES, NS, "dgc",
                                         {"metadata": {"annotations": {names.ROTATE_ANNOTATION: "ca:skip"}}})
        await cluster.wait_for("ServiceIdentity", NS, "dgc", lambda b: ca_status(b).get("fingerprint") != before,
                               timeout=60, what="to switch CAs")
        await until(lambda: probe.result.failed > 0, "the outage", timeout=30)
    result = probe.result
    # DGC's new leaf chains to a CA the Jobserver never installed: refused whichever side calls
    assert result.failed > 0 and all(f.startswith(("mTLS dgc->onprem", "mTLS onprem->dgc")) for f in result.failures)


@pytest.mark.parametrize(
    ("case", "bundle", "reason", "words"),
    [
        ("private key inside", lambda o: o["ca.crt"].read_bytes() + o["tls.key"].read_bytes(), "ExternalCAInvalid",
         "contains a private key"),
        ("a leaf, not a CA", lambda o: o["tls.crt"].read_bytes(), "ExternalCAInvalid", "not CAs"),
        ("not certificates", lambda o: b"hello", "ExternalCAInvalid", "is not a PEM certificate bundle"),
    ],
)
async def test_a_bad_bundle_stalls_the_relationship_naming_the_field(
        cluster: Cluster, onprem: dict[str, Path], case: str, bundle: Any, reason: str, words: str) -> None:
    await cluster.ensure_namespace(NS)
    await cluster.apply(ca_configmap(bundle(onprem)))
    await cluster.apply(identity("dgc", NS))
    await cluster.apply(external_relationship())
    body = await cluster.wait_condition("TrustRelationship", NS, REL, "ExternalCAReady", status="False")
    got = condition(body, "ExternalCAReady")
    assert got is not None and got["reason"] == reason
    assert got["message"].startswith("spec.between[1].external.caBundleRef: ConfigMap gov/onprem-ca")
    assert words in got["message"] and "PRIVATE KEY" not in got["message"]
    assert condition(body, "Stalled")["status"] == "True"  # type: ignore[index]
    await until(lambda: cluster.events(NS, REL), "an Event", timeout=10)
    events = await cluster.events_of(NS, REL, reason)
    assert events and events[0]["type"] == "Warning"
    pending = await cluster.wait_condition("ServiceIdentity", NS, "dgc", "TrustReady", status="False",
                                           reason="PeerPending")
    assert "external peer onprem-jobserver is not usable" in condition(pending, "TrustReady")["message"]  # type: ignore[index]
    await cluster.wait_for("Secret", NS, names.trust_secret("dgc"), lambda b: b is not None, what="to be written")
    trust = await cluster.data("Secret", NS, names.trust_secret("dgc"))
    assert trust.get("trust-bundle.pem", b"") == b""  # nothing of the bad bundle is trusted
    # the fix: the CA certificate only
    await cluster.apply(ca_configmap(onprem["ca.crt"].read_bytes()))
    await cluster.wait_condition("TrustRelationship", NS, REL, "Ready")


async def test_a_secret_may_hold_the_bundle(cluster: Cluster, onprem: dict[str, Path]) -> None:
    await cluster.ensure_namespace(NS)
    pem = base64.b64encode(onprem["ca.crt"].read_bytes()).decode()
    await cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "onprem-ca", "namespace": NS},
                         "type": "Opaque", "data": {"bundle.pem": pem}})
    await cluster.apply(identity("dgc", NS))
    rel = external_relationship()
    rel["spec"]["between"][1]["external"]["caBundleRef"] = {"kind": "Secret", "name": "onprem-ca", "key": "bundle.pem"}
    await cluster.apply(rel)
    await cluster.wait_condition("TrustRelationship", NS, REL, "Ready")
    body = await cluster.wait_condition("ServiceIdentity", NS, "dgc", "Ready")
    assert body["status"]["peerCount"] == 1
    trust = await cluster.data("Secret", NS, names.trust_secret("dgc"))
    assert trust["trust-bundle.pem"] == onprem["ca.crt"].read_bytes()
    secret = await cluster.get("Secret", NS, "onprem-ca")
    assert names.MANAGED_BY not in ((secret or {}).get("metadata") or {}).get("labels", {})  # left as it is


async def test_export_and_confirm_refuse_what_they_cannot_do(cluster: Cluster, tmp_path: Path) -> None:
    kubeconfig = cluster.plane.admin_kubeconfig
    await cluster.ensure_namespace(NS)
    await cluster.apply(identity("dgc", NS))
    await cluster.apply(identity("jobserver", NS))
    await cluster.apply(relationship("inside", NS, ("dgc", None), ("jobserver", None)))
    cases = [
        (("export", "dgc", "-n", NS, "--for", "inside", "-o", str(tmp_path / "x")),
         f"TrustRelationship {NS}/inside has no external member in spec.between"),
        (("export", "dgc", "-n", NS, "--for", "absent", "-o", str(tmp_path / "x")),
         f"TrustRelationship {NS}/absent not found"),
        (("confirm", "inside", "-n", NS, "--fingerprint", "ab"),
         f"TrustRelationship {NS}/inside has no external member in spec.between"),
        (("confirm", REL, "-n", NS, "--from", str(tmp_path / "nothing")), "no readable ca.crt"),
    ]
    for args, words in cases:
        run = await cli(kubeconfig, *args, code=3)
        assert words in run.stderr, (args, run.stderr)
    assert not (tmp_path / "x").exists()


async def test_the_api_server_refuses_malformed_external_members(cluster: Cluster) -> None:
    await cluster.ensure_namespace(NS)
    cases = [
        ({"between": [{"identity": "dgc"}, {"namespace": "x"}]}, "exactly one of identity, external or issuer"),
        ({"between": [{"identity": "dgc", "external": {"name": "a", "caBundleRef": {"name": "c"}}},
                      {"identity": "x"}]}, "exactly one of identity, external or issuer"),
        ({"between": [{"external": {"name": "a", "caBundleRef": {"name": "c"}}},
                      {"external": {"name": "b", "caBundleRef": {"name": "c"}}}]}, "two members outside the cluster"),
        ({"between": [{"identity": "dgc"}, {"external": {"name": "a", "caBundleRef": {"name": "c"}}}],
          "sharedSecret": {"enabled": True}}, "beside an external member"),
    ]
    for spec, words in cases:
        body = {"apiVersion": "trustwire.io/v1alpha1", "kind": "TrustRelationship",
                "metadata": {"name": "bad", "namespace": NS}, "spec": spec}
        with pytest.raises(ApiError) as info:
            await cluster.apply(body)
        assert info.value.status == 422 and words in str(info.value), (spec, str(info.value))

