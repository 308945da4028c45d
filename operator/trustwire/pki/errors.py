"""Error types of the pure crypto layer.

Why a dedicated type: the operator maps "the material is wrong" (a user-supplied CA
that is not a CA, a PEM that does not parse, a key that does not fit a certificate)
to a status condition with a human message, and everything else to a crash-and-retry.
Callers therefore catch exactly :class:`PKIError` and show its message.

Messages describe *what* is wrong and never include key bytes, PEM text, passwords or
secrets: they end up in Kubernetes events and status, which are readable by far more
people than the Secrets they describe.
"""

from __future__ import annotations

__all__ = ["PKIError"]


class PKIError(ValueError):
    """Cryptographic material is unusable; the message says why (no key material)."""
