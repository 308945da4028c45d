"""The enrollment CA of spec.enrollment.enabled: the CA life cycle, with no peer to wait for.

It is an identity's second CA: it signs external applications' client certificates, its
own workloads trust it (``enrollment-ca.crt``), and it never reaches a peer's trust.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from trustwire import names, pki
from trustwire.model import ServiceIdentity, parse_identity
from trustwire.plan.identity import IdentityObservation, IdentityPlan, plan_identity
from trustwire.plan.material import DesiredObject, StoredObject
from trustwire.plan.reasons import Reason

NS = "connect"


def _stored(desired: DesiredObject) -> StoredObject:
    return StoredObject(desired.name, True, desired.labels.get(names.IDENTITY_LABEL), dict(desired.data),
                        dict(desired.annotations), desired.type)


def _objects(plan: IdentityPlan) -> dict[str, DesiredObject]:
    return {o.name: o for o in plan.objects}


def _next(obs: IdentityObservation, plan: IdentityPlan, now: datetime) -> IdentityObservation:
    """The observation after the controller wrote ``plan``, at ``now``."""
    objects, name = _objects(plan), obs.identity.name

    def after(object_name: str) -> StoredObject | None:
        desired = objects.get(object_name)
        return _stored(desired) if desired is not None else None

    return dataclasses.replace(obs, now=now, ca=after(names.ca_secret(name)),
                               enrollment_ca=after(names.enrollment_ca_secret(name)),
                               credentials=after(names.credentials_secret(name)),
                               trust=after(names.trust_secret(name)), public=after(names.public_configmap(name)))


@pytest.fixture
def connector(identity_body: Callable[..., dict[str, Any]]) -> Callable[..., ServiceIdentity]:
    def make(enabled: bool = True) -> ServiceIdentity:
        return parse_identity(identity_body(name="connector", namespace=NS, enrollment={"enabled": enabled}))
    return make


def _cas(plan: IdentityPlan, secret: str) -> tuple[pki.PrivateKey, list[Any]]:
    data = _objects(plan)[secret].data
    return pki.load_private_key(data["tls.key"]), pki.load_certificates(data["tls.crt"])


def test_enabled_issues_a_second_ca_its_workloads_trust(connector: Callable[..., ServiceIdentity], now: datetime,
                                                       fixed_keys: Callable[[], Any]) -> None:
    ident = connector()
    plan = plan_identity(IdentityObservation(identity=ident, now=now), keys=fixed_keys())
    objects = _objects(plan)
    enrollment_name = names.enrollment_ca_secret("connector")
    key, (enrollment_ca,) = _cas(plan, enrollment_name)
    _, (service_ca,) = _cas(plan, names.ca_secret("connector"))
    assert pki.is_ca(enrollment_ca) and pki.check_ca(enrollment_ca, key, now=now) == []
    assert enrollment_ca.public_key() != service_ca.public_key()
    assert pki.subject_common_name(enrollment_ca) == "connector.connect trustwire enrollment CA"
    assert objects[enrollment_name].labels[names.ROLE_LABEL] == "enrollment-ca"
    credentials = objects[names.credentials_secret("connector")].data
    assert pki.load_certificates(credentials[names.ENROLLMENT_CA_KEY]) == [enrollment_ca]
    # peers never learn it: the public ConfigMap (what peers fetch) names only the service CA
    public = objects[names.public_configmap("connector")].data
    assert pki.load_certificates(public["ca.crt"]) == [service_ca]
    assert plan.checks["EnrollmentCAReady"].ok
    assert plan.status.enrollment_ca is not None
    assert plan.status.enrollment_ca.fingerprint == pki.fingerprint_sha256(enrollment_ca)
    assert "enrollmentCA" in plan.status.to_dict()


def test_disabled_plans_no_enrollment_material(connector: Callable[..., ServiceIdentity], now: datetime,
                                              fixed_keys: Callable[[], Any]) -> None:
    plan = plan_identity(IdentityObservation(identity=connector(False), now=now), keys=fixed_keys())
    assert names.enrollment_ca_secret("connector") not in _objects(plan)
    assert names.ENROLLMENT_CA_KEY not in _objects(plan)[names.credentials_secret("connector")].data
    assert "EnrollmentCAReady" not in plan.checks
    assert plan.status.enrollment_ca is None


def test_a_second_pass_keeps_every_byte(connector: Callable[..., ServiceIdentity], now: datetime,
                                       fixed_keys: Callable[[], Any]) -> None:
    obs = IdentityObservation(identity=connector(), now=now)
    first = plan_identity(obs, keys=fixed_keys())
    second = plan_identity(_next(obs, first, now), keys=fixed_keys())
    assert {o.name: dict(o.data) for o in second.objects} == {o.name: dict(o.data) for o in first.objects}
    assert second.events == []


def test_rotation_overlaps_and_retires_only_at_expiry(connector: Callable[..., ServiceIdentity], now: datetime,
                                                     fixed_keys: Callable[[], Any]) -> None:
    keys = fixed_keys()
    obs = IdentityObservation(identity=connector(), now=now)
    first = plan_identity(obs, keys=keys)
    _, (old,) = _cas(first, names.enrollment_ca_secret("connector"))
    rotated_at = now + timedelta(days=100)
    distributing = plan_identity(_next(obs, first, rotated_at), rotate="enrollment-ca", keys=keys)
    assert Reason.CA_ROTATION_DISTRIBUTING in {e.reason for e in distributing.events}
    bundle = pki.load_certificates(
        _objects(distributing)[names.credentials_secret("connector")].data[names.ENROLLMENT_CA_KEY])
    assert bundle[0] == old and len(bundle) == 2
    new = bundle[1]
    later = rotated_at + obs.propagation_delay + timedelta(seconds=1)
    activated = plan_identity(_next(obs, distributing, later), keys=keys)
    _, (active,) = _cas(activated, names.enrollment_ca_secret("connector"))
    assert active == new
    # certificates the old CA signed stay trusted until it expires, whatever rolled out
    kept = plan_identity(_next(obs, activated, later + timedelta(days=1)), keys=keys)
    trusted = pki.load_certificates(
        _objects(kept)[names.credentials_secret("connector")].data[names.ENROLLMENT_CA_KEY])
    assert trusted == [new, old]
    expired = plan_identity(_next(obs, kept, pki.not_after(old) + timedelta(seconds=1)), keys=keys)
    assert Reason.CA_ROTATION_RETIRED in {e.reason for e in expired.events}
    trusted = pki.load_certificates(
        _objects(expired)[names.credentials_secret("connector")].data[names.ENROLLMENT_CA_KEY])
    assert old not in trusted


def test_enrolled_applications_appear_in_peers_json_and_the_template_context(
        identity_body: Callable[..., dict[str, Any]], now: datetime, fixed_keys: Callable[[], Any]) -> None:
    template = ("{% for app in enrolled %}{{ app.name }} {{ app.subject }} {{ app.fingerprint }} "
                "{{ app.notAfter }};{% endfor %}")
    ident = parse_identity(identity_body(name="connector", namespace=NS, enrollment={"enabled": True},
                                         templates=[{"name": "apps.txt", "inline": template}]))
    app = {"enrollment": "sap", "namespace": NS, "subject": "O=Acme,CN=sap", "serial": "0a",
           "fingerprint": "cd" * 32, "notAfter": "2027-01-01T00:00:00Z"}
    plan = plan_identity(IdentityObservation(identity=ident, now=now, enrolled=(app,),
                                             template_sources={"apps.txt": template}), keys=fixed_keys())
    trust = _objects(plan)[names.trust_secret("connector")].data
    assert plan.checks["TemplatesReady"].ok, plan.checks["TemplatesReady"]
    assert json.loads(trust["peers.json"]) == [app]
    assert trust["apps.txt"].decode() == f"sap O=Acme,CN=sap {'cd' * 32} 2027-01-01T00:00:00Z;"
