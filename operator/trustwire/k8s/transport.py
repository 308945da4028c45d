"""HTTP/1.1 to the API server: a small pool of keep-alive connections, parsed by httptools.

Why not aiohttp's client: the operator sends one short JSON request after another
(~25,000 until Ready at 1,000 identities), and
aiohttp's general-purpose machinery around each of them — URL objects, cookie jar, header
multidicts, tracing hooks, stream readers, response objects — cost the operator ~0.1 ms of
CPU per request, twice what the request itself costs (``benchmarks/api_requests.py``, and
the CPU finding in ``docs/benchmarks.md``). The API server needs none of it: one host, no
cookies, no redirects, no compression (we never ask for it), bodies that fit in memory.

What is ours here is only the plumbing. The bytes are parsed by httptools (llhttp, the
parser of Node.js): status line, headers, ``Content-Length`` and chunked bodies, and
whether the server keeps the connection open. TLS is Python's ``ssl``.

Rules that make a pooled connection safe to reuse:

* a connection goes back to the pool only after a complete response that the server
  did not mark ``Connection: close``; anything else — a timeout, a cancelled caller, a
  parse error, a lost connection — closes it, so a late answer can never be read as the
  answer to the next request;
* a request on a connection taken from the pool that is closed before one byte of the
  answer arrived (the server dropped an idle keep-alive connection as we sent) is sent
  once more on a new connection; every other failure is the caller's to retry.

Through an HTTP proxy (kubeconfig ``proxy-url``), every connection is a ``CONNECT``
tunnel to the API server, and TLS runs end to end inside it: the proxy sees neither the
requests nor the credentials.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import socket
import ssl
from collections.abc import AsyncIterator
from urllib.parse import unquote, urlsplit

import httptools


class TransportError(Exception):
    """No complete HTTP response: connection refused or lost, timeout, unparseable answer."""


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  #: names lower-cased; a repeated header keeps its last value
    body: bytes


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; one request at a time.

    An answer is either delivered whole (:meth:`exchange`) or, for a watch, as its status
    and headers first and then its body as it arrives (``stream=True``, :meth:`chunks`).
    """

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._answer: asyncio.Future[Response] | None = None
        self._stream: asyncio.Queue[bytes | TransportError | None] | None = None
        self._streaming = False  #: the head was delivered; the body goes to ``_stream``
        self._busy = False  #: a request was sent and its answer is not complete
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._received = False  #: a byte of the current answer arrived
        self._headers_done = False
        self._keep_alive = False
        self.reused = False

    # ---- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if not self._busy:
            self.close()  # bytes nobody asked for (say, a 408 on an idle connection): not reusable
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(TransportError(f"unparseable answer: {exc}"))  # llhttp says what, never echoes bytes
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self._busy:
            return
        if self._headers_done and "content-length" not in self._headers \
                and "chunked" not in self._headers.get("transfer-encoding", ""):
            self.on_message_complete()  # a body delimited by the end of the connection (RFC 9112 §6.3)
        else:
            self._fail(TransportError("connection closed" + (" mid-answer" if self._received else " before an answer")))

    # ---- httptools callbacks -------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._headers_done = True
        if self._stream is not None and 200 <= self._parser.get_status_code() < 300:
            self._streaming = True
            self._deliver()  # the caller reads the body as it comes

    def on_body(self, body: bytes) -> None:
        if self._streaming:
            assert self._stream is not None
            self._stream.put_nowait(body)
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        self._keep_alive = self._parser.should_keep_alive()  # llhttp forgets it once the message is done
        self._busy = False
        if self._streaming:
            assert self._stream is not None
            self._stream.put_nowait(None)
        else:
            self._deliver()

    # ---- use -----------------------------------------------------------------------------
    @property
    def usable(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    @property
    def answered_nothing(self) -> bool:
        return not self._received

    @property
    def keep_alive(self) -> bool:
        return self.usable and self._keep_alive

    async def exchange(self, request: bytes, *, stream: bool = False) -> Response:
        """Send ``request``; the whole answer, or with ``stream`` a 2xx answer's head only."""
        assert self._transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._stream = asyncio.Queue() if stream else None
        self._streaming, self._busy = False, True
        self._headers, self._body, self._received, self._headers_done, self._keep_alive = {}, [], False, False, False
        self._transport.write(request)
        return await self._answer

    async def chunks(self, idle_timeout: float) -> AsyncIterator[bytes]:
        """The body of a streamed answer as it arrives, until it ends (none if not 2xx)."""
        assert self._stream is not None
        while self._streaming:
            try:
                async with asyncio.timeout(idle_timeout):
                    chunk = await self._stream.get()
            except TimeoutError:
                raise TransportError(f"nothing received for {idle_timeout:g} s") from None
            if chunk is None:
                return
            if isinstance(chunk, TransportError):
                raise chunk
            yield chunk

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _deliver(self) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(Response(self._parser.get_status_code(), self._headers,
                                             b"".join(self._body)))

    def _fail(self, error: TransportError) -> None:
        self._busy = False
        if self._streaming:
            assert self._stream is not None
            self._stream.put_nowait(error)
        elif self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)


