"""Fixtures for interop proofs: real material on disk and bounded subprocess peers.

Material is generated once per session per KeyAlgorithm (RSA-4096 keygen is slow),
written to a session temp directory, and shared by the openssl, Python ssl, Java and
nginx tests. Every party (server, client, outsider) has its *own* CA, like two
trustwire identities: each side trusts only the other's CA.

Subprocess peers are always started with a deadline, bound to 127.0.0.1, and killed
in ``finally`` blocks, so a hanging peer fails a test instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from trustwire.pki import (
    KeyAlgorithm,
    PrivateKey,
    cert_to_pem,
    certs_to_pem,
    create_ca,
    create_leaf,
    generate_private_key,
    jks_keystore,
    jks_truststore,
    pkcs12_keystore,
    pkcs12_truststore,
    private_key_to_pem,
)

PROCESS_TIMEOUT = 20.0
ROLES = ("server", "client", "outsider")


def now_utc() -> datetime:
    """Real wall-clock time: interop peers check validity against their own clock."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Party:
    """One identity's material and the files it was written to."""

    role: str
    algorithm: KeyAlgorithm
    ca: x509.Certificate
    ca_key: PrivateKey
    leaf: x509.Certificate
    key: PrivateKey
    password: str
    dir: Path

    @property
    def ca_pem(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def chain_pem(self) -> Path:
        """tls.crt as the operator writes it: leaf then its CA."""
        return self.dir / "tls.crt"

    @property
    def leaf_pem(self) -> Path:
        return self.dir / "leaf.crt"

    @property
    def key_pem(self) -> Path:
        return self.dir / "tls.key"

    @property
    def hostname(self) -> str:
        return f"{self.role}.trustwire.test"

    def keystore(self, fmt: str) -> Path:
        return self.dir / f"keystore.{fmt}"

    def truststore(self, fmt: str, trusting: str) -> Path:
        return self.dir / f"truststore-{trusting}.{fmt}"


def write_stores(party: Party, trusted: dict[str, x509.Certificate]) -> None:
    """keystore.{p12,jks,legacy.p12} and one truststore per entry of ``trusted``."""
    chain = [party.ca]
    party.keystore("p12").write_bytes(pkcs12_keystore(party.key, party.leaf, chain, party.password))
    party.keystore("legacy.p12").write_bytes(
        pkcs12_keystore(party.key, party.leaf, chain, party.password, legacy=True)
    )
    party.keystore("jks").write_bytes(jks_keystore(party.key, party.leaf, chain, party.password))
    for name, ca in trusted.items():
        party.truststore("p12", name).write_bytes(pkcs12_truststore([ca], party.password))
        party.truststore("legacy.p12", name).write_bytes(pkcs12_truststore([ca], party.password, legacy=True))
        party.truststore("jks", name).write_bytes(jks_truststore([ca], party.password))


@pytest.fixture(scope="session")
def parties(tmp_path_factory: pytest.TempPathFactory) -> Callable[[KeyAlgorithm], dict[str, Party]]:
    """``parties(alg)`` -> {"server", "client", "outsider"}: each with its own CA and a leaf, files on disk.

    Each party's truststores: ``truststore-<role>.<fmt>`` trusts that role's CA.
    """
    root = tmp_path_factory.mktemp("interop-material")
    cache: dict[KeyAlgorithm, dict[str, Party]] = {}

    def get(algorithm: KeyAlgorithm) -> dict[str, Party]:
        if algorithm in cache:
            return cache[algorithm]
        now = now_utc()
        result: dict[str, Party] = {}
        for role in ROLES:
            directory = root / str(algorithm) / role
            directory.mkdir(parents=True)
            ca_key = generate_private_key(algorithm)
            ca = create_ca(ca_key, common_name=f"{role} {algorithm} CA", now=now, lifetime=timedelta(days=2))
            key = generate_private_key(algorithm)
            leaf = create_leaf(
                ca,
                ca_key,
                key.public_key(),
                common_name=role,
                dns_names=["localhost", f"{role}.trustwire.test"],
                uri_sans=[f"spiffe://trustwire.test/ns/interop/sid/{role}"],
                now=now,
                lifetime=timedelta(days=1),
            )
            party = Party(
                role, algorithm, ca, ca_key, leaf, key, f"pw-{role}-{algorithm}-0123456789", directory
            )
            party.ca_pem.write_bytes(cert_to_pem(ca))
            party.chain_pem.write_bytes(certs_to_pem([leaf, ca]))
            party.leaf_pem.write_bytes(cert_to_pem(leaf))
            party.key_pem.write_bytes(private_key_to_pem(key))
            result[role] = party
        for party in result.values():
            write_stores(party, {role: p.ca for role, p in result.items()})
        cache[algorithm] = result
        return result

    return get


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (for peers that cannot report an ephemeral port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, deadline: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"peer exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} in time")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a peer we started (its own process group), escalating to SIGKILL."""
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=3)


@contextmanager
def peer(cmd: Sequence[str], **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` in its own process group; always stopped on exit."""
    proc = subprocess.Popen(list(cmd), start_new_session=True, **kwargs)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        stop(proc)


def run(
    cmd: Sequence[str], *, input: bytes | None = None, timeout: float = PROCESS_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run a short-lived tool with a deadline; output as text."""
    result = subprocess.run(
        list(cmd), input=input, capture_output=True, timeout=timeout, check=False, start_new_session=True
    )
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode(errors="replace"),
        result.stderr.decode(errors="replace"),
    )


def require_tool(name: str, path: str | None = None) -> str:
    found = path if path and os.access(path, os.X_OK) else shutil.which(name)
    if not found:
        pytest.skip(
            f"{name} is not installed on this machine ({path or 'not on PATH'}); interop proof not run"
        )
    return found


def dump(obj: object) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)
