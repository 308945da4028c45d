"""``trustwire`` / ``kubectl trustwire``: run the operator, run the demo, inspect and rotate.

Errors reach the user as one clear line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.markup import escape

from trustwire import __version__
from trustwire.plan.identity import parse_time

if TYPE_CHECKING:
    from trustwire.inspection import Target
    from trustwire.k8s.client import ApiConfig, Client

_T = TypeVar("_T")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trustwire")
def main() -> None:
    """trustwire wires mutual authentication (mTLS, JWT, shared secrets) between services."""


@main.command()
@click.option("-n", "--namespace", "namespaces", multiple=True,
              help="Serve only these namespaces (repeatable).")
@click.option("-A", "--all-namespaces", is_flag=True, help="Serve every namespace (the default without -n).")
@click.option("--kubeconfig", type=click.Path(dir_okay=False),
              help="Kubeconfig file (default: in-cluster, then ~/.kube/config).")
@click.option("--context", help="Kubeconfig context.")
@click.option("--server", help="API server URL without credentials (e.g. an emulator).")
@click.option("--liveness", default="http://0.0.0.0:8080/healthz", show_default=True,
              help="Liveness endpoint URL ('' to disable).")
@click.option("--metrics-port", type=int, default=9090, show_default=True,
              help="Prometheus metrics port (0 to disable).")
@click.option("--lease", help="NAMESPACE/NAME of the Lease for leader election (HA: one replica acts at a time).")
@click.option("--identity", envvar="POD_NAME", help="This replica's name in the Lease (default: host name).")
@click.option("--standalone", is_flag=True, help="Single replica, no leader election (the default without --lease).")
@click.option("--workers", type=int, default=4, show_default=True, help="Concurrent reconciles.")
@click.option("--resync", type=float, default=600.0, show_default=True, help="Seconds between full resyncs.")
@click.option("--propagation-delay", type=float, default=90.0, show_default=True,
              help="Seconds a rotation waits for consumers that have no workloads to report a rollout.")
@click.option("-v", "--verbose", is_flag=True)
def run(namespaces: tuple[str, ...], all_namespaces: bool, kubeconfig: str | None, context: str | None,
        server: str | None, liveness: str, metrics_port: int, lease: str | None, identity: str | None,
        standalone: bool, workers: int, resync: float, propagation_delay: float, verbose: bool) -> None:
    """Run the operator against a cluster."""
    from trustwire.handlers import quiet_kopf_logging
    from trustwire.k8s.client import load_config
    from trustwire.runtime import OperatorOptions, running_operator

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_kopf_logging()
    if namespaces and all_namespaces:
        raise click.UsageError("use either --namespace or --all-namespaces")
    try:
        config = load_config(server=server, kubeconfig=kubeconfig, context=context)
    except Exception as exc:
        raise click.ClickException(f"cannot load Kubernetes configuration: {exc}") from None
    if lease and standalone:
        raise click.UsageError("use either --lease or --standalone")
    if lease and "/" not in lease:
        raise click.UsageError("--lease takes NAMESPACE/NAME, e.g. trustwire-system/trustwire")
    options = OperatorOptions(
        clusterwide=not namespaces, namespaces=namespaces, liveness_endpoint=liveness or None,
        lease=lease, identity=identity, workers=workers, resync_interval=resync,
        propagation_delay=timedelta(seconds=propagation_delay))

    async def main_async() -> None:
        from trustwire.metrics import start_metrics_server

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with running_operator(config, options) as controller:
            # kopf installs its own SIGINT/SIGTERM handlers when it starts (replacing ours), and
            # then only kopf would stop while this coroutine waits forever: take them back.
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            stop_metrics = None
            if metrics_port:
                try:
                    stop_metrics = start_metrics_server(controller, metrics_port)
                except OSError as exc:
                    raise click.ClickException(
                        f"cannot serve metrics on port {metrics_port}: {exc}") from None
                logging.getLogger("trustwire").info("serving metrics on :%d/metrics", metrics_port)
            try:
                await stop.wait()
            finally:
                if stop_metrics is not None:
                    stop_metrics()

    asyncio.run(main_async())


@main.command()
@click.option("--output", type=click.Path(file_okay=False, path_type=Path),
              help="Write every object and every identity's mounted files here.")
@click.option("--examples", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Directory of manifests to apply (default: examples/quickstart).")
@click.option("--rotate", is_flag=True,
              help="Short lifetimes: rotate CAs, leaves and JWT keys while probing mTLS and JWT continuously.")
def demo(output: Path | None, examples: Path | None, rotate: bool) -> None:
    """Run the operator on the embedded API emulator and prove the result."""
    from trustwire.demo.rotate import run_rotation_demo
    from trustwire.demo.run import run_demo
    from trustwire.handlers import quiet_kopf_logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_kopf_logging()
    logging.getLogger("trustwire").setLevel(logging.ERROR)
    try:
        runner = run_rotation_demo if rotate else run_demo
        code = asyncio.run(runner(output=output, examples=examples))
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


# ======================================================================================
# status | rotate | verify: read the cluster (or a directory), never a traceback
# ======================================================================================
def _cluster_options(func: Callable[..., None]) -> Callable[..., None]:
    """--kubeconfig/--context/--server, as for ``run``."""
    func = click.option("--server", help="API server URL without credentials (e.g. an emulator).")(func)
    func = click.option("--context", help="Kubeconfig context.")(func)
    return click.option("--kubeconfig", type=click.Path(dir_okay=False),
                        help="Kubeconfig file (default: in-cluster, then ~/.kube/config).")(func)


def _load(server: str | None, kubeconfig: str | None, context: str | None) -> ApiConfig:
    from trustwire.k8s.client import load_config

    try:
        return load_config(server=server, kubeconfig=kubeconfig, context=context)
    except Exception as exc:  # kubeconfig parsing raises many types; the user needs one line
        raise click.ClickException(f"cannot load Kubernetes configuration: {exc}") from None


def _api_call(config: ApiConfig, work: Callable[[Client], Awaitable[_T]]) -> _T:
    """Run ``work`` with a short-retrying client; API and network failures become one line."""
    from trustwire.k8s.client import UNREACHABLE, ApiError, Client

    async def go() -> _T:
        async with Client(config, timeout=20.0, retries=1) as client:
            return await work(client)

    try:
        return asyncio.run(go())
    except ApiError as exc:
        if exc.reason == UNREACHABLE:
            raise click.ClickException(f"cannot reach the Kubernetes API server at {config.server} "
                                       f"({exc.api_message})") from None
        if exc.status == 404 and exc.verb == "list" and "/apis/trustwire.io/" in exc.path:
            raise click.ClickException(f"the API server at {config.server} does not serve "
                                       "trustwire.io/v1alpha1 (are the trustwire CRDs installed?)") from None
        if exc.status in (401, 403):
            detail = f": {exc.api_message}" if exc.api_message else ""
            raise click.ClickException(f"the API server refused {exc.verb} {exc.path}: "
                                       f"{exc.status} {exc.reason}{detail}") from None
        raise click.ClickException(str(exc)) from None
    except (OSError, ssl.SSLError) as exc:
        raise click.ClickException(
            f"cannot reach the Kubernetes API server at {config.server} ({exc})") from None


def _section(body: Mapping[str, Any] | None, key: str) -> Mapping[str, Any]:
    """``body[key]`` if it is a mapping, else empty: status and spec are user-editable."""
    value = (body or {}).get(key)
    return value if isinstance(value, Mapping) else {}


def _namespace(config: ApiConfig, namespace: str | None) -> str:
    return namespace or config.default_namespace or "default"


def _condition(body: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for condition in _section(body, "status").get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == type_:
            return condition
    return None


def _relative(moment: datetime, now: datetime) -> str:
    seconds = (moment - now).total_seconds()
    size = abs(seconds)
    amount = (f"{size / 86400:.0f} days" if size >= 2 * 86400 else
              f"{size / 3600:.0f} hours" if size >= 2 * 3600 else f"{size / 60:.0f} minutes")
    return f"in {amount}" if seconds >= 0 else f"{amount} ago"


def _ready_cell(body: Mapping[str, Any]) -> tuple[str, str]:
    """(coloured Ready, reason) for a table row."""
    ready = _condition(body, "Ready")
    if ready is None:
        return "[yellow]Unknown[/]", "no status yet"
    colour = {"True": "green", "False": "red"}.get(str(ready.get("status")), "yellow")
    return f"[{colour}]{escape(str(ready.get('status')))}[/]", escape(str(ready.get("reason") or ""))


#: kstatus summaries and informational conditions: never "the problem" (Rotating=False is idle).
_SUMMARY_CONDITIONS = ("Ready", "Reconciling", "Stalled", "Rotating")


def _first_problem(body: Mapping[str, Any]) -> str | None:
    """The first failing condition of an object that is not Ready, as one line."""
    ready = _condition(body, "Ready")
    if ready is not None and ready.get("status") == "True":
        return None
    for condition in _section(body, "status").get("conditions") or []:
        if not isinstance(condition, Mapping) or condition.get("type") in _SUMMARY_CONDITIONS:
            continue
        if condition.get("status") == "False":
            return f"{condition.get('type')} {condition.get('reason')}: {condition.get('message')}"
    if ready is not None:
        return f"{ready.get('reason')}: {ready.get('message')}"
    return "the operator has not reported a status yet (is it running and watching this namespace?)"


def _rotation_cell(status: Mapping[str, Any]) -> str:
    """Rotations in progress (``status.rotation.<material>.phase`` other than Idle)."""
    rotation = _section(status, "rotation")
    labels = (("ca", "CA"), ("certificate", "cert"), ("jwt", "JWT"))
    phases = [f"{label} {phase}" for material, label in labels
              if (phase := _section(rotation, material).get("phase")) and phase != "Idle"]
    return f"[yellow]{escape(', '.join(phases))}[/]" if phases else "-"


def _expiry_cell(status: Mapping[str, Any], now: datetime) -> str:
    cert = _section(status, "certificate")
    not_after = parse_time(cert.get("notAfter"))
    if not_after is None:
        return "-"
    renewal = parse_time(cert.get("renewalTime"))
    colour = "red" if not_after <= now else "yellow" if renewal is not None and renewal <= now else ""
    text = f"{not_after.strftime('%Y-%m-%dT%H:%M:%SZ')} ({_relative(not_after, now)})"
    return f"[{colour}]{text}[/]" if colour else text


@main.command()
@click.option("-n", "--namespace", help="Namespace (default: the kubeconfig context's, else 'default').")
@click.option("-A", "--all-namespaces", is_flag=True, help="Every namespace.")
@_cluster_options
def status(namespace: str | None, all_namespaces: bool, kubeconfig: str | None, context: str | None,
           server: str | None) -> None:
    """Show identities and relationships: Ready, reason, peers, certificate expiry, kid."""
    from rich.console import Console
    from rich.table import Table

    from trustwire.k8s.client import IDENTITIES, RELATIONSHIPS

    if namespace and all_namespaces:
        raise click.UsageError("use either --namespace or --all-namespaces")
    config = _load(server, kubeconfig, context)
    ns = None if all_namespaces else _namespace(config, namespace)

    async def read(client: Client) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return await client.list(IDENTITIES, ns), await client.list(RELATIONSHIPS, ns)

    identities, relationships = _api_call(config, read)
    console = Console(width=None if sys.stdout.isatty() else 200, highlight=False)
    where = "any namespace" if ns is None else f"namespace {ns}"
    if not identities and not relationships:
        console.print(f"no ServiceIdentities or TrustRelationships in {where}")
        return
    now = datetime.now(UTC)

    def key(body: Mapping[str, Any]) -> tuple[str, str]:
        meta = body.get("metadata") or {}
        return str(meta.get("namespace") or ""), str(meta.get("name") or "")

    problems: list[str] = []
    if identities:
        table = Table(title=f"ServiceIdentities ({where})", title_justify="left")
        for column in ("Namespace", "Name", "Ready", "Reason", "Peers", "Cert expires", "Kid", "Rotation"):
            table.add_column(column, no_wrap=column != "Reason")
        for body in sorted(identities, key=key):
            st = _section(body, "status")
            ready, reason = _ready_cell(body)
            jwt = _section(st, "jwt")
            peers = st.get("peerCount", len(st.get("peers") or []))
            table.add_row(*map(escape, key(body)), ready, reason, escape(str(peers)), _expiry_cell(st, now),
                          escape(str(jwt.get("kid") or "-")), _rotation_cell(st))
            problem = _first_problem(body)
            if problem:
                problems.append(f"ServiceIdentity {'/'.join(key(body))}: {problem}")
        console.print(table)
    if relationships:
        table = Table(title=f"TrustRelationships ({where})", title_justify="left")
        for column in ("Namespace", "Name", "Ready", "Reason", "Between"):
            table.add_column(column, no_wrap=column != "Reason")
        for body in sorted(relationships, key=key):
            ready, reason = _ready_cell(body)
            between = [f"{b.get('namespace') or key(body)[0]}/{b.get('identity')}"
                       for b in _section(body, "spec").get("between") or [] if isinstance(b, Mapping)]
            table.add_row(*map(escape, key(body)), ready, reason, escape(" <-> ".join(between) or "-"))
            problem = _first_problem(body)
            if problem:
                problems.append(f"TrustRelationship {'/'.join(key(body))}: {problem}")
        console.print(table)
    for problem in problems:
        console.print(f"[red]✗[/] {escape(problem)}")


@main.command()
@click.argument("identity")
@click.option("-n", "--namespace", help="Namespace (default: the kubeconfig context's, else 'default').")
@click.option("--what", type=click.Choice(["ca", "certificate", "jwt"]), required=True,
              help="What to rotate: the CA, the leaf certificate or the JWT signing key.")
@click.option("--wait", is_flag=True, help="Wait until the operator has handled the request.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to --wait.")
@_cluster_options
def rotate(identity: str, namespace: str | None, what: str, wait: bool, timeout: float,
           kubeconfig: str | None, context: str | None, server: str | None) -> None:
    """Ask the operator to rotate an identity's CA, certificate or JWT key now.

    Sets the annotation trustwire.io/rotate=<what>:<UTC timestamp> (a JSON merge patch on
    metadata.annotations); the operator acts once per distinct value and records it in
    status.rotation.handledRequest. One request at a time: use --wait before the next.
    """
    from trustwire import names
    from trustwire.k8s.client import IDENTITIES

    config = _load(server, kubeconfig, context)
    ns = _namespace(config, namespace)

    async def annotate(client: Client) -> tuple[str, Mapping[str, Any], str | None]:
        body = await client.get(IDENTITIES, ns, identity)
        if body is None:
            raise click.ClickException(f"ServiceIdentity {ns}/{identity} not found")
        meta = body.get("metadata") or {}
        previous = (meta.get("annotations") or {}).get(names.ROTATE_ANNOTATION)
        moment = datetime.now(UTC)
        value = f"{what}:{moment.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        if value == previous:  # the same second as the last request: keep the value distinct
            value = f"{what}:{moment.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
        patched = await client.merge_patch(IDENTITIES, ns, identity,
                                           {"metadata": {"annotations": {names.ROTATE_ANNOTATION: value}}})
        if patched is None:
            raise click.ClickException(f"ServiceIdentity {ns}/{identity} not found (deleted meanwhile)")
        return value, body, previous

    value, body, previous = _api_call(config, annotate)
    st = _section(body, "status")
    handled = _section(st, "rotation").get("handledRequest")
    click.echo(f"annotated ServiceIdentity {ns}/{identity}: {names.ROTATE_ANNOTATION}={value}")
    if previous and previous != handled:
        click.echo(f"note: the previous request {previous!r} had not been handled yet; this one replaces it")
    current = _section(st, what)
    if what == "jwt":
        detail = f"current kid {current.get('kid')}" if current.get("kid") else "no JWT key in status"
    elif current.get("serial"):
        detail = f"current serial {current.get('serial')}, expires {current.get('notAfter')}"
    else:
        detail = f"no {what} reported in status"
    if not wait:
        click.echo(f"the operator rotates the {what} at its next reconcile ({detail}); "
                   f"follow it with: trustwire status -n {ns}")
        return
    click.echo(f"waiting for the operator ({detail})…")

    async def handled_status(client: Client) -> Mapping[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            body = await client.get(IDENTITIES, ns, identity)
            if body is None:
                raise click.ClickException(f"ServiceIdentity {ns}/{identity} was deleted")
            status = _section(body, "status")
            if _section(status, "rotation").get("handledRequest") == value:
                return status
            if asyncio.get_running_loop().time() > deadline:
                raise click.ClickException(
                    f"the operator did not handle {value!r} within {timeout:.0f}s "
                    f"(is it running and watching namespace {ns}?)")
            await asyncio.sleep(0.5)

    after = _api_call(config, handled_status)
    field = "kid" if what == "jwt" else "serial"
    old, new = current.get(field), _section(after, what).get(field)
    if old != new:
        click.echo(f"done: {what} {field} {old or '-'} -> {new or '-'}")
    else:
        progress = _section(_section(after, "rotation"), what)
        phase, waiting = progress.get("phase"), progress.get("waitingFor")
        click.echo(f"handled: the {what} {field} is still {old or '-'}"
                   + (f"; rotation phase {phase}" if phase else "")
                   + (f", waiting for: {waiting}" if waiting else "")
                   + f" (follow it with: trustwire status -n {ns})")


@main.command()
@click.argument("identity")
@click.option("-n", "--namespace",
              help="Namespace (default: from the material, else the kubeconfig context's).")
@click.option("--dir", "directory", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Check files on disk instead of the cluster: a pod's mount directory, or the output "
                   "of `trustwire demo --output` (uses mounts/<namespace>/<identity>/).")
@click.option("--renew-before", default="240h", show_default=True,
              help="certificate.renewBefore to assume with --dir (from the cluster: the identity's spec).")
@_cluster_options
def verify(identity: str, namespace: str | None, directory: Path | None, renew_before: str,
           kubeconfig: str | None, context: str | None, server: str | None) -> None:
    """Check an identity's material offline: chain, SANs, expiry, keystores, peers, JWT keys.

    Prints one line per check and exits 1 if any check fails.
    """
    from trustwire.inspection import Target, load_directory, verify_material
    from trustwire.model import parse_duration

    try:
        lead = parse_duration(renew_before)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--renew-before") from None
    public: Mapping[str, bytes] | None = None
    if directory is not None:
        where = _material_directory(directory, identity, namespace)
        files = load_directory(where)
        if not files:
            raise click.ClickException(f"no files in {where}")
        target = Target(identity=identity, namespace=namespace, renew_before=lead)
        source = str(where)
    else:
        config = _load(server, kubeconfig, context)
        ns = _namespace(config, namespace)
        files, public, target = _api_call(config, lambda client: _cluster_material(client, ns, identity))
        source = f"ServiceIdentity {ns}/{identity}"
    findings = verify_material(files, now=datetime.now(UTC), target=target, public=public)
    click.echo(f"verifying {source}")
    for finding in findings:
        mark = click.style("✓", fg="green") if finding.ok else click.style("✗", fg="red")
        click.echo(f"{mark} {finding.check}: {finding.message}")
    failed = [f for f in findings if not f.ok]
    if failed:
        click.echo(click.style(f"{len(failed)} of {len(findings)} checks failed: ", fg="red", bold=True)
                   + "; ".join(f"{f.check}: {f.message}" for f in failed))
        sys.exit(1)
    click.echo(click.style(f"all {len(findings)} checks passed", fg="green", bold=True))


def _material_directory(directory: Path, identity: str, namespace: str | None) -> Path:
    """DIR itself, DIR/<ns>/<identity> or DIR/mounts/<ns>/<identity> (the demo's layout)."""
    for base in (directory / "mounts", directory):
        if namespace and (base / namespace / identity).is_dir():
            return base / namespace / identity
        if not namespace and base.is_dir():
            matches = sorted(p for p in base.glob(f"*/{identity}") if p.is_dir())
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                found = ", ".join(p.parent.name for p in matches)
                raise click.ClickException(f"{identity} exists in several namespaces under {base} ({found}); "
                                           "pass -n")
    if any(p.is_file() and not p.name.startswith("..") for p in directory.iterdir()):
        return directory
    looked = f"{namespace}/{identity}" if namespace else f"*/{identity}"
    raise click.ClickException(f"no material for {identity} in {directory} (looked for files there, in "
                               f"{looked}/ and in mounts/{looked}/)")


async def _cluster_material(client: Client, namespace: str, identity: str,
                            ) -> tuple[dict[str, bytes], dict[str, bytes], Target]:
    from trustwire import names
    from trustwire.inspection import DEFAULT_RENEW_BEFORE, Target
    from trustwire.k8s.client import CONFIGMAPS, IDENTITIES, SECRETS, decode_data
    from trustwire.model import parse_duration

    body = await client.get(IDENTITIES, namespace, identity)
    if body is None:
        raise click.ClickException(f"ServiceIdentity {namespace}/{identity} not found")
    files: dict[str, bytes] = {}
    missing = []
    for name in (names.credentials_secret(identity), names.trust_secret(identity)):
        secret = await client.get(SECRETS, namespace, name)
        if secret is None:
            missing.append(name)
        files.update(decode_data(SECRETS, secret))
    if missing:
        problem = _first_problem(body) or "no problem reported in its status"
        secrets = ", ".join(f"{namespace}/{m}" for m in missing)
        raise click.ClickException(f"Secret(s) {secrets} do not exist; "
                                   f"ServiceIdentity {namespace}/{identity}: {problem}")
    public_body = await client.get(CONFIGMAPS, namespace, names.public_configmap(identity))
    public = decode_data(CONFIGMAPS, public_body)
    spec = _section(body, "spec")
    certificate = _section(_section(body, "status"), "certificate")
    try:
        lead = parse_duration(str(_section(spec, "certificate").get("renewBefore") or "240h"))
    except ValueError:
        lead = DEFAULT_RENEW_BEFORE
    dns_names = [str(n) for n in certificate.get("dnsNames") or []]
    target = Target(identity=identity, namespace=namespace,
                    service_name=str(spec.get("serviceName") or identity), dns_names=dns_names,
                    renew_before=lead)
    return files, public, target


if __name__ == "__main__":
    main()
