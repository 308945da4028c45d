"""Hostile input through the pure layers: arbitrary and near-valid CR bodies, oversized specs,
template bombs, and garbage in stored material.

Properties:

* ``parse_identity`` / ``parse_relationship`` return a result or raise :class:`SpecError`
  — nothing else — and every problem names a ``spec…`` path; messages stay bounded
  however large the input.
* a body that parses goes through the full pure reconcile (``plan_identity``) without
  raising, and the planned material is consistent.
* oversized specs end in a clear ``SpecError`` (or a ``TemplateError`` condition) and the
  test completes (pytest-timeout per test; no timing assertions).
* garbage in the stored Secrets never makes the planner raise; what it plans verifies.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.integration.faults import jwk_kid, material_problems
from trustwire import names
from trustwire.model import (
    IDENTITY_FIELDS,
    MAX_DNS_NAMES,
    MAX_DURATION,
    MAX_INLINE_TEMPLATE,
    MAX_TEMPLATES,
    MIN_DURATION,
    RELATIONSHIP_FIELDS,
    ServiceIdentity,
    SpecError,
    TrustRelationship,
    parse_identity,
    parse_relationship,
)
from trustwire.pki import JwtAlgorithm, KeyAlgorithm
from trustwire.plan.identity import IdentityObservation, IdentityPlan, StoredObject, plan_identity

NOW = datetime(2031, 3, 14, 9, 26, 53, tzinfo=UTC)
TEN_MB = 10 * 1024 * 1024
#: A SpecError message that lands in a status condition must stay readable and small.
MAX_MESSAGE = 16 * 1024
MAX_PROBLEM = 2 * 1024

def fast(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


# ======================================================================================
# Strategies
# ======================================================================================
def _field_names(fields: Mapping[str, Any]) -> set[str]:
    out: set[str] = set()
    for key, kind in fields.items():
        out.add(key)
        item = kind[0] if isinstance(kind, list) else kind
        if isinstance(item, dict):
            out |= _field_names(item)
    return out


KNOWN_WORDS = sorted(_field_names(IDENTITY_FIELDS) | _field_names(RELATIONSHIP_FIELDS) | {
    "SelfSigned", "Secret", "ECDSAP256", "RSA2048", "Ed25519", "ES256", "EdDSA", "PKCS12", "JKS",
    "Deployment", "StatefulSet", "Retain", "Delete", "720h", "240h", "1h30m", "10s", "*", "dgc", "jobs"})

keys = st.sampled_from(KNOWN_WORDS) | st.text(max_size=12)
leaves = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
          | st.sampled_from(KNOWN_WORDS) | st.text(max_size=40))
json_values = st.recursive(
    leaves, lambda children: st.lists(children, max_size=6) | st.dictionaries(keys, children, max_size=6),
    max_leaves=40)
# names as a real API server admits them (DNS-1123 labels: no trailing '-')
metadata = st.fixed_dictionaries({"name": st.from_regex(r"[a-z]([a-z0-9-]{0,19}[a-z0-9])?", fullmatch=True),
                                  "namespace": st.from_regex(r"[a-z]([a-z0-9-]{0,19}[a-z0-9])?", fullmatch=True)})


def _body(kind: str, meta: Any, spec: Any) -> dict[str, Any]:
    return {"apiVersion": "trustwire.io/v1alpha1", "kind": kind, "metadata": meta, "spec": spec}


VALID_IDENTITY_SPEC: dict[str, Any] = {
    "serviceName": "dgc",
    "dnsNames": ["dgc.example.com", "*.dgc.internal"],
    "trustDomain": "cluster.local",
    "ca": {"source": "SelfSigned", "keyAlgorithm": "ECDSAP256", "duration": "8760h"},
    "certificate": {"keyAlgorithm": "ECDSAP384", "duration": "720h", "renewBefore": "240h"},
    "jwt": {"enabled": True, "algorithm": "ES256", "rotationPeriod": "720h", "revokedKids": ["old"],
            "issuer": "https://issuer.example"},
    "keystores": {"formats": ["PKCS12", "JKS"], "legacyPKCS12": False},
    "workloads": [{"kind": "Deployment", "name": "dgc", "containers": ["app"]},
                  {"kind": "StatefulSet", "name": "dgc-db", "containers": []}],
    "mountPath": "/var/run/trustwire",
    "templates": [{"name": "application.properties",
                   "inline": "kid={{ self.kid }}\n{% for p in peers %}{{ p.identity }}={{ p.kids|join(',') }}\n"
                             "{% endfor %}ca={{ self.caFingerprint }}\n"},
                  {"name": "from-cm.conf", "configMapRef": {"name": "tpl", "key": "t"}}],
    "acceptFrom": {"namespaces": ["jobs", "*"]},
    "deletionPolicy": "Retain",
}
VALID_RELATIONSHIP_SPEC: dict[str, Any] = {
    "between": [{"identity": "dgc"}, {"identity": "jobserver", "namespace": "jobs"}],
    "initiator": "dgc",
    "mtls": {"enabled": True},
    "jwt": {"enabled": True, "roles": ["IMPERSONATION"], "audience": "pf", "scopes": ["read"]},
    "sharedSecret": {"enabled": True},
}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (dict keys, list indexes) inside a JSON value."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def near_valid(draw: st.DrawFn, valid: Mapping[str, Any]) -> dict[str, Any]:
    """``valid`` with one field mutated: replaced by any JSON value, deleted, or given a stranger sibling."""
    spec = copy.deepcopy(dict(valid))
    path = draw(st.sampled_from(_paths(spec)))
    parent: Any = spec
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    action = draw(st.sampled_from(["replace", "replace", "delete", "sibling", "wrap"]))
    if action == "replace":
        parent[last] = draw(json_values)
    elif action == "delete":
        del parent[last]
    elif action == "wrap":
        parent[last] = [parent[last]] if draw(st.booleans()) else {"value": parent[last]}
    elif isinstance(parent, dict):
        parent[draw(keys)] = draw(json_values)
    else:
        parent.append(draw(json_values))
    return spec


def _check_spec_error(exc: SpecError) -> None:
    assert exc.problems, "a SpecError must say what is wrong"
    for path, message in exc.problems:
        assert isinstance(path, str) and (path == "spec" or path.startswith(("spec.", "spec[", "metadata."))), path
        assert isinstance(message, str) and message, (path, message)
        assert len(path) + len(message) <= MAX_PROBLEM, f"{path}: {len(message)} characters"
    assert len(str(exc)) <= MAX_MESSAGE, f"message is {len(str(exc))} characters"


def _parse(parser: Any, body: Mapping[str, Any]) -> Any:
    try:
        return parser(body)
    except SpecError as exc:
        _check_spec_error(exc)
        return exc


def _check_identity(ident: ServiceIdentity) -> None:
    """What a parsed identity promises: every bound holds."""
    assert len(ident.dns_names) <= MAX_DNS_NAMES
    assert len(ident.templates) <= MAX_TEMPLATES
    assert all(t.inline is None or len(t.inline) <= MAX_INLINE_TEMPLATE for t in ident.templates)
    assert all((t.inline is None) != (t.config_map is None) for t in ident.templates)
    for value in (ident.ca.duration, ident.certificate.duration, ident.certificate.renew_before,
                  ident.jwt.rotation_period):
        assert MIN_DURATION <= value <= MAX_DURATION
    assert ident.certificate.renew_before < ident.certificate.duration
    assert ident.mount_path.startswith("/")
    assert len({t.name for t in ident.templates}) == len(ident.templates)


def _check_relationship(rel: TrustRelationship) -> None:
    assert len(rel.between) == 2 and rel.between[0] != rel.between[1]
    assert rel.initiator is None or rel.initiator in rel.between


# ======================================================================================
# Arbitrary and near-valid bodies through the parsers
# ======================================================================================
@fast(300)
@given(meta=metadata, spec=json_values)
def test_arbitrary_identity_spec_is_parsed_or_rejected_with_spec_paths(meta: Any, spec: Any) -> None:
    result = _parse(parse_identity, _body("ServiceIdentity", meta, spec))
    if isinstance(result, ServiceIdentity):
        _check_identity(result)


@fast(300)
@given(meta=metadata, spec=json_values)
def test_arbitrary_relationship_spec_is_parsed_or_rejected_with_spec_paths(meta: Any, spec: Any) -> None:
    result = _parse(parse_relationship, _body("TrustRelationship", meta, spec))
    if isinstance(result, TrustRelationship):
        _check_relationship(result)


@fast(200)
@given(body=st.dictionaries(st.sampled_from(["apiVersion", "kind", "metadata", "spec", "status"]) | keys,
                            json_values, max_size=6))
def test_arbitrary_whole_bodies_never_crash_the_parsers(body: dict[str, Any]) -> None:
    """Even ``metadata`` may be anything (the emulator and old clusters validate nothing)."""
    for parser in (parse_identity, parse_relationship):
        _parse(parser, body)


@fast(400)
@given(meta=metadata, spec=near_valid(VALID_IDENTITY_SPEC))
def test_near_valid_identity_is_parsed_or_rejected_with_spec_paths(meta: Any, spec: Any) -> None:
    result = _parse(parse_identity, _body("ServiceIdentity", meta, spec))
    if isinstance(result, ServiceIdentity):
        _check_identity(result)


@fast(300)
@given(meta=metadata, spec=near_valid(VALID_RELATIONSHIP_SPEC))
def test_near_valid_relationship_is_parsed_or_rejected_with_spec_paths(meta: Any, spec: Any) -> None:
    result = _parse(parse_relationship, _body("TrustRelationship", meta, spec))
    if isinstance(result, TrustRelationship):
        _check_relationship(result)


def test_the_valid_bases_parse() -> None:
    """The near-valid strategies start from specs that are really valid."""
    _check_identity(parse_identity(_body("ServiceIdentity", {"name": "dgc", "namespace": "gov"},
                                         VALID_IDENTITY_SPEC)))
    _check_relationship(parse_relationship(_body("TrustRelationship", {"name": "r", "namespace": "gov"},
                                                 VALID_RELATIONSHIP_SPEC)))


# ======================================================================================
# The full pure reconcile
# ======================================================================================
_SLOW_KEYS = {KeyAlgorithm.RSA2048, KeyAlgorithm.RSA3072, KeyAlgorithm.RSA4096}


def _fast_keys(ident: ServiceIdentity) -> ServiceIdentity:
    """Keep the fuzzed spec but generate EC keys: RSA generation would dominate the run."""
    ca = ident.ca if ident.ca.key_algorithm not in _SLOW_KEYS else dataclasses.replace(
        ident.ca, key_algorithm=KeyAlgorithm.ECDSAP256)
    cert = ident.certificate if ident.certificate.key_algorithm not in _SLOW_KEYS else dataclasses.replace(
        ident.certificate, key_algorithm=KeyAlgorithm.ECDSAP256)
    jwt = ident.jwt if ident.jwt.algorithm not in (JwtAlgorithm.RS256, JwtAlgorithm.PS256) else \
        dataclasses.replace(ident.jwt, algorithm=JwtAlgorithm.ES256)
    return dataclasses.replace(ident, ca=ca, certificate=cert, jwt=jwt)


def _observe(ident: ServiceIdentity, stored: Mapping[str, StoredObject] | None = None,
             **extra: Any) -> IdentityObservation:
    sources = {t.name: t.inline if t.inline is not None else "cm {{ self.name }}" for t in ident.templates}
    stored = stored or {}
    return IdentityObservation(
        identity=ident, now=NOW, ca=stored.get(names.ca_secret(ident.name)),
        credentials=stored.get(names.credentials_secret(ident.name)),
        trust=stored.get(names.trust_secret(ident.name)), public=stored.get(names.public_configmap(ident.name)),
        template_sources=sources, **extra)


def _objects(plan: IdentityPlan) -> dict[str, dict[str, bytes]]:
    return {o.name: dict(o.data) for o in plan.objects}


def _check_plan(ident: ServiceIdentity, plan: IdentityPlan) -> None:
    """The planned objects are consistent whenever the planner issued credentials."""
    objects = _objects(plan)
    for check in plan.checks.values():
        assert isinstance(check.reason, str) and check.reason
    creds = objects.get(names.credentials_secret(ident.name))
    ca = objects.get(names.ca_secret(ident.name))
    if creds is not None and ca is not None:
        assert material_problems(ca["tls.crt"], creds, ca_key_pem=ca["tls.key"]) == []
        assert plan.status.to_dict()["ca"]["fingerprint"] and plan.status.to_dict()["certificate"]["fingerprint"]
        if "jwt.key" in creds:
            assert plan.status.to_dict()["jwt"]["kid"] == creds["jwt.kid"].decode() == jwk_kid(creds["jwt.key"])


# Most near-valid mutations are invalid by design (the parser tests cover those); only the
# parseable ones reach the planner, so heavy filtering is expected here.
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])
@given(meta=metadata, spec=near_valid(VALID_IDENTITY_SPEC))
def test_near_valid_identity_through_the_full_pure_reconcile_never_raises(meta: Any, spec: Any) -> None:
    try:
        ident = parse_identity(_body("ServiceIdentity", meta, spec))
    except SpecError:
        assume(False)
        return
    ident = _fast_keys(ident)
    plan = plan_identity(_observe(ident))
    _check_plan(ident, plan)


# ======================================================================================
# Garbage in stored material (pure): the planner never raises and never plans bad material
# ======================================================================================
@pytest.fixture(scope="module")
def issued() -> tuple[ServiceIdentity, dict[str, StoredObject]]:
    ident = parse_identity(_body("ServiceIdentity", {"name": "dgc", "namespace": "gov"},
                                 {"serviceName": "dgc", "keystores": {"formats": ["PKCS12", "JKS"]}}))
    plan = plan_identity(_observe(ident))
    stored = {o.name: StoredObject(o.name, True, ident.name, dict(o.data), dict(o.annotations), o.type)
              for o in plan.objects}
    again = plan_identity(_observe(ident, stored))
    assert _objects(again) == _objects(plan), "a second pass over issued material must be a no-op"
    return ident, stored


PRIMARY = [(names.ca_secret("dgc"), "tls.crt"), (names.ca_secret("dgc"), "tls.key"),
           (names.credentials_secret("dgc"), "tls.crt"), (names.credentials_secret("dgc"), "tls.key"),
           (names.credentials_secret("dgc"), "ca.crt"), (names.credentials_secret("dgc"), "jwt.key"),
           (names.credentials_secret("dgc"), "jwt.kid"), (names.credentials_secret("dgc"), "jwt.jwk"),
           (names.credentials_secret("dgc"), "keystore.p12"), (names.credentials_secret("dgc"), "keystore.password"),
           (names.credentials_secret("dgc"), "keystore.jks")]


@st.composite
def corruption(draw: st.DrawFn, original: bytes, others: list[bytes]) -> bytes | None:
    how = draw(st.sampled_from(["truncate", "random", "flip", "empty", "other", "drop", "pem-garbage"]))
    if how == "truncate":
        return original[:draw(st.integers(0, max(0, len(original) - 1)))]
    if how == "random":
        return draw(st.binary(max_size=400))
    if how == "flip":
        i = draw(st.integers(0, len(original) - 1))
        return original[:i] + bytes([original[i] ^ draw(st.integers(1, 255))]) + original[i + 1:]
    if how == "empty":
        return b""
    if how == "other":
        return draw(st.sampled_from(others))
    if how == "drop":
        return None
    body = draw(st.binary(max_size=64)).hex().encode()
    return b"-----BEGIN PRIVATE KEY-----\n" + body + b"\n-----END PRIVATE KEY-----\n"


@fast(40)
@given(data=st.data())
def test_garbage_in_stored_secrets_never_makes_the_planner_raise_or_plan_bad_material(
        issued: tuple[ServiceIdentity, dict[str, StoredObject]], data: st.DataObject) -> None:
    ident, stored = issued
    others = [v for o in stored.values() for v in o.data.values()]
    hits = data.draw(st.lists(st.sampled_from(PRIMARY), min_size=1, max_size=3, unique=True))
    corrupted = {name: dict(obj.data) for name, obj in stored.items()}
    for secret, key in hits:
        value = data.draw(corruption(corrupted[secret][key], others))
        if value is None:
            corrupted[secret].pop(key)
        else:
            corrupted[secret][key] = value
    observation = {name: dataclasses.replace(obj, data=corrupted[name]) for name, obj in stored.items()}
    plan = plan_identity(_observe(ident, observation))
    _check_plan(ident, plan)
    assert names.credentials_secret("dgc") in _objects(plan), "the credentials must be re-planned"


# ======================================================================================
# Oversized specs
# ======================================================================================
def _identity_error(spec: Mapping[str, Any], name: str = "big") -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_identity(_body("ServiceIdentity", {"name": name, "namespace": "ns"}, dict(spec)))
    _check_spec_error(info.value)
    return info.value


def _relationship_error(spec: Mapping[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse_relationship(_body("TrustRelationship", {"name": "big", "namespace": "ns"}, dict(spec)))
    _check_spec_error(info.value)
    return info.value


@pytest.mark.timeout(30)
def test_thousands_of_dns_names_are_refused_naming_spec_dns_names() -> None:
    error = _identity_error({"dnsNames": [f"host-{i}.example.com" for i in range(5000)]})
    assert error.fields == ["spec.dnsNames"]
    assert "5000" in str(error) and str(MAX_DNS_NAMES) in str(error)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("spec", [
    pytest.param({"serviceName": "a" * TEN_MB}, id="serviceName"),
    pytest.param({"dnsNames": ["a" * TEN_MB]}, id="dnsNames-item"),
    pytest.param({"trustDomain": "a" * TEN_MB}, id="trustDomain"),
    pytest.param({"mountPath": "/" + "a" * TEN_MB}, id="mountPath"),
    pytest.param({"ca": {"keyAlgorithm": "A" * TEN_MB}}, id="enum"),
    pytest.param({"certificate": {"duration": "1" * TEN_MB}}, id="duration-digits"),
    pytest.param({"certificate": {"duration": "9" * 400 + "h"}}, id="duration-overflow"),
    pytest.param({"jwt": {"rotationPeriod": "1h" * (TEN_MB // 2)}}, id="duration-parts"),
    pytest.param({"jwt": {"issuer": "i" * TEN_MB}}, id="issuer"),
    pytest.param({"keystores": {"formats": ["P" * TEN_MB]}}, id="keystore-format"),
    pytest.param({"workloads": [{"kind": "Deployment", "name": "w" * TEN_MB}]}, id="workload-name"),
    pytest.param({"templates": [{"name": "t" * TEN_MB, "inline": "x"}]}, id="template-name"),
    pytest.param({"templates": [{"name": "t", "inline": "x" * TEN_MB}]}, id="template-inline"),
    pytest.param({"acceptFrom": {"namespaces": ["n" * TEN_MB]}}, id="acceptFrom"),
    pytest.param({"x" * TEN_MB: 1}, id="unknown-field-name"),
    pytest.param({"deletionPolicy": ["Retain"] * 1_000_000}, id="enum-huge-list"),
])
def test_ten_megabyte_values_are_refused_with_a_bounded_message(spec: dict[str, Any]) -> None:
    error = _identity_error(spec)
    top = next(iter(spec))
    expected = f"spec.{top}" if len(top) < 100 else "spec.'xxx"
    assert all(f.startswith(expected) for f in error.fields), error.fields


@pytest.mark.timeout(30)
def test_ten_megabyte_metadata_name_is_refused_with_a_bounded_message() -> None:
    """The name is a label value (and, without serviceName, the service name): reported once,
    as metadata.name, and never echoed whole."""
    error = _identity_error({}, name="n" * TEN_MB)
    assert error.fields == ["metadata.name"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("spec", [
    pytest.param({"templates": [{"name": f"t{i}", "inline": "x"} for i in range(10_000)]}, id="templates"),
    pytest.param({"workloads": [{"kind": "Deployment", "name": f"w{i}"} for i in range(10_000)]}, id="workloads"),
    pytest.param({"jwt": {"revokedKids": [f"k{i}" for i in range(100_000)]}}, id="revokedKids"),
    pytest.param({"acceptFrom": {"namespaces": [f"n{i}" for i in range(100_000)]}}, id="acceptFrom"),
    pytest.param({"keystores": {"formats": ["PKCS12"] * 100_000}}, id="formats"),
    pytest.param({f"unknown{i}": i for i in range(100_000)}, id="unknown-fields"),
    pytest.param({"dnsNames": ["Not_A_Name!" + "x" * 240] * MAX_DNS_NAMES,
                  "workloads": [{"kind": "Pod", "name": "x" * 250, "containers": ["c"] * 100}] * 50},
                 id="every-item-bad"),
])
def test_huge_lists_are_refused_with_a_bounded_message(spec: dict[str, Any]) -> None:
    _identity_error(spec)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("spec", [
    pytest.param({"between": [{"identity": f"i{i}"} for i in range(100_000)]}, id="between"),
    pytest.param({"between": [{"identity": "a" * TEN_MB}, {"identity": "b"}]}, id="identity-name"),
    pytest.param({"between": [{"identity": "a"}, {"identity": "b"}], "initiator": "x" * TEN_MB}, id="initiator"),
    pytest.param({"between": [{"identity": "a"}, {"identity": "b"}],
                  "jwt": {"roles": ["r"] * 100_000, "audience": "a" * TEN_MB}}, id="roles-audience"),
    pytest.param({"between": [{"identity": "a"}, {"identity": "b"}],
                  **{f"unknown{i}": i for i in range(100_000)}}, id="unknown-fields"),
])
def test_oversized_relationships_are_refused_with_a_bounded_message(spec: dict[str, Any]) -> None:
    _relationship_error(spec)


@pytest.mark.timeout(30)
def test_deeply_nested_values_are_refused_without_recursion() -> None:
    deep: Any = "leaf"
    for _ in range(100_000):
        deep = {"a": [deep]}
    _identity_error({"ca": deep, "templates": [deep], "unknown": deep})
    _relationship_error({"between": [deep, deep], "jwt": deep})


# ======================================================================================
# Template bombs through the full pure reconcile
# ======================================================================================
BOMBS = {
    "huge-range": "{% for i in range(10**9) %}x{% endfor %}",
    "string-times": "{{ 'a' * 10**9 }}",
    "center": "{{ self.name|center(10**9) }}",
    "percent-width": "{{ '%999999999d' % 1 }}",
    "format-width": "{{ '{:>999999999}'.format(1) }}",
    "power": "{{ 9 ** (10**8) }}",
    "list-times": "{{ (range(100000)|list) * 100000 }}",
    "join-amplify": "{{ (range(100000)|list)|join('a' * 100000) }}",
    "output-flood": "{% set x = 'a' * 200000 %}{% for i in range(100000) %}{{ x }}{% endfor %}",
    "macro-recursion": "{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}",
    "captured-work": "{% for i in range(100000) %}{% set y %}{{ 'b' * 100000 }}{% endset %}{% endfor %}",
    "sandbox-escape": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "private-key-leak": "{{ undefined_name ~ self.jwtPrivateKeyPem }}",
    "nested-loops": "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
}


def _template_identity(templates: list[dict[str, str]]) -> ServiceIdentity:
    return parse_identity(_body("ServiceIdentity", {"name": "dgc", "namespace": "gov"},
                                {"serviceName": "dgc", "templates": templates}))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", sorted(BOMBS))
def test_template_bomb_ends_in_a_template_error_condition(name: str) -> None:
    ident = _template_identity([{"name": "bomb.conf", "inline": BOMBS[name]},
                                {"name": "good.conf", "inline": "kid={{ self.kid }}"}])
    plan = plan_identity(_observe(ident))
    check = plan.checks["TemplatesReady"]
    assert not check.ok and check.stalled and check.reason == "TemplateError", check
    assert "bomb.conf" in check.message and len(check.message) <= MAX_PROBLEM
    creds = _objects(plan)[names.credentials_secret("dgc")]
    assert creds["jwt.key"].decode().split("\n")[1] not in check.message, "key material in a condition"
    # the bomb does not take the rest of the identity down
    assert plan.checks["CertificateReady"].ok
    trust = _objects(plan)[names.trust_secret("dgc")]
    assert trust["good.conf"] == f"kid={creds['jwt.kid'].decode()}".encode()
    assert "bomb.conf" not in trust
    _check_plan(ident, plan)


@pytest.mark.timeout(30)
def test_template_bombs_in_every_template_slot_are_bounded_per_identity() -> None:
    """MAX_TEMPLATES templates, each running to the per-template time budget.

    The whole reconcile of one identity must stay bounded (here: the test's 30 s timeout);
    a per-template budget alone lets one spec occupy a worker for MAX_TEMPLATES x budget.
    """
    ident = _template_identity([{"name": f"bomb{i}.conf", "inline": BOMBS["nested-loops"]}
                                for i in range(MAX_TEMPLATES)])
    plan = plan_identity(_observe(ident))
    assert plan.checks["TemplatesReady"].reason == "TemplateError"


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("count", "fits"), [(15, True), (MAX_TEMPLATES, False)])
def test_maximal_legal_template_list_renders_or_is_refused_by_size(count: int, fits: bool) -> None:
    """Templates of MAX_INLINE_TEMPLATE bytes each: rendered while their output fits in the
    trust Secret (1 MiB); the maximal list (20 x 64 KiB) does not fit, and says so."""
    body = "{{ self.name }}" + "x" * (MAX_INLINE_TEMPLATE - len("{{ self.name }}"))
    ident = _template_identity([{"name": f"t{i}.conf", "inline": body} for i in range(count)])
    plan = plan_identity(_observe(ident))
    assert plan.checks["TemplatesReady"].ok, plan.checks["TemplatesReady"]
    if fits:
        trust = _objects(plan)[names.trust_secret("dgc")]
        assert all(trust[f"t{i}.conf"].startswith(b"dgcxxx") for i in range(count))
        assert plan.checks["TrustReady"].ok
    else:
        check = plan.checks["TrustReady"]
        assert (check.reason, check.stalled) == ("TrustTooLarge", True)
        assert names.trust_secret("dgc") not in _objects(plan)  # never sent: the API server would refuse it


# ======================================================================================
# Found by fuzzing: metadata that Kubernetes accepts breaks the planner
# ======================================================================================
@pytest.mark.timeout(30)
def test_identity_with_a_long_but_legal_name_can_be_planned() -> None:
    """Kubernetes object names may have 63+ characters (label values: 63); the CA common name
    ``<name>.<namespace> trustwire CA`` then exceeds the X.509 limit of 64 characters and
    ``plan_identity`` raises PKIError — the identity never gets a CA and the reconcile
    fails forever instead of issuing (or reporting a condition)."""
    ident = parse_identity(_body("ServiceIdentity", {"name": "payment-gateway-service-primary",
                                                     "namespace": "production-eu-west-1"},
                                 {"serviceName": "payments"}))
    plan = plan_identity(_observe(ident))
    _check_plan(ident, plan)
    assert plan.checks["CAReady"].ok, plan.checks["CAReady"]


@pytest.mark.timeout(30)
def test_stored_json_annotations_of_any_shape_never_make_the_planner_raise(
        issued: tuple[ServiceIdentity, dict[str, StoredObject]]) -> None:
    ident, stored = issued
    for value in ["", "null", "[]", "{", json.dumps({"keystore.p12": ["x"]}), "x" * 10_000, "\x00",
                  "2031-02-30T00:00:00Z", "0001-01-01T00:00:00Z"]:
        for annotation in (names.DERIVED_ANNOTATION, names.JWT_ISSUED_ANNOTATION):
            observation = {n: dataclasses.replace(o, annotations={**o.annotations, annotation: value})
                           for n, o in stored.items()}
            _check_plan(ident, plan_identity(_observe(ident, observation)))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("value", ["2031-03-01T00:00:00", "2031-03-01", "1" * 20, "9999-12-31T23:59:59Z"])
def test_unusable_timestamp_in_jwt_issued_annotation_does_not_crash_the_planner(
        issued: tuple[ServiceIdentity, dict[str, StoredObject]], value: str) -> None:
    """Annotations on a managed Secret are writable by anyone who may edit that Secret. A
    timestamp without a zone parses to a naive datetime and ``plan_identity`` raises
    ``TypeError: can't compare offset-naive and offset-aware datetimes``; one near year 9999
    raises ``OverflowError: date value out of range`` (issued time + rotation period). Every
    reconcile of the identity then fails, forever, instead of repairing the annotation."""
    ident, stored = issued
    observation = {n: dataclasses.replace(o, annotations={**o.annotations, names.JWT_ISSUED_ANNOTATION: value})
                   for n, o in stored.items()}
    _check_plan(ident, plan_identity(_observe(ident, observation)))
