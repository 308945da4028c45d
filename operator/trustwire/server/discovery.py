"""OpenID Connect discovery: each issuer identity's provider metadata and JWKS.

``GET /<ns>/<name>/.well-known/openid-configuration`` and ``GET /<ns>/<name>/jwks.json``
for every identity with ``spec.jwt.discovery: true`` whose issuer is
``<public URL>/<ns>/<name>``. The server reads the identity (spec and status) and its
public ConfigMap, never a Secret; what it publishes is decided in :mod:`trustwire.plan.oidc`.
Both answers carry a strong ETag and ``Cache-Control: max-age`` from the rollover timing,
and ``If-None-Match`` with the current ETag answers 304 without a body.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from trustwire import names
from trustwire.k8s.errors import ApiError
from trustwire.k8s.resources import CONFIGMAPS, IDENTITIES, decode_data
from trustwire.model import SpecError, parse_identity
from trustwire.plan import oidc
from trustwire.plan.reasons import Reason
from trustwire.plan.status import IdentityStatus
from trustwire.server.context import ServerContext
from trustwire.server.errors import Refusal, ServerReason

Document = Callable[[oidc.IssuerInput, dict[str, list[dict[str, str]]]], Mapping[str, Any]]


def _not_served(message: str) -> Refusal:
    return Refusal(404, Reason.ISSUER_NOT_SERVED, message)


def _public_url(ctx: ServerContext, request: web.Request) -> str:
    return ctx.public_url or f"https://{request.host}"


def _published(configmap: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    text = decode_data(CONFIGMAPS, configmap).get("jwks.json")
    try:
        value = json.loads(text) if text is not None else None
    except ValueError:
        return None
    return value if isinstance(value, Mapping) else None


async def issuer_input(ctx: ServerContext, request: web.Request) -> oidc.IssuerInput:
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    if not ctx.serves(namespace):
        raise _not_served(f"namespace {namespace} is not served here")
    try:
        body = await ctx.client.get(IDENTITIES, namespace, name)
        configmap = await ctx.client.get(CONFIGMAPS, namespace, names.public_configmap(name)) if body else None
    except ApiError as exc:
        raise Refusal(503, ServerReason.UNAVAILABLE, f"the API server answered {exc.status}") from None
    if body is None:
        raise _not_served(f"no ServiceIdentity {namespace}/{name}")
    try:
        identity = parse_identity(body)
    except SpecError:
        raise _not_served(f"ServiceIdentity {namespace}/{name} has an invalid spec") from None
    status = body.get("status")
    return oidc.IssuerInput(identity, IdentityStatus.from_dict(status if isinstance(status, Mapping) else None),
                            _public_url(ctx, request), _published(configmap))


def _answer(ctx: ServerContext, request: web.Request, i: oidc.IssuerInput, document: Mapping[str, Any]) -> web.Response:
    body = oidc.render(document)
    tag = oidc.etag(body)
    max_age = oidc.cache_max_age(i.status, ctx.clock(), ctx.propagation_delay)
    headers = {"ETag": tag, "Cache-Control": f"public, max-age={max_age}"}
    if tag in (t.strip() for t in request.headers.get("If-None-Match", "").split(",")):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)


def _discovery(i: oidc.IssuerInput, jwks: dict[str, list[dict[str, str]]]) -> Mapping[str, Any]:
    return oidc.discovery_document(i.identity.issuer, oidc.document_algorithms(jwks))


def _jwks(_: oidc.IssuerInput, jwks: dict[str, list[dict[str, str]]]) -> Mapping[str, Any]:
    return jwks


def _handler(ctx: ServerContext, document: Document) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.Response:
        i = await issuer_input(ctx, request)
        verdict = oidc.not_served(i)
        if verdict is not None:
            raise _not_served(verdict.message)
        jwks = oidc.published_jwks(i)
        if not jwks["keys"]:
            raise Refusal(503, ServerReason.UNAVAILABLE, "no published key is vouched for by the identity's status")
        return _answer(ctx, request, i, document(i, jwks))

    return handle


def routes(ctx: ServerContext) -> list[web.RouteDef]:
    return [
        web.get("/{namespace}/{name}" + oidc.DISCOVERY_PATH, _handler(ctx, _discovery)),
        web.get("/{namespace}/{name}" + oidc.JWKS_PATH, _handler(ctx, _jwks)),
    ]
