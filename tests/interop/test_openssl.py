"""Interop with OpenSSL 3: ``s_server``/``s_client`` mutual TLS and ``openssl verify``.

What this proves, for every KeyAlgorithm, with material from trustwire.pki only:

* mutual TLS 1.3 and TLS 1.2 between two identities with *different* CAs, each side
  trusting only the other's CA (the server with ``-Verify 1 -verify_return_error``, the
  client with ``-verify_return_error -verify_hostname``), and the server really
  received our client leaf;
* a client certificate from an unrelated CA is refused (``unknown ca``), a client
  without a certificate is refused, and a wrong expected host name fails on the client;
* ``openssl verify -x509_strict`` accepts every leaf for ``sslserver`` and
  ``sslclient`` under its CA (all 36 leaf/CA algorithm pairs) and rejects a leaf
  under a foreign CA;
* ``openssl pkcs12 -info`` sees the documented encryption profiles and Oracle's
  trusted-key-usage attribute on truststore entries.

Ed25519 in TLS 1.2: OpenSSL 3 supports the RFC 8422 ``ed25519`` signature scheme
with ECDHE-ECDSA cipher suites, so Ed25519 TLS 1.2 is asserted to *work* here, not
skipped.
"""

from __future__ import annotations

import re
import selectors
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import pytest

from trustwire.pki import (
    KeyAlgorithm,
    cert_to_pem,
    create_leaf,
    generate_private_key,
    pkcs12_keystore,
    pkcs12_truststore,
    truststore_alias,
)

from .conftest import PROCESS_TIMEOUT, Party, now_utc, peer, require_tool, run

pytestmark = pytest.mark.interop

Parties = Callable[[KeyAlgorithm], dict[str, Party]]
VERSIONS = {"TLSv1.3": "-tls1_3", "TLSv1.2": "-tls1_2"}
ALGORITHMS = list(KeyAlgorithm)


@pytest.fixture(scope="module")
def openssl() -> str:
    return require_tool("openssl")


@dataclass
class Exchange:
    client: subprocess.CompletedProcess[str]
    server_out: str
    server_err: str

    @property
    def page(self) -> str:
        return self.client.stdout.replace("\r", "")


def _read_accept_port(proc: subprocess.Popen[bytes], deadline: float) -> tuple[int, bytes]:
    """Wait for ``ACCEPT 127.0.0.1:<port>`` from s_server (it binds port 0: no port race)."""
    assert proc.stdout is not None
    buffer = b""
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    try:
        while time.monotonic() < deadline:
            if selector.select(timeout=0.1):
                chunk = proc.stdout.read1(4096)  # type: ignore[attr-defined]
                if not chunk:
                    break
                buffer += chunk
                match = re.search(rb"ACCEPT 127\.0\.0\.1:(\d+)", buffer)
                if match:
                    return int(match.group(1)), buffer
    finally:
        selector.close()
    raise TimeoutError(f"s_server did not report its port: {buffer!r}")


def openssl_exchange(
    openssl: str,
    server: Party,
    server_trusts: Path,
    client: Party | None,
    client_trusts: Path,
    version: str,
    hostname: str,
) -> Exchange:
    server_cmd = [
        openssl, "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-www",
        "-cert", str(server.chain_pem), "-key", str(server.key_pem),
        "-CAfile", str(server_trusts), "-Verify", "1", "-verify_return_error", VERSIONS[version],
    ]  # fmt: skip
    deadline = time.monotonic() + PROCESS_TIMEOUT
    with peer(server_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL) as proc:
        port, early = _read_accept_port(proc, deadline)
        client_cmd = [
            openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", hostname,
            "-verify_hostname", hostname, "-CAfile", str(client_trusts), "-verify_return_error",
            "-ign_eof", VERSIONS[version],
        ]  # fmt: skip
        if client is not None:
            client_cmd += ["-cert", str(client.chain_pem), "-key", str(client.key_pem)]
        result = run(client_cmd, input=b"GET / HTTP/1.0\r\n\r\n", timeout=PROCESS_TIMEOUT)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=5)
    return Exchange(result, (early + out).decode(errors="replace"), err.decode(errors="replace"))


@pytest.mark.parametrize("version", list(VERSIONS))
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_mutual_tls_between_two_identities(
    openssl: str, parties: Parties, algorithm: KeyAlgorithm, version: str
) -> None:
    p = parties(algorithm)
    server, client = p["server"], p["client"]
    ex = openssl_exchange(
        openssl, server, client.ca_pem, client, server.ca_pem, version, hostname=server.hostname
    )
    assert ex.client.returncode == 0, ex.client.stderr + ex.server_err
    assert "Verify return code: 0 (ok)" in ex.client.stdout
    assert re.search(rf"New, {re.escape(version)}, Cipher is", ex.client.stdout), ex.client.stdout
    assert "HTTP/1.0 200 ok" in ex.page
    # s_server -www echoes the verified client certificate: it must be exactly our client leaf.
    assert cert_to_pem(client.leaf).decode() in ex.page
    assert "depth=0 CN = client" in ex.server_err and "verify error" not in ex.server_err


