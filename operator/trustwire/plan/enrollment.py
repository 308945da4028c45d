"""Enrollment of external applications: the one-time token, its record, the phases and the status.

A token is ``tw1.<base64url of namespace/name>.<base64url of 32 random bytes>``: it names
its Enrollment, so the server finds it with one read, and only the SHA-256 of the whole
token is ever stored in the Enrollment (the token itself only in the administrator's
Secret). Pure: the clock is a parameter and the token's randomness is handed in.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import hashlib
from datetime import datetime, timedelta

from trustwire.times import parse_time, rfc3339

TOKEN_PREFIX = "tw1"  # noqa: S105 - a format marker
#: Longer than any token :func:`make_token` makes; a longer one is refused unread.
MAX_TOKEN_LENGTH = 1024
#: Random bytes in a token (256 bits: never guessed within a token's minutes).
TOKEN_BYTES = 32


class Phase(enum.StrEnum):
    TOKEN_ISSUED = "TokenIssued"  # noqa: S105 - a phase name
    ENROLLED = "Enrolled"
    EXPIRED = "Expired"
    REVOKED = "Revoked"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def make_token(namespace: str, name: str, secret: bytes) -> str:
    """The token naming Enrollment ``namespace/name`` with ``secret`` as its random part."""
    return f"{TOKEN_PREFIX}.{_b64(f'{namespace}/{name}'.encode())}.{_b64(secret)}"


def token_target(token: str) -> tuple[str, str] | None:
    """The (namespace, name) a token names, or None when it is no token of ours."""
    if len(token) > MAX_TOKEN_LENGTH:
        return None
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[2]:
        return None
    try:
        where = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    namespace, _, name = where.partition("/")
    return (namespace, name) if namespace and name and "/" not in name else None


def token_hash(token: str) -> str:
    """Lowercase hex SHA-256 of the whole token: all that status keeps of it."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class TokenRecord:
    """The outstanding token of an Enrollment, as ``status.token`` holds it."""

    sha256: str
    expires_at: datetime

    @classmethod
    def of(cls, token: str, now: datetime, ttl: timedelta) -> TokenRecord:
        return cls(token_hash(token), now + ttl)

    @classmethod
    def from_status(cls, value: object) -> TokenRecord | None:
        if not isinstance(value, dict) or not isinstance(value.get("sha256"), str):
            return None
        expires = parse_time(value.get("expiresAt"))
        return cls(value["sha256"], expires) if expires is not None else None

    def to_dict(self) -> dict[str, str]:
        return {"sha256": self.sha256, "expiresAt": rfc3339(self.expires_at)}
