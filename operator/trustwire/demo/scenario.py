"""What an examples directory declares, turned into the proofs that must hold for it.

Every TrustRelationship yields mTLS proofs in the directions it allows (only the
initiator connects when it names one, both ways otherwise), JWT proofs where JWT is on
(the sender signs, the receiver verifies with the relationship's audience and roles) and a
shared-secret proof where one is on (one per group: every member holds its value); every
template of every ServiceIdentity must be rendered, and a symmetric JWT key must verify and
be in no other identity's files. The demo runs exactly these, so it proves any example, not
one fixed pair.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from trustwire.demo.proofs import (
    Proof,
    prove_hmac_key,
    prove_jwt,
    prove_mtls,
    prove_shared_group,
    prove_shared_secret,
    prove_template,
)
from trustwire.model import (
    IdentityRef,
    SecretEncoding,
    ServiceIdentity,
    TrustRelationship,
    parse_identity,
    parse_relationship,
)


@dataclasses.dataclass(frozen=True)
class Scenario:
    identities: Mapping[IdentityRef, ServiceIdentity]
    relationships: tuple[TrustRelationship, ...]


def scenario(docs: Sequence[Mapping[str, Any]]) -> Scenario:
    """The identities and relationships among ``docs``, parsed as the operator parses them."""
    identities = {}
    for doc in docs:
        if doc.get("kind") == "ServiceIdentity":
            ident = parse_identity(doc)
            identities[IdentityRef(ident.namespace, ident.name)] = ident
    relationships = tuple(parse_relationship(d) for d in docs if d.get("kind") == "TrustRelationship")
    return Scenario(identities, relationships)


def _relationship_proofs(rel: TrustRelationship, s: Scenario, mounts: Mapping[IdentityRef, Path],
                         now: datetime) -> list[Proof]:
    label = f"{rel.namespace}/{rel.name}"
    missing = [str(ref) for ref in rel.between if ref not in mounts or ref not in s.identities]
    if missing:
        return [Proof(f"relationship {label}", False, f"no ServiceIdentity {', '.join(missing)} in the examples")]
    proofs: list[Proof] = []
    for sender in rel.between:
        receiver = rel.peer_of(sender)
        if receiver is None or not rel.sends_to(sender):
            continue
        if rel.mtls:
            server = s.identities[receiver]
            proofs.append(prove_mtls(mounts[receiver], mounts[sender],
                                     server_hostname=f"{server.service_name}.{server.namespace}.svc"))
        if rel.jwt:
            proofs.append(prove_jwt(mounts[sender], mounts[receiver], audience=rel.audience, now=now,
                                    roles=rel.roles, relationship=label))
    if rel.shared_secret is not None and not rel.shared_secret.group:
        a, b = rel.between
        proofs.append(prove_shared_secret(mounts[a], mounts[b], relationship=label))
    return proofs


def _group_proofs(s: Scenario, mounts: Mapping[IdentityRef, Path]) -> list[Proof]:
    """One proof per shared-secret group: every member of its relationships holds its value."""
    groups: dict[tuple[str, str], list[TrustRelationship]] = {}
    for rel in s.relationships:
        if rel.shared_secret is not None and rel.shared_secret.group:
            groups.setdefault((rel.namespace, rel.shared_secret.group), []).append(rel)
    proofs = []
    for (_, group), rels in sorted(groups.items()):
        members = sorted({ref for rel in rels for ref in rel.between if ref in mounts}, key=str)
        spec = rels[0].shared_secret
        assert spec is not None
        proofs.append(prove_shared_group([mounts[ref] for ref in members], group=group,
                                         printable=spec.encoding is not SecretEncoding.RAW,
                                         client_id=spec.client_id))
    return proofs


def proofs_for(s: Scenario, mounts: Mapping[IdentityRef, Path], now: datetime) -> list[Proof]:
    """Every proof ``s`` calls for, over the identities' mounted files."""
    proofs: list[Proof] = []
    for rel in s.relationships:
        proofs.extend(_relationship_proofs(rel, s, mounts, now))
    proofs.extend(_group_proofs(s, mounts))
    for ref, ident in s.identities.items():
        proofs.extend(prove_template(mounts[ref], tpl.name) for tpl in ident.templates)
        if ident.jwt.enabled and ident.jwt.hmac is not None:
            proofs.append(prove_hmac_key(mounts[ref], [d for r, d in mounts.items() if r != ref], now=now))
    return proofs
