"""RBAC matches use, both ways: the Helm chart grants exactly what the operator really does.

One representative scenario runs against the API emulator with the real operator (kopf + our
controller, leader election on the chart's Lease), once per RBAC mode of the chart: cluster-wide
(``--all-namespaces``) and namespaced (``--namespace team-a --namespace team-b``). Every request
the operator made is taken from the emulator's request log (``Cluster.operator_requests()``: the
operator's client says ``trustwire-operator/...``, kopf says ``kopf/...``), turned into an RBAC
request
(verb, API group, resource[/subresource], namespace, name) and checked against what
``tests/chart/rbac.py`` renders for that mode with the real Helm engine:

- nothing used is missing: every request is allowed by a grant for its namespace (a Role's
  namespace, or a ClusterRole) and, where a rule lists ``resourceNames``, its name;
- nothing granted is unused: every granted (verb, group, resource) was used by the run;
- no wildcards and no ``nonResourceURLs`` in any rendered Role or ClusterRole.

Discovery requests (``/api``, ``/apis``, ``/api/v1``, ``/apis/<group>/<version>``) name no
resource: RBAC calls them nonResourceURLs, and Kubernetes allows them to every authenticated
user through the default ``system:discovery`` ClusterRole. They are excluded here (and asserted
to be plain GETs of discovery paths, so nothing else hides among them).

The emulator cannot serve ``/api/v1/namespaces`` (its path parser reads ``namespaces`` as the
start of a namespaced path and fails; DESIGN §7). kopf lists and watches Namespaces when it
serves a list of namespaces, so the namespaced run parses those two paths correctly for the
emulator (``_emulator_serves_namespaces``) and creates the Namespace objects a cluster has.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import attrs
import kmock
import pytest
from kmock._internal import parsing as kmock_parsing

from tests.chart.rbac import (
    DEFAULT_WATCHED_NAMESPACES,
    LEASE_NAME,
    RELEASE_NAMESPACE,
    Grant,
    rendered_rbac_grants,
    rendered_rbac_objects,
)
from tests.integration.harness import Cluster, condition, deployment, identity, relationship
from trustwire import names
from trustwire.emulator import running_emulator
from trustwire.k8s.client import ApiConfig, Client, Resource
from trustwire.runtime import OperatorOptions, running_operator

pytestmark = pytest.mark.integration

TEAM_A, TEAM_B = DEFAULT_WATCHED_NAMESPACES  # the namespaces the chart's namespaced mode serves
LEASE = f"{RELEASE_NAMESPACE}/{LEASE_NAME}"  # what the chart passes as --lease
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
OPERATOR_AGENTS = ("trustwire-operator", "kopf/")
TEST_AGENT = "trustwire-tests"


# ==============================================================================================
# Requests → RBAC
# ==============================================================================================
class Use(NamedTuple):
    """One API request, as RBAC authorizes it."""

    verb: str
    group: str
    resource: str  # "plural" or "plural/subresource"
    namespace: str | None  # None: a cluster-scoped or all-namespaces request
    name: str | None

    @property
    def rule(self) -> tuple[str, str, str]:
        return self.verb, self.group, self.resource


_VERBS = {
    kmock.action.LIST: "list",
    kmock.action.WATCH: "watch",
    kmock.action.FETCH: "get",
    kmock.action.CREATE: "create",
    kmock.action.UPDATE: "patch",  # kmock's UPDATE is an HTTP PATCH
    kmock.action.DELETE: "delete",
}


def is_discovery(request: Any) -> bool:
    """A nonResourceURL: /api, /apis, /api/v1 or /apis/<group>/<version> (no resource named)."""
    return request.resource is None or request.resource.plural is None


def rbac_use(request: Any) -> Use:
    """The RBAC request an API request is authorized as."""
    method = str(getattr(request.method, "value", request.method)).upper()
    verb = _VERBS.get(request.action)
    if verb is None and method == "PUT":
        verb = "update"
    elif verb is None and method == "DELETE" and request.name is None:
        verb = "deletecollection"
    if verb is None:
        raise ValueError(f"cannot map {method} {request.url} (action {request.action}) to an RBAC verb")
    resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
    # a watch/get of one object by name is authorized with that name (fieldSelector or path)
    return Use(verb, request.resource.group or "", resource, request.namespace, request.name)


def operator_uses(requests: Iterable[Any]) -> tuple[set[Use], list[str]]:
    """The operator's RBAC requests, and its discovery paths (excluded from RBAC)."""
    uses: set[Use] = set()
    discovery: list[str] = []
    for request in requests:
        agent = str(request.headers.get("User-Agent", ""))
        if agent.startswith(TEST_AGENT):
            continue
        assert agent.startswith(OPERATOR_AGENTS), f"a request from an unknown client: {agent!r} {request.url}"
        if is_discovery(request):
            method = str(getattr(request.method, "value", request.method)).upper()
            assert method == "GET" and request.url.path.startswith(("/api", "/apis")), request.url
            discovery.append(request.url.path)
            continue
        uses.add(rbac_use(request))
    return uses, discovery


