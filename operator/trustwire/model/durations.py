"""Kubernetes-style durations (``8760h``, ``1h30m``, ``90s``) to and from :class:`timedelta`."""

from __future__ import annotations

import re
from datetime import timedelta

from trustwire.model.limits import MAX_DURATION_TEXT
from trustwire.model.text import quote

_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> timedelta:
    """Kubernetes-style duration (``8760h``, ``1h30m``, ``90s``) → timedelta; ValueError if not."""
    if not isinstance(text, str) or len(text) > MAX_DURATION_TEXT or not _DURATION_RE.match(text):
        raise ValueError(f"{quote(text)} is not a duration such as 720h, 90m or 1h30m (units ms, s, m, h)")
    seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text))
    try:
        return timedelta(seconds=seconds)
    except OverflowError:  # e.g. 400 digits of hours: far beyond any allowed range
        raise ValueError(f"{quote(text)} is too long a duration") from None


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)
    return out or "0s"
