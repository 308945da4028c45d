"""``trustwire status | rotate | verify`` (and ``run``'s metrics endpoint), end to end.

The commands are synchronous click commands that run their own event loop, so the tests
are synchronous too: a module fixture starts the API emulator *and the real operator* in
a background event-loop thread, applies ``examples/quickstart`` and waits until it is
Ready; the tests then invoke the commands with click's ``CliRunner`` exactly as a user
would, against the emulator's URL (``--server``), and use the background loop to read
back what the commands did.

``verify --dir`` reads the layout ``trustwire demo --output`` writes: the mounts are
produced by the demo's own ``mounted_files``/``write_mount`` from the operator's Secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeVar

import kmock
import pytest
import yaml
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

import trustwire.cli
from trustwire import names, pki
from trustwire.cli import main
from trustwire.controller.reconciler import Controller
from trustwire.demo.drill import mounted_files
from trustwire.demo.emulator import running_emulator
from trustwire.demo.run import apply, default_examples, load_manifests, write_mount
from trustwire.k8s.client import ApiConfig, Client
from trustwire.k8s.resources import EVENTS, IDENTITIES, RELATIONSHIPS, SECRETS, decode_data
from trustwire.runtime import OperatorOptions, running_operator

T = TypeVar("T")
#: the documented exit codes (docs/reference.md §5)
OK, NOT_OK, USAGE, UNAVAILABLE = 0, 1, 2, 3
QUICKSTART = [("governance", "dgc"), ("jobs", "jobserver")]


class BackgroundLoop:
    """An event loop in a daemon thread; ``run(coro)`` executes a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-event-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T], timeout: float = 90.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Cluster:
    url: str
    bg: BackgroundLoop
    client: Client
    controller: Controller | None

    def get(self, resource: Any, namespace: str, name: str) -> dict[str, Any] | None:
        return self.bg.run(self.client.get(resource, namespace, name))

    def wait_for(self, resource: Any, namespace: str, name: str, predicate: Any,
                 limit: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + limit
        body = None
        while time.monotonic() < deadline:
            body = self.get(resource, namespace, name)
            if body is not None and predicate(body):
                return body
            time.sleep(0.05)
        last = (body or {}).get("status")
        raise AssertionError(f"timed out waiting for {namespace}/{name}; last status {last}")


def ready(body: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (body.get("status") or {}).get("conditions") or [])


@contextlib.contextmanager
def emulator(with_operator: bool) -> Iterator[Cluster]:
    """The API emulator with the quickstart applied, optionally with the operator, in a background loop."""
    bg = BackgroundLoop()
    stack = contextlib.AsyncExitStack()

    async def start() -> Cluster:
        emu = await stack.enter_async_context(running_emulator())
        config = ApiConfig(server=emu.url)
        controller = None
        if with_operator:
            controller = await stack.enter_async_context(
                running_operator(config, OperatorOptions(workers=2, resync_interval=3600.0)))
        client = await stack.enter_async_context(Client(config))
        await apply(client, load_manifests(default_examples()))
        return Cluster(emu.url, bg, client, controller)

    try:
        cluster = bg.run(start())
        yield cluster
    finally:
        bg.run(stack.aclose())
        bg.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with emulator(with_operator=True) as running:
        for ns, name in QUICKSTART:
            running.wait_for(IDENTITIES, ns, name, ready)
        running.wait_for(RELATIONSHIPS, "governance", "dgc-jobserver", ready)
        assert running.controller is not None
        running.bg.run(running.controller.wait_idle())
        yield running


@pytest.fixture(scope="module")
def demo_dir(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<root>/mounts/<ns>/<identity>/`` exactly as ``trustwire demo --output <root>`` writes it."""
    root = tmp_path_factory.mktemp("demo-output")
    for ns, name in QUICKSTART:
        write_mount(root / "mounts" / ns / name, cluster.bg.run(mounted_files(cluster.client, ns, name)))
    return root


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_one_line_error(result: Result, message: str, code: int = UNAVAILABLE) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.output.strip().splitlines() == [f"Error: {message}"]


def copy_mount(demo_dir: Path, tmp_path: Path, ns: str = "governance", name: str = "dgc") -> Path:
    target = tmp_path / "mounts" / ns / name
    shutil.copytree(demo_dir / "mounts" / ns / name, target)
    for path in target.iterdir():
        path.chmod(0o644)
    return target


# ======================================================================================
# kubectl plugin and command list
# ======================================================================================
def test_kubectl_plugin_entry_point_is_the_same_cli() -> None:
    scripts = {ep.name: ep for ep in entry_points(group="console_scripts")}
    assert scripts["kubectl-trustwire"].value == "trustwire.cli:main"
    assert scripts["trustwire"].value == "trustwire.cli:main"
    assert scripts["kubectl-trustwire"].load() is trustwire.cli.main


def test_help_lists_the_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("run", "demo", "status", "rotate", "verify", "check", "export", "confirm", "enroll"):
        assert re.search(rf"^\s+{command}\s", result.output, re.MULTILINE), command


def test_demo_serve_does_not_combine_with_rotate(tmp_path: Path) -> None:
    result = invoke("demo", "--rotate", "--serve", str(tmp_path / "serve"))
    assert result.exit_code == 2 and "--serve runs with the plain demo" in result.output
    assert not (tmp_path / "serve").exists()


# ======================================================================================
# status
# ======================================================================================
def test_status_all_namespaces(cluster: Cluster) -> None:
    result = invoke("status", "-A", "--server", cluster.url)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "ServiceIdentities (any namespace)" in out and "TrustRelationships (any namespace)" in out
    for ns, name in QUICKSTART:
        body = cluster.get(IDENTITIES, ns, name)
        assert body is not None
        row = next(line for line in out.splitlines() if f" {name} " in line and f" {ns} " in line)
        assert "True" in row and "Ready" in row
        assert body["status"]["certificate"]["notAfter"] in row
        assert re.search(r"\((in (29|30) days)\)", row), row
        assert body["status"]["jwt"]["kid"] in row
        assert re.search(r"│\s+1\s+│", row), row  # one peer
    assert re.search(r"dgc-jobserver\s+│\s+True\s+│\s+Ready\s+│\s+governance/dgc <-> jobs/jobserver",
                     out), out
    assert "✗" not in out


def test_status_one_namespace(cluster: Cluster) -> None:
    result = invoke("status", "-n", "jobs", "--server", cluster.url)
    assert result.exit_code == 0, result.output
    assert "jobserver" in result.output
    assert "governance" not in result.output and "TrustRelationships" not in result.output


def test_status_of_an_empty_namespace(cluster: Cluster) -> None:
    result = invoke("status", "-n", "nothing-here", "--server", cluster.url)
    assert result.exit_code == 0
    assert result.output.strip() == "no ServiceIdentities or TrustRelationships in namespace nothing-here"


def with_a_typo(cluster: Cluster) -> None:
    """broken/typo: an identity with a misspelt field, once its status says so."""
    body = {"apiVersion": "trustwire.io/v1alpha1", "kind": "ServiceIdentity",
            "metadata": {"name": "typo", "namespace": "broken", "generation": 1},
            "spec": {"serviceName": "typo", "certficate": {"duration": "24h"}}}
    if cluster.get(IDENTITIES, "broken", "typo") is None:
        cluster.bg.run(cluster.client.create(IDENTITIES, "broken", body))
    cluster.wait_for(IDENTITIES, "broken", "typo", lambda b: (b.get("status") or {}).get("conditions"))


def test_status_names_the_problem_of_an_identity_that_is_not_ready(cluster: Cluster) -> None:
    with_a_typo(cluster)
    result = invoke("status", "-n", "broken", "--server", cluster.url)
    assert result.exit_code == NOT_OK, result.output
    row = next(line for line in result.output.splitlines() if " typo " in line)
    assert "False" in row and "InvalidSpec" in row
    assert "✗ ServiceIdentity broken/typo: SpecValid InvalidSpec: spec.certficate: unknown field" \
        in result.output


def test_status_with_the_cluster_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = invoke("status", "-A", "--server", url)
    assert_one_line_error(result, f"cannot reach the Kubernetes API server at {url} "
                                  "(connection refused or host unreachable)")


def test_status_without_any_kubeconfig(tmp_path: Path) -> None:
    result = invoke("status", "--kubeconfig", str(tmp_path / "missing"))
    assert result.exit_code == UNAVAILABLE
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("Error: cannot load Kubernetes configuration:")


# ---- machine output: the documented shape, alone on stdout -----------------------------
IDENTITY_FIELDS = {"kind", "namespace", "name", "ready", "reason", "message", "problem", "peers", "ca",
                   "certificate", "kid", "rotation"}
RELATIONSHIP_FIELDS = {"kind", "namespace", "name", "ready", "reason", "message", "problem", "between"}


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_status_machine_output(cluster: Cluster, fmt: str) -> None:
    result = invoke("status", "-n", "governance", "-o", fmt, "--server", cluster.url)
    assert result.exit_code == OK, result.output
    views = json.loads(result.stdout) if fmt == "json" else yaml.safe_load(result.stdout)
    assert [(v["kind"], v["name"]) for v in views] == [("ServiceIdentity", "dgc"),
                                                        ("TrustRelationship", "dgc-jobserver")]
    sid, trust = views
    assert set(sid) == IDENTITY_FIELDS and set(trust) == RELATIONSHIP_FIELDS
    body = cluster.get(IDENTITIES, "governance", "dgc")
    assert body is not None
    assert (sid["namespace"], sid["ready"], sid["reason"], sid["problem"]) == ("governance", True, "Ready", None)
    assert sid["peers"] == 1 and sid["kid"] == body["status"]["jwt"]["kid"]
    assert sid["certificate"] == {k: body["status"]["certificate"][k] for k in ("serial", "notAfter", "renewalTime")}
    assert set(sid["rotation"]) == {"ca", "certificate", "jwt"}
    assert trust["between"] == ["governance/dgc", "jobs/jobserver"] and trust["ready"] is True


def test_status_json_of_objects_that_are_not_ready(bare: Cluster) -> None:
    result = invoke("status", "-n", "governance", "-o", "json", "--server", bare.url)
    assert result.exit_code == NOT_OK
    views = json.loads(result.stdout)
    assert {v["name"]: v["ready"] for v in views} == {"dgc": False, "dgc-jobserver": False}
    assert all(v["problem"].startswith("the operator has not reported a status yet") for v in views)
    assert "✗" not in result.stdout


def test_status_json_of_an_empty_namespace(cluster: Cluster) -> None:
    result = invoke("status", "-n", "nothing-here", "-o", "json", "--server", cluster.url)
    assert (result.exit_code, json.loads(result.stdout)) == (OK, [])


# ---- status NAME ------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "code", "kind"), [
    (["dgc", "-n", "governance"], OK, "ServiceIdentity"),
    (["sid/jobserver", "-n", "jobs"], OK, "ServiceIdentity"),
    (["trust/dgc-jobserver", "-n", "governance"], OK, "TrustRelationship"),
    (["trustrelationship.trustwire.io/dgc-jobserver", "-n", "governance"], OK, "TrustRelationship"),
    (["typo", "-n", "broken"], NOT_OK, "ServiceIdentity"),
])
def test_status_name_shows_conditions_and_events(cluster: Cluster, args: list[str], code: int, kind: str) -> None:
    if "broken" in args:
        with_a_typo(cluster)
    result = invoke("status", *args, "-o", "json", "--server", cluster.url)
    assert result.exit_code == code, result.output
    shown = json.loads(result.stdout)
    assert (shown["kind"], shown["name"], shown["ready"]) == (kind, args[0].rpartition("/")[2], code == OK)
    body = cluster.get(IDENTITIES if kind == "ServiceIdentity" else RELATIONSHIPS, args[2], shown["name"])
    assert body is not None
    assert shown["conditions"] == [{k: c.get(k) for k in ("type", "status", "reason", "message",
                                                           "lastTransitionTime")}
                                   for c in body["status"]["conditions"]]
    posted = [e for e in cluster.bg.run(cluster.client.list(EVENTS, args[2]))
              if (e.get("involvedObject") or {}).get("kind") == kind
              and (e.get("involvedObject") or {}).get("name") == shown["name"]]
    assert [(e["type"], e["reason"], e["message"]) for e in shown["events"]] == \
        [(e.get("type"), e.get("reason"), e.get("message")) for e in posted], "not exactly this object's Events"
    # an identity's issuance and every failure are Events; a relationship that became Ready has none
    assert bool(shown["events"]) is (kind == "ServiceIdentity" or code != OK), shown["events"]
    assert all(set(e) == {"type", "reason", "message", "count", "lastTimestamp"} for e in shown["events"])
    table = invoke("status", *args, "--server", cluster.url)
    assert table.exit_code == code
    assert f"{kind} {args[2]}/{shown['name']}: " in table.output and "Conditions" in table.output
    for c in shown["conditions"]:
        assert re.search(rf"│ {c['type']}\s+│ {c['status']}\s+│ {c['reason']}\s+│", table.output), table.output
    assert ("Events (newest last)" if shown["events"] else "no recent Events") in table.output


@pytest.mark.parametrize(("args", "code", "message"), [
    (["nope", "-n", "governance"], UNAVAILABLE, "Error: ServiceIdentity governance/nope not found"),
    (["trust/nope", "-n", "governance"], UNAVAILABLE, "Error: TrustRelationship governance/nope not found"),
    (["pod/dgc", "-n", "governance"], USAGE, "NAME is an identity's name, or trust/NAME"),
    (["dgc", "-A"], USAGE, "NAME is looked up in one namespace: use -n, not --all-namespaces"),
])
def test_status_name_refusals(cluster: Cluster, args: list[str], code: int, message: str) -> None:
    result = invoke("status", *args, "-o", "json", "--server", cluster.url)
    assert result.exit_code == code, result.output
    assert message in result.output and result.stdout == ""


# ======================================================================================
# rotate
# ======================================================================================
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"


def test_rotate_certificate_is_acted_on_by_the_operator(cluster: Cluster) -> None:
    before = cluster.get(IDENTITIES, "governance", "dgc")
    assert before is not None
    old_serial = before["status"]["certificate"]["serial"]
    result = invoke("rotate", "dgc", "-n", "governance", "--what", "certificate", "--server", cluster.url)
    assert result.exit_code == 0, result.output
    match = re.search(rf"trustwire\.io/rotate=(certificate:{STAMP})", result.output)
    assert match, result.output
    value = match.group(1)
    assert f"current serial {old_serial}" in result.output
    after = cluster.get(IDENTITIES, "governance", "dgc")
    assert after is not None
    assert after["metadata"]["annotations"][names.ROTATE_ANNOTATION] == value
    assert after["spec"] == before["spec"]  # a merge patch on metadata.annotations only

    rotated = cluster.wait_for(IDENTITIES, "governance", "dgc",
                               lambda b: (b["status"].get("rotation") or {}).get("handledRequest") == value)
    assert rotated["status"]["certificate"]["serial"] != old_serial
    cluster.wait_for(IDENTITIES, "governance", "dgc", ready)
    secret = cluster.get(SECRETS, "governance", names.credentials_secret("dgc"))
    leaf = pki.load_certificates(decode_data(SECRETS, secret)["tls.crt"])[0]
    assert pki.serial_hex(leaf) == rotated["status"]["certificate"]["serial"]


def test_rotate_jwt_twice_with_wait(cluster: Cluster) -> None:
    """--wait returns once the operator handled the request, so requests can follow each other.

    A JWT rotation is staged (the next key is published to peers before it signs), so the
    command reports either the new kid or the phase the rotation is in — as the status says.
    """
    values = []
    for _ in range(2):
        before = cluster.get(IDENTITIES, "jobs", "jobserver")
        assert before is not None
        kid = before["status"]["jwt"]["kid"]
        result = invoke("rotate", "jobserver", "-n", "jobs", "--what", "jwt", "--wait",
                        "--server", cluster.url)
        assert result.exit_code == 0, result.output
        match = re.search(rf"=(jwt:{STAMP})", result.output)
        assert match, result.output
        values.append(match.group(1))
        assert f"waiting for the operator (current kid {kid})" in result.output
        after = cluster.get(IDENTITIES, "jobs", "jobserver")
        assert after is not None
        assert after["status"]["rotation"]["handledRequest"] == values[-1]
        if after["status"]["jwt"]["kid"] != kid:
            assert f"done: jwt kid {kid} -> {after['status']['jwt']['kid']}" in result.output
        else:
            phase = after["status"]["rotation"]["jwt"]["phase"]
            assert f"handled: the jwt kid is still {kid}; rotation phase {phase}" in result.output
        assert "had not been handled" not in result.output
    assert values[0] != values[1]
    # the status table shows a rotation in progress
    body = cluster.get(IDENTITIES, "jobs", "jobserver")
    assert body is not None
    phase = body["status"]["rotation"]["jwt"]["phase"]
    row = next(line for line in invoke("status", "-n", "jobs", "--server", cluster.url).output.splitlines()
               if " jobserver " in line)
    assert (f"JWT {phase}" in row) if phase != "Idle" else row.rstrip("│ ").endswith("-"), row


@pytest.fixture(scope="module")
def bare() -> Iterator[Cluster]:
    """The quickstart applied to an emulator with no operator running: no status, no Secrets."""
    with emulator(with_operator=False) as running:
        yield running


def test_status_before_the_operator_reported_anything(bare: Cluster) -> None:
    result = invoke("status", "-n", "governance", "--server", bare.url)
    assert result.exit_code == NOT_OK, result.output
    row = next(line for line in result.output.splitlines() if " dgc " in line)
    assert "Unknown" in row and "no status yet" in row
    assert "✗ ServiceIdentity governance/dgc: the operator has not reported a status yet " \
           "(is it running and watching this namespace?)" in result.output


def test_status_names_the_failing_domain_condition_not_an_idle_rotation(bare: Cluster) -> None:
    def cond(type_: str, status: str, reason: str, message: str = "") -> dict[str, str]:
        return {"type": type_, "status": status, "reason": reason, "message": message,
                "lastTransitionTime": "2026-01-01T00:00:00Z"}

    status = {"peerCount": 0, "conditions": [
        cond("Ready", "False", "PeerPending", "waiting"), cond("Reconciling", "True", "PeerPending"),
        cond("Stalled", "False", "NotStalled"), cond("Rotating", "False", "Idle"),
        cond("CAReady", "True", "Valid"),
        cond("TrustReady", "False", "PeerPending", "jobs/x has not published yet")]}
    patched = bare.bg.run(bare.client.merge_patch(IDENTITIES, "jobs", "jobserver", {"status": status},
                                                  subresource="status"))
    assert patched is not None
    result = invoke("status", "-n", "jobs", "--server", bare.url)
    assert result.exit_code == NOT_OK, result.output
    assert "✗ ServiceIdentity jobs/jobserver: TrustReady PeerPending: jobs/x has not published yet" \
        in result.output


def test_verify_before_the_operator_issued_anything(bare: Cluster) -> None:
    result = invoke("verify", "dgc", "-n", "governance", "--server", bare.url)
    assert_one_line_error(result, "Secret(s) governance/dgc-trustwire-credentials, "
                                  "governance/dgc-trustwire-trust do not exist; "
                                  "ServiceIdentity governance/dgc: the operator has not reported a status "
                                  "yet (is it running and watching this namespace?)", NOT_OK)


def test_status_without_the_crds() -> None:
    """An API server that does not know trustwire.io (CRDs not installed): one clear line."""

    async def start(stack: contextlib.AsyncExitStack) -> str:
        emu = await stack.enter_async_context(kmock.KubernetesEmulator())
        server = await stack.enter_async_context(kmock.Server(emu))
        return str(server.url).rstrip("/")

    bg = BackgroundLoop()
    stack = contextlib.AsyncExitStack()
    try:
        url = bg.run(start(stack))
        result = invoke("status", "-A", "--server", url)
    finally:
        bg.run(stack.aclose())
        bg.close()
    assert_one_line_error(result, f"the API server at {url} does not serve trustwire.io/v1alpha1 "
                                  "(are the trustwire CRDs installed?)")


def test_rotate_wait_without_an_operator(bare: Cluster) -> None:
    result = invoke("rotate", "dgc", "-n", "governance", "--what", "certificate", "--wait",
                    "--timeout", "1", "--server", bare.url)
    value = re.search(rf"=(certificate:{STAMP})", result.output)
    assert value, result.output
    assert result.exit_code == NOT_OK
    assert result.output.strip().splitlines()[-1] == (
        f"Error: the operator did not handle {value.group(1)!r} within 1s "
        "(is it running and watching namespace governance?)")


def test_rotate_an_identity_that_does_not_exist(cluster: Cluster) -> None:
    result = invoke("rotate", "nope", "-n", "governance", "--what", "ca", "--server", cluster.url)
    assert_one_line_error(result, "ServiceIdentity governance/nope not found")


def test_rotate_with_the_cluster_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = invoke("rotate", "dgc", "-n", "governance", "--what", "jwt", "--server", url)
    assert_one_line_error(result, f"cannot reach the Kubernetes API server at {url} "
                                  "(connection refused or host unreachable)")


@pytest.mark.parametrize(("args", "message"), [
    (["dgc", "--all"], "name identities, or select them with -l or --all, not both"),
    (["dgc", "-l", "app=dgc"], "name identities, or select them with -l or --all, not both"),
    (["-l", "app=dgc", "--all"], "use either -l/--selector or --all"),
    (["dgc", "-A"], "named identities are looked up in one namespace: use -n, not -A"),
    (["--all", "-A", "-n", "jobs"], "use either --namespace or --all-namespaces"),
    ([], "name an identity, or select identities with -l SELECTOR or --all"),
    (["-A"], "name an identity, or select identities with -l SELECTOR or --all"),
])
def test_rotate_refuses_ambiguous_selections(args: list[str], message: str) -> None:
    result = invoke("rotate", *args, "--what", "jwt", "--server", "http://127.0.0.1:1")
    assert result.exit_code == USAGE, result.output
    assert f"Error: {message}" in result.output


def test_rotate_all_in_a_namespace_as_json(cluster: Cluster) -> None:
    before = cluster.get(IDENTITIES, "governance", "dgc")
    assert before is not None
    result = invoke("rotate", "--all", "-n", "governance", "--what", "certificate", "--wait", "-o", "json",
                    "--server", cluster.url)
    assert result.exit_code == OK, result.output
    (outcome,) = json.loads(result.stdout)
    after = cluster.get(IDENTITIES, "governance", "dgc")
    assert after is not None
    assert outcome == {
        "kind": "ServiceIdentity", "namespace": "governance", "name": "dgc", "what": "certificate",
        "request": after["status"]["rotation"]["handledRequest"], "replaced": None, "field": "serial",
        "before": before["status"]["certificate"]["serial"], "handled": True,
        "after": after["status"]["certificate"]["serial"], "phase": None, "waitingFor": None}
    assert outcome["before"] != outcome["after"]
    assert "waiting for the operator" in result.stderr and "done: certificate serial" in result.stderr


def test_rotate_wait_timeout_of_several_names_each(bare: Cluster) -> None:
    result = invoke("rotate", "--all", "-A", "--what", "jwt", "--wait", "--timeout", "1", "-o", "json",
                    "--server", bare.url)
    assert result.exit_code == NOT_OK
    outcomes = json.loads(result.stdout)
    assert [(o["namespace"], o["name"], o["handled"]) for o in outcomes] == [
        ("governance", "dgc", False), ("jobs", "jobserver", False)]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: governance/dgc: the operator did not handle") and "; jobs/jobserver: " in error


def test_rotate_with_nothing_selected(cluster: Cluster) -> None:
    result = invoke("rotate", "--all", "-n", "nothing-here", "--what", "ca", "--server", cluster.url)
    assert_one_line_error(result, "no ServiceIdentities in namespace nothing-here")


def test_rotate_refuses_an_unknown_material() -> None:
    result = invoke("rotate", "dgc", "-n", "governance", "--what", "everything", "--server", "http://127.0.0.1:1")
    assert result.exit_code == USAGE
    assert "'everything' is not one of 'ca', 'certificate', 'jwt'" in result.output


# ======================================================================================
# verify — from the cluster
# ======================================================================================
def test_verify_from_the_cluster(cluster: Cluster) -> None:
    for ns, name in QUICKSTART:
        cluster.wait_for(IDENTITIES, ns, name, ready)
    result = invoke("verify", "dgc", "-n", "governance", "--server", cluster.url)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("verifying ServiceIdentity governance/dgc\n")
    assert "✓ public: the public ConfigMap publishes our CA, JWKS and SPIFFE ID" in result.output
    assert "✓ peer jobs/jobserver:" in result.output
    assert "✗" not in result.output
    assert re.search(r"all \d+ checks passed", result.output)


def test_verify_from_the_cluster_as_json(cluster: Cluster) -> None:
    cluster.wait_for(IDENTITIES, "governance", "dgc", ready)
    result = invoke("verify", "dgc", "-n", "governance", "-o", "json", "--server", cluster.url)
    assert result.exit_code == OK, result.output
    report = json.loads(result.stdout)
    assert (report["kind"], report["namespace"], report["name"], report["ok"]) == \
        ("ServiceIdentity", "governance", "dgc", True)
    assert report["source"] == "ServiceIdentity governance/dgc"
    assert {"files", "chain", "public"} <= {c["check"] for c in report["checks"]}
    assert all(set(c) == {"check", "ok", "message"} and c["ok"] for c in report["checks"])


def test_verify_an_identity_that_does_not_exist(cluster: Cluster) -> None:
    result = invoke("verify", "ghost", "-n", "governance", "--server", cluster.url)
    assert_one_line_error(result, "ServiceIdentity governance/ghost not found")


def test_verify_with_the_cluster_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = invoke("verify", "dgc", "-n", "governance", "--server", url)
    assert_one_line_error(result, f"cannot reach the Kubernetes API server at {url} "
                                  "(connection refused or host unreachable)")


# ======================================================================================
# verify --dir
# ======================================================================================
def test_verify_dir_on_the_demo_layout(demo_dir: Path) -> None:
    for args in (["dgc"], ["dgc", "-n", "governance"], ["jobserver"]):
        result = invoke("verify", *args, "--dir", str(demo_dir))
        assert result.exit_code == 0, result.output
        assert "✗" not in result.output
        assert re.search(r"all 13 checks passed", result.output), result.output
    # the identity's own directory (a pod's mountPath) works too
    result = invoke("verify", "dgc", "--dir", str(demo_dir / "mounts" / "governance" / "dgc"))
    assert result.exit_code == 0, result.output
    assert "✓ SPIFFE ID: spiffe://cluster.local/ns/governance/sid/dgc" in result.output


def test_verify_dir_with_a_missing_peer_ca(demo_dir: Path, tmp_path: Path) -> None:
    mount = copy_mount(demo_dir, tmp_path)
    (mount / "trust-bundle.pem").write_bytes(b"")
    result = invoke("verify", "dgc", "--dir", str(tmp_path))
    assert result.exit_code == 1
    assert re.search(r"^✗ peer jobs/jobserver: its CA sha256:[0-9a-f]{16}… is not in trust-bundle.pem$",
                     result.output, re.MULTILINE), result.output
    assert "2 of 13 checks failed" in result.output


def test_verify_dir_as_yaml_with_a_problem(demo_dir: Path, tmp_path: Path) -> None:
    mount = copy_mount(demo_dir, tmp_path)
    (mount / "trust-bundle.pem").write_bytes(b"")
    result = invoke("verify", "dgc", "--dir", str(tmp_path), "-o", "yaml")
    assert result.exit_code == NOT_OK
    report = yaml.safe_load(result.stdout)
    assert report["ok"] is False and report["namespace"] is None and report["source"] == str(mount)
    failed = [c["check"] for c in report["checks"] if not c["ok"]]
    assert "peer jobs/jobserver" in failed and len(failed) == 2


def test_verify_dir_with_an_expired_leaf(cluster: Cluster, demo_dir: Path, tmp_path: Path) -> None:
    mount = copy_mount(demo_dir, tmp_path)
    ca_data = decode_data(SECRETS, cluster.get(SECRETS, "governance", names.ca_secret("dgc")))
    ca_cert, ca_key = pki.load_certificates(ca_data["tls.crt"])[0], pki.load_private_key(ca_data["tls.key"])
    key = pki.load_private_key((mount / "tls.key").read_bytes())
    current = pki.load_certificates((mount / "tls.crt").read_bytes())[0]
    issued = datetime.now(UTC) - timedelta(days=100)
    backdated_ca = pki.create_ca(ca_key, common_name=pki.subject_common_name(ca_cert) or "", now=issued,
                                 lifetime=timedelta(days=365))  # same key and subject, valid in the past
    expired = pki.create_leaf(backdated_ca, ca_key, key.public_key(), common_name="dgc",
                              dns_names=pki.dns_sans(current), uri_sans=pki.uri_sans(current),
                              now=issued, lifetime=timedelta(days=30))
    (mount / "tls.crt").write_bytes(pki.cert_to_pem(expired) + ca_data["tls.crt"])
    password = (mount / "keystore.password").read_text()
    (mount / "keystore.p12").write_bytes(pki.pkcs12_keystore(key, expired, [ca_cert], password))
    result = invoke("verify", "dgc", "--dir", str(tmp_path))
    assert result.exit_code == 1
    assert re.search(r"^✗ validity: the leaf expired at \S+ \(70 days ago\)$", result.output, re.MULTILINE), \
        result.output
    assert "✓ chain:" in result.output and "✓ keystore.p12:" in result.output


def test_verify_dir_with_a_wrong_keystore_password(demo_dir: Path, tmp_path: Path) -> None:
    mount = copy_mount(demo_dir, tmp_path)
    (mount / "keystore.password").write_text("hunter2hunter2")
    result = invoke("verify", "dgc", "--dir", str(tmp_path))
    assert result.exit_code == 1
    assert "✗ keystore.p12: keystore.p12 does not open with keystore.password " \
        "(wrong password or corrupt file)" in result.output
    assert "1 of 13 checks failed: keystore.p12:" in result.output
    assert "hunter2" not in result.output


def test_verify_dir_with_a_tampered_jwt_kid(demo_dir: Path, tmp_path: Path) -> None:
    mount = copy_mount(demo_dir, tmp_path)
    real = (mount / "jwt.kid").read_text().strip()
    (mount / "jwt.kid").write_text("tampered-kid")
    result = invoke("verify", "dgc", "--dir", str(tmp_path))
    assert result.exit_code == 1
    assert f"✗ jwt: jwt.kid tampered-kid is not the RFC 7638 thumbprint of jwt.jwk ({real})" in result.output


def test_verify_dir_refuses_material_of_another_identity(demo_dir: Path) -> None:
    result = invoke("verify", "jobserver", "--dir", str(demo_dir / "mounts" / "governance" / "dgc"))
    assert result.exit_code == 1
    assert "✗ SPIFFE ID: spiffe://cluster.local/ns/governance/sid/dgc: name is dgc, expected jobserver" \
        in result.output


def test_verify_dir_without_material(demo_dir: Path) -> None:
    result = invoke("verify", "nobody", "--dir", str(demo_dir))
    assert_one_line_error(result, f"no material for nobody in {demo_dir} (looked for files there, in "
                                  "*/nobody/ and in mounts/*/nobody/)")


# ======================================================================================
# run --metrics-port: the real command in a subprocess
# ======================================================================================
def scrape(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    return {f.name: f for f in text_string_to_metric_families(text)}


@pytest.mark.integration
def test_run_serves_metrics_of_the_running_operator(tmp_path: Path) -> None:
    port = free_port()
    with emulator(with_operator=False) as cluster:
        log = (tmp_path / "operator.log").open("w+")
        process = subprocess.Popen(
            [sys.executable, "-m", "trustwire.cli", "run", "--server", cluster.url,
             "--metrics-port", str(port), "--liveness", "", "--standalone", "--workers", "2"],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            families = None
            while time.monotonic() < deadline:
                families = scrape(port)
                ready = [s for s in families["trustwire_certificate_ready_status"].samples
                         if s.labels["condition"] == "True"] if families else []
                if len(ready) == 2 and all(s.value == 1 for s in ready):
                    break
                assert process.poll() is None, "the operator exited"
                time.sleep(0.2)
            else:
                raise AssertionError(f"no Ready identities in the metrics; last scrape: {families}")
            body = cluster.get(IDENTITIES, "governance", "dgc")
            assert body is not None
            expiry = next(s.value for s in families["trustwire_certificate_expiration_timestamp_seconds"].samples
                          if s.labels == {"namespace": "governance", "name": "dgc"})
            assert expiry == datetime.fromisoformat(body["status"]["certificate"]["notAfter"]).timestamp()
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait(timeout=10)
            log.seek(0)
            output = log.read()
            log.close()
        assert code == 0, output
        assert "Traceback" not in output
        assert scrape(port) is None  # the endpoint stopped with the operator


# ======================================================================================
# check (the real discovery, Lease and authorizer: tests/integration/test_cli_cluster.py)
# ======================================================================================
@pytest.mark.parametrize(("args", "code", "message"), [
    ([], UNAVAILABLE, "Error: cannot reach the Kubernetes API server at {url} "
                      "(connection refused or host unreachable)"),
    (["--wait", "--timeout", "1s"], UNAVAILABLE, "Error: cannot reach the Kubernetes API server at {url} "
                                                 "(connection refused or host unreachable)"),
    (["--lease", "trustwire"], USAGE, "Error: --lease takes NAMESPACE/NAME"),
    (["-n", "x", "-A"], USAGE, "Error: use either --namespace or --all-namespaces"),
    (["--wait", "--timeout", "soon"], USAGE, "Invalid value for --timeout: 'soon' is not a duration"),
])
def test_check_refusals_and_an_unreachable_cluster(args: list[str], code: int, message: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = invoke("check", *args, "--server", url)
    assert result.exit_code == code, result.output
    assert message.format(url=url) in result.output and result.stdout == ""


@pytest.mark.parametrize(
    ("members", "shown"),
    [
        ([{"identity": "dgc"}, {"identity": "jobserver", "namespace": "jobs"}], ["governance/dgc", "jobs/jobserver"]),
        ([{"identity": "dgc"}, {"external": {"name": "onprem", "caBundleRef": {"name": "ca"}}}],
         ["governance/dgc", "external:onprem"]),
        ([{"issuer": {"url": "https://kc.example.com/realms/a", "caBundleRef": {"name": "ca"}}}, {"identity": "proxy"}],
         ["issuer:https://kc.example.com/realms/a", "governance/proxy"]),
    ],
)
def test_status_shows_each_member_of_between(members: list[dict[str, Any]], shown: list[str]) -> None:
    from trustwire.cli.observed import between

    body = {"metadata": {"name": "r", "namespace": "governance"}, "spec": {"between": members}}
    assert between(body) == shown
