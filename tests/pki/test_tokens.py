"""Behaviour of trustwire.pki.tokens: signing, and every reason a token is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from trustwire.pki import (
    JwtAlgorithm,
    KeyAlgorithm,
    PKIError,
    PrivateKey,
    TokenError,
    generate_shared_secret,
    jwks,
    public_jwk,
    sign_hs256,
    sign_token,
    verify_hs256,
    verify_token,
)

from .conftest import NOW, KeyFactory

JwtKeys = Callable[..., PrivateKey]
ISS = "spiffe://cluster.local/ns/a/sid/dpm"
AUD = "product-factory"
CLAIMS = {"iss": ISS, "aud": AUD, "sub": "dpm", "scope": "read write"}
LIFETIME = timedelta(minutes=5)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    h, p, s = token.split(".")

    def decode(part: str) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        return value

    return decode(h), decode(p), s


class Identity:
    def __init__(self, key: PrivateKey, algorithm: JwtAlgorithm) -> None:
        self.key = key
        self.algorithm = algorithm
        self.jwk = public_jwk(key, algorithm)
        self.kid = self.jwk["kid"]
        self.jwks = jwks([self.jwk])

    def sign(self, claims: dict[str, Any] | None = None, **kw: Any) -> str:
        kw.setdefault("now", NOW)
        return sign_token(self.key, self.algorithm, self.kid, CLAIMS if claims is None else claims, **kw)

    def verify(self, token: str, **kw: Any) -> dict[str, Any]:
        args: dict[str, Any] = {"issuer": ISS, "audience": AUD, "now": NOW}
        args.update(kw)
        return verify_token(
            token, kw.pop("jwks", self.jwks), **{k: v for k, v in args.items() if k != "jwks"}
        )


@pytest.fixture(params=list(JwtAlgorithm), ids=str)
def ident(request: pytest.FixtureRequest, jwt_key_for: JwtKeys) -> Identity:
    return Identity(jwt_key_for(request.param), request.param)


def test_round_trip_header_and_time_claims(ident: Identity) -> None:
    token = ident.sign({**CLAIMS, "iat": 1, "exp": 2})  # caller's time claims are overwritten
    header, payload, _ = _parts(token)
    assert header == {"alg": ident.algorithm.value, "kid": ident.kid, "typ": "JWT"}
    t = int(NOW.timestamp())
    assert (payload["iat"], payload["nbf"], payload["exp"]) == (t, t, t + 300)
    claims = ident.verify(token)
    assert claims == {**CLAIMS, "iat": t, "nbf": t, "exp": t + 300}


def test_a_list_audience_containing_ours_is_accepted(ident: Identity) -> None:
    token = ident.sign({**CLAIMS, "aud": ["other", AUD]})
    assert ident.verify(token)["aud"] == ["other", AUD]


def test_issuer_none_skips_the_issuer_check(ident: Identity) -> None:
    token = ident.sign({**CLAIMS, "iss": "someone-else"})
    assert ident.verify(token, issuer=None)["iss"] == "someone-else"


def test_token_without_aud_is_accepted_only_when_no_audience_is_expected(ident: Identity) -> None:
    token = ident.sign({"iss": ISS})
    assert ident.verify(token, audience=None)["iss"] == ISS
    with pytest.raises(TokenError, match="wrong audience"):
        ident.verify(token)


def _tamper_signature(token: str) -> str:
    h, p, s = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return f"{h}.{p}.{_b64(bytes(raw))}"


def _tamper_payload(token: str) -> str:
    h, _, s = token.split(".")
    _, payload, _ = _parts(token)
    payload["scope"] = "admin"
    return f"{h}.{_b64(json.dumps(payload).encode())}.{s}"


def _reheader(token: str, **changes: Any) -> str:
    header, _, _ = _parts(token)
    header.update(changes)
    header = {k: v for k, v in header.items() if v is not None}
    _, p, s = token.split(".")
    return f"{_b64(json.dumps(header).encode())}.{p}.{s}"


REFUSALS: list[tuple[str, Callable[[Identity], tuple[str, dict[str, Any]]], str]] = [
    ("revoked", lambda i: (i.sign(), {"revoked_kids": [i.kid]}), "is revoked"),
    ("unknown-kid", lambda i: (_reheader(i.sign(), kid="nope"), {}), "unknown kid nope"),
    ("no-kid", lambda i: (_reheader(i.sign(), kid=None), {}), "no kid"),
    ("wrong-audience", lambda i: (i.sign(), {"audience": "other"}), "wrong audience"),
    ("aud-but-none-expected", lambda i: (i.sign(), {"audience": None}), "expects none"),
    ("wrong-issuer", lambda i: (i.sign(), {"issuer": "other"}), "wrong issuer"),
    ("expired", lambda i: (i.sign(), {"now": NOW + LIFETIME + timedelta(seconds=60)}), "expired"),
    ("expired-no-leeway", lambda i: (i.sign(), {"now": NOW + LIFETIME, "leeway": timedelta(0)}), "expired"),
    ("nbf-future", lambda i: (i.sign(now=NOW + timedelta(seconds=61)), {}), "not yet valid"),
    ("tampered-signature", lambda i: (_tamper_signature(i.sign()), {}), "bad signature"),
    ("tampered-payload", lambda i: (_tamper_payload(i.sign()), {}), "bad signature"),
    ("alg-none", lambda i: (_reheader(i.sign(), alg="none"), {}), "algorithm mismatch"),
    ("alg-hs256", lambda i: (_reheader(i.sign(), alg="HS256"), {}), "algorithm mismatch"),
    ("malformed", lambda i: ("not.a-token", {}), "malformed"),
    ("two-dots-garbage", lambda i: ("a.b.c", {}), "malformed token header"),
    ("crit-header", lambda i: (_reheader(i.sign(), crit=["exp"]), {}), "critical header"),
]


@pytest.mark.parametrize(("name", "make", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals(
    name: str, make: Callable[[Identity], tuple[str, dict[str, Any]]], message: str, ident: Identity
) -> None:
    token, overrides = make(ident)
    with pytest.raises(TokenError, match=message) as info:
        ident.verify(token, **overrides)
    assert token not in str(info.value)


@pytest.mark.parametrize(
    ("offset", "leeway", "accepted"),
    [
        (LIFETIME - timedelta(seconds=1), timedelta(0), True),
        (LIFETIME, timedelta(0), False),
        (LIFETIME + timedelta(seconds=59), timedelta(seconds=60), True),
        (LIFETIME + timedelta(seconds=60), timedelta(seconds=60), False),
        (LIFETIME + timedelta(minutes=4), timedelta(minutes=5), True),
        (-timedelta(seconds=60), timedelta(seconds=60), True),  # issued 60 s "in the future": within leeway
        (-timedelta(seconds=61), timedelta(seconds=60), False),
    ],
)
def test_leeway_boundaries(
    offset: timedelta, leeway: timedelta, accepted: bool, jwt_key_for: JwtKeys
) -> None:
    ident = Identity(jwt_key_for(JwtAlgorithm.ES256), JwtAlgorithm.ES256)
    token = ident.sign()
    if accepted:
        ident.verify(token, now=NOW + offset, leeway=leeway)
    else:
        with pytest.raises(TokenError):
            ident.verify(token, now=NOW + offset, leeway=leeway)


@pytest.mark.parametrize(
    "leeway", [timedelta(minutes=5, seconds=1), timedelta(hours=1), timedelta(seconds=-1)]
)
def test_leeway_is_bounded(leeway: timedelta, jwt_key_for: JwtKeys) -> None:
    ident = Identity(jwt_key_for(JwtAlgorithm.ES256), JwtAlgorithm.ES256)
    with pytest.raises(ValueError, match="between 0 and 5 minutes"):
        ident.verify(ident.sign(), leeway=leeway)


def test_key_of_another_identity_under_a_stolen_kid_is_refused(jwt_key_for: JwtKeys) -> None:
    victim = Identity(jwt_key_for(JwtAlgorithm.ES256), JwtAlgorithm.ES256)
    attacker_key = jwt_key_for(JwtAlgorithm.ES256, 1)
    forged = sign_token(attacker_key, JwtAlgorithm.ES256, victim.kid, CLAIMS, now=NOW)
    with pytest.raises(TokenError, match="bad signature"):
        victim.verify(forged)


def test_rs256_token_is_refused_by_a_ps256_jwk_for_the_same_key(jwt_key_for: JwtKeys) -> None:
    key = jwt_key_for(JwtAlgorithm.RS256)
    ps = public_jwk(key, JwtAlgorithm.PS256)
    token = sign_token(key, JwtAlgorithm.RS256, ps["kid"], CLAIMS, now=NOW)
    with pytest.raises(TokenError, match="algorithm mismatch"):
        verify_token(token, jwks([ps]), issuer=ISS, audience=AUD, now=NOW)


def test_hs256_signed_with_the_public_key_is_refused(jwt_key_for: JwtKeys) -> None:
    """Classic algorithm confusion: HMAC keyed with the verifier's public key PEM."""
    ident = Identity(jwt_key_for(JwtAlgorithm.RS256), JwtAlgorithm.RS256)
    pem = ident.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    payload = {**CLAIMS, "exp": int(NOW.timestamp()) + 60}
    # PyJWT refuses to HMAC with a PEM key, so forge it by hand as an attacker would.
    signing_input = (
        _b64(json.dumps({"alg": "HS256", "kid": ident.kid, "typ": "JWT"}).encode())
        + "."
        + _b64(json.dumps(payload).encode())
    )
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{_b64(mac)}"
    with pytest.raises(TokenError, match="algorithm mismatch"):
        ident.verify(forged)


