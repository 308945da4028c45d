"""The parser (trustwire.model) and the CRD schemas (crds/) must describe the same API.

The CRD is what the API server validates and defaults; the parser is what the operator
enforces (the emulator, old CRDs and ``--validate=false`` skip the server). If the two
drift, a field is either silently dropped by the server or rejected by the operator.
Compared here: field paths, leaf types, enums and defaults. The last tests mutate a
copy of the CRD to prove that each comparison reports drift.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from trustwire.model import (
    ENROLLMENT_FIELDS,
    IDENTITY_FIELDS,
    RELATIONSHIP_FIELDS,
    BundleKind,
    CASource,
    DeletionPolicy,
    KeystoreFormat,
    RolloutMode,
    SecretEncoding,
    ServiceIdentity,
    TrustRelationship,
    WorkloadKind,
    field_paths,
    parse_duration,
    parse_enrollment,
    parse_identity,
    parse_relationship,
)
from trustwire.pki import HmacAlgorithm, JwtAlgorithm, KeyAlgorithm

CRDS = Path(__file__).resolve().parents[1] / "crds"
IDENTITY_CRD = "trustwire.io_serviceidentities.yaml"
ENROLLMENT_CRD = "trustwire.io_enrollments.yaml"
RELATIONSHIP_CRD = "trustwire.io_trustrelationships.yaml"
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"

Schema = dict[str, Any]


# ======================================================================================
# Walking the two descriptions
# ======================================================================================
def load_crd(name: str) -> Schema:
    (crd,) = [d for d in yaml.safe_load_all((CRDS / name).read_text()) if d]
    loaded: Schema = crd
    return loaded


def spec_schema(crd: Mapping[str, Any]) -> Schema:
    (version,) = crd["spec"]["versions"]
    node: Schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return node


def walk_schema(node: Mapping[str, Any], prefix: str = "spec") -> dict[str, Schema]:
    """Field path → schema node under ``node`` (object → ``.name``, array of objects → ``[].child``)."""
    out: dict[str, Schema] = {}
    for name, child in (node.get("properties") or {}).items():
        path = f"{prefix}.{name}"
        out[path] = child
        if child.get("type") == "object":
            out.update(walk_schema(child, path))
        elif child.get("type") == "array" and (child.get("items") or {}).get("type") == "object":
            out.update(walk_schema(child["items"], f"{path}[]"))
    return out


def crd_paths(crd: Mapping[str, Any]) -> set[str]:
    return set(walk_schema(spec_schema(crd)))


def path_drift(crd: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, set[str]]:
    """Paths declared by only one side (empty sets = no drift)."""
    in_crd, in_parser = crd_paths(crd), field_paths(fields)
    return {"only in CRD": in_crd - in_parser, "only in parser": in_parser - in_crd}


def parser_leaf_types(fields: Mapping[str, Any], prefix: str = "spec") -> dict[str, str]:
    """Field path → the parser's declared type: string, boolean, duration, array, object."""
    out: dict[str, str] = {}
    for key, kind in fields.items():
        path = f"{prefix}.{key}"
        if isinstance(kind, list):
            out[path] = "array"
            if isinstance(kind[0], dict):
                out.update(parser_leaf_types(kind[0], f"{path}[]"))
        elif isinstance(kind, dict):
            out[path] = "object"
            out.update(parser_leaf_types(kind, path))
        else:
            out[path] = str(kind)
    return out


def crd_leaf_type(node: Mapping[str, Any]) -> str:
    if node.get("type") == "string" and node.get("pattern") == DURATION_PATTERN:
        return "duration"
    return str(node.get("type"))