# ==============================================================================================
# The checker
# ==============================================================================================
def _allows(grant: Grant, use: Use) -> bool:
    verb, group, resource, where, name = grant
    return (
        (verb, group, resource) == use.rule
        and (where is None or where == use.namespace)  # a Role only acts inside its namespace
        and (name is None or name == use.name)  # resourceNames restrict to those names
    )


def wildcards(objects: Iterable[dict[str, Any]]) -> list[str]:
    found = []
    for role in objects:
        if role["kind"] not in {"Role", "ClusterRole"}:
            continue
        for rule in role.get("rules") or []:
            if "nonResourceURLs" in rule:
                found.append(f"{role['kind']} {role['metadata']['name']}: nonResourceURLs {rule['nonResourceURLs']}")
            for key in ("apiGroups", "resources", "verbs", "resourceNames"):
                if any("*" in item for item in rule.get(key) or []):
                    found.append(f"{role['kind']} {role['metadata']['name']}: wildcard in {key}: {rule[key]}")
    return found


def rbac_findings(uses: set[Use], grants: set[Grant], objects: Iterable[dict[str, Any]] = ()) -> list[str]:
    """Everything wrong between what was used and what is granted; [] when they match exactly."""
    findings = [
        f"missing: {u.verb} {u.group or 'core'}/{u.resource} in {u.namespace or '(cluster)'}"
        + (f" name={u.name}" if u.name else "")
        for u in sorted(uses, key=str)
        if not any(_allows(g, u) for g in grants)
    ]
    used_rules = {u.rule for u in uses}
    findings += [
        f"unused: {verb} {group or 'core'}/{resource} granted in {where or '(cluster)'}"
        for verb, group, resource, where, _ in sorted(grants, key=str)
        if (verb, group, resource) not in used_rules
    ]
    return findings + wildcards(objects)


def rule_table(uses: set[Use]) -> str:
    rows: dict[tuple[str, str], set[str]] = {}
    for use in uses:
        rows.setdefault((use.group or '""', use.resource), set()).add(use.verb)
    order = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]
    return "\n".join(f"{group:24} {resource:28} {', '.join(sorted(verbs, key=order.index))}"
                     for (group, resource), verbs in sorted(rows.items()))


