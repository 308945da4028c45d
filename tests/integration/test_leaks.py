"""No secret material outside the Secret that owns it: not in logs, Events, statuses, ConfigMaps,
workloads, metadata, exception texts or other owners' Secrets (``leakaudit.py``).

A representative scenario runs with every log at DEBUG (``trustwire``, ``kopf``,
``aiohttp``): a pair across namespaces with mTLS, JWT (ES256 and RS256) and a shared secret,
templates (one rendering the identity's own private key into its own trust Secret, which
is allowed; others failing while the key is in the render context), a repair of corrupted
material, a certificate rotation, an invalid spec and a wired Deployment. Then every
needle is searched for in every haystack. ``test_the_audit_catches_planted_leaks`` plants
known leaks so the audit is shown to be able to fail.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.integration.faults import live_condition, live_data, material_problems
from tests.integration.harness import Cluster, deployment, identity, relationship
from tests.integration.leakaudit import LeakAudit
from trustwire import names
from trustwire.k8s.client import CONFIGMAPS, EVENTS, IDENTITIES, SECRETS

pytestmark = pytest.mark.integration

#: ``kopf.objects`` by name too: the CLI quiets it to WARNING for the whole process
#: (``quiet_kopf_logging``), so a CLI test run earlier in the session would hide its records
LOGGERS = ("trustwire", "kopf", "kopf.objects", "aiohttp")

OWN_KEY_TEMPLATE = ("issuer={{ self.issuer }}\nkid={{ self.kid }}\n"
                    "signing-key={{ self.jwtPrivateKeyPem|properties_escape }}\n"
                    "# the same key as PEM:\n{{ self.jwtPrivateKeyPem }}"
                    "{% for p in peers %}peer.{{ p.identity }}.kids={{ p.kids|join(',') }}\n"
                    "peer.{{ p.identity }}.secret={{ p.sharedSecretFile }}\n{% endfor %}")
FAILING_TEMPLATES = [
    "{{ self.jwtPrivateKeyPem ~ no_such_variable }}",
    "{{ self.jwtPrivateKeyPem|int(base=99) }}",
    "{{ self.jwtPrivateKeyPem + 1 }}",
    "{{ self.jwtPrivateKeyPem.__class__ }}",
    "{{ self.jwtPrivateKeyPem[30:90]|b64decode }}",
    "{% for line in self.jwtPrivateKeyPem.split('\\n') %}{{ line|wrong_filter }}{% endfor %}",
]


def _capture(caplog: pytest.LogCaptureFixture) -> None:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)


async def _eventually(check: Any, what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _ready(cluster: Cluster, plural: str, ns: str, name: str) -> bool:
    c = live_condition(cluster.emulator, plural, ns, name, "Ready")
    return c is not None and c["status"] == "True"


def _verified(cluster: Cluster, ns: str, name: str) -> bool:
    ca = live_data(cluster.emulator, ns, names.ca_secret(name))
    creds = live_data(cluster.emulator, ns, names.credentials_secret(name))
    return bool(ca) and material_problems(ca.get("tls.crt", b""), creds, ca_key_pem=ca.get("tls.key")) == []


async def _scenario(cluster: Cluster) -> None:
    await cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tpl", "namespace": "gov"},
                         "data": {"app.properties": "spiffe={{ self.spiffeId }}\n"
                                                    "{% for p in peers %}{{ p.identity }}={{ p.caFingerprint }}\n"
                                                    "{% endfor %}"}})
    await cluster.apply(deployment("alpha", "gov"))
    await cluster.apply(identity(
        "alpha", "gov", keystores={"formats": ["PKCS12", "JKS"]},
        workloads=[{"kind": "Deployment", "name": "alpha"}],
        templates=[{"name": "own.properties", "inline": OWN_KEY_TEMPLATE},
                   {"name": "app.properties", "configMapRef": {"name": "tpl", "key": "app.properties"}}]))
    await cluster.apply(identity("beta", "jobs", acceptFrom={"namespaces": ["gov"]},
                                 jwt={"algorithm": "RS256"}, certificate={"keyAlgorithm": "Ed25519"}))
    await cluster.apply(relationship("alpha-beta", "gov", ("alpha", None), ("beta", "jobs"),
                                     jwt={"enabled": True, "roles": ["IMPERSONATION"], "audience": "pf"},
                                     sharedSecret={"enabled": True}))
    await _eventually(lambda: _ready(cluster, "trustrelationships", "gov", "alpha-beta"), "the pair to be Ready")

    # templates that fail while the private key is in their context
    await cluster.apply(identity("gamma", "gov", templates=[
        {"name": f"bad{i}.conf", "inline": src} for i, src in enumerate(FAILING_TEMPLATES)]))
    await _eventually(lambda: (c := live_condition(cluster.emulator, "serviceidentities", "gov", "gamma",
                                                   "TemplatesReady")) is not None and c["reason"] == "TemplateError",
                      "gamma's TemplateError")

    # corrupted material, repaired
    alpha_creds = live_data(cluster.emulator, "gov", names.credentials_secret("alpha"))
    await cluster.patch_secret_data("gov", names.credentials_secret("alpha"),
                                    {"tls.key": alpha_creds["tls.key"][:90]})
    await cluster.client.merge_patch(SECRETS, "jobs", names.credentials_secret("beta"),
                                     {"data": {"jwt.key": "!!garbage!!"}})
    await asyncio.sleep(0.5)
    await _eventually(lambda: _verified(cluster, "gov", "alpha") and _verified(cluster, "jobs", "beta"),
                      "the repairs")

    # a certificate rotation, and an invalid spec
    body = identity("alpha", "gov", keystores={"formats": ["PKCS12", "JKS"]},
                    workloads=[{"kind": "Deployment", "name": "alpha"}],
                    templates=[{"name": "own.properties", "inline": OWN_KEY_TEMPLATE},
                               {"name": "app.properties", "configMapRef": {"name": "tpl", "key": "app.properties"}}])
    body["metadata"]["annotations"] = {names.ROTATE_ANNOTATION: "certificate:leak-audit"}
    await cluster.apply(body)
    await cluster.apply(identity("bad", "gov", dnsNames=["NOT A NAME"], certificate={"keyAlgorithm": "DSA"},
                                 jwt={"rotationPeriod": "forever"}))
    await _eventually(lambda: (c := live_condition(cluster.emulator, "serviceidentities", "gov", "bad", "Ready"))
                      is not None and c["reason"] == "InvalidSpec", "bad's InvalidSpec")
    await _eventually(lambda: _ready(cluster, "serviceidentities", "gov", "alpha")
                      and _ready(cluster, "serviceidentities", "jobs", "beta"), "alpha and beta Ready again")
    await cluster.settle()


def _audit(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> LeakAudit:
    audit = LeakAudit()
    audit.add_emulator(cluster.emulator)
    audit.add_log_records(caplog.records)
    if cluster.controller.last_error:
        audit.add_text("controller.last_error", cluster.controller.last_error)
    for error in getattr(cluster.emulator, "errors", []):
        audit.add_text("emulator error", f"{error!s}\n{error!r}")
    return audit


async def test_no_secret_material_outside_its_owner(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    _capture(caplog)
    await _scenario(cluster)
    audit = _audit(cluster, caplog)

    # the audit is not vacuous: it holds every kind of needle and every kind of haystack
    whats = [n.what for n in audit.needles]

    def needle(*words: str) -> bool:
        return any(all(w in what for w in words) for what in whats)

    assert needle("PKCS#8 DER (base64)", "gov/alpha-trustwire-ca[tls.key]")
    assert needle("PEM block", "gov/alpha-trustwire-credentials[tls.key]")
    assert needle(" d (base64url)", "gov/alpha-trustwire-credentials[jwt.key]")  # the ES256 JWK d
    for member in ("qi", "dp", "dq", " p ", " q "):  # the RS256 key's JWK members
        assert needle(member, "jobs/beta-trustwire-credentials[jwt.key]"), member
    assert needle("raw private bytes", "jobs/beta-trustwire-credentials[tls.key]")  # Ed25519 leaf
    assert needle("the password", "gov/alpha-trustwire-credentials[keystore.password]")
    assert needle("the password", "jobs/beta-trustwire-trust[truststore.password]")
    assert needle("the shared secret", "gov/alpha-beta-trustwire-shared[shared.key]")
    own = live_data(cluster.emulator, "gov", names.trust_secret("alpha"))["own.properties"]
    assert live_data(cluster.emulator, "gov", names.credentials_secret("alpha"))["jwt.key"] in own
    wheres = [w for w, _, _ in audit.haystacks]
    assert sum(w.startswith("log kopf") for w in wheres) > 10, "kopf's DEBUG log was not captured"
    assert sum(w.startswith("log aiohttp") for w in wheres) > 10, "aiohttp's DEBUG log was not captured"
    assert sum(w.startswith("events ") for w in wheres) > 10
    assert any(w.startswith("serviceidentities gov/gamma") for w in wheres)
    assert any(w.startswith("deployments gov/alpha") for w in wheres)

    findings = audit.findings()
    assert findings == [], "\n".join(str(f) for f in findings[:40])


async def test_the_audit_catches_planted_leaks(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    _capture(caplog)
    await cluster.apply(identity("alpha", "team", templates=[{"name": "own.conf",
                                                              "inline": "{{ self.jwtPrivateKeyPem }}"}]))
    await cluster.apply(identity("beta", "team", jwt={"algorithm": "RS256"}))
    await cluster.apply(relationship("alpha-beta", "team", ("alpha", None), ("beta", None),
                                     sharedSecret={"enabled": True}))
    await _eventually(lambda: _ready(cluster, "trustrelationships", "team", "alpha-beta"), "the pair")
    await cluster.settle()
    ca = live_data(cluster.emulator, "team", names.ca_secret("alpha"))
    creds = live_data(cluster.emulator, "team", names.credentials_secret("alpha"))
    beta_creds = live_data(cluster.emulator, "team", names.credentials_secret("beta"))
    shared = live_data(cluster.emulator, "team", names.shared_secret("alpha-beta"))["shared.key"]
    assert creds["jwt.key"] in live_data(cluster.emulator, "team", names.trust_secret("alpha"))["own.conf"]

    audit = _audit(cluster, caplog)
    assert audit.findings() == [], "the scenario must be clean before anything is planted"

    # 1. a private key in a log line (one PEM line is enough)
    logging.getLogger("trustwire").debug("loaded %s", creds["tls.key"].decode().split("\n")[2])
    # 2. the shared secret in an Event, base64 encoded
    await cluster.client.create(EVENTS, "team", {
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "planted", "namespace": "team"},
        "involvedObject": {"kind": "ServiceIdentity", "name": "alpha", "namespace": "team"},
        "type": "Normal", "reason": "Planted", "message": f"secret={base64.b64encode(shared).decode()}"})
    # 3. an RSA JWK member (qi) in a status
    qi = json.loads(beta_creds["jwt.jwk"])["qi"]
    await cluster.client.merge_patch(IDENTITIES, "team", "beta", {"status": {"note": f"qi {qi}"}},
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

    audit = _audit(cluster, caplog)
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
