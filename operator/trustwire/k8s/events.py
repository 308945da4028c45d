"""The one shape of an Event trustwire posts about an object (the operator and the server)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from trustwire.times import rfc3339


def event_body(body: Mapping[str, Any], type_: str, reason: str, message: str, now: datetime,
               component: str = "trustwire") -> dict[str, Any]:
    """A core/v1 Event about ``body`` (bounded reason and message, a unique name)."""
    meta = body.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    stamp = rfc3339(now)
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{meta.get('name')}.{secrets.token_hex(8)}", "namespace": namespace},
        "involvedObject": {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
                           "name": meta.get("name"), "namespace": namespace, "uid": meta.get("uid")},
        "type": type_, "reason": reason[:128], "message": message[:1024],
        "source": {"component": component}, "reportingComponent": component,
        "reportingInstance": component, "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }
