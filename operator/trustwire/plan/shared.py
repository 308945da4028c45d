"""Shared secrets: one per relationship, or one per group of relationships in a namespace.

The random bytes live in a Secret of the relationship's namespace — ``<relationship>-trustwire-shared``
owned by the relationship, or ``<group>-trustwire-group`` kept while any relationship there
names the group — and are delivered, encoded as the relationship asks, into the trust
Secret of every member. A rotation on demand (``trustwire.io/rotate: shared-secret[:x]`` on
a relationship, acted on once per distinct value) keeps the old value beside the new one
until the grace period ends, so members switch without a failed request.

Pure: the clock and the random source are parameters.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from trustwire import names
from trustwire.model import SecretEncoding, SharedSecretSpec, TrustRelationship
from trustwire.plan.conditions import Check, stalled
from trustwire.plan.material import DesiredObject, StoredObject
from trustwire.plan.reasons import PlannedEvent, Reason
from trustwire.times import parse_time, rfc3339

#: Random bytes of every shared secret (256 bits).
SECRET_BYTES = 32


@dataclasses.dataclass(frozen=True)
class SharedValue:
    """A shared secret's raw bytes: the current value and, during a grace period, the previous."""

    current: bytes
    previous: bytes | None = None


def secret_name(rel: TrustRelationship) -> str:
    """The Secret holding ``rel``'s shared secret."""
    spec = rel.shared_secret
    assert spec is not None
    return names.shared_group_secret(spec.group) if spec.group else names.shared_secret(rel.name)


def file_key(spec: SharedSecretSpec, peer_key: str) -> str:
    """What the mounted files are named after: the group, else the peer."""
    return spec.group or peer_key


def encode(raw: bytes, encoding: SecretEncoding) -> bytes:
    if encoding is SecretEncoding.HEX:
        return raw.hex().encode()
    if encoding is SecretEncoding.BASE64URL:
        return base64.urlsafe_b64encode(raw).rstrip(b"=")
    return raw


def printable(raw: bytes, encoding: SecretEncoding) -> str | None:
    """The value as text for templates; ``None`` for ``raw`` bytes, which are not text."""
    return None if encoding is SecretEncoding.RAW else encode(raw, encoding).decode("ascii")


def stored_value(stored: StoredObject | None, now: datetime) -> SharedValue | None:
    """What a managed shared Secret holds now (the previous value only until its grace ends)."""
    if stored is None or not stored.managed:
        return None
    current = stored.data.get(names.SHARED_KEY)
    if not current or len(current) < SECRET_BYTES:
        return None
    until = parse_time(stored.annotations.get(names.SHARED_PREVIOUS_UNTIL_ANNOTATION))
    previous = stored.data.get(names.SHARED_PREVIOUS_KEY) if until is not None and until > now else None
    return SharedValue(current, previous or None)


def _handled(stored: StoredObject | None) -> dict[str, str]:
    try:
        value = json.loads(stored.annotations.get(names.SHARED_ROTATED_ANNOTATION, "{}")) if stored else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def rotation_requested(rel: TrustRelationship, annotation: str | None, stored: StoredObject | None) -> bool:
    """``trustwire.io/rotate: shared-secret[:anything]``, not handled yet for ``rel``."""
    if not annotation or annotation.split(":", 1)[0].strip() != names.ROTATE_SHARED_SECRET:
        return False
    return _handled(stored).get(rel.name) != annotation


@dataclasses.dataclass(frozen=True)
class SharedPlan:
    desired: DesiredObject
    rotated: bool
    #: when the previous value is dropped (the relationship's next pass is due)
    wake_at: datetime | None

    @property
    def events(self) -> tuple[PlannedEvent, ...]:
        if not self.rotated or self.wake_at is None:
            return ()
        return (PlannedEvent.of(Reason.SHARED_SECRET_ROTATED,
                                f"shared secret in Secret {self.desired.name} rotated on request; the previous "
                                f"value is delivered beside it until {rfc3339(self.wake_at)}"),)


