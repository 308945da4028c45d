"""The chart renders, lints clean, and every object it renders is valid Kubernetes."""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from .render import (
    CHART_DIR,
    NAMESPACE,
    RELEASE,
    SCENARIOS,
    chart_crds,
    of_kind,
    one,
    render_notes,
    render_objects,
    validate_custom_resource,
    validate_strict,
)

SCENARIO_IDS = list(SCENARIOS)


@pytest.fixture(scope="module")
def crds() -> list[dict[str, Any]]:
    return chart_crds()


@pytest.fixture(scope="module", params=SCENARIO_IDS)
def scenario(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    values = SCENARIOS[request.param]
    return request.param, values, render_objects(values)


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any]
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def test_every_scenario_renders_the_core_objects(
    scenario: tuple[str, dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, values, objects = scenario
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "ServiceAccount", "Service", "PodDisruptionBudget"} <= kinds
    # the operator's own bindings: cluster-wide in cluster mode, per namespace otherwise
    if (values.get("rbac") or {}).get("create", True):
        namespaced = (values.get("rbac") or {}).get("mode") == "namespaced"
        assert ("RoleBinding" if namespaced else "ClusterRoleBinding") in kinds


@pytest.mark.parametrize("name", SCENARIO_IDS)
def test_lint_reports_no_errors_or_warnings(name: str) -> None:
    report = helm.lint(CHART_DIR, SCENARIOS[name], strict=True, namespace=NAMESPACE)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems


def test_every_rendered_object_passes_strict_kubernetes_validation(
    scenario: tuple[str, dict[str, Any], list[dict[str, Any]]], crds: list[dict[str, Any]]
) -> None:
    _, _, objects = scenario
    checked = 0
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            # Prometheus Operator kind, no schema in kubernetes_validate and no CRD shipped here:
            # checked field by field in test_servicemonitor_scrapes_the_metrics_service.
            continue
        else:
            validate_strict(obj)
        checked += 1
    assert checked >= 6


def test_every_crd_in_the_chart_passes_strict_kubernetes_validation(crds: list[dict[str, Any]]) -> None:
    names = {c["metadata"]["name"] for c in crds}
    assert names == {
        "enrollments.trustwire.io",
        "serviceidentities.trustwire.io",
        "trustrelationships.trustwire.io",
    }
    for crd in crds:
        validate_strict(crd)


def test_strict_validation_is_not_vacuous() -> None:
    """The validator used above really rejects an unknown field in a rendered object."""
    deployment = one(render_objects({}), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_strict(deployment)


def test_every_object_carries_the_standard_labels(
    scenario: tuple[str, dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, _, objects = scenario
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "trustwire", obj["kind"]
        assert labels.get("app.kubernetes.io/instance") == RELEASE, obj["kind"]
        assert labels.get("app.kubernetes.io/version") == "0.1.0", obj["kind"]
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", obj["kind"]


def test_namespaced_objects_land_in_the_release_namespace_or_a_served_one(
    scenario: tuple[str, dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, values, objects = scenario
    served = set(values.get("rbac", {}).get("namespaces", []))
    for obj in objects:
        if obj["kind"] in {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}:
            assert "namespace" not in obj["metadata"]
        elif obj["kind"] in {"Role", "RoleBinding"}:
            if obj["metadata"]["name"].endswith("-leader-election"):
                assert obj["metadata"]["namespace"] == NAMESPACE  # where the Lease lives
            else:
                assert obj["metadata"]["namespace"] in served
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]


# --- Deployment -------------------------------------------------------------------------------

COMMON_ARGS = [
    "--liveness",
    "http://0.0.0.0:8080/healthz",
    "--metrics-port",
    "9090",
    "--lease",
    "$(POD_NAMESPACE)/trustwire",
]


@pytest.mark.parametrize(
    ("name", "expected_args"),
    [
        ("default", ["run", "--all-namespaces", *COMMON_ARGS]),
        ("replicas-2", ["run", "--all-namespaces", *COMMON_ARGS]),
        ("namespaced", ["run", "--namespace", "team-a", "--namespace", "team-b", *COMMON_ARGS]),
        ("namespaced-replicas-2", ["run", "--namespace", "team-a", "--namespace", "team-b", *COMMON_ARGS]),
    ],
)
def test_operator_args_follow_the_values(name: str, expected_args: list[str]) -> None:
    objects = render_objects(SCENARIOS[name])
    container = _container(objects)
    assert "command" not in container, "the image ENTRYPOINT (trustwire) must stay in charge"
    assert container["args"] == expected_args
    assert one(objects, "Deployment")["spec"]["replicas"] == SCENARIOS[name].get("replicaCount", 1)


def _expand(arg: str, env: dict[str, str]) -> str:
    """What the kubelet does with `$(VAR)` in args (only variables defined in the container env)."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), arg)


@pytest.mark.parametrize("name", SCENARIO_IDS)
def test_trustwire_run_accepts_the_rendered_arguments(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real CLI parses what the chart passes (a removed flag such as --peering would fail here)."""
    from trustwire.cli import run

    container = _container(render_objects(SCENARIOS[name]))
    env = {e["name"]: e for e in container["env"]}
    # The downward API, as the kubelet would fill it for a pod of this Deployment.
    downward = {"metadata.name": "trustwire-5d9c7b-x2x9q", "metadata.namespace": NAMESPACE}
    values = {k: downward[e["valueFrom"]["fieldRef"]["fieldPath"]] for k, e in env.items() if "valueFrom" in e}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    args = [_expand(a, values) for a in container["args"]]
    assert args[0] == "run"
    ctx = run.make_context("run", args[1:])
    assert ctx.params["lease"] == f"{NAMESPACE}/trustwire"
    assert ctx.params["identity"] == "trustwire-5d9c7b-x2x9q", "POD_NAME names this replica in the Lease"
    assert ctx.params["standalone"] is False
    assert ctx.params["metrics_port"] == 9090
    namespaces = SCENARIOS[name].get("rbac", {}).get("namespaces", [])
    assert list(ctx.params["namespaces"]) == namespaces
    assert ctx.params["all_namespaces"] is (not namespaces)


def test_extra_args_are_appended() -> None:
    container = _container(render_objects({"extraArgs": ["--verbose"]}))
    assert container["args"][-1] == "--verbose"
    assert container["args"][0] == "run"


def test_image_defaults_to_app_version_and_follows_values() -> None:
    assert _container(render_objects({}))["image"] == "ghcr.io/trustwire/trustwire:0.1.0"
    custom = _container(
        render_objects(
            {"image": {"repository": "registry.example/tw", "tag": "1.2.3", "pullPolicy": "Always"}}
        )
    )
    assert custom["image"] == "registry.example/tw:1.2.3"
    assert custom["imagePullPolicy"] == "Always"


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ({"digest": "sha256:" + "1" * 64}, "ghcr.io/trustwire/trustwire@sha256:" + "1" * 64),
        ({"digest": "sha256:" + "1" * 64, "tag": "9.9.9"}, "ghcr.io/trustwire/trustwire@sha256:" + "1" * 64),
        ({"registry": "mirror.example", "repository": "tw/trustwire"}, "mirror.example/tw/trustwire:0.1.0"),
        ({"registry": "mirror.example/", "repository": "tw", "tag": "1.0"}, "mirror.example/tw:1.0"),
        (
            {"registry": "mirror.example", "repository": "tw", "digest": "sha256:" + "2" * 64},
            "mirror.example/tw@sha256:" + "2" * 64,
        ),
    ],
)
def test_image_registry_and_digest(image: dict[str, str], expected: str) -> None:
    assert _container(render_objects({"image": image}))["image"] == expected


def test_topology_spread_constraints_select_the_operator_pods_by_default() -> None:
    constraints = [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"},
        {
            "maxSkew": 2,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "mine"}},
        },
    ]
    deployment = one(render_objects({"replicaCount": 2, "topologySpreadConstraints": constraints}), "Deployment")
    validate_strict(deployment)
    rendered = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    selector = deployment["spec"]["selector"]
    assert rendered == [constraints[0] | {"labelSelector": selector}, constraints[1]]
    assert "topologySpreadConstraints" not in one(render_objects({}), "Deployment")["spec"]["template"]["spec"]


def test_ports_and_probes() -> None:
    container = _container(render_objects({}))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    for probe in ("livenessProbe", "readinessProbe"):
        http = container[probe]["httpGet"]
        assert http["path"] == "/healthz"
        assert ports[http["port"]] == 8080


@pytest.mark.parametrize("replicas", [1, 2])
def test_pod_identity_is_exposed_for_leader_election(replicas: int) -> None:
    env = {e["name"]: e for e in _container(render_objects({"replicaCount": replicas}))["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert "POD_ID" not in env  # kopf peering's variable, gone with peering


def test_resources_default_and_override() -> None:
    assert _container(render_objects({}))["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }
    # Helm merges maps with the defaults; null removes a default key.
    resources = {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"cpu": None, "memory": "1Gi"}}
    assert _container(render_objects({"resources": resources}))["resources"] == {
        "requests": {"cpu": "10m", "memory": "64Mi"},
        "limits": {"memory": "1Gi"},
    }


def test_scheduling_and_pod_metadata_values_reach_the_pod() -> None:
    values = {
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ops"]}]}
                    ]
                }
            }
        },
        "podAnnotations": {"example.com/team": "platform"},
        "podLabels": {"team": "platform"},
    }
    deployment = one(render_objects(values), "Deployment")
    validate_strict(deployment)
    pod = deployment["spec"]["template"]
    assert pod["spec"]["nodeSelector"] == values["nodeSelector"]
    assert pod["spec"]["tolerations"] == values["tolerations"]
    assert pod["spec"]["affinity"] == values["affinity"]
    assert pod["metadata"]["annotations"] == values["podAnnotations"]
    assert pod["metadata"]["labels"]["team"] == "platform"
    # Extra pod labels never leak into the (immutable) selector.
    assert "team" not in deployment["spec"]["selector"]["matchLabels"]


