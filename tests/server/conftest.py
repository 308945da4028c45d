from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from trustwire.k8s.client import ApiConfig, Client
from trustwire.server.app import Feature, build_app
from trustwire.server.context import ServerContext

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

Serve = Callable[..., "AsyncIterator[TestClient[web.Request, web.Application]]"]


@pytest.fixture
async def unused_api() -> AsyncIterator[Client]:
    """A client of an API server nobody listens on: for features that must not call it."""
    async with Client(ApiConfig(server="http://127.0.0.1:9"), retries=0) as client:
        yield client


@pytest.fixture
def context(unused_api: Client) -> ServerContext:
    return ServerContext(client=unused_api, clock=lambda: NOW, public_url="https://trust.example")


@pytest.fixture
async def http(context: ServerContext) -> AsyncIterator[Callable[..., TestClient[web.Request, web.Application]]]:
    """Start the app with the given features (default: the real ones) on loopback."""
    started: list[TestClient[web.Request, web.Application]] = []

    async def start(*features: Feature) -> TestClient[web.Request, web.Application]:
        app = build_app(context, features) if features else build_app(context)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        started.append(client)
        return client

    yield start  # type: ignore[misc]
    for client in started:
        await client.close()
