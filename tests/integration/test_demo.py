"""`trustwire demo` proves its own result, and its proof can fail."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from trustwire import names, pki
from trustwire.demo.proofs import prove_jwt, prove_mtls
from trustwire.demo.run import run_demo
from trustwire.model import IdentityRef
from trustwire.times import utcnow

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).parents[2] / "examples"


async def demo(examples: Path, hook: Callable[[Mapping[IdentityRef, Path]], None] | None = None) -> tuple[int, str]:
    out = io.StringIO()
    code = await run_demo(output=None, examples=examples, console=Console(file=out, width=400), before_proofs=hook)
    return code, out.getvalue()


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()))
async def test_demo_proves_every_example(example: str) -> None:
    code, text = await demo(EXAMPLES / example)
    assert code == 0, text
    assert "demo passed" in text and "✗" not in text
    if example == "dgc-jobserver-mtls":  # its Service is not served by the emulator: a note, not a crash
        assert "skipped Service jobs/jobserver" in text


def stranger_bundle(directory: Path) -> None:
    stranger = pki.generate_private_key(pki.KeyAlgorithm.ECDSAP256)
    ca = pki.create_ca(stranger, common_name="stranger", now=utcnow(), lifetime=pki.BACKDATE * 1000)
    (directory / "trust-bundle.pem").write_bytes(pki.cert_to_pem(ca))


def shared_secret_example(tmp: Path) -> Path:
    """The quickstart with a shared secret on its relationship (no shipped example has one)."""
    examples = shutil.copytree(EXAMPLES / "quickstart", tmp / "shared")
    rel = examples / "30-relationship.yaml"
    mtls = "  mtls: {enabled: true}\n"
    rel.write_text(rel.read_text().replace(mtls, mtls + "  sharedSecret: {enabled: true}\n"))
    assert "sharedSecret" in rel.read_text()
    return examples


def _overwrite_shared(directory: Path) -> None:
    for path in directory.glob("shared-*.key"):
        path.write_bytes(b"not the same secret")


#: (example, identity whose mounted material is broken, how, the proofs that must fail)
BROKEN: list[tuple[str, str, Callable[[Path], object], tuple[str, ...]]] = [
    ("dgc-jobserver-mtls", "jobserver", stranger_bundle, ("mTLS dgc -> jobserver",)),
    # dgc's bundle verifies jobserver as a server and as a client: both directions fail
    ("quickstart", "dgc", stranger_bundle, ("mTLS dgc -> jobserver", "mTLS jobserver -> dgc")),
    ("dpm-dpe-jwt", "dpe", lambda d: (d / "peers.jwks").write_text('{"keys": []}'), ("JWT dpm -> dpe",)),
    ("dpm-dpe-jwt", "dpm", lambda d: (d / "application.properties").write_bytes(b""),
     ("template dpm/application.properties",)),
    ("shared", "jobserver", _overwrite_shared, ("shared secret dgc <-> jobserver",)),
    ("datahub", "datahub-actions", _overwrite_shared, ("shared secret group datahub-system",)),
    ("datahub", "datahub-frontend", lambda d: (d / "shared-datahub-system.client-id").write_bytes(b"someone"),
     ("shared secret group datahub-system",)),
    ("datahub", "datahub-gms", lambda d: (d / "jwt.key").write_bytes(b"A" * 43), ("HMAC key datahub-gms",)),
]


@pytest.mark.parametrize(("example", "victim", "breaks", "proofs"), BROKEN, ids=[b[3][-1] for b in BROKEN])
async def test_demo_names_the_proof_that_fails(example: str, victim: str, breaks: Callable[[Path], object],
                                               proofs: tuple[str, ...], tmp_path: Path) -> None:
    directory = shared_secret_example(tmp_path) if example == "shared" else EXAMPLES / example
    if example == "shared":  # the intact copy proves its shared secret
        code, text = await demo(directory)
        assert code == 0 and "✓ shared secret dgc <-> jobserver" in text, text

    def hook(mounts: Mapping[IdentityRef, Path]) -> None:
        (target,) = [path for ref, path in mounts.items() if ref.name == victim]
        for path in target.iterdir():
            path.chmod(0o644)
        breaks(target)

    code, text = await demo(directory, hook)
    assert code == 1, text
    failed = [line for line in text.splitlines() if line.startswith("✗")]
    assert len(failed) == len(proofs), text
    for line, proof in zip(sorted(failed), sorted(proofs), strict=True):
        assert line.startswith(f"✗ {proof}"), text
        assert proof in text.split("demo failed")[1]


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    result = subprocess.run([sys.executable, "-m", "trustwire.cli", "demo", "--output", str(out)],
                            capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo passed" in result.stdout
    assert "probes" not in result.stdout or "0 failed" in result.stdout
    return out


def test_demo_writes_objects_and_mounts(demo_output: Path) -> None:
    objects = demo_output / "objects"
    for ns, ident in (("governance", "dgc"), ("jobs", "jobserver")):
        deployment = yaml.safe_load((objects / ns / "Deployment" / f"{ident}.yaml").read_text())
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        status = yaml.safe_load((objects / ns / "ServiceIdentity" / f"{ident}.yaml").read_text())["status"]
        assert annotations[names.MATERIAL_HASH_ANNOTATION] == status["materialHash"]
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        assert [v["name"] for v in volumes] == [names.VOLUME_NAME]
        assert (objects / ns / "Secret" / f"{names.ca_secret(ident)}.yaml").exists()
        mount = demo_output / "mounts" / ns / ident
        files = {p.name for p in mount.iterdir()}
        assert {"tls.crt", "tls.key", "ca.crt", "trust-bundle.pem", "peers.jwks", "jwt.key"} <= files
        assert not any(name.startswith("tls.") and "ca" in name for name in files - {"tls.crt", "tls.key"})


def test_demo_self_check_fails_with_a_wrong_trust_bundle(demo_output: Path, tmp_path: Path) -> None:
    dgc = shutil.copytree(demo_output / "mounts" / "governance" / "dgc", tmp_path / "dgc")
    jobserver = shutil.copytree(demo_output / "mounts" / "jobs" / "jobserver", tmp_path / "jobserver")
    for path in (*dgc.iterdir(), *jobserver.iterdir()):
        path.chmod(0o644)
    assert prove_mtls(jobserver, dgc, server_hostname="jobserver.jobs.svc").ok

    stranger = pki.generate_private_key(pki.KeyAlgorithm.ECDSAP256)
    outsider_ca = pki.create_ca(stranger, common_name="stranger", now=utcnow(), lifetime=pki.BACKDATE * 1000)
    (dgc / "trust-bundle.pem").write_bytes(pki.cert_to_pem(outsider_ca))
    wrong = prove_mtls(jobserver, dgc, server_hostname="jobserver.jobs.svc")
    assert not wrong.ok and "refused" in wrong.detail

    # the hostname is checked too
    assert not prove_mtls(dgc, jobserver, server_hostname="somebody-else.svc").ok
    # and a JWT verifier without the signer's key refuses the token
    (jobserver / "peers.jwks").write_text('{"keys": []}')
    assert not prove_jwt(dgc, jobserver, audience="product-factory", now=utcnow()).ok


async def test_run_demo_fails_when_a_proof_fails(tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    shutil.copytree(Path(__file__).parents[2] / "examples" / "quickstart", examples)
    rel = examples / "30-relationship.yaml"
    # without consent nothing is distributed: the demo must notice and exit 1
    ids = examples / "20-identities.yaml"
    ids.write_text(ids.read_text().replace("namespaces: [governance]", "namespaces: []"))
    assert rel.exists()
    code = await run_demo(output=None, examples=examples, console=Console(file=open("/dev/null", "w")),  # noqa: SIM115
                          ready_timeout=4.0)
    assert code == 1


def test_demo_rotate_probes_continuously_with_zero_failures(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "trustwire.cli", "demo", "--rotate", "--output", str(tmp_path)],
                            capture_output=True, text=True, timeout=240, cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    probes = [line for line in lines if line.startswith("probes: ")]
    assert len(probes) == 1
    ok, failed = (int(part.split()[0]) for part in probes[0].removeprefix("probes: ").split(", "))
    assert ok > 100 and failed == 0
    assert any("CA Distributing" in line for line in lines) and any("CA Retiring" in line for line in lines)
    assert any("JWT Publishing" in line for line in lines)
    assert (tmp_path / "objects" / "governance" / "ServiceIdentity" / "dgc.yaml").exists()
