"""Issue 4 acceptance: wiring workloads on the real control plane, coexisting with a GitOps
writer. The real Deployment, StatefulSet and DaemonSet controllers roll the wired templates
out and kwok marks the pods Ready, so ``rolledOut`` is the real controllers' evidence."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from tests.cluster.proxy import Recorded
from tests.integration.harness import Cluster, condition, deployment, identity, relationship
from trustwire import names
from trustwire.k8s.resources import WORKLOADS, Resource

pytestmark = pytest.mark.integration

PODS = Resource("", "v1", "pods", "Pod")
REPLICASETS = Resource("apps", "v1", "replicasets", "ReplicaSet")
#: Annotations the workload controllers and the API server keep on the workload itself.
SERVER_ANNOTATIONS = {"deployment.kubernetes.io/revision", "deprecated.daemonset.template.generation"}
ROLLOUT_SECONDS = 60.0


def workload(kind: str, name: str, namespace: str, containers: tuple[str, ...] = ("app",)) -> dict[str, Any]:
    """A minimal valid workload of ``kind``: a DaemonSet has no replicas, a StatefulSet
    names its governing Service."""
    body = deployment(name, namespace, containers, kind=kind)
    if kind == "DaemonSet":
        del body["spec"]["replicas"]
    if kind == "StatefulSet":
        body["spec"]["serviceName"] = name
    return body


def _pod_spec(body: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = body["spec"]["template"]["spec"]
    return spec


def _hash(body: dict[str, Any] | None) -> str | None:
    return ((body or {}).get("spec", {}).get("template", {}).get("metadata", {}).get("annotations") or {}).get(
        names.MATERIAL_HASH_ANNOTATION)


def _user_view(body: dict[str, Any] | None) -> dict[str, Any]:
    """What the workload's writers own: spec, labels and annotations (not the server's fields
    nor the controllers' own annotations)."""
    assert body is not None
    meta = body["metadata"]
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in SERVER_ANNOTATIONS}
    return {"spec": body["spec"], "labels": meta.get("labels") or {}, "annotations": annotations}


def _patches_to(cluster: Cluster, kind_plural: str, namespace: str, name: str, since: int) -> list[Recorded]:
    return [r for r in cluster.operator_writes()[since:]
            if r.path.endswith(f"/namespaces/{namespace}/{kind_plural}/{name}")]


def _rolled_out_everywhere(body: dict[str, Any] | None) -> bool:
    status = (body or {}).get("status") or {}
    return status.get("rolledOut") is True and all(w.get("rolledOut") for w in status.get("workloads") or [])


