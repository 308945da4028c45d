"""A loopback HTTP proxy in front of the real kube-apiserver: it journals and it injects faults.

The operator under test talks to the proxy (plain HTTP on 127.0.0.1); the proxy forwards every
request, headers and bearer token included, to the apiserver over TLS and streams the answer
back, watches included. It records each request in :attr:`ApiProxy.journal` (method, path,
query, User-Agent, JSON body, status), which is how tests count the operator's writes and map
its requests to RBAC rules. A :data:`Fault` hook may answer a request itself (a 5xx or 429 the
real server would not produce on demand) or cut a watch stream after a delay.
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

    @property
    def is_watch(self) -> bool:
        return self.params.get("watch", "").lower() in ("1", "true")


@dataclasses.dataclass(frozen=True)
class Fault:
    """What to do instead of forwarding: answer ``status`` at once, or forward a watch and
    cut it after ``cut_after`` seconds."""

    status: int | None = None
    retry_after: int | None = None
    cut_after: float | None = None


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
        fault = self.fault(record) if self.fault is not None else None
        if fault is not None and fault.status is not None:
            record.status = fault.status
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return web.json_response({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                                      "code": fault.status, "reason": "InjectedFault",
                                      "message": "injected by the test proxy"},
                                     status=fault.status, headers=headers)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIP_HEADERS}
        async with self._session.request(request.method, self.upstream + request.rel_url.raw_path_qs,
                                         headers=headers, data=body or None, allow_redirects=False) as upstream:
            record.status = upstream.status
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
