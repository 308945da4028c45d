"""The chart ships the very same CRDs as the top-level crds/ directory."""

from __future__ import annotations

from pathlib import Path

import helm_python as helm

from .render import CHART_DIR, TOP_LEVEL_CRDS_DIR, chart_crds


def test_chart_crds_are_byte_identical_to_top_level_crds() -> None:
    top = {p.name: p.read_bytes() for p in sorted(TOP_LEVEL_CRDS_DIR.glob("*.yaml"))}
    chart = {p.name: p.read_bytes() for p in sorted((CHART_DIR / "crds").glob("*.yaml"))}
    # Only our own CRDs: HA is a coordination.k8s.io Lease, no kopf peering CRDs any more.
    assert set(top) == {
        "trustwire.io_serviceidentities.yaml",
        "trustwire.io_trustrelationships.yaml",
    }
    assert set(chart) == set(top)
    for name, data in top.items():
        assert chart[name] == data, f"charts/trustwire/crds/{name} differs from crds/{name}"


def test_helm_sees_every_crd_file() -> None:
    names = sorted(c["metadata"]["name"] for c in chart_crds())
    assert names == [
        "serviceidentities.trustwire.io",
        "trustrelationships.trustwire.io",
    ]


def test_packaged_chart_carries_crds_schema_and_templates(tmp_path: Path) -> None:
    archive = helm.package(CHART_DIR, destination=tmp_path)
    assert Path(archive).name == "trustwire-0.1.0.tgz"
    with helm.Chart.load(archive) as packaged, helm.Chart.load(CHART_DIR) as source:
        assert packaged.metadata["appVersion"] == "0.1.0"
        assert packaged.schema == source.schema
        assert sorted(c["filename"] for c in packaged.crds) == sorted(c["filename"] for c in source.crds)
        assert packaged.render({"replicas": 2}, name="t") == source.render({"replicas": 2}, name="t")
