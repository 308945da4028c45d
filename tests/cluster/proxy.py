"""A loopback HTTP proxy in front of the real kube-apiserver: it journals and it injects faults.

The operator under test talks to the proxy (plain HTTP on 127.0.0.1); the proxy forwards every
request, headers and bearer token included, to the apiserver over TLS and streams the answer
back, watches included. It records each request in :attr:`ApiProxy.journal` (method, path,
query, User-Agent, JSON body, status), which is how tests count the operator's writes and map
its requests to RBAC rules. A :data:`Fault` hook may answer a request itself (a 5xx or 429 the
real server would not produce on demand), lose or delay the apiserver's answer, or cut a watch
stream after a delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from aiohttp import web

#: Hop-by-hop headers, and those aiohttp computes itself for the re-sent request/answer.
_SKIP_HEADERS = {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer",
                 "upgrade", "proxy-connection", "content-encoding"}


@dataclasses.dataclass
class Recorded:
    """One request as the proxy saw it."""

    method: str
    path: str
    params: dict[str, str]
    user_agent: str
    data: Any
    status: int = 0
    #: the API's Status answer to a refused request (reason, message, details)
    error: dict[str, Any] | None = None
    #: whether the answer is still going out on an open connection (a watch still streaming)
    streaming: Callable[[], bool] = dataclasses.field(default=lambda: False, repr=False, compare=False)

    @property
    def is_watch(self) -> bool:
        return self.params.get("watch", "").lower() in ("1", "true")


@dataclasses.dataclass(frozen=True)
class Fault:
    """What to do instead of forwarding untouched.

    * ``status``: answer at once with this code (``reason``/``message`` in the Status,
      ``Retry-After: retry_after``); the request never reaches the apiserver;
    * ``lost``: forward, then answer 500 whatever the apiserver answered (a write applied
      whose answer was lost); the journal records the apiserver's own status;
    * ``delay``: forward, and hold the apiserver's answer this many seconds;
    * ``cut_after``: forward a watch and cut the connection after this many seconds; with
      ``gone``, end it instead with an ``ERROR`` event carrying a 410 Status (the version
      the watch started from is too old), after the last complete event.
    """

    status: int | None = None
    retry_after: int | None = None
    cut_after: float | None = None
    reason: str = "InjectedFault"
    message: str = "injected by the test proxy"
    lost: bool = False
    delay: float | None = None
    gone: bool = False


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    """A Kubernetes ``Status`` of a failure."""
    return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "code": code,
            "reason": reason, "message": message}


#: Decides, per recorded request, whether it meets a fault (None: forward it untouched).
FaultHook = Callable[[Recorded], Fault | None]


class ApiProxy:
    def __init__(self, upstream: str, ca_file: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._ssl = ssl.create_default_context(cafile=ca_file)
        self.journal: list[Recorded] = []
        self.fault: FaultHook | None = None
        self.url = ""
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> ApiProxy:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10), auto_decompress=False)
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        record = Recorded(request.method, request.path, dict(request.query),
                          request.headers.get("User-Agent", ""), data)
        self.journal.append(record)
        task = request.task
        record.streaming = lambda: not task.done() and request.transport is not None \
            and not request.transport.is_closing()
        fault = self.fault(record) if self.fault is not None else None
        if fault is not None and fault.status is not None:
            record.status = fault.status
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return web.json_response(status_body(fault.status, fault.reason, fault.message),
                                     status=fault.status, headers=headers)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIP_HEADERS}
        # aiohttp would ask for gzip on a client's behalf that did not: the apiserver then
        # compresses large answers, and the client gets an encoding it never accepted.
        async with self._session.request(request.method, self.upstream + request.rel_url.raw_path_qs,
                                         headers=headers, data=body or None, allow_redirects=False,
                                         skip_auto_headers=("Accept-Encoding",)) as upstream:
            record.status = upstream.status
            if fault is not None and fault.lost:
                raw = await upstream.read()
                if upstream.status >= 400:
                    with contextlib.suppress(ValueError):
                        record.error = json.loads(raw)
                return web.json_response(status_body(500, "InternalError", "injected fault: the answer was lost"),
                                         status=500)
            if fault is not None and fault.delay is not None:
                await asyncio.sleep(fault.delay)
            answer = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in _SKIP_HEADERS})
            if upstream.headers.get("Content-Encoding"):
                answer.headers["Content-Encoding"] = upstream.headers["Content-Encoding"]
            await answer.prepare(request)
            if upstream.status >= 400:
                raw = await upstream.read()
                with contextlib.suppress(ValueError):
                    record.error = json.loads(raw)
                await answer.write(raw)
                await answer.write_eof()
                return answer
            if fault is not None and fault.gone:
                await self._relay_until_gone(upstream, answer, fault.cut_after or 0.0)
                return answer
            with contextlib.suppress(ConnectionResetError, aiohttp.ClientError, asyncio.TimeoutError):
                async with asyncio.timeout(fault.cut_after if fault is not None else None):
                    async for chunk in upstream.content.iter_any():
                        await answer.write(chunk)
            if fault is not None and fault.cut_after is not None and request.transport is not None:
                request.transport.close()
                return answer
            with contextlib.suppress(ConnectionResetError):
                await answer.write_eof()
            return answer

    @staticmethod
    async def _relay_until_gone(upstream: aiohttp.ClientResponse, answer: web.StreamResponse, seconds: float,
                                ) -> None:
        """Relay a watch's complete events for ``seconds``, then end it the way the apiserver
        ends a watch whose version was compacted away: an ``ERROR`` event with a 410 Status."""
        pending = b""
        with contextlib.suppress(ConnectionResetError, aiohttp.ClientError, asyncio.TimeoutError):
            async with asyncio.timeout(seconds):
                async for chunk in upstream.content.iter_any():
                    *lines, pending = (pending + chunk).split(b"\n")
                    if lines:
                        await answer.write(b"".join(line + b"\n" for line in lines))
        gone = status_body(410, "Expired", "injected fault: too old resource version")
        with contextlib.suppress(ConnectionResetError):
            await answer.write(json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n")
            await answer.write_eof()

    # ---- reading the journal
    def requests_by(self, *agents: str) -> list[Recorded]:
        return [r for r in self.journal if r.user_agent.startswith(agents)]


@contextlib.asynccontextmanager
async def running_proxy(upstream: str, ca_file: str) -> AsyncIterator[ApiProxy]:
    proxy = await ApiProxy(upstream, ca_file).start()
    try:
        yield proxy
    finally:
        await proxy.stop()
