"""The material ``trustwire verify`` checks, parsed once: what a pod sees at ``mountPath``,
what it should be for, and the helpers every check shares. Parsing never raises; it says
what is wrong, so each check can report it.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trustwire import pki

#: ``spec.certificate.renewBefore``'s default, assumed when the identity's status is not at hand.
DEFAULT_RENEW_BEFORE = timedelta(hours=240)
#: JWK members that carry private key material (RFC 7518 §6); ``k`` is a symmetric key.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
REQUIRED_FILES = ("tls.crt", "tls.key", "ca.crt", "trust-bundle.pem", "peers.json", "peers.jwks")
JWT_FILES = ("jwt.key", "jwt.jwk", "jwt.kid")
SPIFFE = re.compile(r"spiffe://(?P<domain>[^/]+)/ns/(?P<namespace>[^/]+)/sid/(?P<name>[^/]+)")


@dataclasses.dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    message: str


@dataclasses.dataclass(frozen=True)
class Target:
    """What the material should be for; every field optional (derived from the material when unset).

    From the cluster these come from the ServiceIdentity's status; for a bare directory
    the namespace and name default to the leaf's SPIFFE ID and the service name to its CN.
    """

    identity: str | None = None
    namespace: str | None = None
    service_name: str | None = None
    dns_names: Sequence[str] = ()
    renewal_time: datetime | None = None
    renew_before: timedelta = DEFAULT_RENEW_BEFORE


def load_directory(directory: Path) -> dict[str, bytes]:
    """The files of a mounted directory by name (a projected volume's ``..data`` links skipped)."""
    files: dict[str, bytes] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith("..") or not path.is_file():
            continue
        files[path.name] = path.read_bytes()
    return files


def load_certs(files: Mapping[str, bytes], name: str, *,
           allow_empty: bool = False) -> tuple[list[x509.Certificate], str]:
    data = files.get(name)
    if data is None:
        return [], f"{name} is missing"
    if not data.strip():
        return [], "" if allow_empty else f"{name} is empty"
    try:
        return pki.load_certificates(data), ""
    except pki.PKIError as exc:
        return [], f"{name}: {exc}"


def load_json(files: Mapping[str, bytes], name: str) -> tuple[Any, str]:
    data = files.get(name)
    if data is None:
        return None, f"{name} is missing"
    try:
        return json.loads(data), ""
    except ValueError:
        return None, f"{name} is not valid JSON"


def read_text(files: Mapping[str, bytes], name: str) -> str | None:
    data = files.get(name)
    return None if data is None else data.decode("utf-8", "replace").strip()


def fingerprint(cert: x509.Certificate) -> str:
    return pki.fingerprint_sha256(cert)


def short(fingerprint: str) -> str:
    return f"sha256:{fingerprint[:16]}…"


def relative(moment: datetime, now: datetime) -> str:
    delta = moment - now
    future = delta.total_seconds() >= 0
    seconds = abs(delta.total_seconds())
    amount = f"{seconds / 86400:.0f} days" if seconds >= 2 * 86400 else f"{seconds / 3600:.1f} hours"
    return f"in {amount}" if future else f"{amount} ago"


def same_key(a: pki.PrivateKey, b: pki.PrivateKey) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return bool(a.private_bytes(*fmt) == b.private_bytes(*fmt))


@dataclasses.dataclass
class Material:
    files: Mapping[str, bytes]
    now: datetime
    target: Target
    chain: list[x509.Certificate]
    chain_problem: str
    key: pki.PrivateKey | None
    key_problem: str
    cas: list[x509.Certificate]
    cas_problem: str
    bundle: list[x509.Certificate]
    bundle_problem: str
    peers: list[Mapping[str, Any]]
    peers_problem: str

    @property
    def leaf(self) -> x509.Certificate | None:
        return self.chain[0] if self.chain else None


def parse_material(files: Mapping[str, bytes], now: datetime, target: Target) -> Material:
    chain, chain_problem = load_certs(files, "tls.crt")
    key: pki.PrivateKey | None = None
    key_problem = ""
    if "tls.key" not in files:
        key_problem = "tls.key is missing"
    else:
        try:
            key = pki.load_private_key(files["tls.key"])
        except pki.PKIError as exc:
            key_problem = f"tls.key: {exc}"
    cas, cas_problem = load_certs(files, "ca.crt")
    bundle, bundle_problem = load_certs(files, "trust-bundle.pem", allow_empty=True)
    peers_raw, peers_problem = load_json(files, "peers.json")
    peers: list[Mapping[str, Any]] = []
    if peers_raw is not None:
        if isinstance(peers_raw, list) and all(isinstance(p, Mapping) for p in peers_raw):
            peers = list(peers_raw)
        else:
            peers_problem = "peers.json is not a list of peer objects"
    return Material(files, now, target, chain, chain_problem, key, key_problem, cas, cas_problem,
                     bundle, bundle_problem, peers, peers_problem)


def spiffe_uris(leaf: x509.Certificate) -> tuple[list[str], re.Match[str] | None]:
    uris = [u for u in pki.uri_sans(leaf) if u.startswith("spiffe://")]
    return uris, (SPIFFE.fullmatch(uris[0]) if len(uris) == 1 else None)


def namespace_of(m: Material) -> str | None:
    if m.target.namespace:
        return m.target.namespace
    if m.leaf is not None:
        _, match = spiffe_uris(m.leaf)
        if match:
            return match["namespace"]
    return None
