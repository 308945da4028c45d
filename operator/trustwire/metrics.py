"""Prometheus metrics for one running operator, read from the controller at scrape time.

Nothing here hooks into the reconcile path: :class:`ControllerCollector` reads what the
:class:`~trustwire.controller.reconciler.Controller` already keeps — the last status it
computed for every object (written or not), its reconcile counters, the API client's
request and error counters and the work queue — whenever Prometheus scrapes. A scrape
therefore always shows the operator's current view, costs nothing between scrapes, and
cannot slow down or break a reconcile.

Each server gets a *private* :class:`~prometheus_client.CollectorRegistry` (this collector
plus prometheus_client's process and platform collectors), so several operators can run in
one process (the integration tests do) without colliding in the global registry. The HTTP
server runs in a daemon thread; the controller's dictionaries are copied atomically before
they are read (see :func:`_snapshot`), so a scrape never sees a dictionary change size
under it.

Every metric is documented, with alert examples, in ``docs/metrics.md``.
"""

from __future__ import annotations

import dataclasses
import platform
import threading
from collections.abc import Iterator, Mapping, Sequence, Sized
from typing import Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from trustwire import __version__
from trustwire.plan.ca import CAPhase
from trustwire.plan.conditions import ConditionStatus
from trustwire.plan.jwt import JwtPhase
from trustwire.plan.status import IdentityStatus, RelationshipStatus
from trustwire.times import parse_time

__all__ = ["ControllerCollector", "ControllerLike", "MetricsServer", "parse_timestamp",
           "rotation_phases", "start_metrics_server"]

PREFIX = "trustwire_"

_K = TypeVar("_K")
_V = TypeVar("_V")


class _ClientLike(Protocol):
    @property
    def counts(self) -> Mapping[str, int]: ...

    @property
    def errors(self) -> Mapping[str, int]: ...


class ControllerLike(Protocol):
    """What the collector reads; :class:`trustwire.controller.reconciler.Controller` has all of it."""

    @property
    def statuses(self) -> Mapping[tuple[str, str, str], Mapping[str, Any]]: ...

    @property
    def reconcile_results(self) -> Mapping[tuple[str, str], int]: ...

    @property
    def reconcile_seconds(self) -> Mapping[tuple[str, str], float]: ...

    @property
    def reconcile_buckets(self) -> Mapping[tuple[str, str], Sequence[int]]: ...

    @property
    def reconcile_bounds(self) -> Sequence[float]: ...

    @property
    def client(self) -> _ClientLike: ...

    @property
    def queue(self) -> Sized: ...


def parse_timestamp(value: object) -> float | None:
    """An RFC 3339 timestamp from a status (``2027-01-01T00:00:00Z``) → Unix seconds; None if unusable."""
    parsed = parse_time(value)
    return parsed.timestamp() if parsed is not None else None


def _snapshot(mapping: Mapping[_K, _V]) -> dict[_K, _V]:
    """A copy of a dictionary another thread (the event loop) may be changing.

    Copying a plain dict is one C call under the GIL and cannot interleave with a write;
    the retry only covers mappings whose copy runs Python code.
    """
    for _ in range(5):
        try:
            return dict(mapping)
        except RuntimeError:  # "dictionary changed size during iteration"
            continue
    return dict(mapping)


@dataclasses.dataclass(frozen=True)
class Readings:
    """What the gauges export of one identity's status, read in :func:`read_status` only."""

    #: status of the Ready condition (Unknown also when there is none yet)
    ready: ConditionStatus
    peers: float
    #: gauge name → its RFC 3339 timestamp as found in the status (parsed when exported)
    stamps: Mapping[str, str | None]
    phases: list[tuple[str, str, float | None]]


def _ready(status: IdentityStatus | RelationshipStatus) -> ConditionStatus:
    ready = status.condition("Ready") or {}
    value = ready.get("status")
    return ConditionStatus(value) if value in tuple(ConditionStatus) else ConditionStatus.UNKNOWN


def read_status(status: Mapping[str, Any]) -> Readings:
    """What an identity's status says, for the gauges (through the typed status model)."""
    s = IdentityStatus.from_dict(status)
    stamps = {
        "ca_expiry_timestamp_seconds": s.ca.not_after if s.ca else None,
        "certificate_expiration_timestamp_seconds": s.certificate.not_after if s.certificate else None,
        "certificate_renewal_timestamp_seconds": s.certificate.renewal_time if s.certificate else None,
        "jwt_key_rotation_timestamp_seconds": s.jwt.rotation_time if s.jwt else None,
    }
    return Readings(_ready(s), float(s.peer_count), stamps, rotation_phases(s))


