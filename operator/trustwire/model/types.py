"""The typed model of both resources: frozen dataclasses and enums, built only by the parsers."""

from __future__ import annotations

import dataclasses
import enum
from datetime import timedelta

from trustwire.model.issuer import discovery_url
from trustwire.pki import HmacAlgorithm, JwtAlgorithm, KeyAlgorithm

GROUP = "trustwire.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

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


class RolloutMode(enum.StrEnum):
    """What a workload does when its mounted material changes."""

    #: the pod template's material hash changes, so the workload controller rolls the pods
    RESTART = "Restart"
    #: nothing is rolled: the kubelet updates the mounted files and the application reloads them
    IN_PLACE = "InPlace"


class DeletionPolicy(enum.StrEnum):
    RETAIN = "Retain"
    DELETE = "Delete"


class SecretEncoding(enum.StrEnum):
    """How a shared secret's random bytes are written into the mounted file and templates."""

    BASE64URL = "base64url"
    HEX = "hex"
    RAW = "raw"



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
    #: the asymmetric algorithm; unused when ``hmac`` is set
    algorithm: JwtAlgorithm = JwtAlgorithm.ES256
    #: ``spec.jwt.algorithm`` when it names a symmetric algorithm (the key never leaves the identity)
    hmac: HmacAlgorithm | None = None
    rotation_period: timedelta = timedelta(hours=720)
    revoked_kids: tuple[str, ...] = ()
    issuer: str | None = None
    #: the identity is an OpenID Connect issuer: ``issuer`` is an https URL served by discovery
    discovery: bool = False


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
    rollout: RolloutMode = RolloutMode.RESTART


@dataclasses.dataclass(frozen=True)
class SecretTemplate:
    """Labels and annotations the user wants on every Secret of the identity (for Velero,
    Kyverno, Reloader and the like), beside trustwire's own."""

    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()


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
    secret_template: SecretTemplate = SecretTemplate()
    #: spec.enrollment.enabled: an enrollment CA of its own signs external applications
    enrollment: bool = False

    @property
    def spiffe_id(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sid/{self.name}"

    @property
    def issuer(self) -> str:
        return self.jwt.issuer or self.spiffe_id

    @property
    def discovery_url(self) -> str | None:
        """Where validators find this identity's OIDC discovery document, when it is an issuer."""
        return discovery_url(self.issuer) if self.jwt.enabled and self.jwt.discovery else None

    @property
    def all_dns_names(self) -> tuple[str, ...]:
        """Default SANs for the service name first, then the extra names, without repeats."""
        svc, ns = self.service_name, self.namespace
        names = [svc, f"{svc}.{ns}", f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.cluster.local", *self.dns_names]
        return tuple(dict.fromkeys(names))

    @property
    def restarts(self) -> bool:
        """Whether a material change rolls some workload: a rotation waits for that rollout."""
        return any(w.rollout is RolloutMode.RESTART for w in self.workloads)

    @property
    def reloads_in_place(self) -> bool:
        """Whether a workload takes changes from the kubelet's file updates: a rotation waits
        the propagation delay for those, there being no rollout to see."""
        return any(w.rollout is RolloutMode.IN_PLACE for w in self.workloads)

    def accepts(self, namespace: str) -> bool:
        """Whether a relationship declared in ``namespace`` may name this identity."""
        return namespace == self.namespace or "*" in self.accept_from or namespace in self.accept_from


@dataclasses.dataclass(frozen=True)
class IdentityRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class BundleKind(enum.StrEnum):
    CONFIGMAP = "ConfigMap"
    SECRET = "Secret"  # noqa: S105 - an enum value, not a password


@dataclasses.dataclass(frozen=True)
class BundleRef:
    """Where certificates given by a user live: one key of a ConfigMap or Secret."""

    kind: BundleKind
    name: str
    key: str


@dataclasses.dataclass(frozen=True)
class ExternalPeer:
    """A member outside the cluster, known only by the CA certificate(s) it presents."""

    name: str
    ca_bundle: BundleRef
    #: its position in ``spec.between`` (for messages naming the field)
    index: int
    #: SHA-256 fingerprints it confirmed installing (the ``external-confirmed`` annotation)
    confirmed: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class ExternalIssuer:
    """A member outside the cluster that issues tokens (an OpenID Connect issuer such as
    Keycloak), known by its issuer URL and the CA its https server presents."""

    url: str
    ca_bundle: BundleRef
    #: its position in ``spec.between`` (for messages naming the field)
    index: int
    #: what its tokens must carry for the identity (the relationship's ``audience``/``scopes``)
    audience: str | None = None
    scopes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class SharedSecretSpec:
    encoding: SecretEncoding = SecretEncoding.BASE64URL
    client_id: str | None = None
    #: relationships of one namespace naming the same group share one secret
    group: str | None = None
    #: how long the previous value stays published after a rotation on demand
    grace_period: timedelta = timedelta(hours=1)


@dataclasses.dataclass(frozen=True)
class TrustRelationship:
    namespace: str
    name: str
    #: the in-cluster identities: two, or one beside an external member
    between: tuple[IdentityRef, ...]
    initiator: IdentityRef | None
    mtls: bool
    jwt: bool
    roles: tuple[str, ...]
    audience: str | None
    scopes: tuple[str, ...]
    shared_secret: SharedSecretSpec | None
    external: ExternalPeer | None = None
    #: an external token issuer beside the one identity (it is the initiator: its tokens are sent
    #: to the identity, which checks its audience and scopes)
    issuer: ExternalIssuer | None = None

    def peer_of(self, ref: IdentityRef) -> IdentityRef | None:
        """The other in-cluster identity (None beside an external member)."""
        if ref not in self.between or len(self.between) != 2:
            return None
        a, b = self.between
        return b if ref == a else a

    @property
    def members(self) -> str:
        """Both members for messages: ``ns/a and ns/b`` or ``ns/a and external peer x``."""
        outside = [f"external peer {self.external.name}"] if self.external is not None else []
        outside += [f"issuer {self.issuer.url}"] if self.issuer is not None else []
        return " and ".join([*(str(ref) for ref in self.between), *outside])

    @property
    def external_ref(self) -> IdentityRef | None:
        """The external member as a peer: named in the relationship's namespace."""
        return IdentityRef(self.namespace, self.external.name) if self.external is not None else None

    @property
    def issuer_ref(self) -> IdentityRef | None:
        """The external issuer as a peer: named after the relationship, in its namespace."""
        return IdentityRef(self.namespace, self.name) if self.issuer is not None else None

    @property
    def outside(self) -> bool:
        """Whether one member is outside the cluster (reports nothing a rotation could wait on)."""
        return self.external is not None or self.issuer is not None

    def sends_to(self, sender: IdentityRef) -> bool:
        """Whether ``sender`` opens connections / sends tokens to its peer."""
        return self.initiator is None or self.initiator == sender



@dataclasses.dataclass(frozen=True)
class Subject:
    """The distinguished name an enrolled application's CSR must carry, exactly."""

    common_name: str
    organization: tuple[str, ...] = ()
    organizational_unit: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Enrollment:
    """One external application that enrols with a one-time token and renews with its certificate."""

    namespace: str
    name: str
    identity: str
    subject: Subject
    token_ttl: timedelta
    certificate_duration: timedelta
    revoked: bool
