"""Fixtures shared by every test directory: a fixed clock, cached real keys, CR body factories,
a real HTTP server on loopback, an OpenID Connect issuer on loopback with its own CA.

Keep this file small and general; fixtures used by one directory belong in that
directory's own ``conftest.py``.
"""

from __future__ import annotations

import copy
import inspect
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.oidc_validators import tls_pair
from trustwire import pki
from trustwire.model import API_VERSION

#: The fixed "now" of unit tests: timezone-aware UTC, whole seconds.
FIXED_NOW = datetime(2031, 3, 14, 9, 26, 53, tzinfo=UTC)

Body = dict[str, Any]


@pytest.fixture
def now() -> datetime:
    """A fixed, timezone-aware UTC clock reading (pure layers take ``now`` as a parameter)."""
    return FIXED_NOW


@pytest.fixture(scope="session")
def real_key() -> Callable[..., pki.PrivateKey]:
    """``real_key(KeyAlgorithm | JwtAlgorithm, slot=0)``: a real generated key, cached per session.

    The same ``(algorithm, slot)`` always returns the same key object; use different
    slots when a test needs two different keys of one algorithm.
    """
    cache: dict[tuple[str, str, int], pki.PrivateKey] = {}

    def get(algorithm: pki.KeyAlgorithm | pki.JwtAlgorithm, slot: int = 0) -> pki.PrivateKey:
        cache_key = (type(algorithm).__name__, str(algorithm), slot)
        if cache_key not in cache:
            if isinstance(algorithm, pki.JwtAlgorithm):
                cache[cache_key] = pki.generate_jwt_key(algorithm)
            else:
                cache[cache_key] = pki.generate_private_key(algorithm)
        return cache[cache_key]

    return get


def _deep_merge(base: Body, extra: Mapping[str, Any]) -> Body:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _body(
    kind: str, name: str, namespace: str, spec: Mapping[str, Any] | None, metadata: Mapping[str, Any] | None
) -> Body:
    meta: Body = _deep_merge({"name": name, "namespace": namespace}, metadata or {})
    body: Body = {"apiVersion": API_VERSION, "kind": kind, "metadata": meta}
    if spec is not None:
        body["spec"] = copy.deepcopy(dict(spec))
    return body


@pytest.fixture
def identity_body() -> Callable[..., Body]:
    """``identity_body(name="dgc", namespace="ns", spec=None, metadata=None, **spec_fields)``.

    Builds a ServiceIdentity body; ``spec_fields`` use the CR's camelCase names and are
    merged over ``spec``. Without either, the body has no ``spec`` at all.
    """

    def make(
        name: str = "dgc",
        namespace: str = "ns",
        spec: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        **spec_fields: Any,
    ) -> Body:
        merged = _deep_merge(dict(spec or {}), spec_fields) if (spec is not None or spec_fields) else None
        return _body("ServiceIdentity", name, namespace, merged, metadata)

    return make


@pytest.fixture
def relationship_body() -> Callable[..., Body]:
    """``relationship_body(a="dgc", b="jobserver", *, name="rel", namespace="ns", **spec_fields)``.

    Builds a TrustRelationship body between identities ``a`` and ``b`` (``b`` optionally in
    ``b_namespace``); ``spec_fields`` (camelCase) are merged over the ``between`` spec.
    """

    def make(
        a: str = "dgc",
        b: str = "jobserver",
        *,
        name: str = "rel",
        namespace: str = "ns",
        a_namespace: str | None = None,
        b_namespace: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        **spec_fields: Any,
    ) -> Body:
        first: Body = {"identity": a}
        second: Body = {"identity": b}
        if a_namespace is not None:
            first["namespace"] = a_namespace
        if b_namespace is not None:
            second["namespace"] = b_namespace
        spec = _deep_merge({"between": [first, second]}, spec_fields)
        return _body("TrustRelationship", name, namespace, spec, metadata)

    return make


HttpServer = Callable[..., Awaitable[str]]


@pytest.fixture
async def http_server() -> AsyncIterator[HttpServer]:
    """``await http_server(routes, ssl_context=None, keepalive_timeout=75.0)``: aiohttp's web
    server on loopback serving ``routes``; returns its URL. Stopped when the test ends,
    without waiting for handlers that are still running (a watch that never ends)."""
    runners: list[web.AppRunner] = []

    async def start(routes: list[web.RouteDef], *, ssl_context: ssl.SSLContext | None = None,
                    keepalive_timeout: float = 75.0) -> str:
        app = web.Application()
        app.add_routes(routes)
        runner = web.AppRunner(app, keepalive_timeout=keepalive_timeout, shutdown_timeout=0.1)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


# The real control plane (tests/cluster): session fixtures `control_plane`, `chart_objects`,
# `operator_access`.
pytest_plugins = ["tests.cluster.fixtures"]


# --- an external OpenID Connect issuer on loopback ---------------------------------------------

class LoopbackIssuer:
    """An OIDC issuer on 127.0.0.1 ('localhost' in its certificate) whose answers a test sets."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[web.Request], Any]] = {}
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        answer = self.routes.get(request.path)
        if answer is None:
            return web.Response(status=404)
        response = answer(request)
        return await response if inspect.isawaitable(response) else response  # type: ignore[no-any-return]

    def serve(self, jwks: dict[str, Any], cache_control: str = "max-age=60") -> None:
        self.routes = {
            "/realm/.well-known/openid-configuration":
                lambda _: web.json_response({"issuer": self.url, "jwks_uri": self.url + "/certs"}),
            "/realm/certs": lambda _: web.json_response(jwks, headers={"Cache-Control": cache_control}),
        }


@pytest.fixture
async def loopback(tmp_path: Path) -> AsyncIterator[tuple[LoopbackIssuer, bytes]]:
    issuer = LoopbackIssuer()
    with tls_pair(tmp_path) as (chain, key, _):
        (tmp_path / "tls.crt").write_bytes(chain)
        (tmp_path / "tls.key").write_bytes(key)
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", issuer.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        issuer.url = f"https://localhost:{port}/realm"
        try:
            yield issuer, (tmp_path / "ca.crt").read_bytes()
        finally:
            await runner.cleanup()
