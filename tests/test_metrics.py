"""Metrics: the collector reads a controller at scrape time; the HTTP endpoint serves it.

Unit tests run the collector against a stand-in exposing the same attributes as
``trustwire.controller.reconciler.Controller`` with statuses shaped exactly like the
operator's; the HTTP tests scrape a real ``start_metrics_server`` on loopback and parse
the exposition with prometheus_client's own parser; the integration test scrapes the
real operator after it made the quickstart Ready, and compares the gauges with the
statuses read back from the API emulator.
"""

from __future__ import annotations

import asyncio
import platform
import re
import socket
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import trustwire
from trustwire.controller.workers import RECONCILE_BUCKETS, Workers
from trustwire.demo.emulator import running_emulator
from trustwire.demo.run import apply, default_examples, load_manifests
from trustwire.k8s.client import ApiConfig, Client
from trustwire.k8s.resources import IDENTITIES, RELATIONSHIPS
from trustwire.metrics import ControllerCollector, parse_timestamp, rotation_phases, start_metrics_server
from trustwire.model import IdentityRef
from trustwire.plan.status import IdentityStatus
from trustwire.runtime import OperatorOptions, running_operator


# --------------------------------------------------------------------------------------
# A controller stand-in with real-looking statuses
# --------------------------------------------------------------------------------------
def condition(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-11-22T11:15:35Z",
        "observedGeneration": 1,
    }


