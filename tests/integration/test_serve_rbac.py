"""Issue 16: the chart's `trustwire serve` roles on the real control plane.

The chart's serve ServiceAccount and roles (``serve.enabled``, in both RBAC modes) are installed as
rendered, and every request the server makes is made with that ServiceAccount's token: the
Enrollment by name, its status (a conditional merge patch, as a token is consumed), the
identity, its enrollment CA Secret by name, Events, and the server's own TLS Secret. The real
RBAC authorizer allows exactly those and refuses what a least-privilege server must not do:
list or write Secrets, write an Enrollment's spec, delete one; in namespaced
mode also read anything outside the served namespaces but its TLS Secret.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.chart.render import NAMESPACE as RELEASE_NAMESPACE
from tests.cluster.controlplane import ControlPlane
from tests.cluster.fixtures import render_chart
from tests.integration.harness import NAMESPACES, enrollment, identity, until
from tests.integration.test_rbac_use import RBAC_KINDS
from trustwire import names
from trustwire.k8s.client import ApiConfig, Client
from trustwire.k8s.errors import ApiError
from trustwire.k8s.resources import ENROLLMENTS, EVENTS, IDENTITIES, SECRETS
from trustwire.server.run import material_from_secret

pytestmark = pytest.mark.integration

TLS_SECRET = "serve-tls"


def _secret(name: str, namespace: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "type": "kubernetes.io/tls" if "tls.crt" in data else "Opaque", "stringData": data}


@contextlib.asynccontextmanager
async def serve_access(plane: ControlPlane, admin: Client, rbac: dict[str, Any]) -> AsyncIterator[Client]:
    """A client with the token of the chart's serve ServiceAccount, its roles installed as rendered."""
    # a release name of its own: the enrollment server's tests keep the default release's account
    values = {"fullnameOverride": "trustwire-rbac-probe", "rbac": rbac,
              "serve": {"enabled": True, "tlsSecret": TLS_SECRET}}
    objects = [o for o in render_chart(values)
               if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "serve"
               and o["kind"] in RBAC_KINDS]
    created = []
    try:
        for body in objects:
            await admin.create(RBAC_KINDS[body["kind"]], body["metadata"].get("namespace"), body)
            created.append(body)
        (account,) = [o["metadata"] for o in objects if o["kind"] == "ServiceAccount"]
        token = plane.service_account_token(account["namespace"], account["name"])
        async with Client(ApiConfig(server=plane.server, ca_data=plane.ca.pem, token=token)) as client:
            yield client
    finally:
        for body in reversed(created):
            await admin.delete(RBAC_KINDS[body["kind"]], body["metadata"].get("namespace"), body["metadata"]["name"])


async def _refused(call: Any) -> bool:
    try:
        await call
    except ApiError as exc:
        return exc.status == 403
    return False


@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
async def test_the_server_may_do_what_it_does_and_nothing_more(control_plane: ControlPlane, admin: Client,
                                                              mode: str) -> None:
    tenant, elsewhere = f"serve-rbac-{mode}", f"serve-rbac-{mode}-other"
    rbac = {"mode": mode, "aggregateClusterRoles": False, **({"namespaces": [tenant]} if mode == "namespaced" else {})}
    for namespace in (tenant, RELEASE_NAMESPACE, elsewhere):
        with contextlib.suppress(ApiError):
            await admin.create(NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": namespace}})
    await admin.create(IDENTITIES, tenant, identity("erp-gw", tenant))
    await admin.create(ENROLLMENTS, tenant, enrollment("erp", tenant, "erp-gw"))
    ca_secret = names.enrollment_ca_secret("erp-gw")
    await admin.create(SECRETS, tenant, _secret(ca_secret, tenant, **{"ca.crt": "x"}))
    await admin.create(SECRETS, RELEASE_NAMESPACE, _secret(TLS_SECRET, RELEASE_NAMESPACE,
                                                           **{"tls.crt": "c", "tls.key": "k"}))
    await admin.create(SECRETS, RELEASE_NAMESPACE, _secret("operator-things", RELEASE_NAMESPACE, key="v"))
    try:
        async with serve_access(control_plane, admin, rbac) as serve:
            # the authorizer learns of new bindings from its informers, a moment later
            read = await until(lambda: _readable(serve, tenant), "the serve roles to be in force", timeout=30)
            version = read["metadata"]["resourceVersion"]
            written = await serve.merge_patch(ENROLLMENTS, tenant, "erp", {
                "metadata": {"resourceVersion": version}, "status": {"phase": "TokenIssued"}}, subresource="status")
            assert written is not None and written["status"]["phase"] == "TokenIssued"
            stale = serve.merge_patch(ENROLLMENTS, tenant, "erp", {
                "metadata": {"resourceVersion": version}, "status": {"phase": "Enrolled"}}, subresource="status")
            with pytest.raises(ApiError) as lost:
                await stale
            assert lost.value.status == 409  # the precondition a racing replica loses on
            assert await serve.get(IDENTITIES, tenant, "erp-gw") is not None
            assert await serve.get(SECRETS, tenant, ca_secret) is not None
            await serve.create(EVENTS, tenant, {
                "apiVersion": "v1", "kind": "Event", "metadata": {"name": "erp.serve-rbac", "namespace": tenant},
                "involvedObject": {"apiVersion": "trustwire.io/v1alpha1", "kind": "Enrollment", "name": "erp",
                                   "namespace": tenant},
                "reason": "Enrolled", "message": "test", "type": "Normal"})
            tls = await material_from_secret(serve, RELEASE_NAMESPACE, TLS_SECRET)
            assert tls.private_key == b"k"

            assert await _refused(serve.list(SECRETS, tenant))
            assert await _refused(serve.list(SECRETS, None))
            assert await _refused(serve.list(IDENTITIES, tenant))
            assert await _refused(serve.create(SECRETS, tenant, _secret("planted", tenant, key="v")))
            assert await _refused(serve.merge_patch(SECRETS, tenant, ca_secret, {"data": {}}))
            assert [e["metadata"]["name"] for e in await serve.list(ENROLLMENTS, tenant)] == ["erp"]
            assert await _refused(serve.merge_patch(ENROLLMENTS, tenant, "erp", {"spec": {"revoked": True}}))
            assert await _refused(serve.delete(ENROLLMENTS, tenant, "erp"))
            assert await _refused(serve.merge_patch(IDENTITIES, tenant, "erp-gw", {"spec": {}}, subresource="status"))
            assert (await admin.get(ENROLLMENTS, tenant, "erp") or {})["spec"].get("revoked") is not True
            if mode == "namespaced":  # nothing outside the served namespaces but the TLS Secret
                assert await _refused(serve.get(SECRETS, RELEASE_NAMESPACE, "operator-things"))
                assert await _refused(serve.get(ENROLLMENTS, elsewhere, "erp"))
            else:  # by name only: a Secret's name must be known, none can be listed
                assert await serve.get(SECRETS, RELEASE_NAMESPACE, "operator-things") is not None
    finally:
        for namespace in (tenant, elsewhere):
            await admin.delete(NAMESPACES, None, namespace)
        for name in (TLS_SECRET, "operator-things"):
            await admin.delete(SECRETS, RELEASE_NAMESPACE, name)


async def _readable(serve: Client, tenant: str) -> dict[str, Any] | None:
    try:
        return await serve.get(ENROLLMENTS, tenant, "erp")
    except ApiError as exc:
        if exc.status == 403:
            return None
        raise

