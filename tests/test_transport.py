"""The HTTP/1.1 pool against real servers on loopback: aiohttp's web server, and raw sockets
for the answers a well-behaved server never gives (garbage, a close instead of an answer).

What must hold for a pooled connection to be safe: one connection serves request after
request; an answer the caller stopped waiting for (timeout, cancellation) is never read as
the answer to the next request; a server that says ``Connection: close`` or drops an idle
connection costs a new connection, not an error.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import HttpServer
from trustwire.k8s.client import ApiConfig, Client
from trustwire.k8s.errors import UNREACHABLE, ApiError
from trustwire.k8s.resources import Resource
from trustwire.k8s.transport import Pool, TransportError

HEADERS = {"Accept": "application/json", "User-Agent": "trustwire-test"}


def client_port(request: web.Request) -> int:
    """The client's source port: one per connection."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    assert peer is not None
    return int(peer[1])


PoolFactory = Callable[..., Pool]


@pytest.fixture
async def pool() -> AsyncIterator[PoolFactory]:
    """``pool(url, timeout=5.0, limit=32)``: a pool closed when the test ends."""
    made: list[Pool] = []

    def make(url: str, *, timeout: float = 5.0, limit: int = 32) -> Pool:
        made.append(Pool(url, ssl_context=None, headers=HEADERS, timeout=timeout, limit=limit))
        return made[-1]

    yield make
    for http in made:
        await http.close()


async def test_one_connection_serves_request_after_request(http_server: HttpServer, pool: PoolFactory) -> None:
    seen: list[tuple[int, str, str, dict[str, str], bytes]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append((client_port(request), request.method, request.path_qs, dict(request.headers),
                     await request.read()))
        return web.json_response({"n": len(seen)})

    url = await http_server([web.route("*", "/api/v1/things", echo)])
    http = pool(url)
    first = await http.request("GET", "/api/v1/things?limit=2")
    second = await http.request("PATCH", "/api/v1/things", body=b'{"a":1}',
                                content_type="application/merge-patch+json")
    third = await http.request("POST", "/api/v1/things", body=b"")
    assert [r.status for r in (first, second, third)] == [200, 200, 200]
    assert [r.body for r in (first, second, third)] == [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}']
    assert first.headers["content-type"] == "application/json; charset=utf-8"
    assert len({port for port, *_ in seen}) == 1, "each request opened a new connection"
    assert [(method, path) for _, method, path, _, _ in seen] == [
        ("GET", "/api/v1/things?limit=2"), ("PATCH", "/api/v1/things"), ("POST", "/api/v1/things")]
    headers = seen[1][3]
    assert headers["Host"] == url.removeprefix("http://")
    assert headers["User-Agent"] == "trustwire-test"
    assert headers["Content-Type"] == "application/merge-patch+json"
    assert headers["Content-Length"] == "7" and seen[1][4] == b'{"a":1}'
    assert seen[2][3]["Content-Length"] == "0"


async def test_a_chunked_answer_is_read_whole_and_the_connection_kept(
        http_server: HttpServer, pool: PoolFactory) -> None:
    ports: list[int] = []

    async def chunked(request: web.Request) -> web.StreamResponse:
        ports.append(client_port(request))
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b'{"items": [', b'"a", ', b'"b"]}'):
            await response.write(part)
            await asyncio.sleep(0.01)
        await response.write_eof()
        return response

    url = await http_server([web.get("/list", chunked)])
    http = pool(url)
    answers = [await http.request("GET", "/list") for _ in range(2)]
    assert [a.body for a in answers] == [b'{"items": ["a", "b"]}'] * 2
    assert answers[0].headers["transfer-encoding"] == "chunked"
    assert len(set(ports)) == 1


@pytest.mark.parametrize(("force_close", "keepalive_timeout", "pause"), [
    (True, 75.0, 0.0),  # every answer says Connection: close
    (False, 0.05, 0.3),  # the server drops each idle connection before the next request comes
])
async def test_a_connection_the_server_ends_is_replaced(http_server: HttpServer, pool: PoolFactory, force_close: bool,
                                                       keepalive_timeout: float, pause: float) -> None:
    ports: list[int] = []

    async def answer(request: web.Request) -> web.Response:
        ports.append(client_port(request))
        response = web.json_response({})
        if force_close:
            response.force_close()
        return response

    url = await http_server([web.get("/", answer)], keepalive_timeout=keepalive_timeout)
    http = pool(url)
    for _ in range(3):
        assert (await http.request("GET", "/")).status == 200
        await asyncio.sleep(pause)
    assert len(set(ports)) == 3