def type_drift(crd: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    nodes = walk_schema(spec_schema(crd))
    parser = parser_leaf_types(fields)
    return {
        p: (crd_leaf_type(nodes[p]), parser[p])
        for p in nodes.keys() & parser.keys()
        if crd_leaf_type(nodes[p]) != parser[p]
    }


def crd_enums(crd: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Field path → enum values; an enum on array items is reported as ``path[]``."""
    out: dict[str, list[Any]] = {}
    for path, node in walk_schema(spec_schema(crd)).items():
        if "enum" in node:
            out[path] = list(node["enum"])
        if node.get("type") == "array" and "enum" in (node.get("items") or {}):
            out[f"{path}[]"] = list(node["items"]["enum"])
    return out


#: ``spec.jwt.algorithm`` takes an asymmetric algorithm or an HMAC one (two enums in the parser).
JWS_ALGORITHMS = enum.StrEnum("JWS_ALGORITHMS", {m.name: m.value for m in (*JwtAlgorithm, *HmacAlgorithm)})
#: Which Python enum the parser uses for each enum-valued field.
IDENTITY_ENUMS: dict[str, type[enum.StrEnum]] = {
    "spec.ca.source": CASource,
    "spec.ca.keyAlgorithm": KeyAlgorithm,
    "spec.certificate.keyAlgorithm": KeyAlgorithm,
    "spec.jwt.algorithm": JWS_ALGORITHMS,
    "spec.keystores.formats[]": KeystoreFormat,
    "spec.workloads[].kind": WorkloadKind,
    "spec.workloads[].rollout": RolloutMode,
    "spec.deletionPolicy": DeletionPolicy,
}
RELATIONSHIP_ENUMS: dict[str, type[enum.StrEnum]] = {"spec.between[].external.caBundleRef.kind": BundleKind,
                                                   "spec.between[].issuer.caBundleRef.kind": BundleKind,
                                                   "spec.sharedSecret.encoding": SecretEncoding}


def enum_drift(crd: Mapping[str, Any], expected: Mapping[str, type[enum.StrEnum]]) -> dict[str, Any]:
    found = crd_enums(crd)
    drift: dict[str, Any] = {}
    for path in found.keys() | expected.keys():
        crd_values = set(found.get(path, []))
        py_values = {m.value for m in expected[path]} if path in expected else set()
        if crd_values != py_values:
            drift[path] = {"CRD": sorted(map(str, crd_values)), "Python": sorted(py_values)}
    return drift


def crd_defaults(crd: Mapping[str, Any]) -> dict[str, Any]:
    """Field path → CRD default, except ``default: {}`` on objects (that only enables nested defaults)."""
    return {
        path: node["default"]
        for path, node in walk_schema(spec_schema(crd)).items()
        if "default" in node and not (node.get("type") == "object" and node["default"] == {})
    }


def apply_crd_defaults(node: Mapping[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it (missing field with a default gets it, recursively)."""
    if node.get("type") == "object" and isinstance(value, dict):
        out = dict(value)
        for name, child in (node.get("properties") or {}).items():
            if name not in out and "default" in child:
                out[name] = copy.deepcopy(child["default"])
            if name in out:
                out[name] = apply_crd_defaults(child, out[name])
        return out
    if node.get("type") == "array" and isinstance(value, list):
        return [apply_crd_defaults(node.get("items") or {}, item) for item in value]
    return value


def _ms(text: str) -> timedelta:
    return parse_duration(text)


#: CRD default path → (how to read the parsed value, how to read the CRD default), for an
#: identity parsed from an empty spec (plus ``base`` when the field needs a parent present).
IDENTITY_DEFAULT_READERS: dict[
    str, tuple[Mapping[str, Any], Callable[[ServiceIdentity], Any], Callable[[Any], Any]]
] = {
    "spec.trustDomain": ({}, lambda i: i.trust_domain, str),
    "spec.ca.source": ({}, lambda i: i.ca.source, CASource),
    "spec.ca.keyAlgorithm": ({}, lambda i: i.ca.key_algorithm, KeyAlgorithm),
    "spec.ca.duration": ({}, lambda i: i.ca.duration, _ms),
    "spec.certificate.keyAlgorithm": ({}, lambda i: i.certificate.key_algorithm, KeyAlgorithm),
    "spec.certificate.duration": ({}, lambda i: i.certificate.duration, _ms),
    "spec.certificate.renewBefore": ({}, lambda i: i.certificate.renew_before, _ms),
    "spec.jwt.enabled": ({}, lambda i: i.jwt.enabled, bool),
    "spec.enrollment.enabled": ({}, lambda i: i.enrollment, bool),
    "spec.jwt.algorithm": ({}, lambda i: i.jwt.algorithm, JwtAlgorithm),
    "spec.jwt.rotationPeriod": ({}, lambda i: i.jwt.rotation_period, _ms),
    "spec.keystores.formats": ({}, lambda i: i.keystores.formats, lambda v: tuple(map(KeystoreFormat, v))),
    "spec.keystores.legacyPKCS12": ({}, lambda i: i.keystores.legacy_pkcs12, bool),
    "spec.keystores.passwordSecretRef.key": (
        {"keystores": {"passwordSecretRef": {"name": "pw"}}},
        lambda i: i.keystores.password_secret.key if i.keystores.password_secret else None,
        str,
    ),
    "spec.workloads[].rollout": ({"workloads": [{"kind": "Deployment", "name": "a"}]},
                                 lambda i: i.workloads[0].rollout, RolloutMode),
    "spec.mountPath": ({}, lambda i: i.mount_path, str),
    "spec.deletionPolicy": ({}, lambda i: i.deletion_policy, DeletionPolicy),
}

RELATIONSHIP_DEFAULT_READERS: dict[
    str, tuple[Mapping[str, Any], Callable[[TrustRelationship], Any], Callable[[Any], Any]]
] = {
    "spec.mtls.enabled": ({}, lambda r: r.mtls, bool),
    "spec.jwt.enabled": ({}, lambda r: r.jwt, bool),
    "spec.sharedSecret.enabled": ({}, lambda r: r.shared_secret is not None, bool),
}


def identity_default_drift(crd: Mapping[str, Any]) -> dict[str, Any]:
    defaults = crd_defaults(crd)
    drift: dict[str, Any] = {}
    for path in defaults.keys() | IDENTITY_DEFAULT_READERS.keys():
        if path not in defaults or path not in IDENTITY_DEFAULT_READERS:
            drift[path] = "declared on one side only"
            continue
        base, read, convert = IDENTITY_DEFAULT_READERS[path]
        parsed = read(parse_identity({"metadata": {"name": "x", "namespace": "ns"}, "spec": dict(base)}))
        if parsed != convert(defaults[path]):
            drift[path] = {"CRD": defaults[path], "parser": parsed}
    return drift


BETWEEN = {"between": [{"identity": "a"}, {"identity": "b"}]}


def relationship_default_drift(crd: Mapping[str, Any]) -> dict[str, Any]:
    defaults = crd_defaults(crd)
    drift: dict[str, Any] = {}
    for path in defaults.keys() | RELATIONSHIP_DEFAULT_READERS.keys():
        if path not in defaults or path not in RELATIONSHIP_DEFAULT_READERS:
            drift[path] = "declared on one side only"
            continue
        base, read, convert = RELATIONSHIP_DEFAULT_READERS[path]
        parsed = read(
            parse_relationship({"metadata": {"name": "r", "namespace": "ns"}, "spec": {**BETWEEN, **base}})
        )
        if parsed != convert(defaults[path]):
            drift[path] = {"CRD": defaults[path], "parser": parsed}
    return drift


# ======================================================================================
# Fixtures
# ======================================================================================
@pytest.fixture(scope="module")
def identity_crd() -> Schema:
    return load_crd(IDENTITY_CRD)


@pytest.fixture(scope="module")
def relationship_crd() -> Schema:
    return load_crd(RELATIONSHIP_CRD)


# ======================================================================================
# The real comparisons
# ======================================================================================
def test_identity_field_paths_match(identity_crd: Schema) -> None:
    assert path_drift(identity_crd, IDENTITY_FIELDS) == {"only in CRD": set(), "only in parser": set()}


def test_enrollment_field_paths_match() -> None:
    assert path_drift(load_crd(ENROLLMENT_CRD), ENROLLMENT_FIELDS) == {"only in CRD": set(), "only in parser": set()}


def test_enrollment_defaults_match() -> None:
    defaults = crd_defaults(load_crd(ENROLLMENT_CRD))
    parsed = parse_enrollment({"metadata": {"name": "e", "namespace": "ns"},
                               "spec": {"identity": "a", "subject": {"commonName": "app"}}})
    assert set(defaults) == {"spec.tokenTTL", "spec.certificate.duration", "spec.revoked"}
    assert parse_duration(defaults["spec.tokenTTL"]) == parsed.token_ttl
    assert parse_duration(defaults["spec.certificate.duration"]) == parsed.certificate_duration
    assert defaults["spec.revoked"] is parsed.revoked


def test_relationship_field_paths_match(relationship_crd: Schema) -> None:
    assert path_drift(relationship_crd, RELATIONSHIP_FIELDS) == {
        "only in CRD": set(),
        "only in parser": set(),
    }


def test_walk_finds_nested_and_array_item_paths(identity_crd: Schema) -> None:
    paths = crd_paths(identity_crd)
    for expected in (
        "spec.ca.secretRef.name",
        "spec.workloads[].containers",
        "spec.templates[].configMapRef.key",
        "spec.keystores.passwordSecretRef.key",
    ):
        assert expected in paths
    assert not any(p.startswith("status") for p in paths)


@pytest.mark.parametrize(
    ("crd_name", "fields"), [(IDENTITY_CRD, IDENTITY_FIELDS), (RELATIONSHIP_CRD, RELATIONSHIP_FIELDS),
                             (ENROLLMENT_CRD, ENROLLMENT_FIELDS)]
)
def test_leaf_types_match(crd_name: str, fields: Mapping[str, Any]) -> None:
    assert type_drift(load_crd(crd_name), fields) == {}


def test_identity_enums_match_python_enums(identity_crd: Schema) -> None:
    assert enum_drift(identity_crd, IDENTITY_ENUMS) == {}


def test_relationship_enums_match_python(relationship_crd: Schema) -> None:
    assert enum_drift(relationship_crd, RELATIONSHIP_ENUMS) == {}


def test_identity_defaults_match_parser(identity_crd: Schema) -> None:
    assert identity_default_drift(identity_crd) == {}


def test_relationship_defaults_match_parser(relationship_crd: Schema) -> None:
    assert relationship_default_drift(relationship_crd) == {}


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"keystores": {"passwordSecretRef": {"name": "pw"}}},
        {"workloads": [{"kind": "Deployment", "name": "w"}]},
        {"ca": {"source": "Secret", "secretRef": {"name": "c"}}},
    ],
)
def test_server_defaulted_spec_parses_like_the_bare_one(identity_crd: Schema, spec: dict[str, Any]) -> None:
    """A spec defaulted by the API server and the same spec from a server that defaults nothing agree."""
    defaulted = apply_crd_defaults(spec_schema(identity_crd), copy.deepcopy(spec))
    assert defaulted != spec  # defaulting did something
    meta = {"name": "x", "namespace": "ns"}
    assert parse_identity({"metadata": meta, "spec": defaulted}) == parse_identity(
        {"metadata": meta, "spec": spec}
    )


