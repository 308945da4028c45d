"""pytest fixtures for the real control plane (registered in ``tests/conftest.py``).

``control_plane`` starts one control plane per test session and installs what a user installs:
the CRDs from ``crds/`` and the Helm chart rendered by the real Helm engine (RBAC,
ServiceAccount, Deployment, ...), applied with the kubectl built beside the control plane.
``operator_access`` is how the operator under test authenticates: a TokenRequest token for the
chart's own ServiceAccount, so the real RBAC authorizer judges every request it makes.

Without Go (and without ``$TESTCLUSTER_BIN``) every test that needs the control plane is
skipped, saying why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.controlplane import ControlPlane, ControlPlaneError, binaries

REPO = Path(__file__).resolve().parents[2]
RELEASE = "trustwire"
RELEASE_NAMESPACE = "trustwire-system"


@dataclasses.dataclass(frozen=True)
class OperatorAccess:
    """What ``trustwire run`` in the chart's pod would have: its ServiceAccount's token."""

    namespace: str
    service_account: str
    token: str


def render_chart(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    from tests.chart.render import render_objects
    return render_objects(values)


def install_chart(plane: ControlPlane, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Apply what the chart renders (server-side apply, as ``helm install`` would create it)."""
    objects = render_chart(values)
    plane.kubectl("create", "namespace", RELEASE_NAMESPACE, check=False)
    plane.kubectl("apply", "--server-side", "--field-manager=helm", "-f", "-",
                  input=yaml.safe_dump_all(objects))
    return objects


def install_crds(plane: ControlPlane) -> None:
    plane.kubectl("apply", "--server-side", "--field-manager=helm", "-f", str(REPO / "crds"))
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                  "crd/serviceidentities.trustwire.io", "crd/trustrelationships.trustwire.io")


def service_account_of(objects: list[dict[str, Any]]) -> tuple[str, str]:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    return deployment["metadata"]["namespace"], deployment["spec"]["template"]["spec"]["serviceAccountName"]


_build: dict[str, Path | str] = {}
#: the xdist group of every test that runs a control plane
CONTROL_PLANE_GROUP = "control-plane"


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Build the control plane (or find it cached) before the first test that needs it runs:
    a cold build takes minutes, more than one test's timeout allows.

    Every test on a control plane runs in one xdist group (``--dist loadgroup``), so one
    worker starts one control plane and the other worker takes the rest of the suite."""
    needs = {"control_plane", "control_plane_binaries"}
    users = [item for item in items if needs & set(getattr(item, "fixturenames", ()))]
    for item in users:
        item.add_marker(pytest.mark.xdist_group(CONTROL_PLANE_GROUP))
    if users:
        try:
            _build["bin"] = binaries()
        except ControlPlaneError as exc:
            _build["error"] = str(exc)


@pytest.fixture(scope="session")
def control_plane_binaries() -> Path:
    if "error" in _build:
        pytest.skip(f"real control plane unavailable: {_build['error']}")
    found = _build.get("bin")
    assert isinstance(found, Path), "the control plane is built during collection"
    return found


@pytest.fixture(scope="session")
def control_plane(control_plane_binaries: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(control_plane_binaries, tmp_path_factory.mktemp("control-plane"))
    with plane:
        install_crds(plane)
        yield plane


@pytest.fixture(scope="session")
def chart_objects(control_plane: ControlPlane) -> list[dict[str, Any]]:
    """The chart as installed (default values: cluster-wide RBAC)."""
    return install_chart(control_plane)


@pytest.fixture(scope="session")
def operator_access(control_plane: ControlPlane, chart_objects: list[dict[str, Any]]) -> OperatorAccess:
    namespace, name = service_account_of(chart_objects)
    return OperatorAccess(namespace, name, control_plane.service_account_token(namespace, name))
