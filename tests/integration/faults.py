"""Fault injection in front of the API emulator, and the invariants checked after faults.

Two halves, both used by the hardening tests (``docs/hardening.md``):

**Faults.** :class:`FaultInjector` decides, once per request and from a seeded RNG, whether
a request of the *operator* (User-Agent ``trustwire-operator`` or ``kopf``; the test's own
client is never touched) meets a fault, and records every decision in :attr:`FaultInjector.log`.
It acts at two points, because kmock's emulator applies every write *before* it consults
any reaction ("silently serve object-modifying requests even if intercepted"):

* ``reject`` faults (500, 409, 429 with ``Retry-After: 1``) are answered by
  :class:`FaultyEmulator._handle` *before* the emulator touches its state — the request
  had no effect, like a real API server refusing it;
* ``lost`` (the write *was* applied but the client sees a 500 — a response lost after
  commit), ``slow`` (the normal answer, 0.2-1.2 s late) and ``drop`` (a watch stream cut
  after 0.2-2 s, optionally ending with an ``ERROR 410 Gone`` event) are kmock reactions:
  one callable payload registered with ``emulator << injector.react``, which either
  answers (a :class:`kmock.Response`) or raises ``NotImplementedError`` so that kmock
  passes the request on to the emulator's normal handling.

**Invariants.** Independent checks (``cryptography`` and ``jwcrypto``, not the operator's
own ``pki``) that issued material is consistent, that one CA lineage per identity ever
existed in the emulator's object history, and that status agrees with the Secrets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import attrs
import kmock
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from jwcrypto import jwk as jwcrypto_jwk

from trustwire import names
from trustwire.emulator import RESOURCES

OPERATOR_AGENTS = ("trustwire-operator", "kopf")
WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}

#: Fault kinds and where they act.
REJECT_KINDS = ("500", "409", "429", "422")
REACTION_KINDS = ("lost", "slow", "drop")


# ======================================================================================
# Faults
# ======================================================================================
@dataclasses.dataclass(frozen=True)
class Injected:
    request_id: int
    method: str
    path: str
    kind: str


def _method(request: Any) -> str:
    return str(getattr(request.method, "value", request.method) or "").upper()


def _is_watch(request: Any) -> bool:
    return str(request.params.get("watch", "")).lower() in ("true", "1")


def is_operator_request(request: Any) -> bool:
    return str(request.headers.get("User-Agent", "")).startswith(OPERATOR_AGENTS)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "code": code, "reason": reason, "message": message}


@dataclasses.dataclass
class FaultInjector:
    """Seeded, per-request fault decisions for the operator's requests only.

    ``rate`` is the probability that a request of the operator's own client meets a
    fault, ``kopf_rate`` that of kopf's (discovery, lists and watches; kopf gives up after
    five failed attempts of one request and stops, so its rate is lower); ``weights``
    chooses among the kinds. 409 (a conflict) and ``lost`` only hit writes, as on a real
    server; watch requests can only be dropped or (rarely) refused.
    """

    seed: int = 0
    rate: float = 0.25
    kopf_rate: float | None = None
    weights: Mapping[str, float] = dataclasses.field(default_factory=lambda: {
        "500": 3, "409": 2, "429": 2, "lost": 2, "slow": 2, "drop": 1})
    enabled: bool = False
    log: list[Injected] = dataclasses.field(default_factory=list)
    #: instead of the RNG: a function naming the fault for a request (or None), for targeted tests
    script: Callable[[Any], str | None] | None = None
    #: kinds injected first, each as soon as a faulted request allows it (so every kind occurs)
    ensure: tuple[str, ...] = ("drop", "500", "409", "429", "lost", "slow")

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._decisions: dict[int, str | None] = {}
        self._delays: dict[int, float] = {}

    def decide(self, request: Any) -> str | None:
        """The fault for this request (decided once, remembered by request id)."""
        rid = id(request)
        if rid in self._decisions:
            return self._decisions[rid]
        kind = None
        agent = str(request.headers.get("User-Agent", ""))
        rate = self.rate if not agent.startswith("kopf") else \
            (self.kopf_rate if self.kopf_rate is not None else self.rate / 2)
        if self.enabled and is_operator_request(request) and self.script is not None:
            kind = self.script(request)
            if kind is not None:
                self.log.append(Injected(getattr(request, "id", -1), _method(request),
                                         str(request.url.path), kind))
        elif self.enabled and is_operator_request(request) and self._rng.random() < rate:
            watch, write = _is_watch(request), _method(request) in WRITE_METHODS
            allowed = {k: w for k, w in self.weights.items()
                       if (k == "drop") == watch and (k not in ("lost", "409") or write)}
            if watch:  # a watch can also be refused outright now and then
                allowed.update({k: self.weights.get(k, 0) / 4 for k in ("500", "429")})
            allowed = {k: w for k, w in allowed.items() if w > 0}
            missing = [k for k in self.ensure if k in allowed and k not in self.counts()]
            if missing:
                kind = missing[0]
            elif allowed:
                kinds = sorted(allowed)
                kind = self._rng.choices(kinds, weights=[allowed[k] for k in kinds])[0]
            if kind is not None:
                self._delays[rid] = self._rng.uniform(0.2, 1.2 if kind == "slow" else 2.0)
                self.log.append(Injected(getattr(request, "id", -1), _method(request),
                                         str(request.url.path), kind))
        self._decisions[rid] = kind
        return kind

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for item in self.log:
            out[item.kind] = out.get(item.kind, 0) + 1
        return out

    # ---- reject: before the emulator changes anything -----------------------------------
    def reject_response(self, request: Any) -> Any:
        import aiohttp.web

        kind = self.decide(request)
        if kind not in REJECT_KINDS:
            return None
        if kind == "500":
            return aiohttp.web.json_response(_status(500, "InternalError", "injected fault: etcd timeout"),
                                             status=500)
        if kind == "409":
            return aiohttp.web.json_response(
                _status(409, "Conflict", "injected fault: the object has been modified; please retry"),
                status=409)
        if kind == "422":  # what a real API server answers a Secret over 1 MiB (only by script)
            return aiohttp.web.json_response(
                _status(422, "Invalid", "injected fault: data: Too long: must have at most 1048576 bytes"),
                status=422)
        return aiohttp.web.json_response(_status(429, "TooManyRequests", "injected fault: throttled"),
                                         status=429, headers={"Retry-After": "1"})

    # ---- reactions: after the emulator applied writes -----------------------------------
    def bind(self, emulator: kmock.KubernetesEmulator) -> None:
        self._emulator = emulator
        emulator << self.react  # a callable payload on the root view: sees every request

    async def react(self, request: Any) -> Any:
        kind = self._decisions.get(id(request))
        if kind == "lost":
            # the emulator already stored the write; the client only hears of a failure
            lost = _status(500, "InternalError", "injected fault: response lost")
            return kmock.Response(status=500, headers={"Retry-After": None}, payload=lost)  # type: ignore[attr-defined]
        if kind == "slow":
            await asyncio.sleep(self._delays.get(id(request), 0.5))
        if kind == "drop" and _is_watch(request):
            return self._cut_watch(request, self._delays.get(id(request), 1.0))
        raise NotImplementedError  # not ours: kmock continues with the emulator's handling

    async def _cut_watch(self, request: Any, after: float) -> AsyncIterator[Any]:
        """Proxy the emulator's own watch stream, then end it (sometimes with 410 Gone)."""
        stream: Any = self._emulator._serve_watch(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + after
        try:
            while (remaining := deadline - loop.time()) > 0:
                try:
                    item = await asyncio.wait_for(anext(stream), remaining)
                except (TimeoutError, StopAsyncIteration):
                    break
                yield item
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()
        if self._rng.random() < 0.5:
            gone = _status(410, "Expired", "injected fault: too old resource version")
            yield {"type": "ERROR", "object": gone}


@attrs.define(kw_only=True)
class FaultyEmulator(kmock.KubernetesEmulator):
    """The kmock emulator with a hook that can refuse a request before it changes state."""

    injector: FaultInjector | None = None

    async def _handle(self, request: Any) -> Any:
        if self.injector is not None:
            response = self.injector.reject_response(request)
            if response is not None:
                return response
        return await super()._handle(request)


@dataclasses.dataclass
class RunningFaultyEmulator:
    """:class:`trustwire.emulator.RunningEmulator` for a :class:`FaultyEmulator` (no ``journal``)."""

    emulator: FaultyEmulator
    url: str


@contextlib.asynccontextmanager
async def running_faulty_emulator(injector: FaultInjector) -> AsyncIterator[RunningFaultyEmulator]:
    """Like :func:`trustwire.emulator.running_emulator`, with ``injector`` in front."""
    async with FaultyEmulator(injector=injector) as emulator, kmock.Server(emulator) as server:
        for key, info in RESOURCES.items():
            emulator.resources[key] = info  # type: ignore[assignment]
        injector.bind(emulator)
        yield RunningFaultyEmulator(emulator, str(server.url).rstrip("/"))


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


def history_versions(emulator: Any, plural: str, namespace: str, name: str) -> list[dict[str, Any]]:
    """Every stored version (oldest first, deletions skipped) of one object in the emulator."""
    out: list[dict[str, Any]] = []
    for (resource, ns, obj_name), obj in list(emulator.objects.items()):
        if resource.plural == plural and ns == namespace and obj_name == name:
            for version in obj.history:
                if version is not None:
                    out.append(version.raw)
    return out


def secret_value(body: Mapping[str, Any], key: str) -> bytes | None:
    value = (body.get("data") or {}).get(key)
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, TypeError):
        return None


