"""The controller's one retry policy: how long until a failed watch or listing is tried
again, and until a failed reconcile pass is.

Every delay is a row of :data:`POLICY`: the n-th failure in a row waits ``steps[n]``
seconds (the last step repeats), stretched by up to ``jitter`` so that replicas and keys
that failed together do not retry together. A watch event that brings a key back sooner
wins over its retry (the work queue keeps the earlier time).
"""

from __future__ import annotations

import enum
import random

from trustwire.k8s.errors import ApiError


class Retry(Exception):
    """The pass could not finish (a conflict or a transient error); try again soon."""


class Failure(enum.Enum):
    #: a watch failed or a listing was refused: re-opened with a short, capped back-off
    WATCH = "watch"
    #: a conflict, an outage or an object gone mid-pass: resolves within seconds
    TRANSIENT = "transient"
    #: the API refused what was sent (forbidden, too large, invalid): a change is what helps;
    #: soon at first (an apiserver that restarts refuses everyone until its RBAC caches are
    #: filled), then doubling to five minutes
    REFUSED = "refused"
    #: anything else (a bug): soon, then every ten seconds
    ERROR = "error"


POLICY: dict[Failure, tuple[float, ...]] = {
    Failure.WATCH: (1.0, 2.0, 5.0, 10.0),
    Failure.TRANSIENT: (2.0,),
    Failure.REFUSED: (2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0),
    Failure.ERROR: (2.0, 4.0, 8.0, 10.0),
}


def delay(failure: Failure, failures: int) -> float:
    """Seconds before the next attempt after ``failures`` failures in a row (0: the first)."""
    steps = POLICY[failure]
    return steps[min(failures, len(steps) - 1)]


def jittered(seconds: float, jitter: float, rng: random.Random) -> float:
    return seconds * (1 + jitter * rng.random())


def classify(exc: Exception) -> Failure:
    """What kind of failure a failed pass is, and so how soon it is tried again."""
    if isinstance(exc, Retry) or (isinstance(exc, ApiError) and (exc.retryable or exc.status in (404, 410))):
        return Failure.TRANSIENT
    if isinstance(exc, ApiError):
        return Failure.REFUSED
    return Failure.ERROR
