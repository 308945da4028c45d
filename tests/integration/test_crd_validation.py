"""The CRDs' own validation on the real kube-apiserver (v1.34), as ``kubectl apply`` meets it.

Table-driven: every CEL rule of crds/ refuses a bad object with its own message, naming the
field; the list-maps refuse duplicate keys; good objects at the edges of each rule are
accepted. ``kubectl explain`` shows a description for every field. No operator runs here:
this is admission alone, what a GitOps sync meets before trustwire sees anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.controlplane import ControlPlane

pytestmark = pytest.mark.integration

CRDS = Path(__file__).resolve().parents[2] / "crds"
NS = "crd-validation"
KINDS = {"ServiceIdentity": "trustwire.io_serviceidentities.yaml",
         "TrustRelationship": "trustwire.io_trustrelationships.yaml"}

RuleKey = tuple[str, str, int]  # kind, schema path (".spec.ca", ".spec.templates[].name"), index


def _walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path or ".", node
    for key, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{key}")
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")


def _all_rules() -> dict[RuleKey, dict[str, Any]]:
    rules: dict[RuleKey, dict[str, Any]] = {}
    for kind, file_name in KINDS.items():
        (crd,) = [d for d in yaml.safe_load_all((CRDS / file_name).read_text()) if d]
        (version,) = crd["spec"]["versions"]
        for path, node in _walk(version["schema"]["openAPIV3Schema"]):
            for i, rule in enumerate(node.get("x-kubernetes-validations", [])):
                rules[(kind, path, i)] = rule
    return rules


RULES = _all_rules()


def sid(name: str = "v", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "trustwire.io/v1alpha1", "kind": "ServiceIdentity",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def trust(*between: dict[str, Any], name: str = "v", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "trustwire.io/v1alpha1", "kind": "TrustRelationship",
            "metadata": {"name": name, "namespace": NS}, "spec": {"between": list(between), **spec}}


def m(identity: str, namespace: str | None = None) -> dict[str, str]:
    return {"identity": identity} | ({"namespace": namespace} if namespace is not None else {})


def ext(name: str) -> dict[str, Any]:
    return {"external": {"name": name, "caBundleRef": {"name": f"{name}-ca"}}}


def iss(url: str = "https://idp.example.com/realms/acme") -> dict[str, Any]:
    return {"issuer": {"url": url, "caBundleRef": {"name": "idp-ca"}}}


def _case(rule: RuleKey, field: str, body: dict[str, Any], says: str | None = None, *, id: str) -> Any:
    return pytest.param(rule, field, body, says, id=id)


SID, TRUST = "ServiceIdentity", "TrustRelationship"
INLINE = {"inline": "{{ self.name }}"}

#: (rule, field named in the error, bad object, expected text when the message is computed)
REFUSED = [
    _case((SID, ".", 0), "metadata.name", sid("n" * 64, serviceName="svc"), id="identity-name-64"),
    _case((SID, ".", 1), "spec.serviceName", sid("a.b"), id="name-not-a-label-without-serviceName"),
    _case((SID, ".spec.dnsNames[]", 0), "spec.dnsNames[1]", sid(dnsNames=["ok.example", "NOT A NAME"]),
          id="dns-name"),
    _case((SID, ".spec.dnsNames[]", 0), "spec.dnsNames[0]", sid(dnsNames=["a..b"]), id="dns-name-empty-label"),
    _case((SID, ".spec.trustDomain", 0), "spec.trustDomain", sid(trustDomain="Example.ORG"), id="trust-domain"),
    _case((SID, ".spec.ca", 0), "spec.ca.secretRef", sid(ca={"source": "Secret"}), id="ca-secret-without-ref"),
    _case((SID, ".spec.ca", 0), "spec.ca.secretRef", sid(ca={"source": "Secret", "secretRef": {"name": ""}}),
          id="ca-secret-empty-name"),
    _case((SID, ".spec.ca.duration", 0), "spec.ca.duration", sid(ca={"duration": "9s"}), id="ca-duration-short"),
    _case((SID, ".spec.ca.duration", 0), "spec.ca.duration", sid(ca={"duration": "262801h"}),
          id="ca-duration-long"),
    _case((SID, ".spec.certificate.duration", 0), "spec.certificate.duration",
          sid(certificate={"duration": "500ms", "renewBefore": "100ms"}), id="certificate-duration-short"),
    _case((SID, ".spec.certificate.renewBefore", 0), "spec.certificate.renewBefore",
          sid(certificate={"renewBefore": "0s"}), id="renew-before-zero"),
    _case((SID, ".spec.jwt.rotationPeriod", 0), "spec.jwt.rotationPeriod", sid(jwt={"rotationPeriod": "1s"}),
          id="rotation-period-short"),
    _case((SID, ".spec.jwt", 0), "spec.jwt", sid(jwt={"discovery": True}), id="discovery-without-issuer"),
    _case((SID, ".spec.jwt", 0), "spec.jwt", sid(jwt={"discovery": True, "issuer": "http://id.example.com"}),
          id="discovery-http-issuer"),
    _case((SID, ".spec.jwt", 0), "spec.jwt", sid(jwt={"discovery": True, "issuer": "https://id.example.com/x?a"}),
          id="discovery-issuer-query"),
    _case((SID, ".spec.jwt", 0), "spec.jwt", sid(jwt={"discovery": True, "issuer": "https://id.example.com/"}),
          id="discovery-issuer-trailing-slash"),
    _case((SID, ".spec.certificate", 0), "spec.certificate.renewBefore",
          sid(certificate={"duration": "1h", "renewBefore": "2h"}),
          "spec.certificate.renewBefore (2h) must be shorter than spec.certificate.duration (1h)",
          id="renew-before-longer"),
    _case((SID, ".spec.certificate", 0), "spec.certificate.renewBefore",
          sid(certificate={"duration": "90m", "renewBefore": "1h30m"}),
          "spec.certificate.renewBefore (1h30m) must be shorter than spec.certificate.duration (90m)",
          id="renew-before-equal"),
    _case((SID, ".spec.certificate", 0), "spec.certificate.renewBefore", sid(certificate={"renewBefore": "721h"}),
          "spec.certificate.renewBefore (721h) must be shorter than spec.certificate.duration (720h)",
          id="renew-before-longer-than-default"),
    _case((SID, ".spec.mountPath", 0), "spec.mountPath", sid(mountPath="/etc/../root"), id="mount-path-dotdot"),
    _case((SID, ".spec.mountPath", 0), "spec.mountPath", sid(mountPath="/c:/x"), id="mount-path-colon"),
    _case((SID, ".spec.templates[]", 0), "spec.templates[0]",
          sid(templates=[{"name": "a", "configMapRef": {"name": "c", "key": "k"}} | INLINE]), id="template-both"),
    _case((SID, ".spec.templates[]", 0), "spec.templates[1]", sid(templates=[{"name": "a"} | INLINE, {"name": "b"}]),
          id="template-neither"),
    _case((SID, ".spec.templates[].name", 0), "spec.templates[0].name", sid(templates=[{"name": "."} | INLINE]),
          id="template-dot"),
    _case((SID, ".spec.templates[].name", 0), "spec.templates[0].name", sid(templates=[{"name": ".."} | INLINE]),
          id="template-dotdot"),
    _case((SID, ".spec.templates[].name", 0), "spec.templates[0].name",
          sid(templates=[{"name": "..data"} | INLINE]), id="template-dotdot-prefix"),
    _case((SID, ".spec.templates[].name", 1), "spec.templates[0].name",
          sid(templates=[{"name": "tls.key"} | INLINE]), id="template-contract-key"),
    _case((SID, ".spec.templates[].name", 1), "spec.templates[0].name",
          sid(templates=[{"name": "shared-alpha.key"} | INLINE]), id="template-shared-prefix"),
    _case((TRUST, ".", 0), "metadata.name", trust(m("a"), m("b"), name="r" * 64, sharedSecret={"enabled": True}),
          id="shared-secret-name-64"),
    _case((TRUST, ".spec.sharedSecret.gracePeriod", 0), "spec.sharedSecret.gracePeriod",
          trust(m("a"), m("b"), sharedSecret={"enabled": True, "gracePeriod": "5s"}), id="grace-period-too-short"),
    _case((TRUST, ".spec.between", 0), "spec.between", trust(m("a"), m("a")), id="between-same"),
    _case((TRUST, ".spec.between", 0), "spec.between", trust(m("a", "x"), m("a", "x")), id="between-same-ns"),
    _case((TRUST, ".spec.between", 0), "spec.between", trust(m("a", ""), m("a")), id="between-same-empty-ns"),
    _case((TRUST, ".spec", 0), "spec.initiator", trust(m("a"), m("b"), initiator="c"), id="initiator-unknown"),
    _case((TRUST, ".spec", 0), "spec.initiator", trust(m("a", "x"), m("b"), initiator="y/a"),
          id="initiator-wrong-namespace"),
    _case((TRUST, ".spec", 1), "spec.initiator", trust(m("a", "x"), m("a", "y"), initiator="a"),
          id="initiator-ambiguous"),
    _case((TRUST, ".spec", 0), "spec.initiator", trust(m("a"), ext("onprem"), initiator="other"),
          id="initiator-not-the-external-member"),
    _case((TRUST, ".spec", 2), "spec.sharedSecret", trust(m("a"), ext("onprem"), sharedSecret={"enabled": True}),
          id="shared-secret-beside-external"),
    _case((TRUST, ".spec.between", 1), "spec.between", trust(ext("x"), ext("y")), id="two-external-members"),
    _case((TRUST, ".spec.between[]", 0), "spec.between[1]", trust(m("a"), {"namespace": "x"}),
          id="member-of-no-kind"),
    _case((TRUST, ".spec.between[]", 0), "spec.between[0]", trust(m("a") | ext("x"), m("b")),
          id="member-of-two-kinds"),
    _case((TRUST, ".spec.between[]", 1), "spec.between[1]", trust(m("a"), ext("x") | {"namespace": "y"}),
          id="external-member-with-namespace"),
    _case((TRUST, ".spec", 3), "spec.sharedSecret", trust(m("a"), iss(), sharedSecret={"enabled": True}),
          id="shared-secret-beside-issuer"),
    _case((TRUST, ".spec", 4), "spec.initiator", trust(m("a"), iss(), initiator="a"), id="initiator-beside-issuer"),
    _case((TRUST, ".spec", 5), "spec.jwt", trust(m("a"), iss(), jwt={"scopes": ["x"]}), id="scopes-beside-issuer"),
    _case((TRUST, ".spec", 5), "spec.jwt", trust(m("a"), iss(), jwt={"enabled": False}), id="no-jwt-beside-issuer"),
    _case((TRUST, ".spec.between", 1), "spec.between", trust(iss(), ext("y")), id="issuer-and-external"),
    _case((TRUST, ".spec.between[].issuer.url", 0), "spec.between[1].issuer.url",
          trust(m("a"), iss("http://idp.example.com")), id="issuer-http"),
    _case((TRUST, ".spec.between[].issuer.url", 1), "spec.between[1].issuer.url",
          trust(m("a"), iss("https://idp.example.com/x#f")), id="issuer-fragment"),
    _case((SID, ".spec.secretTemplate.labels", 0), "spec.secretTemplate.labels",
          sid(secretTemplate={"labels": {"trustwire.io/identity": "other"}}), id="template-label-ours"),
    _case((SID, ".spec.secretTemplate.labels", 0), "spec.secretTemplate.labels",
          sid(secretTemplate={"labels": {"app.kubernetes.io/managed-by": "helm"}}), id="template-managed-by"),
    _case((SID, ".spec.secretTemplate.annotations", 0), "spec.secretTemplate.annotations",
          sid(secretTemplate={"annotations": {"ca.trustwire.io/x": "1"}}), id="template-annotation-subdomain"),
]

#: list-maps: a duplicate key is refused by the API server's own message
DUPLICATES = [
    pytest.param(sid(workloads=[{"kind": "Deployment", "name": "a"}, {"kind": "Deployment", "name": "a"}]),
                 "spec.workloads", 'kind="Deployment",name="a"', id="workloads"),
    pytest.param(sid(templates=[{"name": "a"} | INLINE, {"name": "a"} | INLINE]), "spec.templates", 'name="a"',
                 id="templates"),
]

ACCEPTED = [
    pytest.param(sid("n" * 63, serviceName="svc"), id="identity-name-63"),
    pytest.param(sid("a.b", serviceName="ab"), id="dotted-name-with-serviceName"),
    pytest.param(sid(dnsNames=["*.example.com", "a-b.c"], trustDomain="example_org.io"), id="dns-and-domain"),
    pytest.param(sid(trustDomain=""), id="empty-trust-domain-is-the-default"),
    pytest.param(sid(ca={"source": "SelfSigned", "secretRef": {"name": "ignored"}}), id="ref-ignored-when-self-signed"),
    pytest.param(sid(ca={"source": "Secret", "secretRef": {"name": "my-ca"}, "duration": "262800h"}),
                 id="ca-secret"),
    pytest.param(sid(certificate={"duration": "1h30m", "renewBefore": "89m"}, jwt={"rotationPeriod": "2.5h"}),
                 id="durations-compound-and-fractional"),
    pytest.param(sid(certificate={"duration": "11s", "renewBefore": "10s"}), id="durations-at-the-minimum"),
    pytest.param(sid(workloads=[{"kind": "Deployment", "name": "a"}, {"kind": "StatefulSet", "name": "a"}]),
                 id="same-name-other-kind"),
    pytest.param(sid(mountPath="/etc/trust..wire/x"), id="dots-inside-a-segment"),
    pytest.param(sid(jwt={"discovery": True, "issuer": "https://id.example.com:8443/ns/v"}), id="discovery-issuer"),
    pytest.param(sid(jwt={"discovery": False, "issuer": "spiffe://x/y"}), id="no-discovery-any-issuer"),
    pytest.param(sid(templates=[{"name": "application.properties"} | INLINE,
                                {"name": "tls.crt.tpl", "configMapRef": {"name": "c", "key": "k"}}]),
                 id="templates"),
    pytest.param(trust(m("a"), m("b"), name="r" * 63, sharedSecret={"enabled": True}), id="shared-secret-name-63"),
    pytest.param(trust(m("a"), m("b"), name="r" * 100), id="long-name-without-shared-secret"),
    pytest.param(trust(m("a"), m("b"), name="r" * 100, sharedSecret={"enabled": True, "group": "g"}),
                 id="long-name-with-a-shared-secret-group"),
    pytest.param(trust(m("a"), m("b"), sharedSecret={"enabled": True, "encoding": "hex", "clientId": "__datahub_system",
                                                     "group": "datahub", "gracePeriod": "10s"}),
                 id="shared-secret-every-field"),
    pytest.param(trust(m("a"), m("a", "x")), id="same-name-other-namespace"),
    pytest.param(trust(m("a"), m("b", "x"), initiator="x/b"), id="initiator-namespace-name"),
    pytest.param(trust(m("a"), m("b", "x"), initiator=f"{NS}/a"), id="initiator-own-namespace"),
    pytest.param(trust(m("a", "x"), m("a", "y"), initiator="y/a"), id="initiator-disambiguated"),
    pytest.param(trust(m("a"), m("b"), initiator=""), id="empty-initiator-is-both"),
    pytest.param(trust(m("a"), ext("onprem")), id="external-member"),
    pytest.param(trust(ext("onprem"), m("a", "x"), initiator="onprem"), id="external-member-as-initiator"),
    pytest.param(trust(m("a"), {"issuer": {"url": "https://idp.example.com:8443/realms/acme",
                                           "caBundleRef": {"name": "c", "kind": "Secret"}, "audience": "a",
                                           "scopes": ["x"]}}, jwt={"roles": ["r"]}), id="issuer-member"),
    pytest.param(sid(secretTemplate={"labels": {"velero.io/backup": "yes", "trustwire.example/x": ""},
                                 "annotations": {"reloader.stakater.com/match": "true"}}), id="secret-template"),
]


def _apply(plane: ControlPlane, body: dict[str, Any]) -> Any:
    return plane.kubectl("apply", "--server-side", "--field-manager=crd-validation", "-f", "-",
                         input=json.dumps(body), check=False)


@pytest.fixture(scope="module")
def plane(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    control_plane.kubectl("create", "namespace", NS, check=False)
    yield control_plane
    control_plane.kubectl("delete", "serviceidentities,trustrelationships", "--all", "-n", NS, "--wait=false",
                          check=False)


@pytest.mark.parametrize(("rule", "field", "body", "says"), REFUSED)
def test_each_cel_rule_refuses_a_bad_apply_naming_the_field(plane: ControlPlane, rule: RuleKey, field: str,
                                                            body: dict[str, Any], says: str | None) -> None:
    done = _apply(plane, body)
    assert done.returncode != 0, f"accepted: {json.dumps(body)}"
    message = says or RULES[rule]["message"]
    assert message in done.stderr, done.stderr
    assert field.split("[")[0] in message, "the message names the field"
    shown = "<nil>" if field == "metadata.name" else field  # a root rule has no field path of its own
    assert f"{shown}: " in done.stderr, done.stderr
    assert "Invalid value" in done.stderr or "Required value" in done.stderr, done.stderr


def test_the_table_covers_every_cel_rule() -> None:
    covered = {p.values[0] for p in REFUSED}
    assert covered == set(RULES)


def test_a_rule_that_cannot_be_evaluated_still_refuses_naming_the_field(plane: ControlPlane) -> None:
    """A duration beyond what CEL's duration() represents (about 292 years) is refused by the
    conversion, which names the field and the rule's message too."""
    done = _apply(plane, sid(ca={"duration": "99999999999h"}))
    assert done.returncode != 0
    assert "spec.ca.duration: " in done.stderr and RULES[(SID, ".spec.ca.duration", 0)]["message"] in done.stderr


