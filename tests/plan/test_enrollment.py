"""The Enrollment's token format, its record in status, the phases and the status body."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import UTC, datetime, timedelta

import pytest

from trustwire.plan import enrollment as enr

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_token_names_its_enrollment_and_carries_256_random_bits() -> None:
    secret = secrets.token_bytes(enr.TOKEN_BYTES)
    token = enr.make_token("erp-ns", "sap-prod", secret)
    prefix, where, rand = token.split(".")
    assert prefix == "tw1"
    assert base64.urlsafe_b64decode(where + "=" * (-len(where) % 4)) == b"erp-ns/sap-prod"
    assert base64.urlsafe_b64decode(rand + "=" * (-len(rand) % 4)) == secret
    assert "=" not in token and len(token) <= enr.MAX_TOKEN_LENGTH
    assert enr.token_target(token) == ("erp-ns", "sap-prod")


def _b64(text: bytes) -> str:
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


@pytest.mark.parametrize("token", [
    "", "tw1", "tw1..", f"tw2.{_b64(b'ns/name')}.abc", f"tw1.{_b64(b'ns/name')}.",
    f"tw1.{_b64(b'nsname')}.abc", f"tw1.{_b64(b'/name')}.abc", f"tw1.{_b64(b'ns/')}.abc",
    f"tw1.{_b64(b'ns/a/b')}.abc", "tw1.!!!.abc", f"tw1.{_b64(bytes([0xff, 0xfe]))}.abc",
    f"tw1.{_b64(b'ns/name')}.abc.def", f"tw1.{_b64(b'ns/name')}." + "a" * 1100,
])
def test_what_is_no_token_of_ours_names_no_enrollment(token: str) -> None:
    assert enr.token_target(token) is None


def test_the_hash_is_lowercase_hex_sha256_of_the_whole_token() -> None:
    token = enr.make_token("ns", "app", bytes(range(32)))
    assert enr.token_hash(token) == hashlib.sha256(token.encode()).hexdigest()
    assert enr.token_hash(token) != enr.token_hash(enr.make_token("ns", "app", bytes(range(1, 33))))


def test_the_token_record_holds_the_hash_and_expiry_only() -> None:
    token = enr.make_token("ns", "app", bytes(32))
    record = enr.TokenRecord.of(token, NOW, timedelta(minutes=10))
    assert record.to_dict() == {"sha256": enr.token_hash(token), "expiresAt": "2026-03-01T12:10:00Z"}
    assert enr.TokenRecord.from_status(record.to_dict()) == record
    assert token not in str(record.to_dict())


@pytest.mark.parametrize("value", [None, "x", {}, {"sha256": 1, "expiresAt": "2026-03-01T12:10:00Z"},
                                   {"sha256": "ab"}, {"sha256": "ab", "expiresAt": "soon"}])
def test_an_unreadable_token_record_is_none(value: object) -> None:
    assert enr.TokenRecord.from_status(value) is None
