"""Parse ServiceIdentity and TrustRelationship bodies into frozen, validated dataclasses.

Why a hand-written parser when the CRD schema already validates? Because the API server is
not the only writer we meet: the test emulator validates nothing, older clusters may run an
older CRD, and ``kubectl apply --validate=false`` exists. Every reconcile therefore starts
here, and every problem becomes a :class:`SpecError` that names the field, says what is
wrong and what is allowed — the text that lands in the ``Ready`` condition and the Event.

The package is pure: no kubernetes client, no I/O, no clock. Its interface is the
names exported here: the typed model (``types``), the declared fields (``fields``), the
bounds (``limits``), durations, and the two parsers.
"""

from trustwire.model.durations import format_duration, parse_duration
from trustwire.model.enrollment import parse_enrollment
from trustwire.model.errors import SpecError
from trustwire.model.fields import ENROLLMENT_FIELDS, IDENTITY_FIELDS, RELATIONSHIP_FIELDS, field_paths
from trustwire.model.identity import parse_identity
from trustwire.model.limits import (
    MAX_DNS_NAMES,
    MAX_DURATION,
    MAX_DURATION_TEXT,
    MAX_INLINE_TEMPLATE,
    MAX_LIST_ITEMS,
    MAX_NAME_LENGTH,
    MAX_OWNER_NAME,
    MAX_QUOTED,
    MAX_REPORTED,
    MAX_TEMPLATES,
    MAX_WORKLOADS,
    MIN_DURATION,
)
from trustwire.model.relationship import parse_relationship
from trustwire.model.types import (
    API_VERSION,
    GROUP,
    VERSION,
    BundleKind,
    BundleRef,
    CASource,
    CASpec,
    CertificateSpec,
    DeletionPolicy,
    Enrollment,
    ExternalIssuer,
    ExternalPeer,
    IdentityRef,
    JwtSpec,
    KeystoreFormat,
    KeystoreSpec,
    RolloutMode,
    SecretEncoding,
    SecretKeyRef,
    ServiceIdentity,
    SharedSecretSpec,
    Subject,
    TemplateSpec,
    TrustRelationship,
    WorkloadKind,
    WorkloadRef,
)

__all__ = [
    "API_VERSION", "ENROLLMENT_FIELDS", "GROUP", "IDENTITY_FIELDS", "MAX_DNS_NAMES", "MAX_DURATION",
    "MAX_DURATION_TEXT", "MAX_INLINE_TEMPLATE", "MAX_LIST_ITEMS", "MAX_NAME_LENGTH", "MAX_OWNER_NAME",
    "MAX_QUOTED", "MAX_REPORTED", "MAX_TEMPLATES", "MAX_WORKLOADS", "MIN_DURATION", "RELATIONSHIP_FIELDS",
    "VERSION", "BundleKind", "BundleRef", "CASource", "CASpec", "CertificateSpec", "DeletionPolicy", "Enrollment",
    "ExternalIssuer", "ExternalPeer", "IdentityRef", "JwtSpec", "KeystoreFormat", "KeystoreSpec", "RolloutMode",
    "SecretEncoding",
    "SecretKeyRef", "ServiceIdentity", "SharedSecretSpec", "SpecError", "Subject", "TemplateSpec",
    "TrustRelationship", "WorkloadKind", "WorkloadRef", "field_paths", "format_duration", "parse_duration",
    "parse_enrollment", "parse_identity", "parse_relationship",
]
