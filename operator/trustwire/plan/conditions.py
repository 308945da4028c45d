"""Status conditions that kubectl, kstatus (Argo CD, Flux, ``kubectl wait``) and dashboards read.

Two rules from the kstatus convention matter most and are easy to get wrong:

* ``lastTransitionTime`` changes only when a condition's *status* flips — a new message or
  reason on the same status keeps the old time, otherwise every resync would look like a
  transition and every status write would be a real write;
* ``Ready``, ``Reconciling`` and ``Stalled`` are derived from the domain conditions in one
  place (:func:`summarize`) so the two resource kinds cannot disagree on what they mean.

Pure: the clock is a parameter.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from trustwire.times import rfc3339


class ConditionStatus(enum.StrEnum):
    """The values of a condition's ``status`` (Kubernetes' metav1.ConditionStatus)."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


@dataclasses.dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == ConditionStatus.TRUE


@dataclasses.dataclass(frozen=True)
class Check:
    """The verdict of one named check: ``ok`` or a (reason, message) that says what is wrong.

    ``stalled`` marks problems only a human can fix (bad spec, name clash); the others are
    expected to resolve on their own (a peer that has not published yet).
    """

    ok: bool
    reason: str
    message: str
    stalled: bool = False


def passed(reason: str, message: str = "") -> Check:
    return Check(True, reason, message)


def waiting(reason: str, message: str) -> Check:
    return Check(False, reason, message)


def stalled(reason: str, message: str) -> Check:
    return Check(False, reason, message, stalled=True)


def first_failure(checks: Iterable[Check]) -> Check | None:
    for check in checks:
        if not check.ok:
            return check
    return None


def as_condition(type_: str, check: Check) -> Condition:
    return Condition(type_, ConditionStatus.TRUE if check.ok else ConditionStatus.FALSE, check.reason, check.message)


def summarize(domain: Mapping[str, Check], *, ready_message: str) -> list[Condition]:
    """Domain checks (in order) → domain conditions + Ready/Reconciling/Stalled."""
    conditions = [as_condition(type_, check) for type_, check in domain.items()]
    failing = [(type_, check) for type_, check in domain.items() if not check.ok]
    stalls = [(type_, check) for type_, check in failing if check.stalled]
    if not failing:
        ready = Condition("Ready", ConditionStatus.TRUE, "Ready", ready_message)
    else:
        type_, check = (stalls or failing)[0]
        ready = Condition("Ready", ConditionStatus.FALSE, check.reason, f"{type_}: {check.message}")
    if stalls:
        type_, check = stalls[0]
        stall = Condition("Stalled", ConditionStatus.TRUE, check.reason, f"{type_}: {check.message}")
    else:
        stall = Condition("Stalled", ConditionStatus.FALSE, "NotStalled", "")
    progressing = [(t, c) for t, c in failing if not c.stalled]
    if progressing and not stalls:
        type_, check = progressing[0]
        reconciling = Condition("Reconciling", ConditionStatus.TRUE, check.reason, f"{type_}: {check.message}")
    else:
        reconciling = Condition("Reconciling", ConditionStatus.FALSE, "Settled", "")
    return [ready, reconciling, stall, *conditions]


def merge_conditions(
    old: Sequence[Mapping[str, Any]] | None,
    new: Sequence[Condition],
    *,
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Render conditions for status, keeping ``lastTransitionTime`` where status did not flip."""
    previous = {c.get("type"): c for c in (old or []) if isinstance(c, Mapping)}
    stamp = rfc3339(now)
    out: list[dict[str, Any]] = []
    for cond in new:
        before = previous.get(cond.type)
        if before is not None and before.get("status") == cond.status and before.get("lastTransitionTime"):
            transition = str(before["lastTransitionTime"])
        else:
            transition = stamp
        item: dict[str, Any] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": transition,
        }
        if generation is not None:
            item["observedGeneration"] = generation
        out.append(item)
    return out


SUMMARY_TYPES = ("Ready", "Reconciling", "Stalled")


def failed_pass(old: Sequence[Mapping[str, Any]] | None, type_: str, check: Check, *, now: datetime,
                generation: int | None) -> list[dict[str, Any]]:
    """Stored conditions after a pass that could not finish: ``Ready``, ``Reconciling`` and
    ``Stalled`` say why (``<type_>: <message>``); the domain conditions stay as the last
    finished pass left them, since nothing newer is known about them."""
    summary = summarize({type_: check}, ready_message="")[:len(SUMMARY_TYPES)]
    kept = [dict(c) for c in (old or []) if isinstance(c, Mapping) and c.get("type") not in SUMMARY_TYPES]
    return [*merge_conditions(old, summary, now=now, generation=generation), *kept]


def transitions(old: Sequence[Mapping[str, Any]] | None, new: Sequence[Condition]) -> list[Condition]:
    """Conditions whose status or reason differs from before (what deserves an Event)."""
    previous = {c.get("type"): c for c in (old or []) if isinstance(c, Mapping)}
    changed = []
    for cond in new:
        before = previous.get(cond.type)
        if before is None or before.get("status") != cond.status or before.get("reason") != cond.reason:
            changed.append(cond)
    return changed


def was_stalled(old: Sequence[Mapping[str, Any]] | None) -> bool:
    """Whether the stored conditions say a human had to act (``Stalled=True``): the stall
    clearing is the recovery a human waits for, worth an Event; becoming Ready after a state
    that resolves by itself (a peer not published yet, a first issuance) shows in the
    conditions only."""
    return any(isinstance(c, Mapping) and c.get("type") == "Stalled" and c.get("status") == ConditionStatus.TRUE
               for c in old or [])


def recovery_message(new: Sequence[Condition]) -> str:
    """What a recovered object says next: Ready, or what it is still waiting for."""
    ready = next((c for c in new if c.type == "Ready"), None)
    if ready is None or ready.ok:
        return "no longer stalled; Ready" + (f": {ready.message}" if ready and ready.message else "")
    return f"no longer stalled; {ready.reason}: {ready.message}"
