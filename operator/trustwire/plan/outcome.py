"""What a finished pass reports: the decisions the controller needs after it applied a plan.

The controller does the I/O (wiring workloads, reading annotations) and hands the results
here; the status is built by :func:`identity_status` and nowhere else, and the
``WorkloadsReady`` verdict, the rotate-request rule and the relationship's status follow
from what was observed, not from the code that observed it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from trustwire.model import DeletionPolicy, ServiceIdentity, TrustRelationship
from trustwire.plan import conditions as cond
from trustwire.plan.identity import IdentityPlan
from trustwire.plan.status import IdentityStatus, IssuerStatus, RelationshipStatus, WorkloadStatus
from trustwire.plan.workloads import material_hash

#: What ``trustwire.io/rotate`` may ask for (``<what>`` or ``<what>:<anything unique>``).
ROTATABLE = ("ca", "certificate", "jwt", "enrollment-ca")


def rotation_request(annotation: str | None, handled: str | None) -> str | None:
    """The material a rotate annotation asks to rotate, once per distinct value."""
    if not annotation or annotation == handled:
        return None
    what = annotation.split(":", 1)[0].strip()
    return what if what in ROTATABLE else None


def handled_request(annotation: str | None, handled: str | None) -> str | None:
    """The annotation value to remember as handled after this pass."""
    return annotation if rotation_request(annotation, handled) is not None else (handled or None)


def needs_finalizer(identity: ServiceIdentity, old: IdentityStatus) -> bool:
    """Whether deleting ``identity`` needs the operator, not only the garbage collector.

    The credentials, trust and public objects are owned by the identity and go with it;
    what the collector cannot do is unwire the workloads it wired (in the spec, or still in
    status after a spec edit) and delete the CA it keeps unowned so that ``Retain`` can keep
    it. Anything else would only make a namespace's deletion wait for a running operator.
    """
    return bool(identity.workloads) or bool(old.workloads) or identity.deletion_policy is DeletionPolicy.DELETE


def pending_workloads(wanted: Sequence[tuple[str, str]]) -> list[WorkloadStatus]:
    """Every wanted workload while the material is not ready to mount."""
    return [WorkloadStatus(kind, name, "Pending", "material not ready", False) for kind, name in wanted]


def workloads_ready(wanted: bool, mounted: bool, entries: Sequence[WorkloadStatus]) -> cond.Check:
    """``WorkloadsReady`` from what wiring found: the first missing or conflicting workload."""
    if not wanted:
        return cond.passed("NoWorkloads", "spec.workloads is empty")
    if not mounted:
        return cond.waiting("MaterialNotReady", "waiting for the credentials (see CertificateReady)")
    for entry in entries:
        if entry.state == "NotFound":
            return cond.waiting("WorkloadNotFound", entry.message)
        if entry.state == "Conflict":
            return cond.stalled("WorkloadConflict", entry.message)
    return cond.passed("Wired", f"{len(entries)} workload(s) wired")


def identity_status(plan: IdentityPlan, workloads: Sequence[WorkloadStatus], handled: str | None,
                    conditions: Sequence[Mapping[str, Any]], generation: int | None) -> IdentityStatus:
    """The whole status of a finished pass: the plan's part, the workloads and the conditions."""
    rotation = plan.status.rotation
    return dataclasses.replace(
        plan.status, rotation=dataclasses.replace(rotation, handled_request=handled) if rotation else None,
        workloads=tuple(workloads),
        material_hash=material_hash(plan.mounted) if plan.mounted else None,
        rolled_out=all(w.rolled_out for w in workloads) if plan.mounted else None,
        conditions=tuple(conditions), observed_generation=generation)


def invalid_status(conditions: Sequence[Mapping[str, Any]], generation: int | None) -> IdentityStatus:
    """The status of an identity whose spec does not parse: conditions only."""
    return IdentityStatus(conditions=tuple(conditions), observed_generation=generation)


def relationship_status(identities: Sequence[str] | None, conditions: Sequence[Mapping[str, Any]],
                        generation: int | None, issuer: IssuerStatus | None = None) -> RelationshipStatus:
    return RelationshipStatus(tuple(identities) if identities is not None else None, tuple(conditions), generation,
                              issuer)


def conditions_of(checks: Mapping[str, cond.Check], *, ready_message: str, old: Sequence[Mapping[str, Any]] | None,
                  now: datetime, generation: int | None,
                  extra: Sequence[cond.Condition] = ()) -> tuple[list[cond.Condition], list[dict[str, Any]]]:
    """The summarized conditions and their stored form (transition times kept where status held)."""
    conditions = [*cond.summarize(checks, ready_message=ready_message), *extra]
    return conditions, cond.merge_conditions(old, conditions, now=now, generation=generation)


def relationship_ready(rel: TrustRelationship) -> str:
    return f"{rel.members} trust each other"
