"""``trustwire enroll``: when the token Secret's token may be handed out, and why not."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from click.testing import CliRunner

from trustwire import names
from trustwire.cli import main
from trustwire.cli.enroll import Handout, NotReady, handout
from trustwire.runtime import OperatorOptions

TOKEN = "tw1.ZXJwL3NhcA.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
HASH = hashlib.sha256(TOKEN.encode()).hexdigest()
URL = "https://enroll.example.com/v1/info"


def _enrollment(phase: str | None = "TokenIssued", sha: str | None = HASH,
                stalled: tuple[str, str] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": [{"type": "Stalled", "status": "True" if stalled else "False",
                                              "reason": stalled[0] if stalled else "NotStalled",
                                              "message": stalled[1] if stalled else ""}]}
    if phase:
        status["phase"] = phase
    if sha:
        status["token"] = {"sha256": sha, "expiresAt": "2026-03-01T12:10:00Z"}
    return {"metadata": {"name": "sap", "namespace": "erp"}, "status": status}


def _secret(token: str = TOKEN, handled: str = "", url: str | None = URL) -> dict[str, Any]:
    data = {names.ENROLLMENT_TOKEN_KEY: token, **({names.ENROLLMENT_URL_KEY: url} if url else {})}
    return {"metadata": {"annotations": {names.RENEW_TOKEN_HANDLED_ANNOTATION: handled}},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def test_the_token_whose_hash_status_holds_is_handed_out() -> None:
    assert handout(_enrollment(), _secret(), None) == Handout("erp/sap", URL, TOKEN, "2026-03-01T12:10:00Z")
    assert handout(_enrollment(), _secret(url=None), None) == Handout("erp/sap", None, TOKEN,
                                                                      "2026-03-01T12:10:00Z")
    assert handout(_enrollment(), _secret(handled="r1"), "r1") == Handout("erp/sap", URL, TOKEN,
                                                                          "2026-03-01T12:10:00Z")


@pytest.mark.parametrize(("enrollment", "secret", "request_"), [
    (_enrollment(phase=None, sha=None), None, None),  # not issued yet
    (_enrollment(), None, None),  # status written, the Secret not yet
    (_enrollment(), _secret(), "r2"),  # the renewal is not answered yet
    (_enrollment(phase="Expired", stalled=("TokenExpired", "expired")), _secret(), "r2"),  # a renewal resolves it
])
def test_not_yet(enrollment: dict[str, Any], secret: dict[str, Any] | None, request_: str | None) -> None:
    assert handout(enrollment, secret, request_) is None


@pytest.mark.parametrize(("enrollment", "secret", "request_", "says"), [
    (_enrollment(phase="Expired", stalled=("TokenExpired", "the one-time token expired")), _secret(), None,
     "Expired: TokenExpired: the one-time token expired"),
    (_enrollment(phase=None, sha=None, stalled=("IdentityNotFound", "spec.identity: ...")), None, "r1",
     "IdentityNotFound: spec.identity"),
    (_enrollment(phase="Revoked", sha=None, stalled=("Revoked", "spec.revoked is true")), None, "r1",
     "Revoked: Revoked"),
    (_enrollment(sha="ab" * 32), _secret(), None, "was used already; --renew-token"),
    (_enrollment(phase="Enrolled", sha=None), _secret(), None, "was used already"),
])
def test_never(enrollment: dict[str, Any], secret: dict[str, Any] | None, request_: str | None, says: str) -> None:
    answer = handout(enrollment, secret, request_)
    assert isinstance(answer, NotReady) and says in answer.message and answer.exit_code == 1
    assert TOKEN not in answer.message


@pytest.mark.parametrize("url", ["ftp://enroll.example.com", "https://", "https://x.example/?a=1",
                                 "https://x.example/#f", "enroll.example.com"])
def test_run_refuses_a_public_url_that_is_no_http_url(url: str) -> None:
    result = CliRunner().invoke(main, ["run", "--public-url", url])
    assert result.exit_code == 2 and "--public-url" in result.output


def test_run_takes_the_public_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[OperatorOptions] = []
    monkeypatch.setattr("trustwire.cli.operate._serve", lambda config, options, port: _record(seen, options))
    monkeypatch.setattr("trustwire.cli.operate.load", lambda *args: None)
    result = CliRunner().invoke(main, ["run", "--server", "http://127.0.0.1:1"],
                                env={"TRUSTWIRE_PUBLIC_URL": "https://enroll.example.com/"})
    assert result.exit_code == 0, result.output
    assert [o.public_url for o in seen] == ["https://enroll.example.com"]


async def _record(seen: list[OperatorOptions], options: OperatorOptions) -> None:
    seen.append(options)
