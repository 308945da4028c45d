"""The checks of the keystores and truststores: they open with their password and hold exactly
the leaf, its key and chain, or exactly the CAs of ``trust-bundle.pem``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from trustwire import pki
from trustwire.inspection.material import Finding, Material, fingerprint, read_text, same_key, short


def _open_pkcs12(m: Material, name: str, password_file: str,
                 ) -> tuple[pki.PrivateKey | None, list[x509.Certificate], str]:
    password = read_text(m.files, password_file)
    if password is None:
        return None, [], f"{password_file} is missing"
    try:
        key, certs = pki.read_pkcs12(m.files[name], password)
    except pki.PKIError:
        return None, [], f"{name} does not open with {password_file} (wrong password or corrupt file)"
    return key, certs, ""


def _open_jks(m: Material, name: str, password_file: str) -> tuple[pki.JksStore | None, str]:
    password = read_text(m.files, password_file)
    if password is None:
        return None, f"{password_file} is missing"
    try:
        return pki.read_jks(m.files[name], password), ""
    except pki.PKIError:
        return None, f"{name} does not open with {password_file} (wrong password or corrupt file)"


def _keystore_problem(m: Material, key: pki.PrivateKey | None, certs: Sequence[x509.Certificate],
                      name: str) -> str:
    if key is None:
        return f"{name} holds no private key"
    if m.key is not None and not same_key(key, m.key):
        return f"the private key in {name} is not tls.key"
    if m.leaf is None or not certs or certs[0] != m.leaf:
        return f"the certificate in {name} is not the leaf in tls.crt"
    if m.cas and not any(c in certs[1:] for c in m.cas):
        return f"{name} does not carry the CA chain of ca.crt"
    return ""


def check_keystores(m: Material) -> list[Finding]:
    findings: list[Finding] = []
    if "keystore.p12" in m.files:
        key, certs, problem = _open_pkcs12(m, "keystore.p12", "keystore.password")
        problem = problem or _keystore_problem(m, key, certs, "keystore.p12")
        findings.append(Finding("keystore.p12", not problem,
                                problem or "opens with keystore.password; holds tls.key and the leaf"))
    if "keystore.jks" in m.files:
        store, problem = _open_jks(m, "keystore.jks", "keystore.password")
        if store is not None:
            entries = store.keys
            if len(entries) != 1:
                problem = f"keystore.jks holds {len(entries)} private key entries, expected 1"
            else:
                try:
                    loaded = serialization.load_der_private_key(entries[0].pkcs8, password=None)
                    certs = [x509.load_der_x509_certificate(der) for der in entries[0].chain]
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


def check_truststores(m: Material) -> list[Finding]:
    findings: list[Finding] = []
    wanted = {fingerprint(c) for c in m.bundle}

    def compare(name: str, held: Iterable[x509.Certificate]) -> str:
        have = {fingerprint(c) for c in held}
        extra, missing = have - wanted, wanted - have
        parts = []
        if missing:
            parts.append(f"lacks {len(missing)} CA(s) of trust-bundle.pem "
                         f"({', '.join(map(short, sorted(missing)))})")
        if extra:
            parts.append(f"holds {len(extra)} CA(s) not in trust-bundle.pem "
                         f"({', '.join(map(short, sorted(extra)))})")
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
                if store.keys:
                    problem = f"{name} holds a private key; a truststore must hold certificates only"
                certs = [x509.load_der_x509_certificate(e.cert) for e in store.trusted]
        problem = problem or compare(name, certs)
        findings.append(Finding(name, not problem,
                                problem or f"opens with truststore.password; exactly the {len(wanted)} CA(s) "
                                           "of trust-bundle.pem"))
    return findings
