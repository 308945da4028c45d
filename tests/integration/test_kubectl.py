"""Real consumers of the CRDs and of the status the operator writes: kubectl v1.34 (its
tables, ``wait``, ``explain``, ``apply --server-side``) and kstatus, the library Argo CD's and
Flux's health checks follow. None of them was written here, so they judge our printer
columns, schemas and conditions as a user's tools do.

kubectl runs in a thread: the operator under test shares this test's event loop, and a
blocking ``kubectl wait`` would otherwise wait for an operator that cannot run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.controlplane import ControlPlane
from tests.cluster.proxy import Fault, Recorded
from tests.integration.harness import (
    OPERATOR_AGENT,
    Cluster,
    condition,
    deployment,
    identity,
    ready_with_peers,
    relationship,
)
from trustwire import names

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NS = "kubectl"


async def kubectl(plane: ControlPlane, *args: str) -> str:
    done = await asyncio.to_thread(plane.kubectl, *args)
    return done.stdout


async def table(plane: ControlPlane, *args: str) -> list[dict[str, str]]:
    """``kubectl get`` as a human reads it: one dict per row, keyed by column header."""
    header, *rows = (await kubectl(plane, "get", *args)).strip().splitlines()
    columns = re.split(r"\s{2,}", header.strip())
    return [dict(zip(columns, re.split(r"\s{2,}", row.strip()), strict=True)) for row in rows]


async def kstatus(plane: ControlPlane, *args: str) -> dict[str, dict[str, str]]:
    """kstatus' verdict for each object ``kubectl get -o json`` returns, by ``kind/name``."""
    listing = await kubectl(plane, "get", *args, "-o", "json")
    done = await asyncio.to_thread(subprocess.run, [str(plane.bin / "kstatus")], input=listing,
                                   capture_output=True, text=True, check=False, timeout=30)
    assert done.returncode == 0, f"kstatus: exit {done.returncode}: {done.stderr}"
    verdicts = [json.loads(line) for line in done.stdout.splitlines()]
    return {f"{v['kind']}/{v['name']}": v for v in verdicts}


async def _ready_pair(cluster: Cluster) -> dict[str, Any]:
    await cluster.apply(identity("alpha", NS))
    await cluster.apply(identity("beta", NS))
    await cluster.apply(relationship("alpha-beta", NS, ("alpha", None), ("beta", None)))
    await cluster.wait_condition("TrustRelationship", NS, "alpha-beta", "Ready")
    await cluster.wait_for("ServiceIdentity", NS, "beta", lambda b: ready_with_peers(b, 1))
    alpha = await cluster.wait_for("ServiceIdentity", NS, "alpha", lambda b: ready_with_peers(b, 1))
    assert alpha is not None
    return alpha