def ca_lineage(emulator: Any, namespace: str, identity: str) -> list[str]:
    """Distinct CA fingerprints ever stored in ``<identity>-trustwire-ca``, in order of appearance."""
    seen: list[str] = []
    for version in history_versions(emulator, "secrets", namespace, names.ca_secret(identity)):
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


def leaf_issuers(emulator: Any, namespace: str, identity: str, cas: Iterable[str]) -> set[str]:
    """Which of ``cas`` (fingerprints) signed some leaf ever stored in the credentials Secret."""
    by_fp: dict[str, x509.Certificate] = {}
    for version in history_versions(emulator, "secrets", namespace, names.ca_secret(identity)):
        pem = secret_value(version, "tls.crt")
        with contextlib.suppress(Exception):
            cert = _certs(pem or b"")[0]
            by_fp[fingerprint(cert)] = cert
    wanted = [by_fp[fp] for fp in cas if fp in by_fp]
    used: set[str] = set()
    for version in history_versions(emulator, "secrets", namespace, names.credentials_secret(identity)):
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
# Reading the emulator's store directly (no HTTP request, so no growth of kmock's request
# log — kmock scans that log for every request it serves, so polling over HTTP slows it)
# ======================================================================================
def live_object(emulator: Any, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    for (resource, ns, obj_name), obj in list(emulator.objects.items()):
        if resource.plural == plural and ns == namespace and obj_name == name and not obj.deleted:
            return dict(obj.raw)
    return None


def live_data(emulator: Any, namespace: str, name: str) -> dict[str, bytes]:
    """A Secret's data, decoded (undecodable values are left out)."""
    body = live_object(emulator, "secrets", namespace, name) or {}
    out = {}
    for key in body.get("data") or {}:
        value = secret_value(body, key)
        if value is not None:
            out[key] = value
    return out


def live_condition(emulator: Any, plural: str, namespace: str, name: str,
                   type_: str) -> dict[str, Any] | None:
    body = live_object(emulator, plural, namespace, name) or {}
    for c in (body.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None
