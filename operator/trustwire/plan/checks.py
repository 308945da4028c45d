"""One evaluator for every chain of named checks (cert-manager's trigger ``Chain`` shape).

A check is a small pure function of one input that answers ``None`` (nothing to do) or a
:class:`Verdict` naming the reason and saying why. A chain is an ordered tuple of checks;
:func:`evaluate` returns the first verdict, so the order of a chain is its priority and
each check can be tested alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TypeVar

from trustwire.plan.reasons import Reason

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A check that fired: the reason (an Event reason) and a message for humans."""

    reason: Reason
    message: str


Check = Callable[[T], Verdict | None]


def evaluate(chain: Sequence[Callable[[T], Verdict | None]], subject: T) -> Verdict | None:
    """The verdict of the first check in ``chain`` that fires on ``subject``, or None."""
    for check in chain:
        verdict = check(subject)
        if verdict is not None:
            return verdict
    return None
