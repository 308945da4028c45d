"""The application: the features' routes behind one set of middleware.

Middleware, outermost first: the request log (method, path, status, time — never a query
string, header or body, which may carry a token or a CSR) and the error shape
``{"error": {"reason": ..., "message": ...}}`` for every 4xx and 5xx. Bodies are bounded by
aiohttp's ``client_max_size``, which answers 413 before a handler reads past the bound.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from importlib import resources

from aiohttp import web

from trustwire.server import discovery, enrollment
from trustwire.server.context import ServerContext
from trustwire.server.errors import STATUS_REASONS, Refusal, ServerReason

log = logging.getLogger("trustwire.server")

#: The largest request body accepted: a CSR with a 16 kbit RSA key is far below it.
MAX_BODY_BYTES = 64 * 1024

Feature = Callable[[ServerContext], list[web.RouteDef]]
#: Each feature contributes its routes; adding one is one entry here.
FEATURES: tuple[Feature, ...] = (enrollment.routes, discovery.routes)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, reason: str, message: str) -> web.Response:
    return web.json_response({"error": {"reason": reason, "message": message}}, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Refusal as refusal:
        return error_response(refusal.status, refusal.reason, refusal.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = STATUS_REASONS.get(exc.status, ServerReason.BAD_REQUEST)
        return error_response(exc.status, reason, exc.reason)
    except Exception:
        # the traceback names no request data; the client learns only that it failed
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, ServerReason.INTERNAL, "internal error")


@web.middleware
async def request_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.monotonic()
    response = await handler(request)
    log.info("%s %s %d %.1fms", request.method, request.path, response.status,
             (time.monotonic() - started) * 1000)
    return response


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def openapi(_: web.Request) -> web.Response:
    text = resources.files("trustwire.server").joinpath("openapi.yaml").read_text()
    return web.Response(text=text, content_type="application/yaml")


def build_app(ctx: ServerContext, features: tuple[Feature, ...] = FEATURES) -> web.Application:
    app = web.Application(middlewares=[request_log, errors], client_max_size=MAX_BODY_BYTES)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/openapi.yaml", openapi)
    for feature in features:
        app.router.add_routes(feature(ctx))
    return app
