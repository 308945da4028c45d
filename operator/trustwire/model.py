"""Parse ServiceIdentity and TrustRelationship bodies into frozen, validated dataclasses.

Why a hand-written parser when the CRD schema already validates? Because the API server is
not the only writer we meet: the test emulator validates nothing, older clusters may run an
older CRD, and ``kubectl apply --validate=false`` exists. Every reconcile therefore starts
here, and every problem becomes a :class:`SpecError` that names the field, says what is
wrong and what is allowed — the text that lands in the ``Ready`` condition and the Event.

The accepted field paths are declared once in :data:`IDENTITY_FIELDS` and
:data:`RELATIONSHIP_FIELDS`; unknown fields are rejected (a typo such as ``dnsName`` must
not be silently ignored) and ``tests/test_model_crd_drift.py`` checks that these tables and
the CRD schemas in ``crds/`` declare exactly the same paths.

This module is pure: no kopf, no kubernetes client, no I/O, no clock.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from trustwire.pki import JwtAlgorithm, KeyAlgorithm

GROUP = "trustwire.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: Bounds that keep hostile specs from turning into unbounded work.
MAX_DNS_NAMES = 100
MAX_NAME_LENGTH = 253
#: An identity's or a relationship's name is the value of a label on every object derived
#: from it, and the API refuses label values longer than this.
MAX_OWNER_NAME = 63
MAX_LIST_ITEMS = 100
MAX_WORKLOADS = 50
MAX_TEMPLATES = 20
MAX_INLINE_TEMPLATE = 64 * 1024
MIN_DURATION = timedelta(seconds=10)
MAX_DURATION = timedelta(days=3650 * 3)
#: Problems named in a SpecError message, and characters of a user value quoted in one.
MAX_REPORTED = 20
MAX_QUOTED = 80
#: Longer duration strings are refused before parsing ("1h" x 5 million would be 10 MB of work).
MAX_DURATION_TEXT = 64


class SpecError(ValueError):
    """One or more problems in a spec; each names its field."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        # The message lands in a status condition: name at most MAX_REPORTED problems.
        shown = "; ".join(f"{path}: {msg}" for path, msg in self.problems[:MAX_REPORTED])
        hidden = len(self.problems) - MAX_REPORTED
        super().__init__(shown + (f"; and {hidden} more problem(s)" if hidden > 0 else ""))

    @property
    def fields(self) -> list[str]:
        return [path for path, _ in self.problems]


class CASource(enum.StrEnum):
    SELF_SIGNED = "SelfSigned"
    SECRET = "Secret"  # noqa: S105 - an enum value, not a password


class KeystoreFormat(enum.StrEnum):
    PKCS12 = "PKCS12"
    JKS = "JKS"


class WorkloadKind(enum.StrEnum):
    DEPLOYMENT = "Deployment"
    STATEFULSET = "StatefulSet"
    DAEMONSET = "DaemonSet"


class DeletionPolicy(enum.StrEnum):
    RETAIN = "Retain"
    DELETE = "Delete"


# --------------------------------------------------------------------------------------
# Declared fields. Leaves are the accepted JSON types; nested mappings are objects;
# a one-element list means "array of". This is the single list the CRD must match.
# --------------------------------------------------------------------------------------
_DURATION = "duration"
_STR = "string"
_BOOL = "boolean"

IDENTITY_FIELDS: dict[str, Any] = {
    "serviceName": _STR,
    "dnsNames": [_STR],
    "trustDomain": _STR,
    "ca": {
        "source": _STR,
        "secretRef": {"name": _STR},
        "keyAlgorithm": _STR,
        "duration": _DURATION,
    },
    "certificate": {"keyAlgorithm": _STR, "duration": _DURATION, "renewBefore": _DURATION},
    "jwt": {
        "enabled": _BOOL,
        "algorithm": _STR,
        "rotationPeriod": _DURATION,
        "revokedKids": [_STR],
        "issuer": _STR,
    },
    "keystores": {
        "formats": [_STR],
        "passwordSecretRef": {"name": _STR, "key": _STR},
        "legacyPKCS12": _BOOL,
    },
    "workloads": [{"kind": _STR, "name": _STR, "containers": [_STR]}],
    "mountPath": _STR,
    "templates": [{"name": _STR, "inline": _STR, "configMapRef": {"name": _STR, "key": _STR}}],
    "acceptFrom": {"namespaces": [_STR]},
    "deletionPolicy": _STR,
}

