"""Enrollment of external applications: one-time token and CSR in, certificate out.

``GET /v1/info`` and ``POST /v1/certificates`` authenticate with the one-time token
(``Authorization: Bearer``); each consumes the token it is shown with one status write that
carries the resourceVersion of the Enrollment read, so of two replicas racing one token the
API server lets exactly one win (409 for the other: ``TokenAlreadyUsed``). ``GET
/v1/management/info`` and ``POST /v1/renewals`` authenticate with the client certificate,
mapped to its Enrollment by its URI SAN. Every decision is a named check of
:mod:`trustwire.plan.csr`; the server reads ``spec.revoked`` itself on every request.
Nothing here logs a token, a CSR or a key.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

from aiohttp import web
from cryptography import x509

from trustwire import names, pki
from trustwire.k8s.errors import ApiError
from trustwire.k8s.events import event_body
from trustwire.k8s.resources import ENROLLMENTS, EVENTS, IDENTITIES, SECRETS, decode_data
from trustwire.model import Enrollment, SpecError, parse_enrollment, parse_identity
from trustwire.plan import csr as plan
from trustwire.plan.checks import Verdict, evaluate
from trustwire.plan.enrollment import EnrollmentState, Phase, TokenRecord, make_token, subject_name, token_target
from trustwire.plan.reasons import Reason
from trustwire.server.context import ServerContext
from trustwire.server.errors import Refusal, ServerReason
from trustwire.times import parse_time, rfc3339

log = logging.getLogger("trustwire.server.enrollment")

#: lastSeen is written at most this often per Enrollment, so a chatty client costs no writes.
LAST_SEEN_EVERY = timedelta(minutes=1)
#: Requests one client address may make per window to the enrollment endpoints.
RATE_LIMIT, RATE_WINDOW = 30, 60.0
#: The CA keys of an enrollment CA Secret a client certificate may chain to.
_CA_KEYS = ("tls.crt", "next.crt", "previous.crt")

#: The HTTP status of each refusal: 401 when the credential itself is missing or no good, 400
#: for a CSR that cannot be signed, 403 for a credential that is good but may not do this.
_STATUS = {Reason.TOKEN_MISSING: 401, Reason.TOKEN_INVALID: 401, Reason.TOKEN_EXPIRED: 401,
           Reason.TOKEN_ALREADY_USED: 401, Reason.CLIENT_CERTIFICATE_REQUIRED: 401,
           Reason.CSR_UNREADABLE: 400, Reason.CSR_SIGNATURE_INVALID: 400, Reason.CSR_KEY_NOT_ALLOWED: 400,
           Reason.CSR_SUBJECT_MISMATCH: 400, Reason.CSR_CA_REQUESTED: 400, Reason.CSR_SANS_NOT_ALLOWED: 400,
           Reason.ENROLLMENT_REVOKED: 403, Reason.CERTIFICATE_NOT_ISSUED_HERE: 403,
           Reason.CERTIFICATE_NOT_CURRENT: 403, Reason.ENROLLMENT_CERTIFICATE_EXPIRED: 403}


def _refuse(verdict: Verdict) -> Refusal:
    return Refusal(_STATUS[verdict.reason], verdict.reason, verdict.message)


def _unavailable(exc: ApiError) -> Refusal:
    return Refusal(503, ServerReason.UNAVAILABLE, f"the API server answered {exc.status}")


class Found:
    """One Enrollment as read: its body (with the resourceVersion the write is conditional on)."""

    def __init__(self, body: dict[str, Any], enrollment: Enrollment) -> None:
        self.body, self.enrollment = body, enrollment
        self.state = EnrollmentState.from_status(body.get("status"))

    @property
    def status(self) -> dict[str, Any]:
        status = self.body.get("status")
        return dict(status) if isinstance(status, Mapping) else {}


async def _read(ctx: ServerContext, namespace: str, name: str, unknown: Verdict) -> Found:
    if not ctx.serves(namespace):
        raise _refuse(unknown)
    try:
        body = await ctx.client.get(ENROLLMENTS, namespace, name)
    except ApiError as exc:
        raise _unavailable(exc) from None
    if body is None:
        raise _refuse(unknown)
    try:
        return Found(body, parse_enrollment(body))
    except SpecError:
        raise Refusal(403, Reason.ENROLLMENT_INVALID, f"Enrollment {namespace}/{name} has an invalid spec") from None


def _bearer(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _refuse(Verdict(Reason.TOKEN_MISSING, "Authorization: Bearer <one-time token> is required"))
    return token.strip()


async def _by_token(ctx: ServerContext, request: web.Request) -> Found:
    token = _bearer(request)
    invalid = Verdict(Reason.TOKEN_INVALID, "the token is not valid (unknown, or already used)")
    target = token_target(token)
    if target is None:
        raise _refuse(invalid)
    found = await _read(ctx, *target, invalid)
    verdict = evaluate(plan.TOKEN_CHECKS, plan.TokenInput(found.enrollment.revoked, found.state.token, token,
                                                          ctx.clock()))
    if verdict is not None:
        raise _refuse(verdict)
    return found


async def _write(ctx: ServerContext, found: Found, status: Mapping[str, Any], lost: Verdict) -> None:
    """One conditional status write: a 409 means another request consumed what this one read."""
    meta = found.body["metadata"]
    patch = {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "status": status}
    try:
        written = await ctx.client.merge_patch(ENROLLMENTS, meta.get("namespace"), meta["name"], patch,
                                               subresource="status")
    except ApiError as exc:
        if exc.status == 409:
            raise _refuse(lost) from None
        raise _unavailable(exc) from None
    if written is None:
        raise _refuse(lost)


async def _event(ctx: ServerContext, found: Found, reason: Reason, message: str) -> None:
    event = event_body(found.body, reason.event_type, str(reason), message, ctx.clock(), "trustwire-serve")
    meta = event["involvedObject"]
    try:
        await ctx.client.create(EVENTS, meta["namespace"], event)
    except ApiError as exc:  # best effort: the status already says what happened
        log.info("could not post event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], exc.status)


# ---- the identity's enrollment CA ----------------------------------------------------------
class Authority:
    def __init__(self, issuer: plan.Issuer, trusted: list[x509.Certificate]) -> None:
        self.issuer, self.trusted = issuer, trusted

    @property
    def bundle(self) -> bytes:
        return pki.certs_to_pem(self.trusted)


async def _authority(ctx: ServerContext, enr: Enrollment) -> Authority:
    unavailable = Refusal(503, ServerReason.UNAVAILABLE,
                          f"ServiceIdentity {enr.namespace}/{enr.identity} has no enrollment CA yet")
    try:
        identity = await ctx.client.get(IDENTITIES, enr.namespace, enr.identity)
        secret = await ctx.client.get(SECRETS, enr.namespace, names.enrollment_ca_secret(enr.identity))
    except ApiError as exc:
        raise _unavailable(exc) from None
    if identity is None or secret is None:
        raise unavailable
    data = decode_data(SECRETS, secret)
    try:
        trust_domain = parse_identity(identity).trust_domain
        key = pki.load_private_key(data["tls.key"])
        trusted = [pki.load_certificates(data[k])[0] for k in _CA_KEYS if data.get(k)]
    except (SpecError, KeyError, IndexError, pki.PKIError):
        raise unavailable from None
    if not trusted:
        raise unavailable
    return Authority(plan.Issuer(trusted[0], key, trust_domain), trusted)


def _teach(tls: ssl.SSLContext | None, authority: Authority) -> None:
    """Let client certificates of this CA complete the handshake (renewal, management)."""
    if tls is not None:
        tls.load_verify_locations(cadata=authority.bundle.decode())


async def _csr(request: web.Request) -> str:
    try:
        body = await request.json()
    except ValueError:
        raise Refusal(400, ServerReason.BAD_REQUEST, 'the body must be JSON: {"csr": "<PEM>"}') from None
    pem = body.get("csr") if isinstance(body, dict) else None
    if not isinstance(pem, str):
        raise Refusal(400, ServerReason.BAD_REQUEST, 'the body must be JSON: {"csr": "<PEM>"}')
    return pem


def _issue(ctx: ServerContext, found: Found, authority: Authority, pem: str) -> x509.Certificate:
    request, verdict = plan.check_csr(found.enrollment.subject, pem)
    if verdict is not None or request is None:
        raise _refuse(verdict or Verdict(Reason.CSR_UNREADABLE, "csr: unreadable"))
    return plan.issue(found.enrollment, request, authority.issuer, ctx.clock(), pki.random_serial())


def _urls(ctx: ServerContext, request: web.Request) -> dict[str, str]:
    base = (ctx.public_url or f"https://{request.host}").rstrip("/")
    return {"certificates": f"{base}/v1/certificates", "managementInfo": f"{base}/v1/management/info",
            "renewals": f"{base}/v1/renewals"}


def _subject(enr: Enrollment) -> dict[str, Any]:
    s = enr.subject
    return {"commonName": s.common_name, "organization": list(s.organization),
            "organizationalUnit": list(s.organizational_unit), "dn": subject_name(s).rfc4514_string()}


def _issued(cert: x509.Certificate, authority: Authority) -> dict[str, Any]:
    return {"certificate": pki.cert_to_pem(cert).decode(),
            "chain": (pki.cert_to_pem(cert) + pki.cert_to_pem(authority.issuer.certificate)).decode(),
            "ca": authority.bundle.decode(), **plan.certificate_status(cert)}


# ---- handlers ------------------------------------------------------------------------------
async def info(ctx: ServerContext, request: web.Request) -> web.Response:
    found = await _by_token(ctx, request)
    enr, now = found.enrollment, ctx.clock()
    fresh = make_token(enr.namespace, enr.name, secrets.token_bytes(32))
    record = TokenRecord.of(fresh, now, enr.token_ttl)
    await _write(ctx, found, {"token": record.to_dict(), "phase": str(Phase.TOKEN_ISSUED)},
                 Verdict(Reason.TOKEN_ALREADY_USED, "the token was used by another request"))
    log.info("Enrollment %s/%s: token exchanged", enr.namespace, enr.name)
    return web.json_response({"subject": _subject(enr), "token": fresh, "expiresAt": rfc3339(record.expires_at),
                              "urls": _urls(ctx, request)})


async def certificates(ctx: ServerContext, request: web.Request) -> web.Response:
    found = await _by_token(ctx, request)
    pem = await _csr(request)
    authority = await _authority(ctx, found.enrollment)
    cert = _issue(ctx, found, authority, pem)
    status = {"token": None, "phase": str(Phase.ENROLLED), "certificate": plan.certificate_status(cert),
              "lastSeen": rfc3339(ctx.clock())}
    lost = Verdict(Reason.TOKEN_ALREADY_USED, "the token was used by another request")
    return await _record(ctx, found, authority, cert, status, lost, Reason.ENROLLED, "issued")


async def _record(ctx: ServerContext, found: Found, authority: Authority, cert: x509.Certificate,
                  status: dict[str, Any], lost: Verdict, reason: Reason, how: str) -> web.Response:
    """One conditional status write records ``cert`` (``lost`` when another request won); then
    this replica's TLS context learns the CA it chains to, and an Event says what happened."""
    await _write(ctx, found, status, lost)
    _teach(ctx.tls, authority)
    enr, serial = found.enrollment, pki.serial_hex(cert)
    log.info("Enrollment %s/%s: certificate %s %s", enr.namespace, enr.name, serial, how)
    await _event(ctx, found, reason, f"certificate {serial} {how}, valid until {rfc3339(pki.not_after(cert))}")
    return web.json_response(_issued(cert, authority), status=201)


