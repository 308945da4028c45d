"""Offline checks of one identity's material: is what a pod sees actually consistent?

``trustwire verify`` answers "would this work?" without a handshake partner: it takes the
files a wired pod sees at ``mountPath`` (the credentials and trust Secrets projected into
one directory) — from a directory, or read from the cluster — and checks each property
the operator promises, one :class:`Finding` per check:

* ``files`` — the contract's keys are present;
* ``chain`` / ``private key`` — the leaf is signed by ``ca.crt`` and ``tls.key`` is its key;
* ``DNS SANs`` / ``SPIFFE ID`` — ``<svc>.<ns>.svc`` (and the other names) and one
  ``spiffe://<trustDomain>/ns/<ns>/sid/<name>`` URI SAN;
* ``validity`` / ``renewal`` — not expired, and not past the time it should have been renewed;
* ``keystore.*`` / ``truststore.*`` — they open with their password, the keystore holds the
  same key and certificate, the truststore exactly the CAs of ``trust-bundle.pem``;
* ``trust bundle`` and one ``peer <ns>/<name>`` line per peer — every mTLS peer's CA is
  trusted, every kid a peer signs with is in ``peers.jwks``, nothing else is trusted;
* ``peers.jwks`` — public members only; ``jwt`` — ``jwt.kid`` is the RFC 7638 thumbprint
  of ``jwt.jwk``, which matches ``jwt.key``;
* ``public`` (with the public ConfigMap) — the published CA, JWKS and SPIFFE ID are ours.

Pure: bytes and a clock in, findings out. Messages name files, fingerprints, serials and
kids — public values — and never key material.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jks
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from trustwire import pki
from trustwire.pki.certs import require_utc
from trustwire.plan.identity import renewal_time as leaf_renewal_time

__all__ = ["DEFAULT_RENEW_BEFORE", "Finding", "Target", "load_directory", "verify_material"]

#: ``spec.certificate.renewBefore``'s default, assumed when the identity's status is not at hand.
DEFAULT_RENEW_BEFORE = timedelta(hours=240)
#: JWK members that carry private key material (RFC 7518 §6); ``k`` is a symmetric key.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
REQUIRED_FILES = ("tls.crt", "tls.key", "ca.crt", "trust-bundle.pem", "peers.json", "peers.jwks")
JWT_FILES = ("jwt.key", "jwt.jwk", "jwt.kid")
_SPIFFE = re.compile(r"spiffe://(?P<domain>[^/]+)/ns/(?P<namespace>[^/]+)/sid/(?P<name>[^/]+)")


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


# --------------------------------------------------------------------------------------
# Parsing helpers: never raise, say what is wrong
# --------------------------------------------------------------------------------------
def _certs(files: Mapping[str, bytes], name: str, *,
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


def _json(files: Mapping[str, bytes], name: str) -> tuple[Any, str]:
    data = files.get(name)
    if data is None:
        return None, f"{name} is missing"
    try:
        return json.loads(data), ""
    except ValueError:
        return None, f"{name} is not valid JSON"


def _text(files: Mapping[str, bytes], name: str) -> str | None:
    data = files.get(name)
    return None if data is None else data.decode("utf-8", "replace").strip()


def _fp(cert: x509.Certificate) -> str:
    return pki.fingerprint_sha256(cert)


def _short(fingerprint: str) -> str:
    return f"sha256:{fingerprint[:16]}…"


def _when(moment: datetime, now: datetime) -> str:
    delta = moment - now
    future = delta.total_seconds() >= 0
    seconds = abs(delta.total_seconds())
    amount = f"{seconds / 86400:.0f} days" if seconds >= 2 * 86400 else f"{seconds / 3600:.1f} hours"
    return f"in {amount}" if future else f"{amount} ago"


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _same_key(a: pki.PrivateKey, b: pki.PrivateKey) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return bool(a.private_bytes(*fmt) == b.private_bytes(*fmt))


# --------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Material:
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


def _parse(files: Mapping[str, bytes], now: datetime, target: Target) -> _Material:
    chain, chain_problem = _certs(files, "tls.crt")
    key: pki.PrivateKey | None = None
    key_problem = ""
    if "tls.key" not in files:
        key_problem = "tls.key is missing"
    else:
        try:
            key = pki.load_private_key(files["tls.key"])
        except pki.PKIError as exc:
            key_problem = f"tls.key: {exc}"
    cas, cas_problem = _certs(files, "ca.crt")
    bundle, bundle_problem = _certs(files, "trust-bundle.pem", allow_empty=True)
    peers_raw, peers_problem = _json(files, "peers.json")
    peers: list[Mapping[str, Any]] = []
    if peers_raw is not None:
        if isinstance(peers_raw, list) and all(isinstance(p, Mapping) for p in peers_raw):
            peers = list(peers_raw)
        else:
            peers_problem = "peers.json is not a list of peer objects"
    return _Material(files, now, target, chain, chain_problem, key, key_problem, cas, cas_problem,
                     bundle, bundle_problem, peers, peers_problem)


def _check_files(m: _Material) -> list[Finding]:
    missing = [name for name in REQUIRED_FILES if name not in m.files]
    jwt_present = [name for name in JWT_FILES if name in m.files]
    if jwt_present and len(jwt_present) < len(JWT_FILES):
        missing += [name for name in JWT_FILES if name not in m.files]
    if missing:
        return [Finding("files", False, f"missing: {', '.join(missing)}")]
    return [Finding("files", True, f"{len(m.files)} files present")]


def _check_chain(m: _Material) -> list[Finding]:
    if m.leaf is None or not m.cas:
        return [Finding("chain", False, m.chain_problem or m.cas_problem)]
    not_ca = [c for c in m.cas if not pki.is_ca(c)]
    if not_ca:
        return [Finding("chain", False,
                        f"ca.crt holds a certificate that is not a CA ({_short(_fp(not_ca[0]))})")]
    issuer = next((ca for ca in m.cas if pki.is_signed_by(m.leaf, ca)), None)
    if issuer is None:
        return [Finding("chain", False, f"the leaf in tls.crt (serial {pki.serial_hex(m.leaf)}) "
                                        "is not signed by any CA in ca.crt")]
    if len(m.chain) > 1 and not pki.is_signed_by(m.leaf, m.chain[1]):
        return [Finding("chain", False, "tls.crt: the certificate after the leaf is not its issuer")]
    return [Finding("chain", True, f"leaf serial {pki.serial_hex(m.leaf)} signed by CA "
                                   f"{pki.subject_common_name(issuer) or '?'} ({_short(_fp(issuer))})")]


def _check_key(m: _Material) -> list[Finding]:
    if m.leaf is None or m.key is None:
        return [Finding("private key", False, m.key_problem or m.chain_problem)]
    if not pki.public_key_matches(m.key, m.leaf):
        return [Finding("private key", False, "tls.key does not match the leaf certificate in tls.crt")]
    return [Finding("private key", True, f"tls.key matches the leaf ({pki.key_algorithm_of(m.key)})")]


def _spiffe(leaf: x509.Certificate) -> tuple[list[str], re.Match[str] | None]:
    uris = [u for u in pki.uri_sans(leaf) if u.startswith("spiffe://")]
    return uris, (_SPIFFE.fullmatch(uris[0]) if len(uris) == 1 else None)


def _namespace(m: _Material) -> str | None:
    if m.target.namespace:
        return m.target.namespace
    if m.leaf is not None:
        _, match = _spiffe(m.leaf)
        if match:
            return match["namespace"]
    return None


def _check_dns(m: _Material) -> list[Finding]:
    if m.leaf is None:
        return [Finding("DNS SANs", False, m.chain_problem)]
    present = {n.lower() for n in pki.dns_sans(m.leaf)}
    expected = list(m.target.dns_names)
    if not expected:
        service = m.target.service_name or pki.subject_common_name(m.leaf)
        namespace = _namespace(m)
        if not service or not namespace:
            return [Finding("DNS SANs", False,
                            "cannot tell the service name and namespace (no CN or SPIFFE ID)")]
        expected = [service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
                    f"{service}.{namespace}.svc.cluster.local"]
    missing = [n for n in expected if n.lower() not in present]
    if missing:
        return [Finding("DNS SANs", False, f"the leaf lacks DNS name(s) {', '.join(missing)}")]
    key_name = next((n for n in expected if n.endswith(".svc")), expected[0])
    return [Finding("DNS SANs", True, f"{len(present)} DNS name(s), including {key_name}")]


def _check_spiffe(m: _Material) -> list[Finding]:
    if m.leaf is None:
        return [Finding("SPIFFE ID", False, m.chain_problem)]
    uris, match = _spiffe(m.leaf)
    if not uris:
        return [Finding("SPIFFE ID", False, "the leaf has no spiffe:// URI SAN")]
    if len(uris) > 1:
        return [Finding("SPIFFE ID", False,
                        f"the leaf has {len(uris)} spiffe:// URI SANs; a SVID has exactly one")]
    if match is None:
        return [Finding("SPIFFE ID", False, f"{uris[0]} is not spiffe://<trustDomain>/ns/<namespace>/sid/<name>")]
    wrong = [f"{what} is {match[what]}, expected {want}"
             for what, want in (("namespace", m.target.namespace), ("name", m.target.identity))
             if want and match[what] != want]
    if wrong:
        return [Finding("SPIFFE ID", False, f"{uris[0]}: {'; '.join(wrong)}")]
    return [Finding("SPIFFE ID", True, uris[0])]


def _check_validity(m: _Material) -> list[Finding]:
    if m.leaf is None:
        return [Finding("validity", False, m.chain_problem)]
    problems = []
    start, end = pki.not_before(m.leaf), pki.not_after(m.leaf)
    if m.now < start:
        problems.append(f"the leaf is not valid before {_stamp(start)}")
    if m.now >= end:
        problems.append(f"the leaf expired at {_stamp(end)} ({_when(end, m.now)})")
    for ca in m.cas:
        if m.now >= pki.not_after(ca):
            problems.append(f"CA {_short(_fp(ca))} in ca.crt expired at {_stamp(pki.not_after(ca))}")
    if problems:
        return [Finding("validity", False, "; ".join(problems))]
    return [Finding("validity", True, f"leaf valid until {_stamp(end)} ({_when(end, m.now)})")]


def _check_renewal(m: _Material) -> list[Finding]:
    if m.leaf is None:
        return [Finding("renewal", False, m.chain_problem)]
    due = m.target.renewal_time
    source = "status.certificate.renewalTime"
    if due is None:
        due = leaf_renewal_time(m.leaf, m.target.renew_before)
        source = f"renewBefore {m.target.renew_before.total_seconds() / 3600:.0f}h"
    if m.now >= due:
        return [Finding("renewal", False,
                        f"the leaf was due for renewal at {_stamp(due)} ({_when(due, m.now)}, {source}) "
                        "and has not been renewed — is the operator running?")]
    return [Finding("renewal", True, f"renewal due {_stamp(due)} ({_when(due, m.now)})")]


def _open_pkcs12(m: _Material, name: str, password_file: str,
                 ) -> tuple[pki.PrivateKey | None, list[x509.Certificate], str]:
    password = _text(m.files, password_file)
    if password is None:
        return None, [], f"{password_file} is missing"
    try:
        key, certs = pki.read_pkcs12(m.files[name], password)
    except pki.PKIError:
        return None, [], f"{name} does not open with {password_file} (wrong password or corrupt file)"
    return key, certs, ""


def _open_jks(m: _Material, name: str, password_file: str) -> tuple[Any, str]:
    password = _text(m.files, password_file)
    if password is None:
        return None, f"{password_file} is missing"
    try:
        return jks.KeyStore.loads(m.files[name], password), ""
    except Exception:  # pyjks raises its own hierarchy and pyasn1 errors
        return None, f"{name} does not open with {password_file} (wrong password or corrupt file)"


def _keystore_problem(m: _Material, key: pki.PrivateKey | None, certs: Sequence[x509.Certificate],
                      name: str) -> str:
    if key is None:
        return f"{name} holds no private key"
    if m.key is not None and not _same_key(key, m.key):
        return f"the private key in {name} is not tls.key"
    if m.leaf is None or not certs or certs[0] != m.leaf:
        return f"the certificate in {name} is not the leaf in tls.crt"
    if m.cas and not any(c in certs[1:] for c in m.cas):
        return f"{name} does not carry the CA chain of ca.crt"
    return ""


def _check_keystores(m: _Material) -> list[Finding]:
    findings: list[Finding] = []
    if "keystore.p12" in m.files:
        key, certs, problem = _open_pkcs12(m, "keystore.p12", "keystore.password")
        problem = problem or _keystore_problem(m, key, certs, "keystore.p12")
        findings.append(Finding("keystore.p12", not problem,
                                problem or "opens with keystore.password; holds tls.key and the leaf"))
    if "keystore.jks" in m.files:
        store, problem = _open_jks(m, "keystore.jks", "keystore.password")
        if store is not None:
            entries = list(store.private_keys.values())
            if len(entries) != 1:
                problem = f"keystore.jks holds {len(entries)} private key entries, expected 1"
            else:
                try:
                    loaded = serialization.load_der_private_key(entries[0].pkey_pkcs8, password=None)
                    certs = [x509.load_der_x509_certificate(der) for _, der in entries[0].cert_chain]
                except (ValueError, TypeError):
                    problem = "keystore.jks holds an unreadable key entry"
                else:
                    supported = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
                    key = loaded if isinstance(loaded, supported) else None
                    problem = _keystore_problem(m, key, certs, "keystore.jks")
        findings.append(Finding("keystore.jks", not problem,
                                problem or "opens with keystore.password; holds tls.key and the leaf"))
    if not findings:
        findings.append(Finding("keystore", True, "no keystore.p12 or keystore.jks (PEM only)"))
    return findings


def _check_truststores(m: _Material) -> list[Finding]:
    findings: list[Finding] = []
    wanted = {_fp(c) for c in m.bundle}

    def compare(name: str, held: Iterable[x509.Certificate]) -> str:
        have = {_fp(c) for c in held}
        extra, missing = have - wanted, wanted - have
        parts = []
        if missing:
            parts.append(f"lacks {len(missing)} CA(s) of trust-bundle.pem "
                         f"({', '.join(map(_short, sorted(missing)))})")
        if extra:
            parts.append(f"holds {len(extra)} CA(s) not in trust-bundle.pem "
                         f"({', '.join(map(_short, sorted(extra)))})")
        return f"{name} {' and '.join(parts)}" if parts else ""

    for name, opener in (("truststore.p12", "p12"), ("truststore.jks", "jks")):
        if name not in m.files:
            keystore = "keystore" + name[len("truststore"):]
            if wanted and keystore in m.files:
                findings.append(Finding(name, False, f"{name} is missing although trust-bundle.pem holds "
                                                     f"{len(wanted)} CA(s)"))
            continue
        if opener == "p12":
            key, certs, problem = _open_pkcs12(m, name, "truststore.password")
            if not problem and key is not None:
                problem = f"{name} holds a private key; a truststore must hold certificates only"
        else:
            store, problem = _open_jks(m, name, "truststore.password")
            certs = []
            if store is not None:
                if store.private_keys:
                    problem = f"{name} holds a private key; a truststore must hold certificates only"
                certs = [x509.load_der_x509_certificate(e.cert) for e in store.certs.values()]
        problem = problem or compare(name, certs)
        findings.append(Finding(name, not problem,
                                problem or f"opens with truststore.password; exactly the {len(wanted)} CA(s) "
                                           "of trust-bundle.pem"))
    return findings


def _check_bundle(m: _Material) -> list[Finding]:
    if m.bundle_problem:
        return [Finding("trust bundle", False, m.bundle_problem)]
    if m.peers_problem:
        return [Finding("trust bundle", False, m.peers_problem)]
    not_ca = [c for c in m.bundle if not pki.is_ca(c)]
    if not_ca:
        return [Finding("trust bundle", False, f"trust-bundle.pem holds a non-CA certificate "
                                               f"({_short(_fp(not_ca[0]))})")]
    accounted = {str(fp) for p in m.peers if p.get("mtls") for fp in p.get("caFingerprints") or []}
    stray = sorted({_fp(c) for c in m.bundle} - accounted)
    if stray:
        return [Finding("trust bundle", False, f"trust-bundle.pem trusts {len(stray)} CA(s) no mTLS peer in "
                                               f"peers.json accounts for ({', '.join(map(_short, stray))})")]
    expired = [c for c in m.bundle if m.now >= pki.not_after(c)]
    if expired:
        return [Finding("trust bundle", False,
                        f"trust-bundle.pem holds an expired CA ({_short(_fp(expired[0]))}, "
                        f"expired {_stamp(pki.not_after(expired[0]))})")]
    return [Finding("trust bundle", True, f"{len(m.bundle)} peer CA(s), all accounted for by peers.json")]


def _jwks_keys(m: _Material) -> tuple[list[Mapping[str, Any]], str]:
    doc, problem = _json(m.files, "peers.jwks")
    if problem:
        return [], problem
    keys = doc.get("keys") if isinstance(doc, Mapping) else None
    if not isinstance(keys, list) or not all(isinstance(k, Mapping) for k in keys):
        return [], 'peers.jwks is not a JWK Set ({"keys": [...]})'
    return keys, ""


def _check_peers(m: _Material) -> list[Finding]:
    if m.peers_problem:
        return [Finding("peers", False, m.peers_problem)]
    keys, jwks_problem = _jwks_keys(m)
    kids_present = {str(k.get("kid")) for k in keys}
    bundle = {_fp(c) for c in m.bundle}
    findings: list[Finding] = []
    for peer in m.peers:
        name = f"peer {peer.get('namespace', '?')}/{peer.get('identity', '?')}"
        problems: list[str] = []
        notes: list[str] = []
        if peer.get("mtls"):
            fingerprints = [str(f) for f in peer.get("caFingerprints") or []]
            missing = [f for f in fingerprints if f not in bundle]
            if not fingerprints:
                problems.append("mTLS peer without CA fingerprints in peers.json")
            elif missing:
                problems.append(f"its CA {', '.join(map(_short, missing))} is not in trust-bundle.pem")
            else:
                notes.append(f"CA {', '.join(map(_short, fingerprints))} trusted")
        kids = [str(k) for k in peer.get("kids") or []]
        if kids:
            if jwks_problem:
                problems.append(jwks_problem)
            else:
                absent = [k for k in kids if k not in kids_present]
                if absent:
                    problems.append(f"kid(s) {', '.join(absent)} missing from peers.jwks")
                else:
                    notes.append(f"{len(kids)} kid(s) in peers.jwks")
        revoked = [str(k) for k in peer.get("revokedKids") or [] if str(k) in kids_present]
        if revoked:
            problems.append(f"revoked kid(s) {', '.join(revoked)} still in peers.jwks")
        if not problems and not notes:
            notes.append("nothing to trust in this direction")
        findings.append(Finding(name, not problems, "; ".join(problems or notes)))
    return findings


def _check_peers_jwks(m: _Material) -> list[Finding]:
    keys, problem = _jwks_keys(m)
    if problem:
        return [Finding("peers.jwks", False, problem)]
    leaking = sorted({str(k.get("kid", "?")) for k in keys if PRIVATE_MEMBERS & set(k)})
    if leaking:
        return [Finding("peers.jwks", False,
                        f"peers.jwks holds private key members for kid(s) {', '.join(leaking)}")]
    claimed = {str(k) for p in m.peers for k in p.get("kids") or []}
    stray = sorted({str(k.get("kid")) for k in keys} - claimed)
    if stray:
        return [Finding("peers.jwks", False, f"peers.jwks holds kid(s) {', '.join(stray)} that no peer in "
                                             "peers.json sends tokens with")]
    for k in keys:
        try:
            pki.public_key_from_jwk({str(a): str(b) for a, b in k.items()})
        except pki.PKIError as exc:
            return [Finding("peers.jwks", False, f"kid {k.get('kid')}: {exc}")]
    return [Finding("peers.jwks", True, f"{len(keys)} public key(s), no private members")]


def _check_jwt(m: _Material) -> list[Finding]:
    if not any(name in m.files for name in JWT_FILES):
        return [Finding("jwt", True, "JWT disabled (no jwt.* files)")]
    kid = _text(m.files, "jwt.kid")
    jwk, problem = _json(m.files, "jwt.jwk")
    if kid is None or problem or "jwt.key" not in m.files:
        return [Finding("jwt", False, problem or "jwt.kid or jwt.key is missing")]
    if not isinstance(jwk, Mapping):
        return [Finding("jwt", False, "jwt.jwk is not a JSON object")]
    jwk = {str(a): str(b) for a, b in jwk.items()}
    try:
        thumbprint = pki.jwk_thumbprint(jwk)
    except pki.PKIError as exc:
        return [Finding("jwt", False, f"jwt.jwk: {exc}")]
    if kid != thumbprint:
        return [Finding("jwt", False,
                        f"jwt.kid {kid} is not the RFC 7638 thumbprint of jwt.jwk ({thumbprint})")]
    if jwk.get("kid") not in (None, kid):
        return [Finding("jwt", False, f"jwt.jwk names kid {jwk.get('kid')}, jwt.kid says {kid}")]
    try:
        key = pki.load_private_key(m.files["jwt.key"])
        algorithm = pki.JwtAlgorithm(jwk.get("alg") or str(pki.jwt_algorithm_of_jwk(jwk)))
        expected = pki.private_jwk(key, algorithm)
    except (pki.PKIError, ValueError) as exc:
        return [Finding("jwt", False, f"jwt.key: {exc}")]
    if expected["kid"] != kid:
        return [Finding("jwt", False,
                        f"jwt.key is not the key of jwt.jwk (its kid would be {expected['kid']})")]
    if any(jwk.get(member) != expected[member] for member in PRIVATE_MEMBERS & set(expected)):
        return [Finding("jwt", False, "the private members of jwt.jwk do not match jwt.key")]
    return [Finding("jwt", True, f"kid {kid} ({algorithm}) is the thumbprint of jwt.jwk and matches jwt.key")]


def _check_public(m: _Material, public: Mapping[str, bytes]) -> list[Finding]:
    problems: list[str] = []
    published, problem = _certs(public, "ca.crt")
    if problem:
        problems.append(f"public {problem}")
    else:
        missing = {_fp(c) for c in m.cas} - {_fp(c) for c in published}
        if missing:
            problems.append(f"public ca.crt does not publish our CA "
                            f"{', '.join(map(_short, sorted(missing)))}")
    doc, problem = _json(public, "jwks.json")
    keys = doc.get("keys") if isinstance(doc, Mapping) else None
    if problem or not isinstance(keys, list):
        problems.append(f"public {problem or 'jwks.json is not a JWK Set'}")
    else:
        if any(isinstance(k, Mapping) and PRIVATE_MEMBERS & set(k) for k in keys):
            problems.append("public jwks.json holds private key members")
        kid = _text(m.files, "jwt.kid")
        if kid and kid not in {str(k.get("kid")) for k in keys if isinstance(k, Mapping)}:
            problems.append(f"public jwks.json does not publish our kid {kid}")
    info, problem = _json(public, "identity.json")
    if problem or not isinstance(info, Mapping):
        problems.append(f"public {problem or 'identity.json is not an object'}")
    elif m.leaf is not None:
        uris, _ = _spiffe(m.leaf)
        if uris and info.get("spiffeId") != uris[0]:
            problems.append(f"public identity.json names {info.get('spiffeId')}, the leaf {uris[0]}")
    if problems:
        return [Finding("public", False, "; ".join(problems))]
    return [Finding("public", True, "the public ConfigMap publishes our CA, JWKS and SPIFFE ID")]


_CHECKS: tuple[Callable[[_Material], list[Finding]], ...] = (
    _check_files, _check_chain, _check_key, _check_dns, _check_spiffe, _check_validity, _check_renewal,
    _check_keystores, _check_truststores, _check_bundle, _check_peers, _check_peers_jwks, _check_jwt,
)


def verify_material(files: Mapping[str, bytes], *, now: datetime, target: Target | None = None,
                    public: Mapping[str, bytes] | None = None) -> list[Finding]:
    """Every check over ``files`` (a pod's mounted directory: credentials and trust keys) at ``now``.

    ``target`` says what the material should be for (else derived from the material);
    ``public`` adds the checks of the identity's public ConfigMap. A check that crashes on
    malformed input becomes a failed finding rather than an exception.
    """
    require_utc(now)
    material = _parse(files, now, target or Target())
    findings: list[Finding] = []
    for check in _CHECKS:
        findings.extend(_guarded(check.__name__.removeprefix("_check_"), check, material))
    if public is not None:
        findings.extend(_guarded("public", lambda m: _check_public(m, public), material))
    return findings


def _guarded(name: str, check: Callable[[_Material], list[Finding]], material: _Material) -> list[Finding]:
    try:
        return check(material)
    except (pki.PKIError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return [Finding(name, False, f"could not check: {type(exc).__name__}")]
