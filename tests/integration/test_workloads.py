"""Issue 4 acceptance: wiring workloads on the API emulator, coexisting with a GitOps writer."""

from __future__ import annotations

import copy
import json

import pytest

from tests.integration.harness import Cluster, condition, deployment, identity, relationship
from trustwire import names

pytestmark = pytest.mark.integration


def _pod_spec(body: dict) -> dict:  # type: ignore[type-arg]
    spec: dict = body["spec"]["template"]["spec"]  # type: ignore[type-arg]
    return spec


def _hash(body: dict | None) -> str | None:  # type: ignore[type-arg]
    return ((body or {}).get("spec", {}).get("template", {}).get("metadata", {}).get("annotations") or {}).get(
        names.MATERIAL_HASH_ANNOTATION)


def _patches_to(cluster: Cluster, kind_plural: str, namespace: str, name: str, since: int) -> list[object]:
    return [r for r in cluster.operator_writes()[since:]
            if r.url.path.endswith(f"/namespaces/{namespace}/{kind_plural}/{name}")]


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet"])
async def test_each_workload_kind_is_wired_and_unwired_exactly(cluster: Cluster, kind: str) -> None:
    original = deployment("app", "team", containers=("main", "sidecar"), kind=kind)
    _pod_spec(original)["volumes"] = [{"name": "data", "emptyDir": {}}]
    _pod_spec(original)["containers"][0]["env"] = [{"name": "MODE", "value": "prod"}]
    await cluster.apply(original)
    pristine = await cluster.get(kind, "team", "app")
    await cluster.apply(identity("app", "team", workloads=[{"kind": kind, "name": "app", "containers": ["main"]}]))
    body = await cluster.wait_condition("ServiceIdentity", "team", "app", "WorkloadsReady", reason="Wired")
    assert body["status"]["workloads"] == [{"kind": kind, "name": "app", "state": "Wired", "message": "",
                                            "rolloutGeneration": 2, "rolledOut": False}]
    assert body["status"]["rolledOut"] is False, "no workload controller has rolled it out"

    wired = await cluster.get(kind, "team", "app")
    assert wired is not None
    pod = _pod_spec(wired)
    volume = next(v for v in pod["volumes"] if v["name"] == names.VOLUME_NAME)
    assert [s["secret"]["name"] for s in volume["projected"]["sources"]] == [
        names.credentials_secret("app"), names.trust_secret("app")]
    assert volume["projected"]["defaultMode"] == 0o440
    main, sidecar = pod["containers"]
    assert {"name": names.VOLUME_NAME, "mountPath": "/var/run/trustwire", "readOnly": True} in main["volumeMounts"]
    assert {"name": "TRUSTWIRE_DIR", "value": "/var/run/trustwire"} in main["env"]
    assert {"name": "MODE", "value": "prod"} in main["env"]
    assert "volumeMounts" not in sidecar and "env" not in sidecar, "only the named container is wired"
    assert _hash(wired) == body["status"]["materialHash"]
    assert {"name": "data", "emptyDir": {}} in pod["volumes"]

    # a GitOps writer changes unrelated fields: neither reverted nor fought
    await cluster.settle()
    since = len(cluster.operator_writes())
    gitops = copy.deepcopy(wired)
    gitops["spec"]["replicas"] = 3
    _pod_spec(gitops)["containers"][0]["image"] = "example/main:2"
    gitops["metadata"].setdefault("annotations", {})["argocd.argoproj.io/sync-wave"] = "1"
    await cluster.client.merge_patch(cluster_resource(kind), "team", "app", {
        "spec": {"replicas": 3, "template": {"spec": {"containers": _pod_spec(gitops)["containers"]}}},
        "metadata": {"annotations": {"argocd.argoproj.io/sync-wave": "1"}}})
    cluster.controller.resync_all()
    await cluster.settle()
    after = await cluster.get(kind, "team", "app")
    assert after is not None and after["spec"]["replicas"] == 3
    assert _pod_spec(after)["containers"][0]["image"] == "example/main:2"
    assert _patches_to(cluster, cluster_resource(kind).plural, "team", "app", since) == []

    # the workload leaves the spec → exactly our additions are removed
    await cluster.apply(identity("app", "team", workloads=[]))
    await cluster.wait_for(kind, "team", "app", lambda b: _hash(b) is None, what="to be unwired")
    unwired = await cluster.get(kind, "team", "app")
    expected = copy.deepcopy(pristine)
    assert expected is not None and unwired is not None
    expected["spec"]["replicas"] = 3
    _pod_spec(expected)["containers"][0]["image"] = "example/main:2"
    expected["metadata"].setdefault("annotations", {})["argocd.argoproj.io/sync-wave"] = "1"
    assert unwired == expected


def cluster_resource(kind: str):  # type: ignore[no-untyped-def]
    from trustwire.k8s.client import WORKLOADS
    return WORKLOADS[kind]