def identity_status(
    *,
    ready: bool = True,
    ca_not_after: str = "2027-11-22T11:15:34Z",
    cert_not_after: str = "2026-12-22T11:15:34Z",
    renewal: str = "2026-12-12T11:15:34Z",
    rotation_time: str = "2026-12-22T11:15:34Z",
    peers: int = 1,
    rotation: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The shape ``plan_identity`` + ``_write_status`` produce (see a demo run's objects/)."""
    status: dict[str, Any] = {
        "spiffeId": "spiffe://cluster.local/ns/governance/sid/dgc",
        "issuer": "spiffe://cluster.local/ns/governance/sid/dgc",
        "ca": {
            "source": "SelfSigned",
            "serial": "42d4a187ba9a125485cc2743774482e6a30d6307",
            "fingerprint": "fb67f8a9a380af1e48c886d8005a8275bc9744b70843470bcfbef8b0cc89cf26",
            "notBefore": "2026-11-22T11:14:34Z",
            "notAfter": ca_not_after,
            "renewalTime": "2027-10-23T11:15:34Z",
        },
        "certificate": {
            "serial": "4787163e7c445e08a6fc23fde446ce6645bfef6c",
            "fingerprint": "5e837e97d10f2f9c40f2bc0b1c826b452f814b12c0f93ea5ed3fd379944ef977",
            "notAfter": cert_not_after,
            "renewalTime": renewal,
            "dnsNames": ["dgc", "dgc.governance", "dgc.governance.svc", "dgc.governance.svc.cluster.local"],
        },
        "jwt": {
            "kid": "QT8aCbVnBkJwV0K0Zws137q4uyfdBT9mmfx0-Oeq37s",
            "algorithm": "ES256",
            "publishedKids": ["QT8aCbVnBkJwV0K0Zws137q4uyfdBT9mmfx0-Oeq37s"],
            "rotationTime": rotation_time,
        },
        "peers": [
            {
                "identity": f"peer{i}",
                "namespace": "jobs",
                "relationship": f"governance/rel{i}",
                "mtls": True,
                "jwt": True,
                "sharedSecret": False,
            }
            for i in range(peers)
        ],
        "peerCount": peers,
        "workloads": [{"kind": "Deployment", "name": "dgc", "state": "Wired", "message": ""}],
        "materialHash": "92548894172d6295a4f0a97992830582",
        "conditions": [
            condition("Ready", "True" if ready else "False", "Ready" if ready else "PeerPending"),
            condition("Reconciling", "False" if ready else "True", "Settled" if ready else "PeerPending"),
            condition("Stalled", "False", "NotStalled"),
            condition("CAReady", "True", "Valid"),
        ],
        "observedGeneration": 1,
    }
    if rotation is not None:
        status["rotation"] = dict(rotation)
    return status


def relationship_status(ready: bool = True) -> dict[str, Any]:
    return {
        "identities": ["governance/dgc", "jobs/jobserver"],
        "observedGeneration": 1,
        "conditions": [
            condition("Ready", "True" if ready else "False", "Ready" if ready else "NotPermitted"),
            condition("Accepted", "True" if ready else "False", "Accepted" if ready else "NotPermitted"),
        ],
    }


@dataclass
class FakeClient:
    counts: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


@dataclass
class FakeController:
    statuses: dict[tuple[str, str, str], Mapping[str, Any]] = field(default_factory=dict)
    reconcile_results: dict[tuple[str, str], int] = field(default_factory=dict)
    reconcile_seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    reconcile_buckets: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    reconcile_bounds: tuple[float, ...] = (0.001, 0.1, 1.0)
    client: FakeClient = field(default_factory=FakeClient)
    queue: list[Any] = field(default_factory=list)


@dataclass
class FakeState:
    identities: dict[IdentityRef, Any] = field(default_factory=dict)
    relationships: dict[tuple[str, str], Any] = field(default_factory=dict)


@dataclass
class FakeControllerWithState(FakeController):
    state: FakeState = field(default_factory=FakeState)


def epoch(text: str) -> float:
    """Independent of the code under test: RFC 3339 'Z' → Unix seconds."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp()


def populated() -> FakeController:
    controller = FakeController()
    controller.statuses[("identity", "governance", "dgc")] = identity_status(
        rotation={
            "handledRequest": "certificate:2026-11-22T11:00:00Z",
            "ca": {"phase": "Distributing", "since": "2026-11-22T10:00:00Z"},
            "jwt": {"phase": "Idle"},
        }
    )
    controller.statuses[("identity", "jobs", "jobserver")] = identity_status(
        ready=False,
        ca_not_after="2027-01-01T00:00:00Z",
        cert_not_after="2026-12-01T08:30:00Z",
        renewal="2026-11-21T08:30:00Z",
        rotation_time="2026-12-24T00:00:00Z",
        peers=3,
    )
    controller.statuses[("relationship", "governance", "dgc-jobserver")] = relationship_status()
    controller.statuses[("relationship", "jobs", "denied")] = relationship_status(ready=False)
    controller.reconcile_results.update(
        {("identity", "ok"): 7, ("identity", "error"): 2, ("relationship", "ok"): 3}
    )
    controller.reconcile_seconds.update(
        {("identity", "ok"): 0.75, ("identity", "error"): 0.5, ("relationship", "ok"): 0.125}
    )
    # per bucket of the stand-in's bounds (0.001, 0.1, 1.0) and above them, as the workers count
    controller.reconcile_buckets.update(
        {("identity", "ok"): [2, 4, 1, 0], ("identity", "error"): [0, 0, 1, 1], ("relationship", "ok"): [3, 0, 0, 0]}
    )
    controller.client.counts.update({"get": 40, "list": 2, "create": 9, "patch": 12})
    controller.client.errors.update({"409": 1, "503": 4})
    controller.queue.extend(["a", "b", "c"])
    return controller


def ready_true(registry: CollectorRegistry, namespace: str, name: str) -> float | None:
    """The ``condition="True"`` series of an identity's ready status (1 when Ready)."""
    labels = {"namespace": namespace, "name": name, "condition": "True"}
    return registry.get_sample_value("trustwire_certificate_ready_status", labels)


def registry_for(controller: Any) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ControllerCollector(controller))
    return registry


# --------------------------------------------------------------------------------------
# Collector
# --------------------------------------------------------------------------------------
def test_expiry_gauges_equal_the_status_timestamps() -> None:
    controller = populated()
    registry = registry_for(controller)
    for (kind, ns, name), status in controller.statuses.items():
        if kind != "identity":
            continue
        labels = {"namespace": ns, "identity": name}
        cert = {"namespace": ns, "name": name}
        assert registry.get_sample_value("trustwire_ca_expiry_timestamp_seconds", labels) == epoch(
            status["ca"]["notAfter"]
        )
        assert registry.get_sample_value("trustwire_certificate_expiration_timestamp_seconds", cert) == epoch(
            status["certificate"]["notAfter"]
        )
        assert registry.get_sample_value("trustwire_certificate_renewal_timestamp_seconds", cert) == epoch(
            status["certificate"]["renewalTime"]
        )
        assert registry.get_sample_value("trustwire_jwt_key_rotation_timestamp_seconds", labels) == epoch(
            status["jwt"]["rotationTime"]
        )
    # distinct values per identity, not one value copied around
    assert registry.get_sample_value(
        "trustwire_certificate_expiration_timestamp_seconds", {"namespace": "jobs", "name": "jobserver"}
    ) == epoch("2026-12-01T08:30:00Z")


@pytest.mark.parametrize(
    ("metric", "labels", "value"),
    [
        ("trustwire_identity_peers", {"namespace": "governance", "identity": "dgc"}, 1),
        ("trustwire_identity_peers", {"namespace": "jobs", "identity": "jobserver"}, 3),
        ("trustwire_relationship_ready", {"namespace": "governance", "relationship": "dgc-jobserver"}, 1),
        ("trustwire_relationship_ready", {"namespace": "jobs", "relationship": "denied"}, 0),
    ],
)
def test_peers_and_relationships(metric: str, labels: dict[str, str], value: float) -> None:
    assert registry_for(populated()).get_sample_value(metric, labels) == value


@pytest.mark.parametrize(
    ("namespace", "name", "value"),
    [
        ("governance", "dgc", 1),
        ("jobs", "jobserver", 0),
        ("governance", "dgc-jobserver", None),  # relationships are not identities
    ],
)
def test_ready(namespace: str, name: str, value: float | None) -> None:
    assert ready_true(registry_for(populated()), namespace, name) == value


def test_rotation_phase_present_and_absent() -> None:
    registry = registry_for(populated())
    labels = {"namespace": "governance", "identity": "dgc", "material": "ca", "phase": "Distributing"}
    assert registry.get_sample_value("trustwire_rotation_phase", labels) == 1
    assert registry.get_sample_value("trustwire_rotation_phase_start_timestamp_seconds", labels) == epoch(
        "2026-11-22T10:00:00Z"
    )
    # one series per state machine, Idle included, with a start only outside Idle; jobserver
    # has no rotation section at all (not planned yet), so no series
    samples = [s for m in registry.collect() if m.name == "trustwire_rotation_phase" for s in m.samples]
    assert [(s.labels["identity"], s.labels["material"], s.labels["phase"]) for s in samples] == [
        ("dgc", "ca", "Distributing"), ("dgc", "jwt", "Idle")
    ]
    started = [s for m in registry.collect() if m.name == "trustwire_rotation_phase_start_timestamp_seconds"
               for s in m.samples]
    assert [(s.labels["material"], s.labels["phase"]) for s in started] == [("ca", "Distributing")]


@pytest.mark.parametrize(
    ("rotation", "expected"),
    [
        (None, []),
        ({"ca": {"phase": "Idle"}, "jwt": {"phase": "Idle"}, "handledRequest": "jwt:x"},
         [("ca", "Idle", None), ("jwt", "Idle", None)]),
        ({"ca": {"phase": "Distributing", "since": "2026-01-01T00:00:00Z", "next": "ab"},
          "jwt": {"phase": "Publishing", "since": "2026-02-01T00:00:00Z", "nextKid": "k2"}},
         [("ca", "Distributing", epoch("2026-01-01T00:00:00Z")), ("jwt", "Publishing", epoch("2026-02-01T00:00:00Z"))]),
        ({"ca": {"phase": "Retiring", "since": "not a time"}, "jwt": {"phase": "Idle"}},
         [("ca", "Retiring", None), ("jwt", "Idle", None)]),
    ],
)
def test_rotation_phases(
    rotation: Mapping[str, Any] | None, expected: list[tuple[str, str, float | None]]
) -> None:
    status = {} if rotation is None else {"rotation": rotation}
    assert rotation_phases(IdentityStatus.from_dict(status)) == expected


@pytest.mark.parametrize(
    ("metric", "labels", "value"),
    [
        ("trustwire_reconcile_total", {"kind": "identity", "result": "ok"}, 7),
        ("trustwire_reconcile_total", {"kind": "identity", "result": "error"}, 2),
        ("trustwire_reconcile_duration_seconds_count", {"kind": "identity", "result": "ok"}, 7),
        ("trustwire_reconcile_duration_seconds_sum", {"kind": "identity", "result": "ok"}, 0.75),
        ("trustwire_reconcile_duration_seconds_sum", {"kind": "relationship", "result": "ok"}, 0.125),
        ("trustwire_api_requests_total", {"verb": "get"}, 40),
        ("trustwire_api_requests_total", {"verb": "patch"}, 12),
        ("trustwire_api_errors_total", {"code": "503"}, 4),
        ("trustwire_api_errors_total", {"code": "409"}, 1),
        ("trustwire_queue_depth", {}, 3),
    ],
)
def test_reconcile_api_and_queue_counters(metric: str, labels: dict[str, str], value: float) -> None:
    assert registry_for(populated()).get_sample_value(metric, labels) == value


def test_values_are_read_at_scrape_time() -> None:
    controller = populated()
    registry = registry_for(controller)
    assert registry.get_sample_value("trustwire_queue_depth") == 3
    controller.queue.clear()
    controller.client.counts["get"] += 1
    controller.statuses[("identity", "governance", "dgc")] = identity_status(
        cert_not_after="2027-02-02T02:02:02Z"
    )
    assert registry.get_sample_value("trustwire_queue_depth") == 0
    assert registry.get_sample_value("trustwire_api_requests_total", {"verb": "get"}) == 41
    assert registry.get_sample_value(
        "trustwire_certificate_expiration_timestamp_seconds", {"namespace": "governance", "name": "dgc"}
    ) == epoch("2027-02-02T02:02:02Z")


def test_deleted_objects_stop_exporting_when_the_controller_tracks_live_objects() -> None:
    controller = FakeControllerWithState(statuses=populated().statuses)
    controller.state.identities[IdentityRef("governance", "dgc")] = {}
    controller.state.relationships[("governance", "dgc-jobserver")] = object()
    registry = registry_for(controller)
    assert (
        ready_true(registry, "governance", "dgc")
        == 1
    )
    assert (
        ready_true(registry, "jobs", "jobserver")
        is None
    )
    assert (
        registry.get_sample_value(
            "trustwire_certificate_expiration_timestamp_seconds", {"namespace": "jobs", "name": "jobserver"}
        )
        is None
    )
    assert (
        registry.get_sample_value(
            "trustwire_relationship_ready", {"namespace": "jobs", "relationship": "denied"}
        )
        is None
    )


def test_partial_and_malformed_statuses_are_tolerated() -> None:
    controller = FakeController()
    controller.statuses[("identity", "ns", "invalid-spec")] = {
        "conditions": [
            condition("Ready", "False", "InvalidSpec"),
            condition("SpecValid", "False", "InvalidSpec"),
        ],
        "observedGeneration": 2,
    }
    controller.statuses[("identity", "ns", "garbage")] = {
        "ca": "not a mapping",
        "certificate": {"notAfter": "next tuesday", "renewalTime": 17},
        "jwt": {"rotationTime": "2026-01-01T00:00:00"},  # no zone: ambiguous, not exported
        "conditions": "nope",
        "peerCount": "many",
        "peers": [{}, {}],
        "rotation": ["x"],
    }
    registry = registry_for(controller)
    for name in ("invalid-spec", "garbage"):
        labels = {"namespace": "ns", "identity": name}
        cert = {"namespace": "ns", "name": name}
        assert registry.get_sample_value("trustwire_certificate_ready_status", {**cert, "condition": "True"}) == 0
        for metric in ("ca_expiry", "jwt_key_rotation"):
            assert registry.get_sample_value(f"trustwire_{metric}_timestamp_seconds", labels) is None
        for metric in ("certificate_expiration", "certificate_renewal"):
            assert registry.get_sample_value(f"trustwire_{metric}_timestamp_seconds", cert) is None
    assert (
        registry.get_sample_value("trustwire_identity_peers", {"namespace": "ns", "identity": "invalid-spec"})
        == 0
    )
    assert (
        registry.get_sample_value("trustwire_identity_peers", {"namespace": "ns", "identity": "garbage"}) == 2
    )
    # an operator that has reconciled nothing yet still exports its counters
    empty = registry_for(FakeController())
    assert empty.get_sample_value("trustwire_queue_depth") == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-22T11:15:34Z", epoch("2026-12-22T11:15:34Z")),
        ("2026-12-22T12:15:34+01:00", epoch("2026-12-22T11:15:34Z")),
        ("2026-12-22T11:15:34", None),
        ("", None),
        (None, None),
        (1767225600, None),
        ("soon", None),
    ],
)
def test_parse_timestamp(text: object, expected: float | None) -> None:
    assert parse_timestamp(text) == expected