def test_server_defaulted_relationship_parses_like_the_bare_one(relationship_crd: Schema) -> None:
    defaulted = apply_crd_defaults(spec_schema(relationship_crd), copy.deepcopy(BETWEEN))
    assert set(defaulted) > set(BETWEEN)
    meta = {"name": "r", "namespace": "ns"}
    assert parse_relationship({"metadata": meta, "spec": defaulted}) == parse_relationship(
        {"metadata": meta, "spec": BETWEEN}
    )


def test_empty_identity_spec_is_defaulted_by_the_crd(identity_crd: Schema) -> None:
    """``spec: {default: {}}`` and nested ``default: {}`` make every leaf default apply to an empty spec."""
    defaulted = apply_crd_defaults({"type": "object", "properties": {"spec": spec_schema(identity_crd)}}, {})
    # defaults inside a list's items apply to each item given: an empty spec has none
    flat = {p for p in crd_defaults(identity_crd) if p != "spec.keystores.passwordSecretRef.key" and "[]" not in p}
    for path in flat:
        node: Any = defaulted
        for part in path.split("."):
            node = node[part]
        assert node is not None


# ======================================================================================
# The comparisons can fail: mutate a copy of the CRD and expect a report
# ======================================================================================
def _spec_node(crd: Schema, dotted: str) -> Schema:
    node = spec_schema(crd)
    for part in dotted.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def test_added_crd_field_is_reported(identity_crd: Schema) -> None:
    mutated = copy.deepcopy(identity_crd)
    spec_schema(mutated)["properties"]["extraField"] = {"type": "string"}
    _spec_node(mutated, "ca")["properties"]["issuerRef"] = {
        "type": "object",
        "properties": {"kind": {"type": "string"}},
    }
    _spec_node(mutated, "workloads.[]")["properties"]["selector"] = {"type": "string"}
    drift = path_drift(mutated, IDENTITY_FIELDS)
    assert drift["only in CRD"] == {
        "spec.extraField",
        "spec.ca.issuerRef",
        "spec.ca.issuerRef.kind",
        "spec.workloads[].selector",
    }
    assert drift["only in parser"] == set()
    assert identity_crd != mutated  # the fixture itself is untouched


