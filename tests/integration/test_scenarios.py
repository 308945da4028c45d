"""What happens around the operator on a real cluster, which an emulator could never show:
admission policies refusing its writes, the apiserver restarting, watches expiring, CRDs
upgraded under it, a cluster without its CRDs or RBAC yet, and other writers racing it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.controlplane import ControlPlane
from tests.cluster.fixtures import (
    RELEASE_NAMESPACE,
    REPO,
    install_chart,
    install_crds,
    render_chart,
    service_account_of,
)
from tests.cluster.proxy import ApiProxy, Fault, Recorded, running_proxy
from tests.integration.harness import (
    OPERATOR_AGENT,
    Cluster,
    condition,
    denying_policy,
    deployment,
    identity,
    ready_with_peers,
    refused_dry_run,
    relationship,
    until,
)
from trustwire import names, pki
from trustwire.k8s.client import ApiConfig, Client
from trustwire.model import IdentityRef
from trustwire.runtime import OperatorOptions, running_operator

pytestmark = pytest.mark.integration

IDENTITY_WATCH = "/apis/trustwire.io/v1alpha1/serviceidentities"


def _status(body: dict[str, Any] | None) -> dict[str, Any]:
    return dict((body or {}).get("status") or {})


async def _pair(cluster: Cluster, namespace: str, first: str = "alpha", second: str = "beta") -> None:
    await cluster.apply(identity(first, namespace))
    await cluster.apply(identity(second, namespace))
    await cluster.apply(relationship(f"{first}-{second}", namespace, (first, None), (second, None)))


async def _pair_ready(cluster: Cluster, namespace: str, first: str = "alpha", second: str = "beta",
                      timeout: float = 30.0) -> None:
    for name in (first, second):
        await cluster.wait_for("ServiceIdentity", namespace, name, lambda b: ready_with_peers(b, 1),
                               timeout=timeout, what="to be Ready with its peer")
    await cluster.wait_condition("TrustRelationship", namespace, f"{first}-{second}", "Ready", timeout=timeout)


async def _one_ca_each(cluster: Cluster, namespace: str, *identities: str) -> None:
    """Each identity's status, its CA Secret and its peers' trust bundles agree on one CA."""
    cas = {}
    for name in identities:
        ca = await cluster.data("Secret", namespace, names.ca_secret(name))
        (cert,) = pki.load_certificates(ca["tls.crt"])
        body = await cluster.get("ServiceIdentity", namespace, name)
        assert _status(body)["ca"]["fingerprint"] == pki.fingerprint_sha256(cert), name
        cas[name] = pki.fingerprint_sha256(cert)
    for name in identities:
        bundle = (await cluster.data("Secret", namespace, names.trust_secret(name)))["trust-bundle.pem"]
        trusted = {pki.fingerprint_sha256(c) for c in pki.load_certificates(bundle)}
        assert trusted == {fp for other, fp in cas.items() if other != name}, name


# ---- an admission policy refuses the operator's Secrets in one namespace -------------------------
BLOCKED, FREE = "admission", "admission-free"
POLICY_MESSAGE = "the platform team keeps trustwire Secrets out of this namespace"


def _identity_secret_refused(plane: ControlPlane) -> bool:
    return refused_dry_run(plane, "POST", f"/api/v1/namespaces/{BLOCKED}/secrets", {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "probe", "labels": {names.IDENTITY_LABEL: "probe"}}})


async def test_an_admission_policy_refusing_our_secrets_is_reported_and_then_converges(cluster: Cluster) -> None:
    await cluster.ensure_namespace(BLOCKED)
    await cluster.ensure_namespace(FREE)
    async with denying_policy(
            cluster.plane, "no-trustwire-secrets", BLOCKED,
            [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
              "resources": ["secrets"]}],
            f"!has(object.metadata.labels) || !('{names.IDENTITY_LABEL}' in object.metadata.labels)",
            POLICY_MESSAGE, lambda: _identity_secret_refused(cluster.plane)):
        await cluster.apply(identity("alpha", BLOCKED))
        await cluster.apply(identity("alpha", FREE))
        body = await cluster.wait_condition("ServiceIdentity", BLOCKED, "alpha", "Stalled", reason="WriteRejected")
        await cluster.wait_condition("ServiceIdentity", FREE, "alpha", "Ready")

        ready = condition(body, "Ready")
        assert ready is not None and (ready["status"], ready["reason"]) == ("False", "WriteRejected")
        message = ready["message"]
        assert message.startswith(f"Applied: the API server refused CREATE /api/v1/namespaces/{BLOCKED}/secrets: "
                                  "422 Invalid: "), message
        assert "no-trustwire-secrets" in message and POLICY_MESSAGE in message, message
        refused = [r for r in cluster.operator_writes() if r.status == 422 and f"/namespaces/{BLOCKED}/" in r.path]
        assert refused, "the policy refused nothing of the operator's"
        _assert_quotes_nothing_sent(message, refused)
        await cluster.settle()
        warnings = [e for e in await cluster.events(BLOCKED, "alpha") if e["type"] == "Warning"]
        assert [(e["reason"], e["message"]) for e in warnings] == [("WriteRejected", message)]
        assert not [e for e in await cluster.events(FREE, "alpha") if e["type"] == "Warning"]
        assert await cluster.get("Secret", BLOCKED, names.ca_secret("alpha")) is None

    # nothing about the identity changes: its refused pass is retried, at a back-off from 2 s
    await cluster.wait_condition("ServiceIdentity", BLOCKED, "alpha", "Ready", timeout=45.0)
    assert condition(await cluster.get("ServiceIdentity", BLOCKED, "alpha"), "Stalled")["status"] == "False"  # type: ignore[index]


def _assert_quotes_nothing_sent(message: str, refused: list[Recorded]) -> None:
    for request in refused:
        for value in ((request.data or {}).get("data") or {}).values():
            assert value[:16] not in message and base64.b64decode(value)[:16].decode("latin-1") not in message


# ---- the operator starts on a cluster without its CRDs and RBAC ------------------------------------
@pytest.fixture
def second_plane(control_plane: ControlPlane, tmp_path: Path) -> Iterator[ControlPlane]:
    """A control plane of this test's own (about 5 s to start): it begins without the CRDs."""
    with ControlPlane(control_plane.bin, tmp_path / "second") as plane:
        yield plane


