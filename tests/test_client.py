"""The API client against a real HTTP server on loopback that paginates as kube-apiserver does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from trustwire.k8s.client import SECRETS, ApiConfig, Client


@pytest.fixture
async def paginating() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """Serves 7 Secrets in pages of ``limit`` with opaque ``continue`` tokens; records each query."""
    names = [f"s{i}" for i in range(7)]
    seen: list[dict[str, str]] = []

    async def list_secrets(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        limit = int(request.query.get("limit", len(names)))
        start = int(request.query.get("continue", "0").removeprefix("token-") or 0)
        page = names[start:start + limit]
        meta: dict[str, Any] = {"resourceVersion": "1"}
        if start + limit < len(names):
            meta["continue"] = f"token-{start + limit}"
        return web.json_response({"kind": "SecretList", "metadata": meta,
                                  "items": [{"metadata": {"name": n, "namespace": "ns"}} for n in page]})

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/ns/secrets", list_secrets)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("page_size", "requests"), [(3, 3), (7, 1), (500, 1)])
async def test_list_follows_continue_tokens_until_the_last_page(
        paginating: tuple[str, list[dict[str, str]]], page_size: int, requests: int) -> None:
    url, seen = paginating
    async with Client(ApiConfig(server=url)) as client:
        items = await client.list(SECRETS, "ns", label_selector="a=b", page_size=page_size)
    assert [i["metadata"]["name"] for i in items] == [f"s{i}" for i in range(7)]
    assert len(seen) == requests
    assert all(q["limit"] == str(page_size) and q["labelSelector"] == "a=b" for q in seen)
    assert [q.get("continue") for q in seen] == [None, *(f"token-{n}" for n in range(page_size, 7, page_size))]