def test_selector_matches_pod_labels(scenario: tuple[str, dict[str, Any], list[dict[str, Any]]]) -> None:
    _, _, objects = scenario
    deployment = one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    for obj in of_kind(objects, "PodDisruptionBudget"):
        assert obj["spec"]["selector"]["matchLabels"] == selector
    assert one(objects, "Service")["spec"]["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize("name", SCENARIO_IDS)
def test_rolling_updates_are_safe_because_every_replica_elects_a_leader(name: str) -> None:
    """A surge pod is a standby until the old one's Lease expires: never two writers at once."""
    objects = render_objects(SCENARIOS[name])
    strategy = one(objects, "Deployment")["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    args = _container(objects)["args"]
    assert "--lease" in args
    assert "--standalone" not in args


# --- Leader election ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCENARIO_IDS)
def test_no_peering_object_is_rendered(name: str) -> None:
    objects = render_objects(SCENARIOS[name])
    assert not {o["kind"] for o in objects} & {"ClusterKopfPeering", "KopfPeering"}
    assert not [o for o in objects if o["apiVersion"].startswith("kopf.dev/")]
    args = _container(objects)["args"]
    assert not {"--peering", "--priority", "--priority-random", "--standalone"} & set(args)


def test_notes_name_the_lease_with_several_replicas() -> None:
    assert "Lease trustwire-system/trustwire" in render_notes({"replicaCount": 3})
    assert "Lease" not in render_notes({})


# --- PDB, Service, ServiceMonitor -------------------------------------------------------------


def test_pdb_keeps_a_standby_with_replicas_and_never_blocks_drains_with_one() -> None:
    single = one(render_objects({}), "PodDisruptionBudget")["spec"]
    assert single.get("maxUnavailable") == 1
    assert "minAvailable" not in single
    several = one(render_objects({"replicaCount": 2}), "PodDisruptionBudget")["spec"]
    assert several.get("minAvailable") == 1
    assert "maxUnavailable" not in several
    assert not of_kind(render_objects({"podDisruptionBudget": {"enabled": False}}), "PodDisruptionBudget")


@pytest.mark.parametrize(
    ("pdb", "expected"),
    [
        ({"minAvailable": 2}, {"minAvailable": 2}),
        ({"minAvailable": "50%"}, {"minAvailable": "50%"}),
        ({"maxUnavailable": 0}, {"maxUnavailable": 0}),
        ({"maxUnavailable": "25%"}, {"maxUnavailable": "25%"}),
    ],
)
def test_pdb_bounds_follow_the_values(pdb: dict[str, Any], expected: dict[str, Any]) -> None:
    budget = one(render_objects({"replicaCount": 3, "podDisruptionBudget": pdb}), "PodDisruptionBudget")
    validate_strict(budget)
    assert {k: v for k, v in budget["spec"].items() if k != "selector"} == expected


def test_metrics_service_targets_the_metrics_port() -> None:
    objects = render_objects({})
    (port,) = one(objects, "Service")["spec"]["ports"]
    assert port["name"] == "metrics"
    assert port["port"] == 9090
    container_ports = {p["name"]: p["containerPort"] for p in _container(objects)["ports"]}
    assert container_ports[port["targetPort"]] == 9090


def test_servicemonitor_is_off_by_default() -> None:
    assert not of_kind(render_objects({}), "ServiceMonitor")


def test_servicemonitor_scrapes_the_metrics_service() -> None:
    """Structural check of the Prometheus Operator object (no schema for it is available here)."""
    values = {
        "metrics": {"serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "kps"}}}
    }
    objects = render_objects(values)
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert monitor["metadata"]["labels"]["release"] == "kps"
    spec = monitor["spec"]
    assert set(spec) <= {"endpoints", "selector", "namespaceSelector", "jobLabel"}
    assert spec["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    # The selector must not also pick up other Services of the release.
    assert spec["selector"]["matchLabels"]["app.kubernetes.io/component"] == "metrics"
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s"
    assert endpoint["scrapeTimeout"] == "10s"
    # The operator's `namespace` label (the object's namespace) survives the scrape.
    assert endpoint["honorLabels"] is True


# --- NOTES.txt --------------------------------------------------------------------------------


def test_notes_tell_the_user_what_to_apply_next() -> None:
    notes = render_notes({})
    assert "kubectl" in notes and "get sid" in notes
    assert "kubectl -n default wait --for=condition=Ready sid/client" in notes
    # The embedded manifests are valid ServiceIdentity/TrustRelationship objects.
    manifest = notes.split("apply -f -\n", 1)[1].split("  YAML\n", 1)[0]
    docs = [d for d in yaml.safe_load_all("\n".join(line[2:] for line in manifest.splitlines())) if d]
    assert [d["kind"] for d in docs] == ["ServiceIdentity", "ServiceIdentity", "TrustRelationship"]
    crds = chart_crds()
    for doc in docs:
        validate_custom_resource(doc | {"metadata": doc["metadata"] | {"namespace": "default"}}, crds)
    between = {b["identity"] for b in docs[2]["spec"]["between"]}
    assert between == {docs[0]["metadata"]["name"], docs[1]["metadata"]["name"]}


def test_notes_use_a_served_namespace_in_namespaced_mode() -> None:
    notes = render_notes(SCENARIOS["namespaced"])
    assert "team-a, team-b" in notes
    assert "kubectl -n team-a apply -f -" in notes
    assert "-n default" not in notes


def test_custom_resource_validation_is_not_vacuous(crds: list[dict[str, Any]]) -> None:
    bad = {
        "apiVersion": "trustwire.io/v1alpha1",
        "kind": "TrustRelationship",
        "metadata": {"name": "x", "namespace": "default"},
        "spec": {"between": [{"identity": "only-one"}]},
    }
    with pytest.raises(jsonschema.ValidationError):
        validate_custom_resource(bad, crds)