def _warnings(caplog: pytest.LogCaptureFixture, *words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "trustwire" and r.levelno >= logging.WARNING
            and all(w in r.getMessage() for w in words)]


async def test_operator_started_before_its_crds_and_rbac_waits_and_then_converges(
        second_plane: ControlPlane, caplog: pytest.LogCaptureFixture) -> None:
    plane = second_plane
    namespace, account = service_account_of(render_chart())
    plane.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": RELEASE_NAMESPACE}})
    plane.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                  {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}})
    token = plane.service_account_token(namespace, account)
    caplog.set_level(logging.INFO, logger="trustwire")
    async with running_proxy(plane.server, str(plane.dir / "ca.crt")) as proxy, \
            running_operator(ApiConfig(server=proxy.url, token=token),
                             OperatorOptions(workers=2, resync_interval=3600.0)) as controller:
        await _until_logged(caplog, "403", "RBAC")  # no ClusterRoleBinding yet
        # the chart without its CRDs (crds.enabled=false: a platform team that installs CRDs apart)
        await asyncio.to_thread(install_chart, plane, {"crds": {"enabled": False}})
        await _until_logged(caplog, "404", "CRDs")  # allowed now, but nothing to list
        await asyncio.to_thread(install_crds, plane)

        async with Client(ApiConfig(server=plane.server, ca_data=plane.ca.pem,
                                    cert_data=(plane.dir / "admin.crt").read_bytes(),
                                    key_data=(plane.dir / "admin.key").read_bytes()),
                          user_agent="trustwire-tests", field_manager="kubectl") as admin:
            cluster = Cluster(plane, admin, controller, proxy)
            await _pair(cluster, "team")
            await _pair_ready(cluster, "team", timeout=40.0)
    refusals = _warnings(caplog, "serviceidentities")
    # reported while it lasted, at a back-off (1, 2, 5, 10 s), never in a tight loop
    assert 2 <= len(refusals) <= 8, refusals
    assert all("listing again in" in m for m in refusals), refusals


async def _until_logged(caplog: pytest.LogCaptureFixture, *words: str, timeout: float = 20.0) -> None:
    await until(lambda: _warnings(caplog, *words),
                lambda: f"a warning saying {words}; logged: "
                        f"{[r.getMessage() for r in caplog.records if r.name == 'trustwire']}", timeout=timeout)


# ---- the CRDs are upgraded while the operator runs -----------------------------------------------
def _upgraded_crds() -> str:
    """crds/ with one more printer column on ServiceIdentity (what a chart upgrade may bring)."""
    documents = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "crds").glob("*.yaml"))]
    for crd in documents:
        if crd["spec"]["names"]["kind"] == "ServiceIdentity":
            crd["spec"]["versions"][0]["additionalPrinterColumns"].insert(
                -1, {"name": "Issuer", "type": "string", "jsonPath": ".status.issuer"})
    return yaml.safe_dump_all(documents)


