"""Parse a TrustRelationship body into a validated :class:`TrustRelationship`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from trustwire.model.errors import SpecError
from trustwire.model.fields import RELATIONSHIP_FIELDS
from trustwire.model.limits import MAX_OWNER_NAME
from trustwire.model.reader import Reader, metadata
from trustwire.model.text import owner_name_problem, quote, type_name
from trustwire.model.types import IdentityRef, SecretEncoding, SharedSecretSpec, TrustRelationship
from trustwire.names import RELATIONSHIP_LABEL

_GROUP = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_CLIENT_ID = 253
_CLIENT_ID = re.compile(rf"^[\x21-\x7e]{{1,{MAX_CLIENT_ID}}}$")


def parse_relationship(body: Mapping[str, Any]) -> TrustRelationship:
    """Parse and validate a TrustRelationship body; raises :class:`SpecError`."""
    namespace, name = metadata(body)
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        raise SpecError([("spec", "is required: an object with 'between' naming two identities")])
    r = Reader()
    r.unknown(spec, RELATIONSHIP_FIELDS, "spec")
    refs = _parse_between(r, spec, namespace)
    initiator = _parse_initiator(r, spec, refs)
    mtls_body = r.section(spec, "mtls", "spec", RELATIONSHIP_FIELDS["mtls"])
    jwt_body = r.section(spec, "jwt", "spec", RELATIONSHIP_FIELDS["jwt"])
    shared_body = r.section(spec, "sharedSecret", "spec", RELATIONSHIP_FIELDS["sharedSecret"])
    mtls = r.boolean(mtls_body, "enabled", "spec.mtls", True)
    jwt = r.boolean(jwt_body, "enabled", "spec.jwt", True)
    roles = r.strings(jwt_body, "roles", "spec.jwt")
    audience = r.string(jwt_body, "audience", "spec.jwt")
    scopes = r.strings(jwt_body, "scopes", "spec.jwt")
    shared_secret = _parse_shared_secret(r, shared_body, name)
    r.raise_problems()
    return TrustRelationship(namespace=namespace, name=name, between=(refs[0], refs[1]), initiator=initiator,
                             mtls=mtls, jwt=jwt, roles=roles, audience=audience, scopes=scopes,
                             shared_secret=shared_secret)


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


def _parse_between(r: Reader, spec: Mapping[str, Any], namespace: str) -> list[IdentityRef]:
    """The two identities; a peer without a namespace lives in the relationship's own."""
    between = spec.get("between")
    if not isinstance(between, list) or len(between) != 2:
        got = f"{len(between)} items" if isinstance(between, list) else type_name(between)
        r.fail("spec.between", f"must list exactly two identities, got {got}")
        return []
    refs: list[IdentityRef] = []
    for i, value in enumerate(between):
        path = f"spec.between[{i}]"
        item = r.element(value, path, RELATIONSHIP_FIELDS["between"][0], expected="an object with 'identity'")
        if item is None:
            continue
        ident = r.string(item, "identity", path)
        if not ident:
            r.fail(f"{path}.identity", "is required: the name of a ServiceIdentity")
            continue
        ns = r.string(item, "namespace", path, default=namespace) or namespace
        refs.append(IdentityRef(ns, ident))
    if len(refs) == 2 and refs[0] == refs[1]:
        r.fail("spec.between[1]", f"names {refs[0]} twice; a relationship needs two different identities")
    return refs


def _parse_initiator(r: Reader, spec: Mapping[str, Any], refs: list[IdentityRef]) -> IdentityRef | None:
    """The side that opens connections, by name or namespace/name; ``None`` means both do."""
    initiator_name = r.string(spec, "initiator", "spec")
    if not initiator_name or len(refs) != 2:
        return None
    matches = [ref for ref in refs if initiator_name in (ref.name, str(ref))]
    if len(matches) != 1:
        r.fail("spec.initiator", f"{quote(initiator_name)} must name one of {refs[0]} or {refs[1]} "
                                 "(use namespace/name when both have the same name)")
        return None
    return matches[0]
