"""Interop with Java 17 (JSSE and keytool) — the consumers PKCS#12/JKS exist for.

What this proves, for every KeyAlgorithm:

* ``keytool -list`` shows our keystores (modern PKCS#12, legacy PKCS#12, JKS) as one
  ``PrivateKeyEntry`` with a chain of 2 (leaf + CA), and our truststores as
  ``trustedCertEntry`` entries under the stable aliases — i.e. the Oracle
  trusted-key-usage attribute is right; without it Java shows an empty store;
* a JSSE server (``setNeedClientAuth(true)``) and a JSSE client (HTTPS endpoint
  identification, SNI) complete mutual TLS 1.3 and TLS 1.2 with the keystore/
  truststore pairs and the written passwords, for all three store formats, and each
  side sees the other's leaf subject;
* a server whose truststore lacks the client's CA refuses the client;
* the client's host-name check is active (wrong host name refused);
* Java's own ``KeyStore.getInstance("JKS")`` (JksProbe.java) loads our JKS key, chain and
  trusted entries, refuses a wrong store or key password, and we read the JKS keytool writes.

The peer (TlsPeer.java, next to this file) is copied to a temp dir and compiled with
``javac`` once per session; all handshakes run in one JVM to keep the suite fast.
Skipped, with the reason, only when ``javac``/``java``/``keytool`` are missing.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, load_der_private_key

from trustwire.pki import (
    KeyAlgorithm,
    PKIError,
    jks_keystore,
    jks_truststore,
    pkcs12_truststore,
    public_key_matches,
    read_jks,
    truststore_alias,
)

from .conftest import Party, require_tool, run

pytestmark = pytest.mark.interop

Parties = Callable[[KeyAlgorithm], dict[str, Party]]
FORMATS = {"p12": "PKCS12", "legacy.p12": "PKCS12", "jks": "JKS"}
PROTOCOLS = ["TLSv1.3", "TLSv1.2"]
ALGORITHMS = list(KeyAlgorithm)
JVM_FAST = ["-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC"]


@pytest.fixture(scope="session")
def jdk() -> dict[str, str]:
    tools = {name: require_tool(name) for name in ("javac", "java", "keytool")}
    return tools


@pytest.fixture(scope="session")
def tls_peer_classes(jdk: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compiled(jdk, tmp_path_factory, "TlsPeer.java")


def compiled(jdk: dict[str, str], tmp_path_factory: pytest.TempPathFactory, source: str) -> Path:
    """The class directory of ``source`` (a Java file next to this one), compiled by javac."""
    build = tmp_path_factory.mktemp(Path(source).stem)
    shutil.copy(Path(__file__).with_name(source), build / source)
    result = run([jdk["javac"], "-d", str(build), str(build / source)], timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return build


def _stores(party: Party, fmt: str, trusting: str) -> list[str]:
    return [str(party.keystore(fmt)), party.password, str(party.truststore(fmt, trusting)), party.password]


def _case(
    name: str,
    fmt: str,
    server: tuple[Party, str],
    client: tuple[Party, str],
    protocol: str,
    host: str,
    client_mode: str = "",
) -> str:
    """One TlsPeer case line; ``server``/``client`` are (party, role whose CA it trusts)."""
    fields = [name, FORMATS[fmt], *_stores(server[0], fmt, server[1]), *_stores(client[0], fmt, client[1])]
    return "\t".join([*fields, protocol, host, client_mode])


@pytest.fixture(scope="module")
def java_results(
    jdk: dict[str, str], tls_peer_classes: Path, parties: Parties, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[str, str]]:
    lines = []
    for algorithm in ALGORITHMS:
        p = parties(algorithm)
        server, client = p["server"], p["client"]
        for fmt in FORMATS:
            for protocol in PROTOCOLS:
                lines.append(
                    _case(f"ok-{algorithm}-{fmt}-{protocol}", fmt, (server, "client"), (client, "server"),
                          protocol, server.hostname)
                )  # fmt: skip
            # The server trusts only the outsider's CA, not the client's. A plain JSSE client then
            # withholds its certificate; one that offers it anyway is refused by path validation.
            for mode in ("", "offer-anyway"):
                name = f"untrusted-{algorithm}-{fmt}-{mode or 'plain'}"
                lines.append(
                    _case(
                        name, fmt, (server, "outsider"), (client, "server"), "TLSv1.3", server.hostname, mode
                    )
                )
        lines.append(
            _case(f"hostname-{algorithm}", "p12", (server, "client"), (client, "server"), "TLSv1.3",
                  "client.trustwire.test")
        )  # fmt: skip
    cases = tmp_path_factory.mktemp("java-cases") / "cases.tsv"
    cases.write_text("\n".join(lines) + "\n")
    result = run(
        [jdk["java"], "-XX:+UseSerialGC", "-cp", str(tls_peer_classes), "TlsPeer", str(cases)], timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    results: dict[str, tuple[str, str]] = {}
    for line in result.stdout.splitlines():
        if line.startswith("RESULT "):
            name, server_part, client_part = line[len("RESULT ") :].split("\t")
            results[name] = (server_part.removeprefix("server="), client_part.removeprefix("client="))
    assert len(results) == len(lines), result.stdout + result.stderr
    return results


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_jsse_mutual_tls(
    java_results: dict[str, tuple[str, str]], algorithm: KeyAlgorithm, fmt: str, protocol: str
) -> None:
    server, client = java_results[f"ok-{algorithm}-{fmt}-{protocol}"]
    assert server == f"OK {protocol} peer=CN=client", server
    assert client == f"OK {protocol} peer=CN=server reply=PONG PING", client


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_jsse_server_refuses_client_whose_ca_it_does_not_trust(
    java_results: dict[str, tuple[str, str]], algorithm: KeyAlgorithm, fmt: str
) -> None:
    # A standard JSSE client sees its CA missing from the server's certificate_authorities
    # and sends no certificate; the server (needClientAuth) refuses the empty chain.
    server, client = java_results[f"untrusted-{algorithm}-{fmt}-plain"]
    assert server == "FAIL SSLHandshakeException: Empty client certificate chain", server
    assert not client.startswith("OK "), client
    # A client that presents its leaf anyway is refused by the server's PKIX path validation.
    server, client = java_results[f"untrusted-{algorithm}-{fmt}-offer-anyway"]
    assert server.startswith("FAIL SSLHandshakeException: PKIX path building failed"), server
    assert "unable to find valid certification path to requested target" in server, server
    assert not client.startswith("OK "), client


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_jsse_client_checks_host_name(
    java_results: dict[str, tuple[str, str]], algorithm: KeyAlgorithm
) -> None:
    _, client = java_results[f"hostname-{algorithm}"]
    assert client.startswith("FAIL "), client
    assert "No subject alternative DNS name matching client.trustwire.test found" in client, client


# --- keytool -list ----------------------------------------------------------------------------
# Each listing is a separate keytool process; they run in parallel (one per core) in a fixture
# because a JVM start dominates their cost.

BUNDLE_PASSWORD = "bundle-password-0123456789"


def entries(listing: str) -> dict[str, str]:
    """alias -> entry type, from ``keytool -list -v`` output."""
    aliases = re.findall(r"^Alias name: (.+)$", listing, flags=re.M)
    kinds = re.findall(r"^Entry type: (.+)$", listing, flags=re.M)
    assert len(aliases) == len(kinds)
    return dict(zip(aliases, kinds, strict=True))


@pytest.fixture(scope="module")
def keytool_listings(
    jdk: dict[str, str], parties: Parties, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, subprocess.CompletedProcess[str]]:
    jobs: dict[str, tuple[Path, str, str]] = {}
    for algorithm in ALGORITHMS:
        party = parties(algorithm)["server"]
        for fmt, storetype in FORMATS.items():
            jobs[f"keystore-{algorithm}-{fmt}"] = (party.keystore(fmt), party.password, storetype)
            jobs[f"truststore-{algorithm}-{fmt}"] = (
                party.truststore(fmt, "client"),
                party.password,
                storetype,
            )
    bundle_dir = tmp_path_factory.mktemp("bundles")
    cas = [parties(a)[role].ca for a in ALGORITHMS for role in ("server", "client")]
    for fmt, storetype in FORMATS.items():
        path = bundle_dir / f"bundle.{fmt}"
        if fmt == "jks":
            path.write_bytes(jks_truststore(cas, BUNDLE_PASSWORD))
        else:
            path.write_bytes(pkcs12_truststore(cas, BUNDLE_PASSWORD, legacy=fmt == "legacy.p12"))
        jobs[f"bundle-{fmt}"] = (path, BUNDLE_PASSWORD, storetype)

    def keytool(job: tuple[Path, str, str]) -> subprocess.CompletedProcess[str]:
        path, password, storetype = job
        args = ["-list", "-v", "-keystore", str(path), "-storepass", password, "-storetype", storetype]
        return run([jdk["keytool"], *JVM_FAST, *args])

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(zip(jobs, pool.map(keytool, jobs.values()), strict=True))


def listing_of(listings: dict[str, subprocess.CompletedProcess[str]], key: str) -> str:
    result = listings[key]
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_keytool_lists_keystore_as_private_key_entry_with_chain(
    keytool_listings: dict[str, subprocess.CompletedProcess[str]], algorithm: KeyAlgorithm, fmt: str
) -> None:
    listing = listing_of(keytool_listings, f"keystore-{algorithm}-{fmt}")
    assert f"Keystore type: {FORMATS[fmt]}" in listing
    assert entries(listing) == {"trustwire": "PrivateKeyEntry"}
    assert "Certificate chain length: 2" in listing
    assert re.search(r"^Owner: CN=server$", listing, flags=re.M)
    assert re.search(rf"^Owner: O=trustwire, CN=server {algorithm} CA$", listing, flags=re.M)


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_keytool_lists_truststore_as_trusted_cert_entries(
    keytool_listings: dict[str, subprocess.CompletedProcess[str]],
    parties: Parties,
    algorithm: KeyAlgorithm,
    fmt: str,
) -> None:
    listing = listing_of(keytool_listings, f"truststore-{algorithm}-{fmt}")
    assert f"Keystore type: {FORMATS[fmt]}" in listing
    assert entries(listing) == {truststore_alias(parties(algorithm)["client"].ca): "trustedCertEntry"}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_keytool_lists_a_multi_ca_trust_bundle(
    keytool_listings: dict[str, subprocess.CompletedProcess[str]], parties: Parties, fmt: str
) -> None:
    """A truststore with several peers' CAs (all algorithms): every one is a trusted entry."""
    cas = [parties(a)[role].ca for a in ALGORITHMS for role in ("server", "client")]
    listing = listing_of(keytool_listings, f"bundle-{fmt}")
    assert f"Your keystore contains {len(cas)} entries" in listing
    assert entries(listing) == {truststore_alias(ca): "trustedCertEntry" for ca in cas}


