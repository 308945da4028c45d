"""RBAC matches use, both ways: the Helm chart grants exactly what the operator really does.

The real operator (its controller, leader election on the chart's Lease) runs with a
TokenRequest token of a ServiceAccount the chart's RBAC binds, through the journaling proxy, so
the real RBAC authorizer of the real apiserver judges every request it makes. Once per RBAC mode
of the chart — cluster-wide (``rbac.mode=cluster``, the session's install) and namespaced
(``rbac.mode=namespaced``, ``rbac.namespaces=[team-a, team-b]``, installed here under its own
name) — a representative scenario runs and:

- nothing used is missing: the journal holds no 403 and the scenario converges;
- nothing granted is unused: every granted (verb, group, resource) is among the operator's
  journaled requests, each turned into the RBAC request it is authorized as (verb, API group,
  resource[/subresource], namespace, name);
- no wildcards and no ``nonResourceURLs`` in any rendered Role or ClusterRole.

And each rule is needed: for every distinct (verb, group, resource) the chart grants, a copy of
the chart's RBAC without that one verb is installed under a name of its own (``fullnameOverride``:
its own ServiceAccount, roles, bindings and Lease, so no case touches another's objects or the
session's install), the operator runs with that copy's token through a short scenario that uses
every rule, and the real apiserver refuses exactly that verb on that resource — and nothing else.
Both modes take their rules from one table in the chart (``trustwire.rbac.ruleTable``), so each
rule is cut in cluster mode.

Discovery requests (``/api``, ``/apis``, ``/api/v1``, ``/apis/<group>/<version>``) name no
resource: RBAC calls them nonResourceURLs, and Kubernetes allows them to every authenticated
user through the default ``system:discovery`` ClusterRole. The operator makes none (it knows
the resources it serves); should one appear, it is excluded here and asserted to be a plain GET
of a discovery path, so nothing else hides among them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any, NamedTuple

import pytest

from tests.chart.rbac import DEFAULT_WATCHED_NAMESPACES, LEASE_NAME, RELEASE_NAMESPACE, rendered_rbac_rules
from tests.chart.render import is_aggregated
from tests.cluster.controlplane import ControlPlane
from tests.cluster.fixtures import OperatorAccess, render_chart, service_account_of
from tests.cluster.proxy import ApiProxy, Recorded, running_proxy
from tests.integration.conftest import clean_namespaces, operator_config
from tests.integration.harness import (
    NAMESPACES,
    OPERATOR_AGENT,
    Cluster,
    condition,
    deployment,
    enrollment,
    identity,
    relationship,
    until,
)
from trustwire import names
from trustwire.k8s.client import Client
from trustwire.k8s.errors import ApiError
from trustwire.k8s.resources import IDENTITIES, LEASES, RELATIONSHIPS, Resource
from trustwire.runtime import OperatorOptions, running_operator

pytestmark = pytest.mark.integration

TEAM_A, TEAM_B = DEFAULT_WATCHED_NAMESPACES  # the namespaces the chart's namespaced mode serves
Rule = tuple[str, str, str]  # (verb, API group, resource)
RBAC_KINDS = {"ServiceAccount": Resource("", "v1", "serviceaccounts", "ServiceAccount"),
              "Role": Resource("rbac.authorization.k8s.io", "v1", "roles", "Role"),
              "RoleBinding": Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
              "ClusterRole": Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole",
                                      namespaced=False),
              "ClusterRoleBinding": Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings",
                                             "ClusterRoleBinding", namespaced=False)}
SUBJECT_ACCESS_REVIEWS = Resource("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview",
                                  namespaced=False)


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
    def rule(self) -> Rule:
        return self.verb, self.group, self.resource


def _located(path: str) -> tuple[str, list[str]] | None:
    """(API group, the path after the version) of a resource request; None for discovery."""
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) > 2:
        return "", parts[2:]
    if parts[0] == "apis" and len(parts) > 3:
        return parts[1], parts[3:]
    return None


def is_discovery(request: Recorded) -> bool:
    """A nonResourceURL: /api, /apis, /api/v1 or /apis/<group>/<version> (no resource named)."""
    return _located(request.path) is None


def _verb(request: Recorded, named: bool) -> str:
    method = request.method.upper()
    if method == "GET":
        return "watch" if request.is_watch else "get" if named else "list"
    if method == "DELETE":
        return "delete" if named else "deletecollection"
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch"}
    if method not in verbs:
        raise ValueError(f"cannot map {method} {request.path} to an RBAC verb")
    return verbs[method]


def rbac_use(request: Recorded) -> Use:
    """The RBAC request an API request is authorized as (the apiserver's RequestInfo)."""
    located = _located(request.path)
    if located is None:
        raise ValueError(f"{request.path} names no resource")
    group, rest = located
    namespace = None
    if rest[0] == "namespaces" and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    name = rest[1] if len(rest) > 1 else None
    resource = "/".join([rest[0], *rest[2:]])
    verb = _verb(request, name is not None)
    selector = request.params.get("fieldSelector", "")
    if name is None and verb in ("list", "watch") and selector.startswith("metadata.name="):
        name = selector.removeprefix("metadata.name=")  # a list/watch of one object carries its name
    return Use(verb, group, resource, namespace, name)


def operator_uses(requests: Iterable[Recorded]) -> tuple[set[Use], list[str]]:
    """The operator's RBAC requests, and its discovery paths (excluded from RBAC)."""
    uses: set[Use] = set()
    discovery: list[str] = []
    for request in requests:
        assert request.user_agent.startswith(OPERATOR_AGENT), \
            f"a request from an unknown client: {request.user_agent!r} {request.path}"
        if is_discovery(request):
            assert request.method == "GET" and request.path.startswith(("/api", "/apis")), request.path
            discovery.append(request.path)
            continue
        uses.add(rbac_use(request))
    return uses, discovery


def refusals(requests: Iterable[Recorded]) -> list[str]:
    """What the real RBAC authorizer refused, as the RBAC request and the server's message."""
    return [f"refused: {_describe(r)}: {(r.error or {}).get('message')}" for r in requests if r.status == 403]


def refused_rules(requests: Iterable[Recorded]) -> set[Rule | str]:
    """The rules of the refused requests (a refused discovery request: its path)."""
    return {r.path if is_discovery(r) else rbac_use(r).rule for r in requests if r.status == 403}


def _describe(request: Recorded) -> str:
    if is_discovery(request):
        return f"{request.method} {request.path}"
    use = rbac_use(request)
    return (f"{use.verb} {use.group or 'core'}/{use.resource} in {use.namespace or '(cluster)'}"
            + (f" name={use.name}" if use.name else ""))


# ==============================================================================================
# The chart's RBAC
# ==============================================================================================
def rbac_objects(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ServiceAccount, roles and bindings among the chart's objects, in creation order."""
    order = list(RBAC_KINDS)
    return sorted((o for o in objects if o["kind"] in RBAC_KINDS), key=lambda o: order.index(o["kind"]))


def granted_rules(objects: Iterable[dict[str, Any]]) -> set[Rule]:
    return {(verb, group, resource) for role in objects if role["kind"] in {"Role", "ClusterRole"}
            for rule in role.get("rules") or [] for verb in rule["verbs"] for group in rule["apiGroups"]
            for resource in rule["resources"]}


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


def rbac_findings(requests: list[Recorded], granted: set[Rule], objects: Iterable[dict[str, Any]] = ()) -> list[str]:
    """Everything wrong between what was used and what is granted; [] when they match exactly."""
    uses, _ = operator_uses(requests)
    used = {u.rule for u in uses}
    unused = [f"unused: {verb} {group or 'core'}/{resource}" for verb, group, resource in sorted(granted - used)]
    return refusals(requests) + unused + wildcards(objects)


def rule_table(uses: set[Use]) -> str:
    rows: dict[tuple[str, str], set[str]] = {}
    for use in uses:
        rows.setdefault((use.group or '""', use.resource), set()).add(use.verb)
    order = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]
    return "\n".join(f"{group:24} {resource:28} {', '.join(sorted(verbs, key=order.index))}"
                     for (group, resource), verbs in sorted(rows.items()))


def without(objects: list[dict[str, Any]], removed: Rule) -> list[dict[str, Any]]:
    """A copy of the chart's objects whose roles grant everything but ``removed``."""
    verb, group, resource = removed
    copies = copy.deepcopy(objects)
    for role in copies:
        if role["kind"] not in {"Role", "ClusterRole"}:
            continue
        rules: list[dict[str, Any]] = []
        for rule in role.get("rules") or []:
            if verb not in rule["verbs"] or group not in rule["apiGroups"] or resource not in rule["resources"]:
                rules.append(rule)
                continue
            others = [r for r in rule["resources"] if r != resource]
            rest = [v for v in rule["verbs"] if v != verb]
            rules += [{**rule, "resources": others}] if others else []
            rules += [{**rule, "resources": [resource], "verbs": rest}] if rest else []
        role["rules"] = rules
    assert removed not in granted_rules(copies) and granted_rules(copies) | {removed} == granted_rules(objects)
    return copies


def _values(fullname: str, mode: str) -> dict[str, Any]:
    """The chart's values for `mode`, every object (and the Lease) named after `fullname`."""
    # Without the users' aggregated view/edit roles: they grant people, not the operator.
    rbac: dict[str, Any] = {"mode": mode, "aggregateClusterRoles": False}
    if mode == "namespaced":
        rbac["namespaces"] = list(DEFAULT_WATCHED_NAMESPACES)
    return {"fullnameOverride": fullname, "rbac": rbac}


@contextlib.asynccontextmanager
async def installed(plane: ControlPlane, admin: Client, objects: list[dict[str, Any]]) -> AsyncIterator[
        OperatorAccess]:
    """The chart's ServiceAccount and RBAC objects, installed until the block ends; a token of
    that ServiceAccount, once the authorizer has seen its roles bound."""
    created = []
    try:
        for body in rbac_objects(objects):
            kind = RBAC_KINDS[body["kind"]]
            await admin.create(kind, body["metadata"].get("namespace"), body)
            created.append(body)
        namespace, name = service_account_of(objects)
        await _authorizer_sees(admin, namespace, name, objects)
        yield OperatorAccess(namespace, name, plane.service_account_token(namespace, name))
    finally:
        for body in reversed(created):
            await admin.delete(RBAC_KINDS[body["kind"]], body["metadata"].get("namespace"), body["metadata"]["name"])


async def _authorizer_sees(admin: Client, namespace: str, name: str, objects: list[dict[str, Any]]) -> None:
    """Until one rule of every role is allowed to the ServiceAccount (the authorizer learns of new
    roles and bindings from its informers, a moment after they are created)."""
    user = {"user": f"system:serviceaccount:{namespace}:{name}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]}
    for role in objects:
        if role["kind"] not in {"Role", "ClusterRole"} or not role.get("rules"):
            continue
        rule = role["rules"][0]
        resource, _, subresource = rule["resources"][0].partition("/")
        attributes = {"verb": rule["verbs"][0], "group": rule["apiGroups"][0], "resource": resource,
                      "subresource": subresource, "namespace": role["metadata"].get("namespace", ""),
                      "name": (rule.get("resourceNames") or [""])[0]}
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": {**user, "resourceAttributes": attributes}}
        for _ in range(100):
            if (await admin.create(SUBJECT_ACCESS_REVIEWS, None, review))["status"].get("allowed"):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"{role['kind']} {role['metadata']['name']} is not in force for {user['user']}")


async def _namespaces(admin: Client) -> None:
    """Where the chart's objects live: the release namespace and, in namespaced mode, the
    served namespaces (their Roles)."""
    for namespace in (RELEASE_NAMESPACE, *DEFAULT_WATCHED_NAMESPACES):
        try:
            await admin.create(NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": namespace}})
        except ApiError as exc:
            if exc.status != 409:
                raise


# ==============================================================================================
# Running the operator
# ==============================================================================================
def _options(lease: str, namespaces: tuple[str, ...] = ()) -> OperatorOptions:
    return OperatorOptions(lease=lease, identity="op", namespaces=namespaces,
                           workers=4, resync_interval=3600.0, lease_seconds=3.0, renew_seconds=0.3)


@contextlib.asynccontextmanager
async def operating(plane: ControlPlane, admin: Client, access: OperatorAccess,
                    options: OperatorOptions) -> AsyncIterator[Cluster]:
    """The operator with ``access``'s token through a proxy of its own, from the start of its Lease."""
    assert options.lease is not None
    namespace, _, lease = options.lease.partition("/")
    await admin.delete(LEASES, namespace, lease)
    try:
        async with running_proxy(plane.server, str(plane.dir / "ca.crt")) as proxy, \
                running_operator(operator_config(proxy, access), options) as controller:
            yield Cluster(plane, admin, controller, proxy)
    finally:
        await admin.delete(LEASES, namespace, lease)


async def _lead(cluster: Cluster) -> None:
    election = cluster.controller.election
    assert election is not None
    await asyncio.wait_for(election.leading.wait(), 10)


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

    # an Enrollment of an identity without an enrollment CA: its status says so
    await cluster.apply(enrollment("erp", TEAM_A, "dgc"))
    await cluster.wait_condition("Enrollment", TEAM_A, "erp", "Enrolled", "False", reason="EnrollmentNotEnabled")

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
    public = await cluster.get("ConfigMap", TEAM_A, names.public_configmap("dgc"))
    await cluster.apply(_dgc(deployments[:1], annotations={names.ROTATE_ANNOTATION: "jwt:1"}))
    await cluster.wait_for("ServiceIdentity", TEAM_A, "dgc",
                           lambda b: ((b or {}).get("status", {}).get("rotation") or {}).get("handledRequest")
                           == "jwt:1", what="to handle the rotation request")
    await cluster.wait_for("ConfigMap", TEAM_A, names.public_configmap("dgc"),
                           lambda b: (b or {}).get("data") != (public or {}).get("data"),
                           what="to publish the next JWT key")
    await cluster.settle()

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


async def _converges(cluster: Cluster) -> None:
    """The scenario, then what it left behind removed while the operator still runs."""
    await _lead(cluster)
    try:
        await run_scenario(cluster)
    finally:
        await clean_namespaces(cluster.plane, cluster.client, cluster.namespaces)


# ==============================================================================================
# Both ways, in both modes
# ==============================================================================================
async def test_cluster_mode_grants_exactly_what_the_operator_uses(
        control_plane: ControlPlane, admin: Client, chart_objects: list[dict[str, Any]],
        operator_access: OperatorAccess) -> None:
    objects = [o for o in chart_objects if not is_aggregated(o)]  # the users' roles, not the operator's
    await _authorizer_sees(admin, operator_access.namespace, operator_access.service_account, objects)
    lease = f"{RELEASE_NAMESPACE}/{LEASE_NAME}"  # what the chart passes as --lease
    async with operating(control_plane, admin, operator_access, _options(lease)) as cluster:
        await _converges(cluster)
    _assert_exact(cluster.proxy.journal, objects, "cluster", LEASE_NAME)


async def test_namespaced_mode_grants_exactly_what_the_operator_uses(
        control_plane: ControlPlane, admin: Client) -> None:
    await _namespaces(admin)
    objects = render_chart(_values("trustwire-namespaced", "namespaced"))
    async with installed(control_plane, admin, objects) as access:
        lease = f"{RELEASE_NAMESPACE}/trustwire-namespaced"
        async with operating(control_plane, admin, access, _options(lease, DEFAULT_WATCHED_NAMESPACES)) as cluster:
            await _converges(cluster)
    _assert_exact(cluster.proxy.journal, objects, "namespaced", "trustwire-namespaced")
    uses, _ = operator_uses(cluster.proxy.journal)
    # nothing outside the served namespaces, nothing cluster-wide
    assert {u.namespace for u in uses if u.resource != "leases"} == {TEAM_A, TEAM_B}


def _assert_exact(journal: list[Recorded], objects: list[dict[str, Any]], mode: str, lease: str) -> None:
    granted = granted_rules(objects)
    assert granted == rendered_rbac_rules(mode), "what was installed is the chart's RBAC for the mode"
    uses, _ = operator_uses(journal)
    findings = rbac_findings(journal, granted, objects)
    assert findings == [], "\n".join([*findings, "", f"used in {mode} mode:", rule_table(uses)])
    # the Lease only in the release namespace, by name (create names no object)
    assert {(u.verb, u.namespace, u.name) for u in uses if u.resource == "leases"} == {
        ("get", RELEASE_NAMESPACE, lease), ("create", RELEASE_NAMESPACE, None), ("patch", RELEASE_NAMESPACE, lease)}


# ==============================================================================================
# Remove one rule → the real apiserver refuses it
# ==============================================================================================
async def every_verb(cluster: Cluster) -> None:
    """The shortest run that uses every rule the chart grants: a pair with a shared secret, a
    rendered template and all three workload kinds wired, one rotation (patches the published
    key), and a deletion with ``deletionPolicy: Delete`` (deletes its Secrets and ConfigMap)."""
    kinds = ("Deployment", "StatefulSet", "DaemonSet")
    await cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tpl", "namespace": TEAM_A},
                         "data": {"props": "{% for p in peers %}{{ p.identity }}\n{% endfor %}"}})
    for kind in kinds:
        await cluster.apply(deployment(kind.lower(), TEAM_A, kind=kind))

    def alpha(**metadata: Any) -> dict[str, Any]:
        body = identity("alpha", TEAM_A, deletionPolicy="Delete",
                        workloads=[{"kind": kind, "name": kind.lower()} for kind in kinds],
                        templates=[{"name": "peers.txt", "configMapRef": {"name": "tpl", "key": "props"}}])
        body["metadata"].update(metadata)
        return body

    await cluster.apply(alpha())
    await cluster.apply(enrollment("erp", TEAM_A, "alpha"))
    await cluster.apply(identity("beta", TEAM_A))
    await cluster.apply(relationship("alpha-beta", TEAM_A, ("alpha", None), ("beta", None),
                                     sharedSecret={"enabled": True}))
    await cluster.wait_condition("TrustRelationship", TEAM_A, "alpha-beta", "Ready")
    await cluster.wait_condition("ServiceIdentity", TEAM_A, "alpha", "WorkloadsReady", reason="Wired")
    await cluster.wait_condition("Enrollment", TEAM_A, "erp", "Enrolled", "False", reason="EnrollmentNotEnabled")
    public = await cluster.get("ConfigMap", TEAM_A, names.public_configmap("alpha"))
    await cluster.apply(alpha(annotations={names.ROTATE_ANNOTATION: "jwt:1"}))
    await cluster.wait_for("ConfigMap", TEAM_A, names.public_configmap("alpha"),
                           lambda b: (b or {}).get("data") != (public or {}).get("data"),
                           what="to publish the next JWT key")
    await cluster.delete("ServiceIdentity", TEAM_A, "alpha")
    await cluster.wait_for("ServiceIdentity", TEAM_A, "alpha", lambda b: b is None, what="to be deleted")


