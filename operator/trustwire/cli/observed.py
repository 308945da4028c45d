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


@dataclasses.dataclass(frozen=True)
class View:
    """One object as the commands report it; :meth:`as_json` is the documented ``-o json|yaml``
    shape (docs/reference.md §5), so its keys change only with the docs."""

    kind: str
    namespace: str
    name: str
    ready: bool
    #: the Ready condition's, as found
    reason: Any
    message: Any
    #: the first failing condition as one line, None when Ready
    problem: str | None
    observed: Observed
    #: a relationship's members, ``namespace/identity``
    between: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        out = {"kind": self.kind, "namespace": self.namespace, "name": self.name, "ready": self.ready,
               "reason": self.reason, "message": self.message, "problem": self.problem}
        if self.kind == "TrustRelationship":
            return out | {"between": list(self.between)}
        materials = self.observed.materials
        ca, cert = materials["ca"], materials["certificate"]
        return out | {
            "peers": self.observed.peers,
            "ca": {"serial": ca.serial, "notAfter": ca.not_after},
            "certificate": {"serial": cert.serial, "notAfter": cert.not_after, "renewalTime": cert.renewal_time},
            "kid": materials["jwt"].kid,
            "rotation": {m: self.observed.rotations[m].phase for m in MATERIALS},
        }


def view(kind: str, body: Mapping[str, Any]) -> View:
    observed = observe(body)
    ready_condition = condition(observed, "Ready") or {}
    return View(kind, *key(body), ready=ready(observed), reason=ready_condition.get("reason"),
                message=ready_condition.get("message"), problem=first_problem(observed), observed=observed,
                between=tuple(between(body)) if kind == "TrustRelationship" else ())


def conditions_json(observed: Observed) -> list[dict[str, Any]]:
    """Every condition, as found, with the keys ``status NAME -o json`` prints."""
    return [{"type": c.get("type"), "status": c.get("status"), "reason": c.get("reason"),
             "message": c.get("message"), "lastTransitionTime": c.get("lastTransitionTime")}
            for c in observed.conditions]