def test_removed_crd_field_is_reported(relationship_crd: Schema) -> None:
    mutated = copy.deepcopy(relationship_crd)
    del _spec_node(mutated, "jwt")["properties"]["scopes"]
    del _spec_node(mutated, "between.[]")["properties"]["namespace"]
    drift = path_drift(mutated, RELATIONSHIP_FIELDS)
    assert drift == {"only in CRD": set(), "only in parser": {"spec.jwt.scopes", "spec.between[].namespace"}}


def test_parser_only_field_is_reported(identity_crd: Schema) -> None:
    fields = copy.deepcopy(IDENTITY_FIELDS)
    fields["jwt"]["audience"] = "string"
    assert path_drift(identity_crd, fields)["only in parser"] == {"spec.jwt.audience"}


def test_changed_leaf_type_is_reported(identity_crd: Schema) -> None:
    mutated = copy.deepcopy(identity_crd)
    del _spec_node(mutated, "certificate.renewBefore")["pattern"]
    _spec_node(mutated, "jwt.enabled")["type"] = "string"
    assert type_drift(mutated, IDENTITY_FIELDS) == {
        "spec.certificate.renewBefore": ("string", "duration"),
        "spec.jwt.enabled": ("string", "boolean"),
    }


def test_enum_drift_is_reported(identity_crd: Schema) -> None:
    mutated = copy.deepcopy(identity_crd)
    _spec_node(mutated, "certificate.keyAlgorithm")["enum"].append("RSA8192")
    _spec_node(mutated, "keystores.formats")["items"]["enum"].remove("JKS")
    _spec_node(mutated, "trustDomain")["enum"] = ["cluster.local"]
    drift = enum_drift(mutated, IDENTITY_ENUMS)
    assert set(drift) == {"spec.certificate.keyAlgorithm", "spec.keystores.formats[]", "spec.trustDomain"}
    assert "RSA8192" in drift["spec.certificate.keyAlgorithm"]["CRD"]
    assert "RSA8192" not in drift["spec.certificate.keyAlgorithm"]["Python"]