# ==============================================================================================
# The emulator with Namespaces (what kopf lists and watches in namespaced mode)
# ==============================================================================================
@pytest.fixture
def _emulator_serves_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse /api/v1/namespaces[/<name>] as the cluster-scoped Namespace resource.

    kmock 0.8 reads it as the start of a namespaced path and answers 500 to kopf's namespace
    listing. Only the path parser of incoming requests is corrected; if kmock moves it, the
    monkeypatch fails loudly instead of silently testing something else.
    """
    original = kmock_parsing.parse_path

    def parse_path(path: str) -> Any:
        parts = path.strip("/").split("/")
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 4:
            return kmock_parsing.ParsedPath(group="", version="v1", plural="namespaces",
                                            name=parts[3] if len(parts) == 4 else None)
        return original(path)

    monkeypatch.setattr(kmock_parsing, "parse_path", parse_path)


# ==============================================================================================
# The scenario
# ==============================================================================================
def _b64(body: dict[str, Any] | None, key: str) -> bytes | None:
    value = ((body or {}).get("data") or {}).get(key)
    return base64.b64decode(value) if value is not None else None


def _wired_hash(body: dict[str, Any] | None) -> str | None:
    template = ((body or {}).get("spec") or {}).get("template") or {}
    return ((template.get("metadata") or {}).get("annotations") or {}).get(names.MATERIAL_HASH_ANNOTATION)


def _dgc(workloads: list[dict[str, str]], **metadata: Any) -> dict[str, Any]:
    body = identity(
        "dgc", TEAM_A, serviceName="dgc", workloads=workloads, deletionPolicy="Delete",
        templates=[{"name": "application.properties", "configMapRef": {"name": "dgc-template", "key": "props"}}])
    body["metadata"].update(metadata)
    return body


async def run_scenario(cluster: Cluster) -> None:
    """Everything the operator does in normal life, once: issue, distribute, wire, repair, rotate,
    unwire, revoke and clean up, across two namespaces."""
    deployments = [{"kind": "Deployment", "name": "dgc"}, {"kind": "StatefulSet", "name": "dgc-worker"}]
    await cluster.apply({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "dgc-template", "namespace": TEAM_A},
                         "data": {"props": "{% for p in peers %}peer.{{ p.identity }}={{ p.namespace }}\n"
                                           "{% endfor %}"}})
    await cluster.apply(deployment("dgc", TEAM_A))
    await cluster.apply(deployment("dgc-worker", TEAM_A, kind="StatefulSet"))
    await cluster.apply(deployment("jobserver", TEAM_B, kind="DaemonSet"))
    await cluster.apply(_dgc(deployments))
    # jobserver consents to relationships declared in team-a; Retain (the default) keeps its CA
    await cluster.apply(identity("jobserver", TEAM_B, acceptFrom={"namespaces": [TEAM_A]},
                                 workloads=[{"kind": "DaemonSet", "name": "jobserver"}]))
    await cluster.apply(relationship(
        "dgc-jobserver", TEAM_A, ("dgc", None), ("jobserver", TEAM_B), initiator="dgc",
        mtls={"enabled": True}, jwt={"enabled": True, "roles": ["IMPERSONATION"], "audience": "pf"},
        sharedSecret={"enabled": True}))

    rel = await cluster.wait_condition("TrustRelationship", TEAM_A, "dgc-jobserver", "Ready")
    assert condition(rel, "SharedSecretReady")["status"] == "True"  # type: ignore[index]
    await cluster.wait_condition("ServiceIdentity", TEAM_A, "dgc", "WorkloadsReady", reason="Wired")
    await cluster.wait_condition("ServiceIdentity", TEAM_A, "dgc", "TemplatesReady", reason="Rendered")
    await cluster.wait_condition("ServiceIdentity", TEAM_B, "jobserver", "WorkloadsReady", reason="Wired")
    for kind, namespace, name in (("Deployment", TEAM_A, "dgc"), ("StatefulSet", TEAM_A, "dgc-worker"),
                                  ("DaemonSet", TEAM_B, "jobserver")):
        assert _wired_hash(await cluster.get(kind, namespace, name)), f"{kind} {name} is wired"
    trust = await cluster.data("Secret", TEAM_B, names.trust_secret("jobserver"))
    assert [p["identity"] for p in json.loads(trust["peers.json"])] == ["dgc"]
    assert "shared-dgc.key" in trust
    await cluster.settle()

    # a workload leaves the spec → unwired
    await cluster.apply(_dgc(deployments[:1]))
    await cluster.wait_for("StatefulSet", TEAM_A, "dgc-worker", lambda b: _wired_hash(b) is None,
                           what="to be unwired")

    # a managed Secret is deleted → restored
    await cluster.delete("Secret", TEAM_B, names.trust_secret("jobserver"))
    await cluster.wait_for("Secret", TEAM_B, names.trust_secret("jobserver"), lambda b: b is not None,
                           what="to be restored")

    # manual rotation of the JWT key → the new key is published (public ConfigMap) and distributed
    kid = (await cluster.data("Secret", TEAM_A, names.credentials_secret("dgc")))["jwt.kid"]
    public = await cluster.get("ConfigMap", TEAM_A, names.public_configmap("dgc"))
    await cluster.apply(_dgc(deployments[:1], annotations={names.ROTATE_ANNOTATION: "jwt:1"}))
    await cluster.wait_for("ServiceIdentity", TEAM_A, "dgc",
                           lambda b: ((b or {}).get("status", {}).get("rotation") or {}).get("handledRequest")
                           == "jwt:1", what="to handle the rotation request")
    await cluster.wait_for("ConfigMap", TEAM_A, names.public_configmap("dgc"),
                           lambda b: (b or {}).get("data") != (public or {}).get("data"),
                           what="to publish the next JWT key")
    await cluster.settle()
    assert kid  # the rotation is recorded; whether the key is active yet depends on its gate

    # the relationship is deleted → the shared secret goes, both sides drop the peer
    await cluster.delete("TrustRelationship", TEAM_A, "dgc-jobserver")
    await cluster.wait_for("Secret", TEAM_A, names.shared_secret("dgc-jobserver"), lambda b: b is None,
                           what="to be deleted with its relationship")
    await cluster.wait_for("Secret", TEAM_B, names.trust_secret("jobserver"),
                           lambda b: json.loads(_b64(b, "peers.json") or b"null") == [],
                           what="to drop the peer")

    # identities are deleted: Delete removes the CA too, Retain keeps it; workloads are unwired
    await cluster.delete("ServiceIdentity", TEAM_A, "dgc")
    await cluster.delete("ServiceIdentity", TEAM_B, "jobserver")
    await cluster.wait_for("ServiceIdentity", TEAM_A, "dgc", lambda b: b is None, what="to be deleted")
    await cluster.wait_for("ServiceIdentity", TEAM_B, "jobserver", lambda b: b is None, what="to be deleted")
    assert await cluster.get("Secret", TEAM_A, names.ca_secret("dgc")) is None
    assert await cluster.get("Secret", TEAM_B, names.ca_secret("jobserver")) is not None
    assert await cluster.get("ConfigMap", TEAM_A, names.public_configmap("dgc")) is None
    assert _wired_hash(await cluster.get("Deployment", TEAM_A, "dgc")) is None
    assert _wired_hash(await cluster.get("DaemonSet", TEAM_B, "jobserver")) is None
    await cluster.settle()


async def _run(mode: str) -> set[Use]:
    """Run the scenario with the operator configured as the chart configures it in `mode`."""
    served = () if mode == "cluster" else DEFAULT_WATCHED_NAMESPACES
    options = OperatorOptions(lease=LEASE, identity="op", namespaces=served, workers=4, resync_interval=3600.0,
                              lease_seconds=3.0, renew_seconds=0.3)
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url), user_agent=TEST_AGENT) as client:
        for namespace in (RELEASE_NAMESPACE, TEAM_A, TEAM_B) if served else ():
            await client.create(NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace",
                                                   "metadata": {"name": namespace}})
        async with running_operator(ApiConfig(server=emu.url), options) as controller:
            assert controller.election is not None
            await asyncio.wait_for(controller.election.leading.wait(), 10)
            cluster = Cluster(emu.emulator, client, controller)
            await run_scenario(cluster)
            await asyncio.sleep(2 * options.renew_seconds)  # at least one renewal of the Lease
        # every request our client and kopf made (the harness knows where the emulator logs them)
        uses, discovery = operator_uses(cluster.operator_requests())
    assert discovery, "kopf discovers the API before it watches (else the exclusion is untested)"
    return uses


@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
@pytest.mark.usefixtures("_emulator_serves_namespaces")
async def test_the_chart_grants_exactly_what_the_operator_uses(mode: str) -> None:
    uses = await _run(mode)
    grants = rendered_rbac_grants(mode)
    objects = rendered_rbac_objects(mode)
    findings = rbac_findings(uses, grants, objects)
    assert findings == [], "\n".join([*findings, "", f"used in {mode} mode:", rule_table(uses)])

    # where it happened: the Lease only in the release namespace, by name; in namespaced mode
    # nothing outside the served namespaces but kopf's cluster-wide CRD and Namespace reads
    assert {(u.verb, u.namespace, u.name) for u in uses if u.resource == "leases"} == {
        ("get", RELEASE_NAMESPACE, LEASE_NAME), ("create", RELEASE_NAMESPACE, None),
        ("patch", RELEASE_NAMESPACE, LEASE_NAME)}
    if mode == "namespaced":
        assert {u.namespace for u in uses if u.resource != "leases"} == {None, TEAM_A, TEAM_B}
        assert {u.rule for u in uses if u.namespace is None} == {
            ("list", "apiextensions.k8s.io", "customresourcedefinitions"),
            ("watch", "apiextensions.k8s.io", "customresourcedefinitions"),
            ("list", "", "namespaces"), ("watch", "", "namespaces")}

    # the checker itself can fail: an extra grant, a missing one, a grant in the wrong namespace,
    # a wrong resourceName and a wildcard are all reported
    extra = ("delete", "apps", "deployments", None, None)
    assert rbac_findings(uses, grants | {extra}) == ["unused: delete apps/deployments granted in (cluster)"]
    secrets_patch = {g for g in grants if g[:3] == ("patch", "", "secrets")}
    assert [f for f in rbac_findings(uses, grants - secrets_patch) if f.startswith("missing: patch core/secrets")]
    lease_get = {g for g in grants if g[:3] == ("get", "coordination.k8s.io", "leases")}
    elsewhere = {("get", "coordination.k8s.io", "leases", TEAM_A, LEASE_NAME)}
    assert rbac_findings(uses, grants - lease_get | elsewhere) == [
        f"missing: get coordination.k8s.io/leases in {RELEASE_NAMESPACE} name={LEASE_NAME}"]
    other_name = {("get", "coordination.k8s.io", "leases", RELEASE_NAMESPACE, "someone-else")}
    assert rbac_findings(uses, grants - lease_get | other_name) == [
        f"missing: get coordination.k8s.io/leases in {RELEASE_NAMESPACE} name={LEASE_NAME}"]
    star = {"kind": "ClusterRole", "metadata": {"name": "x"},
            "rules": [{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}]}
    assert rbac_findings(uses, grants, [*objects, star]) == ["ClusterRole x: wildcard in resources: ['*']"]


def _requests(*specs: tuple[str, str, dict[str, str]]) -> Iterator[Any]:
    for i, (method, path, params) in enumerate(specs):
        parsed = kmock_parsing.parse_path(path)  # the parser kmock itself uses
        resource = None if parsed.group is None else kmock.resource(group=parsed.group, version=parsed.version,
                                                                    plural=parsed.plural)
        yield kmock.Request(id=i, method=method, url=f"http://emulator{path}", params=params,
                            headers={"User-Agent": "trustwire-operator/op"},
                            action=kmock_parsing.guess_k8s(parsed, kmock.method(method), params),
                            resource=resource, namespace=parsed.namespace, name=parsed.name,
                            subresource=parsed.subresource)


def test_requests_map_to_rbac_verbs_and_discovery_is_excluded() -> None:
    uses, discovery = operator_uses(_requests(
        ("GET", "/apis", {}),
        ("GET", "/apis/apps/v1", {}),
        ("GET", "/api/v1/namespaces/a/secrets", {}),
        ("GET", "/api/v1/namespaces/a/secrets", {"watch": "true"}),
        ("GET", "/api/v1/namespaces/a/secrets/s", {}),
        ("POST", "/api/v1/namespaces/a/events", {}),
        ("PATCH", "/apis/trustwire.io/v1alpha1/namespaces/a/serviceidentities/x/status", {}),
        ("PUT", "/apis/apps/v1/namespaces/a/deployments/d", {}),
        ("DELETE", "/api/v1/namespaces/a/configmaps/c", {}),
        ("DELETE", "/api/v1/namespaces/a/configmaps", {}),
        ("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", {}),
    ))
    assert discovery == ["/apis", "/apis/apps/v1"]
    assert uses == {
        Use("list", "", "secrets", "a", None), Use("watch", "", "secrets", "a", None),
        Use("get", "", "secrets", "a", "s"), Use("create", "", "events", "a", None),
        Use("patch", "trustwire.io", "serviceidentities/status", "a", "x"),
        Use("update", "apps", "deployments", "a", "d"), Use("delete", "", "configmaps", "a", "c"),
        Use("deletecollection", "", "configmaps", "a", None),
        Use("list", "apiextensions.k8s.io", "customresourcedefinitions", None, None),
    }
    # a request from a client that is neither ours, kopf's nor the test's is not silently skipped
    (stranger,) = _requests(("GET", "/api/v1/secrets", {}))
    with pytest.raises(AssertionError, match="unknown client"):
        operator_uses([attrs.evolve(stranger, headers={"User-Agent": "curl/8"})])
