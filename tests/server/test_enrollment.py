"""The enrollment endpoints' refusals that need no API server, the rate bound, and the OpenAPI paths."""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustwire.plan.enrollment import make_token
from trustwire.server import enrollment
from trustwire.server.context import ServerContext

UNSERVED = make_token("elsewhere", "erp", b"\x07" * 32)


def _served_only(context: ServerContext) -> ServerContext:
    return dataclasses.replace(context, namespaces=("served",))


async def _error(response: Any) -> tuple[int, str]:
    body = await response.json()
    return response.status, body["error"]["reason"]


async def test_token_refusals(http: Any, context: ServerContext) -> None:
    client = await http(lambda _: enrollment.routes(_served_only(context)))
    cases = [({}, "TokenMissing"), ({"Authorization": "Basic abc"}, "TokenMissing"),
             ({"Authorization": "Bearer not-a-token"}, "TokenInvalid"),
             ({"Authorization": f"Bearer {UNSERVED}"}, "TokenInvalid"),
             ({"Authorization": "Bearer " + "tw1." * 400}, "TokenInvalid")]
    for headers, reason in cases:
        assert await _error(await client.get("/v1/info", headers=headers)) == (401, reason), headers
        assert await _error(await client.post("/v1/certificates", headers=headers, json={"csr": "x"})) == \
            (401, reason), headers


async def test_mtls_endpoints_require_a_client_certificate(http: Any, context: ServerContext) -> None:
    client = await http(lambda _: enrollment.routes(context))
    assert await _error(await client.get("/v1/management/info")) == (401, "ClientCertificateRequired")
    assert await _error(await client.post("/v1/renewals", json={"csr": "x"})) == (401, "ClientCertificateRequired")


async def test_a_client_past_the_rate_bound_is_refused(http: Any, context: ServerContext) -> None:
    bound = enrollment.RateBound(limit=3, window=60.0, clock=lambda: 0.0)
    client = await http(lambda _: enrollment.routes(context, bound))
    statuses = [(await client.get("/v1/info")).status for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert await _error(await client.get("/v1/info")) == (429, "RateLimited")


def test_the_rate_bound_slides() -> None:
    now = [0.0]
    bound = enrollment.RateBound(limit=2, window=10.0, clock=lambda: now[0])
    assert [bound.admit("a"), bound.admit("a"), bound.admit("a"), bound.admit("b")] == [True, True, False, True]
    now[0] = 10.5
    assert bound.admit("a")


async def test_every_route_is_in_the_openapi_document(http: Any, context: ServerContext) -> None:
    client = await http()
    document = yaml.safe_load(await (await client.get("/openapi.yaml")).text())
    for route in enrollment.routes(context):
        assert route.method.lower() in document["paths"][route.path], route.path


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=200),
       body=st.binary(max_size=2000))
async def test_fuzzed_requests_are_refused_as_json_never_crash(http: Any, context: ServerContext, header: str,
                                                               body: bytes) -> None:
    client = await http(lambda _: enrollment.routes(_served_only(context), enrollment.RateBound(limit=10**9)))
    for path in ("/v1/certificates", "/v1/renewals"):
        response = await client.post(path, headers={"Authorization": header}, data=body)
        status, reason = await _error(response)
        assert 400 <= status < 500 and reason, (status, reason)
