"""Parse a ServiceIdentity body into a validated :class:`ServiceIdentity`.

One small parser per spec section, each returning a typed value and reporting its problems
to the shared :class:`Reader`; :func:`parse_identity` composes them in field order, so the
problems of a SpecError read in the order of the spec.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from trustwire.model.durations import format_duration
from trustwire.model.errors import SpecError
from trustwire.model.fields import IDENTITY_FIELDS
from trustwire.model.issuer import issuer_url_problem
from trustwire.model.limits import (
    MAX_DNS_NAMES,
    MAX_INLINE_TEMPLATE,
    MAX_NAME_LENGTH,
    MAX_OWNER_NAME,
    MAX_TEMPLATE_METADATA,
    MAX_TEMPLATES,
    MAX_WORKLOADS,
)
from trustwire.model.reader import Reader, metadata
from trustwire.model.text import owner_name_problem, quote, type_name
from trustwire.model.types import (
    CASource,
    CASpec,
    CertificateSpec,
    DeletionPolicy,
    JwtSpec,
    KeystoreFormat,
    KeystoreSpec,
    RolloutMode,
    SecretKeyRef,
    SecretTemplate,
    ServiceIdentity,
    TemplateSpec,
    WorkloadKind,
    WorkloadRef,
)
from trustwire.names import IDENTITY_LABEL, MANAGED_BY, MOUNTED_KEYS, SHARED_SECRET_PREFIX, TRUSTWIRE_PREFIX
from trustwire.pki import HmacAlgorithm, JwtAlgorithm, KeyAlgorithm

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_NAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
_TRUST_DOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$")
_DEFAULT_TRUST_DOMAIN = "cluster.local"
#: the name part of a label or annotation key, and a label value (Kubernetes' own rules)
_QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DEFAULT_MOUNT_PATH = "/var/run/trustwire"



def parse_identity(body: Mapping[str, Any]) -> ServiceIdentity:
    """Parse and validate a ServiceIdentity body; raises :class:`SpecError` naming every bad field."""
    namespace, name = metadata(body)
    spec = body.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise SpecError([("spec", f"must be an object, got {type_name(spec)}")])
    r = Reader()
    r.unknown(spec, IDENTITY_FIELDS, "spec")
    _check_metadata(r, namespace, name)
    service_name = _parse_service_name(r, spec, name)
    dns_names = _parse_dns_names(r, spec)
    trust_domain = _parse_trust_domain(r, spec)
    ca = _parse_ca(r, spec)
    certificate = _parse_certificate(r, spec)
    jwt = _parse_jwt(r, spec)
    keystores = _parse_keystores(r, spec)
    workloads = _parse_workloads(r, spec)
    mount_path = _parse_mount_path(r, spec)
    templates = _parse_templates(r, spec)
    accept_body = r.section(spec, "acceptFrom", "spec", IDENTITY_FIELDS["acceptFrom"])
    accept_from = r.strings(accept_body, "namespaces", "spec.acceptFrom")
    deletion_policy = r.enum(spec, "deletionPolicy", "spec", DeletionPolicy, DeletionPolicy.RETAIN)
    secret_template = _parse_secret_template(r, spec)
    enrollment_body = r.section(spec, "enrollment", "spec", IDENTITY_FIELDS["enrollment"])
    enrollment = r.boolean(enrollment_body, "enabled", "spec.enrollment", False)
    r.raise_problems()
    return ServiceIdentity(
        namespace=namespace, name=name, service_name=service_name, dns_names=dns_names,
        trust_domain=trust_domain, ca=ca, certificate=certificate, jwt=jwt, keystores=keystores,
        workloads=workloads, mount_path=mount_path, templates=templates,
        accept_from=accept_from, deletion_policy=deletion_policy, secret_template=secret_template,
        enrollment=enrollment,
    )


def _is_dns_label(text: str) -> bool:
    return bool(_DNS_LABEL.match(text)) and len(text) <= 63


def _check_metadata(r: Reader, namespace: str, name: str) -> None:
    if not _is_dns_label(namespace):
        # a real API server guarantees this; the name becomes part of every default DNS SAN
        r.fail("metadata.namespace", f"{quote(namespace)} is not a DNS-1123 label")
    if len(name) > MAX_OWNER_NAME:
        r.fail("metadata.name", owner_name_problem(name, IDENTITY_LABEL))


def _parse_service_name(r: Reader, spec: Mapping[str, Any], name: str) -> str:
    given = r.string(spec, "serviceName", "spec")
    service_name = given or name
    # a service name defaulted from a name that is too long is reported once, as metadata.name
    if (given or len(name) <= MAX_OWNER_NAME) and not _is_dns_label(service_name):
        r.fail("spec.serviceName",
               f"{quote(service_name)} is not a DNS-1123 label (lowercase a-z, 0-9, '-', at most 63)")
    return service_name


def _parse_dns_names(r: Reader, spec: Mapping[str, Any]) -> tuple[str, ...]:
    dns_names = r.strings(spec, "dnsNames", "spec", max_items=MAX_DNS_NAMES)
    for i, dns in enumerate(dns_names):
        if not _DNS_NAME.match(dns):
            r.fail(f"spec.dnsNames[{i}]", f"{quote(dns)} is not a DNS name (lowercase labels separated by dots)")
    return dns_names


def _parse_trust_domain(r: Reader, spec: Mapping[str, Any]) -> str:
    trust_domain = r.string(spec, "trustDomain", "spec", default=_DEFAULT_TRUST_DOMAIN) or _DEFAULT_TRUST_DOMAIN
    if not _TRUST_DOMAIN.match(trust_domain):
        r.fail("spec.trustDomain",
               f"{quote(trust_domain)} is not a valid SPIFFE trust domain (lowercase a-z, 0-9, '.', '-', '_')")
    return trust_domain


def _parse_ca(r: Reader, spec: Mapping[str, Any]) -> CASpec:
    fields = IDENTITY_FIELDS["ca"]
    body = r.section(spec, "ca", "spec", fields)
    source = r.enum(body, "source", "spec.ca", CASource, CASource.SELF_SIGNED)
    secret_ref = r.section(body, "secretRef", "spec.ca", fields["secretRef"])
    secret = r.string(secret_ref, "name", "spec.ca.secretRef")
    if source is CASource.SECRET and not secret:
        r.fail("spec.ca.secretRef.name", "is required when spec.ca.source is Secret")
    return CASpec(
        source=source,
        secret_name=secret if source is CASource.SECRET else None,
        key_algorithm=r.enum(body, "keyAlgorithm", "spec.ca", KeyAlgorithm, KeyAlgorithm.ECDSAP256),
        duration=r.duration(body, "duration", "spec.ca", timedelta(hours=8760)),
    )


def _parse_certificate(r: Reader, spec: Mapping[str, Any]) -> CertificateSpec:
    body = r.section(spec, "certificate", "spec", IDENTITY_FIELDS["certificate"])
    certificate = CertificateSpec(
        key_algorithm=r.enum(body, "keyAlgorithm", "spec.certificate", KeyAlgorithm, KeyAlgorithm.ECDSAP256),
        duration=r.duration(body, "duration", "spec.certificate", timedelta(hours=720)),
        renew_before=r.duration(body, "renewBefore", "spec.certificate", timedelta(hours=240)),
    )
    if certificate.renew_before >= certificate.duration:
        r.fail("spec.certificate.renewBefore",
               f"{format_duration(certificate.renew_before)} must be shorter than spec.certificate.duration "
               f"({format_duration(certificate.duration)})")
    return certificate


def _parse_jwt(r: Reader, spec: Mapping[str, Any]) -> JwtSpec:
    body = r.section(spec, "jwt", "spec", IDENTITY_FIELDS["jwt"])
    algorithm, hmac = _parse_jwt_algorithm(r, body)
    jwt = JwtSpec(
        enabled=r.boolean(body, "enabled", "spec.jwt", True),
        algorithm=algorithm, hmac=hmac,
        rotation_period=r.duration(body, "rotationPeriod", "spec.jwt", timedelta(hours=720)),
        revoked_kids=r.strings(body, "revokedKids", "spec.jwt"),
        issuer=r.string(body, "issuer", "spec.jwt"),
        discovery=r.boolean(body, "discovery", "spec.jwt", False),
    )
    if jwt.discovery:
        # validators compare iss with the discovery document's issuer: it must be a URL they can fetch
        problem = "is required with spec.jwt.discovery: an https URL" if jwt.issuer is None \
            else issuer_url_problem(jwt.issuer)
        if problem:
            r.fail("spec.jwt.issuer", problem)
    return jwt


def _parse_jwt_algorithm(r: Reader, body: Mapping[str, Any]) -> tuple[JwtAlgorithm, HmacAlgorithm | None]:
    """``spec.jwt.algorithm``: an asymmetric algorithm, or a symmetric one (HS256/HS384/HS512)."""
    value = body.get("algorithm")
    if value is None:
        return JwtAlgorithm.ES256, None
    if isinstance(value, str) and value in set(HmacAlgorithm):
        return JwtAlgorithm.ES256, HmacAlgorithm(value)
    if isinstance(value, str) and value in set(JwtAlgorithm):
        return JwtAlgorithm(value), None
    allowed = ", ".join([*JwtAlgorithm, *HmacAlgorithm])
    r.fail("spec.jwt.algorithm", f"{quote(value)} is not supported; allowed values are {allowed}")
    return JwtAlgorithm.ES256, None


def _parse_keystores(r: Reader, spec: Mapping[str, Any]) -> KeystoreSpec:
    body = r.section(spec, "keystores", "spec", IDENTITY_FIELDS["keystores"])
    formats = _parse_keystore_formats(r, body)
    password_secret = _parse_password_ref(r, body)
    return KeystoreSpec(
        formats=formats,
        password_secret=password_secret,
        legacy_pkcs12=r.boolean(body, "legacyPKCS12", "spec.keystores", False),
    )


def _parse_keystore_formats(r: Reader, body: Mapping[str, Any]) -> tuple[KeystoreFormat, ...]:
    given = r.array(body, "formats", "spec.keystores", 2) if "formats" in body else [KeystoreFormat.PKCS12.value]
    formats: list[KeystoreFormat] = []
    for i, fmt in enumerate(given):
        try:
            formats.append(KeystoreFormat(fmt))
        except ValueError:
            r.fail(f"spec.keystores.formats[{i}]", f"{quote(fmt)} is not supported; allowed values are PKCS12, JKS")
    return tuple(dict.fromkeys(formats))


def _parse_password_ref(r: Reader, body: Mapping[str, Any]) -> SecretKeyRef | None:
    path = "spec.keystores.passwordSecretRef"
    ref = r.section(body, "passwordSecretRef", "spec.keystores", IDENTITY_FIELDS["keystores"]["passwordSecretRef"])
    if not ref:
        return None
    name = r.string(ref, "name", path)
    if not name:
        r.fail(f"{path}.name", "is required")
        return None
    key = r.string(ref, "key", path, default="password")
    return SecretKeyRef(name, key or "password")


def _parse_workloads(r: Reader, spec: Mapping[str, Any]) -> tuple[WorkloadRef, ...]:
    workloads: list[WorkloadRef] = []
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(r.array(spec, "workloads", "spec", MAX_WORKLOADS)):
        workload = _parse_workload(r, item, f"spec.workloads[{i}]", seen)
        if workload is not None:
            workloads.append(workload)
    return tuple(workloads)


def _parse_workload(r: Reader, value: Any, path: str, seen: set[tuple[str, str]]) -> WorkloadRef | None:
    item = r.element(value, path, IDENTITY_FIELDS["workloads"][0])
    if item is None:
        return None
    if item.get("kind") is None:
        r.fail(f"{path}.kind", "is required; allowed values are Deployment, StatefulSet, DaemonSet")
    kind = r.enum(item, "kind", path, WorkloadKind, WorkloadKind.DEPLOYMENT)
    name = r.string(item, "name", path)
    if not name:
        r.fail(f"{path}.name", "is required")
        return None
    if (kind, name) in seen:
        r.fail(path, f"{kind} {quote(name)} is listed twice")
    seen.add((kind, name))
    rollout = r.enum(item, "rollout", path, RolloutMode, RolloutMode.RESTART)
    return WorkloadRef(kind, name, r.strings(item, "containers", path), rollout)


def _parse_mount_path(r: Reader, spec: Mapping[str, Any]) -> str:
    mount_path = r.string(spec, "mountPath", "spec", default=_DEFAULT_MOUNT_PATH) or _DEFAULT_MOUNT_PATH
    if not mount_path.startswith("/") or ":" in mount_path or ".." in mount_path.split("/"):
        r.fail("spec.mountPath", f"{quote(mount_path)} must be an absolute path without '..' or ':'")
    return mount_path.rstrip("/") or "/"


def _parse_templates(r: Reader, spec: Mapping[str, Any]) -> tuple[TemplateSpec, ...]:
    templates: list[TemplateSpec] = []
    seen: set[str] = set()
    for i, value in enumerate(r.array(spec, "templates", "spec", MAX_TEMPLATES)):
        path = f"spec.templates[{i}]"
        item = r.element(value, path, IDENTITY_FIELDS["templates"][0])
        if item is None:
            continue
        name = r.string(item, "name", path)
        problem = _template_name_problem(name, seen)
        if problem or name is None:
            r.fail(f"{path}.name", problem)
            continue
        seen.add(name)
        template = _parse_template_source(r, item, path, name)
        if template is not None:
            templates.append(template)
    return tuple(templates)


def _template_name_problem(name: str | None, seen: set[str]) -> str:
    """Why a template name cannot be a file in the mounted directory, or ``""`` when it can."""
    if not name or not _TEMPLATE_NAME.match(name):
        return "is required: a file name of letters, digits, '.', '_' or '-'"
    if name == "." or name.startswith(".."):
        return f"{quote(name)} is no Secret key: '.', '..' and names starting with '..' are refused by the API"
    if name in MOUNTED_KEYS or name.startswith(SHARED_SECRET_PREFIX):
        return f"{quote(name)} collides with a file trustwire writes; choose another name"
    if name in seen:
        return f"{quote(name)} is used by two templates"
    return ""


def _parse_template_source(r: Reader, item: Mapping[str, Any], path: str, name: str) -> TemplateSpec | None:
    inline = r.string(item, "inline", path, max_length=MAX_INLINE_TEMPLATE)
    cm_body = r.section(item, "configMapRef", path, IDENTITY_FIELDS["templates"][0]["configMapRef"])
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
        return None
    return TemplateSpec(name, inline, cm_ref)


def _parse_secret_template(r: Reader, spec: Mapping[str, Any]) -> SecretTemplate:
    body = r.section(spec, "secretTemplate", "spec", IDENTITY_FIELDS["secretTemplate"])
    labels = _metadata_map(r, body, "labels", label_values=True)
    annotations = _metadata_map(r, body, "annotations", label_values=False)
    return SecretTemplate(labels, annotations)


def _metadata_map(r: Reader, body: Mapping[str, Any], key: str, *, label_values: bool) -> tuple[tuple[str, str], ...]:
    path = f"spec.secretTemplate.{key}"
    entries = r.obj(body, key, "spec.secretTemplate")
    if len(entries) > MAX_TEMPLATE_METADATA:
        r.fail(path, f"has {len(entries)} entries; at most {MAX_TEMPLATE_METADATA} allowed")
        return ()
    out: list[tuple[str, str]] = []
    for name, value in sorted(entries.items()):
        problem = _metadata_key_problem(name) or _metadata_value_problem(value, label_values)
        if problem:
            r.fail(f"{path}[{quote(name)}]", problem)
        else:
            out.append((name, value))
    return tuple(out)


def _metadata_key_problem(name: str) -> str:
    """Kubernetes' rule for label and annotation keys, and the keys trustwire keeps for itself."""
    prefix, _, local = name.rpartition("/")
    if not _QUALIFIED_NAME.match(local) or len(local) > MAX_OWNER_NAME:
        return ("is not a valid key: an optional DNS-subdomain prefix and '/', then at most 63 characters "
                "of a-z, A-Z, 0-9, '-', '_', '.', starting and ending alphanumeric")
    if prefix and (len(prefix) > MAX_NAME_LENGTH or not _DNS_NAME.match(prefix) or prefix.startswith("*")):
        return "has a prefix that is not a DNS subdomain (lowercase labels separated by dots)"
    if name == MANAGED_BY or prefix == TRUSTWIRE_PREFIX or prefix.endswith("." + TRUSTWIRE_PREFIX):
        return f"is trustwire's own key; keys under {TRUSTWIRE_PREFIX}/ and {MANAGED_BY} are not allowed"
    return ""


def _metadata_value_problem(value: Any, label_value: bool) -> str:
    if not isinstance(value, str):
        return f"must be a string, got {type_name(value)}"
    if label_value and value and (len(value) > MAX_OWNER_NAME or not _QUALIFIED_NAME.match(value)):
        return ("is not a valid label value: at most 63 characters of a-z, A-Z, 0-9, '-', '_', '.', "
                "starting and ending alphanumeric (or empty)")
    if not label_value and len(value) > MAX_INLINE_TEMPLATE:
        return f"is {len(value)} characters long; at most {MAX_INLINE_TEMPLATE} allowed"
    return ""