def _peer(request: web.Request) -> x509.Certificate:
    tls = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = tls.getpeercert(binary_form=True) if tls is not None else None
    if not der:
        raise _refuse(Verdict(Reason.CLIENT_CERTIFICATE_REQUIRED,
                              "this endpoint requires the enrolled application's client certificate (mTLS)"))
    return x509.load_der_x509_certificate(der)


async def _by_certificate(ctx: ServerContext, request: web.Request) -> tuple[Found, Authority, x509.Certificate]:
    presented = _peer(request)
    unknown = Verdict(Reason.CERTIFICATE_NOT_ISSUED_HERE, "the client certificate names no Enrollment served here")
    target = plan.enrollment_of(presented)
    if target is None:
        raise _refuse(unknown)
    found = await _read(ctx, *target, unknown)
    authority = await _authority(ctx, found.enrollment)
    current = found.state.certificate.serial if found.state.certificate else None
    verdict = evaluate(plan.RENEWAL_CHECKS, plan.RenewalInput(found.enrollment.revoked, presented,
                                                              authority.trusted, current, ctx.clock()))
    if verdict is not None:
        raise _refuse(verdict)
    return found, authority, presented


async def management_info(ctx: ServerContext, request: web.Request) -> web.Response:
    found, _, _ = await _by_certificate(ctx, request)
    now = ctx.clock()
    seen = parse_time(found.status.get("lastSeen"))
    if seen is None or now - seen >= LAST_SEEN_EVERY:
        try:
            await ctx.client.merge_patch(ENROLLMENTS, found.enrollment.namespace, found.enrollment.name,
                                         {"status": {"lastSeen": rfc3339(now)}}, subresource="status")
        except ApiError as exc:  # lastSeen is a courtesy; the answer does not depend on it
            log.info("could not record lastSeen of %s/%s: %s", found.enrollment.namespace,
                     found.enrollment.name, exc.status)
    return web.json_response({"namespace": found.enrollment.namespace, "enrollment": found.enrollment.name,
                              "subject": _subject(found.enrollment), "certificate": found.status.get("certificate"),
                              "urls": _urls(ctx, request)})


