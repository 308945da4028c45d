"""One TrustRelationship's pass: acceptance, the shared secret, distribution, status."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Mapping
from typing import Any

from trustwire import names
from trustwire.controller.status import StatusWriter
from trustwire.controller.writes import stored_object
from trustwire.k8s.resources import RELATIONSHIPS, SECRETS
from trustwire.plan import conditions as cond
from trustwire.plan import outcome
from trustwire.plan.relationship import acceptance, distribution, shared_secret_object


class RelationshipReconciler(StatusWriter):
    async def reconcile_relationship(self, key: tuple[str, str]) -> None:
        namespace, name = key
        body = await self.client.get(RELATIONSHIPS, namespace, name)
        shared_name = names.shared_secret(name)
        if body is None:
            # Gone before its DELETED event was seen: whoever it named must drop the peer now
            # (the event, when it comes, finds nothing left to tell them).
            for ref in self.state.drop_relationship(key):
                self._enqueue_identity(ref)
            self.statuses.pop(("relationship", namespace, name), None)
            await self._delete_shared_secret(namespace, name)
            return
        self.state.put_relationship(body)
        record = self.state.relationships[key]
        now = self.clock()
        if record.parsed is None:
            assert record.error is not None
            checks = {"Accepted": cond.stalled("InvalidSpec", str(record.error))}
            await self._write_status(RELATIONSHIPS, namespace, name, body, checks, now,
                                     functools.partial(outcome.relationship_status, None), ready_message="")
            return
        rel = record.parsed
        accepted = acceptance(rel, self.state.lookup)
        checks = {"Accepted": accepted}
        if accepted.ok and rel.shared_secret:
            observed = await self._read(SECRETS, namespace, shared_name)
            stored = stored_object(SECRETS, observed)
            if stored is not None and not stored.managed:
                checks["SharedSecretReady"] = cond.stalled(
                    "NameConflict", f"Secret {namespace}/{shared_name} exists and is not managed by trustwire")
            else:
                desired = shared_secret_object(rel, stored, lambda: secrets.token_bytes(32))
                written: dict[str, Mapping[str, Any]] = {}
                await self._apply(namespace, [desired], {shared_name: observed}, owner=body, written=written)
                if written:
                    for ref in rel.between:  # they deliver it (the write's echo wakes nobody)
                        self._enqueue_identity(ref)
                checks["SharedSecretReady"] = cond.passed("Generated", "shared secret delivered to both sides")
        else:
            await self._delete_shared_secret(namespace, name)
        if rel.external is not None:
            _, checks["ExternalCAReady"] = await self.external_bundle(rel, now)
        if accepted.ok:
            checks["Distributed"] = distribution(rel, self.state.lookup)
        await self._write_status(RELATIONSHIPS, namespace, name, body, checks, now,
                                 functools.partial(outcome.relationship_status, [str(r) for r in rel.between]),
                                 ready_message=outcome.relationship_ready(rel))

    async def _delete_shared_secret(self, namespace: str, relationship: str) -> None:
        """Delete the relationship's shared secret if one exists (a relationship without one
        costs no read: see :class:`Inventory`)."""
        await self._delete_ours(SECRETS, namespace, names.shared_secret(relationship),
                                names.RELATIONSHIP_LABEL, relationship)

