"""trustwire.plan.objects: RFC 7386 merge patches and the smallest write (or none).

The merge-patch property is checked against a tiny RFC 7386 applier written here, so the
patch means what the API server (and the emulator) will make of it.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustwire import names
from trustwire.plan.identity import DesiredObject
from trustwire.plan.material import with_secret_template
from trustwire.plan.objects import merge_patch, object_body, object_patch


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 §2, literally."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def canonical(value: Any) -> str:
    """Type-exact comparison: JSON distinguishes ``true`` from ``1``, Python's ``==`` does not."""
    return json.dumps(value, sort_keys=True)


def round_trip(old: Any, new: Any) -> Any:
    patch = merge_patch(old, new)
    return copy.deepcopy(old) if patch is None else apply_merge_patch(old, patch)


# ======================================================================================
# merge_patch
# ======================================================================================
KEYS = st.sampled_from(["a", "b", "c", "data", "x.y", "trustwire.io/k"])
LEAVES = st.one_of(st.booleans(), st.integers(-1, 2), st.text(max_size=2))
#: JSON without null: RFC 7386 cannot set a member to null (null means "remove").
JSON = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12,
)
OBJECTS = st.dictionaries(KEYS, JSON, max_size=5)


@settings(max_examples=400, deadline=None)
@given(OBJECTS, OBJECTS)
def test_merge_patch_turns_old_into_new(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert canonical(round_trip(old, new)) == canonical(new)


@settings(max_examples=200, deadline=None)
@given(OBJECTS)
def test_merge_patch_of_equal_objects_is_none(value: dict[str, Any]) -> None:
    assert merge_patch(value, copy.deepcopy(value)) is None


@settings(max_examples=200, deadline=None)
@given(OBJECTS, OBJECTS)
def test_merge_patch_is_minimal(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Only changed members appear; unchanged members are left out."""
    patch = merge_patch(old, new) or {}
    for key, value in new.items():
        if key in old and canonical(old[key]) == canonical(value):
            assert key not in patch
    for key in patch:
        assert key not in old or key not in new or canonical(old[key]) != canonical(new[key])


@pytest.mark.parametrize(
    ("old", "new", "patch"),
    [
        ({"a": 1}, {"a": 1}, None),
        ({"a": 1}, {"a": 2}, {"a": 2}),
        ({"a": 1}, {}, {"a": None}),
        ({}, {"a": {"b": 1}}, {"a": {"b": 1}}),
        ({"a": {"b": 1, "c": 2}}, {"a": {"b": 1}}, {"a": {"c": None}}),
        ({"a": [1, 2]}, {"a": [1]}, {"a": [1]}),  # lists are replaced whole
        ({"a": "x"}, {"a": {"b": "y"}}, {"a": {"b": "y"}}),
        ({"a": {"b": "y"}}, {"a": "x"}, {"a": "x"}),
        ({"a": {"b": 1}}, {"a": {}}, {"a": {"b": None}}),
        ({"a": 1}, {"a": True}, {"a": True}),  # 1 == True in Python, not in JSON
        ({"a": [0]}, {"a": [False]}, {"a": [False]}),
        ({"status": {"ready": False}}, {"status": {"ready": 0}}, {"status": {"ready": 0}}),
    ],
)
def test_merge_patch_examples(old: dict[str, Any], new: dict[str, Any], patch: Any) -> None:
    assert canonical(merge_patch(old, new)) == canonical(patch)


# ======================================================================================
# object_body
# ======================================================================================
def secret(
    data: dict[str, bytes] | None = None,
    annotations: dict[str, str] | None = None,
    owned: bool = True,
    name: str = "dgc-trustwire-credentials",
) -> DesiredObject:
    return DesiredObject(
        "Secret",
        name,
        data if data is not None else {"tls.crt": b"\x00\x01pem", "x": b""},
        names.identity_labels("dgc", "credentials"),
        annotations or {},
        type="kubernetes.io/tls",
        owned=owned,
    )


def configmap() -> DesiredObject:
    return DesiredObject(
        "ConfigMap",
        "dgc-trustwire-public",
        {"ca.crt": "é-pem".encode(), "jwks.json": b"{}"},
        names.identity_labels("dgc", "public"),
    )


OWNER = {"apiVersion": "trustwire.io/v1alpha1", "kind": "ServiceIdentity",
         "metadata": {"name": "dgc", "namespace": "gov", "uid": "u-1"}, "spec": {}}


def test_object_body_of_a_secret() -> None:
    body = object_body(secret(annotations={names.DERIVED_ANNOTATION: "{}"}), "gov", OWNER)
    assert body["apiVersion"] == "v1" and body["kind"] == "Secret"
    assert body["type"] == "kubernetes.io/tls"
    assert body["metadata"]["name"] == "dgc-trustwire-credentials"
    assert body["metadata"]["namespace"] == "gov"
    assert body["metadata"]["labels"] == names.identity_labels("dgc", "credentials")
    assert body["metadata"]["annotations"] == {names.DERIVED_ANNOTATION: "{}"}
    assert body["data"] == {"tls.crt": base64.b64encode(b"\x00\x01pem").decode(), "x": ""}
    assert {k: base64.b64decode(v) for k, v in body["data"].items()} == {"tls.crt": b"\x00\x01pem", "x": b""}
    assert body["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "trustwire.io/v1alpha1",
            "kind": "ServiceIdentity",
            "name": "dgc",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]


def test_object_body_of_a_configmap() -> None:
    body = object_body(configmap(), "gov")
    assert body["kind"] == "ConfigMap"
    assert "type" not in body
    assert "annotations" not in body["metadata"]
    assert "ownerReferences" not in body["metadata"]
    assert body["data"] == {"ca.crt": "é-pem", "jwks.json": "{}"}


@pytest.mark.parametrize(
    ("owned", "owner", "expected"),
    [
        (True, OWNER, True),
        (False, OWNER, False),  # the CA Secret outlives its identity under Retain
        (True, {**OWNER, "metadata": {"name": "dgc"}}, False),  # no uid (emulator): no dangling reference
        (True, None, False),
    ],
)
def test_owner_reference(owned: bool, owner: dict[str, Any] | None, expected: bool) -> None:
    body = object_body(secret(owned=owned), "gov", owner)
    assert ("ownerReferences" in body["metadata"]) is expected


# ======================================================================================
# object_patch
# ======================================================================================
def observed_after(desired: DesiredObject, **extra_meta: Any) -> dict[str, Any]:
    body = object_body(desired, "gov", OWNER)
    body["metadata"]["resourceVersion"] = "7"
    for key, value in extra_meta.items():
        body["metadata"].setdefault(key, {}).update(value)
    return body


@pytest.mark.parametrize(
    "desired",
    [secret(), secret(annotations={names.DERIVED_ANNOTATION: "{}"}), configmap()],
    ids=["secret", "secret-annotated", "configmap"],
)
def test_identical_object_needs_no_patch(desired: DesiredObject) -> None:
    assert object_patch(desired, observed_after(desired)) is None
    # other writers' labels and annotations do not count as differences
    noisy = observed_after(
        desired, labels={"team": "a"}, annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    )
    assert object_patch(desired, noisy) is None


def test_patch_touches_only_our_metadata() -> None:
    desired = secret(annotations={names.DERIVED_ANNOTATION: "new", names.JWT_ISSUED_ANNOTATION: "t"})
    observed = observed_after(
        secret(annotations={names.DERIVED_ANNOTATION: "old"}),
        labels={"team": "a", names.ROLE_LABEL: "wrong"},
        annotations={
            "example.com/keep": "1",
            "trustwire.io/stale": "x",
            names.ROTATE_ANNOTATION + "-ish": "y",
        },
    )
    patch = object_patch(desired, observed)
    assert patch == {
        "metadata": {
            "labels": {names.ROLE_LABEL: "credentials"},
            "annotations": {
                names.DERIVED_ANNOTATION: "new",
                names.JWT_ISSUED_ANNOTATION: "t",
                "trustwire.io/stale": None,
                names.ROTATE_ANNOTATION + "-ish": None,
            },
        }
    }
    result = apply_merge_patch(observed, patch)
    assert result["metadata"]["labels"]["team"] == "a"
    assert result["metadata"]["annotations"]["example.com/keep"] == "1"
    assert "trustwire.io/stale" not in result["metadata"]["annotations"]
    assert object_patch(desired, result) is None


def test_patch_sets_changed_data_and_removes_stale_keys() -> None:
    desired = secret({"tls.crt": b"new", "ca.crt": b"same"})
    observed = observed_after(secret({"tls.crt": b"old", "ca.crt": b"same", "keystore.jks": b"stale"}))
    patch = object_patch(desired, observed)
    assert patch == {"data": {"tls.crt": base64.b64encode(b"new").decode(), "keystore.jks": None}}
    result = apply_merge_patch(observed, patch)
    assert result["data"] == object_body(desired, "gov")["data"]
    assert object_patch(desired, result) is None


def test_patch_restores_missing_labels_and_data() -> None:
    desired = configmap()
    observed = observed_after(desired)
    del observed["metadata"]["labels"]
    del observed["data"]
    patch = object_patch(desired, observed)
    assert patch is not None
    assert patch["metadata"]["labels"] == dict(desired.labels)
    assert patch["data"] == {"ca.crt": "é-pem", "jwks.json": "{}"}
    assert object_patch(desired, apply_merge_patch(observed, patch)) is None


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["tls.crt", "tls.key", "ca.crt", "peers.json"]), st.binary(max_size=8)),
    st.dictionaries(st.sampled_from(["tls.crt", "tls.key", "ca.crt", "peers.json"]), st.binary(max_size=8)),
    st.dictionaries(
        st.sampled_from(["trustwire.io/derived", "trustwire.io/x", "other.io/y"]), st.text(max_size=3)
    ),
)
def test_applying_the_patch_always_converges(
    desired_data: dict[str, bytes], observed_data: dict[str, bytes], observed_annotations: dict[str, str]
) -> None:
    desired = secret(desired_data, annotations={names.DERIVED_ANNOTATION: "d"})
    observed = observed_after(secret(observed_data), annotations=observed_annotations)
    patch = object_patch(desired, observed)
    result = observed if patch is None else apply_merge_patch(observed, patch)
    assert object_patch(desired, result) is None
    assert {k: base64.b64decode(v) for k, v in result["data"].items()} == desired_data
    ours = {k: v for k, v in result["metadata"]["annotations"].items() if k.startswith("trustwire.io/")}
    assert ours == {names.DERIVED_ANNOTATION: "d"}
    assert {
        k: v for k, v in result["metadata"]["annotations"].items() if not k.startswith("trustwire.io/")
    } == {k: v for k, v in observed_annotations.items() if not k.startswith("trustwire.io/")}


def _owned_by(*references: dict[str, Any]) -> dict[str, Any]:
    observed = object_body(secret(), "gov", OWNER)
    observed["metadata"]["ownerReferences"] = list(references)
    return observed


OURS = object_body(secret(), "gov", OWNER)["metadata"]["ownerReferences"][0]
STALE = {**OURS, "uid": "u-0"}  # a deleted identity of the same name
BACKUP = {"apiVersion": "velero.io/v1", "kind": "Restore", "name": "r", "uid": "v-1"}


@pytest.mark.parametrize(
    ("references", "expected"),
    [
        ([OURS], None),
        ([STALE], [OURS]),  # adopted: collected under the new identity otherwise
        ([], [OURS]),
        ([STALE, BACKUP], [OURS, BACKUP]),  # another party's reference stays
        ([BACKUP, OURS], None),
    ],
)
def test_an_adopted_object_is_given_its_owner(references: list[dict[str, Any]],
                                             expected: list[dict[str, Any]] | None) -> None:
    patch = object_patch(secret(), _owned_by(*references), OWNER)
    assert (patch or {}).get("metadata", {}).get("ownerReferences") == expected
    assert object_patch(secret(owned=False), _owned_by(STALE), OWNER) is None  # a CA stays unowned


@pytest.mark.parametrize(("before", "after", "labels", "annotations"), [
    # nothing templated yet: the template's keys are added, with the record of them
    ({}, {"labels": {"team": "a"}, "annotations": {"n": "1"}}, {"team": "a"}, {"n": "1"}),
    # a value changes
    ({"labels": {"team": "a"}}, {"labels": {"team": "b"}}, {"team": "b"}, {}),
    # a key leaves the template: it leaves the Secret
    ({"labels": {"team": "a", "velero.io/backup": "d"}, "annotations": {"n": "1"}},
     {"labels": {"team": "a"}}, {"velero.io/backup": None}, {"n": None}),
    # the template is emptied: its keys and the record go
    ({"labels": {"team": "a"}}, {}, {"team": None}, {names.SECRET_TEMPLATE_ANNOTATION: None}),
])
def test_secret_template_keys_come_and_go_and_nobody_elses_do(
        before: dict[str, dict[str, str]], after: dict[str, dict[str, str]],
        labels: dict[str, Any], annotations: dict[str, Any]) -> None:
    def templated(template: dict[str, dict[str, str]]) -> DesiredObject:
        return with_secret_template(secret(), template.get("labels", {}), template.get("annotations", {}))

    observed = observed_after(templated(before), labels={"owner": "other"}, annotations={"other.io/x": "1"})
    patch = object_patch(templated(after), observed)
    assert patch is not None
    meta = patch["metadata"]
    assert meta.get("labels", {}) == labels
    # the record is rewritten whenever the set of keys changes; the rest is exactly as listed
    assert {k: v for k, v in meta.get("annotations", {}).items() if k != names.SECRET_TEMPLATE_ANNOTATION} == \
        {k: v for k, v in annotations.items() if k != names.SECRET_TEMPLATE_ANNOTATION}
    result = apply_merge_patch(observed, patch)
    assert result["metadata"]["labels"]["owner"] == "other" and result["metadata"]["annotations"]["other.io/x"] == "1"
    assert object_patch(templated(after), result) is None, "one patch converges"
    assert (names.SECRET_TEMPLATE_ANNOTATION in result["metadata"]["annotations"]) == bool(after)


def test_a_configmap_never_takes_the_secret_template() -> None:
    assert with_secret_template(configmap(), {"team": "a"}, {"n": "1"}) == configmap()
