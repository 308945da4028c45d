"""What the operator remembers of Enrollments between watch events, and who an event wakes.

Each Enrollment is kept (they are small: a spec and a status of hashes, serials and times),
indexed by the identity it names, so that an identity's pass finds its enrolled
applications without a read and a status change of one of them re-plans that identity.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from trustwire.model import Enrollment, IdentityRef, SpecError, parse_enrollment
from trustwire.plan.enrollment import enrolled_entry

EnrollmentKey = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class EnrollmentRecord:
    body: Mapping[str, Any]
    parsed: Enrollment | None

    @property
    def identity(self) -> IdentityRef | None:
        return IdentityRef(self.parsed.namespace, self.parsed.identity) if self.parsed is not None else None


def _key(body: Mapping[str, Any]) -> EnrollmentKey:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


def _own(body: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """What the Enrollment's pass reads: spec, meaningful metadata and the server's status
    fields (conditions and observedGeneration are the pass's own output)."""
    if body is None:
        return ()
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    return (body.get("spec"), meta.get("generation"), meta.get("annotations"), meta.get("labels"),
            status.get("phase"), status.get("token"), status.get("certificate"))


def _seen(body: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """What the identity's workloads see of it (:func:`~trustwire.plan.enrollment.enrolled_entry`)."""
    if body is None:
        return ()
    status = body.get("status") or {}
    return body.get("spec"), status.get("phase"), status.get("certificate")


class EnrollmentCache:
    def __init__(self) -> None:
        self.records: dict[EnrollmentKey, EnrollmentRecord] = {}
        self.by_identity: dict[IdentityRef, set[EnrollmentKey]] = defaultdict(set)

    def observed(self, body: Mapping[str, Any], deleted: bool) -> tuple[bool, set[IdentityRef]]:
        """Store (or drop) ``body``: whether its own pass must run, and the identities that
        must be re-planned (the one it names now and the one it named before)."""
        key = _key(body)
        old = self.records.get(key)
        before = old.identity if old is not None else None
        self.drop(key)
        record = None if deleted else self.put(body)
        after = record.identity if record is not None else None
        old_body = old.body if old is not None else None
        own = deleted or old is None or _own(old_body) != _own(body)
        seen = before != after or _seen(old_body) != (None if deleted else _seen(body))
        return own, {ref for ref in (before, after) if ref is not None} if seen or deleted else set()

    def put(self, body: Mapping[str, Any]) -> EnrollmentRecord:
        try:
            parsed: Enrollment | None = parse_enrollment(body)
        except SpecError:
            parsed = None
        record = EnrollmentRecord(body, parsed)
        key = _key(body)
        self.records[key] = record
        if record.identity is not None:
            self.by_identity[record.identity].add(key)
        return record

    def drop(self, key: EnrollmentKey) -> None:
        record = self.records.pop(key, None)
        if record is not None and record.identity is not None:
            self.by_identity[record.identity].discard(key)
            if not self.by_identity[record.identity]:
                del self.by_identity[record.identity]

    def of(self, ref: IdentityRef) -> list[EnrollmentKey]:
        return sorted(self.by_identity.get(ref, ()))

    def enrolled(self, ref: IdentityRef, now: datetime) -> list[dict[str, Any]]:
        """The identity's enrolled applications, by name (see ``enrolled_entry``)."""
        out = []
        for key in self.of(ref):
            record = self.records[key]
            if record.parsed is not None and (entry := enrolled_entry(record.parsed, record.body.get("status") or {},
                                                                      now)) is not None:
                out.append(entry)
        return out