def test_scrapes_while_the_controller_changes() -> None:
    """The HTTP thread reads while the event loop writes: no 'dictionary changed size' errors."""
    controller = populated()
    registry = registry_for(controller)
    stop = threading.Event()

    def churn() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            controller.statuses[("identity", "churn", f"id{i % 200}")] = identity_status()
            if i % 3 == 0:
                controller.statuses.pop(("identity", "churn", f"id{(i * 7) % 200}"), None)
            controller.client.counts[f"verb{i % 50}"] += 1
            controller.reconcile_results[("identity", f"r{i % 20}")] = i
            controller.reconcile_seconds[("identity", f"r{i % 20}")] = i / 10

    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    try:
        for _ in range(60):
            assert (
                ready_true(registry, "governance", "dgc")
                == 1
            )
    finally:
        stop.set()
        worker.join(5)


# --------------------------------------------------------------------------------------
# HTTP endpoint
# --------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback http in a test
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(families: Mapping[str, Any], family: str, sample_name: str, **labels: str) -> float | None:
    for s in families[family].samples:
        if s.name == sample_name and s.labels == labels:
            return float(s.value)
    return None


def test_http_scrape_parses_as_prometheus_exposition() -> None:
    controller = populated()
    port = free_port()
    stop = start_metrics_server(controller, port, addr="127.0.0.1")
    try:
        families = scrape(f"http://127.0.0.1:{port}/metrics")
        assert families["trustwire_certificate_expiration_timestamp_seconds"].type == "gauge"
        assert sample(
            families,
            "trustwire_certificate_expiration_timestamp_seconds",
            "trustwire_certificate_expiration_timestamp_seconds",
            namespace="governance",
            name="dgc",
        ) == epoch("2026-12-22T11:15:34Z")
        assert sample(
            families,
            "trustwire_ca_expiry_timestamp_seconds",
            "trustwire_ca_expiry_timestamp_seconds",
            namespace="jobs",
            identity="jobserver",
        ) == epoch("2027-01-01T00:00:00Z")
        assert families["trustwire_reconcile"].type == "counter"
        assert (
            sample(
                families, "trustwire_reconcile", "trustwire_reconcile_total", kind="identity", result="error"
            )
            == 2
        )
        assert families["trustwire_reconcile_duration_seconds"].type == "histogram"
        assert (
            sample(
                families,
                "trustwire_reconcile_duration_seconds",
                "trustwire_reconcile_duration_seconds_sum",
                kind="identity",
                result="ok",
            )
            == 0.75
        )
        assert (
            sample(
                families,
                "trustwire_reconcile_duration_seconds",
                "trustwire_reconcile_duration_seconds_count",
                kind="identity",
                result="ok",
            )
            == 7
        )
        assert sample(families, "trustwire_api_requests", "trustwire_api_requests_total", verb="create") == 9
        assert sample(families, "trustwire_api_errors", "trustwire_api_errors_total", code="503") == 4
        assert sample(families, "trustwire_queue_depth", "trustwire_queue_depth") == 3
        assert (
            sample(
                families,
                "trustwire_rotation_phase",
                "trustwire_rotation_phase",
                namespace="governance",
                identity="dgc",
                material="ca",
                phase="Distributing",
            )
            == 1
        )
        # a private registry: ours plus its own process/platform collectors, nothing of the global one
        assert all(name.startswith(("trustwire_", "process_", "python_info")) for name in families)
    finally:
        stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
    stop()  # stopping twice is harmless


