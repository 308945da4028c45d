"""Proofs over mounted material: does it actually authenticate, end to end?

These functions take two directories laid out exactly as a wired pod sees them at
``mountPath`` and prove, with the standard library's TLS stack and our token verifier,
that the two identities can authenticate each other: a real mutual-TLS handshake over
loopback (each side verifying the other through *its own* trust bundle, hostname
checked), and a JWT signed by one side and verified through the other side's
``peers.jwks``. ``trustwire demo`` exits non-zero when a proof fails, and the proofs are
themselves tested against deliberately wrong material.

No key material is ever put into a returned message.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import ssl
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt as pyjwt

from trustwire import names, pki


@dataclasses.dataclass(frozen=True)
class Proof:
    name: str
    ok: bool
    detail: str


def _context(directory: Path, *, server: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(directory / "tls.crt", directory / "tls.key")
    bundle = (directory / "trust-bundle.pem").read_text()
    if not bundle.strip():
        raise ssl.SSLError("the trust bundle is empty")
    ctx.load_verify_locations(cadata=bundle)
    ctx.verify_mode = ssl.CERT_REQUIRED
    if not server:
        ctx.check_hostname = True
    return ctx


def _uris(cert: Any) -> list[str]:
    """URI SANs of a peer certificate as ``ssl`` reports it."""
    sans = (cert or {}).get("subjectAltName", ())
    return [str(value) for kind, value in sans if kind == "URI"]


def prove_mtls(server_dir: Path, client_dir: Path, *, server_hostname: str, timeout: float = 10.0) -> Proof:
    """A mutual-TLS handshake on 127.0.0.1: the client checks the server's certificate and
    hostname with its trust bundle; the server requires and checks the client's certificate."""
    name = f"mTLS {client_dir.name} -> {server_dir.name} ({server_hostname})"
    try:
        server_ctx = _context(server_dir, server=True)
        client_ctx = _context(client_dir, server=False)
    except (ssl.SSLError, OSError) as exc:
        return Proof(name, False, f"could not load material: {exc}")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(timeout)
    port = listener.getsockname()[1]
    server_result: dict[str, str] = {}

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(timeout)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                server_result["peer"] = ",".join(_uris(tls.getpeercert()))
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError) as exc:
            server_result["error"] = str(exc)
        finally:
            listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw, \
                client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
            reply = tls.recv(2)
            version = tls.version()
            server_uris = _uris(tls.getpeercert())
    except (ssl.SSLError, OSError) as exc:
        thread.join(timeout)
        why = server_result.get("error") or str(exc)
        return Proof(name, False, f"handshake refused: {why}")
    thread.join(timeout)
    if "error" in server_result or reply != b"ok":
        return Proof(name, False, f"server side failed: {server_result.get('error', 'no reply')}")
    return Proof(name, True, f"{version}; server {','.join(str(u) for u in server_uris)}; "
                             f"client {server_result.get('peer', '')}")


def _peer_entry(verifier_dir: Path, kid: str, relationship: str | None) -> dict[str, Any] | None:
    """The verifier's ``peers.json`` entry that lists ``kid`` (for ``relationship`` when given)."""
    peers = json.loads((verifier_dir / "peers.json").read_text())
    return next((p for p in peers if kid in p.get("kids", [])
                 and (relationship is None or p.get("relationship") == relationship)), None)


def prove_jwt(signer_dir: Path, verifier_dir: Path, *, audience: str | None, now: datetime,
              roles: Sequence[str] | None = None, relationship: str | None = None) -> Proof:
    """A token signed with the signer's ``jwt.key`` verifies through the verifier's ``peers.jwks``,
    and the verifier's ``peers.json`` grants the signer ``roles`` (when given) under ``relationship``."""
    name = f"JWT {signer_dir.name} -> {verifier_dir.name}"
    try:
        key = pki.load_private_key((signer_dir / "jwt.key").read_bytes())
        kid = (signer_dir / "jwt.kid").read_text().strip()
        jwk = json.loads((signer_dir / "jwt.jwk").read_text())
        algorithm = pki.JwtAlgorithm(jwk["alg"])
        peer = _peer_entry(verifier_dir, kid, relationship)
        issuer = peer["issuer"] if peer else None
        claims = {"sub": "demo", "iss": issuer or "unknown"} | ({"aud": audience} if audience else {})
        token = pki.sign_token(key, algorithm, kid, claims, now=now, lifetime=timedelta(minutes=5))
        jwks = json.loads((verifier_dir / "peers.jwks").read_text())
        verified = pki.verify_token(token, jwks, issuer=issuer, audience=audience, now=now)
    except (OSError, ValueError, KeyError, pki.PKIError, pki.TokenError) as exc:
        return Proof(name, False, f"refused: {exc}")
    granted = list(peer.get("roles", [])) if peer else []
    if roles is not None and (peer is None or granted != list(roles) or peer.get("audience") != audience):
        return Proof(name, False, f"verifier grants roles {granted} / audience {peer and peer.get('audience')}; "
                                  f"the relationship declares {list(roles)} / {audience}")
    return Proof(name, True, f"kid {kid} verified; iss {verified.get('iss')}; roles {','.join(granted) or '-'}")


