"""Every refusal the server makes: an HTTP status and a stable machine-readable reason.

Clients branch on ``error.reason`` (documented in the OpenAPI document), never on the
message, which is for humans and never carries a token, a key or a request body.
"""

from __future__ import annotations

import enum


class ServerReason(enum.StrEnum):
    NOT_FOUND = "NotFound"
    METHOD_NOT_ALLOWED = "MethodNotAllowed"
    BODY_TOO_LARGE = "BodyTooLarge"
    BAD_REQUEST = "BadRequest"
    RATE_LIMITED = "RateLimited"
    INTERNAL = "InternalError"
    UNAVAILABLE = "Unavailable"


class Refusal(Exception):
    """Raised by a handler; the error middleware answers it as JSON."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


#: Reasons for the statuses aiohttp raises itself (routing, body size).
STATUS_REASONS = {
    404: ServerReason.NOT_FOUND,
    405: ServerReason.METHOD_NOT_ALLOWED,
    413: ServerReason.BODY_TOO_LARGE,
    429: ServerReason.RATE_LIMITED,
}
