"""One fetch of an issuer's discovery document and JWKS.

https only, the server verified against the configured CA bundle alone (not the system
store: trusting an issuer is a decision about one CA), redirects followed only to https on
the same origin and at most :data:`MAX_REDIRECTS`, every response bounded in size and the
whole fetch in time. Failures become :class:`~trustwire.plan.issuers.IssuerProblem` with a
message that names what went wrong and never a response body.
"""

from __future__ import annotations

import ssl
from datetime import timedelta
from urllib.parse import urljoin

import aiohttp

from trustwire.model.issuer import discovery_url
from trustwire.plan.issuers import (
    FETCH_TIMEOUT,
    MAX_DOCUMENT_BYTES,
    Fetched,
    IssuerProblem,
    jwks_uri_of,
    same_origin,
    signing_keys,
)
from trustwire.plan.reasons import Reason

MAX_REDIRECTS = 3


def _unreachable(message: str) -> IssuerProblem:
    return IssuerProblem(Reason.ISSUER_UNREACHABLE, message)


def tls_for(ca_pem: bytes) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cadata=ca_pem.decode("ascii"))
    except (ssl.SSLError, ValueError, UnicodeDecodeError):
        raise IssuerProblem(Reason.ISSUER_INVALID, "the CA bundle holds no usable PEM certificate") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def _read(response: aiohttp.ClientResponse) -> bytes:
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > MAX_DOCUMENT_BYTES:
            raise _unreachable(f"{response.url.path} is larger than {MAX_DOCUMENT_BYTES} bytes")
    return bytes(body)


async def _get(session: aiohttp.ClientSession, url: str, origin: str) -> tuple[bytes, str | None]:
    for _ in range(MAX_REDIRECTS + 1):
        if not url.startswith("https://") or not same_origin(url, origin):
            raise _unreachable("a redirect leaves the issuer's https origin; refused")
        async with session.get(url, allow_redirects=False) as response:
            if response.status in (301, 302, 303, 307, 308):
                url = urljoin(url, response.headers.get("Location", ""))
                continue
            if response.status != 200:
                raise _unreachable(f"GET {response.url.path} answered {response.status}")
            return await _read(response), response.headers.get("Cache-Control")
    raise _unreachable(f"more than {MAX_REDIRECTS} redirects")


async def fetch_keys(issuer: str, ca_pem: bytes, timeout_after: timedelta = FETCH_TIMEOUT) -> Fetched:
    """The issuer's signing keys, by its discovery document; :class:`IssuerProblem` on any failure."""
    if not issuer.startswith("https://"):
        raise _unreachable("the issuer URL is not https; refused")
    timeout = aiohttp.ClientTimeout(total=timeout_after.total_seconds())
    connector = aiohttp.TCPConnector(ssl=tls_for(ca_pem))
    try:
        async with aiohttp.ClientSession(timeout=timeout, connector=connector, trust_env=False) as session:
            document, _ = await _get(session, discovery_url(issuer), issuer)
            jwks, cache_control = await _get(session, jwks_uri_of(document, issuer), issuer)
    except aiohttp.ClientSSLError as exc:
        raise _unreachable(f"TLS with {issuer} failed: {type(exc).__name__} (is caBundleRef its CA?)") from None
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise _unreachable(f"cannot reach {issuer}: {type(exc).__name__}") from None
    return Fetched(signing_keys(jwks), cache_control)