RELATIONSHIP_FIELDS: dict[str, Any] = {
    "between": [{"identity": _STR, "namespace": _STR}],
    "initiator": _STR,
    "mtls": {"enabled": _BOOL},
    "jwt": {"enabled": _BOOL, "roles": [_STR], "audience": _STR, "scopes": [_STR]},
    "sharedSecret": {"enabled": _BOOL},
}


def field_paths(fields: Mapping[str, Any], prefix: str = "spec") -> set[str]:
    """All dotted paths declared by a field table (``[]`` marks array items)."""
    paths: set[str] = set()
    for key, kind in fields.items():
        path = f"{prefix}.{key}"
        paths.add(path)
        if isinstance(kind, list):
            item = kind[0]
            if isinstance(item, dict):
                paths |= field_paths(item, f"{path}[]")
        elif isinstance(kind, dict):
            paths |= field_paths(kind, path)
    return paths


# --------------------------------------------------------------------------------------
# Typed model
# --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


@dataclasses.dataclass(frozen=True)
class CASpec:
    source: CASource = CASource.SELF_SIGNED
    secret_name: str | None = None
    key_algorithm: KeyAlgorithm = KeyAlgorithm.ECDSAP256
    duration: timedelta = timedelta(hours=8760)


@dataclasses.dataclass(frozen=True)
class CertificateSpec:
    key_algorithm: KeyAlgorithm = KeyAlgorithm.ECDSAP256
    duration: timedelta = timedelta(hours=720)
    renew_before: timedelta = timedelta(hours=240)


@dataclasses.dataclass(frozen=True)
class JwtSpec:
    enabled: bool = True
    algorithm: JwtAlgorithm = JwtAlgorithm.ES256
    rotation_period: timedelta = timedelta(hours=720)
    revoked_kids: tuple[str, ...] = ()
    issuer: str | None = None


@dataclasses.dataclass(frozen=True)
class KeystoreSpec:
    formats: tuple[KeystoreFormat, ...] = (KeystoreFormat.PKCS12,)
    password_secret: SecretKeyRef | None = None
    legacy_pkcs12: bool = False


@dataclasses.dataclass(frozen=True)
class WorkloadRef:
    kind: WorkloadKind
    name: str
    containers: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class TemplateSpec:
    name: str
    inline: str | None = None
    config_map: SecretKeyRef | None = None