@pytest.mark.parametrize(("body", "field", "key"), DUPLICATES)
def test_list_maps_refuse_a_duplicate_key(plane: ControlPlane, body: dict[str, Any], field: str, key: str) -> None:
    applied = _apply(plane, body)
    assert applied.returncode != 0 and f".{field}: duplicate entries for key [{key}]" in applied.stderr, \
        applied.stderr
    created = plane.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(body), check=False)
    assert created.returncode != 0 and "Duplicate value" in created.stderr and f"{field}[1]" in created.stderr, \
        created.stderr


@pytest.mark.parametrize("body", ACCEPTED)
def test_good_objects_at_the_edge_of_each_rule_are_accepted(plane: ControlPlane, body: dict[str, Any]) -> None:
    done = _apply(plane, body)
    assert done.returncode == 0, done.stderr
    plane.kubectl("delete", body["kind"], body["metadata"]["name"], "-n", NS, "--wait=false")


def test_a_relationship_without_spec_is_refused(plane: ControlPlane) -> None:
    body = trust()
    del body["spec"]
    done = _apply(plane, body)
    assert done.returncode != 0 and "spec: Required value" in done.stderr, done.stderr


# ---- kubectl explain ----------------------------------------------------------------------------
_FIELD = re.compile(r"^(?P<indent> *)(?P<name>[A-Za-z]\w*)\t<(?P<type>[^>]+)>")


