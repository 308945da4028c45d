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
