"""The checks of whom the identity trusts and how it signs: the trust bundle and peers against
``peers.json``, ``peers.jwks``, the JWT key, and the public ConfigMap."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trustwire import pki
from trustwire.inspection.material import (
    JWT_FILES,
    PRIVATE_MEMBERS,
    Finding,
    Material,
    fingerprint,
    load_certs,
    load_json,
    read_text,
    short,
    spiffe_uris,
)
from trustwire.times import rfc3339


def check_bundle(m: Material) -> list[Finding]:
    if m.bundle_problem:
        return [Finding("trust bundle", False, m.bundle_problem)]
    if m.peers_problem:
        return [Finding("trust bundle", False, m.peers_problem)]
    not_ca = [c for c in m.bundle if not pki.is_ca(c)]
    if not_ca:
        return [Finding("trust bundle", False, f"trust-bundle.pem holds a non-CA certificate "
                                               f"({short(fingerprint(not_ca[0]))})")]
    accounted = {str(fp) for p in m.peers if p.get("mtls") for fp in p.get("caFingerprints") or []}
    stray = sorted({fingerprint(c) for c in m.bundle} - accounted)
    if stray:
        return [Finding("trust bundle", False, f"trust-bundle.pem trusts {len(stray)} CA(s) no mTLS peer in "
                                               f"peers.json accounts for ({', '.join(map(short, stray))})")]
    expired = [c for c in m.bundle if m.now >= pki.not_after(c)]
    if expired:
        return [Finding("trust bundle", False,
                        f"trust-bundle.pem holds an expired CA ({short(fingerprint(expired[0]))}, "
                        f"expired {rfc3339(pki.not_after(expired[0]))})")]
    return [Finding("trust bundle", True, f"{len(m.bundle)} peer CA(s), all accounted for by peers.json")]


def _jwks_keys(m: Material) -> tuple[list[Mapping[str, Any]], str]:
    doc, problem = load_json(m.files, "peers.jwks")
    if problem:
        return [], problem
    keys = doc.get("keys") if isinstance(doc, Mapping) else None
    if not isinstance(keys, list) or not all(isinstance(k, Mapping) for k in keys):
        return [], 'peers.jwks is not a JWK Set ({"keys": [...]})'
    return keys, ""


def check_peers(m: Material) -> list[Finding]:
    if m.peers_problem:
        return [Finding("peers", False, m.peers_problem)]
    keys, jwks_problem = _jwks_keys(m)
    kids_present = {str(k.get("kid")) for k in keys}
    bundle = {fingerprint(c) for c in m.bundle}
    findings: list[Finding] = []
    for peer in m.peers:
        name = f"enrolled {peer.get('namespace', '?')}/{peer['enrollment']}" if "enrollment" in peer else \
            f"peer {peer.get('namespace', '?')}/{peer.get('identity', '?')}"
        problems: list[str] = []
        notes: list[str] = []
        if peer.get("mtls"):
            fingerprints = [str(f) for f in peer.get("caFingerprints") or []]
            missing = [f for f in fingerprints if f not in bundle]
            if not fingerprints:
                problems.append("mTLS peer without CA fingerprints in peers.json")
            elif missing:
                problems.append(f"its CA {', '.join(map(short, missing))} is not in trust-bundle.pem")
            else:
                notes.append(f"CA {', '.join(map(short, fingerprints))} trusted")
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


def check_peers_jwks(m: Material) -> list[Finding]:
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


def check_jwt(m: Material) -> list[Finding]:
    if not any(name in m.files for name in JWT_FILES):
        return [Finding("jwt", True, "JWT disabled (no jwt.* files)")]
    kid = read_text(m.files, "jwt.kid")
    jwk, problem = load_json(m.files, "jwt.jwk")
    if kid is None or problem or "jwt.key" not in m.files:
        return [Finding("jwt", False, problem or "jwt.kid or jwt.key is missing")]
    if not isinstance(jwk, Mapping):
        return [Finding("jwt", False, "jwt.jwk is not a JSON object")]
    jwk = {str(a): str(b) for a, b in jwk.items()}
    if jwk.get("kty") == "oct":
        return _check_hmac(m, kid, jwk)
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


def _check_hmac(m: Material, kid: str, jwk: Mapping[str, str]) -> list[Finding]:
    """A symmetric key: ``jwt.key`` is the key, ``jwt.jwk`` its ``oct`` JWK, ``jwt.kid`` its thumbprint."""
    try:
        algorithm = pki.HmacAlgorithm(jwk.get("alg", ""))
    except ValueError:
        return [Finding("jwt", False, f"jwt.jwk: an oct key with alg {jwk.get('alg')!r}; HS256, HS384 or HS512 "
                                      "expected")]
    key = m.files["jwt.key"]
    if not pki.hmac_key_fits(key, algorithm):
        return [Finding("jwt", False, f"jwt.key is not a {algorithm} key (base64url text of "
                                      f"{pki.HMAC_RANDOM_BYTES[algorithm]} random bytes)")]
    expected = pki.hmac_jwk(key, algorithm)
    if expected != dict(jwk) or expected["kid"] != kid:
        return [Finding("jwt", False, f"jwt.key is not the key of jwt.jwk and jwt.kid (its kid would be "
                                      f"{expected['kid']})")]
    return [Finding("jwt", True, f"kid {kid} ({algorithm}, symmetric) is the thumbprint of jwt.jwk and matches "
                                 "jwt.key")]


def check_public(m: Material, public: Mapping[str, bytes]) -> list[Finding]:
    problems: list[str] = []
    published, problem = load_certs(public, "ca.crt")
    if problem:
        problems.append(f"public {problem}")
    else:
        missing = {fingerprint(c) for c in m.cas} - {fingerprint(c) for c in published}
        if missing:
            problems.append(f"public ca.crt does not publish our CA "
                            f"{', '.join(map(short, sorted(missing)))}")
    doc, problem = load_json(public, "jwks.json")
    keys = doc.get("keys") if isinstance(doc, Mapping) else None
    if problem or not isinstance(keys, list):
        problems.append(f"public {problem or 'jwks.json is not a JWK Set'}")
    else:
        if any(isinstance(k, Mapping) and PRIVATE_MEMBERS & set(k) for k in keys):
            problems.append("public jwks.json holds private key members")
        kid = read_text(m.files, "jwt.kid")
        if kid and kid not in {str(k.get("kid")) for k in keys if isinstance(k, Mapping)}:
            problems.append(f"public jwks.json does not publish our kid {kid}")
    info, problem = load_json(public, "identity.json")
    if problem or not isinstance(info, Mapping):
        problems.append(f"public {problem or 'identity.json is not an object'}")
    elif m.leaf is not None:
        uris, _ = spiffe_uris(m.leaf)
        if uris and info.get("spiffeId") != uris[0]:
            problems.append(f"public identity.json names {info.get('spiffeId')}, the leaf {uris[0]}")
    if problems:
        return [Finding("public", False, "; ".join(problems))]
    return [Finding("public", True, "the public ConfigMap publishes our CA, JWKS and SPIFFE ID")]
