"""Parse a TrustRelationship body into a validated :class:`TrustRelationship`."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

from trustwire.model.errors import SpecError
from trustwire.model.fields import RELATIONSHIP_FIELDS
from trustwire.model.issuer import issuer_url_problem
from trustwire.model.limits import MAX_OWNER_NAME
from trustwire.model.reader import Reader, metadata
from trustwire.model.text import owner_name_problem, quote, type_name
from trustwire.model.types import (
    BundleKind,
    BundleRef,
    ExternalIssuer,
    ExternalPeer,
    IdentityRef,
    SecretEncoding,
    SharedSecretSpec,
    TrustRelationship,
)
from trustwire.names import EXTERNAL_CONFIRMED_ANNOTATION, RELATIONSHIP_LABEL

_GROUP = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_CLIENT_ID = 253
_CLIENT_ID = re.compile(rf"^[\x21-\x7e]{{1,{MAX_CLIENT_ID}}}$")


def parse_relationship(body: Mapping[str, Any]) -> TrustRelationship:
    """Parse and validate a TrustRelationship body; raises :class:`SpecError`."""
    namespace, name = metadata(body)
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        raise SpecError([("spec", "is required: an object with 'between' naming two members")])
    r = Reader()
    r.unknown(spec, RELATIONSHIP_FIELDS, "spec")
    refs, external, issuer = _parse_between(r, spec, namespace, _confirmed(body))
    initiator = _parse_initiator(r, spec, namespace, refs, external)
    mtls_body = r.section(spec, "mtls", "spec", RELATIONSHIP_FIELDS["mtls"])
    jwt_body = r.section(spec, "jwt", "spec", RELATIONSHIP_FIELDS["jwt"])
    shared_body = r.section(spec, "sharedSecret", "spec", RELATIONSHIP_FIELDS["sharedSecret"])
    mtls = r.boolean(mtls_body, "enabled", "spec.mtls", True)
    jwt = r.boolean(jwt_body, "enabled", "spec.jwt", True)
    roles = r.strings(jwt_body, "roles", "spec.jwt")
    audience = r.string(jwt_body, "audience", "spec.jwt")
    scopes = r.strings(jwt_body, "scopes", "spec.jwt")
    shared_secret = _parse_shared_secret(r, shared_body, name)
    if shared_secret is not None and external is not None:
        r.fail("spec.sharedSecret.enabled", f"cannot be true beside external member {external.name}: trustwire "
                                            "delivers shared secrets to identities in the cluster only")
    if issuer is not None:
        _beside_issuer(r, spec, jwt_body, shared_secret)
        mtls, initiator = False, IdentityRef(namespace, name)
        audience, scopes = issuer.audience, issuer.scopes
    r.raise_problems()
    return TrustRelationship(namespace=namespace, name=name, between=tuple(refs), initiator=initiator,
                             mtls=mtls, jwt=jwt, roles=roles, audience=audience, scopes=scopes,
                             shared_secret=shared_secret, external=external, issuer=issuer)


def _beside_issuer(r: Reader, spec: Mapping[str, Any], jwt_body: Mapping[str, Any],
                   shared_secret: SharedSecretSpec | None) -> None:
    """An issuer only sends tokens to the identity: no secret, no other direction (``spec.mtls``
    does not apply: it presents no certificate, and the schema defaults ``enabled`` to true)."""
    why = "beside an issuer member: an issuer only signs tokens the identity verifies"
    if jwt_body.get("enabled") is False:
        r.fail("spec.jwt.enabled", f"cannot be false {why}; its keys are all the relationship delivers")
    for field in ("audience", "scopes"):
        if field in jwt_body:
            r.fail(f"spec.jwt.{field}", f"is set on the issuer member {why} (use spec.between[].issuer.{field})")
    if spec.get("initiator"):
        r.fail("spec.initiator", f"must be omitted {why}: its tokens always go to the identity")
    if shared_secret is not None:
        r.fail("spec.sharedSecret.enabled", f"cannot be true {why}: trustwire delivers shared secrets to "
                                            "identities in the cluster only")


def _parse_shared_secret(r: Reader, body: Mapping[str, Any], name: str) -> SharedSecretSpec | None:
    """``spec.sharedSecret``; ``None`` unless enabled."""
    path = "spec.sharedSecret"
    if not r.boolean(body, "enabled", path, False):
        return None
    group = r.string(body, "group", path)
    if group is not None and not (_GROUP.match(group) and len(group) <= MAX_OWNER_NAME):
        r.fail(f"{path}.group", f"{quote(group)} must be a DNS label (lowercase letters, digits and '-', "
                                f"at most {MAX_OWNER_NAME} characters): it names the group's Secret and files")
    if group is None and len(name) > MAX_OWNER_NAME:
        r.fail("metadata.name", owner_name_problem(name, RELATIONSHIP_LABEL) +
               " (of the shared Secret spec.sharedSecret.enabled asks for)")
    client_id = r.string(body, "clientId", path)
    if client_id is not None and not _CLIENT_ID.match(client_id):
        r.fail(f"{path}.clientId", f"{quote(client_id)} must be 1 to {MAX_CLIENT_ID} printable ASCII characters "
                                   "without spaces (it is written into files and environment lines)")
    return SharedSecretSpec(
        encoding=r.enum(body, "encoding", path, SecretEncoding, SecretEncoding.BASE64URL),
        client_id=client_id, group=group,
        grace_period=r.duration(body, "gracePeriod", path, SharedSecretSpec.grace_period))


Member = IdentityRef | ExternalPeer | ExternalIssuer
#: what a member of ``spec.between`` may be, by the one key naming its kind
MemberParser = Callable[[Reader, Mapping[str, Any], str, str, int], Member | None]


def _identity_member(r: Reader, item: Mapping[str, Any], path: str, namespace: str, index: int) -> Member | None:
    ident = r.string(item, "identity", path)
    if not ident:
        r.fail(f"{path}.identity", "is required: the name of a ServiceIdentity")
        return None
    ns = r.string(item, "namespace", path, default=namespace) or namespace
    return IdentityRef(ns, ident)


def _external_member(r: Reader, item: Mapping[str, Any], path: str, namespace: str, index: int) -> Member | None:
    fields = RELATIONSHIP_FIELDS["between"][0]["external"]
    if "namespace" in item:
        r.fail(f"{path}.namespace", "applies to identity members only; an external member lives outside the cluster")
    body = r.section(item, "external", path, fields)
    path = f"{path}.external"
    name = r.string(body, "name", path)
    if not name:
        r.fail(f"{path}.name", "is required: a name for the party outside the cluster")
    ref = _bundle_ref(r, body, path, fields, "its CA certificate(s)")
    return ExternalPeer(name, ref, index) if name and ref is not None else None


def _bundle_ref(r: Reader, body: Mapping[str, Any], path: str, fields: Mapping[str, Any],
                holds: str) -> BundleRef | None:
    """A ``caBundleRef``: a key (default ``ca.crt``) of a ConfigMap (default) or Secret."""
    ref_body = r.section(body, "caBundleRef", path, fields["caBundleRef"])
    path = f"{path}.caBundleRef"
    kind = r.enum(ref_body, "kind", path, BundleKind, BundleKind.CONFIGMAP)
    bundle_name = r.string(ref_body, "name", path)
    key = r.string(ref_body, "key", path, default="ca.crt")
    if not bundle_name:
        r.fail(f"{path}.name", f"is required: the ConfigMap or Secret holding {holds}")
    if not key:
        r.fail(f"{path}.key", "must not be empty: the key holding the PEM bundle (default ca.crt)")
    return BundleRef(kind, bundle_name, key) if bundle_name and key else None


def _issuer_member(r: Reader, item: Mapping[str, Any], path: str, namespace: str, index: int) -> Member | None:
    fields = RELATIONSHIP_FIELDS["between"][0]["issuer"]
    if "namespace" in item:
        r.fail(f"{path}.namespace", "applies to identity members only; an issuer lives outside the cluster")
    body = r.section(item, "issuer", path, fields)
    path = f"{path}.issuer"
    url = r.string(body, "url", path)
    if not url:
        r.fail(f"{path}.url", "is required: the issuer identifier, e.g. https://keycloak.example.com/realms/acme")
    elif (problem := issuer_url_problem(url)) is not None:
        r.fail(f"{path}.url", problem)
    ref = _bundle_ref(r, body, path, fields, "the CA certificate(s) of the issuer's https server")
    audience, scopes = r.string(body, "audience", path), r.strings(body, "scopes", path)
    if not url or ref is None or issuer_url_problem(url) is not None:
        return None
    return ExternalIssuer(url, ref, index, audience, scopes)


MEMBER_KINDS: dict[str, MemberParser] = {"identity": _identity_member, "external": _external_member,
                                         "issuer": _issuer_member}


def _parse_member(r: Reader, value: Any, path: str, namespace: str, index: int) -> Member | None:
    item = r.element(value, path, RELATIONSHIP_FIELDS["between"][0],
                     expected="an object with 'identity'")
    if item is None:
        return None
    kinds = [k for k in MEMBER_KINDS if k in item]
    if len(kinds) > 1:
        r.fail(path, f"names {' and '.join(kinds)}; a member is exactly one of them")
        return None
    return MEMBER_KINDS[kinds[0] if kinds else "identity"](r, item, path, namespace, index)


def _parse_between(r: Reader, spec: Mapping[str, Any], namespace: str,
                   confirmed: frozenset[str]) -> tuple[list[IdentityRef], ExternalPeer | None, ExternalIssuer | None]:
    """The two members; a peer without a namespace lives in the relationship's own. At most
    one member is outside the cluster: trustwire acts only for the in-cluster side."""
    between = spec.get("between")
    if not isinstance(between, list) or len(between) != 2:
        got = f"{len(between)} items" if isinstance(between, list) else type_name(between)
        r.fail("spec.between", f"must list exactly two identities, got {got} (an external member may stand for one)")
        return [], None, None
    members = [_parse_member(r, value, f"spec.between[{i}]", namespace, i) for i, value in enumerate(between)]
    refs = [m for m in members if isinstance(m, IdentityRef)]
    externals = [m for m in members if isinstance(m, ExternalPeer)]
    issuers = [m for m in members if isinstance(m, ExternalIssuer)]
    if len(externals) + len(issuers) == 2:
        r.fail("spec.between", "names two members outside the cluster; at least one must be an identity in the cluster")
    if len(refs) == 2 and refs[0] == refs[1]:
        r.fail("spec.between[1]", f"names {refs[0]} twice; a relationship needs two different identities")
    external = dataclasses.replace(externals[0], confirmed=confirmed) if len(externals) == 1 else None
    return refs, external, issuers[0] if len(issuers) == 1 else None


def _confirmed(body: Mapping[str, Any]) -> frozenset[str]:
    """Fingerprints in the ``external-confirmed`` annotation (comma or space separated)."""
    meta = body.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    value = annotations.get(EXTERNAL_CONFIRMED_ANNOTATION) if isinstance(annotations, Mapping) else None
    if not isinstance(value, str):
        return frozenset()
    return frozenset(part.strip().lower().replace(":", "") for part in value.replace(",", " ").split() if part)


def _parse_initiator(r: Reader, spec: Mapping[str, Any], namespace: str, refs: list[IdentityRef],
                     external: ExternalPeer | None) -> IdentityRef | None:
    """The side that opens connections, by name or namespace/name; ``None`` means both do.
    An external member is named by its ``name`` and stands as a peer in the relationship's
    namespace."""
    initiator_name = r.string(spec, "initiator", "spec")
    members = [*refs, *([IdentityRef(namespace, external.name)] if external is not None else [])]
    if not initiator_name or len(members) != 2:
        return None
    matches = [ref for ref in members if initiator_name in (ref.name, str(ref))]
    if len(matches) != 1:
        r.fail("spec.initiator", f"{quote(initiator_name)} must name one of {members[0]} or {members[1]} "
                                 "(use namespace/name when both have the same name)")
        return None
    return matches[0]