def test_two_servers_in_one_process_are_independent() -> None:
    first, second = populated(), FakeController()
    second.queue.extend(range(11))
    stop_first = start_metrics_server(first, 0, addr="127.0.0.1")
    stop_second = start_metrics_server(second, 0, addr="127.0.0.1")
    try:
        assert stop_first.port != stop_second.port
        a, b = scrape(stop_first.url), scrape(stop_second.url)
        assert sample(a, "trustwire_queue_depth", "trustwire_queue_depth") == 3
        assert sample(b, "trustwire_queue_depth", "trustwire_queue_depth") == 11
        ready = "trustwire_certificate_ready_status"
        assert a[ready].samples and not b[ready].samples
    finally:
        stop_first()
        stop_second()


# --------------------------------------------------------------------------------------
# Families: what a scrape exports, against a table and against docs/metrics.md
# --------------------------------------------------------------------------------------
METRICS_DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
_IDENTITY = frozenset({"namespace", "identity"})
_CERTIFICATE = frozenset({"namespace", "name"})
_ROTATION = _IDENTITY | {"material", "phase"}
_RECONCILE = frozenset({"kind", "result"})
#: Every trustwire family a scrape of ``populated()`` exports: name → (type, labels); samples
#: of a histogram also carry ``le``.
FAMILIES: dict[str, tuple[str, frozenset[str]]] = {
    "trustwire_ca_expiry_timestamp_seconds": ("gauge", _IDENTITY),
    "trustwire_certificate_expiration_timestamp_seconds": ("gauge", _CERTIFICATE),
    "trustwire_certificate_renewal_timestamp_seconds": ("gauge", _CERTIFICATE),
    "trustwire_certificate_ready_status": ("gauge", _CERTIFICATE | {"condition"}),
    "trustwire_jwt_key_rotation_timestamp_seconds": ("gauge", _IDENTITY),
    "trustwire_identity_peers": ("gauge", _IDENTITY),
    "trustwire_rotation_phase": ("gauge", _ROTATION),
    "trustwire_rotation_phase_start_timestamp_seconds": ("gauge", _ROTATION),
    "trustwire_relationship_ready": ("gauge", frozenset({"namespace", "relationship"})),
    "trustwire_reconcile": ("counter", _RECONCILE),
    "trustwire_reconcile_duration_seconds": ("histogram", _RECONCILE),
    "trustwire_api_requests": ("counter", frozenset({"verb"})),
    "trustwire_api_errors": ("counter", frozenset({"code"})),
    "trustwire_queue_depth": ("gauge", frozenset()),
    "trustwire_leader": ("gauge", frozenset()),
    "trustwire_build_info": ("gauge", frozenset({"version", "python"})),
}
#: The sample suffix of each documented type (docs name counters by their ``_total`` series).
_SUFFIX = {"counter": "_total"}