async def renewals(ctx: ServerContext, request: web.Request) -> web.Response:
    found, authority, _ = await _by_certificate(ctx, request)
    pem = await _csr(request)
    cert = _issue(ctx, found, authority, pem)
    count = found.status.get("renewals")
    status = {"certificate": plan.certificate_status(cert), "lastSeen": rfc3339(ctx.clock()),
              "renewals": (count if isinstance(count, int) else 0) + 1, "phase": str(Phase.ENROLLED)}
    lost = Verdict(Reason.CERTIFICATE_NOT_CURRENT, "another renewal replaced the certificate first")
    return await _record(ctx, found, authority, cert, status, lost, Reason.ENROLLMENT_RENEWED, "issued by renewal")


async def learn_client_cas(ctx: ServerContext) -> None:
    """Teach the TLS context every enrollment CA of the served Enrollments' identities, so a
    replica that never issued a certificate still completes its holder's handshake."""
    if ctx.tls is None:
        return
    bodies = []
    for namespace in ctx.namespaces or (None,):
        bodies += await ctx.client.list(ENROLLMENTS, namespace)
    identities = {((b.get("metadata") or {}).get("namespace"), (b.get("spec") or {}).get("identity"))
                  for b in bodies}
    for namespace, identity in identities:
        if not isinstance(namespace, str) or not isinstance(identity, str):
            continue
        secret = await ctx.client.get(SECRETS, namespace, names.enrollment_ca_secret(identity))
        data = decode_data(SECRETS, secret) if secret else {}
        for key in _CA_KEYS:
            if data.get(key):
                try:
                    ctx.tls.load_verify_locations(cadata=data[key].decode())
                except (ssl.SSLError, UnicodeDecodeError):
                    log.info("enrollment CA %s/%s %s is unreadable", namespace, identity, key)