def test_token_without_exp_is_refused(jwt_key_for: JwtKeys) -> None:
    ident = Identity(jwt_key_for(JwtAlgorithm.ES256), JwtAlgorithm.ES256)
    token = pyjwt.encode(CLAIMS, ident.key, algorithm="ES256", headers={"kid": ident.kid})
    with pytest.raises(TokenError, match="no exp"):
        ident.verify(token)


@pytest.mark.parametrize("bad", ["soon", True, None, float("nan")])
def test_non_numeric_exp_is_refused(bad: Any, jwt_key_for: JwtKeys) -> None:
    ident = Identity(jwt_key_for(JwtAlgorithm.ES256), JwtAlgorithm.ES256)
    payload = json.dumps({**CLAIMS, "exp": bad}).encode()
    token = pyjwt.api_jws.PyJWS().encode(payload, ident.key, algorithm="ES256", headers={"kid": ident.kid})
    with pytest.raises(TokenError, match="exp"):
        ident.verify(token)


@pytest.mark.parametrize(
    ("bad_jwks", "message"),
    [
        ({}, "no 'keys' list"),
        ({"keys": "x"}, "no 'keys' list"),
        ({"keys": []}, "unknown kid"),
    ],
)
def test_bad_jwks_is_refused(bad_jwks: dict[str, Any], message: str, jwt_key_for: JwtKeys) -> None:
    ident = Identity(jwt_key_for(JwtAlgorithm.ES256), JwtAlgorithm.ES256)
    with pytest.raises(TokenError, match=message):
        ident.verify(ident.sign(), jwks=bad_jwks)


