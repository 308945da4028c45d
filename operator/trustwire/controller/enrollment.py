"""One Enrollment's pass: the one-time token, its Secret, expiry, revocation and status.

The status is written first, with the resourceVersion of the object read (the server
consumes tokens with the same precondition, so neither overwrites the other's newer
status), and the token Secret after it: a pass cut off between the two leaves a token
status knows and nobody holds, which the next pass replaces
(:func:`~trustwire.plan.enrollment.first_token`).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from trustwire import names
from trustwire.controller.backoff import Retry
from trustwire.controller.status import StatusWriter
from trustwire.k8s.errors import ApiError
from trustwire.k8s.resources import ENROLLMENTS, SECRETS, decode_data
from trustwire.model import Enrollment, IdentityRef, SpecError, parse_enrollment
from trustwire.plan import enrollment as plan
from trustwire.plan.objects import merge_patch


def token_secret_of(body: Mapping[str, Any] | None) -> plan.TokenSecret | None:
    """The token Secret as the planner sees it."""
    if body is None:
        return None
    meta = body.get("metadata") or {}
    data = decode_data(SECRETS, body)
    text = {k: v.decode("utf-8", "replace") for k, v in data.items()
            if k in (names.ENROLLMENT_TOKEN_KEY, names.ENROLLMENT_URL_KEY)}
    return plan.TokenSecret(names.is_managed(meta.get("labels")), text.get(names.ENROLLMENT_TOKEN_KEY),
                            text.get(names.ENROLLMENT_URL_KEY),
                            (meta.get("annotations") or {}).get(names.RENEW_TOKEN_HANDLED_ANNOTATION))


class EnrollmentReconciler(StatusWriter):
    #: where trustwire serve is reached from outside (``--public-url``), for the token Secret's url
    public_url: str | None

    async def reconcile_enrollment(self, key: tuple[str, str]) -> None:
        namespace, name = key
        body = await self.client.get(ENROLLMENTS, namespace, name)
        if body is None:  # gone: its Secret goes with it (owner reference); its identity forgets it
            gone = self.state.enrollments.records.get(key)
            if gone is not None:
                for ref in self.state.enrollments.observed(gone.body, deleted=True)[1]:
                    self._enqueue_identity(ref)
            self.statuses.pop(("enrollment", namespace, name), None)
            return
        for ref in self.state.enrollments.observed(body, deleted=False)[1]:
            self._enqueue_identity(ref)
        now = self.clock()
        secret_name = names.enrollment_token_secret(name)
        # read even when the inventory knows no managed Secret of that name: one the user made
        # is not labelled, and must stall the pass before a token is recorded in status
        observed = await self.client.get(SECRETS, namespace, secret_name)
        meta = body.get("metadata") or {}
        enrollment, error = self._parsed(body)
        e = plan.EnrollmentInput(
            namespace, name, enrollment, error, status=body.get("status") or {},
            identity_enabled=self._enrollment_enabled(namespace, enrollment), secret=token_secret_of(observed),
            renew_request=(meta.get("annotations") or {}).get(names.RENEW_TOKEN_ANNOTATION),
            generation=meta.get("generation") if isinstance(meta.get("generation"), int) else None,
            now=now, public_url=self.public_url)
        result = plan.plan_enrollment(e, lambda: secrets.token_bytes(plan.TOKEN_BYTES))
        await self._store_enrollment_status(body, result.status)
        if result.secret is not None:
            await self._apply(namespace, [result.secret], {secret_name: observed}, owner=body, written={})
        if result.delete_secret:
            await self._delete_ours(SECRETS, namespace, secret_name, names.ENROLLMENT_LABEL, name)
        for event in result.events:
            await self.post_event(body, event.type, event.reason, event.message)
        if result.wake_at is not None:
            self.queue.add_after(("enrollment", namespace, name), max((result.wake_at - now).total_seconds(), 0) + 1)

    @staticmethod
    def _parsed(body: Mapping[str, Any]) -> tuple[Enrollment | None, str | None]:
        try:
            return parse_enrollment(body), None
        except SpecError as exc:
            return None, str(exc)

    def _enrollment_enabled(self, namespace: str, enrollment: Enrollment | None) -> bool | None:
        """Whether the named identity has spec.enrollment.enabled; None when it does not exist."""
        if enrollment is None:
            return None
        entry = self.state.entries.get(IdentityRef(namespace, enrollment.identity))
        return None if entry is None else entry.identity is not None and entry.identity.enrollment

    async def _store_enrollment_status(self, body: Mapping[str, Any], new: dict[str, Any]) -> None:
        """Write ``new`` if it differs, on the condition that nobody wrote since ``body`` was read."""
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        self.statuses[("enrollment", namespace, name)] = new
        patch = merge_patch(dict(body.get("status") or {}), new)
        if patch is None:
            return
        try:
            await self.client.merge_patch(ENROLLMENTS, namespace, name,
                                          {"metadata": {"resourceVersion": meta.get("resourceVersion")},
                                           "status": patch}, subresource="status")
        except ApiError as exc:
            if exc.status == 409:
                raise Retry(f"Enrollment {namespace}/{name} changed while its pass ran") from None
            raise
