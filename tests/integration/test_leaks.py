"""No secret material outside the Secret that owns it: not in logs, Events, statuses, ConfigMaps,
workloads, metadata, exception texts, the operator's requests or other owners' Secrets
(``leakaudit.py``).

A representative scenario runs against the real API server with every log at DEBUG
(``trustwire``, ``aiohttp``): a pair across namespaces with mTLS, JWT (ES256 and
RS256) and a shared secret, templates (one rendering the identity's own private key into its
own trust Secret, which is allowed; others failing while the key is in the render context),
a repair of corrupted material, a certificate rotation, an invalid spec and a wired
Deployment. The test's own watches record every version of every object meanwhile
(``History``), the proxy every request of the operator. Then every needle is searched for
in every haystack. ``test_the_audit_catches_planted_leaks`` plants known leaks so the audit
is shown to be able to fail.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.faults import material_problems
from tests.integration.harness import (
    Cluster,
    History,
    condition,
    deployment,
    enrollment,
    identity,
    relationship,
    until,
)
from tests.integration.leakaudit import LeakAudit
from trustwire import names
from trustwire.k8s.errors import ApiError
from trustwire.k8s.resources import CONFIGMAPS, ENROLLMENTS, EVENTS, IDENTITIES, RELATIONSHIPS, SECRETS, WORKLOADS

pytestmark = pytest.mark.integration

LOGGERS = ("trustwire", "aiohttp")

OWN_KEY_TEMPLATE = ("issuer={{ self.issuer }}\nkid={{ self.kid }}\n"
                    "signing-key={{ self.jwtPrivateKeyPem|properties_escape }}\n"
                    "# the same key as PEM:\n{{ self.jwtPrivateKeyPem }}"
                    "jwk={{ self.privateJwk|tojson }}\ngenerator-key={{ self.privateJwkBase64 }}\n"
                    "{% for p in peers %}peer.{{ p.identity }}.kids={{ p.kids|join(',') }}\n"
                    "peer.{{ p.identity }}.secret={{ p.sharedSecretFile }}\n{% endfor %}")
FAILING_TEMPLATES = [
    "{{ self.jwtPrivateKeyPem ~ no_such_variable }}",
    "{{ self.jwtPrivateKeyPem|int(base=99) }}",
    "{{ self.jwtPrivateKeyPem + 1 }}",
    "{{ self.jwtPrivateKeyPem.__class__ }}",
    "{{ self.privateJwk.d ~ no_such_variable }}",
    "{{ self.privateJwkBase64|int(base=99) }}",
    "{{ self.jwtPrivateKeyPem[30:90]|b64decode }}",
    "{% for line in self.jwtPrivateKeyPem.split('\\n') %}{{ line|wrong_filter }}{% endfor %}",
]


#: What the test's watches record, every version: where material lives and where it must not
AUDITED = (SECRETS, CONFIGMAPS, EVENTS, IDENTITIES, RELATIONSHIPS, ENROLLMENTS, *WORKLOADS.values())


def _capture(caplog: pytest.LogCaptureFixture) -> None:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)


async def _condition(cluster: Cluster, kind: str, ns: str, name: str, type_: str = "Ready") -> dict[str, Any]:
    return condition(await cluster.get(kind, ns, name), type_) or {}


async def _ready(cluster: Cluster, kind: str, ns: str, name: str) -> bool:
    return (await _condition(cluster, kind, ns, name)).get("status") == "True"


async def _verified(cluster: Cluster, ns: str, name: str) -> bool:
    ca = await cluster.data("Secret", ns, names.ca_secret(name))
    creds = await cluster.data("Secret", ns, names.credentials_secret(name))
    return bool(ca) and material_problems(ca.get("tls.crt", b""), creds, ca_key_pem=ca.get("tls.key")) == []


def _alpha(**extra: Any) -> dict[str, Any]:
    return identity("alpha", "gov", keystores={"formats": ["PKCS12", "JKS"]},
                    workloads=[{"kind": "Deployment", "name": "alpha"}],
                    templates=[{"name": "own.properties", "inline": OWN_KEY_TEMPLATE},
                               {"name": "app.properties", "configMapRef": {"name": "tpl", "key": "app.properties"}}],
                    **extra)


async def _scenario(cluster: Cluster) -> None:
    await cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tpl", "namespace": "gov"},
                         "data": {"app.properties": "spiffe={{ self.spiffeId }}\n"
                                                    "{% for p in peers %}{{ p.identity }}={{ p.caFingerprint }}\n"
                                                    "{% endfor %}"}})
    await cluster.apply(deployment("alpha", "gov"))
    await cluster.apply(_alpha())
    await cluster.apply(identity("beta", "jobs", acceptFrom={"namespaces": ["gov"]},
                                 jwt={"algorithm": "RS256"}, certificate={"keyAlgorithm": "Ed25519"}))
    await cluster.apply(relationship("alpha-beta", "gov", ("alpha", None), ("beta", "jobs"),
                                     jwt={"enabled": True, "roles": ["IMPERSONATION"], "audience": "pf"},
                                     sharedSecret={"enabled": True}))
    await until(lambda: _ready(cluster, "TrustRelationship", "gov", "alpha-beta"), "the pair to be Ready", timeout=30.0)

    # templates that fail while the private key is in their context
    await cluster.apply(identity("gamma", "gov", templates=[
        {"name": f"bad{i}.conf", "inline": src} for i, src in enumerate(FAILING_TEMPLATES)]))
    await until(lambda: _has_reason(cluster, "gamma", "TemplatesReady", "TemplateError"), "gamma's TemplateError",
                timeout=30.0)

    # corrupted material, repaired
    alpha_creds = await cluster.data("Secret", "gov", names.credentials_secret("alpha"))
    await cluster.patch_secret_data("gov", names.credentials_secret("alpha"),
                                    {"tls.key": alpha_creds["tls.key"][:90]})
    await cluster.client.merge_patch(SECRETS, "jobs", names.credentials_secret("beta"),
                                     {"data": {"jwt.key": base64.b64encode(b"!!garbage!!").decode()}})
    await asyncio.sleep(0.5)
    await until(lambda: _both_verified(cluster), "the repairs", timeout=30.0)

    # a certificate rotation, and an invalid spec (one the schema admits: the API server
    # refuses the rest before the operator sees them)
    body = _alpha()
    body["metadata"]["annotations"] = {names.ROTATE_ANNOTATION: "certificate:leak-audit"}
    await cluster.apply(body)
    await cluster.apply(relationship("bad", "gov", ("alpha", None), ("alpha", "gov")))
    await until(lambda: _has_reason(cluster, "bad", "Ready", "InvalidSpec", kind="TrustRelationship"),
                "bad's InvalidSpec", timeout=30.0)
    await until(lambda: _both_ready(cluster), "alpha and beta Ready again", timeout=30.0)

    # a symmetric JWT key, refused on a relationship that would send it to alpha
    await cluster.apply(identity("delta", "gov", jwt={"algorithm": "HS256"}))
    await cluster.apply(relationship("delta-alpha", "gov", ("delta", None), ("alpha", None)))
    await until(lambda: _has_reason(cluster, "delta-alpha", "JwtAllowed", "SymmetricJwtKey", kind="TrustRelationship"),
                "delta-alpha's SymmetricJwtKey", timeout=30.0)

    # an external application's one-time token, issued and issued again
    await cluster.apply(identity("epsilon", "gov", enrollment={"enabled": True}))
    await cluster.apply(enrollment("erp", "gov", "epsilon"))
    await until(lambda: _has_reason(cluster, "erp", "Enrolled", "TokenIssued", kind="Enrollment"),
                "erp's token", timeout=30.0)
    renew = enrollment("erp", "gov", "epsilon")
    renew["metadata"]["annotations"] = {names.RENEW_TOKEN_ANNOTATION: "leak-audit"}
    await cluster.apply(renew)
    await cluster.wait_for("Secret", "gov", names.enrollment_token_secret("erp"),
                           lambda b: ((b or {}).get("metadata", {}).get("annotations") or {}).get(
                               names.RENEW_TOKEN_HANDLED_ANNOTATION) == "leak-audit", what="to hold a fresh token")
    await cluster.settle()


async def _has_reason(cluster: Cluster, name: str, type_: str, reason: str, kind: str = "ServiceIdentity") -> bool:
    return (await _condition(cluster, kind, "gov", name, type_)).get("reason") == reason


async def _both_verified(cluster: Cluster) -> bool:
    return await _verified(cluster, "gov", "alpha") and await _verified(cluster, "jobs", "beta")


async def _both_ready(cluster: Cluster) -> bool:
    return await _ready(cluster, "ServiceIdentity", "gov", "alpha") and \
        await _ready(cluster, "ServiceIdentity", "jobs", "beta")


async def _audit(cluster: Cluster, caplog: pytest.LogCaptureFixture, history: History) -> LeakAudit:
    await history.sync()
    audit = LeakAudit()
    audit.add_history(history)
    audit.add_requests(cluster.operator_requests())
    audit.add_log_records(caplog.records)
    if cluster.controller.last_error:
        audit.add_text("controller.last_error", cluster.controller.last_error)
    return audit


async def test_no_secret_material_outside_its_owner(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    _capture(caplog)
    async with History(cluster.client, AUDITED) as history:
        await _scenario(cluster)
        audit = await _audit(cluster, caplog, history)

    # the audit is not vacuous: it holds every kind of needle and every kind of haystack
    whats = [n.what for n in audit.needles]

    def needle(*words: str) -> bool:
        return any(all(w in what for w in words) for what in whats)

    assert needle("PKCS#8 DER (base64)", "gov/alpha-trustwire-ca[tls.key]")
    assert needle("PEM block", "gov/alpha-trustwire-credentials[tls.key]")
    # the ES256 JWT key's d (named after whichever of jwt.key and jwt.jwk the audit read first)
    alpha_creds = await cluster.data("Secret", "gov", names.credentials_secret("alpha"))
    jwt_key = serialization.load_pem_private_key(alpha_creds["jwt.key"], None)
    assert isinstance(jwt_key, ec.EllipticCurvePrivateKey)
    d = jwt_key.private_numbers().private_value.to_bytes(32, "big")
    assert base64.urlsafe_b64encode(d).rstrip(b"=") in {n.value for n in audit.needles}
    for member in ("qi", "dp", "dq", " p ", " q "):  # the RS256 key's JWK members
        assert needle(member, "jobs/beta-trustwire-credentials[jwt.key]"), member
    assert needle("raw private bytes", "jobs/beta-trustwire-credentials[tls.key]")  # Ed25519 leaf
    assert needle("the password", "gov/alpha-trustwire-credentials[keystore.password]")
    assert needle("the password", "jobs/beta-trustwire-trust[truststore.password]")
    assert needle("the shared secret", "gov/alpha-beta-trustwire-shared[shared.key]")
    assert needle("JWK member k (the key)", "gov/delta-trustwire-credentials[jwt.jwk]")
    assert sum("the one-time token in Secret gov/erp-trustwire-enrollment-token[token]" in w for w in whats) == 2
    assert needle("the one-time token's random part", "gov/erp-trustwire-enrollment-token[token]")
    own = (await cluster.data("Secret", "gov", names.trust_secret("alpha")))["own.properties"]
    assert alpha_creds["jwt.key"] in own
    wheres = [w for w, _, _ in audit.haystacks]
    assert sum(w == "log trustwire:DEBUG" for w in wheres) > 10, "the operator's DEBUG log was not captured"
    assert sum(w.startswith("events gov/") for w in wheres) > 10
    assert any(w.startswith("serviceidentities gov/gamma") for w in wheres)
    assert any(w.startswith("trustrelationships gov/bad") for w in wheres)
    assert any(w.startswith("enrollments gov/erp") for w in wheres)
    assert any(w.startswith("deployments gov/alpha") for w in wheres)
    assert sum(w.startswith("request ") and "/secrets" in w and "data[" in w for w in wheres) > 10

    findings = audit.findings()
    assert findings == [], "\n".join(str(f) for f in findings[:40])


async def test_the_audit_catches_planted_leaks(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    _capture(caplog)
    async with History(cluster.client, AUDITED) as history:
        await _plant_leaks(cluster, caplog, history)


async def _plant_leaks(cluster: Cluster, caplog: pytest.LogCaptureFixture, history: History) -> None:
    await cluster.apply(identity("alpha", "team", templates=[{"name": "own.conf",
                                                              "inline": "{{ self.jwtPrivateKeyPem }}"}]))
    await cluster.apply(identity("beta", "team", jwt={"algorithm": "RS256"}))
    await cluster.apply(relationship("alpha-beta", "team", ("alpha", None), ("beta", None),
                                     sharedSecret={"enabled": True}))
    await until(lambda: _ready(cluster, "TrustRelationship", "team", "alpha-beta"), "the pair", timeout=30.0)
    await cluster.settle()
    ca = await cluster.data("Secret", "team", names.ca_secret("alpha"))
    creds = await cluster.data("Secret", "team", names.credentials_secret("alpha"))
    beta_creds = await cluster.data("Secret", "team", names.credentials_secret("beta"))
    shared = (await cluster.data("Secret", "team", names.shared_secret("alpha-beta")))["shared.key"]
    assert creds["jwt.key"] in (await cluster.data("Secret", "team", names.trust_secret("alpha")))["own.conf"]

    audit = await _audit(cluster, caplog, history)
    assert audit.findings() == [], "the scenario must be clean before anything is planted"

    # 1. a private key in a log line (one PEM line is enough)
    logging.getLogger("trustwire").debug("loaded %s", creds["tls.key"].decode().split("\n")[2])
    # 2. the shared secret in an Event, base64 encoded
    await cluster.client.create(EVENTS, "team", {
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "planted", "namespace": "team"},
        "involvedObject": {"kind": "ServiceIdentity", "name": "alpha", "namespace": "team"},
        "type": "Normal", "reason": "Planted", "message": f"secret={base64.b64encode(shared).decode()}"})
    # 3. an RSA JWK member (qi) in a status (a field the schema keeps)
    qi = json.loads(beta_creds["jwt.jwk"])["qi"]
    await cluster.client.merge_patch(IDENTITIES, "team", "beta", {"status": {"issuer": f"qi {qi}"}},
                                     subresource="status")
    # 4. the keystore password in a ConfigMap
    await cluster.client.create(CONFIGMAPS, "team", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "leaky", "namespace": "team"},
        "data": {"pw": creds["keystore.password"].decode()}})
    # 5. alpha's CA key (DER, hex) in an exception text
    key = serialization.load_pem_private_key(ca["tls.key"], None)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    # 6. alpha's JWT key in beta's trust Secret (another owner's Secret)
    await cluster.patch_secret_data("team", names.trust_secret("beta"), {"stolen.pem": creds["jwt.key"]})
    # 7. alpha's JWT key (its JWK d) in a request of the operator's client (a label selector)
    d = json.loads(creds["jwt.jwk"])["d"]
    with contextlib.suppress(ApiError):
        await cluster.controller.client.list(SECRETS, "team", label_selector=f"k={d}")

    audit = await _audit(cluster, caplog, history)
    audit.add_text("exception", repr(ValueError(f"bad key {der.hex()}")))
    found = audit.findings()
    text = "\n".join(str(f) for f in found)

    def caught(where: str, what: str) -> bool:
        return any(f.where.startswith(where) and what in f.what for f in found)

    assert caught("log trustwire",
                  "a PEM line of the private key in Secret team/alpha-trustwire-credentials[tls.key]"), text
    assert caught("events team/planted", "the shared secret in Secret team/alpha-beta-trustwire-shared"), text
    assert caught("serviceidentities team/beta", "qi"), text
    assert caught("configmaps team/leaky", "the password in Secret team/alpha-trustwire-credentials"), text
    assert caught("exception", "PKCS#8 DER (hex) of the private key in Secret team/alpha-trustwire-ca[tls.key]"), text
    assert caught("secrets team/beta-trustwire-trust", "the private key in Secret team/alpha-trustwire-credentials"
                  "[jwt.key]"), text
    assert caught("request ", "JWK member d in Secret team/alpha-trustwire-credentials[jwt.jwk]"), text
