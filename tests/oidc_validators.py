"""Token validators nobody here wrote, configured the way a gateway is: by the issuer's
discovery document alone (PyJWT's ``PyJWKClient``, jwcrypto). Blocking: run them in a thread
when the server under test runs on the same event loop."""

from __future__ import annotations

import json
import socket
import ssl
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt as pyjwt
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jwt as jwcrypto_jwt

from trustwire import pki


def fetch(url: str, ca: ssl.SSLContext, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    assert url.startswith("https://"), url
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (https only, asserted)
    try:
        with urllib.request.urlopen(request, context=ca, timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def discover(issuer: str, ca: ssl.SSLContext) -> dict[str, Any]:
    status, _, body = fetch(issuer + "/.well-known/openid-configuration", ca)
    assert status == 200, body
    document: dict[str, Any] = json.loads(body)
    assert document["issuer"] == issuer
    return document


def pyjwt_validate(token: str, issuer: str, audience: str, scopes: set[str], ca: ssl.SSLContext) -> dict[str, Any]:
    """PyJWT as a resource server: keys by ``kid`` from the discovered ``jwks_uri``."""
    document = discover(issuer, ca)
    client = pyjwt.PyJWKClient(document["jwks_uri"], cache_keys=False, ssl_context=ca)
    key = client.get_signing_key_from_jwt(token)
    claims: dict[str, Any] = pyjwt.decode(token, key.key, algorithms=document["id_token_signing_alg_values_supported"],
                                          audience=audience, issuer=document["issuer"],
                                          options={"require": ["exp", "iss", "aud"]})
    if not scopes <= set(str(claims.get("scope", "")).split()):
        raise pyjwt.InvalidTokenError("missing scope")
    return claims


def jwcrypto_validate(token: str, issuer: str, audience: str, scopes: set[str], ca: ssl.SSLContext) -> dict[str, Any]:
    document = discover(issuer, ca)
    _, _, body = fetch(document["jwks_uri"], ca)
    keyset = jwcrypto_jwk.JWKSet.from_json(body.decode())
    checked = jwcrypto_jwt.JWT(jwt=token, key=keyset, algs=document["id_token_signing_alg_values_supported"],
                               check_claims={"iss": document["issuer"], "aud": audience, "exp": None})
    claims: dict[str, Any] = json.loads(checked.claims)
    if not scopes <= set(str(claims.get("scope", "")).split()):
        raise ValueError("missing scope")
    return claims


VALIDATORS = {"PyJWT": pyjwt_validate, "jwcrypto": jwcrypto_validate}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def tls_pair(tmp: Path, host: str = "localhost") -> Iterator[tuple[bytes, bytes, ssl.SSLContext]]:
    """A server chain and key for ``host`` under a fresh CA, and a client context trusting only that CA."""
    now = datetime.now(UTC)
    ca_key = pki.generate_private_key(pki.KeyAlgorithm.ECDSAP256)
    ca = pki.create_ca(ca_key, common_name="oidc test CA", now=now, lifetime=timedelta(days=1))
    key = pki.generate_private_key(pki.KeyAlgorithm.ECDSAP256)
    leaf = pki.create_leaf(ca, ca_key, key.public_key(), common_name=host, dns_names=[host], uri_sans=[],
                           now=now, lifetime=timedelta(days=1))
    (tmp / "ca.crt").write_bytes(pki.cert_to_pem(ca))
    client = ssl.create_default_context(cafile=str(tmp / "ca.crt"))
    yield pki.certs_to_pem([leaf, ca]), pki.private_key_to_pem(key), client


APACHE = "/usr/sbin/apache2"
MOD_AUTH_OPENIDC = "/usr/lib/apache2/modules/mod_auth_openidc.so"
_APACHE_CONF = """\
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authn_core_module /usr/lib/apache2/modules/mod_authn_core.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule auth_openidc_module {module}
ServerName localhost
Listen 127.0.0.1:{port}
User www-data
Group www-data
PidFile {dir}/httpd.pid
DefaultRuntimeDir {dir}
Mutex file:{dir} default
ErrorLog {dir}/error.log
LogLevel warn auth_openidc:info
DocumentRoot {dir}/htdocs
<Directory />
  AllowOverride None
</Directory>
OIDCCABundlePath {dir}/ca.crt
OIDCCryptoPassphrase test-only-passphrase
OIDCOAuthServerMetadataURL {metadata}
OIDCOAuthRemoteUserClaim sub
{refresh}
<Location /api>
  AuthType oauth20
  <RequireAll>
    Require claim iss:{issuer}
    Require claim aud:{audience}
    Require claim scope~(^|[[:space:]]){scope}([[:space:]]|$)
  </RequireAll>
</Location>
"""


@contextmanager
def apache_resource_server(issuer: str, ca_pem: bytes, audience: str, scope: str,
                           jwks_refresh: int | None = None) -> Iterator[str]:
    """Apache httpd with mod_auth_openidc as an OAuth 2.0 resource server configured by the
    issuer's discovery document alone (refreshing the JWKS every ``jwks_refresh`` seconds when
    given, as docs/oidc.md tells operators to); yields the URL of a protected resource. Its
    directory is outside pytest's private temporary tree: the workers run as www-data."""
    import os
    import shutil
    import subprocess
    import tempfile
    import time

    workdir = Path(tempfile.mkdtemp(prefix="trustwire-apache-"))
    os.chmod(workdir, 0o755)  # noqa: S103 (public CA bundle and a page; the workers run as www-data)
    (workdir / "htdocs").mkdir(mode=0o755)
    (workdir / "htdocs" / "api").write_text("protected\n")
    (workdir / "ca.crt").write_bytes(ca_pem)
    for path in (workdir / "htdocs" / "api", workdir / "ca.crt"):
        os.chmod(path, 0o644)
    port = free_port()
    conf = workdir / "httpd.conf"
    conf.write_text(_APACHE_CONF.format(module=MOD_AUTH_OPENIDC, port=port, dir=workdir, issuer=issuer,
                                        metadata=issuer + "/.well-known/openid-configuration",
                                        audience=audience, scope=scope,
                                        refresh=f"OIDCJWKSRefreshInterval {jwks_refresh}" if jwks_refresh else ""))
    process = subprocess.Popen([APACHE, "-f", str(conf), "-DFOREGROUND"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"apache2 did not start: {process.stderr.read() if process.stderr else ''!r}"
                                       ) from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/api"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def apache_status(url: str, token: str) -> int:
    """The status Apache answers a request bearing ``token``."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310 (loopback)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