async def test_a_timed_out_answer_is_never_read_as_the_next_one(http_server: HttpServer, pool: PoolFactory) -> None:
    ports: list[int] = []

    async def answer(request: web.Request) -> web.Response:
        ports.append(client_port(request))
        if request.path == "/slow":
            await asyncio.sleep(0.5)
        return web.json_response({"path": request.path})

    url = await http_server([web.get("/slow", answer), web.get("/fast", answer)])
    http = pool(url, timeout=0.2)
    with pytest.raises(TransportError, match=r"^timed out after 0.2 s$"):
        await http.request("GET", "/slow")
    assert (await http.request("GET", "/fast")).body == b'{"path": "/fast"}'
    await asyncio.sleep(0.5)  # the slow answer is sent now, to a closed connection
    assert (await http.request("GET", "/fast")).body == b'{"path": "/fast"}'
    assert ports[0] != ports[1], "the timed-out connection was reused"


async def test_a_cancelled_request_leaves_no_answer_behind(http_server: HttpServer, pool: PoolFactory) -> None:
    async def answer(request: web.Request) -> web.Response:
        if request.path == "/slow":
            await asyncio.sleep(0.2)
        return web.json_response({"path": request.path})

    url = await http_server([web.get("/slow", answer), web.get("/fast", answer)])
    http = pool(url)
    slow = asyncio.create_task(http.request("GET", "/slow"))
    await asyncio.sleep(0.05)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert (await http.request("GET", "/fast")).body == b'{"path": "/fast"}'  # the slow one is due first
    await asyncio.sleep(0.3)
    assert (await http.request("GET", "/fast")).body == b'{"path": "/fast"}'


async def test_at_most_limit_connections_at_once(http_server: HttpServer, pool: PoolFactory) -> None:
    in_flight, peak, ports = 0, 0, set()

    async def slow(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        ports.add(client_port(request))
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return web.json_response({"path": request.path})

    url = await http_server([web.get("/{n}", slow)])
    http = pool(url, limit=3)
    answers = await asyncio.gather(*(http.request("GET", f"/{n}") for n in range(20)))
    assert [a.body for a in answers] == [f'{{"path": "/{n}"}}'.encode() for n in range(20)]
    assert peak == 3 and len(ports) == 3


async def test_a_path_prefix_in_the_server_url_is_kept(http_server: HttpServer, pool: PoolFactory) -> None:
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        return web.json_response({})

    url = await http_server([web.get("/k8s/clusters/c-1/api/v1/secrets", record)])
    http = pool(url + "/k8s/clusters/c-1/")
    assert (await http.request("GET", "/api/v1/secrets?labelSelector=a%3Db")).status == 200
    assert seen == ["/k8s/clusters/c-1/api/v1/secrets?labelSelector=a%3Db"]


@pytest.mark.parametrize("server", ["localhost:6443", "ftp://host", "https://", "/just/a/path"])
def test_a_server_url_that_is_not_http_is_refused(server: str) -> None:
    with pytest.raises(ValueError, match=r"must be http\(s\)://host\[:port\]"):
        Pool(server, ssl_context=None, headers={}, timeout=1.0)


# ---- servers that misbehave: raw sockets --------------------------------------------------

RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
RawServer = Callable[[RawHandler], Awaitable[tuple[str, list[int]]]]


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServer]:
    """A TCP server whose handler gets each connection and its number (0, 1, …)."""
    servers: list[asyncio.Server] = []

    async def start(handler: RawHandler) -> tuple[str, list[int]]:
        connections: list[int] = []

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(len(connections))
            try:
                await handler(reader, writer, connections[-1])
            finally:
                writer.close()

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", connections

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


async def test_a_body_ended_by_closing_the_connection(raw_server: RawServer, pool: PoolFactory) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"whole": "body"}')
        await writer.drain()

    url, connections = await raw_server(handler)
    http = pool(url)
    first = await http.request("GET", "/")
    second = await http.request("GET", "/")
    assert first.status == second.status == 200
    assert first.body == second.body == b'{"whole": "body"}'
    assert len(connections) == 2


async def test_a_reused_connection_closed_unanswered_is_retried_once_on_a_new_one(
        raw_server: RawServer, pool: PoolFactory) -> None:
    """The server answers the first request on each connection and drops the second unanswered."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # the next request: closed without an answer

    url, connections = await raw_server(handler)
    http = pool(url)
    assert (await http.request("GET", "/")).body == b"{}"
    assert (await http.request("GET", "/")).body == b"{}"
    assert len(connections) == 2


async def test_a_new_connection_closed_unanswered_is_an_error(
        raw_server: RawServer, pool: PoolFactory) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await reader.readuntil(b"\r\n\r\n")

    url, connections = await raw_server(handler)
    http = pool(url)
    with pytest.raises(TransportError, match=r"^connection closed before an answer$"):
        await http.request("GET", "/")
    assert len(connections) == 1, "a request on a fresh connection was sent twice"


@pytest.mark.parametrize(("answer", "error"), [
    (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", r"^unparseable answer: Expected HTTP/"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", r"^connection closed mid-answer$"),
])
async def test_an_answer_that_is_not_http_is_an_error(
        raw_server: RawServer, answer: bytes, error: str, pool: PoolFactory) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()

    url, _ = await raw_server(handler)
    http = pool(url)
    with pytest.raises(TransportError, match=error):
        await http.request("GET", "/")


async def test_nobody_listening(pool: PoolFactory) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    http = pool(f"http://127.0.0.1:{port}")
    with pytest.raises(TransportError, match=r"^connection refused or host unreachable$"):
        await http.request("GET", "/")


# ---- TLS, through the client as the operator configures it ----------------------------------

@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl."""
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"),
            "-subj", "/CN=test API CA", "-days", "2")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", "-new", *ec, "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"),
                "-subj", f"/CN=test {name}")
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.crt"),
                "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
                "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.crt"))
    return {p.name: p for p in d.iterdir()}