def test_default_drift_is_reported(identity_crd: Schema, relationship_crd: Schema) -> None:
    mutated = copy.deepcopy(identity_crd)
    _spec_node(mutated, "certificate.duration")["default"] = "2160h"
    _spec_node(mutated, "jwt.algorithm")["default"] = "EdDSA"
    _spec_node(mutated, "dnsNames")["default"] = ["x"]
    drift = identity_default_drift(mutated)
    assert set(drift) == {"spec.certificate.duration", "spec.jwt.algorithm", "spec.dnsNames"}
    assert drift["spec.certificate.duration"]["parser"] == timedelta(hours=720)

    rel = copy.deepcopy(relationship_crd)
    _spec_node(rel, "sharedSecret.enabled")["default"] = True
    assert set(relationship_default_drift(rel)) == {"spec.sharedSecret.enabled"}


def test_server_defaulting_with_a_drifted_default_changes_the_parse(identity_crd: Schema) -> None:
    mutated = copy.deepcopy(identity_crd)
    _spec_node(mutated, "deletionPolicy")["default"] = "Delete"
    defaulted = apply_crd_defaults(spec_schema(mutated), {})
    meta = {"name": "x", "namespace": "ns"}
    assert parse_identity({"metadata": meta, "spec": defaulted}) != parse_identity(
        {"metadata": meta, "spec": {}}
    )