async def keep_client_cas(ctx: ServerContext, every: float = 60.0) -> None:
    """:func:`learn_client_cas` now and every ``every`` seconds (a new identity's CA, a rotation)."""
    while True:
        try:
            await learn_client_cas(ctx)
        except ApiError as exc:
            log.info("could not read the enrollment CAs: %s", exc.status)
        await asyncio.sleep(every)


# ---- a simple per-client bound -------------------------------------------------------------
class RateBound:
    """At most ``limit`` requests per client address in a sliding ``window`` (seconds)."""

    def __init__(self, limit: int = RATE_LIMIT, window: float = RATE_WINDOW,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self.seen: dict[str, list[float]] = {}

    def admit(self, client: str) -> bool:
        now = self.clock()
        recent = [t for t in self.seen.get(client, []) if now - t < self.window]
        if len(recent) >= self.limit:
            self.seen[client] = recent
            return False
        self.seen[client] = [*recent, now]
        if len(self.seen) > 10_000:  # forget idle clients so the table stays bounded
            self.seen = {k: v for k, v in self.seen.items() if v and now - v[-1] < self.window}
        return True


Handler = Callable[[ServerContext, web.Request], Awaitable[web.Response]]


def _bounded(ctx: ServerContext, bound: RateBound, handler: Handler) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        if not bound.admit(request.remote or ""):
            raise Refusal(429, ServerReason.RATE_LIMITED, f"at most {bound.limit} requests per "
                                                          f"{bound.window:.0f}s; retry later")
        return await handler(ctx, request)

    return handle


def routes(ctx: ServerContext, bound: RateBound | None = None) -> list[web.RouteDef]:
    b = bound or RateBound()
    return [web.get(names.ENROLLMENT_INFO_PATH, _bounded(ctx, b, info)),
            web.post("/v1/certificates", _bounded(ctx, b, certificates)),
            web.get("/v1/management/info", _bounded(ctx, b, management_info)),
            web.post("/v1/renewals", _bounded(ctx, b, renewals))]
