"""The API client against real HTTP servers on loopback that paginate and stream watches as
kube-apiserver does."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import HttpServer
from trustwire.k8s import client as client_module
from trustwire.k8s.client import ApiConfig, Client, load_config
from trustwire.k8s.errors import ApiError
from trustwire.k8s.resources import SECRETS


@pytest.fixture
async def paginating(http_server: HttpServer) -> tuple[str, list[dict[str, str]]]:
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

    return await http_server([web.get("/api/v1/namespaces/ns/secrets", list_secrets)]), seen


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


async def test_each_page_says_where_a_watch_after_the_listing_starts(
        paginating: tuple[str, list[dict[str, str]]]) -> None:
    url, _ = paginating
    async with Client(ApiConfig(server=url)) as client:
        pages = [page async for page in client.pages(SECRETS, "ns", page_size=3)]
    assert [(len(p.items), p.resource_version) for p in pages] == [(3, "1"), (3, "1"), (1, "1")]


async def test_watch_yields_events_split_anyhow_and_raises_the_error_event(http_server: HttpServer) -> None:
    """kube-apiserver's watch: one JSON event per line, over chunks cut wherever the network
    cuts them; an ERROR event (here 410 Gone) ends the watch as an ApiError."""
    seen: list[dict[str, str]] = []
    parts = [b'{"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "11"}}}\n{"ty',
             b'pe": "MODIFIED", "object": {"metadata": {"name": "a", "resourceVersion": "12"}}}\n\n',
             b'{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}}\n',
             b'{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", '
             b'"message": "too old resource version: 10 (15)"}}\n']

    async def watch(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.query))
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in parts:
            await response.write(part)
            await asyncio.sleep(0.01)
        await response.write_eof()
        return response

    url = await http_server([web.get("/api/v1/namespaces/ns/secrets", watch)])
    events: list[dict[str, Any]] = []
    async with Client(ApiConfig(server=url)) as client:
        with pytest.raises(ApiError) as caught:
            async for event in client.watch(SECRETS, "ns", label_selector="a=b", resource_version="10",
                                            timeout_seconds=60):
                events.append(event)
        assert client.counts["watch"] == 1
    assert [(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in events] == [
        ("ADDED", "11"), ("MODIFIED", "12"), ("BOOKMARK", "15")]
    assert (caught.value.status, caught.value.reason, caught.value.verb) == (410, "Expired", "watch")
    assert seen == [{"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": "60",
                     "labelSelector": "a=b", "resourceVersion": "10"}]


@pytest.mark.parametrize(("status", "body", "expected"), [
    (403, {"kind": "Status", "reason": "Forbidden", "message": "cannot watch secrets"}, (403, "Forbidden")),
    (200, None, (503, "BadWatchEvent")),
])
async def test_a_watch_that_cannot_start_or_sends_garbage_is_an_api_error(
        http_server: HttpServer, status: int, body: dict[str, str] | None, expected: tuple[int, str]) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        if body is not None:
            return web.json_response(body, status=status)
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"<html>not a watch</html>\n")
        return response

    url = await http_server([web.get("/api/v1/namespaces/ns/secrets", answer)])
    async with Client(ApiConfig(server=url)) as client:
        with pytest.raises(ApiError) as caught:
            async for _ in client.watch(SECRETS, "ns"):
                pass
    assert (caught.value.status, caught.value.reason) == expected


async def test_a_rotated_service_account_token_is_read_again_after_a_401(
        http_server: HttpServer, tmp_path: Path) -> None:
    """The kubelet rotates a pod's token file; the API answers 401 to the old token. The
    client reads the file again and retries at once with the new token — and only then:
    an unchanged file means the 401 is the answer."""
    valid = {"new-token"}
    seen: list[str] = []

    async def get(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in valid:
            return web.json_response({"kind": "Status", "code": 401, "reason": "Unauthorized"}, status=401)
        return web.json_response({"metadata": {"name": "a"}})

    url = await http_server([web.get("/api/v1/namespaces/ns/secrets/a", get)])
    token_file = tmp_path / "token"
    token_file.write_text("old-token\n")
    async with Client(ApiConfig(server=url, token="old-token", token_file=token_file)) as client:
        with pytest.raises(ApiError) as caught:
            await client.get(SECRETS, "ns", "a")  # still the old token in the file: no retry
        assert caught.value.status == 401 and seen == ["Bearer old-token"]
        token_file.write_text("new-token\n")  # the kubelet's rotation
        assert await client.get(SECRETS, "ns", "a") == {"metadata": {"name": "a"}}
        assert await client.get(SECRETS, "ns", "a") == {"metadata": {"name": "a"}}
    assert seen == ["Bearer old-token", "Bearer old-token", "Bearer new-token", "Bearer new-token"]

    # a request that is never retried (a Lease patch) still leaves the new token for the next
    seen.clear()
    token_file.write_text("old-token\n")
    async with Client(ApiConfig(server=url, token="old-token", token_file=token_file), retries=0) as client:
        token_file.write_text("new-token\n")
        with pytest.raises(ApiError):
            await client.get(SECRETS, "ns", "a")
        assert await client.get(SECRETS, "ns", "a") == {"metadata": {"name": "a"}}
    assert seen == ["Bearer old-token", "Bearer new-token"]


@pytest.mark.parametrize(("host", "server"), [("10.96.0.1", "https://10.96.0.1:443"),
                                              ("fd00::1", "https://[fd00::1]:443")])
def test_in_cluster_config_reads_the_service_account_and_remembers_its_token_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, server: str) -> None:
    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "ca.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "namespace").write_text("trustwire-system")
    monkeypatch.setattr(client_module, "SA_DIR", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    config = load_config()
    assert (config.server, config.token, config.default_namespace) == (server, "sa-token", "trustwire-system")
    assert config.token_file == tmp_path / "token" and config.ca_data == b"-----BEGIN CERTIFICATE-----\n"
    (tmp_path / "token").write_text("rotated\n")
    assert config.current_token() == "rotated"
    (tmp_path / "token").unlink()
    assert config.current_token() == "sa-token", "an unreadable file falls back to the token read at start"