async def _live_pods(cluster: Cluster, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The workload's pods that are not being deleted (a Deployment's through its ReplicaSets)."""
    namespace, owners = body["metadata"]["namespace"], {body["metadata"]["uid"]}
    if body["kind"] == "Deployment":
        owners = {rs["metadata"]["uid"] for rs in await cluster.client.list(REPLICASETS, namespace)
                  if any(o["uid"] in owners for o in rs["metadata"].get("ownerReferences") or [])}
    return [p for p in await cluster.client.list(PODS, namespace)
            if not p["metadata"].get("deletionTimestamp")
            and any(o["uid"] in owners for o in p["metadata"].get("ownerReferences") or [])]


def _pod_hash(pod: dict[str, Any]) -> str | None:
    hashed: str | None = (pod["metadata"].get("annotations") or {}).get(names.MATERIAL_HASH_ANNOTATION)
    return hashed


def _pod_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions") or [])


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet"])
async def test_each_workload_kind_is_wired_rolled_out_and_unwired_exactly(cluster: Cluster, kind: str) -> None:
    original = workload(kind, "app", "team", containers=("main", "sidecar"))
    _pod_spec(original)["volumes"] = [{"name": "data", "emptyDir": {}}]
    _pod_spec(original)["containers"][0]["env"] = [{"name": "MODE", "value": "prod"}]
    await cluster.apply(original)
    pristine = await cluster.get(kind, "team", "app")
    await cluster.apply(identity("app", "team", workloads=[{"kind": kind, "name": "app", "containers": ["main"]}]))
    body = await cluster.wait_for("ServiceIdentity", "team", "app", _rolled_out_everywhere,
                                  timeout=ROLLOUT_SECONDS, what="to be rolled out by the real controller")
    assert condition(body, "WorkloadsReady")["reason"] == "Wired"  # type: ignore[index]
    assert body is not None and body["status"]["workloads"] == [
        {"kind": kind, "name": "app", "state": "Wired", "message": "", "rolloutGeneration": 2, "rolledOut": True}]

    wired = await cluster.get(kind, "team", "app")
    assert wired is not None and wired["metadata"]["generation"] == 2
    assert wired["status"]["observedGeneration"] >= 2, "the controller observed the wired template"
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
    pods = await _live_pods(cluster, wired)
    assert pods and all(_pod_hash(p) == _hash(wired) and _pod_ready(p) for p in pods), \
        "the rolled-out pods run the wired template"
    assert {p["spec"]["nodeName"] for p in pods} == {"kwok-node-0"}

    # a GitOps writer changes unrelated fields: neither reverted nor fought
    await cluster.settle()
    since = len(cluster.operator_writes())
    gitops = _gitops_patch(wired)
    await cluster.client.merge_patch(WORKLOADS[kind], "team", "app", gitops)
    await cluster.wait_for(kind, "team", "app", _controller_done, timeout=ROLLOUT_SECONDS,
                           what="to roll out the GitOps change")
    cluster.controller.resync_all()
    await cluster.settle()
    after = await cluster.get(kind, "team", "app")
    assert after is not None and after["spec"].get("replicas") == gitops["spec"].get("replicas")
    assert _pod_spec(after)["containers"][0]["image"] == "example/main:2"
    assert after["spec"]["revisionHistoryLimit"] == 5
    assert _hash(after) == _hash(wired)
    assert _patches_to(cluster, WORKLOADS[kind].plural, "team", "app", since) == []

    # the workload leaves the spec → exactly our additions are removed
    await cluster.apply(identity("app", "team", workloads=[]))
    await cluster.wait_for(kind, "team", "app", lambda b: _hash(b) is None, what="to be unwired")
    expected = copy.deepcopy(pristine)
    assert expected is not None
    expected["spec"].update({k: v for k, v in gitops["spec"].items() if k != "template"})
    _pod_spec(expected)["containers"][0]["image"] = "example/main:2"
    expected["metadata"].setdefault("annotations", {})["argocd.argoproj.io/sync-wave"] = "1"
    assert _user_view(await cluster.get(kind, "team", "app")) == _user_view(expected)


def _gitops_patch(wired: dict[str, Any]) -> dict[str, Any]:
    """What a GitOps writer changes, from the object it read: image, history limit, a sync
    annotation, and the replica count (of the kinds that have one). A merge patch replaces
    the containers list whole, so it sends the list as read, with the new image."""
    containers = copy.deepcopy(_pod_spec(wired)["containers"])
    containers[0]["image"] = "example/main:2"
    spec: dict[str, Any] = {"revisionHistoryLimit": 5, "template": {"spec": {"containers": containers}}}
    if wired["kind"] != "DaemonSet":
        spec["replicas"] = 2
    return {"spec": spec, "metadata": {"annotations": {"argocd.argoproj.io/sync-wave": "1"}}}


def _controller_done(body: dict[str, Any] | None) -> bool:
    """The workload controller has rolled out the current generation to every replica."""
    if body is None:
        return False
    status, meta = body.get("status") or {}, body["metadata"]
    if status.get("observedGeneration", 0) < meta["generation"]:
        return False
    if body["kind"] == "DaemonSet":
        desired = status.get("desiredNumberScheduled")
        return bool(desired) and status.get("updatedNumberScheduled") == desired == status.get("numberAvailable")
    replicas = body["spec"]["replicas"]
    return bool(status.get("updatedReplicas") == status.get("availableReplicas") == status.get("replicas") == replicas)


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
    assert _user_view(await cluster.get("Deployment", "team", "svc")) == _user_view(pristine)


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
                           lambda b: b is not None and base64.b64decode(
                               b["data"]["app.properties"]) == b"v2 team", what="to re-render")

    cm["data"] = {"props": "line1\n{{ ''.__class__.__mro__ }}"}
    await cluster.apply(cm)
    body = await cluster.wait_condition("ServiceIdentity", "team", "alpha", "TemplatesReady", "False",
                                        reason="TemplateError")
    message = condition(body, "TemplatesReady")["message"]  # type: ignore[index]
    assert "app.properties" in message and "line 2" in message, message
    assert (await cluster.data("Secret", "team", names.trust_secret("alpha")))["app.properties"] == b"v2 team"
    await cluster.settle()  # the Event is posted after the status write the wait saw
    events = await cluster.events_of("team", "alpha", "TemplateError")
    assert events and "app.properties" in events[0]["message"]
    peers = json.loads((await cluster.data("Secret", "team", names.trust_secret("alpha")))["peers.json"])
    assert [p["identity"] for p in peers] == ["beta"], "a template error does not disturb trust"


async def test_an_in_place_workload_is_wired_but_never_rolled_by_a_material_change(cluster: Cluster) -> None:
    """``rollout: InPlace`` next to the default: a peer's CA change rolls the Restart workload
    and leaves the InPlace one's pod template (and so its pods and ReplicaSet) as it was;
    the kubelet updates its files from the same Secrets."""
    await cluster.apply(deployment("alpha", "inplace"))
    await cluster.apply(deployment("reloader", "inplace"))
    await cluster.apply(deployment("beta", "inplace"))
    await cluster.apply(identity("alpha", "inplace", workloads=[{"kind": "Deployment", "name": "alpha"},
                                                               {"kind": "Deployment", "name": "reloader",
                                                                "rollout": "InPlace"}]))
    await cluster.apply(identity("beta", "inplace"))
    await cluster.apply(relationship("ab", "inplace", ("alpha", None), ("beta", None)))
    await cluster.wait_condition("TrustRelationship", "inplace", "ab", "Ready")
    await cluster.wait_condition("ServiceIdentity", "inplace", "alpha", "WorkloadsReady", reason="Wired")
    await cluster.settle()
    reloader = await cluster.get("Deployment", "inplace", "reloader")
    assert reloader is not None and _hash(reloader) is None
    volume = [v for v in _pod_spec(reloader)["volumes"] if v["name"] == names.VOLUME_NAME]
    assert [s["secret"]["name"] for s in volume[0]["projected"]["sources"]][:2] == \
        [names.credentials_secret("alpha"), names.trust_secret("alpha")]
    generation, hash_before = reloader["metadata"]["generation"], _hash(await cluster.get("Deployment", "inplace",
                                                                                         "alpha"))
    since = len(cluster.operator_writes())

    await cluster.delete("Secret", "inplace", names.ca_secret("beta"))  # beta's CA changes: alpha's trust too
    await cluster.wait_for("Deployment", "inplace", "alpha", lambda b: _hash(b) != hash_before,
                           what="the Restart workload to roll with the new peer CA")
    await cluster.settle()
    assert _patches_to(cluster, "deployments", "inplace", "reloader", since) == []
    after = await cluster.get("Deployment", "inplace", "reloader")
    assert after is not None and after["metadata"]["generation"] == generation and _hash(after) is None
