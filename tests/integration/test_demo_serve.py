"""Issue 16: `trustwire demo --serve DIR` keeps the demo running with `trustwire serve` beside
it, and the curl + openssl flow of docs/enrollment.md runs against what DIR/endpoints.json says."""

from __future__ import annotations

import asyncio
import io
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from trustwire.demo.run import run_demo

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "examples" / "enrollment"


async def _run(*argv: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE if stdin else None,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin)
    return proc.returncode or 0, out.decode(), err.decode()


async def _curl(found: dict[str, Any], method: str, url: str, *extra: str,
                body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    argv = ["curl", "-sS", "-X", method, "--cacert", found["serverCA"], "-w", "\n%{http_code}", *extra]
    if body is not None:
        argv += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
    rc, out, err = await _run(*argv, url, stdin=body)
    assert rc == 0, err
    text, _, code = out.rpartition("\n")
    return int(code), json.loads(text)


async def _endpoints(directory: Path, demo: asyncio.Task[int]) -> dict[str, Any]:
    path = directory / "endpoints.json"
    for _ in range(600):
        if path.exists():
            return dict(json.loads(path.read_text()))
        assert not demo.done(), "the demo ended before serving"
        await asyncio.sleep(0.1)
    raise AssertionError("no endpoints.json within a minute")


def _private_token(path: Path) -> str:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return path.read_text()


async def test_the_hand_flow_runs_from_endpoints_json(tmp_path: Path) -> None:
    serve, stop, out = tmp_path / "serve", asyncio.Event(), io.StringIO()
    demo = asyncio.create_task(run_demo(output=None, examples=EXAMPLE, console=Console(file=out, width=300),
                                        serve=serve, stop=stop))
    try:
        found = await _endpoints(serve, demo)
        assert found["apiServer"].startswith("http://127.0.0.1:") and found["server"].startswith("https://localhost:")
        (enrolled,) = found["enrollments"]
        assert (enrolled["namespace"], enrolled["name"]) == ("jobs", "erp")
        token = _private_token(Path(enrolled["tokenFile"]))

        status, info = await _curl(found, "GET", enrolled["connectorUrl"], "-H", f"Authorization: Bearer {token}")
        assert status == 200, info
        assert (info["subject"]["commonName"], info["subject"]["organization"]) == ("erp-prod", ["Acme"])
        rc, _, err = await _run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                                "-nodes", "-keyout", str(tmp_path / "app.key"), "-out", str(tmp_path / "app.csr"),
                                "-subj", "/O=Acme/CN=erp-prod")
        assert rc == 0, err
        csr = json.dumps({"csr": (tmp_path / "app.csr").read_text()}).encode()
        status, issued = await _curl(found, "POST", info["urls"]["certificates"], "-H",
                                     f"Authorization: Bearer {info['token']}", body=csr)
        assert status == 201, issued
        (tmp_path / "app.crt").write_text(issued["certificate"])
        (tmp_path / "ca.crt").write_text(issued["ca"])
        rc, verified, err = await _run("openssl", "verify", "-purpose", "sslclient", "-CAfile",
                                       str(tmp_path / "ca.crt"), str(tmp_path / "app.crt"))
        assert rc == 0 and "OK" in verified, err

        mtls = ("--cert", str(tmp_path / "app.crt"), "--key", str(tmp_path / "app.key"))
        status, management = await _curl(found, "GET", info["urls"]["managementInfo"], *mtls)
        assert status == 200, management
        assert (management["namespace"], management["enrollment"]) == ("jobs", "erp")
        status, reused = await _curl(found, "GET", enrolled["connectorUrl"], "-H", f"Authorization: Bearer {token}")
        assert status == 401 and reused["error"]["reason"] in {"TokenInvalid", "TokenAlreadyUsed"}, reused
    finally:
        stop.set()
        code = await asyncio.wait_for(demo, 60)
    assert code == 0, out.getvalue()
    assert "demo passed" in out.getvalue()