@dataclasses.dataclass(frozen=True)
class ServiceIdentity:
    namespace: str
    name: str
    service_name: str
    dns_names: tuple[str, ...]
    trust_domain: str
    ca: CASpec
    certificate: CertificateSpec
    jwt: JwtSpec
    keystores: KeystoreSpec
    workloads: tuple[WorkloadRef, ...]
    mount_path: str
    templates: tuple[TemplateSpec, ...]
    accept_from: tuple[str, ...]
    deletion_policy: DeletionPolicy

    @property
    def spiffe_id(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sid/{self.name}"

    @property
    def issuer(self) -> str:
        return self.jwt.issuer or self.spiffe_id

    @property
    def all_dns_names(self) -> tuple[str, ...]:
        """Default SANs for the service name first, then the extra names, without repeats."""
        svc, ns = self.service_name, self.namespace
        names = [svc, f"{svc}.{ns}", f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.cluster.local", *self.dns_names]
        return tuple(dict.fromkeys(names))

    def accepts(self, namespace: str) -> bool:
        """Whether a relationship declared in ``namespace`` may name this identity."""
        return namespace == self.namespace or "*" in self.accept_from or namespace in self.accept_from


@dataclasses.dataclass(frozen=True)
class IdentityRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True)
class TrustRelationship:
    namespace: str
    name: str
    between: tuple[IdentityRef, IdentityRef]
    initiator: IdentityRef | None
    mtls: bool
    jwt: bool
    roles: tuple[str, ...]
    audience: str | None
    scopes: tuple[str, ...]
    shared_secret: bool

    def peer_of(self, ref: IdentityRef) -> IdentityRef | None:
        a, b = self.between
        if ref == a:
            return b
        if ref == b:
            return a
        return None

    def sends_to(self, sender: IdentityRef) -> bool:
        """Whether ``sender`` opens connections / sends tokens to its peer."""
        return self.initiator is None or self.initiator == sender


# --------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------
_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_NAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
_TRUST_DOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$")

#: Keys written by the operator into the mounted directory; templates may not take them.
CONTRACT_KEYS = frozenset({
    "tls.crt", "tls.key", "ca.crt", "keystore.p12", "keystore.jks", "keystore.password",
    "jwt.key", "jwt.jwk", "jwt.kid", "jwt-next.key", "trust-bundle.pem", "truststore.p12",
    "truststore.jks", "truststore.password", "peers.jwks", "peers.json",
})


def parse_duration(text: str) -> timedelta:
    """Kubernetes-style duration (``8760h``, ``1h30m``, ``90s``) → timedelta; ValueError if not."""
    if not isinstance(text, str) or len(text) > MAX_DURATION_TEXT or not _DURATION_RE.match(text):
        raise ValueError(f"{_quote(text)} is not a duration such as 720h, 90m or 1h30m (units ms, s, m, h)")
    seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text))
    try:
        return timedelta(seconds=seconds)
    except OverflowError:  # e.g. 400 digits of hours: far beyond any allowed range
        raise ValueError(f"{_quote(text)} is too long a duration") from None


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)
    return out or "0s"


_E = TypeVar("_E", bound=enum.StrEnum)