@pytest.mark.parametrize("version", list(VERSIONS))
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_client_from_unrelated_ca_is_refused(
    openssl: str, parties: Parties, algorithm: KeyAlgorithm, version: str
) -> None:
    p = parties(algorithm)
    server, outsider = p["server"], p["outsider"]
    # The outsider even sends its CA along (tls.crt = leaf + CA); trust must still fail.
    ex = openssl_exchange(
        openssl, server, p["client"].ca_pem, outsider, server.ca_pem, version, hostname=server.hostname
    )
    assert "HTTP/1.0 200 ok" not in ex.page
    assert "certificate verify failed" in ex.server_err
    assert "alert unknown ca" in ex.client.stderr
    assert ex.client.returncode != 0


@pytest.mark.parametrize("version", list(VERSIONS))
def test_client_without_certificate_is_refused(openssl: str, parties: Parties, version: str) -> None:
    p = parties(KeyAlgorithm.ECDSAP256)
    server = p["server"]
    ex = openssl_exchange(openssl, server, p["client"].ca_pem, None, server.ca_pem, version, server.hostname)
    assert "HTTP/1.0 200 ok" not in ex.page
    assert "peer did not return a certificate" in ex.server_err
    assert ex.client.returncode != 0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_client_checks_the_server_host_name(openssl: str, parties: Parties, algorithm: KeyAlgorithm) -> None:
    p = parties(algorithm)
    server, client = p["server"], p["client"]
    ok = openssl_exchange(openssl, server, client.ca_pem, client, server.ca_pem, "TLSv1.3", "localhost")
    assert "Verify return code: 0 (ok)" in ok.client.stdout
    bad = openssl_exchange(
        openssl, server, client.ca_pem, client, server.ca_pem, "TLSv1.3", "client.trustwire.test"
    )
    assert "Verify return code: 62 (hostname mismatch)" in bad.client.stdout
    assert bad.client.returncode != 0
    assert "HTTP/1.0 200 ok" not in bad.page


# --- openssl verify ------------------------------------------------------------------------

PAIRS = list(product(ALGORITHMS, ALGORITHMS))


@pytest.fixture(scope="module")
def cross_leaves(
    parties: Parties, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[KeyAlgorithm, KeyAlgorithm], tuple[Path, Path]]:
    """(leaf.pem, ca.pem) for a leaf of one algorithm issued by the server CA of another."""
    root = tmp_path_factory.mktemp("cross")
    keys = {a: parties(a)["client"].key for a in ALGORITHMS}

    def get(leaf_alg: KeyAlgorithm, ca_alg: KeyAlgorithm) -> tuple[Path, Path]:
        server = parties(ca_alg)["server"]
        leaf = create_leaf(
            server.ca,
            server.ca_key,
            keys[leaf_alg].public_key(),
            common_name="cross",
            dns_names=["cross.trustwire.test"],
            uri_sans=["spiffe://trustwire.test/ns/interop/sid/cross"],
            now=now_utc(),
            lifetime=__import__("datetime").timedelta(hours=1),
        )
        path = root / f"{leaf_alg}-under-{ca_alg}.pem"
        path.write_bytes(cert_to_pem(leaf))
        return path, server.ca_pem

    return get


@pytest.mark.parametrize(("leaf_alg", "ca_alg"), PAIRS, ids=[f"{a}-under-{b}" for a, b in PAIRS])
def test_openssl_verify_accepts_every_leaf_for_server_and_client(
    openssl: str,
    cross_leaves: Callable[[KeyAlgorithm, KeyAlgorithm], tuple[Path, Path]],
    leaf_alg: KeyAlgorithm,
    ca_alg: KeyAlgorithm,
) -> None:
    leaf, ca = cross_leaves(leaf_alg, ca_alg)
    for purpose in ("sslserver", "sslclient"):
        result = run([openssl, "verify", "-x509_strict", "-purpose", purpose, "-CAfile", str(ca), str(leaf)])
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == f"{leaf}: OK"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_openssl_verify_rejects_a_leaf_from_another_ca(
    openssl: str, parties: Parties, algorithm: KeyAlgorithm
) -> None:
    p = parties(algorithm)
    for purpose in ("sslserver", "sslclient"):
        good = run(
            [
                openssl,
                "verify",
                "-x509_strict",
                "-purpose",
                purpose,
                "-CAfile",
                str(p["server"].ca_pem),
                str(p["server"].leaf_pem),
            ]
        )
        assert good.returncode == 0, good.stderr
        bad = run(
            [
                openssl,
                "verify",
                "-x509_strict",
                "-purpose",
                purpose,
                "-CAfile",
                str(p["server"].ca_pem),
                str(p["outsider"].leaf_pem),
            ]
        )
        assert bad.returncode != 0
        assert "unable to get local issuer certificate" in bad.stdout + bad.stderr


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_openssl_verify_accepts_the_ca_itself_strictly(
    openssl: str, parties: Parties, algorithm: KeyAlgorithm
) -> None:
    ca = parties(algorithm)["server"].ca_pem
    result = run([openssl, "verify", "-x509_strict", "-check_ss_sig", "-CAfile", str(ca), str(ca)])
    assert result.returncode == 0, result.stdout + result.stderr