async def _until_refused(proxy: ApiProxy, rule: Rule) -> None:
    # the whole journal every time: a request is journaled before its answer (its status) arrives
    await until(lambda: any(r.status == 403 and not is_discovery(r) and rbac_use(r).rule == rule
                            for r in proxy.journal),
                f"the apiserver to refuse {_rule_id(rule)}", timeout=REFUSAL_SECONDS, interval=0.05)


async def _run_until_refused(cluster: Cluster, rule: Rule) -> None:
    """The scenario, until the apiserver refuses ``rule`` (from then on it cannot converge)."""
    scenario = asyncio.create_task(every_verb(cluster))
    refused = asyncio.create_task(_until_refused(cluster.proxy, rule))
    try:
        done, _ = await asyncio.wait({scenario, refused}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (scenario, refused):
            task.cancel()
        await asyncio.gather(scenario, refused, return_exceptions=True)
    if refused in done:
        refused.result()  # a timeout is no refusal
    else:
        scenario.result()  # why the scenario stopped, if it failed before any refusal
        raise AssertionError(f"the scenario converged without {_rule_id(rule)}: nothing refused it")


async def _remove_leftovers(cluster: Cluster) -> None:
    """The operator that lacked a rule may have left its finalizers: drop them, then clean up."""
    for resource in (IDENTITIES, RELATIONSHIPS):
        for namespace in cluster.namespaces:
            for body in await cluster.client.list(resource, namespace):
                await cluster.client.merge_patch(resource, namespace, body["metadata"]["name"],
                                                 {"metadata": {"finalizers": None}})
    await clean_namespaces(cluster.plane, cluster.client, cluster.namespaces)


def _rule_id(rule: Rule) -> str:
    verb, group, resource = rule
    return f"{verb} {group or 'core'}/{resource}"


#: how long the scenario may run before the removed rule must have been refused (the
#: scenario's own waits end sooner; converging without a refusal fails on its own)
REFUSAL_SECONDS = 240.0
CLUSTER_RULES = rendered_rbac_rules("cluster")
#: every distinct rule of both modes; the ones only namespaced mode grants are cut from it
CUT_RULES = sorted(CLUSTER_RULES | rendered_rbac_rules("namespaced"))


@pytest.mark.parametrize("rule", CUT_RULES, ids=lambda rule: "-".join(rule).replace("--", "-core-"))
async def test_without_any_one_rule_the_apiserver_refuses_it(control_plane: ControlPlane, admin: Client,
                                                             rule: Rule) -> None:
    mode = "cluster" if rule in CLUSTER_RULES else "namespaced"
    served = () if mode == "cluster" else DEFAULT_WATCHED_NAMESPACES
    fullname = f"trustwire-cut-{CUT_RULES.index(rule)}"
    await _namespaces(admin)
    objects = without(render_chart(_values(fullname, mode)), rule)
    async with installed(control_plane, admin, objects) as access:
        async with operating(control_plane, admin, access,
                             _options(f"{RELEASE_NAMESPACE}/{fullname}", served)) as cluster:
            try:
                await _run_until_refused(cluster, rule)
            finally:
                journal = list(cluster.proxy.journal)
        await _remove_leftovers(cluster)
    assert refused_rules(journal) == {rule}, refusals(journal)


# ==============================================================================================
# The checker itself
# ==============================================================================================
def _recorded(method: str, path: str, params: dict[str, str] | None = None, status: int = 200) -> Recorded:
    return Recorded(method, path, params or {}, "trustwire-operator/op", None, status=status)


def test_requests_map_to_rbac_verbs_and_discovery_is_excluded() -> None:
    uses, discovery = operator_uses([
        _recorded("GET", "/apis"),
        _recorded("GET", "/apis/apps/v1"),
        _recorded("GET", "/api/v1/namespaces/a/secrets"),
        _recorded("GET", "/api/v1/namespaces/a/secrets", {"watch": "true"}),
        _recorded("GET", "/api/v1/namespaces/a/secrets/s"),
        _recorded("POST", "/api/v1/namespaces/a/events"),
        _recorded("PATCH", "/apis/trustwire.io/v1alpha1/namespaces/a/serviceidentities/x/status"),
        _recorded("PUT", "/apis/apps/v1/namespaces/a/deployments/d"),
        _recorded("DELETE", "/api/v1/namespaces/a/configmaps/c"),
        _recorded("DELETE", "/api/v1/namespaces/a/configmaps"),
        _recorded("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"),
        _recorded("GET", "/api/v1/namespaces", {"watch": "1"}),
        _recorded("GET", "/api/v1/namespaces/a"),
        _recorded("GET", "/apis/coordination.k8s.io/v1/namespaces/s/leases", {"fieldSelector": "metadata.name=l"}),
    ])
    assert discovery == ["/apis", "/apis/apps/v1"]
    assert uses == {
        Use("list", "", "secrets", "a", None), Use("watch", "", "secrets", "a", None),
        Use("get", "", "secrets", "a", "s"), Use("create", "", "events", "a", None),
        Use("patch", "trustwire.io", "serviceidentities/status", "a", "x"),
        Use("update", "apps", "deployments", "a", "d"), Use("delete", "", "configmaps", "a", "c"),
        Use("deletecollection", "", "configmaps", "a", None),
        Use("list", "apiextensions.k8s.io", "customresourcedefinitions", None, None),
        Use("watch", "", "namespaces", None, None), Use("get", "", "namespaces", None, "a"),
        Use("list", "coordination.k8s.io", "leases", "s", "l"),
    }
    # a request from a client other than the operator is not silently skipped
    stranger = Recorded("GET", "/api/v1/secrets", {}, "curl/8", None)
    with pytest.raises(AssertionError, match="unknown client"):
        operator_uses([stranger])


def test_the_checker_reports_refusals_unused_rules_and_wildcards() -> None:
    requests = [_recorded("GET", "/apis"), _recorded("GET", "/api/v1/namespaces/a/secrets/s"),
                _recorded("PATCH", "/api/v1/namespaces/a/secrets/s")]
    granted = {("get", "", "secrets"), ("patch", "", "secrets")}
    assert rbac_findings(requests, granted) == []
    assert rbac_findings(requests, granted | {("delete", "apps", "deployments")}) == [
        "unused: delete apps/deployments"]
    refused = _recorded("POST", "/api/v1/namespaces/a/events", status=403)
    refused.error = {"message": "events is forbidden"}
    assert rbac_findings([*requests, refused], granted) == [
        "refused: create core/events in a: events is forbidden"]
    star = {"kind": "ClusterRole", "metadata": {"name": "x"},
            "rules": [{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}]}
    assert rbac_findings(requests, granted, [star]) == ["ClusterRole x: wildcard in resources: ['*']"]


def test_a_cut_removes_exactly_one_verb_of_one_resource() -> None:
    objects = render_chart(_values("trustwire", "cluster"))
    for rule in CLUSTER_RULES:
        assert granted_rules(without(objects, rule)) == CLUSTER_RULES - {rule}
    (leader,) = [o for o in without(objects, ("get", "coordination.k8s.io", "leases")) if o["kind"] == "Role"]
    assert [(r["verbs"], r.get("resourceNames")) for r in leader["rules"]] == [
        (["create"], None), (["patch"], [LEASE_NAME])]
    (cluster_role,) = [o for o in without(objects, ("patch", "apps", "statefulsets")) if o["kind"] == "ClusterRole"]
    apps = [(r["resources"], r["verbs"]) for r in cluster_role["rules"] if r["apiGroups"] == ["apps"]]
    assert apps == [(["deployments", "daemonsets"], ["get", "list", "watch", "patch"]),
                    (["statefulsets"], ["get", "list", "watch"])]
