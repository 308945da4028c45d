"""trustwire.plan.shared: the shared Secret (per pair or per group), rotation on demand, delivery."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from trustwire import names
from trustwire.model import SecretEncoding, SharedSecretSpec, TrustRelationship, parse_relationship
from trustwire.plan import shared
from trustwire.plan.material import StoredObject

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
Factory = Callable[..., dict[str, Any]]


@pytest.fixture
def rel(relationship_body: Factory) -> Callable[..., TrustRelationship]:
    """``rel(name="rel", a="dgc", b="jobserver", **sharedSecret)``: a relationship with a shared secret."""

    def make(name: str = "rel", a: str = "dgc", b: str = "jobserver", **spec: Any) -> TrustRelationship:
        return parse_relationship(relationship_body(a, b, name=name, sharedSecret={"enabled": True, **spec}))

    return make


def counter() -> tuple[Callable[[], bytes], list[int]]:
    calls: list[int] = []

    def generate() -> bytes:
        calls.append(1)
        return bytes([len(calls)]) * 32

    return generate, calls


def stored(data: dict[str, bytes], managed: bool = True, **annotations: str) -> StoredObject:
    return StoredObject(name="rel-trustwire-shared", managed=managed, owner=None, data=data, annotations=annotations)


def feed_back(plan: shared.SharedPlan) -> StoredObject:
    return StoredObject(plan.desired.name, True, None, dict(plan.desired.data), dict(plan.desired.annotations))


@pytest.mark.parametrize(
    ("observed", "kept"),
    [
        (None, False),
        (stored({"shared.key": b"k" * 32}), True),
        (stored({"shared.key": b"k" * 64}), True),
        (stored({"shared.key": b"k" * 31}), False),  # too short to be a 256-bit secret
        (stored({"shared.key": b""}), False),
        (stored({}), False),
        (stored({"shared.key": b"k" * 32}, managed=False), False),  # never adopt a foreign object's value
    ],
)
def test_shared_secret_is_generated_once_then_kept(
    rel: Callable[..., TrustRelationship], observed: StoredObject | None, kept: bool
) -> None:
    generate, calls = counter()
    plan = shared.shared_secret_object(rel(), observed, generate, NOW, None)
    assert set(plan.desired.data) == {"shared.key"}
    assert (plan.rotated, plan.wake_at) == (False, None)
    if kept:
        assert observed is not None
        assert plan.desired.data["shared.key"] == observed.data["shared.key"]
        assert calls == []
    else:
        assert plan.desired.data["shared.key"] == b"\x01" * 32
        assert calls == [1]


@pytest.mark.parametrize(
    ("group", "name", "owner_label", "owned"),
    [
        (None, "rel-trustwire-shared", {names.RELATIONSHIP_LABEL: "rel"}, True),
        ("datahub", "datahub-trustwire-group", {names.SHARED_GROUP_LABEL: "datahub"}, False),
    ],
)
def test_where_a_shared_secret_lives(
    rel: Callable[..., TrustRelationship], group: str | None, name: str, owner_label: dict[str, str], owned: bool
) -> None:
    """A pair's Secret is owned by its relationship; a group's outlives any one member."""
    spec = {"group": group} if group else {}
    desired = shared.shared_secret_object(rel(**spec), None, counter()[0], NOW, None).desired
    assert (desired.kind, desired.name, desired.type, desired.owned) == ("Secret", name, "Opaque", owned)
    assert desired.labels == {names.MANAGED_BY: names.MANAGER, **owner_label, names.ROLE_LABEL: "shared"}


def test_round_trip_is_stable(rel: Callable[..., TrustRelationship]) -> None:
    generate, calls = counter()
    first = shared.shared_secret_object(rel(), None, generate, NOW, None)
    again = shared.shared_secret_object(rel(), feed_back(first), generate, NOW, None)
    assert again.desired == first.desired
    assert calls == [1]


def test_rotation_on_demand_keeps_the_old_value_for_the_grace_period(rel: Callable[..., TrustRelationship]) -> None:
    r = rel(gracePeriod="10m")
    generate, calls = counter()
    first = shared.shared_secret_object(r, None, generate, NOW, None)
    asked = shared.shared_secret_object(r, feed_back(first), generate, NOW, "shared-secret:1")
    assert asked.rotated
    assert asked.desired.data == {"shared.key": b"\x02" * 32, "previous.key": b"\x01" * 32}
    assert asked.wake_at == NOW + timedelta(minutes=10)
    assert json.loads(asked.desired.annotations[names.SHARED_ROTATED_ANNOTATION]) == {"rel": "shared-secret:1"}
    (event,) = asked.events
    assert (event.type, event.reason) == ("Normal", "SharedSecretRotated")
    assert "2026-03-01T12:10:00Z" in event.message and "\x01" not in event.message and "\x02" not in event.message
    assert first.events == ()
    # the same request again is handled: nothing changes during the grace
    later = NOW + timedelta(minutes=9)
    again = shared.shared_secret_object(r, feed_back(asked), generate, later, "shared-secret:1")
    assert (again.rotated, again.desired, again.wake_at, again.events) == (False, asked.desired, asked.wake_at, ())
    # after the grace the previous value is gone
    after = shared.shared_secret_object(r, feed_back(again), generate, NOW + timedelta(minutes=10, seconds=1),
                                        "shared-secret:1")
    assert after.desired.data == {"shared.key": b"\x02" * 32}
    assert names.SHARED_PREVIOUS_UNTIL_ANNOTATION not in after.desired.annotations
    assert after.wake_at is None
    assert calls == [1, 1]


@pytest.mark.parametrize(
    ("annotation", "rotates"),
    [(None, False), ("", False), ("jwt", False), ("ca:1", False), ("shared-secret", True),
     ("shared-secret:2026-03-01", True), ("shared-secrets", False)],
)
def test_which_annotations_rotate(rel: Callable[..., TrustRelationship], annotation: str | None,
                                  rotates: bool) -> None:
    r = rel()
    first = shared.shared_secret_object(r, None, counter()[0], NOW, None)
    assert shared.shared_secret_object(r, feed_back(first), counter()[0], NOW, annotation).rotated is rotates


def test_a_request_on_a_new_secret_is_answered_by_the_first_value(rel: Callable[..., TrustRelationship]) -> None:
    generate, calls = counter()
    first = shared.shared_secret_object(rel(), None, generate, NOW, "shared-secret:1")
    again = shared.shared_secret_object(rel(), feed_back(first), generate, NOW, "shared-secret:1")
    assert (first.rotated, again.rotated, calls) == (False, False, [1])


def test_each_member_of_a_group_rotates_once_per_value(rel: Callable[..., TrustRelationship]) -> None:
    """Handled requests are recorded per relationship in the group's one Secret."""
    one, two = rel("one", group="g"), rel("two", "gms", "frontend", group="g")
    generate, calls = counter()
    plan = shared.shared_secret_object(one, None, generate, NOW, None)
    plan = shared.shared_secret_object(one, feed_back(plan), generate, NOW, "shared-secret:a")
    plan = shared.shared_secret_object(two, feed_back(plan), generate, NOW, "shared-secret:a")
    assert plan.rotated and calls == [1, 1, 1]
    assert json.loads(plan.desired.annotations[names.SHARED_ROTATED_ANNOTATION]) == {
        "one": "shared-secret:a", "two": "shared-secret:a"}
    plan = shared.shared_secret_object(one, feed_back(plan), generate, NOW, "shared-secret:a")
    assert not plan.rotated and calls == [1, 1, 1]


