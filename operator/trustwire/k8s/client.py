"""The only code that talks to the Kubernetes API server.

A deliberately small asynchronous JSON client rather than the generated ``kubernetes``
client: the operator needs a handful of verbs on a handful of resources, must stay
responsive on one event loop next to its own watch streams, and must say exactly which
patch format it sends — a strategic-merge patch and a JSON merge patch mean different
things for lists, so every write names its content type explicitly. The HTTP underneath
is :mod:`trustwire.k8s.transport` (keep-alive connections, httptools' parser), because a
general-purpose HTTP client cost more CPU per request than the request itself.

Adapters follow the Gafaelfawr convention: a 404 on read becomes ``None``, a 404 on delete
``False``; every other failure is an :class:`~trustwire.k8s.errors.ApiError` whose message carries the API's
reason, never the request body (which may hold key material). Writes name field manager
``trustwire`` so GitOps tools can ignore exactly our fields.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

from trustwire.k8s.config import ApiConfig, load_config
from trustwire.k8s.errors import UNREACHABLE, ApiError, api_error, status_error
from trustwire.k8s.resources import Resource
from trustwire.k8s.transport import Pool, TransportError
from trustwire.names import FIELD_MANAGER
from trustwire.times import utcnow

__all__ = ["ApiConfig", "Client", "Page", "load_config"]

USER_AGENT = "trustwire-operator"
#: Objects per LIST page: a large cluster never arrives as one huge response.
LIST_PAGE_SIZE = 500
#: How long the server keeps a watch open before we resume it
WATCH_SECONDS = 300


#: Our verb names (as in RBAC rules) → HTTP methods.
_METHODS = {"get": "GET", "list": "GET", "create": "POST", "patch": "PATCH", "delete": "DELETE"}


class Page(NamedTuple):
    items: list[dict[str, Any]]
    #: of the listing as a whole: where a watch that follows it starts (None: not told)
    resource_version: str | None


class Client:
    """Async JSON client. Counts requests by verb for metrics and benchmarks."""

    def __init__(self, config: ApiConfig, *, timeout: float = 30.0, retries: int = 4,
                 user_agent: str = USER_AGENT, field_manager: str = FIELD_MANAGER) -> None:
        self.config = config
        self.user_agent = user_agent
        #: what every write names as its field manager (``managedFields``)
        self.field_manager = field_manager
        self._timeout = timeout
        self._retries = retries
        self._pool: Pool | None = None
        self._renewing = asyncio.Lock()
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _connections(self) -> Pool:
        if self._pool is None:
            config = self.config
            self._pool = Pool(config.server, ssl_context=config.ssl_context(), headers=self._headers(),
                              timeout=self._timeout, server_hostname=config.tls_server_name,
                              proxy=config.proxy_url)
        return self._pool

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        return headers

    async def _renew(self, stale: ApiConfig) -> bool:
        """Fresh credentials in place of ``stale`` (expired, or refused with 401); whether
        they differ. Concurrent callers share one renewal."""
        async with self._renewing:
            if self.config is not stale:
                return True  # another request renewed them meanwhile
            if stale.renew is None:
                return False
            fresh = await asyncio.to_thread(stale.renew)  # an exec plugin may take a while
            self.config = fresh
            if (fresh.cert_data, fresh.key_data) != (stale.cert_data, stale.key_data) and self._pool is not None:
                pool, self._pool = self._pool, None  # a new client certificate needs new connections
                await pool.close()
            elif self._pool is not None:
                self._pool.set_headers(self._headers())
            return (fresh.token, fresh.cert_data) != (stale.token, stale.cert_data)

    async def _request(self, verb: str, path: str, *, body: Any = None, content_type: str | None = None,
                       params: Mapping[str, str] | None = None, retries: int | None = None) -> Any:
        if self.config.expired(utcnow()):
            await self._renew(self.config)
        data = json.dumps(body).encode() if body is not None else None
        target = _target(path, params)
        retries = self._retries if retries is None else retries
        for attempt in range(retries + 1):
            self.counts[verb] += 1
            sent_with = self.config
            try:
                response = await self._connections().request(_METHODS[verb], target, body=data,
                                                             content_type=content_type)
            except TransportError as exc:
                error = ApiError(503, UNREACHABLE, str(exc), verb=verb, path=path)
                retry_after = None
            else:
                if response.status < 400:
                    return json.loads(response.body) if response.body else None  # JSON is UTF-8: bytes will do
                error = api_error(response.status, response.body, verb, path, sent=body)
                retry_after = response.headers.get("retry-after")
                if error.status == 401 and await self._renew(sent_with) and attempt < retries:
                    continue  # renewed credentials (a rotated token, a new exec credential): at once
            self.errors[str(error.status)] += 1
            # 409 on create means "someone else made it": the caller adopts, no blind retry.
            if not (error.status == 429 or error.status >= 500) or attempt == retries:
                raise error
            delay = float(retry_after) if retry_after and retry_after.isdigit() else 0.2 * 2 ** attempt
            await asyncio.sleep(min(delay, 5.0))
        raise AssertionError("unreachable")

    # ---- adapters -----------------------------------------------------------------------
    async def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self._request("get", resource.path(namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def pages(self, resource: Resource, namespace: str | None = None, *, label_selector: str | None = None,
                    field_selector: str | None = None, page_size: int = LIST_PAGE_SIZE) -> AsyncIterator[Page]:
        """Every object, a page (``limit``/``continue``) at a time, so a large cluster never
        arrives as one huge response; a server that ignores ``limit`` answers in one."""
        params = {"limit": str(page_size)} | ({"labelSelector": label_selector} if label_selector else {}) \
            | ({"fieldSelector": field_selector} if field_selector else {})
        while True:
            result = await self._request("list", resource.path(namespace), params=params) or {}
            meta = result.get("metadata") or {}
            yield Page(list(result.get("items", [])), str(meta["resourceVersion"]) if meta.get("resourceVersion")
                       else None)
            token = meta.get("continue")
            if not token:
                return
            params = {**params, "continue": str(token)}

    async def list(self, resource: Resource, namespace: str | None = None, *, label_selector: str | None = None,
                   field_selector: str | None = None, page_size: int = LIST_PAGE_SIZE) -> list[dict[str, Any]]:
        """Every object (see :meth:`pages`)."""
        return [body async for page in self.pages(resource, namespace, label_selector=label_selector,
                                                  field_selector=field_selector, page_size=page_size)
                for body in page.items]

    async def watch(self, resource: Resource, namespace: str | None = None, *, label_selector: str | None = None,
                    resource_version: str | None = None, timeout_seconds: int = WATCH_SECONDS,
                    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events (``type``, ``object``) after ``resource_version`` until the server ends
        the stream (``timeout_seconds``, or a dropped connection: an :class:`ApiError` 503).

        An ``ERROR`` event is raised as the :class:`ApiError` it carries — 410 Gone: the
        version is too old, list again. ``BOOKMARK`` events (asked for) carry only a newer
        ``resourceVersion``. Not retried here: resuming is the caller's decision.
        """
        path = resource.path(namespace)
        params = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout_seconds)}
        params |= ({"labelSelector": label_selector} if label_selector else {}) \
            | ({"resourceVersion": resource_version} if resource_version else {})
        self.counts["watch"] += 1
        if self.config.expired(utcnow()):
            await self._renew(self.config)
        sent_with, pool = self.config, self._connections()
        try:
            async with pool.stream(_target(path, params), idle_timeout=timeout_seconds + 30) as (head, chunks):
                if head.status >= 400:
                    self.errors[str(head.status)] += 1
                    if head.status == 401:
                        await self._renew(sent_with)  # the caller's next watch sends the new one
                    raise api_error(head.status, head.body, "watch", path)
                pending = b""
                async for chunk in chunks:
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        if event.get("type") == "ERROR":
                            status = event.get("object") or {}
                            raise status_error(int(status.get("code") or 500), status, "watch", path)
                        yield event
        except TransportError as exc:
            self.errors["503"] += 1
            raise ApiError(503, UNREACHABLE, str(exc), verb="watch", path=path) from None
        except ValueError:  # a line that is not JSON
            self.errors["503"] += 1
            raise ApiError(503, "BadWatchEvent", "a watch event that is not JSON", verb="watch", path=path) from None

    async def create(self, resource: Resource, namespace: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(
            "create", resource.path(namespace), body=body, content_type="application/json",
            params={"fieldManager": self.field_manager})
        return result

    async def merge_patch(self, resource: Resource, namespace: str | None, name: str, patch: Mapping[str, Any],
                          *, subresource: str | None = None) -> dict[str, Any] | None:
        """RFC 7386 JSON merge patch: maps merge, lists replace — the same on every server."""
        try:
            result: dict[str, Any] = await self._request(
                "patch", resource.path(namespace, name, subresource), body=patch,
                content_type="application/merge-patch+json", params={"fieldManager": self.field_manager})
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def json_patch(self, resource: Resource, namespace: str | None, name: str,
                         ops: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
        """RFC 6902 JSON patch computed from the observed object (``test`` ops guard indexes).

        Not retried: a failed ``test`` means the object changed since it was read (422 on a
        real server, 500 in the emulator), and only the caller can re-read and recompute.
        """
        try:
            result: dict[str, Any] = await self._request(
                "patch", resource.path(namespace, name), body=list(ops),
                content_type="application/json-patch+json", params={"fieldManager": self.field_manager}, retries=0)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def delete(self, resource: Resource, namespace: str | None, name: str) -> bool:
        try:
            await self._request("delete", resource.path(namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    @property
    def writes(self) -> int:
        return sum(self.counts[v] for v in ("create", "patch", "delete"))


def _target(path: str, params: Mapping[str, str] | None) -> str:
    """A request's path and query, encoded."""
    return quote(path) + (f"?{urlencode(params)}" if params else "")
