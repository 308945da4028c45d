"""trustwire.plan.conditions: kstatus Ready/Reconciling/Stalled and lastTransitionTime rules."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from trustwire.plan.conditions import (
    Check,
    Condition,
    ConditionStatus,
    as_condition,
    failed_pass,
    first_failure,
    merge_conditions,
    passed,
    recovery_message,
    stalled,
    summarize,
    transitions,
    was_stalled,
)

TRUE, FALSE = ConditionStatus.TRUE, ConditionStatus.FALSE

OK = passed("Valid", "fine")
PENDING = Check(False, "PeerPending", "jobs/jobserver has not published yet")
CONFLICT = stalled("NameConflict", "Secret gov/x is not ours")
INVALID = stalled("InvalidSpec", "spec.x: bad")


def by_type(conditions: list[Condition]) -> dict[str, Condition]:
    return {c.type: c for c in conditions}


def test_check_constructors() -> None:
    assert passed("R", "m") == Check(True, "R", "m", stalled=False)
    assert stalled("R", "m") == Check(False, "R", "m", stalled=True)
    assert PENDING.stalled is False
    assert as_condition("CAReady", OK) == Condition("CAReady", TRUE, "Valid", "fine")
    assert as_condition("TrustReady", PENDING) == Condition(
        "TrustReady", FALSE, "PeerPending", PENDING.message
    )
    assert first_failure([OK, PENDING, CONFLICT]) is PENDING
    assert first_failure([OK, OK]) is None


def test_all_ok_is_ready_settled_not_stalled() -> None:
    conditions = summarize({"CAReady": OK, "CertificateReady": OK}, ready_message="all good")
    assert [c.type for c in conditions] == ["Ready", "Reconciling", "Stalled", "CAReady", "CertificateReady"]
    c = by_type(conditions)
    assert c["Ready"] == Condition("Ready", TRUE, "Ready", "all good")
    assert (c["Reconciling"].status, c["Stalled"].status) == (FALSE, FALSE)
    assert c["CAReady"] == Condition("CAReady", TRUE, "Valid", "fine")


def test_no_checks_is_ready() -> None:
    c = by_type(summarize({}, ready_message="nothing to do"))
    assert (c["Ready"].status, c["Reconciling"].status, c["Stalled"].status) == (TRUE, FALSE, FALSE)


@pytest.mark.parametrize(
    ("checks", "ready_reason", "reconciling", "stalled_status"),
    [
        ({"CAReady": OK, "TrustReady": PENDING}, "PeerPending", TRUE, FALSE),
        ({"CAReady": CONFLICT, "TrustReady": OK}, "NameConflict", FALSE, TRUE),
        # a stalled problem wins over an earlier waiting one: Ready names what needs a human
        ({"TrustReady": PENDING, "CertificateReady": CONFLICT}, "NameConflict", FALSE, TRUE),
        ({"SpecValid": INVALID, "CAReady": CONFLICT}, "InvalidSpec", FALSE, TRUE),
        ({"A": PENDING, "B": Check(False, "Later", "x")}, "PeerPending", TRUE, FALSE),
    ],
)
def test_failures_drive_ready_reconciling_stalled(
    checks: dict[str, Check], ready_reason: str, reconciling: str, stalled_status: str
) -> None:
    c = by_type(summarize(checks, ready_message="unused"))
    assert (c["Ready"].status, c["Ready"].reason) == (FALSE, ready_reason)
    assert c["Reconciling"].status == reconciling
    assert c["Stalled"].status == stalled_status
    failing_type = next(t for t, chk in checks.items() if chk.reason == ready_reason)
    assert c["Ready"].message == f"{failing_type}: {checks[failing_type].message}"
    if reconciling == TRUE:
        assert c["Reconciling"].reason == ready_reason
    if stalled_status == TRUE:
        assert c["Stalled"].reason == ready_reason
        assert c["Stalled"].message == c["Ready"].message
    for type_, check in checks.items():  # every domain condition is reported as is
        assert c[type_] == as_condition(type_, check)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_merge_conditions_fresh(now: datetime) -> None:
    out = merge_conditions(None, [Condition("Ready", TRUE, "Ready", "ok")], now=now, generation=3)
    assert out == [
        {
            "type": "Ready",
            "status": TRUE,
            "reason": "Ready",
            "message": "ok",
            "lastTransitionTime": stamp(now),
            "observedGeneration": 3,
        }
    ]


def test_merge_conditions_keeps_transition_time_when_status_is_unchanged(now: datetime) -> None:
    earlier = stamp(now - timedelta(days=2))
    old = [
        {
            "type": "TrustReady",
            "status": FALSE,
            "reason": "PeerPending",
            "message": "a",
            "lastTransitionTime": earlier,
            "observedGeneration": 1,
        }
    ]
    new = [Condition("TrustReady", FALSE, "CASecretInvalid", "different reason and message")]
    (item,) = merge_conditions(old, new, now=now, generation=2)
    assert item["lastTransitionTime"] == earlier
    assert (item["reason"], item["message"], item["observedGeneration"]) == (
        "CASecretInvalid",
        "different reason and message",
        2,
    )


@pytest.mark.parametrize(("before", "after"), [(FALSE, TRUE), (TRUE, FALSE), ("Unknown", TRUE)])
def test_merge_conditions_updates_transition_time_on_a_flip(now: datetime, before: str, after: str) -> None:
    old = [
        {
            "type": "Ready",
            "status": before,
            "reason": "X",
            "message": "",
            "lastTransitionTime": stamp(now - timedelta(hours=1)),
        }
    ]
    (item,) = merge_conditions(old, [Condition("Ready", after, "Y", "")], now=now, generation=None)
    assert item["lastTransitionTime"] == stamp(now)
    assert "observedGeneration" not in item


@pytest.mark.parametrize(
    "old",
    [
        [{"type": "Ready", "status": TRUE}],  # no time recorded
        [{"type": "Ready", "status": TRUE, "lastTransitionTime": ""}],
        ["garbage", None, 5],  # not conditions at all
        [],
    ],
)
def test_merge_conditions_tolerates_incomplete_old_conditions(now: datetime, old: list[Any]) -> None:
    (item,) = merge_conditions(old, [Condition("Ready", TRUE, "Ready", "")], now=now, generation=1)
    assert item["lastTransitionTime"] == stamp(now)


def test_merge_conditions_keeps_order_and_drops_vanished_types(now: datetime) -> None:
    old = [
        {"type": "Gone", "status": TRUE, "lastTransitionTime": "2020-01-01T00:00:00Z"},
        {"type": "B", "status": TRUE, "lastTransitionTime": "2020-01-01T00:00:00Z"},
    ]
    new = [Condition("A", TRUE, "r"), Condition("B", TRUE, "r")]
    out = merge_conditions(old, new, now=now, generation=1)
    assert [c["type"] for c in out] == ["A", "B"]
    assert out[1]["lastTransitionTime"] == "2020-01-01T00:00:00Z"


def test_resync_with_identical_checks_renders_identical_conditions(now: datetime) -> None:
    checks = {"CAReady": OK, "TrustReady": PENDING}
    first = merge_conditions(None, summarize(checks, ready_message="x"), now=now, generation=4)
    later = merge_conditions(
        first, summarize(checks, ready_message="x"), now=now + timedelta(hours=5), generation=4
    )
    assert later == first  # so the status patch is empty: zero writes


def test_transitions_report_status_or_reason_changes() -> None:
    old = [
        {"type": "Ready", "status": FALSE, "reason": "PeerPending"},
        {"type": "CAReady", "status": TRUE, "reason": "Valid"},
        {"type": "TrustReady", "status": FALSE, "reason": "PeerPending"},
    ]
    new = [
        Condition("Ready", TRUE, "Ready", "m"),  # status flipped
        Condition("CAReady", TRUE, "Valid", "new message"),  # only the message: not a transition
        Condition("TrustReady", FALSE, "NotPermitted", ""),  # reason changed
        Condition("Rotating", FALSE, "Idle", ""),
    ]  # new type
    assert [c.type for c in transitions(old, new)] == ["Ready", "TrustReady", "Rotating"]
    assert transitions(None, new) == new
    assert transitions(old, []) == []


@pytest.mark.parametrize(
    ("check", "ready", "reconciling", "stalled_"),
    [
        (stalled("WriteRejected", "413"), ("False", "WriteRejected"), ("False", "Settled"), ("True", "WriteRejected")),
        (PENDING, ("False", "PeerPending"), ("True", "PeerPending"), ("False", "NotStalled")),
    ],
)
def test_a_failed_pass_rewrites_the_summary_and_keeps_the_domain_conditions(
    now: datetime, check: Check, ready: tuple[str, str], reconciling: tuple[str, str], stalled_: tuple[str, str]
) -> None:
    earlier = now - timedelta(hours=1)
    old = merge_conditions(None, summarize({"CAReady": OK, "TrustReady": OK}, ready_message="all good"),
                           now=earlier, generation=2)
    out = failed_pass(old, "Applied", check, now=now, generation=3)
    got = {c["type"]: c for c in out}
    assert [c["type"] for c in out] == ["Ready", "Reconciling", "Stalled", "CAReady", "TrustReady"]
    assert (got["Ready"]["status"], got["Ready"]["reason"]) == ready
    assert got["Ready"]["message"] == f"Applied: {check.message}"
    assert (got["Reconciling"]["status"], got["Reconciling"]["reason"]) == reconciling
    assert (got["Stalled"]["status"], got["Stalled"]["reason"]) == stalled_
    assert got["Ready"]["lastTransitionTime"] == stamp(now)  # Ready flipped
    assert got["CAReady"] == next(c for c in old if c["type"] == "CAReady")  # untouched, time and all


@pytest.mark.parametrize(("old", "recovery"), [
    (None, False),  # the first status
    ([{"type": "Stalled", "status": "False", "reason": "NotStalled"},
      {"type": "Ready", "status": "False", "reason": "PeerPending"}], False),  # resolved by itself
    ([{"type": "Stalled", "status": "True", "reason": "InvalidSpec"},
      {"type": "Ready", "status": "False", "reason": "InvalidSpec"}], True),  # a human fixed it
    (["garbage", {"type": "Stalled"}], False),
])
def test_ready_is_a_recovery_only_after_a_stall(old: list[Any] | None, recovery: bool) -> None:
    assert was_stalled(old) is recovery


@pytest.mark.parametrize(("ready", "says"), [
    (Condition("Ready", ConditionStatus.TRUE, "Ready", "1 peer"), "no longer stalled; Ready: 1 peer"),
    (Condition("Ready", ConditionStatus.FALSE, "PeerPending", "beta has not published"),
     "no longer stalled; PeerPending: beta has not published"),
])
def test_a_recovery_says_what_comes_next(ready: Condition, says: str) -> None:
    assert recovery_message([Condition("Stalled", ConditionStatus.FALSE, "NotStalled", ""), ready]) == says
