"""Discovery routes without an API to read: refusals keep the JSON error shape with a reason."""

from __future__ import annotations

from typing import Any

from trustwire.server import discovery


async def test_a_namespace_not_served_is_refused_without_reading_the_api(http: Any, context: Any) -> None:
    import dataclasses

    del context  # the fixture's server serves every namespace; this one serves only "shop"
    client = await http(lambda ctx: discovery.routes(dataclasses.replace(ctx, namespaces=("shop",))))
    for path in ("/other/dgc/.well-known/openid-configuration", "/other/dgc/jwks.json"):
        response = await client.get(path)
        assert response.status == 404
        assert (await response.json())["error"]["reason"] == "IssuerNotServed"


async def test_an_unreachable_api_is_503(http: Any) -> None:
    client = await http(discovery.routes)
    response = await client.get("/shop/dgc/.well-known/openid-configuration")
    assert response.status == 503
    assert (await response.json())["error"]["reason"] == "Unavailable"