def _explained_objects(plane: ControlPlane, resource: str) -> list[str]:
    """Every object field below ``resource`` (``sid.spec.ca``, ...) from ``explain --recursive``."""
    out = plane.kubectl("explain", resource, "--recursive").stdout
    stack: list[str] = []
    objects = [resource]
    for line in out.split("FIELDS:", 1)[1].splitlines():
        found = _FIELD.match(line)
        if not found:
            continue
        depth = len(found["indent"]) // 2 - 1
        stack[depth:] = [found["name"]]
        if found["type"] in ("Object", "[]Object"):
            objects.append(".".join([resource, *stack]))
    return objects


def _undescribed(plane: ControlPlane, resource: str) -> list[str]:
    return undescribed_in(resource, plane.kubectl("explain", resource).stdout)


def undescribed_in(resource: str, out: str) -> list[str]:
    """Fields a ``kubectl explain resource`` output lists as ``<no description>``, and the
    resource itself when its DESCRIPTION is ``<empty>``."""
    head, _, fields = out.partition("FIELDS:")
    missing = [resource] if "<empty>" in head.split("DESCRIPTION:", 1)[1] else []
    described = dict(re.findall(r"^  (\w+)\t.*\n(?:  \S.*\n)*?    (.+)$", fields, flags=re.MULTILINE))
    listed = re.findall(r"^  (\w+)\t", fields, flags=re.MULTILINE)
    missing += [f"{resource}.{f}" for f in listed if described.get(f, "<no description>") == "<no description>"]
    return missing


@pytest.mark.parametrize("resource", ["sid.spec", "sid.status", "trust.spec", "trust.status"])
def test_kubectl_explain_describes_every_field(plane: ControlPlane, resource: str) -> None:
    objects = _explained_objects(plane, resource)
    assert len(objects) > 1, objects
    missing = [f for obj in objects for f in _undescribed(plane, obj)]
    assert missing == []


def test_the_explain_parser_sees_what_kubectl_prints_for_undescribed_fields() -> None:
    out = ("KIND:       X\n\nFIELD: spec <Object>\n\nDESCRIPTION:\n    <empty>\nFIELDS:\n"
           "  kind\t<string>\n  enum: A, B\n    <no description>\n\n"
           "  name\t<string> -required-\n    The name.\n\n  list\t<[]string>\n")
    assert undescribed_in("x.spec", out) == ["x.spec", "x.spec.kind", "x.spec.list"]


@pytest.mark.parametrize("resource", ["sid", "trust"])
def test_kubectl_explain_root_describes_the_kind(plane: ControlPlane, resource: str) -> None:
    assert _undescribed(plane, resource) == []
