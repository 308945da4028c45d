"""trustwire.plan.export: what an outsider installs, read back by openssl and keytool."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXED_NOW
from trustwire import pki
from trustwire.model import parse_relationship
from trustwire.pki import JwtAlgorithm, KeyAlgorithm
from trustwire.plan.export import ExportError, ExportFormat, export_files

PASSWORD = "export-pass-1"


def rel(jwt: bool) -> Any:
    return parse_relationship({
        "apiVersion": "trustwire.io/v1alpha1", "kind": "TrustRelationship",
        "metadata": {"name": "dgc-onprem", "namespace": "gov"},
        "spec": {"between": [{"identity": "dgc"}, {"external": {"name": "onprem-jobserver",
                                                                 "caBundleRef": {"name": "onprem-ca"}}}],
                 "jwt": {"enabled": jwt}}})


@pytest.fixture(scope="module")
def public(real_key: Callable[..., pki.PrivateKey]) -> dict[str, bytes]:
    """A public ConfigMap during a rotation: the active and the next CA, one JWT key."""
    cas = [pki.create_ca(real_key(KeyAlgorithm.ECDSAP256, slot), common_name=f"dgc CA {slot}",
                         now=FIXED_NOW - timedelta(days=1), lifetime=timedelta(days=365)) for slot in (730, 731)]
    jwk = pki.public_jwk(real_key(JwtAlgorithm.ES256, 732), JwtAlgorithm.ES256)
    return {"ca.crt": pki.certs_to_pem(cas), "jwks.json": json.dumps(pki.jwks([jwk])).encode()}


def fingerprints(pem: bytes) -> list[str]:
    return [pki.fingerprint_sha256(c) for c in pki.load_certificates(pem)]


@pytest.mark.parametrize(
    ("fmt", "jwt", "expected"),
    [
        (ExportFormat.PEM, False, {"ca.crt", "MANIFEST.txt"}),
        (ExportFormat.PEM, True, {"ca.crt", "jwks.json", "MANIFEST.txt"}),
        (ExportFormat.PKCS12, False, {"ca.crt", "truststore.p12", "truststore.password", "MANIFEST.txt"}),
        (ExportFormat.JKS, True, {"ca.crt", "truststore.jks", "truststore.password", "jwks.json", "MANIFEST.txt"}),
    ],
)
def test_export_files(public: dict[str, bytes], tmp_path: Path, fmt: ExportFormat, jwt: bool,
                      expected: set[str]) -> None:
    files = export_files("dgc", rel(jwt), public, fmt, PASSWORD)
    assert set(files) == expected
    assert fingerprints(files["ca.crt"]) == fingerprints(public["ca.crt"])  # the next CA too
    assert not any(b"PRIVATE KEY" in v for v in files.values())
    manifest = files["MANIFEST.txt"].decode()
    assert all(fp in manifest for fp in fingerprints(public["ca.crt"]))
    assert "onprem-jobserver" in manifest and "trustwire confirm dgc-onprem -n gov" in manifest
    if jwt:
        assert json.loads(files["jwks.json"]) == json.loads(public["jwks.json"])
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    if fmt is ExportFormat.PKCS12:
        openssl = shutil.which("openssl")
        assert openssl
        out = subprocess.run([openssl, "pkcs12", "-in", str(tmp_path / "truststore.p12"), "-nokeys",
                              "-passin", f"pass:{PASSWORD}"], capture_output=True, check=True, timeout=30).stdout
        assert sorted(fingerprints(out)) == sorted(fingerprints(public["ca.crt"]))
    if fmt is ExportFormat.JKS:
        keytool = shutil.which("keytool")
        assert keytool
        listing = subprocess.run([keytool, "-list", "-keystore", str(tmp_path / "truststore.jks"), "-storepass",
                                  PASSWORD, "-storetype", "JKS"], capture_output=True, text=True, check=True,
                                 timeout=60).stdout
        assert listing.count("trustedCertEntry") == 2


def test_nothing_to_export_is_one_clear_sentence() -> None:
    with pytest.raises(ExportError, match="ConfigMap gov/dgc-trustwire-public holds no CA yet"):
        export_files("dgc", rel(False), {}, ExportFormat.PEM, PASSWORD)
