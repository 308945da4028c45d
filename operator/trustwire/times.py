"""The one home of time for every layer: the clock type, and how timestamps are written and read.

Status, annotations, Events and Leases all carry RFC 3339 UTC timestamps. Kubernetes
writes whole seconds in conditions and microseconds in Leases (``MicroTime``); both forms
are produced here and nowhere else, so a stored timestamp always parses back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

#: Injected wherever a decision depends on the time, so tests can fix it.
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The production clock: UTC, whole seconds (what status timestamps can hold)."""
    return datetime.now(UTC).replace(microsecond=0)


def rfc3339(moment: datetime) -> str:
    """``2026-01-02T03:04:05Z``: the form of status, annotations and Events."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(moment: datetime) -> str:
    """``2026-01-02T03:04:05.000006Z``: Kubernetes' ``MicroTime`` (Lease renew times)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: object) -> datetime | None:
    """An RFC 3339 timestamp as written above; anything else (no zone, absurd year, garbage,
    not a string) is None, so a hand-edited annotation never crashes a pass."""
    if not isinstance(text, str) or not text or len(text) > 40:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None or not 2000 <= moment.year <= 9000:
        return None
    return moment
