"""Fault injection through the loopback proxy, and the invariants checked after faults.

Two halves, both used by the hardening tests (``docs/hardening.md``):

**Faults.** The real apiserver answers 5xx, 429 or a cut watch only when something is really
wrong, so the faults come from :class:`tests.cluster.proxy.ApiProxy`: :meth:`FaultInjector.hook`
is its fault hook. It decides, once per request and from a seeded RNG, whether a request of
the *operator* (User-Agent ``trustwire-operator``, with or without ``/<identity>``; the test's own requests are
never touched) meets a fault, and records every decision in :attr:`FaultInjector.log`:

* ``reject`` faults (500, 409, 429 with ``Retry-After: 1``, and 422 by script) are answered by
  the proxy without forwarding — the request had no effect, like a server refusing it;
* ``lost``: the proxy forwards, the apiserver applies the write, and the client hears 500 (a
  response lost after commit);
* ``slow``: the apiserver's answer, held 0.2-1.2 s;
* ``drop``: a watch stream cut after 0.2-2 s, half of the time ending with an ``ERROR`` event
  carrying a 410 Status instead.

**Invariants.** Independent checks (``cryptography`` and ``jwcrypto``, not the operator's
own ``pki``) that issued material is consistent, that one CA lineage per identity ever
existed — over every version of the Secrets the API served, recorded by the test's own
watches (:class:`tests.integration.harness.History`) — and that status agrees with the Secrets.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from jwcrypto import jwk as jwcrypto_jwk

from tests.cluster.proxy import Fault, Recorded
from tests.integration.harness import KINDS, OPERATOR_AGENT, WRITE_METHODS, History
from trustwire import names
from trustwire.k8s.client import Client

#: Fault kinds the proxy answers itself, without forwarding.
REJECT_KINDS = ("500", "409", "429", "422")
#: Fault kinds that let the request reach the apiserver.
FORWARD_KINDS = ("lost", "slow", "drop")


# ======================================================================================
# Faults
# ======================================================================================
@dataclasses.dataclass(frozen=True)
class Injected:
    method: str
    path: str
    kind: str


def is_operator_request(request: Recorded) -> bool:
    return request.user_agent.startswith(OPERATOR_AGENT)


#: What the proxy answers for each refusing kind: status, reason, message.
_REFUSALS: dict[str, tuple[int, str, str]] = {
    "500": (500, "InternalError", "injected fault: etcd timeout"),
    "409": (409, "Conflict", "injected fault: the object has been modified; please retry"),
    "429": (429, "TooManyRequests", "injected fault: throttled"),
    # what a real API server answers a Secret over 1 MiB (only by script)
    "422": (422, "Invalid", "injected fault: data: Too long: must have at most 1048576 bytes"),
}


@dataclasses.dataclass
class FaultInjector:
    """Seeded, per-request fault decisions for the operator's requests only.

    ``rate`` is the probability that a request of the operator meets a fault (its lists
    and watches included); ``weights`` chooses among the kinds. 409 (a conflict) and
    ``lost`` only hit writes, as on a real server; watch requests can only be dropped or
    (rarely) refused.
    """

    seed: int = 0
    rate: float = 0.25
    weights: Mapping[str, float] = dataclasses.field(default_factory=lambda: {
        "500": 3, "409": 2, "429": 2, "lost": 2, "slow": 2, "drop": 1})
    enabled: bool = False
    log: list[Injected] = dataclasses.field(default_factory=list)
    #: instead of the RNG: a function naming the fault for a request (or None), for targeted tests
    script: Callable[[Recorded], str | None] | None = None
    #: kinds injected first, each as soon as a faulted request allows it (so every kind occurs)
    ensure: tuple[str, ...] = ("drop", "500", "409", "429", "lost", "slow")

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def hook(self, request: Recorded) -> Fault | None:
        """The proxy's fault hook: what happens to this request instead of plain forwarding."""
        kind = self.decide(request)
        if kind is None:
            return None
        self.log.append(Injected(request.method, request.path, kind))
        return self._fault(kind)

    def decide(self, request: Recorded) -> str | None:
        """The fault for this request, or None."""
        if not self.enabled or not is_operator_request(request):
            return None
        if self.script is not None:
            return self.script(request)
        if self._rng.random() >= self.rate:
            return None
        allowed = self._allowed(request)
        missing = [k for k in self.ensure if k in allowed and k not in self.counts()]
        if missing:
            return missing[0]
        if not allowed:
            return None
        kinds = sorted(allowed)
        return self._rng.choices(kinds, weights=[allowed[k] for k in kinds])[0]

    def _allowed(self, request: Recorded) -> dict[str, float]:
        """The kinds this request can meet, with their weights."""
        watch, write = request.is_watch, request.method in WRITE_METHODS
        allowed = {k: w for k, w in self.weights.items()
                   if (k == "drop") == watch and (k not in ("lost", "409") or write)}
        if watch:  # a watch can also be refused outright now and then
            allowed.update({k: self.weights.get(k, 0) / 4 for k in ("500", "429")})
        return {k: w for k, w in allowed.items() if w > 0}

    def _fault(self, kind: str) -> Fault:
        if kind in _REFUSALS:
            status, reason, message = _REFUSALS[kind]
            return Fault(status=status, reason=reason, message=message,
                         retry_after=1 if kind == "429" else None)
        if kind == "lost":
            return Fault(lost=True)
        if kind == "slow":
            return Fault(delay=self._rng.uniform(0.2, 1.2))
        if kind == "drop":
            return Fault(cut_after=self._rng.uniform(0.2, 2.0), gone=self._rng.random() < 0.5)
        raise ValueError(f"unknown fault kind {kind!r}")

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.log:
            out[item.kind] = out.get(item.kind, 0) + 1
        return out


# ======================================================================================
# Invariants
# ======================================================================================
def _certs(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _spki(key_or_cert: Any) -> bytes:
    public = key_or_cert.public_key()
    return bytes(public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def jwk_kid(pem: bytes) -> str:
    """RFC 7638 SHA-256 thumbprint computed by jwcrypto (independent of trustwire.pki)."""
    return str(jwcrypto_jwk.JWK.from_pem(pem).thumbprint())


def material_problems(ca_pem: bytes, creds: Mapping[str, bytes], *,
                      ca_key_pem: bytes | None = None) -> list[str]:
    """Everything wrong with an identity's credentials against its CA ([] = consistent).

    Checked: the CA is a CA (and matches its key when given); the leaf (first cert of
    ``tls.crt``) is signed by the CA and matches ``tls.key``; ``ca.crt`` is the CA; the
    PKCS#12 keystore opens with ``keystore.password`` and holds the same leaf and key;
    ``jwt.kid`` is the thumbprint of ``jwt.key`` and ``jwt.jwk`` is that key.
    """
    problems: list[str] = []
    try:
        ca = _certs(ca_pem)[0]
    except Exception as exc:
        return [f"CA certificate unreadable: {type(exc).__name__}"]
    try:
        if not ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            problems.append("CA certificate is not a CA")
    except x509.ExtensionNotFound:
        problems.append("CA certificate has no basicConstraints")
    if ca_key_pem is not None:
        try:
            if _spki(serialization.load_pem_private_key(ca_key_pem, None)) != _spki(ca):
                problems.append("CA key does not match the CA certificate")
        except Exception as exc:
            problems.append(f"CA key unreadable: {type(exc).__name__}")
    try:
        leaf = _certs(creds["tls.crt"])[0]
        key = serialization.load_pem_private_key(creds["tls.key"], None)
    except Exception as exc:
        return [*problems, f"leaf certificate or key unreadable: {type(exc).__name__}"]
    try:
        leaf.verify_directly_issued_by(ca)
    except Exception:
        problems.append("leaf is not signed by the CA")
    if _spki(key) != _spki(leaf):
        problems.append("tls.key does not match the leaf certificate")
    try:
        if fingerprint(_certs(creds["ca.crt"])[0]) != fingerprint(ca):
            problems.append("ca.crt is not the identity's CA")
    except Exception:
        problems.append("ca.crt unreadable")
    if "keystore.p12" in creds:
        try:
            p12_key, p12_cert, _ = pkcs12.load_key_and_certificates(
                creds["keystore.p12"], creds["keystore.password"])
            if p12_cert is None or fingerprint(p12_cert) != fingerprint(leaf):
                problems.append("keystore.p12 does not hold the leaf")
            if p12_key is None or _spki(p12_key) != _spki(leaf):
                problems.append("keystore.p12 key does not match the leaf")
        except Exception as exc:
            problems.append(f"keystore.p12 unreadable with keystore.password: {type(exc).__name__}")
    if "jwt.key" in creds or "jwt.kid" in creds:
        try:
            kid = jwk_kid(creds["jwt.key"])
            if creds.get("jwt.kid", b"").decode() != kid:
                problems.append("jwt.kid is not the thumbprint of jwt.key")
            private = jwcrypto_jwk.JWK(**json.loads(creds["jwt.jwk"]))
            if private.thumbprint() != kid or not private.has_private:
                problems.append("jwt.jwk is not the private JWK of jwt.key")
        except Exception as exc:
            problems.append(f"JWT material unreadable: {type(exc).__name__}")
    return problems


def secret_value(body: Mapping[str, Any], key: str) -> bytes | None:
    value = (body.get("data") or {}).get(key)
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, TypeError):
        return None


def ca_lineage(history: History, namespace: str, identity: str) -> list[str]:
    """Distinct CA fingerprints ever stored in ``<identity>-trustwire-ca``, in order of appearance."""
    seen: list[str] = []
    for version in history.of("secrets", namespace, names.ca_secret(identity)):
        pem = secret_value(version, "tls.crt")
        if not pem:
            continue
        try:
            fp = fingerprint(_certs(pem)[0])
        except Exception:  # noqa: S112 - a version corrupted on purpose is no CA
            continue
        if fp not in seen:
            seen.append(fp)
    return seen


def leaf_issuers(history: History, namespace: str, identity: str, cas: Iterable[str]) -> set[str]:
    """Which of ``cas`` (fingerprints) signed some leaf ever stored in the credentials Secret."""
    by_fp: dict[str, x509.Certificate] = {}
    for version in history.of("secrets", namespace, names.ca_secret(identity)):
        pem = secret_value(version, "tls.crt")
        with contextlib.suppress(Exception):
            cert = _certs(pem or b"")[0]
            by_fp[fingerprint(cert)] = cert
    wanted = [by_fp[fp] for fp in cas if fp in by_fp]
    used: set[str] = set()
    for version in history.of("secrets", namespace, names.credentials_secret(identity)):
        pem = secret_value(version, "tls.crt")
        try:
            leaf = _certs(pem or b"")[0]
        except Exception:  # noqa: S112 - a version corrupted on purpose is no leaf
            continue
        for ca in wanted:
            with contextlib.suppress(Exception):
                leaf.verify_directly_issued_by(ca)
                used.add(fingerprint(ca))
    return used


def status_problems(status: Mapping[str, Any], ca_pem: bytes, creds: Mapping[str, bytes]) -> list[str]:
    """Where ``status`` disagrees with the Secrets (CA and leaf fingerprints, jwt kid)."""
    problems = []
    ca = _certs(ca_pem)[0]
    leaf = _certs(creds["tls.crt"])[0]

    def norm(value: Any) -> str:
        return str(value or "").replace(":", "").lower()

    if norm((status.get("ca") or {}).get("fingerprint")) != fingerprint(ca):
        problems.append(f"status.ca.fingerprint {(status.get('ca') or {}).get('fingerprint')} "
                        "is not the CA Secret's")
    if norm((status.get("certificate") or {}).get("fingerprint")) != fingerprint(leaf):
        problems.append("status.certificate.fingerprint is not the leaf in tls.crt")
    if "jwt.kid" in creds and (status.get("jwt") or {}).get("kid") != creds["jwt.kid"].decode():
        problems.append("status.jwt.kid is not jwt.kid")
    return problems


def bundle_fingerprints(trust: Mapping[str, bytes]) -> set[str]:
    pem = trust.get("trust-bundle.pem") or b""
    return {fingerprint(c) for c in _certs(pem)} if pem.strip() else set()


# ======================================================================================
# Reading the API as it is now
# ======================================================================================
_BY_PLURAL = {resource.plural: resource for resource in KINDS.values()}


async def live_object(client: Client, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    return await client.get(_BY_PLURAL[plural], namespace, name)


async def live_data(client: Client, namespace: str, name: str) -> dict[str, bytes]:
    """A Secret's data, decoded (undecodable values are left out)."""
    body = await live_object(client, "secrets", namespace, name) or {}
    out = {}
    for key in body.get("data") or {}:
        value = secret_value(body, key)
        if value is not None:
            out[key] = value
    return out


async def live_condition(client: Client, plural: str, namespace: str, name: str,
                         type_: str) -> dict[str, Any] | None:
    body = await live_object(client, plural, namespace, name) or {}
    for c in (body.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None
