"""What every planner shares: stored and desired objects, loaded CA material, stable outputs.

Outputs whose bytes change on every serialization (PKCS#12 and JKS salts/IVs) are rebuilt
only when what they encode changed (:func:`stable_output`), so a resync never rolls pods.
Stored JSON files are written by :func:`to_json`, byte for byte as ``json.dumps(indent=2,
sort_keys=True)`` writes them, so stored files never change between versions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cryptography import x509

from trustwire import names, pki
from trustwire.plan.conditions import Check, stalled

SECRET_TLS = "kubernetes.io/tls"  # noqa: S105 - Secret types, not passwords
SECRET_OPAQUE = "Opaque"  # noqa: S105


@dataclasses.dataclass(frozen=True)
class StoredObject:
    """A Secret or ConfigMap as observed, data already decoded to bytes."""

    name: str
    managed: bool
    owner: str | None
    data: Mapping[str, bytes]
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    type: str | None = None

    def text(self, key: str) -> str | None:
        raw = self.data.get(key)
        return raw.decode("utf-8", "replace") if raw is not None else None


@dataclasses.dataclass(frozen=True)
class DesiredObject:
    kind: str  # "Secret" | "ConfigMap"
    name: str
    data: Mapping[str, bytes]
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    type: str | None = None
    #: True for objects the identity's deletion should keep (the CA under Retain)
    owned: bool = True


def with_secret_template(desired: DesiredObject, labels: Mapping[str, str],
                         annotations: Mapping[str, str]) -> DesiredObject:
    """A Secret with the user's ``spec.secretTemplate`` labels and annotations beside ours,
    and the record of which keys they are (:data:`~trustwire.names.SECRET_TEMPLATE_ANNOTATION`)."""
    if desired.kind != "Secret" or not (labels or annotations):
        return desired
    record = json.dumps({"annotations": sorted(annotations), "labels": sorted(labels)}, separators=(",", ":"))
    return dataclasses.replace(desired, labels={**labels, **desired.labels},
                               annotations={**annotations, **desired.annotations,
                                            names.SECRET_TEMPLATE_ANNOTATION: record})


def templated_keys(annotations: Mapping[str, str]) -> tuple[frozenset[str], frozenset[str]]:
    """The (label, annotation) keys an observed Secret's record says the template added."""
    try:
        record = json.loads(annotations.get(names.SECRET_TEMPLATE_ANNOTATION) or "{}")
        return frozenset(map(str, record.get("labels", ()))), frozenset(map(str, record.get("annotations", ())))
    except (ValueError, AttributeError, TypeError):
        return frozenset(), frozenset()


# --------------------------------------------------------------------------------------
# JSON, digests, messages
# --------------------------------------------------------------------------------------
def to_json(value: Any) -> bytes:
    """``json.dumps(value, indent=2, sort_keys=True)`` and a newline, byte for byte. The
    standard library indents in pure Python (its C encoder writes compact output only), a
    cost paid on every pass; :func:`_indented` writes the plain types a plan holds and
    leaves the rest to it."""
    try:
        text = _indented(value, "\n")
    except _NotPlain:
        text = json.dumps(value, indent=2, sort_keys=True)
    return (text + "\n").encode()


class _NotPlain(Exception):
    pass


_json_string = json.encoder.encode_basestring_ascii  # what json.dumps uses (ensure_ascii)


def _indented(value: Any, newline: str) -> str:
    if isinstance(value, str):
        return _json_string(value)
    if value is None or value is True or value is False:
        return "null" if value is None else "true" if value else "false"
    if type(value) is int:
        return int.__repr__(value)
    inner = newline + "  "
    if isinstance(value, dict):
        if not value:
            return "{}"
        if not all(type(k) is str for k in value):
            raise _NotPlain
        return "{" + inner + ("," + inner).join(
            f"{_json_string(k)}: {_indented(value[k], inner)}" for k in sorted(value)) + newline + "}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        return "[" + inner + ("," + inner).join(_indented(v, inner) for v in value) + newline + "]"
    raise _NotPlain  # floats (json's own repr rules), other types (json's own errors)


