"""The server's common behaviour: health, the OpenAPI document, the error shape, body bound."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from aiohttp import web

from trustwire.server.app import MAX_BODY_BYTES
from trustwire.server.context import ServerContext
from trustwire.server.errors import Refusal


def _echo(_: ServerContext) -> list[web.RouteDef]:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        if body == b"refuse":
            raise Refusal(403, "Nope", "refused on purpose")
        if body == b"crash":
            raise RuntimeError("secret-token-value")
        return web.Response(body=body)

    return [web.post("/echo", echo)]


async def test_healthz(http: Any) -> None:
    client = await http()
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.text() == "ok\n"


async def test_openapi_is_served_and_parses(http: Any) -> None:
    client = await http()
    response = await client.get("/openapi.yaml")
    assert response.status == 200
    document = yaml.safe_load(await response.text())
    assert document["openapi"].startswith("3.")
    assert "/healthz" in document["paths"]


@pytest.mark.parametrize(("method", "path", "body", "status", "reason"), [
    ("GET", "/nowhere", b"", 404, "NotFound"),
    ("GET", "/echo", b"", 405, "MethodNotAllowed"),
    ("POST", "/echo", b"refuse", 403, "Nope"),
    ("POST", "/echo", b"crash", 500, "InternalError"),
    ("POST", "/echo", b"x" * (2 * 1024 * 1024), 413, "BodyTooLarge"),
    ("POST", "/echo", b"x" * (MAX_BODY_BYTES + 1), 413, "BodyTooLarge"),
])
async def test_every_refusal_is_json_with_a_reason(http: Any, caplog: pytest.LogCaptureFixture, method: str,
                                                   path: str, body: bytes, status: int, reason: str) -> None:
    client = await http(_echo)
    response = await client.request(method, path, data=body)
    assert response.status == status
    payload = await response.json()
    assert payload["error"]["reason"] == reason
    assert isinstance(payload["error"]["message"], str)
    assert "secret-token-value" not in payload["error"]["message"]


async def test_a_body_within_the_bound_is_read(http: Any) -> None:
    client = await http(_echo)
    response = await client.post("/echo", data=b"y" * MAX_BODY_BYTES)
    assert response.status == 200
    assert len(await response.read()) == MAX_BODY_BYTES


async def test_the_request_log_names_no_query_or_header(http: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = await http(_echo)
    caplog.set_level("INFO", logger="trustwire.server")
    await client.post("/echo?token=querysecret", data=b"bodysecret", headers={"Authorization": "Bearer hdrsecret"})
    text = caplog.text
    assert "POST /echo 200" in text
    for secret in ("querysecret", "bodysecret", "hdrsecret"):
        assert secret not in text
