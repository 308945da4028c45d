"""Status and Events: the one writer of both resource kinds' status.

A status is written only when it changed (a resync writes nothing); Events are posted for
what a human must act on and for recoveries, never for states that resolve by themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from trustwire.controller.state import Key
from trustwire.controller.writes import Writes, stored_object
from trustwire.k8s.errors import ApiError
from trustwire.k8s.events import event_body
from trustwire.k8s.resources import CONFIGMAPS, ENROLLMENTS, EVENTS, IDENTITIES, RELATIONSHIPS, SECRETS, Resource
from trustwire.model import BundleKind, TrustRelationship
from trustwire.plan import conditions as cond
from trustwire.plan import outcome
from trustwire.plan.external import BundleInput, external_publication
from trustwire.plan.objects import merge_patch
from trustwire.plan.publication import Publication
from trustwire.plan.status import IdentityStatus, RelationshipStatus, with_conditions
from trustwire.times import Clock

log = logging.getLogger("trustwire")

#: makes a status from its stored conditions and the observed generation
StatusBuilder = Callable[[list[dict[str, Any]], int | None], IdentityStatus | RelationshipStatus]


class StatusWriter(Writes):
    clock: Clock
    #: last computed status per (kind, namespace, name), written or not, for metrics
    statuses: dict[Key, Mapping[str, Any]]

    async def _write_status(self, resource: Resource, namespace: str, name: str, body: Mapping[str, Any],
                            checks: Mapping[str, cond.Check], now: datetime, build: StatusBuilder,
                            *, ready_message: str,
                            extra_conditions: Sequence[cond.Condition] = ()) -> list[cond.Condition]:
        """Write the status ``build`` makes of the summarized conditions, if it changed; post
        Events for what a human must fix and for its recovery."""
        old: Mapping[str, Any] = body.get("status") or {}
        generation = (body.get("metadata") or {}).get("generation")
        conditions, stored = outcome.conditions_of(checks, ready_message=ready_message, old=old.get("conditions"),
                                                   now=now, generation=generation, extra=extra_conditions)
        new = build(stored, generation if isinstance(generation, int) else None).to_dict()
        if not await self._store_status(resource, namespace, name, old, new):
            return []
        changed = cond.transitions(old.get("conditions"), conditions)
        for c in changed:
            if c.type == "Stalled" and not c.ok and cond.was_stalled(old.get("conditions")):
                await self.post_event(body, "Normal", "Recovered", cond.recovery_message(conditions))
            elif not c.ok and c.type in checks and checks[c.type].stalled:
                # Warnings are for what a human must fix; states that resolve by themselves
                # (a peer not published yet, distribution in progress) show in conditions only
                await self.post_event(body, "Warning", c.reason, f"{c.type}: {c.message}")
        return changed

    async def external_bundle(self, rel: TrustRelationship, now: datetime) -> tuple[Publication | None, cond.Check]:
        """The external member's CA bundle, read from the user's ConfigMap or Secret, and its verdict."""
        assert rel.external is not None
        ref = rel.external.ca_bundle
        resource = CONFIGMAPS if ref.kind is BundleKind.CONFIGMAP else SECRETS
        stored = stored_object(resource, await self.client.get(resource, rel.namespace, ref.name),
                               require_managed=False)
        return external_publication(BundleInput(rel.external, rel.namespace, stored, now))

    async def _store_status(self, resource: Resource, namespace: str, name: str, old: Mapping[str, Any],
                            new: dict[str, Any]) -> bool:
        """Remember ``new`` for metrics and write it if it differs from ``old``; True if written."""
        kind = {IDENTITIES: "identity", ENROLLMENTS: "enrollment"}.get(resource, "relationship")
        self.statuses[(kind, namespace, name)] = new
        patch = merge_patch(dict(old), new)
        if patch is None:
            return False
        await self.client.merge_patch(resource, namespace, name, {"status": patch}, subresource="status")
        return True

    async def _report_failure(self, key: Key, exc: Exception) -> None:
        """Best effort: a pass that failed for good says so in Ready/Stalled, so that neither
        ``kubectl wait --for=condition=Ready`` nor a dashboard trusts the last good status."""
        kind, namespace, name = key
        resource = {"identity": IDENTITIES, "enrollment": ENROLLMENTS}.get(kind, RELATIONSHIPS)
        if isinstance(exc, ApiError):  # what was refused, and why in the API's words (an admission policy's)
            check = cond.stalled("WriteRejected", f"the API server refused {exc.verb.upper()} {exc.path}: "
                                                  f"{exc.status} {exc.reason}"
                                                  + (f": {exc.api_message}" if exc.api_message else ""))
        else:
            check = cond.waiting("InternalError", f"{type(exc).__name__} while reconciling; retrying "
                                                  "(the operator log has the details)")
        try:
            body = await self.client.get(resource, namespace, name)
            if body is None:
                return
            old: Mapping[str, Any] = body.get("status") or {}
            conditions = cond.failed_pass(old.get("conditions"), "Applied", check, now=self.clock(),
                                          generation=(body.get("metadata") or {}).get("generation"))
            written = await self._store_status(resource, namespace, name, old, with_conditions(old, conditions))
            if written and check.stalled:
                await self.post_event(body, "Warning", check.reason, f"Applied: {check.message}")
        except ApiError as report_error:
            log.info("could not report the failed pass on %s/%s: %s", namespace, name, report_error.status)

    async def post_event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        event = event_body(body, type_, reason, message, self.clock())
        namespace, meta = event["metadata"]["namespace"], body.get("metadata") or {}
        try:
            await self.client.create(EVENTS, namespace, event)
        except ApiError as exc:  # an Event is best effort; never fail a reconcile over one
            log.info("could not post event %s on %s/%s: %s", reason, namespace, meta.get("name"), exc.status)