def documented_families() -> dict[str, tuple[str, frozenset[str]]]:
    """The rows of docs/metrics.md's tables: family → (type, labels); "as above" repeats a row."""
    found: dict[str, tuple[str, frozenset[str]]] = {}
    previous: frozenset[str] = frozenset()
    for line in METRICS_DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`trustwire_"):
            continue
        kind = cells[1]
        labels = previous if cells[2] == "as above" else frozenset(
            re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", cells[2])))
        (name,) = re.findall(r"`(trustwire_\w+)`", cells[0])
        suffix = _SUFFIX.get(kind, "")
        found[name.removesuffix(suffix) if suffix else name] = (kind, labels)
        previous = labels
    return found


def scraped_families(families: Mapping[str, Any]) -> dict[str, tuple[str, frozenset[str]]]:
    """The trustwire families of a parsed scrape: name → (type, the labels of every sample)."""
    out: dict[str, tuple[str, frozenset[str]]] = {}
    for name, family in families.items():
        if not name.startswith("trustwire_"):
            continue
        label_sets = {frozenset(s.labels) - {"le"} for s in family.samples}
        assert len(label_sets) == 1, f"{name}: samples with different labels {label_sets}"
        out[name] = (family.type, label_sets.pop())
    return out


@pytest.fixture(scope="module")
def scraped() -> dict[str, Any]:
    """One HTTP scrape of a populated stand-in, parsed by prometheus_client's text parser."""
    server = start_metrics_server(populated(), 0, addr="127.0.0.1")
    try:
        return scrape(server.url)
    finally:
        server.stop()


@pytest.mark.parametrize(("family", "expected"), sorted(FAMILIES.items()))
def test_a_scrape_has_every_family_with_its_labels(
    scraped: dict[str, Any], family: str, expected: tuple[str, frozenset[str]]
) -> None:
    assert scraped_families(scraped)[family] == expected


def test_the_scrape_exports_exactly_the_table(scraped: dict[str, Any]) -> None:
    assert scraped_families(scraped) == FAMILIES


def test_docs_family_table_equals_what_a_scrape_exports(scraped: dict[str, Any]) -> None:
    assert documented_families() == scraped_families(scraped)


@pytest.mark.parametrize(
    "family", ["process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds",
               "process_start_time_seconds", "python_info"])
def test_process_and_platform_metrics_are_served(scraped: dict[str, Any], family: str) -> None:
    assert scraped[family].samples


# --------------------------------------------------------------------------------------
# cert-manager's ready status, leader, build info, reconcile histogram
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("conditions", "current"),
    [
        ([condition("Ready", "True", "Ready")], "True"),
        ([condition("Ready", "False", "InvalidSpec")], "False"),
        ([condition("Ready", "Unknown", "Reconciling")], "Unknown"),
        ([condition("CAReady", "True", "Valid")], "Unknown"),  # no Ready condition yet
        ([], "Unknown"),
        ([condition("Ready", "Maybe", "Odd")], "Unknown"),
    ],
)
def test_ready_status_has_one_series_per_condition_value(conditions: list[dict[str, Any]], current: str) -> None:
    controller = FakeController()
    controller.statuses[("identity", "ns", "sid")] = {"conditions": conditions}
    registry = registry_for(controller)
    for value in ("True", "False", "Unknown"):
        labels = {"namespace": "ns", "name": "sid", "condition": value}
        assert registry.get_sample_value("trustwire_certificate_ready_status", labels) == (value == current)


@dataclass
class FakeElection:
    leading: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.mark.parametrize(("leading", "expected"), [(None, 1.0), (True, 1.0), (False, 0.0)])
def test_leader_gauge(leading: bool | None, expected: float) -> None:
    """1 while holding the Lease, 0 on standby; without leader election the one replica leads."""
    controller = FakeControllerWithElection()
    if leading is not None:
        controller.election = FakeElection()
        if leading:
            controller.election.leading.set()
    assert registry_for(controller).get_sample_value("trustwire_leader") == expected


@dataclass
class FakeControllerWithElection(FakeController):
    election: FakeElection | None = None


def test_build_info_names_the_version_and_python() -> None:
    labels = {"version": trustwire.__version__, "python": platform.python_version()}
    assert registry_for(FakeController()).get_sample_value("trustwire_build_info", labels) == 1


@pytest.mark.parametrize(
    ("key", "le", "expected"),
    [
        (("identity", "ok"), "0.001", 2),
        (("identity", "ok"), "0.1", 6),
        (("identity", "ok"), "1.0", 7),
        (("identity", "ok"), "+Inf", 7),
        (("identity", "error"), "0.1", 0),
        (("identity", "error"), "1.0", 1),
        (("identity", "error"), "+Inf", 2),  # one pass took longer than every bound
        (("relationship", "ok"), "0.001", 3),
    ],
)
def test_reconcile_histogram_buckets_are_cumulative(key: tuple[str, str], le: str, expected: float) -> None:
    registry = registry_for(populated())
    labels = {"kind": key[0], "result": key[1], "le": le}
    assert registry.get_sample_value("trustwire_reconcile_duration_seconds_bucket", labels) == expected


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [(0.0, 0), (0.0005, 0), (0.0006, 1), (0.3, 9), (10.0, 13), (10.5, 14), (3600.0, 14)],
)
def test_workers_count_each_pass_in_its_bucket(seconds: float, bucket: int) -> None:
    """A pass lands in the first bucket whose bound it does not exceed (Prometheus's ``le``)."""
    counted = SimpleNamespace(reconcile_results={}, reconcile_seconds={}, reconcile_buckets={},
                              reconcile_bounds=RECONCILE_BUCKETS)
    Workers._count_pass(counted, ("identity", "ok"), seconds)  # type: ignore[arg-type]
    expected = [0] * (len(RECONCILE_BUCKETS) + 1)
    expected[bucket] = 1
    assert counted.reconcile_buckets == {("identity", "ok"): expected}
    assert counted.reconcile_results == {("identity", "ok"): 1}
    assert counted.reconcile_seconds == {("identity", "ok"): seconds}


# --------------------------------------------------------------------------------------
# Integration: the real operator on the API emulator
# --------------------------------------------------------------------------------------
async def wait_ready(client: Client, refs: list[tuple[Any, str, str]], limit: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        bodies = [await client.get(resource, ns, name) for resource, ns, name in refs]
        if all(
            any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in ((b or {}).get("status") or {}).get("conditions") or []
            )
            for b in bodies
        ):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not Ready: {[(b or {}).get('status') for b in bodies]}")
        await asyncio.sleep(0.1)


@pytest.mark.integration
async def test_scrape_of_the_real_operator_matches_the_statuses_it_wrote() -> None:
    docs = load_manifests(default_examples())
    refs = [
        (
            IDENTITIES if d["kind"] == "ServiceIdentity" else RELATIONSHIPS,
            d["metadata"]["namespace"],
            d["metadata"]["name"],
        )
        for d in docs
        if d["kind"] in ("ServiceIdentity", "TrustRelationship")
    ]
    async with running_emulator() as emu:
        config = ApiConfig(server=emu.url)
        async with (
            running_operator(config, OperatorOptions(workers=2, resync_interval=3600)) as controller,
            Client(config) as client,
        ):
            await apply(client, docs)
            await wait_ready(client, refs)
            await controller.wait_idle()
            stop = start_metrics_server(controller, 0, addr="127.0.0.1")
            try:
                families = await asyncio.to_thread(scrape, stop.url)
            finally:
                await asyncio.to_thread(stop)
            for resource, ns, name in refs:
                body = await client.get(resource, ns, name)
                assert body is not None
                status = body["status"]
                if resource is RELATIONSHIPS:
                    assert (
                        sample(
                            families,
                            "trustwire_relationship_ready",
                            "trustwire_relationship_ready",
                            namespace=ns,
                            relationship=name,
                        )
                        == 1
                    )
                    continue
                labels = {"namespace": ns, "identity": name}
                cert = {"namespace": ns, "name": name}
                for family, value, where in (
                    ("trustwire_ca_expiry_timestamp_seconds", status["ca"]["notAfter"], labels),
                    ("trustwire_certificate_expiration_timestamp_seconds", status["certificate"]["notAfter"], cert),
                    ("trustwire_certificate_renewal_timestamp_seconds", status["certificate"]["renewalTime"], cert),
                    ("trustwire_jwt_key_rotation_timestamp_seconds", status["jwt"]["rotationTime"], labels),
                ):
                    assert sample(families, family, family, **where) == epoch(value), family
                assert sample(families, "trustwire_certificate_ready_status", "trustwire_certificate_ready_status",
                              condition="True", **cert) == 1
                for material, progress in status.get("rotation", {}).items():
                    if isinstance(progress, dict) and "phase" in progress:
                        assert sample(families, "trustwire_rotation_phase", "trustwire_rotation_phase",
                                      material=material, phase=progress["phase"], **labels) == 1
                assert (
                    sample(families, "trustwire_identity_peers", "trustwire_identity_peers", **labels)
                    == status["peerCount"]
                    == 1
                )
            reconciled = sample(
                families, "trustwire_reconcile", "trustwire_reconcile_total", kind="identity", result="ok"
            )
            assert reconciled == controller.reconcile_results[("identity", "ok")] > 0
            # every pass is in the histogram's +Inf bucket; without leader election this replica leads
            assert sample(families, "trustwire_reconcile_duration_seconds",
                          "trustwire_reconcile_duration_seconds_bucket",
                          kind="identity", result="ok", le="+Inf") == reconciled
            assert sum(controller.reconcile_buckets[("identity", "ok")]) >= reconciled
            assert sample(families, "trustwire_leader", "trustwire_leader") == 1
            creates = sample(families, "trustwire_api_requests", "trustwire_api_requests_total",
                             verb="create")
            assert creates is not None and creates >= 1
            assert "trustwire_queue_depth" in families
