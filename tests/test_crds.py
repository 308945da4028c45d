"""The CRDs in crds/: valid apiextensions.k8s.io/v1 objects with structural schemas that
behave as docs/design.md sections 2-4 say (names, defaults, limits, status, printer columns)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from trustwire import names

CRDS_DIR = Path(__file__).resolve().parents[1] / "crds"
KUBERNETES_VERSION = "1.35.0"  # a recent release kubernetes_validate ships schemas for
DURATION = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"


def _load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((CRDS_DIR / name).read_text()) if d]


@pytest.fixture(scope="module")
def sid() -> dict[str, Any]:
    (crd,) = _load("trustwire.io_serviceidentities.yaml")
    return crd


@pytest.fixture(scope="module")
def enrollment() -> dict[str, Any]:
    (crd,) = _load("trustwire.io_enrollments.yaml")
    return crd


@pytest.fixture(scope="module")
def trust() -> dict[str, Any]:
    (crd,) = _load("trustwire.io_trustrelationships.yaml")
    return crd


def _version(crd: dict[str, Any]) -> dict[str, Any]:
    version: dict[str, Any]
    (version,) = crd["spec"]["versions"]
    return version


def _schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = _version(crd)["schema"]["openAPIV3Schema"]
    return schema


def _node(crd: dict[str, Any], dotted: str) -> dict[str, Any]:
    node = _schema(crd)
    for part in dotted.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def _jsonschema(node: Any) -> Any:
    """OpenAPI v3 (Kubernetes flavour) -> JSON Schema: `nullable: true` also admits null."""
    if isinstance(node, list):
        return [_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _jsonschema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable"):
        out["type"] = [node["type"], "null"]
    return out


def _validator(crd: dict[str, Any]) -> jsonschema.Draft4Validator:
    return jsonschema.Draft4Validator(_jsonschema(_schema(crd)))


def _apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """What the API server does on create: fill absent fields from `default`, then recurse,
    so defaults nested under a defaulted `{}` apply too."""
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = _apply_defaults(value[key], sub)
    elif isinstance(value, list) and "items" in schema:
        value = [_apply_defaults(v, schema["items"]) for v in value]
    return value


def _sid_object(spec: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "trustwire.io/v1alpha1",
        "kind": "ServiceIdentity",
        "metadata": {"name": "dgc", "namespace": "governance", "creationTimestamp": "2026-01-01T00:00:00Z"},
        **extra,
    }
    if spec is not None:
        obj["spec"] = spec
    return obj


def _trust_object(spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "trustwire.io/v1alpha1",
        "kind": "TrustRelationship",
        "metadata": {
            "name": "dgc-jobserver",
            "namespace": "governance",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": spec,
        **extra,
    }


# --- Kubernetes' own validation of the CRD objects ------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["trustwire.io_serviceidentities.yaml", "trustwire.io_trustrelationships.yaml", "trustwire.io_enrollments.yaml"],
)
def test_crd_files_pass_strict_kubernetes_validation(name: str) -> None:
    docs = _load(name)
    assert docs
    for crd in docs:
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert crd["kind"] == "CustomResourceDefinition"
        kubernetes_validate.validate(crd, KUBERNETES_VERSION, strict=True)


def test_strict_validation_catches_a_misspelt_schema_keyword(sid: dict[str, Any]) -> None:
    broken = copy.deepcopy(sid)
    _version(broken)["schema"]["openAPIV3Schema"]["properties"]["status"][
        "x-kubernetes-preserve-unknown-field"
    ] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


# --- names, scope, versions, subresources ------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "kind", "plural", "singular", "short"),
    [
        ("sid", "ServiceIdentity", "serviceidentities", "serviceidentity", ["sid"]),
        ("trust", "TrustRelationship", "trustrelationships", "trustrelationship", ["trust"]),
    ],
)
def test_names_scope_and_versions(
    request: pytest.FixtureRequest, fixture: str, kind: str, plural: str, singular: str, short: list[str]
) -> None:
    crd = request.getfixturevalue(fixture)
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{plural}.trustwire.io"
    assert spec["group"] == "trustwire.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind
    assert spec["names"]["plural"] == plural
    assert spec["names"]["singular"] == singular
    assert spec["names"]["shortNames"] == short
    assert spec["names"]["categories"] == ["trustwire"]
    version = _version(crd)
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


# --- structural schema ---------------------------------------------------------------------------


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path or ".", node)]
    for key, child in node.get("properties", {}).items():
        found += _walk(child, f"{path}.{key}")
    if "items" in node:
        found += _walk(node["items"], f"{path}[]")
    return found


@pytest.mark.parametrize("fixture", ["sid", "trust"])
def test_schema_is_structural(request: pytest.FixtureRequest, fixture: str) -> None:
    crd = request.getfixturevalue(fixture)
    for path, node in _walk(_schema(crd)):
        assert node.get("type") in {"object", "array", "string", "integer", "boolean", "number"} or node.get(
            "x-kubernetes-preserve-unknown-fields"
        ), f"{path}: no type"
        if "additionalProperties" in node:  # a map (labels): structural only without properties, typed
            assert "properties" not in node and node["additionalProperties"].get("type"), path
        for forbidden in ("allOf", "anyOf", "oneOf", "not", "$ref"):
            assert forbidden not in node, f"{path}: {forbidden}"
        if "properties" in node:
            assert node["type"] == "object", path
        if node.get("type") == "array":
            assert "items" in node, f"{path}: array without items"
        for key in node.get("required", []):
            assert key in node["properties"], f"{path}: required {key} is not a property"
        if "pattern" in node:
            re.compile(node["pattern"])
        if node.get("x-kubernetes-list-type") == "map":
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in node["items"]["required"], f"{path}: list-map key {key} must be required"
    # metadata may only be typed, never restricted
    assert _node(crd, "metadata") == {"type": "object"}


@pytest.mark.parametrize("fixture", ["sid", "trust"])
def test_every_default_is_valid_and_survives_pruning(request: pytest.FixtureRequest, fixture: str) -> None:
    """The API server rejects a CRD whose defaults (after nested defaulting) do not validate
    or carry unknown fields."""
    crd = request.getfixturevalue(fixture)
    for path, node in _walk(_schema(crd)):
        if "default" not in node:
            continue
        value = _apply_defaults(copy.deepcopy(node["default"]), node)
        jsonschema.Draft4Validator(_jsonschema(node)).validate(value)
        if isinstance(value, dict):
            assert set(value) <= set(node.get("properties", {})), f"{path}: default has unknown fields"


def test_every_duration_uses_the_kubernetes_duration_pattern(sid: dict[str, Any]) -> None:
    durations = [
        "spec.ca.duration",
        "spec.certificate.duration",
        "spec.certificate.renewBefore",
        "spec.jwt.rotationPeriod",
    ]
    for path in durations:
        assert _node(sid, path)["pattern"] == DURATION, path
    pattern = re.compile(DURATION)
    for good in ("8760h", "90m", "1h30m", "2.5h", "100ms", "45s"):
        assert pattern.match(good), good
    for bad in ("", "1d", "720", "h", "-1h", "1 h", "P30D"):
        assert not pattern.match(bad), bad


# --- ServiceIdentity spec behaviour --------------------------------------------------------------


def test_empty_serviceidentity_gets_every_documented_default(sid: dict[str, Any]) -> None:
    for obj in (_sid_object({}), _sid_object(None)):
        defaulted = _apply_defaults(obj, _schema(sid))
        _validator(sid).validate(defaulted)
        assert defaulted["spec"] == {
            "trustDomain": "cluster.local",
            "ca": {"source": "SelfSigned", "keyAlgorithm": "ECDSAP256", "duration": "8760h"},
            "certificate": {"keyAlgorithm": "ECDSAP256", "duration": "720h", "renewBefore": "240h"},
            "jwt": {"enabled": True, "algorithm": "ES256", "rotationPeriod": "720h"},
            "keystores": {"formats": ["PKCS12"], "legacyPKCS12": False},
            "mountPath": "/var/run/trustwire",
            "acceptFrom": {},
            "deletionPolicy": "Retain",
            "enrollment": {"enabled": False},
        }


def test_password_secret_ref_key_defaults_to_password(sid: dict[str, Any]) -> None:
    obj = _apply_defaults(_sid_object({"keystores": {"passwordSecretRef": {"name": "pw"}}}), _schema(sid))
    assert obj["spec"]["keystores"]["passwordSecretRef"] == {"name": "pw", "key": "password"}
    assert obj["spec"]["keystores"]["formats"] == ["PKCS12"]


FULL_SID_SPEC: dict[str, Any] = {
    "serviceName": "dgc",
    "dnsNames": ["dgc.example.com"],
    "trustDomain": "example.org",
    "ca": {
        "source": "Secret",
        "secretRef": {"name": "my-ca"},
        "keyAlgorithm": "RSA3072",
        "duration": "17520h",
    },
    "certificate": {"keyAlgorithm": "Ed25519", "duration": "24h", "renewBefore": "8h"},
    "jwt": {
        "enabled": True,
        "algorithm": "EdDSA",
        "rotationPeriod": "168h",
        "revokedKids": ["abc"],
        "issuer": "https://issuer.example",
    },
    "keystores": {"formats": ["PKCS12", "JKS"], "passwordSecretRef": None, "legacyPKCS12": True},
    "workloads": [
        {"kind": "Deployment", "name": "dgc", "containers": []},
        {"kind": "StatefulSet", "name": "db", "containers": ["main"]},
    ],
    "mountPath": "/etc/trustwire",
    "templates": [
        {"name": "application.properties", "configMapRef": {"name": "t", "key": "tpl"}},
        {"name": "peers.env", "inline": "{{ peers }}"},
    ],
    "acceptFrom": {"namespaces": ["jobs", "*"]},
    "deletionPolicy": "Delete",
}


def test_a_fully_specified_serviceidentity_is_accepted(sid: dict[str, Any]) -> None:
    _validator(sid).validate(_apply_defaults(_sid_object(copy.deepcopy(FULL_SID_SPEC)), _schema(sid)))


@pytest.mark.parametrize(
    ("patch", "why"),
    [
        ({"serviceName": "DGC"}, "not a DNS-1123 label"),
        ({"serviceName": "dgc-"}, "not a DNS-1123 label"),
        ({"serviceName": "a" * 64}, "longer than 63"),
        ({"dnsNames": ["x"] * 101}, "too many SANs"),
        ({"dnsNames": ["a" * 254]}, "SAN too long"),
        ({"ca": {"source": "Vault"}}, "unknown CA source"),
        ({"ca": {"source": "Secret", "secretRef": {}}}, "secretRef without name"),
        ({"ca": {"keyAlgorithm": "DSA"}}, "unknown key algorithm"),
        ({"ca": {"duration": "1y"}}, "not a duration"),
        ({"certificate": {"renewBefore": "10 days"}}, "not a duration"),
        ({"certificate": {"keyAlgorithm": "ecdsap256"}}, "enum is case-sensitive"),
        ({"jwt": {"algorithm": "HS1024"}}, "unknown HMAC JWT algorithm"),
        ({"jwt": {"enabled": "yes"}}, "not a boolean"),
        ({"jwt": {"revokedKids": ["k"] * 101}}, "too many revoked kids"),
        ({"keystores": {"formats": ["PEM"]}}, "PEM is always written"),
        ({"keystores": {"formats": ["PKCS12", "JKS", "PKCS12"]}}, "more than 2 formats"),
        ({"keystores": {"passwordSecretRef": {"key": "k"}}}, "passwordSecretRef without name"),
        ({"workloads": [{"kind": "Pod", "name": "x"}]}, "unsupported workload kind"),
        ({"workloads": [{"kind": "Deployment"}]}, "workload without name"),
        ({"workloads": [{"kind": "Deployment", "name": "x"}] * 51}, "too many workloads"),
        ({"mountPath": "relative/path"}, "mountPath must be absolute"),
        ({"templates": [{"name": "../etc/passwd", "inline": "x"}]}, "template name with a slash"),
        ({"templates": [{"inline": "x"}]}, "template without name"),
        ({"templates": [{"name": "t", "inline": "x" * 65537}]}, "inline template too large"),
        ({"templates": [{"name": "t", "configMapRef": {"name": "cm"}}]}, "configMapRef without key"),
        ({"templates": [{"name": f"t{i}", "inline": "x"} for i in range(21)]}, "too many templates"),
        ({"deletionPolicy": "Orphan"}, "unknown deletion policy"),
        ({"trustDomain": "x" * 254}, "trust domain too long"),
    ],
)
def test_invalid_serviceidentity_specs_are_rejected(
    sid: dict[str, Any], patch: dict[str, Any], why: str
) -> None:
    obj = _apply_defaults(_sid_object(patch), _schema(sid))
    assert not _validator(sid).is_valid(obj), why


# --- TrustRelationship spec behaviour ------------------------------------------------------------


def test_trustrelationship_defaults(trust: dict[str, Any]) -> None:
    obj = _apply_defaults(
        _trust_object({"between": [{"identity": "dgc"}, {"identity": "jobserver", "namespace": "jobs"}]}),
        _schema(trust),
    )
    _validator(trust).validate(obj)
    assert obj["spec"] == {
        "between": [{"identity": "dgc"}, {"identity": "jobserver", "namespace": "jobs"}],
        "mtls": {"enabled": True},
        "jwt": {"enabled": True},
        "sharedSecret": {"enabled": False},
    }


def test_a_fully_specified_trustrelationship_is_accepted(trust: dict[str, Any]) -> None:
    spec = {
        "between": [{"identity": "dpm"}, {"identity": "dpe", "namespace": "processing"}],
        "initiator": "dpm",
        "mtls": {"enabled": False},
        "jwt": {
            "enabled": True,
            "roles": ["IMPERSONATION"],
            "audience": "product-factory",
            "scopes": ["read"],
        },
        "sharedSecret": {"enabled": True},
    }
    _validator(trust).validate(_apply_defaults(_trust_object(spec), _schema(trust)))


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ({}, "between is required"),
        ({"between": [{"identity": "a"}]}, "one identity"),
        ({"between": [{"identity": "a"}, {"identity": "b"}, {"identity": "c"}]}, "three identities"),
        ({"between": [{"identity": "a"}, {"identity": "b"}], "jwt": {"roles": ["r"] * 51}}, "too many roles"),
        (
            {"between": [{"identity": "a"}, {"identity": "b"}], "jwt": {"scopes": ["s"] * 51}},
            "too many scopes",
        ),
        (
            {"between": [{"identity": "a"}, {"identity": "b"}], "sharedSecret": {"enabled": "no"}},
            "not a boolean",
        ),
    ],
)
def test_invalid_trustrelationship_specs_are_rejected(
    trust: dict[str, Any], spec: dict[str, Any], why: str
) -> None:
    assert not _validator(trust).is_valid(_apply_defaults(_trust_object(spec), _schema(trust))), why


# --- status ------------------------------------------------------------------------------------

NOW = "2026-03-01T12:00:00Z"

SID_STATUS: dict[str, Any] = {
    "observedGeneration": 3,
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Issued",
            "message": "all material current",
            "lastTransitionTime": NOW,
            "observedGeneration": 3,
        },
        {
            "type": "Reconciling",
            "status": "False",
            "reason": "Done",
            "message": "",
            "lastTransitionTime": NOW,
        },
        {
            "type": "Rotating",
            "status": "True",
            "reason": "Distribute",
            "message": "",
            "lastTransitionTime": NOW,
        },
    ],
    "spiffeId": "spiffe://cluster.local/ns/governance/sid/dgc",
    "issuer": "spiffe://cluster.local/ns/governance/sid/dgc",
    "materialHash": "sha256:0123",
    "peerCount": 2,
    "ca": {
        "source": "SelfSigned",
        "serial": "01",
        "fingerprint": "AB:CD",
        "notBefore": NOW,
        "notAfter": "2027-03-01T12:00:00Z",
        "renewalTime": "2026-09-01T12:00:00Z",
    },
    "certificate": {
        "serial": "02",
        "fingerprint": "EF:01",
        "notAfter": "2026-03-31T12:00:00Z",
        "renewalTime": "2026-03-21T12:00:00Z",
        "dnsNames": ["dgc", "dgc.governance"],
    },
    "jwt": {
        "kid": "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
        "algorithm": "ES256",
        "publishedKids": ["NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"],
        "rotationTime": NOW,
    },
    "peers": [
        {
            "identity": "jobserver",
            "namespace": "jobs",
            "relationship": "dgc-jobserver",
            "mtls": True,
            "jwt": False,
            "sharedSecret": False,
        },
        {
            "identity": "dpm",
            "namespace": "governance",
            "relationship": "dgc-dpm",
            "mtls": False,
            "jwt": True,
            "sharedSecret": True,
        },
    ],
    "workloads": [{"kind": "Deployment", "name": "dgc", "state": "RolledOut", "message": ""}],
    "rotation": {"ca": {"phase": "Distribute", "nextSerial": "03", "startedAt": NOW}},
}

TRUST_STATUS: dict[str, Any] = {
    "observedGeneration": 1,
    "conditions": [
        {
            "type": "Ready",
            "status": "False",
            "reason": "NotPermitted",
            "message": "Accepted: jobs/jobserver does not accept relationships",
            "lastTransitionTime": NOW,
        },
        {
            "type": "Accepted",
            "status": "False",
            "reason": "NotPermitted",
            "message": "jobs/jobserver does not accept relationships from governance",
            "lastTransitionTime": NOW,
            "observedGeneration": 1,
        },
    ],
    "identities": ["governance/dgc", "jobs/jobserver"],
}


def test_sample_statuses_validate(sid: dict[str, Any], trust: dict[str, Any]) -> None:
    _validator(sid).validate(_sid_object({}, status=SID_STATUS))
    _validator(trust).validate(
        _trust_object({"between": [{"identity": "dgc"}, {"identity": "jobserver"}]}, status=TRUST_STATUS)
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"conditions": [{"type": "Ready"}]},
        {"conditions": [{"status": "True"}]},
        {"conditions": [{"type": "Ready", "status": "true"}]},
        {"observedGeneration": "3"},
        {"peerCount": "2"},
        {"peers": [{"identity": "x", "mtls": "yes"}]},
    ],
)
def test_malformed_status_is_rejected(sid: dict[str, Any], bad: dict[str, Any]) -> None:
    assert not _validator(sid).is_valid(_sid_object({}, status=bad))


@pytest.mark.parametrize("fixture", ["sid", "trust"])
def test_status_follows_kstatus(request: pytest.FixtureRequest, fixture: str) -> None:
    crd = request.getfixturevalue(fixture)
    generation = _node(crd, "status.observedGeneration")
    assert (generation["type"], generation["format"]) == ("integer", "int64")
    conditions = _node(crd, "status.conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["required"]) == {"type", "status"}
    assert set(item["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"
    assert item["properties"]["observedGeneration"]["format"] == "int64"


def test_rotation_state_is_free_form_and_nothing_else_is(sid: dict[str, Any]) -> None:
    assert _node(sid, "status.rotation")["x-kubernetes-preserve-unknown-fields"] is True
    preserved = [
        path for path, node in _walk(_schema(sid)) if node.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert preserved == [".status.rotation"]


# --- printer columns -----------------------------------------------------------------------------

_SEGMENT = re.compile(
    r'\.(?P<field>[A-Za-z_][A-Za-z0-9_]*)|\[\?\(@\.(?P<key>[A-Za-z_]+)=="(?P<value>[^"]*)"\)\]'
    r"|\[(?P<index>[0-9]+)\]"
)


def _jsonpath(path: str, obj: Any) -> list[Any]:
    """The subset of kubectl JSONPath the printer columns use: `.field`, `[n]` and `[?(@.k=="v")]`."""
    values = [obj]
    pos = 0
    while pos < len(path):
        m = _SEGMENT.match(path, pos)
        assert m, f"unsupported JSONPath syntax at {path[pos:]!r}"
        pos = m.end()
        if m["field"]:
            values = [v[m["field"]] for v in values if isinstance(v, dict) and m["field"] in v]
        elif m["index"]:
            values = [v[int(m["index"])] for v in values if isinstance(v, list) and int(m["index"]) < len(v)]
        else:
            values = [
                item
                for v in values
                if isinstance(v, list)
                for item in v
                if isinstance(item, dict) and item.get(m["key"]) == m["value"]
            ]
    return values


def _schema_at(crd: dict[str, Any], path: str) -> dict[str, Any]:
    """Follow a printer-column JSONPath through the schema (metadata fields are the API's own)."""
    node = _schema(crd)
    pos = 0
    while pos < len(path):
        m = _SEGMENT.match(path, pos)
        assert m, path
        pos = m.end()
        if m["field"]:
            if node.get("type") == "object" and node == {"type": "object"}:  # metadata
                return {"type": "string", "format": "date-time"} if m["field"] == "creationTimestamp" else {}
            node = node["properties"][m["field"]]
        else:
            assert node["type"] == "array"
            node = node["items"]
            assert m["index"] or m["key"] in node["properties"]
    return node


_COLUMN_TYPES = {
    "string": "string",
    "integer": "integer",
    "date": "string",
    "boolean": "boolean",
    "number": "number",
}


def _check_columns(
    crd: dict[str, Any], obj: dict[str, Any], expected: list[tuple[str, str, str, int, Any]]
) -> None:
    columns = _version(crd)["additionalPrinterColumns"]
    assert [(c["name"], c["jsonPath"], c["type"], c.get("priority", 0)) for c in columns] == [
        e[:4] for e in expected
    ]
    for column, (*_, value) in zip(columns, expected, strict=True):
        assert _jsonpath(column["jsonPath"], obj) == [value], column["name"]
        node = _schema_at(crd, column["jsonPath"])
        assert node["type"] == _COLUMN_TYPES[column["type"]], column["name"]
        if column["type"] == "date":
            assert node.get("format") == "date-time", column["name"]


def test_serviceidentity_printer_columns_resolve(sid: dict[str, Any]) -> None:
    obj = _sid_object({}, status=SID_STATUS)
    _check_columns(
        sid,
        obj,
        [
            ("Ready", '.status.conditions[?(@.type=="Ready")].status', "string", 0, "True"),
            ("Reason", '.status.conditions[?(@.type=="Ready")].reason', "string", 1, "Issued"),
            ("Peers", ".status.peerCount", "integer", 0, 2),
            ("Cert expires", ".status.certificate.notAfter", "string", 0, "2026-03-31T12:00:00Z"),
            ("Kid", ".status.jwt.kid", "string", 1, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"),
            ("Age", ".metadata.creationTimestamp", "date", 0, "2026-01-01T00:00:00Z"),
        ],
    )


def test_trustrelationship_printer_columns_resolve(trust: dict[str, Any]) -> None:
    obj = _trust_object({"between": [{"identity": "a"}, {"identity": "b"}]}, status=TRUST_STATUS)
    ready = '.status.conditions[?(@.type=="Ready")]'
    _check_columns(
        trust,
        obj,
        [
            ("Between", ".status.identities[0]", "string", 0, "governance/dgc"),
            ("And", ".status.identities[1]", "string", 0, "jobs/jobserver"),
            ("Ready", f"{ready}.status", "string", 0, "False"),
            ("Reason", f"{ready}.reason", "string", 0, "NotPermitted"),
            ("Accepted", '.status.conditions[?(@.type=="Accepted")].status', "string", 1, "False"),
            ("Message", f"{ready}.message", "string", 1, "Accepted: jobs/jobserver does not accept relationships"),
            ("Age", ".metadata.creationTimestamp", "date", 0, "2026-01-01T00:00:00Z"),
        ],
    )


def test_jsonpath_helper_finds_nothing_for_a_missing_condition() -> None:
    assert _jsonpath('.status.conditions[?(@.type=="Ready")].status', {"status": {"conditions": []}}) == []
    with pytest.raises(AssertionError):
        _jsonpath(".status.conditions[*]", {})


def test_only_trustwire_crds_are_shipped() -> None:
    """HA is a coordination.k8s.io Lease (a built-in kind): no kopf peering CRDs any more."""
    assert sorted(p.name for p in CRDS_DIR.glob("*.yaml")) == [
        "trustwire.io_enrollments.yaml",
        "trustwire.io_serviceidentities.yaml",
        "trustwire.io_trustrelationships.yaml",
    ]


# --- kubectl explain and CEL rules ---------------------------------------------------------------


def _rules(crd: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(path, rule) for path, node in _walk(_schema(crd)) for rule in node.get("x-kubernetes-validations", [])]


@pytest.mark.parametrize("fixture", ["sid", "trust", "enrollment"])
def test_every_field_has_a_description(request: pytest.FixtureRequest, fixture: str) -> None:
    """What `kubectl explain` prints; metadata is described by the API server (ObjectMeta), and
    list items are no field of their own (kubectl shows the list's description for them)."""
    crd = request.getfixturevalue(fixture)
    undescribed = [path for path, node in _walk(_schema(crd))
                   if path != ".metadata" and not path.endswith("[]")
                   and not str(node.get("description", "")).strip()]
    assert undescribed == []


@pytest.mark.parametrize("fixture", ["sid", "trust"])
def test_every_rule_has_a_message_naming_its_field(request: pytest.FixtureRequest, fixture: str) -> None:
    crd = request.getfixturevalue(fixture)
    rules = _rules(crd)
    assert rules
    for path, rule in rules:
        assert set(rule) <= {"rule", "message", "messageExpression", "fieldPath", "reason"}, path
        assert rule["message"].startswith(("spec.", "metadata.")), (path, rule["message"])
        assert rule.get("reason", "FieldValueInvalid") in {
            "FieldValueInvalid", "FieldValueRequired", "FieldValueForbidden", "FieldValueDuplicate"}, path
        if "fieldPath" in rule:
            node = _schema(crd) if path == "." else _node(crd, path.lstrip(".").replace("[]", ".[]"))
            for part in rule["fieldPath"].lstrip(".").split("."):
                node = node["properties"][part]


@pytest.mark.parametrize(("fixture", "path", "keys"), [
    ("sid", "spec.workloads", ["kind", "name"]),
    ("sid", "spec.templates", ["name"]),
    ("sid", "status.conditions", ["type"]),
    ("trust", "status.conditions", ["type"]),
    ("enrollment", "status.conditions", ["type"]),
])
def test_keyed_lists_are_list_maps(request: pytest.FixtureRequest, fixture: str, path: str, keys: list[str]) -> None:
    node = _node(request.getfixturevalue(fixture), path)
    assert node["x-kubernetes-list-type"] == "map"
    assert node["x-kubernetes-list-map-keys"] == keys
    assert set(keys) <= set(node["items"]["required"])


def test_template_names_refused_by_cel_are_the_files_trustwire_writes(sid: dict[str, Any]) -> None:
    (_, collision) = _node(sid, "spec.templates.[].name")["x-kubernetes-validations"]
    listed = set(re.findall(r"'([^']+)'", collision["rule"].split(" in ", 1)[1]))
    assert listed == set(names.MOUNTED_KEYS)
    assert f"startsWith('{names.SHARED_SECRET_PREFIX}')" in collision["rule"]


def test_duration_rules_use_the_operators_range_and_pattern(sid: dict[str, Any]) -> None:
    from trustwire.model.durations import format_duration
    from trustwire.model.limits import MAX_DURATION, MIN_DURATION

    for path in ("spec.ca.duration", "spec.certificate.duration", "spec.certificate.renewBefore",
                 "spec.jwt.rotationPeriod"):
        node = _node(sid, path)
        assert node["maxLength"] == 64, path
        (rule,) = node["x-kubernetes-validations"]
        assert f"duration('{format_duration(MIN_DURATION)}')" in rule["rule"], path
        assert f"duration('{format_duration(MAX_DURATION)}')" in rule["rule"], path
        # the CEL guard is the schema's pattern, spelt without backslashes
        assert f"matches('{DURATION.replace(chr(92) + '.', '[.]')}')" in rule["rule"], path
