"""Parse a TrustRelationship body into a validated :class:`TrustRelationship`."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

from trustwire.model.errors import SpecError
from trustwire.model.fields import RELATIONSHIP_FIELDS
from trustwire.model.limits import MAX_OWNER_NAME
from trustwire.model.reader import Reader, metadata
from trustwire.model.text import owner_name_problem, quote, type_name
from trustwire.model.types import (
    BundleKind,
    BundleRef,
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
    refs, external = _parse_between(r, spec, namespace, _confirmed(body))
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
    r.raise_problems()
    return TrustRelationship(namespace=namespace, name=name, between=tuple(refs), initiator=initiator,
                             mtls=mtls, jwt=jwt, roles=roles, audience=audience, scopes=scopes,
                             shared_secret=shared_secret, external=external)


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


Member = IdentityRef | ExternalPeer
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
    ref_body = r.section(body, "caBundleRef", path, fields["caBundleRef"])
    kind = r.enum(ref_body, "kind", f"{path}.caBundleRef", BundleKind, BundleKind.CONFIGMAP)
    bundle_name = r.string(ref_body, "name", f"{path}.caBundleRef")
    key = r.string(ref_body, "key", f"{path}.caBundleRef", default="ca.crt")
    if not name:
        r.fail(f"{path}.name", "is required: a name for the party outside the cluster")
    if not bundle_name:
        r.fail(f"{path}.caBundleRef.name", "is required: the ConfigMap or Secret holding its CA certificate(s)")
    if not key:
        r.fail(f"{path}.caBundleRef.key", "must not be empty: the key holding the PEM bundle (default ca.crt)")
    if not name or not bundle_name or not key:
        return None
    return ExternalPeer(name, BundleRef(kind, bundle_name, key), index)


MEMBER_KINDS: dict[str, MemberParser] = {"identity": _identity_member, "external": _external_member}


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
                   confirmed: frozenset[str]) -> tuple[list[IdentityRef], ExternalPeer | None]:
    """The two members; a peer without a namespace lives in the relationship's own. At most
    one member is outside the cluster: trustwire acts only for the in-cluster side."""
    between = spec.get("between")
    if not isinstance(between, list) or len(between) != 2:
        got = f"{len(between)} items" if isinstance(between, list) else type_name(between)
        r.fail("spec.between", f"must list exactly two identities, got {got} (an external member may stand for one)")
        return [], None
    members = [_parse_member(r, value, f"spec.between[{i}]", namespace, i) for i, value in enumerate(between)]
    refs = [m for m in members if isinstance(m, IdentityRef)]
    externals = [m for m in members if isinstance(m, ExternalPeer)]
    if len(externals) == 2:
        r.fail("spec.between", "names two external members; at least one must be an identity in the cluster")
    if len(refs) == 2 and refs[0] == refs[1]:
        r.fail("spec.between[1]", f"names {refs[0]} twice; a relationship needs two different identities")
    external = dataclasses.replace(externals[0], confirmed=confirmed) if len(externals) == 1 else None
    return refs, external


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
