"""The chart ships the very same CRDs as the top-level crds/ directory, as templates behind
crds.enabled (so upgrades upgrade them) and kept on uninstall with crds.keep."""

from __future__ import annotations

from pathlib import Path

import helm_python as helm
import pytest
import yaml

from .render import CHART_CRDS_DIR, CHART_DIR, TOP_LEVEL_CRDS_DIR, chart_crds, render_objects

CRD_FILES = {"trustwire.io_serviceidentities.yaml", "trustwire.io_trustrelationships.yaml",
             "trustwire.io_enrollments.yaml"}
KEEP = "helm.sh/resource-policy"


def test_chart_crds_are_byte_identical_to_top_level_crds() -> None:
    top = {p.name: p.read_bytes() for p in sorted(TOP_LEVEL_CRDS_DIR.glob("*.yaml"))}
    chart = {p.name: p.read_bytes() for p in sorted(CHART_CRDS_DIR.glob("*.yaml"))}
    # Only our own CRDs: HA is a coordination.k8s.io Lease, no kopf peering CRDs any more.
    assert set(top) == CRD_FILES
    assert set(chart) == set(top)
    for name, data in top.items():
        assert chart[name] == data, f"{CHART_CRDS_DIR.relative_to(CHART_DIR)}/{name} differs from crds/{name}"


def test_no_crds_directory_for_helm_to_install_outside_the_templates() -> None:
    """Helm installs a chart's crds/ once and never upgrades it; the templates are the one way in."""
    assert not (CHART_DIR / "crds").exists()
    with helm.Chart.load(CHART_DIR) as chart:
        assert chart.crds == []


def test_rendered_crds_are_the_files_plus_labels_and_keep() -> None:
    rendered = {c["metadata"]["name"]: c for c in chart_crds()}
    for path in sorted(TOP_LEVEL_CRDS_DIR.glob("*.yaml")):
        expected = yaml.safe_load(path.read_text())
        crd = rendered.pop(expected["metadata"]["name"])
        metadata = crd.pop("metadata")
        assert crd == {k: v for k, v in expected.items() if k != "metadata"}, path.name
        assert metadata["annotations"] == {KEEP: "keep"}
        assert expected["metadata"]["labels"].items() <= metadata["labels"].items()
        assert metadata["labels"]["app.kubernetes.io/instance"] == "trustwire"
    assert rendered == {}


def test_crds_keep_false_leaves_the_policy_out() -> None:
    for crd in chart_crds({"crds": {"keep": False}}):
        assert KEEP not in (crd["metadata"].get("annotations") or {})


def test_crds_enabled_false_renders_no_crd() -> None:
    kinds = {o["kind"] for o in render_objects({"crds": {"enabled": False}})}
    assert "CustomResourceDefinition" not in kinds
    assert "Deployment" in kinds


@pytest.mark.parametrize("values", [{}, {"crds": {"keep": False}}])
def test_packaged_chart_carries_crds_schema_and_templates(tmp_path: Path, values: dict[str, object]) -> None:
    archive = helm.package(CHART_DIR, destination=tmp_path)
    assert Path(archive).name == "trustwire-0.1.0.tgz"
    with helm.Chart.load(archive) as packaged, helm.Chart.load(CHART_DIR) as source:
        assert packaged.metadata["appVersion"] == "0.1.0"
        assert packaged.schema == source.schema
        merged = {"replicaCount": 2, **values}
        rendered = packaged.render(merged, name="t")
        assert rendered == source.render(merged, name="t")
        assert "CustomResourceDefinition" in "".join(rendered.values())
