"""Whether a TrustRelationship takes effect, and what it owns.

Acceptance is the one security decision of the product: trust may be pushed into a
namespace only with that namespace's consent (``acceptFrom`` on the identity there). The
same function answers for the relationship's own status and for each identity deciding
which peers to trust, so the two can never disagree.

Pure: identities are looked up through a callable the controller provides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from trustwire.model import IdentityRef, ServiceIdentity, TrustRelationship
from trustwire.plan.conditions import Check, passed, stalled, waiting


@dataclasses.dataclass(frozen=True)
class IdentityEntry:
    """What the controller knows about one ServiceIdentity from its watch."""

    ref: IdentityRef
    identity: ServiceIdentity | None  # None when its spec does not parse
    accept_from: tuple[str, ...]
    deleting: bool = False
    #: "ns/name" of the relationships the identity reports in status.peers
    distributed: frozenset[str] = frozenset()
    #: the reason of its ``Stalled=True`` condition, when a human must act on it
    stalled_reason: str | None = None

    def accepts(self, namespace: str) -> bool:
        return namespace == self.ref.namespace or "*" in self.accept_from or namespace in self.accept_from


def lenient_accept_from(body: Mapping[str, Any]) -> tuple[str, ...]:
    """``spec.acceptFrom.namespaces`` read without failing, so one typo elsewhere in a spec
    does not withdraw consent that was given (nothing already issued is lost)."""
    spec = body.get("spec")
    accept = spec.get("acceptFrom") if isinstance(spec, Mapping) else None
    namespaces = accept.get("namespaces") if isinstance(accept, Mapping) else None
    if not isinstance(namespaces, list):
        return ()
    return tuple(n for n in namespaces if isinstance(n, str))


Lookup = Callable[[IdentityRef], IdentityEntry | None]


def acceptance(rel: TrustRelationship, lookup: Lookup) -> Check:
    """Both identities exist and each one in another namespace consents to ``rel.namespace``."""
    for i, ref in enumerate(rel.between):
        entry = lookup(ref)
        if entry is None or entry.deleting:
            return waiting("IdentityNotFound",
                           f"spec.between[{i}].identity: ServiceIdentity {ref} does not exist")
    for i, ref in enumerate(rel.between):
        entry = lookup(ref)
        assert entry is not None
        if not entry.accepts(rel.namespace):
            return stalled("NotPermitted",
                           f"spec.between[{i}]: ServiceIdentity {ref} does not accept relationships from "
                           f"namespace {rel.namespace} (add it to spec.acceptFrom.namespaces of {ref})")
    return passed("Accepted", f"{rel.members} trust each other")


def distribution(rel: TrustRelationship, lookup: Lookup) -> Check:
    """Both sides report the relationship among their peers."""
    key = f"{rel.namespace}/{rel.name}"
    missing = [ref for ref in rel.between if (entry := lookup(ref)) is None or key not in entry.distributed]
    if missing:
        message = f"waiting for {', '.join(map(str, missing))} to receive the peer material"
        stuck = [blame for ref in missing if (blame := _stalled_side(rel, ref, lookup))]
        if stuck:  # e.g. a hub whose trust Secret is full: it will not arrive without a change
            return stalled("PeerStalled", f"{message}; {'; '.join(stuck)}")
        return waiting("Distributing", message)
    if rel.external is not None:
        return passed("Distributed", f"{rel.between[0]} holds the CA of external peer {rel.external.name}")
    if rel.issuer is not None:
        return passed("Distributed", f"{rel.between[0]} holds the keys of issuer {rel.issuer.url}")
    return passed("Distributed", "both identities hold each other's material")


def _stalled_side(rel: TrustRelationship, receiver: IdentityRef, lookup: Lookup) -> str | None:
    """Which side keeps ``receiver`` from the peer material: itself (it cannot take it in), or
    the peer that cannot publish it — named as the one stalled, never the one waiting."""
    entry = lookup(receiver)
    if entry is not None and entry.stalled_reason:
        return f"{receiver} is stalled ({entry.stalled_reason}) and cannot take in the peer material"
    sender = rel.peer_of(receiver)
    peer = lookup(sender) if sender is not None else None
    if sender is not None and peer is not None and peer.stalled_reason:
        return f"{sender} is stalled ({peer.stalled_reason}) and publishes no material for {receiver}"
    return None


def symmetric_jwt(rel: TrustRelationship, lookup: Lookup) -> Check | None:
    """A sender whose JWT key is symmetric (HS256/HS384/HS512) could only be verified by a
    peer holding that key, which could then mint its tokens: trustwire never sends it."""
    if not rel.jwt:
        return None
    for sender in rel.between:
        entry = lookup(sender)
        ident = entry.identity if entry is not None else None
        if rel.sends_to(sender) and ident is not None and ident.jwt.enabled and ident.jwt.hmac is not None:
            return stalled("SymmetricJwtKey",
                           f"spec.jwt.enabled: ServiceIdentity {sender} signs with {ident.jwt.hmac} "
                           "(its spec.jwt.algorithm), a symmetric key trustwire never gives a peer; set "
                           "spec.jwt.enabled: false on this relationship, or give it an asymmetric "
                           "spec.jwt.algorithm (ES256, ES384, RS256, PS256, EdDSA)")
    return None
