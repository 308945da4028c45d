"""One TrustRelationship's pass: acceptance, the shared secret, distribution, status."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from trustwire import names
from trustwire.controller.status import StatusWriter
from trustwire.controller.writes import stored_object
from trustwire.issuers import fetch_keys
from trustwire.k8s.resources import CONFIGMAPS, RELATIONSHIPS, SECRETS
from trustwire.model import BundleKind, TrustRelationship
from trustwire.plan import conditions as cond
from trustwire.plan import issuers, outcome, shared
from trustwire.plan.issuers import Fetched, IssuerProblem
from trustwire.plan.reasons import Reason
from trustwire.plan.relationship import acceptance, distribution, symmetric_jwt
from trustwire.plan.status import IssuerStatus, RelationshipStatus
from trustwire.times import rfc3339


class RelationshipReconciler(StatusWriter):
    async def reconcile_relationship(self, key: tuple[str, str]) -> None:
        namespace, name = key
        body = await self.client.get(RELATIONSHIPS, namespace, name)
        if body is None:
            # Gone before its DELETED event was seen: whoever it named must drop the peer now
            # (the event, when it comes, finds nothing left to tell them).
            for ref in self.state.drop_relationship(key):
                self._enqueue_identity(ref)
            self.statuses.pop(("relationship", namespace, name), None)
            self.state.issuers.pop(key, None)
            await self._delete_pair_secret(namespace, name)
            await self._delete_issuer_keys(namespace, name)
            await self._retire_groups(namespace)
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
        spec = rel.shared_secret
        if spec is None or spec.group or not accepted.ok:
            await self._delete_pair_secret(namespace, name)
        await self._retire_groups(namespace)
        if accepted.ok and spec is not None:
            checks["SharedSecretReady"] = await self._deliver_shared_secret(rel, body)
        if accepted.ok and (refused := symmetric_jwt(rel, self.state.lookup)) is not None:
            checks["JwtAllowed"] = refused
        if rel.external is not None:
            _, checks["ExternalCAReady"] = await self.external_bundle(rel, now)
        issuer = None
        if rel.issuer is not None and accepted.ok:
            checks["IssuerReady"], issuer = await self._refresh_issuer(rel, body, now)
        else:
            self.state.issuers.pop(key, None)
            await self._delete_issuer_keys(namespace, name)
        if accepted.ok:
            checks["Distributed"] = distribution(rel, self.state.lookup)
        await self._write_status(RELATIONSHIPS, namespace, name, body, checks, now,
                                 functools.partial(outcome.relationship_status, [str(r) for r in rel.between],
                                                   issuer=issuer),
                                 ready_message=outcome.relationship_ready(rel))

    async def _refresh_issuer(self, rel: TrustRelationship, body: Mapping[str, Any], now: datetime,
                              ) -> tuple[cond.Check, IssuerStatus | None]:
        """Fetch the external issuer's keys when due (or when its URL or CA changed), keep the
        last good ones in the relationship's ConfigMap, and wake the identity when they change."""
        member, key = rel.issuer, (rel.namespace, rel.name)
        assert member is not None
        ref = member.ca_bundle
        resource = CONFIGMAPS if ref.kind is BundleKind.CONFIGMAP else SECRETS
        bundle = stored_object(resource, await self.client.get(resource, rel.namespace, ref.name),
                               require_managed=False)
        ca = bundle.data.get(ref.key, b"") if bundle is not None else b""
        name = names.issuer_configmap(rel.name)
        observed = await self._read(CONFIGMAPS, rel.namespace, name)
        stored = stored_object(CONFIGMAPS, observed)
        if stored is not None and not stored.managed:
            return cond.stalled("NameConflict", f"ConfigMap {rel.namespace}/{name} exists and is not managed by "
                                                "trustwire"), None
        known = self.state.issuers.get(key)
        state = known[2] if known is not None and known[:2] == (member, ca) else \
            issuers.kept(stored, RelationshipStatus.from_dict(body.get("status")).issuer, member.url)
        if state.refresh_at is None or now >= state.refresh_at:
            state = issuers.after_fetch(state, issuers.bundle_problem(rel, rel.namespace, bundle)
                                        or await self._fetch_issuer(member.url, ca), now)
            if state.verdict is not None and state.verdict.reason is Reason.ISSUER_KEYS_CHANGED:
                await self.post_event(body, Reason.ISSUER_KEYS_CHANGED.event_type, str(Reason.ISSUER_KEYS_CHANGED),
                                      f"{member.url}: {state.verdict.message}")
        self.state.issuers[key] = (member, ca, state)
        desired = issuers.issuer_object(rel, state)
        written: dict[str, Mapping[str, Any]] = {}
        if desired is not None:
            await self._apply(rel.namespace, [desired], {name: observed}, owner=body, written=written)
        if written:  # the identity delivers them (the write's echo wakes nobody)
            for receiver in rel.between:
                self._enqueue_identity(receiver)
        assert state.refresh_at is not None
        self.queue.add_after(("relationship", rel.namespace, rel.name),
                             max((state.refresh_at - now).total_seconds(), 0.0) + 1.0)
        return issuers.issuer_check(rel, state), issuers.issuer_status(rel, state)

    @staticmethod
    async def _fetch_issuer(url: str, ca: bytes) -> Fetched | IssuerProblem:
        try:
            return await fetch_keys(url, ca)
        except IssuerProblem as problem:
            return problem

    async def _delete_issuer_keys(self, namespace: str, relationship: str) -> None:
        """Delete the kept keys of an issuer the relationship no longer names (no read when none exist)."""
        await self._delete_ours(CONFIGMAPS, namespace, names.issuer_configmap(relationship),
                                names.RELATIONSHIP_LABEL, relationship)

    async def _deliver_shared_secret(self, rel: TrustRelationship, body: Mapping[str, Any]) -> cond.Check:
        """Generate, keep or rotate the shared secret; wake every member it is delivered to."""
        spec = rel.shared_secret
        assert spec is not None
        members = self.state.group_members(rel.namespace, spec.group) if spec.group else [rel]
        conflict = shared.group_conflict(rel, members) if spec.group else None
        if conflict is not None:
            return conflict
        secret_name = shared.secret_name(rel)
        observed = await self._read(SECRETS, rel.namespace, secret_name)
        stored = stored_object(SECRETS, observed)
        if stored is not None and not stored.managed:
            return cond.stalled("NameConflict",
                                f"Secret {rel.namespace}/{secret_name} exists and is not managed by trustwire")
        now = self.clock()
        annotation = ((body.get("metadata") or {}).get("annotations") or {}).get(names.ROTATE_ANNOTATION)
        plan = shared.shared_secret_object(rel, stored, lambda: secrets.token_bytes(shared.SECRET_BYTES), now,
                                           annotation)
        written: dict[str, Mapping[str, Any]] = {}
        await self._apply(rel.namespace, [plan.desired], {secret_name: observed}, owner=body, written=written)
        if written:  # the members deliver it (the write's echo wakes nobody)
            for member in members:
                for ref in member.between:
                    self._enqueue_identity(ref)
        for event in plan.events if written else ():
            await self.post_event(body, event.type, event.reason, event.message)
        if plan.wake_at is not None:
            self.queue.add_after(("relationship", rel.namespace, rel.name),
                                 max((plan.wake_at - now).total_seconds(), 0.0) + 1.0)
        where = f"group {spec.group}" if spec.group else "both sides"
        # the condition describes the grace period, not the one pass that rotated
        if plan.wake_at is not None:
            return cond.passed("Rotated", f"shared secret rotated; the previous value is delivered to {where} "
                                          f"until {rfc3339(plan.wake_at)}")
        return cond.passed("Generated", f"shared secret delivered to {where}")

    async def _delete_pair_secret(self, namespace: str, relationship: str) -> None:
        """Delete the relationship's own shared secret if one exists (a relationship without
        one costs no read: see :class:`Inventory`)."""
        await self._delete_ours(SECRETS, namespace, names.shared_secret(relationship),
                                names.RELATIONSHIP_LABEL, relationship)

    async def _retire_groups(self, namespace: str) -> None:
        """Delete the Secret of each group of ``namespace`` that lost its last member."""
        for ns, group in sorted(self.state.former_groups):
            if ns != namespace:
                continue
            if not self.state.group_members(ns, group):
                await self._delete_ours(SECRETS, ns, names.shared_group_secret(group), names.SHARED_GROUP_LABEL, group)
            self.state.former_groups.discard((ns, group))