def test_jwks_with_duplicate_kid_or_encryption_key_is_refused(jwt_key_for: JwtKeys) -> None:
    ident = Identity(jwt_key_for(JwtAlgorithm.ES256), JwtAlgorithm.ES256)
    token = ident.sign()
    with pytest.raises(TokenError, match="more than one key"):
        ident.verify(token, jwks={"keys": [ident.jwk, ident.jwk]})
    with pytest.raises(TokenError, match="not a signing key"):
        ident.verify(token, jwks={"keys": [{**ident.jwk, "use": "enc"}]})
    with pytest.raises(TokenError, match="unusable"):
        ident.verify(token, jwks={"keys": [{**ident.jwk, "alg": "RS256"}]})


def test_verify_picks_the_right_key_from_a_multi_key_jwks(jwt_key_for: JwtKeys) -> None:
    idents = [Identity(jwt_key_for(a), a) for a in JwtAlgorithm]
    published = jwks([i.jwk for i in idents])
    for ident in idents:
        assert ident.verify(ident.sign(), jwks=published)["sub"] == "dpm"


@pytest.mark.parametrize("key_algorithm", list(KeyAlgorithm))
def test_sign_token_refuses_a_key_that_does_not_fit(key_algorithm: KeyAlgorithm, key_for: KeyFactory) -> None:
    key = key_for(key_algorithm)
    for algorithm in JwtAlgorithm:
        fits = {
            JwtAlgorithm.ES256: key_algorithm is KeyAlgorithm.ECDSAP256,
            JwtAlgorithm.ES384: key_algorithm is KeyAlgorithm.ECDSAP384,
            JwtAlgorithm.RS256: key_algorithm.value.startswith("RSA"),
            JwtAlgorithm.PS256: key_algorithm.value.startswith("RSA"),
            JwtAlgorithm.EdDSA: key_algorithm is KeyAlgorithm.Ed25519,
        }[algorithm]
        if fits:
            assert sign_token(key, algorithm, "kid", CLAIMS, now=NOW).count(".") == 2
        else:
            with pytest.raises(PKIError, match="cannot be used"):
                sign_token(key, algorithm, "kid", CLAIMS, now=NOW)


def test_sign_token_input_errors(jwt_key_for: JwtKeys) -> None:
    key = jwt_key_for(JwtAlgorithm.ES256)
    with pytest.raises(PKIError, match="kid"):
        sign_token(key, JwtAlgorithm.ES256, "", CLAIMS, now=NOW)
    with pytest.raises(PKIError, match="timezone-aware"):
        sign_token(key, JwtAlgorithm.ES256, "k", CLAIMS, now=NOW.replace(tzinfo=None))
    with pytest.raises(PKIError, match="positive"):
        sign_token(key, JwtAlgorithm.ES256, "k", CLAIMS, now=NOW, lifetime=timedelta(0))