SECRETS = Resource("", "v1", "secrets", "Secret")


async def test_tls_with_a_client_certificate(http_server: HttpServer, tls_files: dict[str, Path]) -> None:
    subjects: list[str] = []

    async def get(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subjects.append(dict(item[0] for item in peer["subject"])["commonName"] if peer else "")
        return web.json_response({"metadata": {"name": request.match_info["name"]}})

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tls_files["ca.crt"])
    context.load_cert_chain(tls_files["server.crt"], tls_files["server.key"])
    context.verify_mode = ssl.CERT_REQUIRED
    url = await http_server([web.get("/api/v1/namespaces/ns/secrets/{name}", get)], ssl_context=context)

    trusted = ApiConfig(server=url, ca_data=tls_files["ca.crt"].read_bytes(),
                        cert_data=tls_files["client.crt"].read_bytes(), key_data=tls_files["client.key"].read_bytes())
    async with Client(trusted) as client:
        assert await client.get(SECRETS, "ns", "a") == {"metadata": {"name": "a"}}
        assert await client.get(SECRETS, "ns", "b") == {"metadata": {"name": "b"}}
    assert subjects == ["test client", "test client"]

    untrusted = ApiConfig(server=url, cert_data=trusted.cert_data, key_data=trusted.key_data)
    async with Client(untrusted, retries=0) as client:
        with pytest.raises(ApiError) as caught:
            await client.get(SECRETS, "ns", "a")
    assert (caught.value.status, caught.value.reason) == (503, UNREACHABLE)
    assert caught.value.api_message.startswith("TLS handshake failed: CERTIFICATE_VERIFY_FAILED")


# ---- streamed answers (watches) -------------------------------------------------------------

async def test_a_streamed_answer_arrives_as_it_is_sent(http_server: HttpServer, pool: PoolFactory) -> None:
    """The first line is in the caller's hands while the server still holds the second."""
    first_read = asyncio.Event()

    async def watch(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"n": 1}\n')
        await asyncio.wait_for(first_read.wait(), 5.0)
        await response.write(b'{"n": 2}\n')
        await response.write_eof()
        return response

    url = await http_server([web.get("/watch", watch)])
    http = pool(url)
    received: list[bytes] = []
    try:
        async with http.stream("/watch", idle_timeout=5.0) as (head, chunks):
            assert head.status == 200 and head.body == b""
            async for chunk in chunks:
                received.append(chunk)
                first_read.set()
    finally:
        await http.close()
    assert b"".join(received) == b'{"n": 1}\n{"n": 2}\n'
    assert received[0] == b'{"n": 1}\n'


async def test_a_refused_stream_comes_whole_without_chunks(http_server: HttpServer, pool: PoolFactory) -> None:
    async def forbidden(request: web.Request) -> web.Response:
        return web.json_response({"kind": "Status", "code": 403}, status=403)

    url = await http_server([web.get("/watch", forbidden)])
    http = pool(url)
    async with http.stream("/watch", idle_timeout=5.0) as (head, chunks):
        assert (head.status, head.body) == (403, b'{"kind": "Status", "code": 403}')
        assert [c async for c in chunks] == []


async def test_a_silent_stream_times_out_and_one_cut_short_is_an_error(
        http_server: HttpServer, pool: PoolFactory) -> None:
    async def silent(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"{}\n")
        if request.path == "/cut":
            await asyncio.sleep(0.05)  # the head and the first line are on their way first
            assert request.transport is not None
            request.transport.close()  # mid-body: no terminating chunk
        await asyncio.sleep(5)
        return response

    url = await http_server([web.get("/silent", silent), web.get("/cut", silent)])
    http = pool(url)
    for path, error in (("/silent", r"^nothing received for 0.2 s$"), ("/cut", r"^connection closed mid-answer$")):
        async with http.stream(path, idle_timeout=0.2) as (_, chunks):
            with pytest.raises(TransportError, match=error):
                async for chunk in chunks:
                    assert chunk == b"{}\n"


async def test_an_open_stream_takes_no_slot_from_requests(http_server: HttpServer, pool: PoolFactory) -> None:
    async def forever(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await asyncio.sleep(5)
        return response

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({})

    url = await http_server([web.get("/watch", forever), web.get("/ok", ok)])
    http = pool(url, limit=1, timeout=1.0)
    async with http.stream("/watch", idle_timeout=5.0), http.stream("/watch", idle_timeout=5.0):
        assert (await http.request("GET", "/ok")).status == 200
