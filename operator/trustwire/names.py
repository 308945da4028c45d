"""Every name, label, annotation and key that users, dashboards and tests rely on (docs/design.md §3).

One module so that a rename is one edit and nothing spells a contract name by hand.
Pure constants and tiny pure functions; importable from every layer.
"""

from __future__ import annotations

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "trustwire"
#: the prefix of trustwire's own labels and annotations (spec.secretTemplate may not use it)
TRUSTWIRE_PREFIX = "trustwire.io"
IDENTITY_LABEL = "trustwire.io/identity"
RELATIONSHIP_LABEL = "trustwire.io/relationship"
ENROLLMENT_LABEL = "trustwire.io/enrollment"
ROLE_LABEL = "trustwire.io/role"
#: On a group's shared Secret: the group it holds the secret of.
SHARED_GROUP_LABEL = "trustwire.io/shared-group"

FIELD_MANAGER = "trustwire"
FINALIZER = "trustwire.io/finalizer"

ROTATE_ANNOTATION = "trustwire.io/rotate"
#: on a TrustRelationship: the CA fingerprints its external member confirmed installing
EXTERNAL_CONFIRMED_ANNOTATION = "trustwire.io/external-confirmed"
MATERIAL_HASH_ANNOTATION = "trustwire.io/material-hash"
WIRED_BY_ANNOTATION = "trustwire.io/wired-by"
#: Digest of the inputs and bytes of outputs that re-serialize differently every time (PKCS#12).
DERIVED_ANNOTATION = "trustwire.io/derived"
JWT_ISSUED_ANNOTATION = "trustwire.io/jwt-issued-at"
#: On an Enrollment: any new value asks for a fresh one-time token (``trustwire enroll --renew-token``).
RENEW_TOKEN_ANNOTATION = "trustwire.io/renew-token"  # noqa: S105 - an annotation name
#: On the token Secret: the ``renew-token`` value the token in it answers.
RENEW_TOKEN_HANDLED_ANNOTATION = "trustwire.io/renew-token-handled"  # noqa: S105 - an annotation name
#: The label and annotation keys spec.secretTemplate put on a Secret, so that a key removed
#: from the template is removed from the Secret too (and nobody else's key is).
SECRET_TEMPLATE_ANNOTATION = "trustwire.io/secret-template"  # noqa: S105 - a name, not a secret
#: Rotation state kept on the Secrets themselves, so a restarted operator resumes a phase.
CA_SINCE_ANNOTATION = "trustwire.io/ca-phase-since"
JWT_NEXT_ANNOTATION = "trustwire.io/jwt-next-issued-at"
JWT_PREVIOUS_ANNOTATION = "trustwire.io/jwt-previous"
JWT_PREVIOUS_UNTIL_ANNOTATION = "trustwire.io/jwt-previous-until"
#: On a shared Secret: until when ``previous.key`` is still delivered after a rotation.
SHARED_PREVIOUS_UNTIL_ANNOTATION = "trustwire.io/shared-previous-until"
#: On a shared Secret: JSON ``{relationship: rotate annotation value}`` of the requests handled.
SHARED_ROTATED_ANNOTATION = "trustwire.io/shared-rotated"
#: The ``trustwire.io/rotate`` value (``shared-secret[:anything]``) a TrustRelationship takes.
ROTATE_SHARED_SECRET = "shared-secret"  # noqa: S105 - a request name
#: Keys of a shared Secret: the current value and, during the grace period, the previous one.
SHARED_KEY = "shared.key"
SHARED_PREVIOUS_KEY = "previous.key"

#: Files of the credentials Secret and of the trust Secret, both projected into one mounted
#: directory (so no key may appear in both, and no template may take one of these names).
CREDENTIALS_KEYS = frozenset({
    "tls.crt", "tls.key", "ca.crt", "keystore.p12", "keystore.jks", "keystore.password",
    "jwt.key", "jwt.jwk", "jwt.kid", "jwt-next.key", "enrollment-ca.crt",
})
TRUST_KEYS = frozenset({
    "trust-bundle.pem", "truststore.p12", "truststore.jks", "truststore.password", "peers.jwks", "peers.json",
})
MOUNTED_KEYS = CREDENTIALS_KEYS | TRUST_KEYS
#: Trust files that move into a Secret of their own when a hub's trust outgrows one Secret
#: (docs/design.md §8), in the order the projected volume lists their Secrets.
TRUST_SPLIT_KEYS = ("trust-bundle.pem", "truststore.p12", "truststore.jks", "peers.jwks", "peers.json")
#: Prefix of the shared-secret files in the trust Secret (see :func:`shared_files`).
SHARED_SECRET_PREFIX = "shared-"  # noqa: S105 - a file-name prefix

#: The enrollment CA(s) the identity's workloads trust for client certificates of enrolled applications.
ENROLLMENT_CA_KEY = "enrollment-ca.crt"
#: Keys of an Enrollment's token Secret: the one-time token, and the connector URL to call with it.
ENROLLMENT_TOKEN_KEY = "token"  # noqa: S105 - a key name
ENROLLMENT_URL_KEY = "url"
#: The connector URL's path under the server's public URL.
ENROLLMENT_INFO_PATH = "/v1/info"

VOLUME_NAME = "trustwire"
ENV_DIR = "TRUSTWIRE_DIR"

#: Label selector for every object the operator writes (Secret/ConfigMap watches use it).
MANAGED_SELECTOR = f"{MANAGED_BY}={MANAGER}"


def ca_secret(identity: str) -> str:
    return f"{identity}-trustwire-ca"


def enrollment_ca_secret(identity: str) -> str:
    return f"{identity}-trustwire-enrollment-ca"


def enrollment_token_secret(enrollment: str) -> str:
    """Where ``trustwire enroll`` keeps the one-time token for administrators (never the server)."""
    return f"{enrollment}-trustwire-enrollment-token"


def credentials_secret(identity: str) -> str:
    return f"{identity}-trustwire-credentials"


def trust_secret(identity: str) -> str:
    return f"{identity}-trustwire-trust"


def trust_file_secret(identity: str, file: str) -> str:
    """The Secret that holds one trust file of ``TRUST_SPLIT_KEYS`` alone, named by it."""
    return f"{identity}-trustwire-trust-{file}"


def trust_secrets(identity: str) -> tuple[str, ...]:
    """Every Secret that may hold an identity's trust files: the trust Secret first."""
    return trust_secret(identity), *(trust_file_secret(identity, f) for f in TRUST_SPLIT_KEYS)


def public_configmap(identity: str) -> str:
    return f"{identity}-trustwire-public"


def shared_secret(relationship: str) -> str:
    return f"{relationship}-trustwire-shared"


def issuer_configmap(relationship: str) -> str:
    """The last good keys of a relationship's external issuer."""
    return f"{relationship}-trustwire-issuer"


#: the key of :func:`issuer_configmap` holding the issuer's JWKS (public members only)
ISSUER_JWKS_KEY = "jwks.json"


def shared_group_secret(group: str) -> str:
    return f"{group}-trustwire-group"


def shared_files(key: str) -> tuple[str, str, str]:
    """The trust Secret's files of one shared secret: value, client id, previous value
    (``key`` is the group, or the peer for a relationship without one)."""
    base = f"{SHARED_SECRET_PREFIX}{key}"
    return f"{base}.key", f"{base}.client-id", f"{base}.key.previous"


def identity_labels(identity: str, role: str) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, IDENTITY_LABEL: identity, ROLE_LABEL: role}


def is_managed(labels: dict[str, str] | None) -> bool:
    return bool(labels) and (labels or {}).get(MANAGED_BY) == MANAGER
