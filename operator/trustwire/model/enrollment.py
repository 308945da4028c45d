"""Parse an Enrollment body into a validated :class:`Enrollment`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from trustwire.model.durations import format_duration
from trustwire.model.errors import SpecError
from trustwire.model.fields import ENROLLMENT_FIELDS
from trustwire.model.reader import Reader, metadata
from trustwire.model.text import type_name
from trustwire.model.types import Enrollment, Subject

#: X.509's upper bound for a common name (RFC 5280 ub-common-name).
MAX_COMMON_NAME = 64
#: A one-time token is short-lived by design: minutes, at most a day.
MAX_TOKEN_TTL = timedelta(hours=24)
DEFAULT_TOKEN_TTL = timedelta(minutes=10)
DEFAULT_CERTIFICATE_DURATION = timedelta(hours=720)


def parse_enrollment(body: Mapping[str, Any]) -> Enrollment:
    """Parse and validate an Enrollment body; raises :class:`SpecError` naming every bad field."""
    namespace, name = metadata(body)
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        raise SpecError([("spec", f"must be an object with identity and subject, got {type_name(spec)}")])
    r = Reader()
    r.unknown(spec, ENROLLMENT_FIELDS, "spec")
    identity = r.string(spec, "identity", "spec")
    if not identity:
        r.fail("spec.identity", "is required: the ServiceIdentity whose enrollment CA signs")
    subject = _parse_subject(r, spec)
    token_ttl = r.duration(spec, "tokenTTL", "spec", DEFAULT_TOKEN_TTL)
    if token_ttl > MAX_TOKEN_TTL:
        r.fail("spec.tokenTTL", f"{format_duration(token_ttl)} is longer than the allowed "
                                f"{format_duration(MAX_TOKEN_TTL)}")
    cert_body = r.section(spec, "certificate", "spec", ENROLLMENT_FIELDS["certificate"])
    duration = r.duration(cert_body, "duration", "spec.certificate", DEFAULT_CERTIFICATE_DURATION)
    revoked = r.boolean(spec, "revoked", "spec", False)
    r.raise_problems()
    return Enrollment(namespace=namespace, name=name, identity=identity or "", subject=subject,
                      token_ttl=token_ttl, certificate_duration=duration, revoked=revoked)


def _parse_subject(r: Reader, spec: Mapping[str, Any]) -> Subject:
    body = r.section(spec, "subject", "spec", ENROLLMENT_FIELDS["subject"])
    common_name = r.string(body, "commonName", "spec.subject", max_length=MAX_COMMON_NAME)
    if not common_name:
        r.fail("spec.subject.commonName", "is required: the common name the application's CSR must carry")
    return Subject(common_name or "", r.strings(body, "organization", "spec.subject"),
                   r.strings(body, "organizationalUnit", "spec.subject"))