RAW = bytes(range(32))


@pytest.mark.parametrize(
    ("encoding", "decode", "length"),
    [
        (SecretEncoding.BASE64URL, lambda v: base64.urlsafe_b64decode(v + b"="), 43),
        (SecretEncoding.HEX, binascii.unhexlify, 64),
        (SecretEncoding.RAW, lambda v: v, 32),
    ],
)
def test_encodings(encoding: SecretEncoding, decode: Callable[[bytes], bytes], length: int) -> None:
    value = shared.encode(RAW, encoding)
    assert len(value) == length
    assert decode(value) == RAW
    text = shared.printable(RAW, encoding)
    assert text is None if encoding is SecretEncoding.RAW else (text == value.decode() and text.isprintable())


@pytest.mark.parametrize(
    ("spec", "value", "files", "context"),
    [
        (SharedSecretSpec(), shared.SharedValue(RAW), {"shared-peer.key"},
         {"name": "peer", "group": None, "clientId": None, "previous": None, "file": "/m/shared-peer.key",
          "clientIdFile": None, "previousFile": None}),
        (SharedSecretSpec(client_id="__datahub_system", group="datahub"), shared.SharedValue(RAW, b"\x07" * 32),
         {"shared-datahub.key", "shared-datahub.client-id", "shared-datahub.key.previous"},
         {"name": "datahub", "group": "datahub", "clientId": "__datahub_system",
          "previous": shared.printable(b"\x07" * 32, SecretEncoding.BASE64URL),
          "file": "/m/shared-datahub.key", "clientIdFile": "/m/shared-datahub.client-id",
          "previousFile": "/m/shared-datahub.key.previous"}),
    ],
)
def test_delivery(spec: SharedSecretSpec, value: shared.SharedValue, files: set[str],
                  context: dict[str, Any]) -> None:
    delivered = shared.delivery(spec, "peer", value, "/m")
    assert set(delivered.files) == files
    assert delivered.context == {**context, "encoding": "base64url", "value": shared.printable(RAW, spec.encoding)}
    assert set(names.shared_files(str(context["name"]))) >= files
    if spec.client_id:
        assert delivered.files["shared-datahub.client-id"] == b"__datahub_system"
    assert not delivered.clashes(delivered.files)
    assert delivered.clashes({name: b"other" for name in delivered.files})


@pytest.mark.parametrize(
    ("theirs", "field"),
    [({}, None), ({"encoding": "hex"}, "encoding"), ({"clientId": "other"}, "clientId"),
     ({"group": "elsewhere", "encoding": "hex"}, None)],
)
def test_group_members_must_agree(rel: Callable[..., TrustRelationship], theirs: dict[str, Any],
                                  field: str | None) -> None:
    mine = rel("one", group="g", clientId="c")
    other = rel("two", "gms", "frontend", **{"group": "g", "clientId": "c", **theirs})
    check = shared.group_conflict(mine, [mine, other])
    if field is None:
        assert check is None
    else:
        assert check is not None and check.stalled and check.reason == "GroupConflict"
        assert check.message.startswith(f"spec.sharedSecret.{field}: ")
        assert "ns/two" in check.message
