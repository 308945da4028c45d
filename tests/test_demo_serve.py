"""``trustwire demo --serve DIR``: the server runs beside the demo's emulator and operator, and
DIR/endpoints.json says where the API, the server, its CA, the tokens and discovery are;
curl reaches the server with the CA file and enrols with a token file."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import stat
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from trustwire.demo.run import default_examples, run_demo

EXTRA = [
    {"apiVersion": "trustwire.io/v1alpha1", "kind": "ServiceIdentity", "metadata": {"name": "connector",
                                                                                   "namespace": "erp"},
     "spec": {"enrollment": {"enabled": True}}},
    {"apiVersion": "trustwire.io/v1alpha1", "kind": "Enrollment", "metadata": {"name": "sap", "namespace": "erp"},
     "spec": {"identity": "connector", "subject": {"commonName": "sap-prod"}}},
]


async def _curl(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec("curl", "-sS", "-w", "\n%{http_code}", *argv,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    body, _, code = out.decode().rpartition("\n")
    return int(code), body


def _read(path: str) -> str:
    return Path(path).read_text()


def _mode(path: str) -> int:
    return stat.S_IMODE(Path(path).stat().st_mode)


def test_demo_serve_writes_endpoints_and_serves(tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    shutil.copytree(default_examples(), examples)
    (examples / "00-namespaces.yaml").write_text((examples / "00-namespaces.yaml").read_text() + "\n---\n"
                                                 + yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                                                   "metadata": {"name": "erp"}}))
    (examples / "40-enrollment.yaml").write_text(yaml.safe_dump_all(EXTRA))
    served = tmp_path / "serve"
    seen: dict[str, Any] = {}

    async def check() -> None:
        endpoints = json.loads((served / "endpoints.json").read_text())
        seen["endpoints"] = endpoints
        ca = endpoints["serverCA"]
        seen["health"] = await _curl("--cacert", ca, endpoints["serverURL"] + "/healthz")
        token = _read(endpoints["tokens"]["erp/sap"])
        seen["mode"] = _mode(endpoints["tokens"]["erp/sap"])
        seen["info"] = await _curl("--cacert", ca, "-H", f"Authorization: Bearer {token}", endpoints["enrollmentURL"])

    out = io.StringIO()
    code = asyncio.run(run_demo(output=None, examples=examples, console=Console(file=out, width=300),
                                serve=served, hold=check))
    assert code == 0
    text = out.getvalue()
    assert "demo passed" in text and text.index("demo passed") < text.index("serving; endpoints in")
    endpoints = seen["endpoints"]
    assert endpoints["apiURL"].startswith("http://127.0.0.1:")
    assert endpoints["serverURL"].startswith("https://localhost:")
    assert set(endpoints) == {"apiURL", "serverURL", "serverCA", "enrollmentURL", "tokens", "discovery"}
    assert seen["health"] == (200, "ok\n")
    assert seen["mode"] == 0o600
    status, body = seen["info"]
    assert status == 200, body
    assert json.loads(body)["subject"]["commonName"] == "sap-prod"
