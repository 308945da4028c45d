"""The one retry policy: each kind of failure alone, as a table."""

from __future__ import annotations

import random

import pytest

from trustwire.controller import backoff
from trustwire.controller.backoff import Failure, Retry
from trustwire.k8s.errors import ApiError


@pytest.mark.parametrize(("failure", "expected"), [
    (Failure.WATCH, [1, 2, 5, 10, 10, 10]),
    (Failure.TRANSIENT, [2, 2, 2]),
    (Failure.REFUSED, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]),
    (Failure.ERROR, [2, 4, 8, 10, 10]),
])
def test_the_nth_failure_in_a_row_waits_its_step_and_the_last_step_repeats(
        failure: Failure, expected: list[float]) -> None:
    assert [backoff.delay(failure, n) for n in range(len(expected))] == expected


def test_no_delay_is_longer_than_five_minutes_however_long_it_fails() -> None:
    assert max(backoff.delay(failure, 10_000) for failure in Failure) == 300


def _error(status: int) -> ApiError:
    return ApiError(status, "Reason", "message", verb="patch", path="/x")


@pytest.mark.parametrize(("exc", "failure"), [
    (Retry("conflict"), Failure.TRANSIENT),
    (_error(409), Failure.TRANSIENT),
    (_error(429), Failure.TRANSIENT),
    (_error(500), Failure.TRANSIENT),
    (_error(503), Failure.TRANSIENT),
    (_error(404), Failure.TRANSIENT),  # gone mid-pass: its DELETED event follows
    (_error(410), Failure.TRANSIENT),
    (_error(403), Failure.REFUSED),
    (_error(413), Failure.REFUSED),
    (_error(422), Failure.REFUSED),
    (KeyError("x"), Failure.ERROR),
    (ValueError("x"), Failure.ERROR),
])
def test_a_failure_is_classified_by_what_helps_it(exc: Exception, failure: Failure) -> None:
    assert backoff.classify(exc) is failure


@pytest.mark.parametrize(("jitter", "low", "high"), [(0.0, 10.0, 10.0), (0.1, 10.0, 11.0), (0.5, 10.0, 15.0)])
def test_jitter_only_ever_lengthens_a_delay_and_by_at_most_its_share(jitter: float, low: float, high: float) -> None:
    rng = random.Random(7)
    stretched = [backoff.jittered(10.0, jitter, rng) for _ in range(200)]
    assert low <= min(stretched) and max(stretched) <= high
