"""What the CLI reads of an object's status, read in :func:`observe` and nowhere else.

Status is user-editable, so every value stays as found (``Any``): the commands print what
is there, and a missing or malformed section reads as empty rather than raising.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sized
from typing import Any

#: The materials a status reports and rotates.
MATERIALS = ("ca", "certificate", "jwt")

#: kstatus summaries and informational conditions: never "the problem" (Rotating=False is idle).
SUMMARY_CONDITIONS = ("Ready", "Reconciling", "Stalled", "Rotating")


def section(body: Mapping[str, Any] | None, key: str) -> Mapping[str, Any]:
    """``body[key]`` if it is a mapping, else empty: status and spec are user-editable."""
    value = (body or {}).get(key)
    return value if isinstance(value, Mapping) else {}


@dataclasses.dataclass(frozen=True)
class MaterialSeen:
    """``status.<material>``: the CA, the leaf certificate or the JWT key."""

    serial: Any
    not_after: Any
    renewal_time: Any
    kid: Any
    dns_names: Any


@dataclasses.dataclass(frozen=True)
class RotationSeen:
    """``status.rotation.<material>``."""

    phase: Any
    waiting_for: Any


@dataclasses.dataclass(frozen=True)
class Observed:
    conditions: tuple[Mapping[str, Any], ...]
    peers: Any
    materials: Mapping[str, MaterialSeen]
    rotations: Mapping[str, RotationSeen]
    handled_request: Any


def observe(body: Mapping[str, Any] | None) -> Observed:
    status = section(body, "status")
    rotation = section(status, "rotation")
    raw_conditions = status.get("conditions")
    conditions = tuple(c for c in raw_conditions if isinstance(c, Mapping)) if isinstance(raw_conditions, list) else ()
    listed = status.get("peers")
    peers = status["peerCount"] if "peerCount" in status else len(listed) if isinstance(listed, Sized) else 0
    materials = {m: MaterialSeen(serial=s.get("serial"), not_after=s.get("notAfter"), renewal_time=s.get("renewalTime"),
                                 kid=s.get("kid"), dns_names=s.get("dnsNames"))
                 for m in MATERIALS for s in (section(status, m),)}
    rotations = {m: RotationSeen(phase=r.get("phase"), waiting_for=r.get("waitingFor"))
                 for m in MATERIALS for r in (section(rotation, m),)}
    return Observed(conditions, peers, materials, rotations, rotation.get("handledRequest"))


def condition(observed: Observed, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in observed.conditions if c.get("type") == type_), None)


def first_problem(observed: Observed) -> str | None:
    """The first failing condition of an object that is not Ready, as one line."""
    ready = condition(observed, "Ready")
    if ready is not None and ready.get("status") == "True":
        return None
    for cond in observed.conditions:
        if cond.get("type") not in SUMMARY_CONDITIONS and cond.get("status") == "False":
            return f"{cond.get('type')} {cond.get('reason')}: {cond.get('message')}"
    if ready is not None:
        return f"{ready.get('reason')}: {ready.get('message')}"
    return "the operator has not reported a status yet (is it running and watching this namespace?)"


def ready(observed: Observed) -> bool:
    cond = condition(observed, "Ready")
    return cond is not None and cond.get("status") == "True"


def key(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = section(body, "metadata")
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def between(body: Mapping[str, Any]) -> list[str]:
    """A relationship's ``spec.between`` as ``namespace/identity`` (the namespace defaults to its own)."""
    own = key(body)[0]
    members = section(body, "spec").get("between")
    return [f"{b.get('namespace') or own}/{b.get('identity')}"
            for b in (members if isinstance(members, list) else []) if isinstance(b, Mapping)]


def view(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """One object as ``-o json|yaml`` prints it; the keys are a documented contract (docs/reference.md §5)."""
    observed = observe(body)
    ready_condition = condition(observed, "Ready") or {}
    namespace, name = key(body)
    out: dict[str, Any] = {
        "kind": kind, "namespace": namespace, "name": name, "ready": ready(observed),
        "reason": ready_condition.get("reason"), "message": ready_condition.get("message"),
        "problem": first_problem(observed)}
    if kind == "TrustRelationship":
        return out | {"between": between(body)}
    materials = observed.materials
    return out | {
        "peers": observed.peers,
        "ca": {"serial": materials["ca"].serial, "notAfter": materials["ca"].not_after},
        "certificate": {"serial": materials["certificate"].serial, "notAfter": materials["certificate"].not_after,
                        "renewalTime": materials["certificate"].renewal_time},
        "kid": materials["jwt"].kid,
        "rotation": {m: observed.rotations[m].phase for m in MATERIALS},
    }


def conditions_view(observed: Observed) -> list[dict[str, Any]]:
    """Every condition, as found, with the keys ``status NAME -o json`` prints."""
    return [{"type": c.get("type"), "status": c.get("status"), "reason": c.get("reason"),
             "message": c.get("message"), "lastTransitionTime": c.get("lastTransitionTime")}
            for c in observed.conditions]
