"""Smoke tests of the benchmarks: they run end to end and report every field.

Numbers are never asserted (docs/design.md §7: speed is measured by benchmarks, not tests) —
except the one that is a correctness property: a converged operator makes zero writes
when it restarts and resyncs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks.emulator_server import proxy_key
from benchmarks.scale import Counts, is_ready, is_stalled, relationship_pairs

from tests.cluster.controlplane import BIN_ENV, ControlPlaneError, binaries
from tests.cluster.fixtures import CONTROL_PLANE_GROUP
from tests.cluster.proxy import Recorded

ROOT = Path(__file__).resolve().parent.parent

NUMBERS = ("seconds_to_ready", "pair_ready_seconds", "operator_cpu_seconds", "crypto_floor_seconds",
           "operator_rss_mb", "operator_peak_rss_mb")
COUNTS = ("identities", "relationships", "unrelated_secrets", "api_reads", "api_writes", "steady_state_writes")


def test_topologies() -> None:
    assert relationship_pairs(1, "star") == []
    assert relationship_pairs(4, "star") == [(0, 1), (0, 2), (0, 3)]
    assert relationship_pairs(2, "ring") == [(0, 1)]
    assert relationship_pairs(4, "ring") == [(0, 1), (1, 2), (2, 3), (3, 0)]


@pytest.mark.parametrize(
    ("conditions", "ready", "stalled"),
    [
        ([{"type": "Ready", "status": "True"}, {"type": "Stalled", "status": "False"}], True, False),
        ([{"type": "Ready", "status": "False"}, {"type": "Stalled", "status": "True"}], False, True),
        ([{"type": "Ready", "status": "False"}, {"type": "Reconciling", "status": "True"}], False, False),
        ([], False, False),
    ],
)
def test_ready_and_stalled_are_read_from_conditions(conditions: list[dict[str, str]], ready: bool,
                                                    stalled: bool) -> None:
    body = {"status": {"conditions": conditions}}
    assert (is_ready(body), is_stalled(body)) == (ready, stalled)


def test_counts_are_told_apart_by_client_and_verb() -> None:
    before = Counts.parse({"counts": [["operator", "FETCH", "secrets", "", 5]], "objects": 3})
    after = Counts.parse({"counts": [["operator", "FETCH", "secrets", "", 7], ["operator", "UPDATE", "secrets", "", 1],
                                     ["other", "WATCH", "secrets", "", 1], ["bench", "LIST", "secrets", "", 9]],
                          "objects": 4})
    diff = after - before
    # only the operator's requests count: not the driver's LISTs, nor another client's WATCH
    assert diff.total(actions=frozenset({"FETCH", "LIST", "WATCH"})) == 2
    assert diff.total(actions=frozenset({"CREATE", "UPDATE", "DELETE"})) == 1
    assert diff.breakdown() == {"FETCH secrets": 2, "UPDATE secrets": 1}
    assert diff.watching() == set()


@pytest.mark.parametrize(
    ("method", "path", "params", "key"),
    [
        ("GET", "/api/v1/namespaces/bench/secrets/id-0-trustwire-ca", {}, ("FETCH", "secrets", "")),
        ("GET", "/api/v1/secrets", {"labelSelector": "x=y"}, ("LIST", "secrets", "")),
        ("GET", "/api/v1/secrets", {"watch": "true"}, ("WATCH", "secrets", "")),
        ("POST", "/api/v1/namespaces/bench/events", {}, ("CREATE", "events", "")),
        ("PATCH", "/apis/trustwire.io/v1alpha1/namespaces/bench/serviceidentities/id-0/status", {},
         ("UPDATE", "serviceidentities", "status")),
        ("PUT", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l", {}, ("UPDATE", "leases", "")),
        ("DELETE", "/api/v1/namespaces/bench/configmaps/c", {}, ("DELETE", "configmaps", "")),
        ("GET", "/api/v1/namespaces/bench", {}, ("FETCH", "namespaces", "")),
        ("GET", "/apis/apps/v1", {}, ("GET", "/apis/apps/v1", "")),
    ],
)
def test_proxied_requests_are_counted_with_kmocks_keys(method: str, path: str, params: dict[str, str],
                                                       key: tuple[str, str, str]) -> None:
    assert proxy_key(Recorded(method, path, params, "trustwire-operator/1", None)) == ("operator", *key)


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_scale_smoke() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--identities", "3", "--topology", "star",
         "--runs", "1", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)

    assert result["identities"] == 3
    assert result["relationships"] == 2
    assert result["topology"] == "star"
    assert result["unrelated_secrets"] == 0
    assert result["runs_completed"] == 1
    for key in NUMBERS:
        assert isinstance(result[key], (int, float)) and not isinstance(result[key], bool), key
        assert result[key] >= 0, key
    for key in COUNTS:
        assert isinstance(result[key], int) and not isinstance(result[key], bool), key
    assert result["api_writes"] > 0 and result["api_reads"] > 0  # the operator issued material
    assert result["operator_peak_rss_mb"] >= result["operator_rss_mb"] > 0
    assert result["steady_state_passes"] >= 3  # the steady-state window really covered resyncs
    assert result["steady_state_writes"] == 0, result["runs"][0].get("steady_state_requests")
    machine = result["machine"]
    assert {"nproc", "cpu", "python"} <= set(machine)
    assert len(result["runs"]) == 1 and result["runs"][0]["ready"] is True


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_request_cost_smoke() -> None:
    """``benchmarks/api_requests.py`` runs as documented and reports a figure per kind."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "api_requests.py"), "--count", "5", "--runs", "2", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert set(result["median_cpu_ms_per_request"]) == {"get-missing", "get-secret", "create-event",
                                                         "patch-status"}
    for kind, runs in result["cpu_ms_per_request"].items():
        assert len(runs) == 2 and all(value > 0 for value in runs), kind
    assert {"nproc", "cpu", "python"} <= set(result["machine"])


@pytest.mark.integration
@pytest.mark.timeout(300)
@pytest.mark.xdist_group(CONTROL_PLANE_GROUP)  # its own control plane: not beside the suite's
def test_scale_smoke_on_the_real_control_plane() -> None:
    """``scale.py --api real``: the same run against kube-apiserver and etcd, each one's CPU
    reported, and zero steady-state writes there too."""
    try:
        bindir = binaries()
    except ControlPlaneError as exc:
        pytest.skip(f"real control plane unavailable: {exc}")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--identities", "4", "--topology", "ring",
         "--runs", "1", "--api", "real", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=280, env={**os.environ, BIN_ENV: str(bindir)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)

    assert (result["api"], result["identities"], result["relationships"]) == ("real", 4, 4)
    assert result["runs_completed"] == 1
    for key in (*NUMBERS, "apiserver_cpu_seconds", "etcd_cpu_seconds", "proxy_cpu_seconds",
                "steady_state_apiserver_cpu_seconds", "steady_state_etcd_cpu_seconds"):
        assert isinstance(result[key], (int, float)) and not isinstance(result[key], bool), key
        assert result[key] >= 0, key
    assert result["apiserver_cpu_seconds"] > 0  # the apiserver's own process, not the driver's
    assert "emulator_cpu_seconds" not in result
    assert result["api_writes"] > 0 and result["api_reads"] > 0
    assert result["steady_state_passes"] >= 3
    assert result["steady_state_writes"] == 0, result["runs"][0].get("steady_state_requests")