async def test_crds_upgraded_while_the_operator_runs(cluster: Cluster) -> None:
    await _pair(cluster, "upgrade")
    await _pair_ready(cluster, "upgrade")
    try:
        await asyncio.to_thread(cluster.plane.kubectl, "apply", "--server-side", "--field-manager=helm", "-f", "-",
                                input=_upgraded_crds())
        out = await asyncio.to_thread(cluster.plane.kubectl, "get", "sid", "-n", "upgrade")
        assert "ISSUER" in out.stdout.splitlines()[0], out.stdout
        # the operator keeps serving: a spec change, and a new pair
        await cluster.apply(identity("alpha", "upgrade", dnsNames=["alpha.example.com"]))
        await cluster.wait_for("ServiceIdentity", "upgrade", "alpha",
                               lambda b: _status(b).get("observedGeneration") == 2 and ready_with_peers(b, 1),
                               what="to observe the spec change")
        await _pair(cluster, "upgrade", "gamma", "delta")
        await _pair_ready(cluster, "upgrade", "gamma", "delta")
    finally:
        await asyncio.to_thread(install_crds, cluster.plane)


# ---- the apiserver restarts mid-operation; watches expire -----------------------------------------
async def test_apiserver_restart_mid_operation(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="trustwire")
    await cluster.apply(deployment("app", "restart"))
    await cluster.apply(identity("alpha", "restart", workloads=[{"kind": "Deployment", "name": "app"}]))
    await cluster.apply(identity("beta", "restart"))
    await cluster.apply(relationship("alpha-beta", "restart", ("alpha", None), ("beta", None)))
    await cluster.wait_for("Secret", "restart", names.ca_secret("alpha"), lambda b: b is not None)
    await cluster.restart_apiserver(1.0)

    await _pair_ready(cluster, "restart", timeout=60.0)
    await cluster.wait_condition("ServiceIdentity", "restart", "alpha", "WorkloadsReady", reason="Wired")
    await _one_ca_each(cluster, "restart", "alpha", "beta")
    # what the restarting apiserver refused (403 until its RBAC caches are filled) is retried soon
    delays = [float(d) for d in re.findall(r"retrying in (\d+)s", caplog.text)]
    assert all(d <= 10 for d in delays), f"a pass was put off for minutes by the restart: {delays}"
    # the watches run again: a spec change reaches the operator (its resync is an hour away)
    await cluster.apply(identity("beta", "restart", dnsNames=["beta.example.com"]))
    await cluster.wait_for("ServiceIdentity", "restart", "beta",
                           lambda b: _status(b).get("observedGeneration") == 2 and ready_with_peers(b, 1),
                           what="to observe the spec change")


class ExpiringWatch:
    """The operator's watches of identities fail (503) while :attr:`holding`; then every watch
    from the version they held is answered ``410 Gone`` (as after an etcd compaction), so
    only a new listing brings the operator what changed meanwhile."""

    def __init__(self) -> None:
        self.holding = True
        self.held: set[str] = set()
        self.expired = 0

    def __call__(self, request: Recorded) -> Fault | None:
        if not (request.is_watch and request.path == IDENTITY_WATCH
                and request.user_agent.startswith(OPERATOR_AGENT)):
            return None
        version = request.params.get("resourceVersion", "")
        if self.holding:
            self.held.add(version)
            return Fault(status=503)
        if version in self.held:
            self.expired += 1
            return Fault(cut_after=0.0, gone=True)
        return None


@pytest.fixture
def expiring_watch(api_proxy: ApiProxy) -> ExpiringWatch:
    """Requested before ``cluster``: in place before the operator's first watch."""
    hook = api_proxy.fault = ExpiringWatch()
    return hook


async def test_an_expired_watch_lists_again_and_finds_what_it_missed(expiring_watch: ExpiringWatch,
                                                                     cluster: Cluster) -> None:
    await until(lambda: bool(expiring_watch.held), "the operator's first watch of identities")
    await cluster.apply(identity("alpha", "expired"))  # while no watch delivers it
    await asyncio.sleep(0.5)
    assert IdentityRef("expired", "alpha") not in cluster.controller.state.identities, "a watch delivered it"
    expiring_watch.holding = False
    await cluster.wait_condition("ServiceIdentity", "expired", "alpha", "Ready", timeout=30.0)
    assert expiring_watch.expired >= 1
    listings = [r for r in cluster.operator_requests() if r.path == IDENTITY_WATCH and not r.is_watch]
    assert len(listings) >= 2, "no listing after the 410"


