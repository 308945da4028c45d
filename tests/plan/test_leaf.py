"""trustwire.plan.leaf: each trigger of LEAF_TRIGGERS alone, then the chain and the state machine."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.conftest import FIXED_NOW
from tests.plan.conftest import FixedKeys
from trustwire import names, pki
from trustwire.model import ServiceIdentity, parse_identity
from trustwire.pki import KeyAlgorithm
from trustwire.plan import leaf
from trustwire.plan.checks import evaluate
from trustwire.plan.material import CAMaterial, StoredObject
from trustwire.plan.reasons import Reason

NOW = FIXED_NOW


@pytest.fixture(scope="module")
def world(real_key: Callable[..., pki.PrivateKey]) -> dict[str, Any]:
    """One identity, its CA, a good stored leaf and a second key — generated once per module."""
    body = {"apiVersion": "trustwire.io/v1alpha1", "kind": "ServiceIdentity",
            "metadata": {"name": "dgc", "namespace": "gov"}, "spec": {"dnsNames": ["dgc.example.com"]}}
    ident = parse_identity(body)
    ca_key = real_key(KeyAlgorithm.ECDSAP256, 700)
    ca = CAMaterial.of(pki.create_ca(ca_key, common_name="dgc CA", now=NOW - timedelta(days=1),
                                     lifetime=timedelta(days=365)), ca_key)
    key = real_key(KeyAlgorithm.ECDSAP256, 701)
    cert = pki.create_leaf(ca.cert, ca.key, key.public_key(), common_name=ident.service_name,
                           dns_names=ident.all_dns_names, uri_sans=[ident.spiffe_id], now=NOW - timedelta(hours=1),
                           lifetime=ident.certificate.duration)
    good = StoredObject("dgc-trustwire-credentials", True, "dgc",
                        {"tls.crt": pki.cert_to_pem(cert) + ca.cert_pem, "tls.key": pki.private_key_to_pem(key)})
    return {"ident": ident, "ca": ca, "good": good, "other_key": real_key(KeyAlgorithm.ECDSAP256, 702),
            "cert": cert}


def _input(world: dict[str, Any], *, stored: StoredObject | str | None = "good", now: datetime = NOW,
           rotate: bool = False, ident: ServiceIdentity | None = None) -> leaf.LeafInput:
    obj = world["good"] if stored == "good" else stored
    assert not isinstance(obj, str)
    return leaf.LeafInput(ident or world["ident"], world["ca"], obj, now, rotate)


def _edit(world: dict[str, Any], **data: bytes | None) -> StoredObject:
    good: StoredObject = world["good"]
    new = {k: v for k, v in {**good.data, **data}.items() if v is not None}
    return dataclasses.replace(good, data=new)


CASES: list[tuple[str, Callable[[dict[str, Any]], leaf.LeafInput], Reason, str]] = [
    ("secret_missing", lambda w: _input(w, stored=None), Reason.CERTIFICATE_ISSUED, "no certificate yet"),
    ("secret_missing_data", lambda w: _input(w, stored=_edit(w, **{"tls.key": b""})),
     Reason.CERTIFICATE_REPAIRED, "tls.crt or tls.key was missing"),
    ("secret_unparseable", lambda w: _input(w, stored=_edit(w, **{"tls.crt": b"garbage"})),
     Reason.CERTIFICATE_REPAIRED, "the stored certificate or key was unusable"),
    ("key_mismatch", lambda w: _input(w, stored=_edit(w, **{"tls.key": pki.private_key_to_pem(w["other_key"])})),
     Reason.CERTIFICATE_REPAIRED, "the stored key does not match the stored certificate"),
    ("certificate_invalid", lambda w: _input(w, now=NOW + timedelta(days=400)),
     Reason.CERTIFICATE_REISSUED, ""),
    ("dns_names_changed", lambda w: _input(w, ident=dataclasses.replace(w["ident"], dns_names=("x.example.com",))),
     Reason.CERTIFICATE_REISSUED, ""),
    ("key_algorithm_changed", lambda w: _input(w, ident=dataclasses.replace(
        w["ident"], certificate=dataclasses.replace(w["ident"].certificate, key_algorithm=KeyAlgorithm.Ed25519))),
     Reason.CERTIFICATE_REISSUED, "spec.certificate.keyAlgorithm is now Ed25519"),
    ("renewal_time_reached", lambda w: _input(w, now=leaf.renewal_time(
        w["cert"], w["ident"].certificate.renew_before)), Reason.CERTIFICATE_RENEWED, "reached"),
    ("rotation_requested", lambda w: _input(w, rotate=True), Reason.CERTIFICATE_RENEWED,
     f"requested with the {names.ROTATE_ANNOTATION} annotation"),
]


@pytest.mark.parametrize(("name", "make", "reason", "words"), CASES, ids=[c[0] for c in CASES])
def test_each_trigger_alone(world: dict[str, Any], name: str, make: Callable[[dict[str, Any]], leaf.LeafInput],
                            reason: Reason, words: str) -> None:
    check = getattr(leaf, name)
    assert check in leaf.LEAF_TRIGGERS
    verdict = check(make(world))
    assert verdict is not None and verdict.reason is reason and words in verdict.message
    if name != "secret_missing":  # every later check is quiet on the good stored leaf
        assert check(_input(world)) is None


def test_the_chain_is_quiet_on_good_material_and_answers_with_the_first_failure(world: dict[str, Any]) -> None:
    assert evaluate(leaf.LEAF_TRIGGERS, _input(world)) is None
    both = _input(world, stored=_edit(world, **{"tls.key": b""}), rotate=True)
    verdict = evaluate(leaf.LEAF_TRIGGERS, both)
    assert verdict is not None and verdict.reason is Reason.CERTIFICATE_REPAIRED


def test_renewal_time_is_two_thirds_of_a_short_lifetime(world: dict[str, Any]) -> None:
    cert = world["cert"]
    life = pki.not_after(cert) - pki.not_before(cert)
    assert leaf.renewal_time(cert, life) == pki.not_before(cert) + life * 2 / 3
    assert leaf.renewal_time(cert, timedelta(hours=1)) == pki.not_after(cert) - timedelta(hours=1)


@pytest.mark.parametrize(
    ("stored", "phase", "events"),
    [("good", leaf.LeafPhase.VALID, []), (None, leaf.LeafPhase.ISSUING, ["CertificateIssued"])],
)
def test_advance_keeps_or_issues(world: dict[str, Any], fixed_keys: Callable[[], FixedKeys], stored: str | None,
                                 phase: leaf.LeafPhase, events: list[str]) -> None:
    keys = fixed_keys()
    state, planned = leaf.advance(_input(world, stored=stored), keys)
    assert state.phase is phase and [e.reason for e in planned] == events
    if phase is leaf.LeafPhase.VALID:
        assert state.cert == world["cert"] and keys.requests == []
    else:
        assert keys.requests == ["private_key ECDSAP256", "serial"]
        assert state.cert.serial_number == 0x7000_0000
        assert planned[0].type == "Normal"
        assert planned[0].message == "certificate serial 70000000 issued: no certificate yet"
