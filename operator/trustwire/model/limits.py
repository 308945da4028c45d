"""Bounds that keep hostile specs from turning into unbounded work."""

from __future__ import annotations

from datetime import timedelta

MAX_DNS_NAMES = 100
MAX_NAME_LENGTH = 253
#: An identity's or a relationship's name is the value of a label on every object derived
#: from it, and the API refuses label values longer than this.
MAX_OWNER_NAME = 63
MAX_LIST_ITEMS = 100
MAX_WORKLOADS = 50
MAX_TEMPLATES = 20
#: labels, and annotations, that spec.secretTemplate may add to each Secret
MAX_TEMPLATE_METADATA = 32
MAX_INLINE_TEMPLATE = 64 * 1024
MIN_DURATION = timedelta(seconds=10)
MAX_DURATION = timedelta(days=3650 * 3)
#: Problems named in a SpecError message, and characters of a user value quoted in one.
MAX_REPORTED = 20
MAX_QUOTED = 80
#: Longer duration strings are refused before parsing ("1h" x 5 million would be 10 MB of work).
MAX_DURATION_TEXT = 64