# ---- another writer races the operator's patches --------------------------------------------------
WRITER_PATCH = {"metadata": {"annotations": {"example.com/owner": "gitops"}},
                "spec": {"template": {"metadata": {"annotations": {"example.com/revision": "2"}},
                                      "spec": {"containers": [{"name": "app",
                                                               "env": [{"name": "MODE", "value": "prod"}]}],
                                               "volumes": [{"name": "cache", "emptyDir": {}}]}}}}


class RacingWriter:
    """Lands another writer's strategic-merge patch right before the operator's first patch
    of ``path`` reaches the apiserver: between the operator's read and its write."""

    def __init__(self, plane: ControlPlane, path: str, patch: dict[str, Any]) -> None:
        self.plane, self.path, self.patch = plane, path, patch
        self.raced = 0

    def __call__(self, request: Recorded) -> Fault | None:
        if self.raced or request.method != "PATCH" or request.path != self.path \
                or not request.user_agent.startswith(OPERATOR_AGENT):
            return None
        self.raced += 1
        self.plane.request("PATCH", self.path, self.patch, content_type="application/strategic-merge-patch+json")
        return None


async def test_another_writer_racing_the_wiring_keeps_its_fields(cluster: Cluster) -> None:
    await cluster.apply(deployment("app", "race"))
    writer = RacingWriter(cluster.plane, "/apis/apps/v1/namespaces/race/deployments/app", WRITER_PATCH)
    cluster.proxy.fault = writer
    await cluster.apply(identity("app", "race", workloads=[{"kind": "Deployment", "name": "app"}]))
    body = await cluster.wait_condition("ServiceIdentity", "race", "app", "WorkloadsReady", reason="Wired")
    await cluster.settle()
    assert writer.raced == 1
    wired = await cluster.get("Deployment", "race", "app")
    assert wired is not None
    template, pod = wired["spec"]["template"]["metadata"], wired["spec"]["template"]["spec"]
    assert wired["metadata"]["annotations"]["example.com/owner"] == "gitops"
    assert wired["metadata"]["annotations"][names.WIRED_BY_ANNOTATION] == "race/app"
    assert template["annotations"]["example.com/revision"] == "2"
    assert template["annotations"][names.MATERIAL_HASH_ANNOTATION] == body["status"]["materialHash"]
    assert {v["name"] for v in pod["volumes"]} == {"cache", names.VOLUME_NAME}
    (container,) = pod["containers"]
    assert {e["name"]: e.get("value") for e in container["env"]} == {"MODE": "prod",
                                                                      names.ENV_DIR: "/var/run/trustwire"}
    assert [m["name"] for m in container["volumeMounts"]] == [names.VOLUME_NAME]


async def test_another_writer_racing_a_secret_patch_keeps_its_fields(cluster: Cluster) -> None:
    await cluster.apply(identity("app", "race"))
    await cluster.wait_condition("ServiceIdentity", "race", "app", "Ready")
    await cluster.settle()
    secret = names.credentials_secret("app")
    before = await cluster.data("Secret", "race", secret)
    writer = RacingWriter(cluster.plane, f"/api/v1/namespaces/race/secrets/{secret}",
                          {"metadata": {"labels": {"backup.example.com/include": "true"},
                                        "annotations": {"reflector.example.com/allowed": "true"}}})
    cluster.proxy.fault = writer
    await cluster.apply(identity("app", "race", dnsNames=["app.example.com"]))  # a new leaf
    await cluster.wait_for("ServiceIdentity", "race", "app",
                           lambda b: _status(b).get("observedGeneration") == 2 and ready_with_peers(b, 0))
    assert writer.raced == 1
    stored = await cluster.get("Secret", "race", secret)
    assert stored is not None
    assert stored["metadata"]["labels"]["backup.example.com/include"] == "true"
    assert stored["metadata"]["annotations"]["reflector.example.com/allowed"] == "true"
    after = await cluster.data("Secret", "race", secret)
    assert after["tls.crt"] != before["tls.crt"]
    assert "app.example.com" in pki.dns_sans(pki.load_certificates(after["tls.crt"])[0])
    assert json.loads(after["jwt.jwk"]) == json.loads(before["jwt.jwk"]), "the JWT key is not re-issued"
