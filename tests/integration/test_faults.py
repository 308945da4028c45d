"""API faults between the operator and the real apiserver: the operator converges, issues one CA
per identity, loses nothing and reports status that agrees with its Secrets.

The faults (``tests/integration/faults.py``) come from the loopback proxy and hit only the
operator's requests (User-Agent ``trustwire-operator``): 500/409/429
(``Retry-After: 1``) answered by the proxy without forwarding, 500 after the apiserver applied
a write (a lost response), slow answers, and watch streams cut (some ending in ``410 Gone``).
Every version of every Secret and ConfigMap the API served is recorded by the test's own
watches, started before the operator acts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.cluster.controlplane import ControlPlane
from tests.cluster.fixtures import OperatorAccess
from tests.cluster.proxy import ApiProxy, Recorded
from tests.integration.faults import (
    FaultInjector,
    bundle_fingerprints,
    ca_lineage,
    fingerprint,
    live_condition,
    material_problems,
    secret_value,
    status_problems,
)
from tests.integration.harness import NAMESPACES, Cluster, History, condition, deployment, identity, relationship, until
from trustwire import names, pki
from trustwire.k8s.client import ApiConfig, Client
from trustwire.k8s.errors import ApiError
from trustwire.k8s.resources import CONFIGMAPS, SECRETS

pytestmark = pytest.mark.integration

IDENTITIES = [("gov", "dgc"), ("jobs", "jobserver"), ("proc", "dpm"), ("proc", "dpe")]
RELATIONSHIPS = [("gov", "dgc-jobserver"), ("proc", "dpm-dpe")]


@pytest.fixture
async def history(admin: Client) -> AsyncIterator[History]:
    async with History(admin, (SECRETS, CONFIGMAPS)) as recorded:
        yield recorded


@pytest.fixture
def injector(cluster: Cluster, api_proxy: ApiProxy) -> FaultInjector:
    # a fixed seed; TRUSTWIRE_FAULT_SEED=<n> replays another fault sequence
    faults = FaultInjector(seed=int(os.environ.get("TRUSTWIRE_FAULT_SEED", "20240611")), rate=0.3)
    api_proxy.fault = faults.hook
    return faults


async def _apply_scenario(cluster: Cluster) -> None:
    await cluster.apply(deployment("dgc", "gov"))
    await cluster.apply(identity("dgc", "gov", workloads=[{"kind": "Deployment", "name": "dgc"}]))
    await cluster.apply(identity("jobserver", "jobs", acceptFrom={"namespaces": ["gov"]}))
    await cluster.apply(relationship("dgc-jobserver", "gov", ("dgc", None), ("jobserver", "jobs"),
                                     initiator="dgc", jwt={"enabled": True, "roles": ["IMPERSONATION"]},
                                     sharedSecret={"enabled": True}))
    await cluster.apply(identity("dpm", "proc", keystores={"formats": ["PKCS12", "JKS"]}))
    await cluster.apply(identity("dpe", "proc"))
    await cluster.apply(relationship("dpm-dpe", "proc", ("dpm", None), ("dpe", None),
                                     jwt={"enabled": True, "audience": "pf"}))


async def _not_ready(cluster: Cluster) -> list[str]:
    """Which identities and relationships are not Ready (with their Ready condition)."""
    out = []
    for plural, objects in (("serviceidentities", IDENTITIES), ("trustrelationships", RELATIONSHIPS)):
        for ns, name in objects:
            c = await live_condition(cluster.client, plural, ns, name, "Ready")
            if c is None or c["status"] != "True":
                out.append(f"{plural} {ns}/{name}: {c}")
    return out


async def _all_ready(cluster: Cluster, timeout: float) -> None:
    pending: list[str] = []

    async def ready() -> bool:
        pending[:] = await _not_ready(cluster)
        return not pending

    await until(ready, lambda: f"everything Ready; not Ready: {pending}", timeout=timeout, interval=0.2)


def _peer(name: str) -> tuple[str, str]:
    return {"dgc": ("jobs", "jobserver"), "jobserver": ("gov", "dgc"), "dpm": ("proc", "dpe"),
            "dpe": ("proc", "dpm")}[name]


def _created(cluster: Cluster, namespace: str, name: str) -> list[Recorded]:
    """The operator's creates of one object that the apiserver applied (lost answers included)."""
    return [r for r in cluster.operator_writes() if r.method == "POST" and r.status == 201
            and r.path == f"/api/v1/namespaces/{namespace}/secrets"
            and ((r.data or {}).get("metadata") or {}).get("name") == name]