def shared_secret_object(rel: TrustRelationship, observed: StoredObject | None, generate: Callable[[], bytes],
                         now: datetime, annotation: str | None) -> SharedPlan:
    """The shared Secret: generated once, then kept; rotated on request with a grace period."""
    spec = rel.shared_secret
    assert spec is not None
    kept = stored_value(observed, now)
    handled = _handled(observed if observed is not None and observed.managed else None)
    rotated = kept is not None and rotation_requested(rel, annotation, observed)
    until: datetime | None = None
    if kept is None:
        value = SharedValue(generate())
    elif rotated:
        value, until = SharedValue(generate(), kept.current), now + spec.grace_period
    else:
        value = kept
        until = parse_time(observed.annotations.get(names.SHARED_PREVIOUS_UNTIL_ANNOTATION)) \
            if observed is not None and kept.previous is not None else None
    if rotation_requested(rel, annotation, observed):
        assert annotation is not None  # a request that finds no value yet is answered by the first one
        handled[rel.name] = annotation
    annotations: dict[str, str] = {}
    if until is not None:
        annotations[names.SHARED_PREVIOUS_UNTIL_ANNOTATION] = rfc3339(until)
    if handled:
        annotations[names.SHARED_ROTATED_ANNOTATION] = json.dumps(handled, sort_keys=True, separators=(",", ":"))
    data = {names.SHARED_KEY: value.current}
    if value.previous is not None:
        data[names.SHARED_PREVIOUS_KEY] = value.previous
    owner = {names.SHARED_GROUP_LABEL: spec.group} if spec.group else {names.RELATIONSHIP_LABEL: rel.name}
    labels = {names.MANAGED_BY: names.MANAGER, **owner, names.ROLE_LABEL: "shared"}
    # a group's Secret outlives any one member: no owner reference, deleted with the last member
    desired = DesiredObject("Secret", secret_name(rel), data, labels, annotations, type="Opaque",
                            owned=not spec.group)
    return SharedPlan(desired, rotated, until)


def group_conflict(rel: TrustRelationship, members: Sequence[TrustRelationship]) -> Check | None:
    """Relationships of one group must agree on how the one value is delivered."""
    spec = rel.shared_secret
    assert spec is not None and spec.group
    for other in sorted(members, key=lambda m: m.name):
        theirs = other.shared_secret
        if other.name == rel.name or theirs is None or theirs.group != spec.group:
            continue
        for field, mine, their in (("encoding", spec.encoding, theirs.encoding),
                                   ("clientId", spec.client_id, theirs.client_id)):
            if mine != their:
                return stalled("GroupConflict",
                               f"spec.sharedSecret.{field}: {mine!s} differs from {their!s} of relationship "
                               f"{other.namespace}/{other.name} in group {spec.group}; every relationship "
                               f"naming a group must set the same {field}")
    return None



@dataclasses.dataclass(frozen=True)
class Delivery:
    """One shared secret as a member receives it: its files in the trust Secret and what
    templates see (``sharedSecrets[<group or peer>]``)."""

    files: dict[str, bytes]
    context: dict[str, Any]

    def clashes(self, data: Mapping[str, bytes]) -> bool:
        """Whether another shared secret already took one of these file names with other bytes."""
        return any(name in data and data[name] != content for name, content in self.files.items())


def delivery(spec: SharedSecretSpec, peer_key: str, value: SharedValue, mount_path: str) -> Delivery:
    key = spec.group or peer_key
    value_file, id_file, previous_file = names.shared_files(key)
    files = {value_file: encode(value.current, spec.encoding)}
    if spec.client_id is not None:
        files[id_file] = spec.client_id.encode()
    if value.previous is not None:
        files[previous_file] = encode(value.previous, spec.encoding)
    context = {
        "name": key, "group": spec.group, "encoding": str(spec.encoding), "clientId": spec.client_id,
        "value": printable(value.current, spec.encoding),
        "previous": printable(value.previous, spec.encoding) if value.previous is not None else None,
        "file": f"{mount_path}/{value_file}",
        "clientIdFile": f"{mount_path}/{id_file}" if spec.client_id is not None else None,
        "previousFile": f"{mount_path}/{previous_file}" if value.previous is not None else None,
    }
    return Delivery(files, context)
