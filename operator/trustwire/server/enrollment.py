"""Enrollment of external applications: one-time token and CSR in, certificate out."""

from __future__ import annotations

from aiohttp import web

from trustwire.server.context import ServerContext


def routes(ctx: ServerContext) -> list[web.RouteDef]:
    return []