# ---- kubectl get / wait / explain ------------------------------------------------------------
async def test_get_prints_the_columns_a_human_reads(cluster: Cluster) -> None:
    alpha = await _ready_pair(cluster)
    not_after = alpha["status"]["certificate"]["notAfter"]
    assert dt.datetime.fromisoformat(not_after) > dt.datetime.now(dt.UTC), not_after

    (row, _) = await table(cluster.plane, "sid", "-n", NS)
    assert list(row) == ["NAME", "READY", "PEERS", "CERT EXPIRES", "AGE"]
    assert (row["NAME"], row["READY"], row["PEERS"], row["CERT EXPIRES"]) == ("alpha", "True", "1", not_after)
    (wide, _) = await table(cluster.plane, "sid", "-n", NS, "-o", "wide")
    assert list(wide) == ["NAME", "READY", "REASON", "PEERS", "CERT EXPIRES", "KID", "AGE"]
    assert (wide["REASON"], wide["KID"]) == ("Ready", alpha["status"]["jwt"]["kid"])

    (trust,) = await table(cluster.plane, "trust", "-n", NS)
    assert list(trust) == ["NAME", "BETWEEN", "AND", "READY", "REASON", "AGE"]
    assert (trust["NAME"], trust["BETWEEN"], trust["AND"], trust["READY"], trust["REASON"]) == (
        "alpha-beta", f"{NS}/alpha", f"{NS}/beta", "True", "Ready")
    (trust,) = await table(cluster.plane, "trust", "-n", NS, "-o", "wide")
    assert list(trust) == ["NAME", "BETWEEN", "AND", "READY", "REASON", "ACCEPTED", "MESSAGE", "AGE"]
    assert (trust["ACCEPTED"], trust["MESSAGE"]) == ("True", f"{NS}/alpha and {NS}/beta trust each other")

    # one command, both kinds (the shared "trustwire" category too)
    both = await kubectl(cluster.plane, "get", "sid,trust", "-n", NS)
    assert "serviceidentity.trustwire.io/alpha" in both and "trustrelationship.trustwire.io/alpha-beta" in both
    assert "<invalid>" not in both
    names_only = (await kubectl(cluster.plane, "get", "trustwire", "-n", NS, "-o", "name")).split()
    assert sorted(names_only) == ["serviceidentity.trustwire.io/alpha", "serviceidentity.trustwire.io/beta",
                                  "trustrelationship.trustwire.io/alpha-beta"]


async def test_kubectl_wait_for_ready(cluster: Cluster) -> None:
    await cluster.apply(identity("alpha", NS))
    await cluster.apply(identity("beta", NS))
    await cluster.apply(relationship("alpha-beta", NS, ("alpha", None), ("beta", None)))
    out = await kubectl(cluster.plane, "wait", "--for=condition=Ready", "--timeout=60s", "-n", NS,
                        "sid/alpha", "sid/beta", "trust/alpha-beta")
    assert out.split("\n")[:3] == ["serviceidentity.trustwire.io/alpha condition met",
                                   "serviceidentity.trustwire.io/beta condition met",
                                   "trustrelationship.trustwire.io/alpha-beta condition met"]


@pytest.mark.parametrize(("field", "listed"), [
    ("serviceidentity.spec", ("serviceName", "dnsNames", "trustDomain", "ca", "certificate", "jwt", "keystores",
                              "workloads", "mountPath", "templates", "acceptFrom", "deletionPolicy")),
    ("trustrelationship.spec.between", ("identity", "namespace")),
])
async def test_kubectl_explain_answers(control_plane: ControlPlane, field: str, listed: tuple[str, ...]) -> None:
    out = await kubectl(control_plane, "explain", field)
    assert "GROUP:      trustwire.io" in out and "VERSION:    v1alpha1" in out, out
    described, fields = out.split("FIELDS:", 1)
    assert "<empty>" not in described.split("DESCRIPTION:", 1)[1], out
    declared = dict(re.findall(r"^  (\w+)\t.*\n(?:  .*\n)*?    (.+)$", fields, flags=re.MULTILINE))
    assert set(listed) <= set(declared), out
    assert not [f for f in listed if declared[f] == "<no description>"], out


