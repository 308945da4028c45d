"""trustwire.model: parsing and validating ServiceIdentity / TrustRelationship bodies.

Every rejection must name the field path a user has to fix and, for enums, list what is
allowed; all problems of a spec are reported at once.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trustwire.model import (
    MAX_DURATION,
    MIN_DURATION,
    CASource,
    DeletionPolicy,
    IdentityRef,
    KeystoreFormat,
    SecretEncoding,
    SecretKeyRef,
    SharedSecretSpec,
    SpecError,
    TemplateSpec,
    WorkloadKind,
    WorkloadRef,
    format_duration,
    parse_duration,
    parse_identity,
    parse_relationship,
)
from trustwire.model.reader import Reader
from trustwire.model.text import quote, type_name
from trustwire.pki import HmacAlgorithm, JwtAlgorithm, KeyAlgorithm

Factory = Callable[..., dict[str, Any]]


def identity_problems(identity_body: Factory, **spec: Any) -> dict[str, str]:
    """Parse and return {path: message}; fails the test if the spec is accepted."""
    with pytest.raises(SpecError) as info:
        parse_identity(identity_body(**spec))
    return dict(info.value.problems)


def relationship_problems(body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_relationship(body)
    return dict(info.value.problems)


# ======================================================================================
# Defaults
# ======================================================================================
def test_identity_without_spec_gets_every_default(identity_body: Factory) -> None:
    ident = parse_identity(identity_body(name="dgc", namespace="gov"))
    assert (ident.namespace, ident.name, ident.service_name) == ("gov", "dgc", "dgc")
    assert ident.dns_names == ()
    assert ident.trust_domain == "cluster.local"
    assert ident.ca.source is CASource.SELF_SIGNED
    assert ident.ca.secret_name is None
    assert ident.ca.key_algorithm is KeyAlgorithm.ECDSAP256
    assert ident.ca.duration == timedelta(hours=8760)
    assert ident.certificate.key_algorithm is KeyAlgorithm.ECDSAP256
    assert ident.certificate.duration == timedelta(hours=720)
    assert ident.certificate.renew_before == timedelta(hours=240)
    assert ident.jwt.enabled is True
    assert ident.jwt.algorithm is JwtAlgorithm.ES256
    assert ident.jwt.rotation_period == timedelta(hours=720)
    assert ident.jwt.revoked_kids == ()
    assert ident.jwt.issuer is None
    assert ident.keystores.formats == (KeystoreFormat.PKCS12,)
    assert ident.keystores.password_secret is None
    assert ident.keystores.legacy_pkcs12 is False
    assert ident.workloads == ()
    assert ident.mount_path == "/var/run/trustwire"
    assert ident.templates == ()
    assert ident.accept_from == ()
    assert ident.deletion_policy is DeletionPolicy.RETAIN


@pytest.mark.parametrize("spec", [None, {}], ids=["no-spec", "empty-spec"])
def test_missing_and_empty_spec_parse_alike(identity_body: Factory, spec: dict[str, Any] | None) -> None:
    body = identity_body()
    if spec is not None:
        body["spec"] = spec
    assert parse_identity(body) == parse_identity(identity_body())


def test_namespace_defaults_to_default(identity_body: Factory) -> None:
    body = identity_body()
    del body["metadata"]["namespace"]
    assert parse_identity(body).namespace == "default"


def test_relationship_defaults(relationship_body: Factory) -> None:
    rel = parse_relationship(relationship_body("dgc", "jobserver", namespace="gov"))
    assert rel.between == (IdentityRef("gov", "dgc"), IdentityRef("gov", "jobserver"))
    assert rel.initiator is None
    assert rel.mtls is True
    assert rel.jwt is True
    assert rel.roles == ()
    assert rel.audience is None
    assert rel.scopes == ()
    assert rel.shared_secret is None


def test_relationship_full_spec(relationship_body: Factory) -> None:
    rel = parse_relationship(
        relationship_body(
            "dgc",
            "jobserver",
            namespace="gov",
            b_namespace="jobs",
            initiator="dgc",
            mtls={"enabled": False},
            jwt={"enabled": True, "roles": ["IMPERSONATION"], "audience": "pf", "scopes": ["read", "write"]},
            sharedSecret={"enabled": True},
        )
    )
    assert rel.between == (IdentityRef("gov", "dgc"), IdentityRef("jobs", "jobserver"))
    assert rel.initiator == IdentityRef("gov", "dgc")
    assert (rel.mtls, rel.jwt, rel.shared_secret) == (False, True, SharedSecretSpec())
    assert rel.roles == ("IMPERSONATION",)
    assert rel.audience == "pf"
    assert rel.scopes == ("read", "write")
    assert rel.peer_of(IdentityRef("gov", "dgc")) == IdentityRef("jobs", "jobserver")
    assert rel.peer_of(IdentityRef("jobs", "jobserver")) == IdentityRef("gov", "dgc")
    assert rel.peer_of(IdentityRef("gov", "other")) is None
    assert rel.sends_to(IdentityRef("gov", "dgc")) is True
    assert rel.sends_to(IdentityRef("jobs", "jobserver")) is False


def test_full_identity_spec(identity_body: Factory) -> None:
    ident = parse_identity(
        identity_body(
            name="dgc",
            namespace="gov",
            serviceName="gov-svc",
            dnsNames=["dgc.example.com", "*.dgc.example.com"],
            trustDomain="prod.example",
            ca={
                "source": "Secret",
                "secretRef": {"name": "my-ca"},
                "keyAlgorithm": "RSA3072",
                "duration": "87600h",
            },
            certificate={"keyAlgorithm": "Ed25519", "duration": "48h", "renewBefore": "12h"},
            jwt={
                "enabled": False,
                "algorithm": "PS256",
                "rotationPeriod": "1h30m",
                "revokedKids": ["k1"],
                "issuer": "https://issuer.example",
            },
            keystores={
                "formats": ["JKS", "PKCS12"],
                "passwordSecretRef": {"name": "pw", "key": "pass"},
                "legacyPKCS12": True,
            },
            workloads=[
                {"kind": "StatefulSet", "name": "db", "containers": ["main"]},
                {"kind": "DaemonSet", "name": "agent"},
            ],
            mountPath="/etc/tw/",
            templates=[
                {"name": "application.properties", "inline": "a={{ self.kid }}"},
                {"name": "x.yaml", "configMapRef": {"name": "tpl", "key": "x"}},
            ],
            acceptFrom={"namespaces": ["a", "b"]},
            deletionPolicy="Delete",
        )
    )
    assert ident.service_name == "gov-svc"
    assert ident.dns_names == ("dgc.example.com", "*.dgc.example.com")
    assert ident.trust_domain == "prod.example"
    assert (ident.ca.source, ident.ca.secret_name, ident.ca.key_algorithm, ident.ca.duration) == (
        CASource.SECRET,
        "my-ca",
        KeyAlgorithm.RSA3072,
        timedelta(hours=87600),
    )
    assert (ident.certificate.key_algorithm, ident.certificate.duration, ident.certificate.renew_before) == (
        KeyAlgorithm.Ed25519,
        timedelta(hours=48),
        timedelta(hours=12),
    )
    assert ident.jwt.enabled is False
    assert ident.jwt.algorithm is JwtAlgorithm.PS256
    assert ident.jwt.rotation_period == timedelta(minutes=90)
    assert ident.jwt.revoked_kids == ("k1",)
    assert ident.issuer == "https://issuer.example"
    assert ident.keystores.formats == (KeystoreFormat.JKS, KeystoreFormat.PKCS12)
    assert ident.keystores.password_secret == SecretKeyRef("pw", "pass")
    assert ident.keystores.legacy_pkcs12 is True
    assert ident.workloads == (
        WorkloadRef(WorkloadKind.STATEFULSET, "db", ("main",)),
        WorkloadRef(WorkloadKind.DAEMONSET, "agent", ()),
    )
    assert ident.mount_path == "/etc/tw"
    assert ident.templates == (
        TemplateSpec("application.properties", "a={{ self.kid }}", None),
        TemplateSpec("x.yaml", None, SecretKeyRef("tpl", "x")),
    )
    assert ident.accept_from == ("a", "b")
    assert ident.deletion_policy is DeletionPolicy.DELETE


# ======================================================================================
# Enums: bad values name the field path and list every allowed value
# ======================================================================================
ENUM_CASES: list[tuple[str, dict[str, Any], type[enum.Enum]]] = [
    ("spec.ca.source", {"ca": {"source": "Vault"}}, CASource),
    ("spec.ca.keyAlgorithm", {"ca": {"keyAlgorithm": "DSA"}}, KeyAlgorithm),
    ("spec.certificate.keyAlgorithm", {"certificate": {"keyAlgorithm": "ecdsap256"}}, KeyAlgorithm),
    ("spec.jwt.algorithm", {"jwt": {"algorithm": "HS1024"}}, JwtAlgorithm),
    ("spec.jwt.algorithm", {"jwt": {"algorithm": "hs256"}}, HmacAlgorithm),
    ("spec.keystores.formats[1]", {"keystores": {"formats": ["PKCS12", "BKS"]}}, KeystoreFormat),
    ("spec.workloads[0].kind", {"workloads": [{"kind": "ReplicaSet", "name": "x"}]}, WorkloadKind),
    ("spec.deletionPolicy", {"deletionPolicy": "Orphan"}, DeletionPolicy),
    ("spec.deletionPolicy", {"deletionPolicy": 3}, DeletionPolicy),
    ("spec.jwt.algorithm", {"jwt": {"algorithm": ["ES256"]}}, JwtAlgorithm),
]


@pytest.mark.parametrize(
    ("path", "spec", "kind"), ENUM_CASES, ids=[f"{c[0]}={next(iter(c[1].values()))}" for c in ENUM_CASES]
)
def test_bad_enum_value_names_path_and_allowed_values(
    identity_body: Factory, path: str, spec: dict[str, Any], kind: type[enum.Enum]
) -> None:
    problems = identity_problems(identity_body, **spec)
    assert list(problems) == [path]
    message = problems[path]
    assert "not supported" in message
    for member in kind:
        assert member.value in message, f"{member.value} missing from {message!r}"


@pytest.mark.parametrize(("value", "algorithm", "hmac"), [
    *((a.value, a, None) for a in JwtAlgorithm),
    *((h.value, JwtAlgorithm.ES256, h) for h in HmacAlgorithm),
])
def test_every_jwt_algorithm_is_accepted(identity_body: Factory, value: str, algorithm: JwtAlgorithm,
                                         hmac: HmacAlgorithm | None) -> None:
    jwt = parse_identity(identity_body(jwt={"algorithm": value})).jwt
    assert (jwt.algorithm, jwt.hmac) == (algorithm, hmac)


@pytest.mark.parametrize("value", list(KeyAlgorithm))
def test_every_key_algorithm_is_accepted(identity_body: Factory, value: KeyAlgorithm) -> None:
    ident = parse_identity(
        identity_body(ca={"keyAlgorithm": str(value)}, certificate={"keyAlgorithm": str(value)})
    )
    assert ident.ca.key_algorithm is value
    assert ident.certificate.key_algorithm is value


def test_workload_kind_is_required(identity_body: Factory) -> None:
    problems = identity_problems(identity_body, workloads=[{"name": "x"}])
    assert list(problems) == ["spec.workloads[0].kind"]
    assert "required" in problems["spec.workloads[0].kind"]
    assert "Deployment, StatefulSet, DaemonSet" in problems["spec.workloads[0].kind"]


# ======================================================================================
# Durations
# ======================================================================================
@pytest.mark.parametrize("text", ["12", "5d", "-1h", "", "h", "1.h", "1h 30m", "1H", "P1D", "1e3s", "0x10s"])
@pytest.mark.parametrize(
    "field", ["spec.ca.duration", "spec.certificate.duration", "spec.jwt.rotationPeriod"]
)
def test_bad_duration_is_rejected_naming_the_field(identity_body: Factory, text: str, field: str) -> None:
    _, section, key = field.split(".")
    problems = identity_problems(identity_body, **{section: {key: text}})
    assert field in problems
    assert "not a duration" in problems[field]
    assert repr(text) in problems[field]


@pytest.mark.parametrize("value", [12, 1.5, True, ["1h"], {"h": 1}])
def test_non_string_duration_is_rejected(identity_body: Factory, value: Any) -> None:
    problems = identity_problems(identity_body, jwt={"rotationPeriod": value})
    assert list(problems) == ["spec.jwt.rotationPeriod"]
    assert "not a duration" in problems["spec.jwt.rotationPeriod"]


@pytest.mark.parametrize(
    "text",
    [
        "9s",
        "9999ms",
        "0s",
        "0h",
        f"{int(MAX_DURATION.total_seconds()) + 1}s",
        f"{int(MAX_DURATION.total_seconds() // 3600) + 1}h",
    ],
)
def test_out_of_range_duration_is_rejected_with_the_bounds(identity_body: Factory, text: str) -> None:
    problems = identity_problems(identity_body, ca={"duration": text})
    message = problems["spec.ca.duration"]
    assert "out of range" in message
    # the message states the real bounds (a user must be able to trust the numbers)
    assert format_duration(MIN_DURATION) in message
    assert format_duration(MAX_DURATION) in message


@pytest.mark.parametrize("text", ["10s", "10000ms", format_duration(MAX_DURATION), "87600h"])
def test_duration_bounds_are_inclusive(identity_body: Factory, text: str) -> None:
    assert parse_identity(identity_body(ca={"duration": text})).ca.duration == parse_duration(text)


@pytest.mark.parametrize(("renew", "duration"), [("720h", "720h"), ("721h", "720h"), ("2h", "1h")])
def test_renew_before_must_be_shorter_than_duration(
    identity_body: Factory, renew: str, duration: str
) -> None:
    problems = identity_problems(identity_body, certificate={"duration": duration, "renewBefore": renew})
    assert list(problems) == ["spec.certificate.renewBefore"]
    assert "shorter than spec.certificate.duration" in problems["spec.certificate.renewBefore"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("720h", timedelta(hours=720)),
        ("1h30m", timedelta(minutes=90)),
        ("90m", timedelta(minutes=90)),
        ("90s", timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
        ("500ms", timedelta(milliseconds=500)),
        ("1h1m1s", timedelta(seconds=3661)),
        ("2h2h", timedelta(hours=4)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(hours=720), "720h"),
        (timedelta(minutes=90), "1h30m"),
        (timedelta(seconds=61), "1m1s"),
        (timedelta(hours=1, seconds=5), "1h5s"),
        (timedelta(days=365), "8760h"),
    ],
)
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert parse_duration(text) == value


@given(st.integers(min_value=0, max_value=int(MAX_DURATION.total_seconds()) * 2))
def test_format_then_parse_round_trips_whole_seconds(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(["h", "m", "s"])), min_size=1, max_size=4))
def test_parse_then_format_is_canonical(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{u}" for n, u in parts)
    value = parse_duration(text)
    canonical = format_duration(value)
    assert parse_duration(canonical) == value
    assert format_duration(parse_duration(canonical)) == canonical


@pytest.mark.parametrize("text", ["12", "5d", "-1h", "", "1h-1m", None, 5])
def test_parse_duration_raises_value_error(text: Any) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


# ======================================================================================
# Wrong JSON types
# ======================================================================================
TYPE_CASES = [
    # (spec fragment, path, words the message must contain)
    ({"dnsNames": "dgc.example.com"}, "spec.dnsNames", "must be a list, got a string"),
    ({"acceptFrom": {"namespaces": "*"}}, "spec.acceptFrom.namespaces", "must be a list, got a string"),
    ({"workloads": {"kind": "Deployment", "name": "x"}}, "spec.workloads", "must be a list, got an object"),
    ({"keystores": {"formats": "PKCS12"}}, "spec.keystores.formats", "must be a list, got a string"),
    ({"serviceName": 5}, "spec.serviceName", "must be a string, got a number"),
    ({"trustDomain": 1.5}, "spec.trustDomain", "must be a string, got a number"),
    ({"jwt": {"issuer": 7}}, "spec.jwt.issuer", "must be a string, got a number"),
    ({"mountPath": ["/a"]}, "spec.mountPath", "must be a string, got a list"),
    ({"ca": ["SelfSigned"]}, "spec.ca", "must be an object, got a list"),
    ({"certificate": "ECDSAP256"}, "spec.certificate", "must be an object, got a string"),
    ({"jwt": []}, "spec.jwt", "must be an object, got a list"),
    (
        {"keystores": {"passwordSecretRef": "pw"}},
        "spec.keystores.passwordSecretRef",
        "must be an object, got a string",
    ),
    ({"jwt": {"enabled": "yes"}}, "spec.jwt.enabled", "must be true or false, got a string"),
    (
        {"keystores": {"legacyPKCS12": 1}},
        "spec.keystores.legacyPKCS12",
        "must be true or false, got a number",
    ),
    ({"workloads": ["dgc"]}, "spec.workloads[0]", "must be an object, got a string"),
    ({"templates": [["a"]]}, "spec.templates[0]", "must be an object, got a list"),
    ({"dnsNames": [5]}, "spec.dnsNames[0]", "must be a non-empty string, got a number"),
    ({"jwt": {"revokedKids": [""]}}, "spec.jwt.revokedKids[0]", "must be a non-empty string"),
    (
        {"workloads": [{"kind": "Deployment", "name": "x", "containers": "app"}]},
        "spec.workloads[0].containers",
        "must be a list, got a string",
    ),
]


@pytest.mark.parametrize(("spec", "path", "words"), TYPE_CASES, ids=[c[1] for c in TYPE_CASES])
def test_wrong_type_names_path_and_types(
    identity_body: Factory, spec: dict[str, Any], path: str, words: str
) -> None:
    problems = identity_problems(identity_body, **spec)
    assert path in problems, problems
    assert words in problems[path]


def test_spec_that_is_not_an_object(identity_body: Factory) -> None:
    body = identity_body()
    body["spec"] = ["serviceName"]
    with pytest.raises(SpecError) as info:
        parse_identity(body)
    assert info.value.fields == ["spec"]
    assert "must be an object, got a list" in str(info.value)


RELATIONSHIP_TYPE_CASES = [
    ({"between": "dgc"}, "spec.between", "exactly two identities, got a string"),
    (
        {"between": [{"identity": "a"}, "b"]},
        "spec.between[1]",
        "must be an object with 'identity', got a string",
    ),
    ({"between": [{"identity": "a"}, {"namespace": "x"}]}, "spec.between[1].identity", "is required"),
    ({"mtls": True}, "spec.mtls", "must be an object, got a boolean"),
    ({"jwt": {"roles": "IMPERSONATION"}}, "spec.jwt.roles", "must be a list, got a string"),
    ({"jwt": {"audience": ["a"]}}, "spec.jwt.audience", "must be a string, got a list"),
    (
        {"sharedSecret": {"enabled": "true"}},
        "spec.sharedSecret.enabled",
        "must be true or false, got a string",
    ),
    ({"initiator": 1}, "spec.initiator", "must be a string, got a number"),
]


@pytest.mark.parametrize(
    ("spec", "path", "words"), RELATIONSHIP_TYPE_CASES, ids=[c[1] for c in RELATIONSHIP_TYPE_CASES]
)
def test_relationship_wrong_type(
    relationship_body: Factory, spec: dict[str, Any], path: str, words: str
) -> None:
    problems = relationship_problems(relationship_body(**spec))
    assert path in problems, problems
    assert words in problems[path]


SHARED_SECRET_CASES = [
    ({"enabled": True}, SharedSecretSpec()),
    ({"enabled": False, "group": "datahub"}, None),
    ({"enabled": True, "encoding": "hex", "clientId": "__datahub_system", "group": "datahub", "gracePeriod": "10m"},
     SharedSecretSpec(SecretEncoding.HEX, "__datahub_system", "datahub", timedelta(minutes=10))),
    ({"enabled": True, "encoding": "raw"}, SharedSecretSpec(SecretEncoding.RAW)),
]


@pytest.mark.parametrize(("shared", "expected"), SHARED_SECRET_CASES)
def test_relationship_shared_secret(relationship_body: Factory, shared: dict[str, Any],
                                    expected: SharedSecretSpec | None) -> None:
    assert parse_relationship(relationship_body(sharedSecret=shared)).shared_secret == expected


SHARED_SECRET_PROBLEMS = [
    ({"encoding": "base64"}, "spec.sharedSecret.encoding", "allowed values are base64url, hex, raw"),
    ({"group": "DataHub"}, "spec.sharedSecret.group", "must be a DNS label"),
    ({"group": "g" * 64}, "spec.sharedSecret.group", "at most 63 characters"),
    ({"group": "-x"}, "spec.sharedSecret.group", "must be a DNS label"),
    ({"clientId": "two words"}, "spec.sharedSecret.clientId", "printable ASCII characters without spaces"),
    ({"clientId": ""}, "spec.sharedSecret.clientId", "printable ASCII"),
    ({"clientId": "x" * 254}, "spec.sharedSecret.clientId", "at most 253 allowed"),
    ({"gracePeriod": "5s"}, "spec.sharedSecret.gracePeriod", "out of range"),
    ({"gracePeriod": "soon"}, "spec.sharedSecret.gracePeriod", ""),
]


@pytest.mark.parametrize(("shared", "path", "words"), SHARED_SECRET_PROBLEMS)
def test_relationship_shared_secret_problems(relationship_body: Factory, shared: dict[str, Any], path: str,
                                             words: str) -> None:
    problems = relationship_problems(relationship_body(sharedSecret={"enabled": True, **shared}))
    assert path in problems, problems
    assert words in problems[path]


def test_a_grouped_shared_secret_lifts_the_name_limit(relationship_body: Factory) -> None:
    """The group's Secret is named after the group, so the relationship's name is no label."""
    long_name = "r" * 70
    assert "metadata.name" in relationship_problems(relationship_body(name=long_name, sharedSecret={"enabled": True}))
    rel = parse_relationship(relationship_body(name=long_name, sharedSecret={"enabled": True, "group": "g"}))
    assert rel.shared_secret == SharedSecretSpec(group="g")


@pytest.mark.parametrize("spec", [None, [], "x"], ids=["missing", "list", "string"])
def test_relationship_needs_a_spec_object(relationship_body: Factory, spec: Any) -> None:
    body = relationship_body()
    if spec is None:
        del body["spec"]
    else:
        body["spec"] = spec
    problems = relationship_problems(body)
    assert list(problems) == ["spec"]


# ======================================================================================
# Unknown fields
# ======================================================================================
UNKNOWN_CASES = [
    ({"dnsName": ["x"]}, "spec.dnsName", "dnsNames"),
    ({"ca": {"keyAlgo": "RSA2048"}}, "spec.ca.keyAlgo", "keyAlgorithm"),
    (
        {"ca": {"source": "Secret", "secretRef": {"name": "c", "namespace": "x"}}},
        "spec.ca.secretRef.namespace",
        "name",
    ),
    ({"certificate": {"renewbefore": "1h"}}, "spec.certificate.renewbefore", "renewBefore"),
    ({"jwt": {"revokedKid": ["a"]}}, "spec.jwt.revokedKid", "revokedKids"),
    ({"keystores": {"format": ["JKS"]}}, "spec.keystores.format", "formats"),
    (
        {"keystores": {"passwordSecretRef": {"name": "p", "field": "x"}}},
        "spec.keystores.passwordSecretRef.field",
        "key",
    ),
    (
        {"workloads": [{"kind": "Deployment", "name": "x", "container": ["a"]}]},
        "spec.workloads[0].container",
        "containers",
    ),
    (
        {"templates": [{"name": "t", "configmapRef": {"name": "a", "key": "b"}}]},
        "spec.templates[0].configmapRef",
        "configMapRef",
    ),
    (
        {"templates": [{"name": "t", "configMapRef": {"name": "a", "key": "b", "optional": True}}]},
        "spec.templates[0].configMapRef.optional",
        "key",
    ),
    ({"acceptFrom": {"namespace": ["a"]}}, "spec.acceptFrom.namespace", "namespaces"),
]


@pytest.mark.parametrize(("spec", "path", "hint"), UNKNOWN_CASES, ids=[c[1] for c in UNKNOWN_CASES])
def test_unknown_field_is_rejected_naming_its_path(
    identity_body: Factory, spec: dict[str, Any], path: str, hint: str
) -> None:
    problems = identity_problems(identity_body, **spec)
    assert path in problems, problems
    assert "unknown field" in problems[path]
    assert hint in problems[path]  # the allowed fields are listed, so the typo is obvious


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"initator": "dgc"}, "spec.initator"),
        ({"mtls": {"enable": True}}, "spec.mtls.enable"),
        ({"jwt": {"role": ["x"]}}, "spec.jwt.role"),
        ({"sharedSecret": {"enabled": True, "length": 64}}, "spec.sharedSecret.length"),
        ({"between": [{"identity": "a", "ns": "x"}, {"identity": "b"}]}, "spec.between[0].ns"),
    ],
)
def test_relationship_unknown_field(relationship_body: Factory, spec: dict[str, Any], path: str) -> None:
    problems = relationship_problems(relationship_body(**spec))
    assert path in problems
    assert "unknown field" in problems[path]


# ======================================================================================
# Relationship structure
# ======================================================================================
@pytest.mark.parametrize(
    "between",
    [
        [{"identity": "a"}],
        [{"identity": "a"}, {"identity": "b"}, {"identity": "c"}],
        [],
    ],
    ids=["one", "three", "none"],
)
def test_between_needs_exactly_two(relationship_body: Factory, between: list[Any]) -> None:
    problems = relationship_problems(relationship_body(between=between))
    assert list(problems) == ["spec.between"]
    assert f"got {len(between)} items" in problems["spec.between"]


def test_between_missing(relationship_body: Factory) -> None:
    body = relationship_body()
    del body["spec"]["between"]
    problems = relationship_problems(body)
    assert "exactly two identities, got null" in problems["spec.between"]


@pytest.mark.parametrize("second", [{"identity": "dgc"}, {"identity": "dgc", "namespace": "gov"}])
def test_same_identity_twice_is_rejected(relationship_body: Factory, second: dict[str, str]) -> None:
    body = relationship_body(namespace="gov", between=[{"identity": "dgc"}, second])
    problems = relationship_problems(body)
    assert list(problems) == ["spec.between[1]"]
    assert "gov/dgc twice" in problems["spec.between[1]"]


def test_same_name_in_two_namespaces_is_two_identities(relationship_body: Factory) -> None:
    rel = parse_relationship(relationship_body("dgc", "dgc", namespace="gov", b_namespace="other"))
    assert rel.between == (IdentityRef("gov", "dgc"), IdentityRef("other", "dgc"))


@pytest.mark.parametrize(
    ("initiator", "expected"),
    [
        ("dgc", IdentityRef("gov", "dgc")),
        ("jobserver", IdentityRef("jobs", "jobserver")),
        ("jobs/jobserver", IdentityRef("jobs", "jobserver")),
        ("gov/dgc", IdentityRef("gov", "dgc")),
    ],
)
def test_initiator_resolves_to_one_side(
    relationship_body: Factory, initiator: str, expected: IdentityRef
) -> None:
    rel = parse_relationship(
        relationship_body("dgc", "jobserver", namespace="gov", b_namespace="jobs", initiator=initiator)
    )
    assert rel.initiator == expected
    other = rel.peer_of(expected)
    assert other is not None
    assert rel.sends_to(expected) and not rel.sends_to(other)


@pytest.mark.parametrize("initiator", ["nobody", "gov/jobserver", "jobs/dgc"])
def test_initiator_not_among_the_two_is_rejected(relationship_body: Factory, initiator: str) -> None:
    problems = relationship_problems(
        relationship_body("dgc", "jobserver", namespace="gov", b_namespace="jobs", initiator=initiator)
    )
    assert list(problems) == ["spec.initiator"]
    assert "gov/dgc" in problems["spec.initiator"]
    assert "jobs/jobserver" in problems["spec.initiator"]


def test_ambiguous_initiator_needs_a_namespace(relationship_body: Factory) -> None:
    body = relationship_body("dgc", "dgc", namespace="gov", b_namespace="other", initiator="dgc")
    assert "namespace/name" in relationship_problems(body)["spec.initiator"]
    body = relationship_body("dgc", "dgc", namespace="gov", b_namespace="other", initiator="other/dgc")
    assert parse_relationship(body).initiator == IdentityRef("other", "dgc")


def test_relationship_reports_all_problems_at_once(relationship_body: Factory) -> None:
    body = relationship_body(
        initator="x", mtls={"enabled": "no"}, jwt={"roles": "R", "audienc": "a"}, sharedSecret=[]
    )
    problems = relationship_problems(body)
    assert set(problems) == {
        "spec.initator",
        "spec.mtls.enabled",
        "spec.jwt.roles",
        "spec.jwt.audienc",
        "spec.sharedSecret",
    }


# ======================================================================================
# Templates
# ======================================================================================
#: docs/design.md §3: every file trustwire writes into the mounted directory (credentials + trust).
MOUNTED_KEYS = [
    "tls.crt",
    "tls.key",
    "ca.crt",
    "keystore.p12",
    "keystore.jks",
    "keystore.password",
    "jwt.key",
    "jwt.jwk",
    "jwt.kid",
    "trust-bundle.pem",
    "truststore.p12",
    "truststore.jks",
    "truststore.password",
    "peers.jwks",
    "peers.json",
    "enrollment-ca.crt",
    "shared-jobserver.key",
    "shared-x",
]


@pytest.mark.parametrize("name", MOUNTED_KEYS)
def test_template_name_may_not_collide_with_a_contract_key(identity_body: Factory, name: str) -> None:
    problems = identity_problems(identity_body, templates=[{"name": name, "inline": "x"}])
    assert list(problems) == ["spec.templates[0].name"]
    assert "collides with a file trustwire writes" in problems["spec.templates[0].name"]


@pytest.mark.parametrize(
    "name", ["application.properties", "tls.crt.bak", "my-shared-x", "Peers.json", "a_b-c.1"]
)
def test_template_names_that_do_not_collide_are_fine(identity_body: Factory, name: str) -> None:
    ident = parse_identity(identity_body(templates=[{"name": name, "inline": "x"}]))
    assert [t.name for t in ident.templates] == [name]


@pytest.mark.parametrize("name", ["", "a/b", "../x", "a b", None])
def test_template_name_must_be_a_file_name(identity_body: Factory, name: str | None) -> None:
    problems = identity_problems(identity_body, templates=[{"name": name, "inline": "x"}])
    assert "spec.templates[0].name" in problems


@pytest.mark.parametrize(
    ("item", "path", "words"),
    [
        ({"name": "t"}, "spec.templates[0]", "exactly one of inline or configMapRef"),
        (
            {"name": "t", "inline": "x", "configMapRef": {"name": "a", "key": "b"}},
            "spec.templates[0]",
            "exactly one of inline or configMapRef",
        ),
        (
            {"name": "t", "configMapRef": {"name": "a"}},
            "spec.templates[0].configMapRef",
            "needs both name and key",
        ),
        (
            {"name": "t", "configMapRef": {"key": "b"}},
            "spec.templates[0].configMapRef",
            "needs both name and key",
        ),
    ],
)
def test_template_needs_exactly_one_source(
    identity_body: Factory, item: dict[str, Any], path: str, words: str
) -> None:
    problems = identity_problems(identity_body, templates=[item])
    assert path in problems
    assert words in problems[path]


def test_template_names_are_unique(identity_body: Factory) -> None:
    problems = identity_problems(
        identity_body, templates=[{"name": "a", "inline": "1"}, {"name": "a", "inline": "2"}]
    )
    assert list(problems) == ["spec.templates[1].name"]
    assert "used by two templates" in problems["spec.templates[1].name"]


def test_inline_template_size_is_bounded(identity_body: Factory) -> None:
    problems = identity_problems(identity_body, templates=[{"name": "a", "inline": "x" * (64 * 1024 + 1)}])
    assert "at most 65536" in problems["spec.templates[0].inline"]
    ok = parse_identity(identity_body(templates=[{"name": "a", "inline": "x" * (64 * 1024)}]))
    assert len(ok.templates[0].inline or "") == 64 * 1024


# ======================================================================================
# Keystores
# ======================================================================================
@pytest.mark.parametrize(
    ("formats", "expected"),
    [
        (["PKCS12"], (KeystoreFormat.PKCS12,)),
        (["JKS"], (KeystoreFormat.JKS,)),
        (["PKCS12", "JKS"], (KeystoreFormat.PKCS12, KeystoreFormat.JKS)),
        (["JKS", "JKS"], (KeystoreFormat.JKS,)),
        ([], ()),
    ],
)
def test_keystore_formats(
    identity_body: Factory, formats: list[str], expected: tuple[KeystoreFormat, ...]
) -> None:
    assert parse_identity(identity_body(keystores={"formats": formats})).keystores.formats == expected


def test_keystore_formats_are_bounded(identity_body: Factory) -> None:
    problems = identity_problems(identity_body, keystores={"formats": ["PKCS12", "JKS", "PKCS12"]})
    assert "has 3 items; at most 2 allowed" in problems["spec.keystores.formats"]


@pytest.mark.parametrize("value", ["pkcs12", "PEM", "P12"])
def test_keystore_format_is_case_sensitive(identity_body: Factory, value: str) -> None:
    problems = identity_problems(identity_body, keystores={"formats": [value]})
    assert "allowed values are PKCS12, JKS" in problems["spec.keystores.formats[0]"]


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ({"name": "pw"}, SecretKeyRef("pw", "password")),
        ({"name": "pw", "key": "store-pass"}, SecretKeyRef("pw", "store-pass")),
        (None, None),
    ],
)
def test_password_secret_ref(
    identity_body: Factory, ref: dict[str, str] | None, expected: SecretKeyRef | None
) -> None:
    ident = parse_identity(identity_body(keystores={"passwordSecretRef": ref}))
    assert ident.keystores.password_secret == expected


@pytest.mark.parametrize("ref", [{"key": "password"}, {"name": ""}, {"name": 5}])
def test_password_secret_ref_needs_a_name(identity_body: Factory, ref: dict[str, Any]) -> None:
    problems = identity_problems(identity_body, keystores={"passwordSecretRef": ref})
    assert any(p.startswith("spec.keystores.passwordSecretRef.name") for p in problems), problems


# ======================================================================================
# Other field validation
# ======================================================================================
@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"serviceName": "DGC"}, "spec.serviceName"),
        ({"serviceName": "a" * 64}, "spec.serviceName"),
        ({"serviceName": "a.b"}, "spec.serviceName"),
        ({"serviceName": "-a"}, "spec.serviceName"),
        ({"dnsNames": ["ok.example", "Bad_Name"]}, "spec.dnsNames[1]"),
        ({"dnsNames": ["a..b"]}, "spec.dnsNames[0]"),
        ({"dnsNames": ["x" * 254]}, "spec.dnsNames[0]"),
        ({"trustDomain": "Example.COM"}, "spec.trustDomain"),
        ({"trustDomain": "spiffe://x"}, "spec.trustDomain"),
        ({"mountPath": "var/run"}, "spec.mountPath"),
        ({"mountPath": "/a/../b"}, "spec.mountPath"),
        ({"mountPath": "/a:b"}, "spec.mountPath"),
        ({"ca": {"source": "Secret"}}, "spec.ca.secretRef.name"),
        ({"workloads": [{"kind": "Deployment"}]}, "spec.workloads[0].name"),
        (
            {"workloads": [{"kind": "Deployment", "name": "a"}, {"kind": "Deployment", "name": "a"}]},
            "spec.workloads[1]",
        ),
        ({"dnsNames": [f"n{i}.example" for i in range(101)]}, "spec.dnsNames"),
        ({"workloads": [{"kind": "Deployment", "name": f"w{i}"} for i in range(51)]}, "spec.workloads"),
        ({"templates": [{"name": f"t{i}", "inline": "x"} for i in range(21)]}, "spec.templates"),
        ({"acceptFrom": {"namespaces": [f"n{i}" for i in range(101)]}}, "spec.acceptFrom.namespaces"),
    ],
)
def test_invalid_values_name_their_path(identity_body: Factory, spec: dict[str, Any], path: str) -> None:
    assert path in identity_problems(identity_body, **spec)


def test_same_workload_name_of_two_kinds_is_fine(identity_body: Factory) -> None:
    ident = parse_identity(
        identity_body(workloads=[{"kind": "Deployment", "name": "a"}, {"kind": "StatefulSet", "name": "a"}])
    )
    assert [w.kind for w in ident.workloads] == [WorkloadKind.DEPLOYMENT, WorkloadKind.STATEFULSET]


def test_ca_secret_ref_is_ignored_for_self_signed(identity_body: Factory) -> None:
    ident = parse_identity(identity_body(ca={"secretRef": {"name": "my-ca"}}))
    assert ident.ca.source is CASource.SELF_SIGNED
    assert ident.ca.secret_name is None


def test_all_problems_are_reported_at_once(identity_body: Factory) -> None:
    with pytest.raises(SpecError) as info:
        parse_identity(
            identity_body(
                dnsName=["x"],
                ca={"keyAlgorithm": "DSA", "duration": "5d"},
                certificate={"renewBefore": "-1h"},
                jwt={"algorithm": "none", "enabled": "yes"},
                workloads=[{"kind": "Job", "name": "x"}],
                templates=[{"name": "tls.crt", "inline": "x"}],
                deletionPolicy="Keep",
            )
        )
    error = info.value
    assert set(error.fields) == {
        "spec.dnsName",
        "spec.ca.keyAlgorithm",
        "spec.ca.duration",
        "spec.certificate.renewBefore",
        "spec.jwt.algorithm",
        "spec.jwt.enabled",
        "spec.workloads[0].kind",
        "spec.templates[0].name",
        "spec.deletionPolicy",
    }
    assert len(error.problems) == len(error.fields) == 9
    text = str(error)
    for field in error.fields:  # the one-line message (Ready condition, Event) names every field
        assert f"{field}: " in text


# ======================================================================================
# Derived properties
# ======================================================================================
def test_all_dns_names_defaults_then_extras_without_repeats(identity_body: Factory) -> None:
    ident = parse_identity(
        identity_body(
            name="dgc",
            namespace="gov",
            serviceName="svc",
            dnsNames=["svc.gov", "dgc.example.com", "dgc.example.com"],
        )
    )
    assert ident.all_dns_names == (
        "svc",
        "svc.gov",
        "svc.gov.svc",
        "svc.gov.svc.cluster.local",
        "dgc.example.com",
    )


def test_all_dns_names_use_metadata_name_by_default(identity_body: Factory) -> None:
    ident = parse_identity(identity_body(name="jobserver", namespace="jobs"))
    assert ident.all_dns_names == (
        "jobserver",
        "jobserver.jobs",
        "jobserver.jobs.svc",
        "jobserver.jobs.svc.cluster.local",
    )


@pytest.mark.parametrize(
    ("trust_domain", "issuer", "spiffe", "expected_issuer"),
    [
        (None, None, "spiffe://cluster.local/ns/gov/sid/dgc", "spiffe://cluster.local/ns/gov/sid/dgc"),
        (
            "prod.example",
            None,
            "spiffe://prod.example/ns/gov/sid/dgc",
            "spiffe://prod.example/ns/gov/sid/dgc",
        ),
        (None, "https://idp.example", "spiffe://cluster.local/ns/gov/sid/dgc", "https://idp.example"),
    ],
)
def test_spiffe_id_and_issuer(
    identity_body: Factory, trust_domain: str | None, issuer: str | None, spiffe: str, expected_issuer: str
) -> None:
    spec: dict[str, Any] = {"serviceName": "other"}  # the SPIFFE ID uses the identity name, not the service
    if trust_domain:
        spec["trustDomain"] = trust_domain
    if issuer:
        spec["jwt"] = {"issuer": issuer}
    ident = parse_identity(identity_body(name="dgc", namespace="gov", spec=spec))
    assert ident.spiffe_id == spiffe
    assert ident.issuer == expected_issuer


@pytest.mark.parametrize(
    ("accept_from", "namespace", "expected"),
    [
        ([], "gov", True),
        ([], "other", False),
        (["other"], "other", True),
        (["other"], "third", False),
        (["*"], "anything", True),
        (["a", "*"], "b", True),
        (["Gov"], "gov", True),  # own namespace always
    ],
)
def test_accepts(identity_body: Factory, accept_from: list[str], namespace: str, expected: bool) -> None:
    ident = parse_identity(identity_body(namespace="gov", acceptFrom={"namespaces": accept_from}))
    assert ident.accepts(namespace) is expected


def test_spec_error_fields_and_message() -> None:
    error = SpecError([("spec.a", "bad"), ("spec.b", "worse")])
    assert error.fields == ["spec.a", "spec.b"]
    assert str(error) == "spec.a: bad; spec.b: worse"
    assert isinstance(error, ValueError)


# --------------------------------------------------------------------------------------
# The small parts every message is made of, each alone.
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("short", "'short'"),
        ("x" * 80, repr("x" * 80)),
        ("x" * 81, f"{'x' * 80!r}... (81 characters)"),
        (True, "True"),
        (None, "None"),
        (12, "12"),
        (10**100, "a number of 101 digits"),
        ([1], "a list"),
        ({"a": 1}, "an object"),
    ],
    ids=["short", "at-limit", "cut", "bool", "null", "int", "huge-int", "list", "object"],
)
def test_quote_bounds_every_user_value(value: Any, expected: str) -> None:
    assert quote(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [({}, "an object"), ([], "a list"), ("", "a string"), (False, "a boolean"), (1, "a number"),
     (1.5, "a number"), (None, "null"), (b"x", "bytes")],
)
def test_type_name_speaks_json(value: Any, expected: str) -> None:
    assert type_name(value) == expected


@pytest.mark.parametrize(
    ("read", "value", "result", "problem"),
    [
        (lambda r, p: r.string(p, "k", "spec"), "v", "v", None),
        (lambda r, p: r.string(p, "k", "spec"), 5, None, "must be a string, got a number"),
        (lambda r, p: r.string(p, "k", "spec", max_length=2), "abc", None, "is 3 characters long; at most 2 allowed"),
        (lambda r, p: r.boolean(p, "k", "spec", True), False, False, None),
        (lambda r, p: r.boolean(p, "k", "spec", True), "no", True, "must be true or false, got a string"),
        (lambda r, p: r.array(p, "k", "spec", 1), [1, 2], [], "has 2 items; at most 1 allowed"),
        (lambda r, p: r.strings(p, "k", "spec"), ["a", ""], ("a",), "must be a non-empty string, got a string"),
        (lambda r, p: r.enum(p, "k", "spec", CASource, CASource.SELF_SIGNED), "Secret", CASource.SECRET, None),
        (lambda r, p: r.enum(p, "k", "spec", CASource, CASource.SELF_SIGNED), "CA", CASource.SELF_SIGNED,
         "'CA' is not supported; allowed values are SelfSigned, Secret"),
        (lambda r, p: r.duration(p, "k", "spec", timedelta(hours=1)), "90m", timedelta(minutes=90), None),
        (lambda r, p: r.duration(p, "k", "spec", timedelta(hours=1)), "1s", timedelta(hours=1),
         "'1s' is out of range; allowed from 10s to 262800h"),
        (lambda r, p: r.section(p, "k", "spec", {"a": "string"}), {"b": 1}, {"b": 1},
         "unknown field; allowed fields are a"),
        (lambda r, p: r.element(p["k"], "spec.k", {}), "x", None, "must be an object, got a string"),
    ],
    ids=["string", "string-type", "string-long", "boolean", "boolean-type", "array-long", "strings-empty",
         "enum", "enum-unknown", "duration", "duration-range", "section-unknown", "element-type"],
)
def test_reader_reads_one_field_and_reports_its_problem(
    read: Callable[[Reader, dict[str, Any]], Any], value: Any, result: Any, problem: str | None
) -> None:
    reader = Reader()
    assert read(reader, {"k": value}) == result
    assert [message for _, message in reader.problems] == ([problem] if problem else [])
    if problem is not None:
        assert reader.problems[0][0].startswith("spec.k")


def test_reader_reads_an_absent_field_as_its_default_without_a_problem() -> None:
    reader = Reader()
    assert reader.string({}, "k", "spec", default="d") == "d"
    assert reader.boolean({}, "k", "spec", True) is True
    assert reader.strings({}, "k", "spec") == ()
    assert reader.section({}, "k", "spec", {}) == {}
    assert reader.problems == []
    reader.raise_problems()


# ===============================================================================

# External members
# ======================================================================================
def _external(**fields: Any) -> dict[str, Any]:
    return {"external": {"name": "onprem", "caBundleRef": {"name": "onprem-ca"}} | fields}


EXTERNAL_CASES = [
    ([{"identity": "dgc"}, _external(name=None)], "spec.between[1].external.name", "is required"),
    ([{"identity": "dgc"}, _external(caBundleRef={})], "spec.between[1].external.caBundleRef.name", "is required"),
    ([{"identity": "dgc"}, _external(caBundleRef={"name": "c", "kind": "Vault"})],
     "spec.between[1].external.caBundleRef.kind", "allowed values are ConfigMap, Secret"),
    ([{"identity": "dgc"}, _external(caBundleRef={"name": "c", "key": ""})],
     "spec.between[1].external.caBundleRef.key", "must not be empty"),
    ([{"identity": "dgc"}, _external(caBundleRef={"name": "c", "keys": "x"})],
     "spec.between[1].external.caBundleRef.keys", "unknown field"),
    ([{"identity": "dgc"}, _external() | {"namespace": "x"}], "spec.between[1].namespace",
     "applies to identity members only"),
    ([{"identity": "dgc"} | _external(), {"identity": "x"}], "spec.between[0]", "names identity and external"),
    ([_external(), _external(name="other")], "spec.between", "two members outside the cluster"),
]


@pytest.mark.parametrize(("between", "path", "words"), EXTERNAL_CASES, ids=[c[1] + ":" + c[2] for c in EXTERNAL_CASES])
def test_external_member_problems(between: list[Any], path: str, words: str) -> None:
    body = {"apiVersion": "trustwire.io/v1alpha1", "kind": "TrustRelationship",
            "metadata": {"name": "r", "namespace": "gov"}, "spec": {"between": between}}
    problems = relationship_problems(body)
    assert path in problems, problems
    assert words in problems[path]


@pytest.mark.parametrize(
    ("spec", "path", "words"),
    [
        ({"sharedSecret": {"enabled": True}}, "spec.sharedSecret.enabled", "beside external member onprem"),
        ({"initiator": "nobody"}, "spec.initiator", "must name one of gov/dgc or gov/onprem"),
    ],
)
def test_external_member_with_other_fields(spec: dict[str, Any], path: str, words: str) -> None:
    body = {"apiVersion": "trustwire.io/v1alpha1", "kind": "TrustRelationship",
            "metadata": {"name": "r", "namespace": "gov"}, "spec": {"between": [{"identity": "dgc"}, _external()],
                                                                     **spec}}
    problems = relationship_problems(body)
    assert path in problems and words in problems[path], problems


def test_external_member_defaults_and_confirmation() -> None:
    from trustwire.model import BundleKind, ExternalPeer, IdentityRef

    body = {"apiVersion": "trustwire.io/v1alpha1", "kind": "TrustRelationship",
            "metadata": {"name": "r", "namespace": "gov",
                         "annotations": {"trustwire.io/external-confirmed": "AA:BB  cc,dd"}},
            "spec": {"between": [_external(), {"identity": "dgc"}], "initiator": "onprem"}}
    rel = parse_relationship(body)
    assert rel.between == (IdentityRef("gov", "dgc"),)
    assert rel.external == ExternalPeer("onprem", rel.external.ca_bundle, 0, frozenset({"aabb", "cc", "dd"}))  # type: ignore[union-attr]
    assert (rel.external.ca_bundle.kind, rel.external.ca_bundle.key) == (BundleKind.CONFIGMAP, "ca.crt")  # type: ignore[union-attr]
    assert rel.initiator == IdentityRef("gov", "onprem") == rel.external_ref
    assert rel.members == "gov/dgc and external peer onprem"
    assert rel.peer_of(IdentityRef("gov", "dgc")) is None


@pytest.mark.parametrize(("template", "path", "says"), [
    ({"labels": {"trustwire.io/identity": "x"}}, "spec.secretTemplate.labels['trustwire.io/identity']",
     "is trustwire's own key"),
    ({"annotations": {"ca.trustwire.io/x": "1"}}, "spec.secretTemplate.annotations['ca.trustwire.io/x']",
     "is trustwire's own key"),
    ({"labels": {"app.kubernetes.io/managed-by": "helm"}},
     "spec.secretTemplate.labels['app.kubernetes.io/managed-by']", "is trustwire's own key"),
    ({"labels": {"bad key": "x"}}, "spec.secretTemplate.labels['bad key']", "is not a valid key"),
    ({"labels": {"Example.COM/x": "y"}}, "spec.secretTemplate.labels['Example.COM/x']", "prefix that is not a DNS"),
    ({"labels": {"team": "not valid!"}}, "spec.secretTemplate.labels['team']", "is not a valid label value"),
    ({"labels": {"team": "v" * 64}}, "spec.secretTemplate.labels['team']", "is not a valid label value"),
    ({"annotations": {"note": 5}}, "spec.secretTemplate.annotations['note']", "must be a string, got"),
    ({"labels": {f"k{i}": "v" for i in range(33)}}, "spec.secretTemplate.labels", "at most 32 allowed"),
    ({"label": {}}, "spec.secretTemplate.label", "unknown field"),
])
def test_secret_template_refuses_keys_and_values_kubernetes_or_trustwire_would(
        identity_body: Factory, template: dict[str, Any], path: str, says: str) -> None:
    problems = identity_problems(identity_body, secretTemplate=template)
    assert says in problems[path], problems


def test_secret_template_keeps_what_is_valid_sorted(identity_body: Factory) -> None:
    ident = parse_identity(identity_body(secretTemplate={
        "labels": {"velero.io/backup": "daily", "team": "", "a.b-c_d": "X.y"},
        "annotations": {"reloader.stakater.com/match": "true", "note": "any text: at all\n"}}))
    assert ident.secret_template.labels == (("a.b-c_d", "X.y"), ("team", ""), ("velero.io/backup", "daily"))
    assert ident.secret_template.annotations == (("note", "any text: at all\n"),
                                                 ("reloader.stakater.com/match", "true"))
