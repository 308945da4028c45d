"""Issue 5: the operator SIGKILLed at every rotation phase boundary resumes the rotation from
the state it stored, with the same outcome, and never creates a second next-CA."""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
from typing import Any

import pytest

from tests.integration.harness import Cluster, identity, relationship
from trustwire import names, pki
from trustwire.emulator import running_emulator
from trustwire.k8s.client import IDENTITIES, ApiConfig, Client
from trustwire.plan import rotation as rot

pytestmark = pytest.mark.integration


def _start(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "trustwire.cli", "run", "--server", url, "--standalone",
                             "--liveness", "", "--metrics-port", "0", "--propagation-delay", "1.5"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


async def test_sigkill_at_each_ca_phase_boundary() -> None:
    async with running_emulator() as emu, Client(ApiConfig(server=emu.url), user_agent="trustwire-tests") as client:
        cluster = Cluster(emu.emulator, client, controller=None)  # type: ignore[arg-type]
        operator = _start(emu.url)
        try:
            await cluster.apply(identity("alpha", "team"))
            await cluster.apply(identity("beta", "team"))
            await cluster.apply(relationship("ab", "team", ("alpha", None), ("beta", None)))
            await cluster.wait_condition("TrustRelationship", "team", "ab", "Ready", timeout=30)
            first_ca = (await cluster.get("ServiceIdentity", "team", "alpha"))["status"]["ca"]["fingerprint"]  # type: ignore[index]
            await client.merge_patch(IDENTITIES, "team", "alpha",
                                     {"metadata": {"annotations": {names.ROTATE_ANNOTATION: "ca:kill"}}})
            phases_seen = []
            for wanted in (rot.DISTRIBUTING, rot.RETIRING, rot.IDLE):
                def reached(b: dict[str, Any] | None, w: str = wanted) -> bool:
                    return bool(((b or {}).get("status") or {}).get("rotation", {}).get("ca", {}).get("phase") == w
                                and b["status"]["ca"]["fingerprint"] != (first_ca if w == rot.IDLE else None))  # type: ignore[index]

                body = await cluster.wait_for(
                    "ServiceIdentity", "team", "alpha", reached,
                    timeout=40, what=f"to reach {wanted}")
                phases_seen.append(wanted)
                _kill(operator)  # right at the boundary, before anything else happens
                operator = _start(emu.url)
                assert body is not None
            final = (await cluster.get("ServiceIdentity", "team", "alpha"))["status"]  # type: ignore[index]

            def beta_trusts_only_the_new_ca(body: dict | None) -> bool:  # type: ignore[type-arg]
                bundle = base64.b64decode((body or {}).get("data", {}).get("trust-bundle.pem", ""))
                fingerprints = {pki.fingerprint_sha256(c) for c in pki.load_certificates(bundle)} if bundle else set()
                return fingerprints == {final["ca"]["fingerprint"]}

            await cluster.wait_for("Secret", "team", names.trust_secret("beta"), beta_trusts_only_the_new_ca,
                                   what="to trust exactly the new CA")
        finally:
            _kill(operator) if operator.poll() is None else None

        assert phases_seen == [rot.DISTRIBUTING, rot.RETIRING, rot.IDLE]
        # exactly one next CA was ever prepared, and it is the one that became active
        history = emu.emulator.objects["v1/secrets", "team", names.ca_secret("alpha")].history
        def fingerprint(b64: str) -> str:
            return pki.fingerprint_sha256(pki.load_certificates(base64.b64decode(b64))[0])

        nexts = {fingerprint(v["data"]["next.crt"]) for v in history
                 if v is not None and "next.crt" in (v.get("data") or {})}
        actives = [fingerprint(v["data"]["tls.crt"]) for v in history if v is not None]
        assert len(nexts) == 1, "a restarted operator must not prepare a second next-CA"
        assert list(dict.fromkeys(actives)) == [first_ca, *nexts]
        assert final["ca"]["fingerprint"] in nexts
        assert final["rotation"]["ca"] == {"phase": rot.IDLE}