# --- openssl pkcs12 -info: profiles and the Java trusted attribute ----------------------------


def _pkcs12_info(openssl: str, path: Path, password: str) -> str:
    result = run([openssl, "pkcs12", "-info", "-in", str(path), "-passin", f"pass:{password}", "-nokeys"])
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    ("legacy", "expected", "absent"),
    [
        (
            False,
            ["MAC: sha256", "PBES2, PBKDF2, AES-256-CBC", "PRF hmacWithSHA256"],
            ["3-KeyTripleDES", "MAC: sha1"],
        ),
        (True, ["MAC: sha1", "pbeWithSHA1And3-KeyTripleDES-CBC"], ["AES-256-CBC", "MAC: sha256"]),
    ],
    ids=["modern", "legacy"],
)
def test_pkcs12_profiles_as_openssl_sees_them(
    openssl: str, parties: Parties, tmp_path: Path, legacy: bool, expected: list[str], absent: list[str]
) -> None:
    party = parties(KeyAlgorithm.ECDSAP256)["server"]
    keystore = tmp_path / "keystore.p12"
    keystore.write_bytes(pkcs12_keystore(party.key, party.leaf, [party.ca], party.password, legacy=legacy))
    info = _pkcs12_info(openssl, keystore, party.password)
    for fragment in expected:
        assert fragment in info, info
    for fragment in absent:
        assert fragment not in info, info
    assert "friendlyName: trustwire" in info


@pytest.mark.parametrize("legacy", [False, True], ids=["modern", "legacy"])
def test_truststore_bags_carry_the_oracle_trusted_attribute(
    openssl: str, parties: Parties, tmp_path: Path, legacy: bool
) -> None:
    cas = [parties(a)["server"].ca for a in ALGORITHMS]
    path = tmp_path / "truststore.p12"
    path.write_bytes(pkcs12_truststore(cas, "changeit-but-longer", legacy=legacy))
    info = _pkcs12_info(openssl, path, "changeit-but-longer")
    # OpenSSL >= 3.2 names the attribute; 3.0/3.1 print its OID and the value's ASN.1 tag
    # (6 = OBJECT IDENTIFIER). Its value being anyExtendedKeyUsage is proven by keytool in test_java.
    trusted = re.findall(
        r"Trusted key usage \(Oracle\): Any Extended Key Usage \(2\.5\.29\.37\.0\)"
        r"|2\.16\.840\.1\.113894\.746875\.1\.1: <Unsupported tag 6>",
        info,
    )
    assert len(trusted) == len(cas), info
    for ca in cas:
        assert f"friendlyName: {truststore_alias(ca)}" in info


def test_foreign_key_leaf_is_not_accepted_as_a_ca(openssl: str, parties: Parties, tmp_path: Path) -> None:
    """A leaf cannot act as an issuer for openssl: pathLen/CA:false are honoured."""
    p = parties(KeyAlgorithm.ECDSAP256)
    fake_issuer_key = p["server"].key
    server_leaf = p["server"].leaf
    sub_key = generate_private_key(KeyAlgorithm.ECDSAP256)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = now_utc()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sub")]))
        .issuer_name(server_leaf.subject)
        .public_key(sub_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + __import__("datetime").timedelta(hours=1))
        .sign(fake_issuer_key, hashes.SHA256())
    )
    leaf_path = tmp_path / "sub.pem"
    leaf_path.write_bytes(cert_to_pem(cert))
    untrusted = tmp_path / "untrusted.pem"
    untrusted.write_bytes(cert_to_pem(server_leaf))
    result = run(
        [openssl, "verify", "-CAfile", str(p["server"].ca_pem), "-untrusted", str(untrusted), str(leaf_path)]
    )
    assert result.returncode != 0
    assert "invalid CA certificate" in result.stdout + result.stderr
