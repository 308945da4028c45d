"""What the CLI reads of an object: its status through the typed model (plan/status.py, the
only place that knows the status keys), its name and a relationship's members.

Status is user-editable; the model reads a missing or malformed section as absent, so the
commands print what is there and never raise on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from trustwire.plan.status import CARotationStatus, IdentityStatus, JwtRotationStatus, RelationshipStatus

#: the status of either kind: both carry the conditions the commands judge
Status = IdentityStatus | RelationshipStatus

#: kstatus summaries and informational conditions: never "the problem" (Rotating=False is idle).
SUMMARY_CONDITIONS = ("Ready", "Reconciling", "Stalled", "Rotating")


def section(body: Mapping[str, Any] | None, key: str) -> Mapping[str, Any]:
    """``body[key]`` if it is a mapping, else empty: metadata and spec are user-editable."""
    value = (body or {}).get(key)
    return value if isinstance(value, Mapping) else {}


def observe(body: Mapping[str, Any] | None) -> IdentityStatus:
    """A ServiceIdentity's status."""
    return IdentityStatus.from_dict(section(body, "status"))


def observe_relationship(body: Mapping[str, Any] | None) -> RelationshipStatus:
    return RelationshipStatus.from_dict(section(body, "status"))


def found(value: str | None) -> str | None:
    """A status field as the machine output prints it: null when absent (the model reads an
    absent field of a present section as empty)."""
    return value or None


def rotation_of(status: IdentityStatus, what: str) -> CARotationStatus | JwtRotationStatus | None:
    """The rotation state machine of ``what`` (``ca``, ``certificate`` or ``jwt``); None when the
    status has none, and always for the leaf certificate, which is re-issued in one step."""
    rotation = status.rotation
    if rotation is None or what not in ("ca", "jwt"):
        return None
    return rotation.ca if what == "ca" else rotation.jwt


def first_problem(status: Status) -> str | None:
    """The first failing condition of an object that is not Ready, as one line."""
    ready_condition = status.condition("Ready")
    if ready_condition is not None and ready_condition.get("status") == "True":
        return None
    for cond in status.conditions:
        if cond.get("type") not in SUMMARY_CONDITIONS and cond.get("status") == "False":
            return f"{cond.get('type')} {cond.get('reason')}: {cond.get('message')}"
    if ready_condition is not None:
        return f"{ready_condition.get('reason')}: {ready_condition.get('message')}"
    return "the operator has not reported a status yet (is it running and watching this namespace?)"


def ready(status: Status) -> bool:
    cond = status.condition("Ready")
    return cond is not None and cond.get("status") == "True"


def key(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = section(body, "metadata")
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def between(body: Mapping[str, Any]) -> list[str]:
    """A relationship's ``spec.between`` as ``namespace/identity`` (the namespace defaults to its
    own), an external member as ``external:<name>``, an issuer as ``issuer:<url>``."""
    own = key(body)[0]
    members = section(body, "spec").get("between")
    return [_member(b, own) for b in (members if isinstance(members, list) else []) if isinstance(b, Mapping)]


def _member(b: Mapping[str, Any], own: str) -> str:
    if isinstance(b.get("external"), Mapping):
        return f"external:{b['external'].get('name')}"
    if isinstance(b.get("issuer"), Mapping):
        return f"issuer:{b['issuer'].get('url')}"
    return f"{b.get('namespace') or own}/{b.get('identity')}"


def _identity_json(status: IdentityStatus) -> dict[str, Any]:
    ca, cert, jwt = status.ca, status.certificate, status.jwt
    return {
        "peers": status.peer_count,
        "ca": {"serial": found(ca.serial) if ca else None, "notAfter": found(ca.not_after) if ca else None},
        "certificate": {"serial": found(cert.serial) if cert else None,
                        "notAfter": found(cert.not_after) if cert else None,
                        "renewalTime": found(cert.renewal_time) if cert else None},
        "kid": found(jwt.kid) if jwt else None,
        "rotation": {what: progress.phase if (progress := rotation_of(status, what)) else None
                     for what in ("ca", "certificate", "jwt")},
    }


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
    status: Status
    #: a relationship's members, ``namespace/identity``
    between: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        out = {"kind": self.kind, "namespace": self.namespace, "name": self.name, "ready": self.ready,
               "reason": self.reason, "message": self.message, "problem": self.problem}
        if isinstance(self.status, IdentityStatus):
            return out | _identity_json(self.status)
        return out | {"between": list(self.between)}


def view(kind: str, body: Mapping[str, Any]) -> View:
    relationship = kind == "TrustRelationship"
    status: Status = observe_relationship(body) if relationship else observe(body)
    ready_condition = status.condition("Ready") or {}
    return View(kind, *key(body), ready=ready(status), reason=ready_condition.get("reason"),
                message=ready_condition.get("message"), problem=first_problem(status), status=status,
                between=tuple(between(body)) if relationship else ())


def conditions_json(status: Status) -> list[dict[str, Any]]:
    """Every condition, as found, with the keys ``status NAME -o json`` prints."""
    return [{"type": c.get("type"), "status": c.get("status"), "reason": c.get("reason"),
             "message": c.get("message"), "lastTransitionTime": c.get("lastTransitionTime")}
            for c in status.conditions]