# ---- the examples, as a user applies them ----------------------------------------------------
def _documents(directory: Path) -> list[dict[str, Any]]:
    return [d for f in sorted(directory.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]


def _namespaces(documents: list[dict[str, Any]]) -> set[str]:
    return {d["metadata"]["name"] for d in documents if d["kind"] == "Namespace"} | {
        d["metadata"]["namespace"] for d in documents if d["metadata"].get("namespace")}


async def _apply_example(cluster: Cluster, directory: Path) -> list[dict[str, Any]]:
    documents = _documents(directory)
    for namespace in sorted(_namespaces(documents)):
        await cluster.ensure_namespace(namespace)
    await kubectl(cluster.plane, "apply", "--server-side", "-f", str(directory))
    return documents


async def _all_ready(cluster: Cluster, documents: list[dict[str, Any]]) -> None:
    for doc in documents:
        if doc["kind"] in ("ServiceIdentity", "TrustRelationship"):
            await cluster.wait_condition(doc["kind"], doc["metadata"]["namespace"], doc["metadata"]["name"],
                                         "Ready", timeout=60.0)


@pytest.mark.parametrize("example", ["quickstart", "dgc-jobserver-mtls", "dpm-dpe-jwt", "enrollment"])
async def test_every_example_applies_server_side_and_becomes_ready(cluster: Cluster, example: str) -> None:
    documents = await _apply_example(cluster, EXAMPLES / example)
    assert any(d["kind"] == "ServiceIdentity" for d in documents)
    await _all_ready(cluster, documents)


async def test_reverse_proxy_variant_moves_the_material_to_the_nginx_container(cluster: Cluster) -> None:
    await _all_ready(cluster, await _apply_example(cluster, EXAMPLES / "dgc-jobserver-mtls"))
    variant = await _apply_example(cluster, EXAMPLES / "dgc-jobserver-mtls" / "reverse-proxy")

    def nginx_wired(body: dict[str, Any] | None) -> bool:
        containers = {c["name"]: c for c in (body or {})["spec"]["template"]["spec"]["containers"]}
        return "nginx" in containers and _mounts_trustwire(containers["nginx"]) \
            and not _mounts_trustwire(containers["jobserver"])

    await cluster.wait_for("Deployment", "jobs", "jobserver", nginx_wired, timeout=60.0,
                           what="to mount the material into nginx only")
    await _all_ready(cluster, variant)
    body = await cluster.wait_condition("ServiceIdentity", "jobs", "jobserver", "TemplatesReady")
    assert condition(body, "Ready")["status"] == "True"  # type: ignore[index]
    rendered = (await cluster.data("Secret", "jobs", names.trust_secret("jobserver")))["jobserver-mtls.conf"]
    assert b"ssl_verify_client       on;" in rendered and b"governance/dgc" in rendered


def _mounts_trustwire(container: dict[str, Any]) -> bool:
    return any(m["name"] == names.VOLUME_NAME for m in container.get("volumeMounts") or [])


async def test_quickstart_acceptance(cluster: Cluster) -> None:
    """What the README tells a user to run, and what they then see."""
    quickstart = EXAMPLES / "quickstart"
    for namespace in sorted(_namespaces(_documents(quickstart))):
        await cluster.ensure_namespace(namespace)
    await kubectl(cluster.plane, "apply", "-f", f"{quickstart}/")
    await kubectl(cluster.plane, "wait", "--for=condition=Ready", "sid", "--all", "-A", "--timeout=60s")
    await kubectl(cluster.plane, "wait", "--for=condition=Ready", "trust", "--all", "-A", "--timeout=60s")
    for namespace, name in (("governance", "dgc"), ("jobs", "jobserver")):
        sid = await cluster.wait_for("ServiceIdentity", namespace, name,
                                     lambda b: bool(((b or {}).get("status") or {}).get("rolledOut")),
                                     timeout=60.0, what="to report its workload rolled out")
        assert sid is not None
        await kubectl(cluster.plane, "rollout", "status", f"deployment/{name}", "-n", namespace, "--timeout=60s")
        workload = await cluster.get("Deployment", namespace, name)
        assert workload is not None
        template = workload["spec"]["template"]["metadata"]
        assert template["annotations"][names.MATERIAL_HASH_ANNOTATION] == sid["status"]["materialHash"]
        assert workload["status"]["availableReplicas"] == 1
        assert workload["status"]["observedGeneration"] == workload["metadata"]["generation"]
        pods = json.loads(await kubectl(cluster.plane, "get", "pods", "-n", namespace, "-l", f"app={name}",
                                        "-o", "json"))["items"]
        running = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        assert [p["metadata"]["annotations"][names.MATERIAL_HASH_ANNOTATION] for p in running] == [
            sid["status"]["materialHash"]]


# ---- kstatus: what Argo CD and Flux conclude --------------------------------------------------
async def test_kstatus_says_current_for_ready_objects(cluster: Cluster) -> None:
    await _ready_pair(cluster)
    verdicts = await kstatus(cluster.plane, "sid,trust", "-n", NS)
    assert {k: v["status"] for k, v in verdicts.items()} == {
        "ServiceIdentity/alpha": "Current", "ServiceIdentity/beta": "Current",
        "TrustRelationship/alpha-beta": "Current"}


async def test_kstatus_says_in_progress_while_a_workload_is_missing(cluster: Cluster) -> None:
    await cluster.apply(identity("app", NS, workloads=[{"kind": "Deployment", "name": "app"}]))
    await cluster.wait_condition("ServiceIdentity", NS, "app", "WorkloadsReady", "False", reason="WorkloadNotFound")
    verdict = (await kstatus(cluster.plane, "sid/app", "-n", NS))["ServiceIdentity/app"]
    assert verdict["status"] == "InProgress", verdict
    assert "WorkloadsReady" in verdict["message"] and f"Deployment {NS}/app" in verdict["message"], verdict

    await cluster.apply(deployment("app", NS))
    await cluster.wait_condition("ServiceIdentity", NS, "app", "Ready", timeout=60.0)
    assert (await kstatus(cluster.plane, "sid/app", "-n", NS))["ServiceIdentity/app"]["status"] == "Current"


async def test_kstatus_says_failed_when_a_human_must_act(cluster: Cluster) -> None:
    """An identity stalled on a name clash, and a relationship whose spec only the operator can
    refuse (the CRD's rules refuse the rest at admission): it names the same identity twice,
    once by the relationship's own namespace."""
    await cluster.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                         "metadata": {"name": names.trust_secret("bad"), "namespace": NS}, "data": {}})
    await cluster.apply(identity("bad", NS))
    await cluster.apply(relationship("bad-rel", NS, ("bad", None), ("bad", NS)))
    await cluster.wait_condition("ServiceIdentity", NS, "bad", "Stalled", reason="NameConflict")
    await cluster.wait_condition("TrustRelationship", NS, "bad-rel", "Stalled", reason="InvalidSpec")
    verdicts = await kstatus(cluster.plane, "sid,trust", "-n", NS)
    assert {k: v["status"] for k, v in verdicts.items()} == {
        "ServiceIdentity/bad": "Failed", "TrustRelationship/bad-rel": "Failed"}
    assert f"Secret {NS}/{names.trust_secret('bad')}" in verdicts["ServiceIdentity/bad"]["message"]
    assert "spec.between[1]" in verdicts["TrustRelationship/bad-rel"]["message"]


