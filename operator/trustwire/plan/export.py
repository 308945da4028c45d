"""What an outsider installs for one relationship: the in-cluster side's CA(s) and public keys.

Built from the identity's public ConfigMap (active, next and previous CA, and its JWKS), so
an export during a CA rotation already carries the next CA. Pure: the command writes the
files. No private key is ever part of an export.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping

from cryptography import x509

from trustwire import names, pki
from trustwire.model import TrustRelationship
from trustwire.times import rfc3339


class ExportFormat(enum.StrEnum):
    PEM = "pem"
    PKCS12 = "pkcs12"
    JKS = "jks"


class ExportError(Exception):
    """The identity has nothing usable to export yet (a clear sentence for the user)."""


def export_files(identity: str, rel: TrustRelationship, public: Mapping[str, bytes], fmt: ExportFormat,
                 password: str) -> dict[str, bytes]:
    """File name → content: ``ca.crt`` always, a truststore for ``pkcs12``/``jks``,
    ``jwks.json`` when the relationship carries JWTs, and ``MANIFEST.txt`` describing each."""
    try:
        cas = pki.load_certificates(public.get("ca.crt", b""))
    except pki.PKIError:
        raise ExportError(f"ConfigMap {rel.namespace}/{names.public_configmap(identity)} holds no CA yet "
                          f"(is ServiceIdentity {rel.namespace}/{identity} Ready?)") from None
    files = {"ca.crt": pki.certs_to_pem(cas)}
    if fmt is ExportFormat.PKCS12:
        files |= {"truststore.p12": pki.pkcs12_truststore(cas, password), "truststore.password": password.encode()}
    elif fmt is ExportFormat.JKS:
        files |= {"truststore.jks": pki.jks_truststore(cas, password), "truststore.password": password.encode()}
    keys = json.loads(public.get("jwks.json", b'{"keys": []}')).get("keys", [])
    if rel.jwt and keys:
        files["jwks.json"] = public["jwks.json"]
    files["MANIFEST.txt"] = _manifest(identity, rel, cas, files, len(keys)).encode()
    return files


_PURPOSE = {
    "ca.crt": "PEM: the CA certificate(s) {who} presents certificates from; trust all of them",
    "truststore.p12": "PKCS#12 truststore (trusted-certificate entries) with the same CA(s)",
    "truststore.jks": "JKS truststore with the same CA(s)",
    "truststore.password": "the truststore's password",
    "jwks.json": "JWKS: the public keys {who} signs its JWTs with ({count} key(s))",
}


def _manifest(identity: str, rel: TrustRelationship, cas: list[x509.Certificate], files: Mapping[str, bytes],
              key_count: int) -> str:
    who = f"ServiceIdentity {rel.namespace}/{identity}"
    outsider = rel.external.name if rel.external is not None else "the peer"
    lines = [f"trustwire export for {outsider} (TrustRelationship {rel.namespace}/{rel.name}) from {who}", "",
             "Files:"]
    lines += [f"  {name}: {_PURPOSE[name].format(who=who, count=key_count)}" for name in files if name in _PURPOSE]
    lines += ["", "CA certificates (install every one; during a rotation the next CA is among them):"]
    lines += [f"  sha256 {pki.fingerprint_sha256(c)}  CN={pki.subject_common_name(c)}  "
              f"notAfter {rfc3339(pki.not_after(c))}" for c in cas]
    lines += ["", "Once installed, confirm it so a CA rotation can proceed:",
              f"  trustwire confirm {rel.name} -n {rel.namespace} --from <this directory>", ""]
    return "\n".join(lines)