def _shared_file(directory: Path, peer: str, relationship: str) -> Path:
    peers = json.loads((directory / "peers.json").read_text())
    entry = next(p for p in peers if p.get("identity") == peer and p.get("relationship") == relationship)
    return directory / str(entry["sharedSecretFile"])


def prove_shared_secret(a_dir: Path, b_dir: Path, *, relationship: str) -> Proof:
    """Both sides of ``relationship`` hold the same non-empty shared secret."""
    name = f"shared secret {a_dir.name} <-> {b_dir.name}"
    try:
        mine = _shared_file(a_dir, b_dir.name, relationship).read_bytes()
        theirs = _shared_file(b_dir, a_dir.name, relationship).read_bytes()
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        return Proof(name, False, f"missing: {exc!r}")
    if not mine or mine != theirs:
        return Proof(name, False, "the two sides hold different or empty secrets")
    return Proof(name, True, f"{len(mine)} bytes, identical on both sides")


def prove_shared_group(directories: Sequence[Path], *, group: str, printable: bool, client_id: str | None) -> Proof:
    """Every member of ``group`` holds the same non-empty secret (printable text unless its
    encoding is ``raw``) and, when the group has one, the same client id."""
    name = f"shared secret group {group} ({', '.join(d.name for d in directories)})"
    value_file, id_file, _ = names.shared_files(group)
    try:
        values = {d.name: (d / value_file).read_bytes() for d in directories}
        ids = {d.name: (d / id_file).read_bytes() for d in directories} if client_id is not None else {}
    except OSError as exc:
        return Proof(name, False, f"missing: {exc}")
    if len(set(values.values())) != 1 or not next(iter(values.values())):
        return Proof(name, False, "the members hold different or empty secrets")
    value = next(iter(values.values()))
    if printable and not (value.isascii() and value.decode().isprintable()):
        return Proof(name, False, f"{value_file} is not printable text")
    if client_id is not None and set(ids.values()) != {client_id.encode()}:
        return Proof(name, False, f"the members' {id_file} differ from the client id {client_id!r}")
    return Proof(name, True, f"{len(directories)} members hold one {len(value)}-byte value"
                             + (f" and client id {client_id}" if client_id is not None else ""))


def prove_hmac_key(own_dir: Path, others: Sequence[Path], *, now: datetime) -> Proof:
    """The identity's symmetric key signs a token PyJWT verifies with its ``oct`` JWK, and no
    other identity's files hold the key or list its kid."""
    name = f"HMAC key {own_dir.name} (never shared)"
    try:
        key = (own_dir / "jwt.key").read_bytes()
        jwk = json.loads((own_dir / "jwt.jwk").read_text())
        claims = {"sub": "demo", "iat": int(now.timestamp()), "exp": int(now.timestamp()) + 300}
        token = pyjwt.encode(claims, key, algorithm=jwk["alg"], headers={"kid": jwk["kid"]})
        secret = pyjwt.PyJWK(jwk).key
        pyjwt.decode(token, secret, algorithms=[jwk["alg"]], options={"verify_exp": False})
    except (OSError, ValueError, KeyError, pyjwt.PyJWTError) as exc:
        return Proof(name, False, f"refused: {exc}")
    for other in others:
        files = [p for p in other.iterdir() if p.is_file()]
        if any(key in p.read_bytes() or jwk["k"].encode() in p.read_bytes() for p in files):
            return Proof(name, False, f"{other.name} holds the key")
        if jwk["kid"] in (other / "peers.jwks").read_text():
            return Proof(name, False, f"{other.name}'s peers.jwks lists kid {jwk['kid']}")
    return Proof(name, True, f"{jwk['alg']} kid {jwk['kid']} verified; in none of {len(others)} other identities")


def prove_template(directory: Path, template: str) -> Proof:
    """Template ``template`` is rendered into the identity's trust Secret, and not empty."""
    name = f"template {directory.name}/{template}"
    path = directory / template
    if not path.is_file() or not path.stat().st_size:
        return Proof(name, False, "not rendered (missing or empty)")
    return Proof(name, True, f"{path.stat().st_size} bytes rendered")
