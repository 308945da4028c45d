"""values.schema.json is enforced by Helm itself: bad values make the render fail."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from .render import CHART_DIR, NAMESPACE, RELEASE, SCENARIOS, render_templates


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"replicaCount": 0}, "/replicaCount"),
        # the old name is refused, not silently ignored (cert-manager's replicaCount replaces it)
        ({"replicas": 2}, "replicas"),
        ({"rbac": {"mode": "everything"}}, "/rbac/mode"),
        ({"rbac": {"mode": "namespaced"}}, "/rbac/namespaces"),
        ({"rbac": {"mode": "namespaced", "namespaces": []}}, "/rbac/namespaces"),
        ({"rbac": {"mode": "namespaced", "namespaces": ["Not_A_Namespace"]}}, "/rbac/namespaces/0"),
        ({"rbac": {"mode": "namespaced", "namespaces": ["team-a", "team-a"]}}, "/rbac/namespaces"),
        ({"replicaCont": 2}, "replicaCont"),  # unknown top-level key (a classic typo)
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"image": {"registry": 5}}, "/image/registry"),
        ({"crds": {"enabled": "true"}}, "/crds/enabled"),
        ({"crds": {"install": True}}, "install"),
        ({"rbac": {"aggregateClusterRoles": "yes"}}, "/rbac/aggregateClusterRoles"),
        ({"securityContext": "restricted"}, "/securityContext"),
        ({"containerSecurityContext": ["ALL"]}, "/containerSecurityContext"),
        ({"podSecurityContext": {"runAsNonRoot": True}}, "podSecurityContext"),  # cert-manager says securityContext
        ({"topologySpreadConstraints": {"maxSkew": 1}}, "/topologySpreadConstraints"),
        ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone"}]}, "/topologySpreadConstraints/0"),
        ({"podDisruptionBudget": {"minAvailable": "half"}}, "/podDisruptionBudget/minAvailable"),
        ({"podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}}, "/podDisruptionBudget"),
        ({"podDisruptionBudget": {"maxUnavailble": 1}}, "maxUnavailble"),
        ({"metrics": {"prometheusRule": {"enabled": 1}}}, "/metrics/prometheusRule/enabled"),
        ({"metrics": {"prometheusRule": {"rules": []}}}, "rules"),
        ({"metrics": {"prometheusRule": {"extraRules": [{"alert": "X"}]}}}, "/metrics/prometheusRule/extraRules/0"),
        ({"metrics": {"serviceMonitor": {"honorLabels": False}}}, "honorLabels"),  # the alerts need it
        ({"image": {"tag": 1.2}}, "/image/tag"),
        ({"image": {"pullpolicy": "Always"}}, "pullpolicy"),
        ({"rbac": {"namespace": ["a"]}}, "namespace"),
        ({"serviceAccount": {"create": "yes"}}, "/serviceAccount/create"),
        ({"metrics": {"serviceMonitor": {"enable": True}}}, "enable"),
        ({"resources": {"request": {"cpu": "1"}}}, "request"),
        ({"podLabels": {"team": 1}}, "/podLabels/team"),
        ({"tolerations": {"key": "x"}}, "/tolerations"),
        # kopf peering is gone (HA is a Lease): its old values key is an error, not silently ignored
        ({"peering": {"name": "trustwire"}}, "peering"),
    ],
)
def test_helm_rejects_invalid_values(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError) as raised:
        render_templates(values)
    assert where in str(raised.value)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_values_are_valid(name: str) -> None:
    with helm.Chart.load(CHART_DIR) as chart:
        chart.validate_schema(chart.merge_values(SCENARIOS[name]))


def test_lint_reports_schema_violations_too() -> None:
    report = helm.lint(CHART_DIR, {"rbac": {"mode": "everything"}}, namespace=NAMESPACE)
    assert report["errors"] or any(m["severity"] == 3 for m in report["messages"])


def test_templates_refuse_namespaced_mode_without_namespaces_even_without_the_schema(tmp_path: Path) -> None:
    """A copy of the chart without values.schema.json still refuses to render a Role-less namespaced mode.

    (`helm lint` cannot show this: in lint mode Helm downgrades `fail` to a log line.)
    """
    copy = tmp_path / "trustwire"
    shutil.copytree(CHART_DIR, copy)
    (copy / "values.schema.json").unlink()
    with helm.Chart.load(copy) as chart:
        assert chart.schema is None
        with pytest.raises(helm.HelmRenderError, match=r"rbac\.namespaces"):
            chart.render({"rbac": {"mode": "namespaced"}}, name=RELEASE, namespace=NAMESPACE)
        assert chart.render({"rbac": {"mode": "namespaced", "namespaces": ["a"]}}, name=RELEASE)


def test_schema_is_draft_07_and_closed() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["additionalProperties"] is False
    for key in ("image", "crds", "serviceAccount", "rbac", "resources", "podDisruptionBudget", "metrics"):
        assert schema["properties"][key]["additionalProperties"] is False, key


@pytest.mark.parametrize(
    "values",
    [
        {"podDisruptionBudget": {"minAvailable": "50%"}},
        {"podDisruptionBudget": {"maxUnavailable": 0}},
        {"image": {"digest": "sha256:" + "a" * 64, "registry": "registry.example"}},
        {"metrics": {"prometheusRule": {"enabled": True, "extraRules": [{"record": "x:y", "expr": "up"}]}}},
    ],
)
def test_schema_accepts_cert_manager_style_values(values: dict[str, Any]) -> None:
    with helm.Chart.load(CHART_DIR) as chart:
        chart.validate_schema(chart.merge_values(values))


def test_templates_refuse_both_pdb_bounds_even_without_the_schema(tmp_path: Path) -> None:
    copy = tmp_path / "trustwire"
    shutil.copytree(CHART_DIR, copy)
    (copy / "values.schema.json").unlink()
    with helm.Chart.load(copy) as chart, pytest.raises(helm.HelmRenderError, match="not both"):
        chart.render({"podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}}, name=RELEASE)


def test_every_default_value_is_described_by_the_schema() -> None:
    with helm.Chart.load(CHART_DIR) as chart:
        defaults = chart.values
        schema = chart.schema
    assert schema is not None

    def walk(values: dict[str, Any], node: dict[str, Any], path: str) -> None:
        props = node.get("properties", {})
        for key, value in values.items():
            assert key in props or node.get("additionalProperties") not in (False, None), f"{path}.{key}"
            child = props.get(key)
            if child is not None:
                assert "type" in child or "$ref" in child, f"{path}.{key} has no type"
                if isinstance(value, dict) and "properties" in child:
                    walk(value, child, f"{path}.{key}")

    walk(defaults, schema, "")