class _Reader:
    """Collects every problem in one pass so a user fixes them all at once."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def unknown(self, obj: Mapping[str, Any], fields: Mapping[str, Any], path: str) -> None:
        for key in obj:
            if key not in fields:
                allowed = ", ".join(sorted(fields))
                shown = key if isinstance(key, str) and len(key) <= MAX_QUOTED else _quote(key)
                self.fail(f"{path}.{shown}", f"unknown field; allowed fields are {allowed}")

    def obj(self, parent: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = parent.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(f"{path}.{key}", f"must be an object, got {_type_name(value)}")
            return {}
        return value

    def string(self, parent: Mapping[str, Any], key: str, path: str, default: str | None = None,
            *, max_length: int = MAX_NAME_LENGTH) -> str | None:
        value = parent.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            self.fail(f"{path}.{key}", f"must be a string, got {_type_name(value)}")
            return default
        if len(value) > max_length:
            self.fail(f"{path}.{key}", f"is {len(value)} characters long; at most {max_length} allowed")
            return default
        return value

    def boolean(self, parent: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = parent.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(f"{path}.{key}", f"must be true or false, got {_type_name(value)}")
            return default
        return value

    def array(self, parent: Mapping[str, Any], key: str, path: str, max_items: int) -> list[Any]:
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(f"{path}.{key}", f"must be a list, got {_type_name(value)}")
            return []
        if len(value) > max_items:
            self.fail(f"{path}.{key}", f"has {len(value)} items; at most {max_items} allowed")
            return []
        return value

    def strings(self, parent: Mapping[str, Any], key: str, path: str,
                max_items: int = MAX_LIST_ITEMS) -> tuple[str, ...]:
        out: list[str] = []
        for i, item in enumerate(self.array(parent, key, path, max_items)):
            if not isinstance(item, str) or not item:
                self.fail(f"{path}.{key}[{i}]", f"must be a non-empty string, got {_type_name(item)}")
            elif len(item) > MAX_NAME_LENGTH:
                self.fail(f"{path}.{key}[{i}]", f"is longer than {MAX_NAME_LENGTH} characters")
            else:
                out.append(item)
        return tuple(out)

    def enum(self, parent: Mapping[str, Any], key: str, path: str, kind: type[_E], default: _E) -> _E:
        value = parent.get(key)
        if value is None:
            return default
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(m.value for m in kind)
            self.fail(f"{path}.{key}", f"{_quote(value)} is not supported; allowed values are {allowed}")
            return default

    def duration(self, parent: Mapping[str, Any], key: str, path: str, default: timedelta) -> timedelta:
        value = parent.get(key)
        if value is None:
            return default
        try:
            parsed = parse_duration(value)
        except ValueError as exc:
            self.fail(f"{path}.{key}", str(exc))
            return default
        if not MIN_DURATION <= parsed <= MAX_DURATION:
            self.fail(f"{path}.{key}", f"{_quote(value)} is out of range; allowed from "
                                       f"{format_duration(MIN_DURATION)} to {format_duration(MAX_DURATION)}")
            return default
        return parsed


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _quote(value: Any) -> str:
    """``repr`` of a user value for a message, cut to MAX_QUOTED characters (inputs can be 10 MB)."""
    if isinstance(value, str):
        if len(value) <= MAX_QUOTED:
            return repr(value)
        return f"{value[:MAX_QUOTED]!r}... ({len(value)} characters)"
    if isinstance(value, bool | int | float) or value is None:
        text = repr(value)
        return text if len(text) <= MAX_QUOTED else f"a number of {len(text)} digits"
    return _type_name(value)


def _owner_name_problem(name: str, label: str) -> str:
    return (f"is {len(name)} characters long; at most {MAX_OWNER_NAME} allowed: it is the value of the "
            f"{label} label, which the API limits to {MAX_OWNER_NAME} characters")


def _meta(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = body.get("metadata")
    if not isinstance(meta, Mapping):
        meta = {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


def parse_identity(body: Mapping[str, Any]) -> ServiceIdentity:
    """Parse and validate a ServiceIdentity body; raises :class:`SpecError` naming every bad field."""
    namespace, name = _meta(body)
    r = _Reader()
    spec = body.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise SpecError([("spec", f"must be an object, got {_type_name(spec)}")])
    r.unknown(spec, IDENTITY_FIELDS, "spec")
    if not _DNS_LABEL.match(namespace) or len(namespace) > 63:
        # a real API server guarantees this; the name becomes part of every default DNS SAN
        r.fail("metadata.namespace", f"{_quote(namespace)} is not a DNS-1123 label")

    if len(name) > MAX_OWNER_NAME:
        r.fail("metadata.name", _owner_name_problem(name, "trustwire.io/identity"))

    given_service = r.string(spec, "serviceName", "spec")
    service_name = given_service or name
    # a service name defaulted from a name that is too long is reported once, as metadata.name
    if (given_service or len(name) <= MAX_OWNER_NAME) and \
            (not _DNS_LABEL.match(service_name) or len(service_name) > 63):
        r.fail("spec.serviceName",
               f"{_quote(service_name)} is not a DNS-1123 label (lowercase a-z, 0-9, '-', at most 63)")

    dns_names = r.strings(spec, "dnsNames", "spec", max_items=MAX_DNS_NAMES)
    for i, dns in enumerate(dns_names):
        if not _DNS_NAME.match(dns):
            r.fail(f"spec.dnsNames[{i}]", f"{_quote(dns)} is not a DNS name (lowercase labels separated by dots)")

    trust_domain = r.string(spec, "trustDomain", "spec", default="cluster.local") or "cluster.local"
    if not _TRUST_DOMAIN.match(trust_domain):
        r.fail("spec.trustDomain",
               f"{_quote(trust_domain)} is not a valid SPIFFE trust domain (lowercase a-z, 0-9, '.', '-', '_')")

    ca_body = r.obj(spec, "ca", "spec")
    r.unknown(ca_body, IDENTITY_FIELDS["ca"], "spec.ca")
    ca_source = r.enum(ca_body, "source", "spec.ca", CASource, CASource.SELF_SIGNED)
    secret_ref = r.obj(ca_body, "secretRef", "spec.ca")
    r.unknown(secret_ref, IDENTITY_FIELDS["ca"]["secretRef"], "spec.ca.secretRef")
    ca_secret = r.string(secret_ref, "name", "spec.ca.secretRef")
    if ca_source is CASource.SECRET and not ca_secret:
        r.fail("spec.ca.secretRef.name", "is required when spec.ca.source is Secret")
    ca = CASpec(
        source=ca_source,
        secret_name=ca_secret if ca_source is CASource.SECRET else None,
        key_algorithm=r.enum(ca_body, "keyAlgorithm", "spec.ca", KeyAlgorithm, KeyAlgorithm.ECDSAP256),
        duration=r.duration(ca_body, "duration", "spec.ca", timedelta(hours=8760)),
    )

    cert_body = r.obj(spec, "certificate", "spec")
    r.unknown(cert_body, IDENTITY_FIELDS["certificate"], "spec.certificate")
    certificate = CertificateSpec(
        key_algorithm=r.enum(cert_body, "keyAlgorithm", "spec.certificate", KeyAlgorithm, KeyAlgorithm.ECDSAP256),
        duration=r.duration(cert_body, "duration", "spec.certificate", timedelta(hours=720)),
        renew_before=r.duration(cert_body, "renewBefore", "spec.certificate", timedelta(hours=240)),
    )
    if certificate.renew_before >= certificate.duration:
        r.fail("spec.certificate.renewBefore",
               f"{format_duration(certificate.renew_before)} must be shorter than spec.certificate.duration "
               f"({format_duration(certificate.duration)})")

    jwt_body = r.obj(spec, "jwt", "spec")
    r.unknown(jwt_body, IDENTITY_FIELDS["jwt"], "spec.jwt")
    jwt = JwtSpec(
        enabled=r.boolean(jwt_body, "enabled", "spec.jwt", True),
        algorithm=r.enum(jwt_body, "algorithm", "spec.jwt", JwtAlgorithm, JwtAlgorithm.ES256),
        rotation_period=r.duration(jwt_body, "rotationPeriod", "spec.jwt", timedelta(hours=720)),
        revoked_kids=r.strings(jwt_body, "revokedKids", "spec.jwt"),
        issuer=r.string(jwt_body, "issuer", "spec.jwt"),
    )

    ks_body = r.obj(spec, "keystores", "spec")
    r.unknown(ks_body, IDENTITY_FIELDS["keystores"], "spec.keystores")
    formats: list[KeystoreFormat] = []
    for i, fmt in enumerate(r.array(ks_body, "formats", "spec.keystores", 2) if "formats" in ks_body else ["PKCS12"]):
        try:
            formats.append(KeystoreFormat(fmt))
        except ValueError:
            r.fail(f"spec.keystores.formats[{i}]", f"{_quote(fmt)} is not supported; allowed values are PKCS12, JKS")
    pw_ref_body = r.obj(ks_body, "passwordSecretRef", "spec.keystores")
    r.unknown(pw_ref_body, IDENTITY_FIELDS["keystores"]["passwordSecretRef"], "spec.keystores.passwordSecretRef")
    password_secret = None
    if pw_ref_body:
        pw_name = r.string(pw_ref_body, "name", "spec.keystores.passwordSecretRef")
        if not pw_name:
            r.fail("spec.keystores.passwordSecretRef.name", "is required")
        else:
            pw_key = r.string(pw_ref_body, "key", "spec.keystores.passwordSecretRef", default="password")
            password_secret = SecretKeyRef(pw_name, pw_key or "password")
    keystores = KeystoreSpec(
        formats=tuple(dict.fromkeys(formats)),
        password_secret=password_secret,
        legacy_pkcs12=r.boolean(ks_body, "legacyPKCS12", "spec.keystores", False),
    )

    workloads: list[WorkloadRef] = []
    seen_workloads: set[tuple[str, str]] = set()
    for i, item in enumerate(r.array(spec, "workloads", "spec", MAX_WORKLOADS)):
        path = f"spec.workloads[{i}]"
        if not isinstance(item, Mapping):
            r.fail(path, f"must be an object, got {_type_name(item)}")
            continue
        r.unknown(item, IDENTITY_FIELDS["workloads"][0], path)
        if item.get("kind") is None:
            r.fail(f"{path}.kind", "is required; allowed values are Deployment, StatefulSet, DaemonSet")
        kind = r.enum(item, "kind", path, WorkloadKind, WorkloadKind.DEPLOYMENT)
        wname = r.string(item, "name", path)
        if not wname:
            r.fail(f"{path}.name", "is required")
            continue
        if (kind, wname) in seen_workloads:
            r.fail(f"{path}", f"{kind} {_quote(wname)} is listed twice")
        seen_workloads.add((kind, wname))
        workloads.append(WorkloadRef(kind, wname, r.strings(item, "containers", path)))

    mount_path = r.string(spec, "mountPath", "spec", default="/var/run/trustwire") or "/var/run/trustwire"
    if not mount_path.startswith("/") or ":" in mount_path or ".." in mount_path.split("/"):
        r.fail("spec.mountPath", f"{_quote(mount_path)} must be an absolute path without '..' or ':'")

    templates: list[TemplateSpec] = []
    seen_templates: set[str] = set()
    for i, item in enumerate(r.array(spec, "templates", "spec", MAX_TEMPLATES)):
        path = f"spec.templates[{i}]"
        if not isinstance(item, Mapping):
            r.fail(path, f"must be an object, got {_type_name(item)}")
            continue
        r.unknown(item, IDENTITY_FIELDS["templates"][0], path)
        tname = r.string(item, "name", path)
        if not tname or not _TEMPLATE_NAME.match(tname):
            r.fail(f"{path}.name", "is required: a file name of letters, digits, '.', '_' or '-'")
            continue
        if tname == "." or tname.startswith(".."):
            r.fail(f"{path}.name", f"{_quote(tname)} is no Secret key: '.', '..' and names starting with '..' "
                                   "are refused by the API")
            continue
        if tname in CONTRACT_KEYS or tname.startswith("shared-"):
            r.fail(f"{path}.name", f"{_quote(tname)} collides with a file trustwire writes; choose another name")
            continue
        if tname in seen_templates:
            r.fail(f"{path}.name", f"{_quote(tname)} is used by two templates")
            continue
        seen_templates.add(tname)
        inline = r.string(item, "inline", path, max_length=MAX_INLINE_TEMPLATE)
        cm_body = r.obj(item, "configMapRef", path)
        r.unknown(cm_body, IDENTITY_FIELDS["templates"][0]["configMapRef"], f"{path}.configMapRef")
        cm_ref = None
        if cm_body:
            cm_name = r.string(cm_body, "name", f"{path}.configMapRef")
            cm_key = r.string(cm_body, "key", f"{path}.configMapRef")
            if not cm_name or not cm_key:
                r.fail(f"{path}.configMapRef", "needs both name and key")
            else:
                cm_ref = SecretKeyRef(cm_name, cm_key)
        if (inline is None) == (cm_ref is None):
            r.fail(path, "needs exactly one of inline or configMapRef")
            continue
        templates.append(TemplateSpec(tname, inline, cm_ref))

    accept_body = r.obj(spec, "acceptFrom", "spec")
    r.unknown(accept_body, IDENTITY_FIELDS["acceptFrom"], "spec.acceptFrom")
    accept_from = r.strings(accept_body, "namespaces", "spec.acceptFrom")

    deletion_policy = r.enum(spec, "deletionPolicy", "spec", DeletionPolicy, DeletionPolicy.RETAIN)

    if r.problems:
        raise SpecError(r.problems)
    return ServiceIdentity(
        namespace=namespace, name=name, service_name=service_name, dns_names=dns_names,
        trust_domain=trust_domain, ca=ca, certificate=certificate, jwt=jwt, keystores=keystores,
        workloads=tuple(workloads), mount_path=mount_path.rstrip("/") or "/", templates=tuple(templates),
        accept_from=accept_from, deletion_policy=deletion_policy,
    )


def parse_relationship(body: Mapping[str, Any]) -> TrustRelationship:
    """Parse and validate a TrustRelationship body; raises :class:`SpecError`."""
    namespace, name = _meta(body)
    r = _Reader()
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        raise SpecError([("spec", "is required: an object with 'between' naming two identities")])
    r.unknown(spec, RELATIONSHIP_FIELDS, "spec")

    refs: list[IdentityRef] = []
    between = spec.get("between")
    if not isinstance(between, list) or len(between) != 2:
        got = f"{len(between)} items" if isinstance(between, list) else _type_name(between)
        r.fail("spec.between", f"must list exactly two identities, got {got}")
    else:
        for i, item in enumerate(between):
            path = f"spec.between[{i}]"
            if not isinstance(item, Mapping):
                r.fail(path, f"must be an object with 'identity', got {_type_name(item)}")
                continue
            r.unknown(item, RELATIONSHIP_FIELDS["between"][0], path)
            ident = r.string(item, "identity", path)
            if not ident:
                r.fail(f"{path}.identity", "is required: the name of a ServiceIdentity")
                continue
            ns = r.string(item, "namespace", path, default=namespace) or namespace
            refs.append(IdentityRef(ns, ident))
        if len(refs) == 2 and refs[0] == refs[1]:
            r.fail("spec.between[1]", f"names {refs[0]} twice; a relationship needs two different identities")

    initiator: IdentityRef | None = None
    initiator_name = r.string(spec, "initiator", "spec")
    if initiator_name and len(refs) == 2:
        matches = [ref for ref in refs if initiator_name in (ref.name, str(ref))]
        if len(matches) != 1:
            r.fail("spec.initiator", f"{_quote(initiator_name)} must name one of {refs[0]} or {refs[1]} "
                                     "(use namespace/name when both have the same name)")
        else:
            initiator = matches[0]

    mtls_body = r.obj(spec, "mtls", "spec")
    r.unknown(mtls_body, RELATIONSHIP_FIELDS["mtls"], "spec.mtls")
    jwt_body = r.obj(spec, "jwt", "spec")
    r.unknown(jwt_body, RELATIONSHIP_FIELDS["jwt"], "spec.jwt")
    shared_body = r.obj(spec, "sharedSecret", "spec")
    r.unknown(shared_body, RELATIONSHIP_FIELDS["sharedSecret"], "spec.sharedSecret")
    mtls = r.boolean(mtls_body, "enabled", "spec.mtls", True)
    jwt = r.boolean(jwt_body, "enabled", "spec.jwt", True)
    roles = r.strings(jwt_body, "roles", "spec.jwt")
    audience = r.string(jwt_body, "audience", "spec.jwt")
    scopes = r.strings(jwt_body, "scopes", "spec.jwt")
    shared_secret = r.boolean(shared_body, "enabled", "spec.sharedSecret", False)
    if shared_secret and len(name) > MAX_OWNER_NAME:
        r.fail("metadata.name", _owner_name_problem(name, "trustwire.io/relationship") +
               " (of the shared Secret spec.sharedSecret.enabled asks for)")
    if r.problems:
        raise SpecError(r.problems)
    return TrustRelationship(namespace=namespace, name=name, between=(refs[0], refs[1]), initiator=initiator,
                             mtls=mtls, jwt=jwt, roles=roles, audience=audience, scopes=scopes,
                             shared_secret=shared_secret)
