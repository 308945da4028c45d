"""The API client against real HTTP servers on loopback that paginate and stream watches as
kube-apiserver does."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import HttpServer
from trustwire.k8s import config as config_module
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


def _kubeconfig(tmp_path: Path, server: str, user: dict[str, Any]) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", "namespace": "team"}}]}))
    return str(path)


async def test_a_rotated_token_file_is_read_again_after_a_401(http_server: HttpServer, tmp_path: Path) -> None:
    """A token file is rotated by whoever issued it (the kubelet, for a pod); the API answers
    401 to the old token. The client reads the file again and retries at once with the new
    token — and only then: an unchanged file means the 401 is the answer."""
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
    config = load_config(kubeconfig=_kubeconfig(tmp_path, url, {"tokenFile": str(token_file)}))
    assert (config.token, config.default_namespace) == ("old-token", "team")
    async with Client(config) as client:
        with pytest.raises(ApiError) as caught:
            await client.get(SECRETS, "ns", "a")  # still the old token in the file: no retry
        assert caught.value.status == 401 and seen == ["Bearer old-token"]
        token_file.write_text("new-token\n")  # the rotation
        assert await client.get(SECRETS, "ns", "a") == {"metadata": {"name": "a"}}
        assert await client.get(SECRETS, "ns", "a") == {"metadata": {"name": "a"}}
    assert seen == ["Bearer old-token", "Bearer old-token", "Bearer new-token", "Bearer new-token"]

    # a request that is never retried (a Lease patch) still leaves the new token for the next
    seen.clear()
    token_file.write_text("old-token\n")
    config = load_config(kubeconfig=_kubeconfig(tmp_path, url, {"tokenFile": str(token_file)}))
    async with Client(config, retries=0) as client:
        token_file.write_text("new-token\n")
        with pytest.raises(ApiError):
            await client.get(SECRETS, "ns", "a")
        assert await client.get(SECRETS, "ns", "a") == {"metadata": {"name": "a"}}
    assert seen == ["Bearer old-token", "Bearer new-token"]


_PLUGIN = """
import json, sys, time
from datetime import datetime, timedelta, timezone
from pathlib import Path
issued = Path(sys.argv[1])
lines = issued.read_text().splitlines() if issued.exists() else []
token = f"tok-{len(lines) + 1}"
expiry = datetime.now(timezone.utc) + timedelta(seconds=float(sys.argv[2]))
issued.write_text("\\n".join([*lines, f"{token} {expiry.timestamp()}"]) + "\\n")
json.dump({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
           "status": {"token": token, "expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}}, sys.stdout)
"""


async def test_an_exec_plugin_credential_is_renewed_when_it_expires_and_after_a_401(
        http_server: HttpServer, tmp_path: Path) -> None:
    """An exec credential plugin (EKS, GKE, AKS) issues tokens that expire; the server refuses
    an expired one. The client runs the plugin again once the token's expirationTimestamp
    has passed — before sending, so no request fails — and at once after a 401 (a token
    revoked early)."""
    issued, revoked = tmp_path / "issued", set[str]()
    plugin = tmp_path / "plugin.py"
    plugin.write_text(_PLUGIN)
    seen: list[str] = []

    async def get(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        seen.append(token)
        expiries = dict(line.split() for line in issued.read_text().splitlines())
        if token in revoked or time.time() >= float(expiries.get(token, 0)):
            return web.json_response({"kind": "Status", "code": 401, "reason": "Unauthorized"}, status=401)
        return web.json_response({"metadata": {"name": "a"}})

    url = await http_server([web.get("/api/v1/namespaces/ns/secrets/a", get)])
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                     "args": [str(plugin), str(issued), "2"], "interactiveMode": "Never"}}
    config = load_config(kubeconfig=_kubeconfig(tmp_path, url, user))
    assert config.token == "tok-1" and config.expires is not None
    async with Client(config, retries=1) as client:
        assert await client.get(SECRETS, "ns", "a") is not None
        await asyncio.sleep(max(0.0, config.expires.timestamp() - time.time()) + 0.1)
        assert await client.get(SECRETS, "ns", "a") is not None  # renewed before it was sent
        revoked.add("tok-2")
        assert await client.get(SECRETS, "ns", "a") is not None  # 401, renewed, sent again
    assert seen == ["tok-1", "tok-2", "tok-2", "tok-3"]
    assert len(issued.read_text().splitlines()) == 3, "the plugin runs only when a token has ended"


@pytest.mark.parametrize(("host", "server"), [("10.96.0.1", "https://10.96.0.1:443"),
                                              ("fd00::1", "https://[fd00::1]:443")])
def test_in_cluster_config_reads_the_service_account_and_renews_from_its_token_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, server: str) -> None:
    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "ca.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "namespace").write_text("trustwire-system")
    monkeypatch.setattr(config_module, "SA_DIR", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    config = load_config()
    assert (config.server, config.token, config.default_namespace) == (server, "sa-token", "trustwire-system")
    assert config.ca_data == b"-----BEGIN CERTIFICATE-----\n" and config.renew is not None
    (tmp_path / "token").write_text("rotated\n")
    renewed = config.renew()
    assert (renewed.server, renewed.token) == (server, "rotated") and renewed.renew is not None
    (tmp_path / "token").unlink()
    assert renewed.renew().token == "rotated", "an unreadable file keeps the token last read"


@pytest.mark.parametrize(("server", "env", "expected"), [
    ("https://api.example.test:6443", {"HTTPS_PROXY": "http://proxy:3128"}, "http://proxy:3128"),
    ("https://api.example.test:6443", {"https_proxy": "http://proxy:3128", "NO_PROXY": "example.test"}, None),
    ("https://10.96.0.1:443", {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "10.96.0.1"}, None),
    ("https://127.0.0.1:6443", {"HTTPS_PROXY": "http://proxy:3128"}, None),
    ("https://localhost:6443", {"HTTPS_PROXY": "http://proxy:3128"}, None),
    ("https://[::1]:6443", {"HTTPS_PROXY": "http://proxy:3128"}, None),
    ("http://api.example.test:8080", {"HTTPS_PROXY": "http://proxy:3128"}, None),
    ("https://api.example.test:6443", {}, None),
])
def test_the_environment_proxy_is_chosen_as_kubectl_chooses_it(
        monkeypatch: pytest.MonkeyPatch, server: str, env: dict[str, str], expected: str | None) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert config_module.environment_proxy(server) == expected


@pytest.mark.parametrize("proxy", ["socks5://proxy:1080", "https://proxy:3128"])
def test_a_proxy_that_is_not_http_is_refused_when_the_configuration_is_made(proxy: str) -> None:
    with pytest.raises(ValueError, match="only http:// proxies"):
        ApiConfig(server="https://api.example.test", proxy_url=proxy)