async def test_kstatus_says_in_progress_until_the_operator_observes_a_spec_change(cluster: Cluster) -> None:
    await cluster.apply(identity("alpha", NS))
    await cluster.wait_condition("ServiceIdentity", NS, "alpha", "Ready")
    await cluster.settle()

    def operator_unreachable(request: Recorded) -> Fault | None:
        return Fault(status=503) if request.user_agent.startswith(OPERATOR_AGENT) else None

    cluster.proxy.fault = operator_unreachable
    changed = await cluster.apply(identity("alpha", NS, dnsNames=["alpha.example.com"]))
    assert changed["metadata"]["generation"] == 2 and changed["status"]["observedGeneration"] == 1
    verdict = (await kstatus(cluster.plane, "sid/alpha", "-n", NS))["ServiceIdentity/alpha"]
    assert verdict["status"] == "InProgress", verdict
    assert "generation is 2" in verdict["message"], verdict

    cluster.proxy.fault = None
    await cluster.wait_for("ServiceIdentity", NS, "alpha",
                           lambda b: ((b or {}).get("status") or {}).get("observedGeneration") == 2,
                           timeout=30.0, what="to observe generation 2")
    await cluster.wait_condition("ServiceIdentity", NS, "alpha", "Ready")
    assert (await kstatus(cluster.plane, "sid/alpha", "-n", NS))["ServiceIdentity/alpha"]["status"] == "Current"