# --- Java's own JKS KeyStore: our writer against Java, keytool's JKS against our reader ---------

JKS_PASSWORD = "pässwörd-😀-0123456789"  # beyond ASCII: Java hashes UTF-16 code units


@pytest.fixture(scope="session")
def jks_probe_classes(jdk: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compiled(jdk, tmp_path_factory, "JksProbe.java")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _probe(jdk: dict[str, str], classes: Path, path: Path, password: str) -> list[str]:
    result = run([jdk["java"], "-XX:+UseSerialGC", "-cp", str(classes), "JksProbe", str(path), password])
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_java_keystore_loads_our_jks_key_chain_and_checks_the_password(
    jdk: dict[str, str], jks_probe_classes: Path, parties: Parties, tmp_path: Path, algorithm: KeyAlgorithm
) -> None:
    party = parties(algorithm)["server"]
    path = tmp_path / "keystore.jks"
    path.write_bytes(jks_keystore(party.key, party.leaf, [party.ca], JKS_PASSWORD, alias="Ünï-😀"))
    key_line, store_line = _probe(jdk, jks_probe_classes, path, JKS_PASSWORD)
    pkcs8 = party.key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    chain = " ".join(_sha256(c.public_bytes(Encoding.DER)) for c in (party.leaf, party.ca))
    alias, key, wrong_key = key_line.split("\t")
    assert alias == "ünï-😀"
    assert key.startswith("KEY ") and key.endswith(f" {_sha256(pkcs8)} {chain}"), key
    assert wrong_key == "WRONG-KEY-PASSWORD-REFUSED"
    assert store_line == "WRONG-STORE-PASSWORD-REFUSED Keystore was tampered with, or password was incorrect"


def test_java_keystore_loads_our_jks_truststore(
    jdk: dict[str, str], jks_probe_classes: Path, parties: Parties, tmp_path: Path
) -> None:
    cas = [parties(a)["client"].ca for a in ALGORITHMS]
    path = tmp_path / "truststore.jks"
    path.write_bytes(jks_truststore(cas, JKS_PASSWORD))
    *lines, store_line = _probe(jdk, jks_probe_classes, path, JKS_PASSWORD)
    assert sorted(lines) == sorted(f"{truststore_alias(c)}\tTRUSTED {_sha256(c.public_bytes(Encoding.DER))}"
                                   for c in cas)
    assert store_line.startswith("WRONG-STORE-PASSWORD-REFUSED")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_we_read_the_jks_keytool_writes(
    jdk: dict[str, str], parties: Parties, tmp_path: Path, algorithm: KeyAlgorithm
) -> None:
    party = parties(algorithm)["server"]
    target = tmp_path / "keytool.jks"
    args = ["-importkeystore", "-noprompt", "-srckeystore", str(party.keystore("p12")), "-srcstoretype", "PKCS12",
            "-srcstorepass", party.password, "-destkeystore", str(target), "-deststoretype", "JKS",
            "-deststorepass", JKS_PASSWORD, "-destkeypass", JKS_PASSWORD]
    result = run([jdk["keytool"], *JVM_FAST, *args])
    assert result.returncode == 0, result.stdout + result.stderr
    store = read_jks(target.read_bytes(), JKS_PASSWORD)
    (entry,) = store.keys
    assert entry.alias == "trustwire" and store.trusted == ()
    assert list(entry.chain) == [c.public_bytes(Encoding.DER) for c in (party.leaf, party.ca)]
    assert public_key_matches(load_der_private_key(entry.pkcs8, None), party.leaf)  # type: ignore[arg-type]
    with pytest.raises(PKIError, match="does not open"):
        read_jks(target.read_bytes(), party.password)