def rotation_phases(status: IdentityStatus) -> list[tuple[str, str, float | None]]:
    """(material, phase, phase start as Unix seconds or None) of each rotation state machine;
    none when the status has no rotation section (an identity not yet planned). An Idle phase
    has no start: nothing is in progress."""
    rotation = status.rotation
    if rotation is None:
        return []
    ca, jwt = rotation.ca, rotation.jwt
    return [("ca", ca.phase, None if ca.phase == CAPhase.IDLE else parse_timestamp(ca.since)),
            ("jwt", jwt.phase, None if jwt.phase == JwtPhase.IDLE else parse_timestamp(jwt.since))]


def is_leader(controller: object) -> bool:
    """Whether this replica acts: it holds the Lease, or runs without leader election."""
    election = getattr(controller, "election", None)
    if election is None:
        return True
    return bool(election.leading.is_set())


class ControllerCollector(Collector):
    """A custom collector: every scrape reads the controller's current state."""

    def __init__(self, controller: ControllerLike) -> None:
        self.controller = controller

    def _live(self) -> tuple[set[tuple[str, str]] | None, set[tuple[str, str]] | None]:
        """Keys of the objects that still exist, if the controller tracks them.

        ``Controller.statuses`` keeps the last status of deleted objects too; a deleted
        identity must not keep exporting expiry gauges (stale series fire stale alerts).
        """
        state = getattr(self.controller, "state", None)
        if state is None:
            return None, None
        identities = {(str(getattr(r, "namespace", "")), str(getattr(r, "name", "")))
                      for r in list(getattr(state, "identities", {}))}
        relationships = {(str(k[0]), str(k[1])) for k in list(getattr(state, "relationships", {}))}
        return identities, relationships

    def collect(self) -> Iterator[Metric]:
        yield from self._status_metrics()
        yield from self._reconcile_metrics()
        yield from self._api_metrics()
        yield GaugeMetricFamily(PREFIX + "queue_depth",
                                "Keys waiting in the work queue, scheduled wake-ups included.",
                                value=float(len(self.controller.queue)))
        yield GaugeMetricFamily(PREFIX + "leader",
                                "1 while this replica holds the leader Lease (or runs without leader "
                                "election), 0 on a standby replica.",
                                value=1.0 if is_leader(self.controller) else 0.0)
        info = GaugeMetricFamily(PREFIX + "build_info", "Always 1; the labels name the running build.",
                                 labels=["version", "python"])
        info.add_metric([__version__, platform.python_version()], 1.0)
        yield info

    def _status_metrics(self) -> list[Metric]:
        """The gauges of every live object's last status, in the order of :data:`GAUGES`."""
        gauges = {name: GaugeMetricFamily(PREFIX + name, help_text, labels=labels)
                  for name, (help_text, labels) in GAUGES.items()}
        statuses = _snapshot(self.controller.statuses)
        live_identities, live_relationships = self._live()
        for (kind, namespace, name), status in sorted(statuses.items()):
            if not isinstance(status, Mapping):
                continue
            if kind == "relationship":
                if live_relationships is None or (namespace, name) in live_relationships:
                    ready = _ready(RelationshipStatus.from_dict(status)) is ConditionStatus.TRUE
                    gauges["relationship_ready"].add_metric([namespace, name], 1.0 if ready else 0.0)
            elif kind == "identity" and (live_identities is None or (namespace, name) in live_identities):
                _add_identity(gauges, [namespace, name], read_status(status))
        return list(gauges.values())

    def _reconcile_metrics(self) -> list[Metric]:
        results = _snapshot(self.controller.reconcile_results)
        seconds = _snapshot(self.controller.reconcile_seconds)
        buckets = _snapshot(self.controller.reconcile_buckets)
        bounds = list(self.controller.reconcile_bounds)
        reconciles = CounterMetricFamily(
            PREFIX + "reconcile", "Reconcile passes by kind (identity, relationship) and result (ok, error).",
            labels=["kind", "result"])
        durations = HistogramMetricFamily(
            PREFIX + "reconcile_duration_seconds", "Time spent in reconcile passes, by kind and result.",
            labels=["kind", "result"])
        for (kind, result), count in sorted(results.items()):
            reconciles.add_metric([kind, result], float(count))
            durations.add_metric([kind, result], _cumulative(bounds, buckets.get((kind, result), ()), count),
                                 sum_value=float(seconds.get((kind, result), 0.0)))
        return [reconciles, durations]

    def _api_metrics(self) -> list[Metric]:
        client = self.controller.client
        requests = CounterMetricFamily(
            PREFIX + "api_requests", "Requests to the Kubernetes API server by verb (retries included).",
            labels=["verb"])
        for verb, count in sorted(_snapshot(client.counts).items()):
            requests.add_metric([verb], float(count))
        errors = CounterMetricFamily(
            PREFIX + "api_errors",
            "Failed Kubernetes API requests by HTTP status (503 also counts failed connections).", labels=["code"])
        for code, count in sorted(_snapshot(client.errors).items()):
            errors.add_metric([str(code)], float(count))
        return [requests, errors]


