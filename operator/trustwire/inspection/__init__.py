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

from collections.abc import Callable, Mapping
from datetime import datetime

from trustwire import pki
from trustwire.inspection import leaf, stores, trust
from trustwire.inspection.material import (
    DEFAULT_RENEW_BEFORE,
    Finding,
    Material,
    Target,
    load_directory,
    parse_material,
)
from trustwire.pki.certs import require_utc

__all__ = ["DEFAULT_RENEW_BEFORE", "Finding", "Target", "load_directory", "verify_material"]

#: Every check in report order, by the name a crashed check is reported under.
CHECKS: tuple[tuple[str, Callable[[Material], list[Finding]]], ...] = (
    ("files", leaf.check_files), ("chain", leaf.check_chain), ("key", leaf.check_key), ("dns", leaf.check_dns),
    ("spiffe", leaf.check_spiffe), ("validity", leaf.check_validity), ("renewal", leaf.check_renewal),
    ("keystores", stores.check_keystores), ("truststores", stores.check_truststores),
    ("bundle", trust.check_bundle), ("peers", trust.check_peers), ("peers_jwks", trust.check_peers_jwks),
    ("jwt", trust.check_jwt),
)


def verify_material(files: Mapping[str, bytes], *, now: datetime, target: Target | None = None,
                    public: Mapping[str, bytes] | None = None) -> list[Finding]:
    """Every check over ``files`` (a pod's mounted directory: credentials and trust keys) at ``now``.

    ``target`` says what the material should be for (else derived from the material);
    ``public`` adds the checks of the identity's public ConfigMap. A check that crashes on
    malformed input becomes a failed finding rather than an exception.
    """
    require_utc(now)
    material = parse_material(files, now, target or Target())
    findings: list[Finding] = []
    for name, check in CHECKS:
        findings.extend(_guarded(name, check, material))
    if public is not None:
        findings.extend(_guarded("public", lambda m: trust.check_public(m, public), material))
    return findings


def _guarded(name: str, check: Callable[[Material], list[Finding]], material: Material) -> list[Finding]:
    try:
        return check(material)
    except (pki.PKIError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return [Finding(name, False, f"could not check: {type(exc).__name__}")]