# --- HS256 shared secrets ---------------------------------------------------------------


def test_shared_secret_is_32_random_bytes() -> None:
    secrets_ = {generate_shared_secret() for _ in range(100)}
    assert len(secrets_) == 100
    assert all(isinstance(s, bytes) and len(s) == 32 for s in secrets_)


def test_hs256_round_trip() -> None:
    secret = generate_shared_secret()
    token = sign_hs256(secret, CLAIMS, now=NOW)
    header, payload, _ = _parts(token)
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert verify_hs256(token, secret, issuer=ISS, audience=AUD, now=NOW) == payload


HS_REFUSALS: list[tuple[str, Callable[[bytes], tuple[str, bytes, dict[str, Any]]], str]] = [
    (
        "wrong-secret",
        lambda s: (sign_hs256(s, CLAIMS, now=NOW), generate_shared_secret(), {}),
        "bad signature",
    ),
    (
        "expired",
        lambda s: (sign_hs256(s, CLAIMS, now=NOW), s, {"now": NOW + timedelta(minutes=7)}),
        "expired",
    ),
    ("wrong-audience", lambda s: (sign_hs256(s, CLAIMS, now=NOW), s, {"audience": "x"}), "wrong audience"),
    ("wrong-issuer", lambda s: (sign_hs256(s, CLAIMS, now=NOW), s, {"issuer": "x"}), "wrong issuer"),
    (
        "tampered",
        lambda s: (_tamper_payload(sign_hs256(s, CLAIMS, now=NOW)), s, {}),
        "bad signature",
    ),
    (
        "alg-none",
        lambda s: (_reheader(sign_hs256(s, CLAIMS, now=NOW), alg="none"), s, {}),
        "algorithm mismatch",
    ),
    ("short-secret", lambda s: (sign_hs256(s, CLAIMS, now=NOW), s[:16], {}), "at least 32 bytes"),
]


@pytest.mark.parametrize(("name", "make", "message"), HS_REFUSALS, ids=[r[0] for r in HS_REFUSALS])
def test_hs256_refusals(
    name: str, make: Callable[[bytes], tuple[str, bytes, dict[str, Any]]], message: str
) -> None:
    token, secret, overrides = make(generate_shared_secret())
    args: dict[str, Any] = {"issuer": ISS, "audience": AUD, "now": NOW}
    args.update(overrides)
    with pytest.raises(TokenError, match=message) as info:
        verify_hs256(token, secret, **args)
    assert secret.hex() not in str(info.value)


def test_hs256_refuses_asymmetric_tokens(jwt_key_for: JwtKeys) -> None:
    ident = Identity(jwt_key_for(JwtAlgorithm.ES256), JwtAlgorithm.ES256)
    with pytest.raises(TokenError, match="expected HS256"):
        verify_hs256(ident.sign(), generate_shared_secret(), issuer=ISS, audience=AUD, now=NOW)


def test_sign_hs256_refuses_short_secret() -> None:
    with pytest.raises(PKIError, match="at least 32 bytes"):
        sign_hs256(b"short", CLAIMS, now=NOW)


def test_revoked_kids_must_not_be_a_bare_string(jwt_key_for: JwtKeys) -> None:
    ident = Identity(jwt_key_for(JwtAlgorithm.ES256), JwtAlgorithm.ES256)
    with pytest.raises(ValueError, match="not a single string"):
        ident.verify(ident.sign(), revoked_kids=ident.kid)


# --- robustness: arbitrary input is refused with TokenError, never another exception -------

_SEGMENT = st.text(alphabet=string.ascii_letters + string.digits + "-_=+/!", max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    token=st.one_of(
        st.text(max_size=80),
        st.builds(lambda a, b, c: f"{a}.{b}.{c}", _SEGMENT, _SEGMENT, _SEGMENT),
        st.builds(
            lambda h, p: f"{_b64(h)}.{_b64(p)}.",
            st.binary(max_size=60),
            st.binary(max_size=60),
        ),
        st.builds(
            lambda header, payload: (
                f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}.AAAA"
            ),
            st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit"]), st.text(max_size=10) | st.none()),
            st.dictionaries(
                st.sampled_from(["exp", "nbf", "iat", "aud", "iss"]), st.integers() | st.text(max_size=5)
            ),
        ),
    )
)
def test_arbitrary_tokens_only_raise_token_error(token: str, jwt_key_for: JwtKeys) -> None:
    ident = Identity(jwt_key_for(JwtAlgorithm.ES256), JwtAlgorithm.ES256)
    with pytest.raises(TokenError):
        ident.verify(token)
    with pytest.raises(TokenError):
        verify_hs256(token, b"k" * 32, issuer=ISS, audience=AUD, now=NOW)