class Pool:
    """Keep-alive connections to one API server, at most ``limit`` open at once.

    ``server`` is the server URL as in a kubeconfig: ``http(s)://host[:port][/path]``; a path
    prefix (an API server behind a proxy) is kept in front of every request path.
    """

    def __init__(self, server: str, *, ssl_context: ssl.SSLContext | None, headers: dict[str, str],
                 timeout: float, limit: int = 32, server_hostname: str | None = None,
                 proxy: str | None = None) -> None:
        url = urlsplit(server)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"API server URL must be http(s)://host[:port]: {server!r}")
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._prefix = url.path.rstrip("/")
        self._ssl = ssl_context if url.scheme == "https" else None
        #: the name TLS checks the server's certificate against
        self._server_hostname = server_hostname or self._host
        self._proxy = _Proxy.parse(proxy) if proxy else None
        authority = f"[{self._host}]" if ":" in self._host else self._host
        if url.port:
            authority += f":{url.port}"
        self._authority = authority
        self.set_headers(headers)
        self._timeout = timeout
        self._slots = asyncio.Semaphore(limit)
        self._idle: list[_Connection] = []

    def set_headers(self, headers: dict[str, str]) -> None:
        """The headers every request carries from now on (say, a renewed token)."""
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in {"Host": self._authority, **headers}.items())

    async def request(self, method: str, target: str, *, body: bytes | None = None,
                      content_type: str | None = None) -> Response:
        """Send one request (``target``: path and query, already encoded) and read the answer."""
        request = self._encode(method, target, body, content_type)
        try:
            async with self._slots, asyncio.timeout(self._timeout):
                return await self._send(request)
        except TimeoutError:
            raise TransportError(f"timed out after {self._timeout:g} s") from None

    @contextlib.asynccontextmanager
    async def stream(self, target: str, *, idle_timeout: float) -> AsyncIterator[tuple[Response, AsyncIterator[bytes]]]:
        """GET an answer that is read as it arrives (a watch): its head, then its body's chunks.

        On a connection of its own, outside ``limit`` (watches last minutes; they must not
        starve short requests, nor wait for them), closed when the block ends. The head of an
        answer that is not 2xx comes with its whole body, and no chunks.
        """
        request = self._encode("GET", target, None, None)
        try:
            async with asyncio.timeout(self._timeout):
                connection = await self._connect()
        except TimeoutError:
            raise TransportError(f"timed out after {self._timeout:g} s") from None
        try:
            try:
                async with asyncio.timeout(self._timeout):
                    head = await connection.exchange(request, stream=True)
            except TimeoutError:
                raise TransportError(f"timed out after {self._timeout:g} s") from None
            yield head, connection.chunks(idle_timeout)
        finally:
            connection.close()

    def _encode(self, method: str, target: str, body: bytes | None, content_type: str | None) -> bytes:
        head = f"{method} {self._prefix}{target} HTTP/1.1\r\n{self._fixed}"
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Length: {len(body or b'')}\r\n"
        return (head + "\r\n").encode("latin-1") + (body or b"")

    async def _send(self, request: bytes) -> Response:
        connection = await self._connection()
        try:
            response = await connection.exchange(request)
        except TransportError:
            connection.close()
            if not (connection.reused and connection.answered_nothing):
                raise
            connection = await self._connect()  # the server dropped an idle connection as we sent
            try:
                response = await connection.exchange(request)
            except BaseException:
                connection.close()
                raise
        except BaseException:  # cancelled or timed out mid-answer: the connection's state is unknown
            connection.close()
            raise
        if connection.keep_alive:
            connection.reused = True
            self._idle.append(connection)
        else:
            connection.close()
        return response

    async def _connection(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable:
                return connection
        return await self._connect()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        hostname = self._server_hostname if self._ssl else None
        try:
            if self._proxy is None:
                _, connection = await loop.create_connection(
                    _Connection, self._host, self._port, ssl=self._ssl, server_hostname=hostname)
            else:
                sock = await self._proxy.tunnel(self._host, self._port)
                _, connection = await loop.create_connection(
                    _Connection, sock=sock, ssl=self._ssl, server_hostname=hostname)
        except ssl.SSLError as exc:
            raise TransportError(f"TLS handshake failed: {exc.reason or exc}") from None
        except socket.gaierror:
            raise TransportError(f"cannot resolve host {self._proxy.host if self._proxy else self._host}") from None
        except OSError:
            raise TransportError("connection refused or host unreachable"
                                 + (" (the proxy)" if self._proxy else "")) from None
        return connection

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


@dataclasses.dataclass(frozen=True)
class _Proxy:
    """An HTTP proxy that opens ``CONNECT`` tunnels."""

    host: str
    port: int
    authorization: str | None

    @classmethod
    def parse(cls, url: str) -> _Proxy:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"proxy URL must be http://host[:port]: {parts.scheme}://{parts.hostname or ''}")
        authorization = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            authorization = "Basic " + base64.b64encode(pair).decode()
        return cls(parts.hostname, parts.port or 80, authorization)

    async def tunnel(self, host: str, port: int) -> socket.socket:
        """A connected socket through the proxy to ``host:port``, not yet speaking TLS."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
            authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            head = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
            if self.authorization:
                head += f"Proxy-Authorization: {self.authorization}\r\n"
            await loop.sock_sendall(sock, (head + "\r\n").encode("latin-1"))
            status = await _connect_answer(loop, sock)
        except BaseException:
            sock.close()
            raise
        if status != 200:
            sock.close()
            raise TransportError(f"the proxy refused the tunnel to {authority} (HTTP {status})")
        return sock


async def _connect_answer(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> int:
    """The status of a proxy's answer to ``CONNECT``, read up to the end of its head and no
    further: what follows is the server's."""
    received = b""
    while b"\r\n\r\n" not in received:
        if len(received) > 16384:
            raise TransportError("the proxy's answer to CONNECT has no end")
        byte = await loop.sock_recv(sock, 1)  # one at a time: never read past the head
        if not byte:
            raise TransportError("the proxy closed the connection before answering CONNECT")
        received += byte
    status_line = received.split(b"\r\n", 1)[0].split()
    try:
        return int(status_line[1])
    except (IndexError, ValueError):
        raise TransportError("the proxy's answer to CONNECT is not HTTP") from None