def _posted_name(request: Recorded) -> str:
    return str(((request.data or {}).get("metadata") or {}).get("name", "")) if request.method == "POST" else ""


async def test_operator_converges_through_api_faults_with_one_ca_per_identity(
        cluster: Cluster, injector: FaultInjector, history: History) -> None:
    injector.enabled = True
    await _apply_scenario(cluster)
    # let the operator work under faults for a while (it may or may not finish meanwhile)
    with contextlib.suppress(AssertionError):
        await _all_ready(cluster, timeout=10.0)
    injector.enabled = False
    faults = injector.counts()
    print("faults injected:", faults)
    await _all_ready(cluster, timeout=45.0)
    await cluster.settle()
    cluster.controller.resync_all()
    await cluster.settle()
    await history.sync()

    # the faults were real: injected, and seen by the operator's client
    assert sum(faults.values()) >= 20, faults
    for kind in ("500", "409", "429", "lost", "slow"):
        assert faults.get(kind, 0) > 0, f"no {kind} fault was injected: {faults}"
    seen = cluster.controller.client.errors
    assert seen["500"] > 0 and seen["429"] > 0 and seen["409"] > 0, dict(seen)

    fps: dict[str, str] = {}
    for ns, name in IDENTITIES:
        # exactly one CA ever existed, and it is the one in use: nothing issued was lost
        lineage = ca_lineage(history, ns, name)
        ca = await cluster.data("Secret", ns, names.ca_secret(name))
        current = fingerprint(pki.load_certificates(ca["tls.crt"])[0])
        assert lineage == [current], f"{ns}/{name}: CA fingerprints over history {lineage}, now {current}"
        assert len(_created(cluster, ns, names.ca_secret(name))) == 1, f"{ns}/{name}: the CA Secret created twice"
        fps[name] = current
        # the public ConfigMap never published another CA
        for version in history.of("configmaps", ns, names.public_configmap(name)):
            pem = (version.get("data") or {}).get("ca.crt", "").encode()
            assert {fingerprint(c) for c in pki.load_certificates(pem)} <= {current} if pem else True
        # material verifies and status agrees with the Secrets
        creds = await cluster.data("Secret", ns, names.credentials_secret(name))
        assert material_problems(ca["tls.crt"], creds, ca_key_pem=ca["tls.key"]) == [], (ns, name)
        body = await cluster.get("ServiceIdentity", ns, name)
        assert body is not None
        assert status_problems(body["status"], ca["tls.crt"], creds) == [], (ns, name)

    for ns, name in IDENTITIES:
        peer_ns, peer = _peer(name)
        trust = await cluster.data("Secret", ns, names.trust_secret(name))
        assert bundle_fingerprints(trust) == {fps[peer]}, f"{name} must trust exactly {peer}'s CA"
        # no trust bundle ever held a CA that is not one of the identities' single CAs
        for version in history.of("secrets", ns, names.trust_secret(name)):
            pem = secret_value(version, "trust-bundle.pem") or b""
            if pem.strip():
                assert {fingerprint(c) for c in pki.load_certificates(pem)} <= set(fps.values())
        peer_creds = await cluster.data("Secret", peer_ns, names.credentials_secret(peer))
        kids = [k["kid"] for k in json.loads(trust["peers.jwks"])["keys"]]
        if name != "dgc":  # dgc initiates: it does not accept jobserver's tokens
            assert peer_creds["jwt.kid"].decode() in kids, (name, kids)

    dgc_trust = await cluster.data("Secret", "gov", names.trust_secret("dgc"))
    job_trust = await cluster.data("Secret", "jobs", names.trust_secret("jobserver"))
    assert dgc_trust["shared-jobserver.key"] == job_trust["shared-dgc.key"]
    assert len(dgc_trust["shared-jobserver.key"]) == 43  # 32 random bytes, base64url without padding

    # the workload was wired exactly once despite retried patches
    wired = await cluster.get("Deployment", "gov", "dgc")
    assert wired is not None
    pod = wired["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]].count(names.VOLUME_NAME) == 1, pod["volumes"]
    container = pod["containers"][0]
    assert [m["name"] for m in container["volumeMounts"]].count(names.VOLUME_NAME) == 1, container
    assert [e["name"] for e in container["env"]].count(names.ENV_DIR) == 1, container


async def test_lost_responses_to_every_first_create_never_issue_a_second_ca(
        cluster: Cluster, injector: FaultInjector, history: History) -> None:
    """Each first POST of a managed Secret is applied by the apiserver but answered 500: the
    operator's retry meets 409, and the next pass must adopt what exists, not issue anew."""
    hit: set[str] = set()

    def first_create_lost(request: Recorded) -> str | None:
        name = _posted_name(request)
        if "-trustwire-" in name and name not in hit:
            hit.add(name)
            return "lost"
        return None

    injector.script = first_create_lost
    injector.enabled = True
    await _apply_scenario(cluster)
    await _all_ready(cluster, timeout=30.0)
    await cluster.settle()
    await history.sync()
    assert {names.ca_secret(n) for _, n in IDENTITIES} <= hit, hit
    for ns, name in IDENTITIES:
        ca = await cluster.data("Secret", ns, names.ca_secret(name))
        assert ca_lineage(history, ns, name) == [fingerprint(pki.load_certificates(ca["tls.crt"])[0])]
        assert len(_created(cluster, ns, names.ca_secret(name))) == 1, f"{ns}/{name}: the CA Secret created twice"
        creds = await cluster.data("Secret", ns, names.credentials_secret(name))
        assert material_problems(ca["tls.crt"], creds, ca_key_pem=ca["tls.key"]) == []
        body = await cluster.get("ServiceIdentity", ns, name)
        assert body is not None and status_problems(body["status"], ca["tls.crt"], creds) == []


async def test_lost_response_to_a_workload_patch_does_not_wire_it_twice(
        cluster: Cluster, injector: FaultInjector) -> None:
    """The first JSON patch of the Deployment is applied but answered 500 (a response lost
    after commit). Appending with ``/-`` is not idempotent: replaying the same patch blindly
    adds a second volume, mount and env var."""
    done: list[Recorded] = []

    def first_workload_patch_lost(request: Recorded) -> str | None:
        if request.method == "PATCH" and "/deployments/" in request.path and not done:
            done.append(request)
            return "lost"
        return None

    injector.script = first_workload_patch_lost
    injector.enabled = True
    app = deployment("app", "team")
    pod = app["spec"]["template"]["spec"]
    pod["volumes"] = [{"name": "data", "emptyDir": {}}]
    pod["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    pod["containers"][0]["env"] = [{"name": "MODE", "value": "prod"}]
    await cluster.apply(app)
    await cluster.apply(identity("app", "team", workloads=[{"kind": "Deployment", "name": "app"}]))
    await cluster.wait_condition("ServiceIdentity", "team", "app", "Ready", timeout=30.0)
    await cluster.settle()
    assert done, "the fault was not injected"
    pod = (await cluster.get("Deployment", "team", "app") or {})["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert [v["name"] for v in pod["volumes"]].count(names.VOLUME_NAME) == 1, pod["volumes"]
    assert [m["name"] for m in container["volumeMounts"]].count(names.VOLUME_NAME) == 1, container
    assert [e["name"] for e in container["env"]].count(names.ENV_DIR) == 1, container


async def test_a_pass_that_fails_after_publishing_still_tells_the_peers(
        cluster: Cluster, injector: FaultInjector) -> None:
    """jobserver's pass writes its CA and credentials, then its trust Secret's create is
    refused (409). The watch echoes of the two writes that landed wake nobody (they are the
    operator's own), so the failed pass itself must tell dgc — which had already looked and
    found nothing published — or dgc waits for a resync (seen under random faults)."""
    prefix = names.trust_secret("jobserver").removesuffix("trust")
    refused: list[str] = []
    phase = ["withhold"]

    def refuse(request: Recorded) -> str | None:
        name = _posted_name(request)
        if not name:
            return None
        if phase[0] == "withhold" and name.startswith(prefix):  # jobserver cannot publish yet
            return "409"
        if phase[0] == "trust once" and name == names.trust_secret("jobserver") and not refused:
            refused.append(name)
            return "409"
        return None

    injector.script = refuse
    injector.enabled = True
    await cluster.apply(identity("dgc", "gov"))
    await cluster.apply(identity("jobserver", "jobs", acceptFrom={"namespaces": ["gov"]}))
    await cluster.apply(relationship("dgc-jobserver", "gov", ("dgc", None), ("jobserver", "jobs")))
    await cluster.wait_condition("ServiceIdentity", "gov", "dgc", "TrustReady", status="False",
                                 reason="PeerPending", timeout=30.0)  # dgc looked and found nothing
    phase[0] = "trust once"
    await cluster.wait_condition("ServiceIdentity", "jobs", "jobserver", "Ready", timeout=30.0)
    assert refused, "the fault was not injected"
    body = await cluster.wait_condition("ServiceIdentity", "gov", "dgc", "Ready", timeout=15.0)
    assert [p["identity"] for p in body["status"]["peers"]] == ["jobserver"]


async def test_a_write_refused_for_good_turns_ready_false_until_a_change_fixes_it(
        cluster: Cluster, injector: FaultInjector) -> None:
    """Every PATCH of dgc's trust Secret is refused with 422: the pass cannot finish, so the
    last good ``Ready=True`` must not stand; it comes back when a later pass gets through."""
    trust = f"/secrets/{names.trust_secret('dgc')}"

    def refuse_trust_patch(request: Recorded) -> str | None:
        return "422" if request.method == "PATCH" and request.path.endswith(trust) else None

    await cluster.apply(identity("dgc", "gov"))
    await cluster.wait_condition("ServiceIdentity", "gov", "dgc", "Ready", timeout=30.0)
    await cluster.settle()
    injector.script = refuse_trust_patch
    injector.enabled = True
    await cluster.apply(identity("jobserver", "jobs", acceptFrom={"namespaces": ["gov"]}))
    await cluster.apply(relationship("dgc-jobserver", "gov", ("dgc", None), ("jobserver", "jobs")))
    body = await cluster.wait_condition("ServiceIdentity", "gov", "dgc", "Stalled", reason="WriteRejected",
                                        timeout=30.0)
    ready = condition(body, "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "WriteRejected")
    assert ready["message"] == (f"Applied: the API server refused PATCH /api/v1/namespaces/gov{trust}: "
                                "422 Invalid: injected fault: data: Too long: must have at most 1048576 bytes")
    assert condition(body, "CAReady") is not None  # the domain conditions of the last finished pass stay
    await cluster.settle()  # the Event follows the status write
    warnings = [e for e in (await cluster.events("gov", "dgc")) if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["WriteRejected"]
    relationship_ready = condition(await cluster.get("TrustRelationship", "gov", "dgc-jobserver"), "Ready")
    assert relationship_ready is not None and relationship_ready["status"] == "False"
    injector.enabled = False
    await cluster.apply(identity("dgc", "gov", dnsNames=["dgc.example.com"]))  # a change brings a new pass
    await cluster.wait_condition("ServiceIdentity", "gov", "dgc", "Ready", timeout=30.0)
    await cluster.wait_condition("TrustRelationship", "gov", "dgc-jobserver", "Ready", timeout=30.0)


# ======================================================================================
# The fault filter itself
# ======================================================================================
BARE = "faults-bare"


@dataclasses.dataclass
class Bare:
    """The proxy with faults on every operator request; the "operator" (its User-Agent, no
    retries) and the "tests" (the tests' User-Agent) talk through it with the chart's token,
    the admin straight to the apiserver (what really is stored)."""

    injector: FaultInjector
    operator: Client
    tests: Client
    admin: Client
    url: str
    token: str


@pytest.fixture
async def bare(control_plane: ControlPlane, api_proxy: ApiProxy, operator_access: OperatorAccess,
               admin: Client) -> AsyncIterator[Bare]:
    if await admin.get(NAMESPACES, None, BARE) is None:
        await admin.create(NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": BARE}})
    injector = FaultInjector(seed=1, rate=1.0)
    api_proxy.fault = injector.hook
    config = ApiConfig(server=api_proxy.url, token=operator_access.token)
    try:
        async with Client(config, retries=0) as operator, Client(config, user_agent="trustwire-tests") as tests:
            yield Bare(injector, operator, tests, admin, api_proxy.url, operator_access.token)
    finally:
        api_proxy.fault = None
        control_plane.request("DELETE", f"/api/v1/namespaces/{BARE}/secrets")


def _secret(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": BARE},
            "data": {"k": base64.b64encode(b"v").decode()}}


def _only(injector: FaultInjector, kind: str) -> None:
    injector.weights = {kind: 1.0}
    injector.enabled = True


@pytest.mark.parametrize("kind", ["500", "409", "429"])
async def test_rejected_requests_answer_the_operator_and_change_nothing(bare: Bare, kind: str) -> None:
    _only(bare.injector, kind)
    with pytest.raises(ApiError) as info:
        await bare.operator.create(SECRETS, BARE, _secret("refused"))
    assert info.value.status == int(kind)
    assert await bare.admin.get(SECRETS, BARE, "refused") is None, "a refused write must not be applied"
    await bare.tests.create(SECRETS, BARE, _secret("allowed"))  # the test's own requests pass untouched
    assert await bare.admin.get(SECRETS, BARE, "allowed") is not None
    assert [i.kind for i in bare.injector.log] == [kind]
    headers = {"User-Agent": "trustwire-operator", "Authorization": f"Bearer {bare.token}",
               "Content-Type": "application/merge-patch+json"}
    async with aiohttp.ClientSession(headers=headers) as session, \
            session.patch(f"{bare.url}/api/v1/namespaces/{BARE}/secrets/allowed",
                          json={"data": {"x": "eA=="}}) as response:
        assert response.status == int(kind)
        assert response.headers.get("Retry-After") == ("1" if kind == "429" else None)
    assert "x" not in ((await bare.admin.get(SECRETS, BARE, "allowed") or {}).get("data") or {})


async def test_lost_response_applies_the_write_but_answers_500(bare: Bare) -> None:
    _only(bare.injector, "lost")
    with pytest.raises(ApiError) as info:
        await bare.operator.create(SECRETS, BARE, _secret("applied"))
    assert info.value.status == 500
    assert await bare.admin.get(SECRETS, BARE, "applied") is not None
    # reads are never "lost" (nothing to apply): they pass through
    assert await bare.operator.get(SECRETS, BARE, "applied") is not None
    assert [i.kind for i in bare.injector.log] == ["lost"]


async def test_slow_requests_still_reach_the_apiserver(bare: Bare) -> None:
    _only(bare.injector, "slow")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await bare.operator.create(SECRETS, BARE, _secret("slow"))
    assert await bare.operator.get(SECRETS, BARE, "slow") is not None
    assert loop.time() - started >= 0.4, "two slow answers take at least 0.2 s each"
    assert [i.kind for i in bare.injector.log] == ["slow", "slow"]


async def test_dropped_watch_streams_end(bare: Bare) -> None:
    """Cut after 0.2-2 s, after the events so far, sometimes with a final ERROR 410 (seed 1
    gives both kinds of ending over the four watches)."""
    await bare.tests.create(SECRETS, BARE, _secret("watched"))
    _only(bare.injector, "drop")
    endings = set()
    for _ in range(4):
        events = await _watch_until_it_ends(bare)
        assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "watched", events
        assert [e["type"] for e in events[1:]] in ([], ["ERROR"]), events
        if events[-1]["type"] == "ERROR":
            assert (events[-1]["object"]["code"], events[-1]["object"]["reason"]) == (410, "Expired")
        endings.add(events[-1]["type"])
    assert endings == {"ADDED", "ERROR"}
    assert [i.kind for i in bare.injector.log] == ["drop"] * 4


async def _watch_until_it_ends(bare: Bare) -> list[dict[str, Any]]:
    lines: list[bytes] = []
    headers = {"User-Agent": "trustwire-operator", "Authorization": f"Bearer {bare.token}"}
    async with aiohttp.ClientSession(headers=headers) as session, \
            session.get(f"{bare.url}/api/v1/namespaces/{BARE}/secrets", params={"watch": "true"}) as response:
        assert response.status == 200

        async def read_all() -> None:
            try:
                async for line in response.content:
                    if line.strip():
                        lines.append(line)
            except aiohttp.ClientPayloadError:
                pass  # the cut connection: the stream ends without its last chunk

        await asyncio.wait_for(read_all(), timeout=10.0)  # without the fault it never ends
    return [json.loads(line) for line in lines]


async def test_faults_off_means_no_faults(bare: Bare) -> None:
    bare.injector.enabled = False
    for i in range(20):
        await bare.operator.create(SECRETS, BARE, _secret(f"s{i}"))
    assert bare.injector.log == []