def _cumulative(bounds: Sequence[float], counts: Sequence[int], total: int) -> list[tuple[str, float]]:
    """Per-bucket pass counts → the histogram's cumulative ``le`` buckets, ``+Inf`` = every pass."""
    buckets: list[tuple[str, float]] = []
    running = 0
    for index, bound in enumerate(bounds):
        running += counts[index] if index < len(counts) else 0
        buckets.append((repr(float(bound)), float(running)))
    buckets.append(("+Inf", float(total)))
    return buckets


def _add_identity(gauges: Mapping[str, GaugeMetricFamily], labels: list[str], readings: Readings) -> None:
    for condition in ConditionStatus:
        gauges["certificate_ready_status"].add_metric([*labels, condition.value], float(condition is readings.ready))
    gauges["identity_peers"].add_metric(labels, readings.peers)
    for gauge, value in readings.stamps.items():
        stamp = parse_timestamp(value)
        if stamp is not None:
            gauges[gauge].add_metric(labels, stamp)
    for material, phase, started in readings.phases:
        gauges["rotation_phase"].add_metric([*labels, material, phase], 1.0)
        if started is not None:
            gauges["rotation_phase_start_timestamp_seconds"].add_metric([*labels, material, phase], started)


#: cert-manager's labels for a certificate, so its dashboards and alerts carry over
_CERTIFICATE = ["namespace", "name"]
_IDENTITY = ["namespace", "identity"]
_ROTATION = ["namespace", "identity", "material", "phase"]
#: Every gauge of object status (name without the prefix → help, labels), in export order.
GAUGES: dict[str, tuple[str, list[str]]] = {
    "ca_expiry_timestamp_seconds": (
        "notAfter of the identity's current CA certificate (status.ca.notAfter), Unix seconds.", _IDENTITY),
    "certificate_expiration_timestamp_seconds": (
        "notAfter of the identity's leaf certificate (status.certificate.notAfter), Unix seconds.", _CERTIFICATE),
    "certificate_renewal_timestamp_seconds": (
        "When the leaf certificate is due for renewal (status.certificate.renewalTime), Unix seconds.",
        _CERTIFICATE),
    "certificate_ready_status": (
        "1 for the current status (True, False, Unknown) of the ServiceIdentity's Ready condition, else 0.",
        [*_CERTIFICATE, "condition"]),
    "jwt_key_rotation_timestamp_seconds": (
        "When the JWT signing key is due for rotation (status.jwt.rotationTime), Unix seconds.", _IDENTITY),
    "identity_peers": ("Number of peers the identity trusts (status.peerCount).", _IDENTITY),
    "rotation_phase": (
        "1 for the current phase of each rotation state machine (status.rotation.<material>.phase: Idle, "
        "Distributing, Retiring, Publishing).", _ROTATION),
    "rotation_phase_start_timestamp_seconds": (
        "When the current rotation phase started (status.rotation.<material>.since), Unix seconds; "
        "absent while Idle.", _ROTATION),
    "relationship_ready": (
        "1 if the TrustRelationship's Ready condition is True, else 0.", ["namespace", "relationship"]),
}


class MetricsServer:
    """A running ``/metrics`` endpoint; call it (or :meth:`stop`) to shut it down."""

    def __init__(self, registry: CollectorRegistry, port: int, addr: str) -> None:
        self.registry = registry
        self._server, self._thread = start_http_server(port, addr=addr, registry=registry)
        self.port: int = int(self._server.server_address[1])
        self.addr = addr
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.addr in ("0.0.0.0", "") else self.addr  # noqa: S104 - a comparison
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __call__(self) -> None:
        self.stop()


def start_metrics_server(controller: ControllerLike, port: int, addr: str = "0.0.0.0") -> MetricsServer:  # noqa: S104
    """Serve ``controller``'s metrics on ``http://addr:port/metrics`` from a daemon thread.

    ``port=0`` picks a free port (see :attr:`MetricsServer.port`). The returned object is
    the stop callable; stopping twice is harmless.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ControllerCollector(controller))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return MetricsServer(registry, port, addr)