def bounded(items: Sequence[str], shown: int = 5) -> str:
    """A condition message naming a few items, not all of a hub's thousand."""
    head = "; ".join(items[:shown])
    return f"{head}; and {len(items) - shown} more" if len(items) > shown else head


def digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:32]


# --------------------------------------------------------------------------------------
# Outputs rebuilt only when their inputs change
# --------------------------------------------------------------------------------------
def derived_records(obj: StoredObject | None) -> dict[str, str]:
    if obj is None:
        return {}
    try:
        value = json.loads(obj.annotations.get(names.DERIVED_ANNOTATION, "{}"))
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def stable_output(key: str, inputs: bytes, build: Callable[[], bytes], observed: StoredObject | None,
                  records: dict[str, str]) -> bytes:
    """Reuse the observed bytes of ``key`` if they were built from the same inputs and are intact.

    The record is ``<inputs digest>:<bytes digest>``; an edited file fails the second half,
    a changed key/chain/password the first, and both lead to a rebuild.
    """
    inputs_digest = digest(inputs)
    previous = derived_records(observed).get(key)
    existing = observed.data.get(key) if observed is not None else None
    if existing is not None and previous == f"{inputs_digest}:{digest(existing)}":
        records[key] = previous
        return existing
    built = build()
    records[key] = f"{inputs_digest}:{digest(built)}"
    return built


def derived_annotations(records: Mapping[str, str]) -> dict[str, str]:
    return {names.DERIVED_ANNOTATION: json.dumps(dict(records), sort_keys=True)} if records else {}


def keystore_password(raw: bytes | None) -> str | None:
    """The one rule for a keystore or truststore password, user-supplied or stored: printable
    ASCII (0x20-0x7E) once surrounding whitespace is stripped, and not empty. Anything else —
    garbage, NUL bytes — is refused (a user's) or replaced (a stored one) rather than fed to
    the keystore writers."""
    value = raw.strip() if raw else b""
    if not value or not all(0x20 <= b <= 0x7E for b in value):
        return None
    return value.decode("ascii")


def stored_password(obj: StoredObject | None, key: str) -> str | None:
    return keystore_password(obj.data.get(key) if obj is not None else None)


def clash(obj: StoredObject | None, kind: str, namespace: str) -> Check | None:
    """``NameConflict`` when an object of ours by name exists but is not managed by us."""
    if obj is not None and not obj.managed:
        return stalled("NameConflict",
                       f"{kind} {namespace}/{obj.name} exists and is not managed by trustwire "
                       f"(no {names.MANAGED_BY}={names.MANAGER} label); it is left untouched — "
                       "rename or remove it to let trustwire create its own")
    return None


# --------------------------------------------------------------------------------------
# CA material
# --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CAMaterial:
    cert: x509.Certificate
    key: pki.PrivateKey
    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def of(cls, cert: x509.Certificate, key: pki.PrivateKey) -> CAMaterial:
        return cls(cert, key, pki.cert_to_pem(cert), pki.private_key_to_pem(key))


def load_ca(obj: StoredObject | None, crt: str = "tls.crt", key: str = "tls.key",
            ) -> tuple[CAMaterial | None, str | None]:
    """Parse a certificate/key pair of a CA Secret; (None, problem) when unusable."""
    if obj is None:
        return None, "does not exist"
    crt_pem, key_pem = obj.data.get(crt), obj.data.get(key)
    if not crt_pem or not key_pem:
        return None, f"lacks {crt} or {key}"
    try:
        certs = pki.load_certificates(crt_pem)
        private = pki.load_private_key(key_pem)
    except pki.PKIError as exc:
        return None, str(exc)
    return CAMaterial.of(certs[0], private), None


def load_cert(obj: StoredObject | None, key: str) -> x509.Certificate | None:
    if obj is None or not obj.data.get(key):
        return None
    try:
        return pki.load_certificates(obj.data[key])[0]
    except pki.PKIError:
        return None