async def test_peer_ca_change_rolls_the_trusting_workload_once(cluster: Cluster) -> None:
    await cluster.apply(deployment("alpha", "team"))
    await cluster.apply(deployment("beta", "team"))
    await cluster.apply(identity("alpha", "team", workloads=[{"kind": "Deployment", "name": "alpha"}]))
    await cluster.apply(identity("beta", "team", workloads=[{"kind": "Deployment", "name": "beta"}]))
    await cluster.apply(relationship("ab", "team", ("alpha", None), ("beta", None)))
    await cluster.wait_condition("TrustRelationship", "team", "ab", "Ready")
    await cluster.wait_condition("ServiceIdentity", "team", "alpha", "WorkloadsReady", reason="Wired")
    await cluster.settle()
    hash_before = _hash(await cluster.get("Deployment", "team", "alpha"))
    since = len(cluster.operator_writes())

    # ten resyncs without change → zero patches
    for _ in range(10):
        cluster.controller.resync_all()
        await cluster.settle()
    assert _patches_to(cluster, "deployments", "team", "alpha", since) == []
    assert _patches_to(cluster, "deployments", "team", "beta", since) == []

    # beta's CA changes (its CA Secret is lost and re-issued) → alpha's trust changes → one patch
    await cluster.delete("Secret", "team", names.ca_secret("beta"))
    await cluster.wait_for("Deployment", "team", "alpha", lambda b: _hash(b) != hash_before,
                           what="to roll with the new peer CA")
    await cluster.settle()
    assert len(_patches_to(cluster, "deployments", "team", "alpha", since)) == 1
    alpha = await cluster.get("ServiceIdentity", "team", "alpha")
    assert _hash(await cluster.get("Deployment", "team", "alpha")) == alpha["status"]["materialHash"]  # type: ignore[index]


async def test_missing_workload_is_reported_then_wired_when_it_appears(cluster: Cluster) -> None:
    await cluster.apply(identity("late", "team", workloads=[{"kind": "Deployment", "name": "late"}]))
    body = await cluster.wait_condition("ServiceIdentity", "team", "late", "WorkloadsReady", "False",
                                        reason="WorkloadNotFound")
    assert "Deployment team/late" in condition(body, "WorkloadsReady")["message"]  # type: ignore[index]
    assert condition(body, "Stalled")["status"] == "False"  # type: ignore[index]
    await cluster.settle()
    since = len(cluster.operator_writes())
    cluster.controller.resync_all()
    await cluster.settle()
    assert cluster.operator_writes()[since:] == [], "waiting for a workload is quiet, not an error loop"
    await cluster.apply(deployment("late", "team"))
    await cluster.wait_condition("ServiceIdentity", "team", "late", "WorkloadsReady", reason="Wired")
    assert _hash(await cluster.get("Deployment", "team", "late"))


async def test_identity_deletion_unwires(cluster: Cluster) -> None:
    await cluster.apply(deployment("svc", "team"))
    pristine = await cluster.get("Deployment", "team", "svc")
    await cluster.apply(identity("svc", "team", workloads=[{"kind": "Deployment", "name": "svc"}]))
    await cluster.wait_condition("ServiceIdentity", "team", "svc", "WorkloadsReady", reason="Wired")
    await cluster.delete("ServiceIdentity", "team", "svc")
    await cluster.wait_for("ServiceIdentity", "team", "svc", lambda b: b is None, what="to be deleted")
    assert await cluster.get("Deployment", "team", "svc") == pristine


async def test_templates_render_rerender_on_configmap_edit_and_keep_last_good(cluster: Cluster) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tpl", "namespace": "team"},
          "data": {"props": "me={{ self.name }}\n{% for p in peers %}peer={{ p.identity }} kid={{ p.kids[0] }}\n"
                            "{% endfor %}"}}
    await cluster.apply(cm)
    await cluster.apply(identity("alpha", "team", templates=[
        {"name": "app.properties", "configMapRef": {"name": "tpl", "key": "props"}}]))
    await cluster.apply(identity("beta", "team"))
    await cluster.apply(relationship("ab", "team", ("alpha", None), ("beta", None)))
    await cluster.wait_condition("TrustRelationship", "team", "ab", "Ready")
    await cluster.wait_condition("ServiceIdentity", "team", "alpha", "TemplatesReady", reason="Rendered")
    beta_kid = (await cluster.data("Secret", "team", names.credentials_secret("beta")))["jwt.kid"].decode()
    rendered = (await cluster.data("Secret", "team", names.trust_secret("alpha")))["app.properties"]
    assert rendered.decode() == f"me=alpha\npeer=beta kid={beta_kid}\n"

    cm["data"] = {"props": "v2 {{ self.namespace }}"}
    await cluster.apply(cm)
    await cluster.wait_for("Secret", "team", names.trust_secret("alpha"),
                           lambda b: b is not None and __import__("base64").b64decode(
                               b["data"]["app.properties"]) == b"v2 team", what="to re-render")

    cm["data"] = {"props": "line1\n{{ ''.__class__.__mro__ }}"}
    await cluster.apply(cm)
    body = await cluster.wait_condition("ServiceIdentity", "team", "alpha", "TemplatesReady", "False",
                                        reason="TemplateError")
    message = condition(body, "TemplatesReady")["message"]  # type: ignore[index]
    assert "app.properties" in message and "line 2" in message, message
    assert (await cluster.data("Secret", "team", names.trust_secret("alpha")))["app.properties"] == b"v2 team"
    await cluster.settle()  # the Event is posted after the status write the wait saw
    events = [e for e in (await cluster.events("team", "alpha")) if e["reason"] == "TemplateError"]
    assert events and "app.properties" in events[0]["message"]
    peers = json.loads((await cluster.data("Secret", "team", names.trust_secret("alpha")))["peers.json"])
    assert [p["identity"] for p in peers] == ["beta"], "a template error does not disturb trust"
