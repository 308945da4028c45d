"""The same observation, key source, clock and timer plan the same thing, whole — also mid-rotation.

Keys, passwords and serials come from a fixed :class:`FixedKeys`; Ed25519 certificates and
EdDSA JWT keys sign deterministically. Keystores are left out of the spec: PKCS#12 and JKS
salts come from the OS inside their writers, not from the key source.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import FIXED_NOW
from tests.plan.conftest import FixedKeys
from trustwire import names
from trustwire.model import ServiceIdentity, parse_identity
from trustwire.plan.identity import IdentityObservation, IdentityPlan, plan_identity
from trustwire.plan.material import StoredObject

NOW = FIXED_NOW


@pytest.fixture
def ident() -> ServiceIdentity:
    return parse_identity({
        "apiVersion": "trustwire.io/v1alpha1", "kind": "ServiceIdentity",
        "metadata": {"name": "dgc", "namespace": "gov"},
        "spec": {"ca": {"keyAlgorithm": "Ed25519"}, "certificate": {"keyAlgorithm": "Ed25519"},
                 "jwt": {"algorithm": "EdDSA"}, "keystores": {"formats": []},
                 "templates": [{"name": "app.conf", "inline": "kid={{ self.kid }}"}]},
    })


def _timer() -> Callable[[], float]:
    ticks = itertools.count()
    return lambda: float(next(ticks)) / 1000


def _whole(plan: IdentityPlan) -> dict[str, Any]:
    return {"objects": plan.objects, "checks": plan.checks, "status": plan.status.to_dict(),
            "events": plan.events, "wake_at": plan.wake_at, "mounted": plan.mounted,
            "conditions": plan.extra_conditions, "awaits_peers": plan.awaits_peers}


def _twice(obs: IdentityObservation, fixed_keys: Callable[[], FixedKeys], rotate: str | None = None,
           ) -> IdentityPlan:
    first = plan_identity(obs, rotate=rotate, keys=fixed_keys(), timer=_timer())
    again = plan_identity(obs, rotate=rotate, keys=fixed_keys(), timer=_timer())
    assert _whole(first) == _whole(again)
    return first


def _feed_back(obs: IdentityObservation, plan: IdentityPlan, **changes: Any) -> IdentityObservation:
    by_name = {o.name: StoredObject(o.name, True, obs.identity.name, dict(o.data), dict(o.annotations), o.type)
               for o in plan.objects}
    name = obs.identity.name
    return dataclasses.replace(
        obs, ca=by_name.get(names.ca_secret(name)), credentials=by_name.get(names.credentials_secret(name)),
        trust=by_name.get(names.trust_secret(name)), public=by_name.get(names.public_configmap(name)), **changes)


def test_a_fresh_identity_plans_the_same_twice(ident: ServiceIdentity, fixed_keys: Callable[[], FixedKeys]) -> None:
    obs = IdentityObservation(identity=ident, now=NOW, template_sources={"app.conf": "kid={{ self.kid }}"})
    plan = _twice(obs, fixed_keys)
    assert {e.reason for e in plan.events} == {"Issued"}


@pytest.mark.parametrize("rotate", ["ca", "jwt", "certificate"])
def test_a_rotation_phase_plans_the_same_twice(ident: ServiceIdentity, fixed_keys: Callable[[], FixedKeys],
                                               rotate: str) -> None:
    obs = IdentityObservation(identity=ident, now=NOW, template_sources={"app.conf": "kid={{ self.kid }}"})
    settled = _feed_back(obs, plan_identity(obs, keys=fixed_keys(), timer=_timer()), now=NOW + timedelta(seconds=30))
    started = _twice(settled, fixed_keys, rotate)
    expected = {"ca": "CARotationDistributing", "jwt": "JwtKeyPublishing", "certificate": "CertificateRenewed"}
    assert [e.reason for e in started.events] == [expected[rotate]]
    # the next pass, in the middle of the phase (the propagation delay still running)
    midway = _twice(_feed_back(settled, started, now=NOW + timedelta(seconds=60)), fixed_keys)
    if rotate == "ca":
        assert midway.status.rotation is not None and midway.status.rotation.ca.phase == "Distributing"
    if rotate == "jwt":
        assert midway.status.rotation is not None and midway.status.rotation.jwt.phase == "Publishing"
    # and once it passed: activation plans the same twice too
    _twice(_feed_back(settled, started, now=NOW + timedelta(minutes=10)), fixed_keys)
